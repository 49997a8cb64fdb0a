//! Loopback clusters: `leaderhook cluster init` writes the node configs,
//! `leaderhook cluster up` runs one broker process per node in the
//! foreground and stops them all on Ctrl-C (or SIGTERM).

use crate::auth::{Secret, random_bytes};
use crate::config::{Peer, RaftConfig, SecurityConfig};
use anyhow::{Context, bail};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// A free port on 127.0.0.1 for a node to bind later. Taken outside the
/// kernel's ephemeral range when there is room, so no outgoing connection
/// can be given it in between, and never twice from one process, so
/// clusters initialised side by side (tests) do not collide.
fn free_port() -> anyhow::Result<SocketAddr> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let Some((low, high)) = ports_outside_ephemeral_range() else {
        return Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?);
    };
    let span = high - low;
    // A random start, so that separate processes rarely walk the same ports.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id().wrapping_mul(2_654_435_761);
    let _ = NEXT.compare_exchange(0, seed % span + 1, Ordering::Relaxed, Ordering::Relaxed);
    for _ in 0..span {
        let port = low + NEXT.fetch_add(1, Ordering::Relaxed) % span;
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port as u16)) {
            return Ok(listener.local_addr()?);
        }
    }
    bail!("no free loopback port in {low}..{high}")
}

/// Ports below the kernel's ephemeral range (or above it), if it leaves at
/// least a thousand.
fn ports_outside_ephemeral_range() -> Option<(u32, u32)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut bounds = text.split_whitespace().map(|n| n.parse::<u32>().ok());
    let (first, last) = (bounds.next()??, bounds.next()??);
    if first >= 11_024 {
        Some((10_000, first))
    } else if last <= 64_535 {
        Some((last + 1, 65_536))
    } else {
        None
    }
}

pub fn config_path(dir: &Path, node: u64) -> PathBuf {
    dir.join(format!("node{node}.toml"))
}

/// Choices of `cluster init` beyond size and Raft settings.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    /// Writes `[testing] fault_injection = true`: the admin test hooks are
    /// served. For test clusters only.
    pub fault_injection: bool,
}

/// Writes node1.toml … nodeN.toml in `dir`: loopback ports, a fresh cluster
/// id and secret (the same in every file; files readable by their owner
/// only), the default plugin, a log sink named "audit".
pub fn init(dir: &Path, nodes: u64, raft: &RaftConfig) -> anyhow::Result<Vec<PathBuf>> {
    init_with(dir, nodes, raft, &InitOptions::default())
}

/// [`init`] with options.
pub fn init_with(
    dir: &Path,
    nodes: u64,
    raft: &RaftConfig,
    options: &InitOptions,
) -> anyhow::Result<Vec<PathBuf>> {
    if nodes == 0 {
        bail!("a cluster needs at least one node");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let security = SecurityConfig {
        cluster_id: hex_id(),
        secret: Secret::generate(),
    };
    let mut shared = format!("[security]\n{}\n", toml::to_string(&security)?);
    if options.fault_injection {
        shared += "[testing]\nfault_injection = true\n\n";
    }
    let peers: Vec<Peer> = (1..=nodes)
        .map(|id| {
            Ok(Peer {
                id,
                raft: free_port()?,
                admin: free_port()?,
                kafka: Some(free_port()?),
                rack: None,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let metrics: Vec<SocketAddr> = peers
        .iter()
        .map(|_| free_port())
        .collect::<anyhow::Result<_>>()?;
    let mut files = Vec::new();
    for (peer, metrics) in peers.iter().zip(&metrics) {
        let mut text = format!(
            "# leaderhook node {id} (written by `leaderhook cluster init`)\n\
             node_id = {id}\n\
             data_dir = \"node{id}\"\n\
             raft_listen = \"{raft}\"\n\
             admin_listen = \"{admin}\"\n\
             kafka_listen = \"{kafka}\"\n\
             metrics_listen = \"{metrics}\"\n\n\
             {shared}\
             [raft]\n{raft_table}\n",
            id = peer.id,
            raft = peer.raft,
            admin = peer.admin,
            kafka = peer.kafka.expect("set above"),
            raft_table = toml::to_string(raft)?,
        );
        for p in &peers {
            text += &format!(
                "[[peers]]\nid = {}\nraft = \"{}\"\nadmin = \"{}\"\nkafka = \"{}\"\n\n",
                p.id,
                p.raft,
                p.admin,
                p.kafka.expect("set above")
            );
        }
        text += "[[sinks]]\nname = \"audit\"\nkind = \"log\"\n\n\
                 [[plugins]]\nname = \"assign-leader\"\npath = \"builtin:assign-leader\"\n\
                 grants = [\"assignments\"]\n";
        let file = config_path(dir, peer.id);
        write_private(&file, &text).with_context(|| format!("writing {}", file.display()))?;
        files.push(file);
    }
    Ok(files)
}

/// A random cluster id: 128 bits as hex.
fn hex_id() -> String {
    random_bytes::<16>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes a file only its owner can read (it holds the cluster secret),
/// replacing any previous one.
pub fn write_private(file: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(file)?;
    // An existing file keeps its mode through open(2): tighten it.
    out.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    out.write_all(text.as_bytes())
}

/// The node configs in `dir`, in node order.
pub fn configs(dir: &Path) -> Vec<PathBuf> {
    (1..)
        .map(|n| config_path(dir, n))
        .take_while(|p| p.exists())
        .collect()
}

/// Runs every node of `dir` as a child process until Ctrl-C or SIGTERM,
/// then stops them and waits for them.
pub fn up(dir: &Path) -> anyhow::Result<()> {
    let files = configs(dir);
    if files.is_empty() {
        bail!(
            "no node configs in {} (run `leaderhook cluster init --dir {}` first)",
            dir.display(),
            dir.display()
        );
    }
    let exe = std::env::current_exe()?;
    let mut children: Vec<Child> = Vec::new();
    for file in &files {
        let child = Command::new(&exe)
            .arg("broker")
            .arg("--config")
            .arg(file)
            .spawn()
            .with_context(|| format!("starting a broker for {}", file.display()));
        match child {
            Ok(c) => children.push(c),
            Err(e) => {
                stop_all(&mut children);
                return Err(e);
            }
        }
    }
    eprint!("{}", up_banner(dir, &files));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return anyhow::Ok(()),
                _ = term.recv() => return anyhow::Ok(()),
                _ = tick.tick() => {
                    for (i, child) in children.iter_mut().enumerate() {
                        if let Some(status) = child.try_wait()? {
                            bail!("node {} exited ({status}); stopping the cluster", i + 1);
                        }
                    }
                }
            }
        }
    });
    stop_all(&mut children);
    outcome
}

/// What a newcomer needs once the nodes run: where Kafka clients and
/// Prometheus connect, and the next commands.
pub fn up_banner(dir: &Path, files: &[PathBuf]) -> String {
    let configs: Vec<crate::config::NodeConfig> = files
        .iter()
        .filter_map(|f| crate::config::NodeConfig::from_file(f).ok())
        .collect();
    let bootstrap: Vec<String> = configs
        .iter()
        .filter_map(|c| c.kafka_listen.map(|a| a.to_string()))
        .collect();
    let exe = std::env::current_exe()
        .ok()
        .and_then(|e| e.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "leaderhook".into());
    let dir_arg = if dir == Path::new("cluster") {
        String::new()
    } else {
        format!(" --dir {}", dir.display())
    };
    let mut out = format!(
        "leaderhook: {} nodes up (configs in {}); Ctrl-C stops them\n\n\
         Kafka bootstrap servers: {}\n",
        files.len(),
        dir.display(),
        bootstrap.join(",")
    );
    for c in &configs {
        if let Some(m) = c.metrics_listen {
            out += &format!("metrics, node {}: http://{m}/metrics\n", c.node_id);
        }
    }
    out += &format!(
        "\nNext, in another terminal:\n\
         \x20 {exe} topics create orders --partitions 3 --replication 3{dir_arg}\n\
         \x20 {exe} status{dir_arg}            # each replica's Raft role beside its assignment\n\
         \x20 {exe} plugin list{dir_arg}       # the plugins of every node, their state and counters\n\
         \x20 kcat -b {} -L          # any Kafka client\n",
        bootstrap.first().map_or("127.0.0.1:PORT", String::as_str)
    );
    out
}

/// SIGTERM to every child, then wait (SIGKILL after 10 s).
fn stop_all(children: &mut [Child]) {
    for child in children.iter() {
        terminate(child.id());
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for child in children.iter_mut() {
        while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn terminate(pid: u32) {
    signal(pid, libc::SIGTERM);
}

/// SIGHUP to a node: it re-reads its config file and applies its plugin
/// changes (see `leaderhook plugin apply`).
pub fn hangup(child: &Child) {
    signal(child.id(), libc::SIGHUP);
}

#[allow(unsafe_code)]
fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is one of
    // our own children, not yet reaped, so it cannot name another process.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clusters initialised side by side never share a port, and no port
    /// is one an outgoing connection could be given meanwhile.
    #[test]
    fn ports_are_distinct_and_outside_the_ephemeral_range() {
        let ports: Vec<u16> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        (0..50)
                            .map(|_| free_port().unwrap().port())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let distinct: std::collections::BTreeSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len(), "a port was handed out twice");
        if let Some((low, high)) = ports_outside_ephemeral_range() {
            assert!(ports.iter().all(|p| (low..high).contains(&u32::from(*p))));
        }
    }
}
