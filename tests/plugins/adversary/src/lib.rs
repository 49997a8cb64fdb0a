//! A hostile test plugin for the leaderhook runtime.
//!
//! Its behaviour is chosen by its config, e.g. `{"mode": "loop"}`. Fields
//! (all optional): `mode` (below), `tag` (a string echoed in output),
//! `fail_times` (for `flaky`), `sink` (for `notify` and `ungranted`, default
//! `"trace"`). Unless noted, a mode acts in `on-events`:
//!
//! - `ok`: does nothing.
//! - `loop`: loops forever.
//! - `memory`: allocates without bound, 1 MiB at a time.
//! - `panic`: panics ("adversary panicked on purpose").
//! - `error`: returns `Err("adversary failed on purpose")`.
//! - `init-error`: `init` returns `Err("adversary init refused")`.
//! - `ungranted`: calls `leadership.transfer` (first event's partition to its
//!   observer) and `notify.emit`; returns the first error's message.
//! - `flaky`: fails the first `fail_times` batches ("flaky failure N"), then
//!   behaves like assign-leader.
//! - `notify`: emits `"{tag}:{topic}-{partition}:{term}"` to `sink` for every
//!   event.
//! - `stale-write`, `future-epoch`, `not-replica`: on `became-leader`, call
//!   set-leader with epoch `term - 1`, epoch `u64::MAX`, or leader 999999;
//!   return the refusal's message.
//! - `print`: writes a line to stdout and one to stderr.
//! - `stack`: recurses without bound (stack overflow).
//! - `escape`: tries the filesystem, environment, arguments, sockets and the
//!   clock; returns `Err` listing `what=ok|denied` for each.
//!
//! Attacks on the runtime's bounds (issue 8). Fields: `sleep_ms` (default
//! 3000), `size` (bytes, default 10 MiB), `count` (default 1000),
//! `alloc_mib` (default 32):
//!
//! - `sleep`: `std::thread::sleep(sleep_ms)` (a WASI clock subscription and
//!   a blocking `pollable.block` in the host, no wasm running).
//! - `sleep-init`: the same in `init`.
//! - `block-reinit`: `init` sleeps whenever some partition already has a
//!   leader (so the first init, at start, passes); `on-events` panics, so
//!   every batch ends with a fresh instance whose `init` blocks.
//! - `poll`: `wasi:io/poll.poll` on a clock subscription that never fires.
//! - `host-loop`: calls `cluster.nodes` forever.
//! - `huge-error`: returns an `Err` of `size` bytes.
//! - `huge-log`: `count` log calls of `size` bytes each.
//! - `huge-stdout`: `count` stdout lines of `size` bytes each, then a line
//!   of `size` bytes without a newline.
//! - `huge-notify`: `count` notifications of `size` bytes each to `sink`.
//! - `write-storm`: `set-leader` for the first event's partition (its
//!   observer at its term) `count` times; returns `Err("N accepted, then:
//!   <first error>")` if one was refused.
//! - `transfer-storm`: the same with `leadership.transfer` to the observer.
//! - `alloc`: allocates `alloc_mib` MiB at once (touching every page),
//!   frees it, returns Ok.
//! - `wrong-leader`: for every event that names a leader, names another
//!   replica as leader at the event's term (a replica Raft did not elect);
//!   returns the first refusal's message.
//! - `transfer-churn`: for every event that names a leader, asks to move
//!   the partition's leadership to the next replica (an election each);
//!   returns the first refusal's message.
//!
//! Ticks (contract 0.2, with `tick_ms` on the entry); `on-events` does
//! nothing in these modes:
//! - `tick-loop`: `on-tick` loops forever.
//! - `tick-count`: `on-tick` logs `tick <n> at <now_ms>` (n counts this
//!   instance's ticks from 1).
//!
//! An unknown mode makes `init` fail.

use std::hint::black_box;

use leaderhook_sdk::{
    CapError, Hook, LeadershipEvent, NodeId, PartitionId, Transition, assignments, cluster,
    leadership, log, notify, register_hook,
};
use serde::Deserialize;

mod blocking {
    wit_bindgen::generate!({
        path: "wit",
        world: "blocking",
        generate_all,
    });
}

use blocking::wasi::clocks::monotonic_clock;
use blocking::wasi::io::poll;

/// The adversary's config.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct Config {
    /// What to do; see the crate docs.
    pub mode: String,
    /// Echoed in `print` and `notify` output.
    pub tag: String,
    /// How many batches `flaky` fails before it succeeds.
    pub fail_times: u32,
    /// The sink `notify` and `ungranted` emit to.
    pub sink: String,
    /// How long the blocking modes sleep.
    pub sleep_ms: u64,
    /// Bytes per output of the `huge-*` modes.
    pub size: usize,
    /// Repetitions of the `huge-*` and storm modes.
    pub count: u32,
    /// MiB `alloc` allocates.
    pub alloc_mib: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mode: String::new(),
            tag: String::new(),
            fail_times: 0,
            sink: "trace".to_owned(),
            sleep_ms: 3000,
            size: 10 << 20,
            count: 1000,
            alloc_mib: 32,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Ok,
    Loop,
    Memory,
    Panic,
    Error,
    Ungranted,
    Flaky,
    Notify,
    StaleWrite,
    FutureEpoch,
    NotReplica,
    Print,
    Stack,
    Escape,
    Sleep,
    BlockReinit,
    Poll,
    HostLoop,
    HugeError,
    HugeLog,
    HugeStdout,
    HugeNotify,
    WriteStorm,
    TransferStorm,
    Alloc,
    WrongLeader,
    TransferChurn,
    TickLoop,
    TickCount,
}

/// The plugin.
pub struct Adversary {
    mode: Mode,
    config: Config,
    /// Batches seen so far (for `flaky`).
    calls: u32,
}

impl Hook for Adversary {
    type Config = Config;

    fn init(config: Config) -> Result<Self, String> {
        let mode = match config.mode.as_str() {
            "ok" => Mode::Ok,
            "loop" => Mode::Loop,
            "memory" => Mode::Memory,
            "panic" => Mode::Panic,
            "error" => Mode::Error,
            "init-error" => return Err("adversary init refused".to_owned()),
            "ungranted" => Mode::Ungranted,
            "flaky" => Mode::Flaky,
            "notify" => Mode::Notify,
            "stale-write" => Mode::StaleWrite,
            "future-epoch" => Mode::FutureEpoch,
            "not-replica" => Mode::NotReplica,
            "print" => Mode::Print,
            "stack" => Mode::Stack,
            "escape" => Mode::Escape,
            "sleep" => Mode::Sleep,
            "sleep-init" => {
                sleep(config.sleep_ms);
                Mode::Ok
            }
            "block-reinit" => {
                if cluster::assignments().iter().any(|a| a.leader.is_some()) {
                    sleep(config.sleep_ms);
                }
                Mode::BlockReinit
            }
            "poll" => Mode::Poll,
            "host-loop" => Mode::HostLoop,
            "huge-error" => Mode::HugeError,
            "huge-log" => Mode::HugeLog,
            "huge-stdout" => Mode::HugeStdout,
            "huge-notify" => Mode::HugeNotify,
            "write-storm" => Mode::WriteStorm,
            "transfer-storm" => Mode::TransferStorm,
            "alloc" => Mode::Alloc,
            "wrong-leader" => Mode::WrongLeader,
            "transfer-churn" => Mode::TransferChurn,
            "tick-loop" => Mode::TickLoop,
            "tick-count" => Mode::TickCount,
            other => return Err(format!("unknown mode {other:?}")),
        };
        Ok(Adversary {
            mode,
            config,
            calls: 0,
        })
    }

    fn on_events(&mut self, events: &[LeadershipEvent]) -> Result<(), String> {
        self.calls = self.calls.saturating_add(1);
        match self.mode {
            Mode::Ok | Mode::TickLoop | Mode::TickCount => Ok(()),
            Mode::Loop => spin(),
            Mode::Memory => hoard(),
            Mode::Panic => panic!("adversary panicked on purpose"),
            Mode::Error => Err("adversary failed on purpose".to_owned()),
            Mode::Ungranted => self.ungranted(events),
            Mode::Flaky => {
                if self.calls <= self.config.fail_times {
                    Err(format!("flaky failure {}", self.calls))
                } else {
                    assign_leader(events)
                }
            }
            Mode::Notify => events.iter().try_for_each(|e| {
                let payload = format!(
                    "{}:{}-{}:{}",
                    self.config.tag, e.partition.topic, e.partition.partition, e.term
                );
                notify::emit(&self.config.sink, &payload).map_err(|err| err.to_string())
            }),
            Mode::StaleWrite => bad_writes(events, |e| (e.observer, e.term.saturating_sub(1))),
            Mode::FutureEpoch => bad_writes(events, |e| (e.observer, u64::MAX)),
            Mode::NotReplica => bad_writes(events, |e| (999_999, e.term)),
            Mode::Print => {
                println!("adversary stdout {}", self.config.tag);
                eprintln!("adversary stderr {}", self.config.tag);
                Ok(())
            }
            Mode::Stack => {
                black_box(recurse(black_box(0)));
                Ok(())
            }
            Mode::Escape => Err(escape_report()),
            Mode::Sleep => {
                sleep(self.config.sleep_ms);
                Ok(())
            }
            Mode::BlockReinit => panic!("adversary panicked to be re-initialised"),
            Mode::Poll => {
                // An instant that never comes: poll waits forever.
                let never = monotonic_clock::subscribe_instant(u64::MAX);
                let ready = poll::poll(&[&never]);
                Err(format!("poll returned {ready:?}"))
            }
            Mode::HostLoop => loop {
                black_box(cluster::nodes());
            },
            Mode::HugeError => Err("e".repeat(self.config.size)),
            Mode::HugeLog => {
                let message = "l".repeat(self.config.size);
                for _ in 0..self.config.count {
                    log::info(&message);
                }
                Ok(())
            }
            Mode::HugeStdout => {
                let line = "o".repeat(self.config.size);
                for _ in 0..self.config.count {
                    println!("{line}");
                }
                print!("{line}");
                Ok(())
            }
            Mode::HugeNotify => {
                let payload = "n".repeat(self.config.size);
                for _ in 0..self.config.count {
                    notify::emit(&self.config.sink, &payload).map_err(|e| e.to_string())?;
                }
                Ok(())
            }
            Mode::WriteStorm => self.storm(events, |e| {
                assignments::set_leader(&e.partition, e.observer, e.term).map(|_| ())
            }),
            Mode::TransferStorm => {
                self.storm(events, |e| leadership::transfer(&e.partition, e.observer))
            }
            Mode::WrongLeader => each_led(events, |e, other| {
                assignments::set_leader(&e.partition, other, e.term).map(|_| ())
            }),
            Mode::TransferChurn => {
                each_led(events, |e, other| leadership::transfer(&e.partition, other))
            }
            Mode::Alloc => {
                let mut block = vec![0u8; self.config.alloc_mib << 20];
                for byte in block.iter_mut().step_by(4096) {
                    *byte = 1;
                }
                black_box(&mut block);
                Ok(())
            }
        }
    }

    fn on_tick(&mut self, now_ms: u64) -> Result<(), String> {
        match self.mode {
            Mode::TickLoop => spin(),
            Mode::TickCount => {
                self.calls = self.calls.saturating_add(1);
                log::info(format!("tick {} at {now_ms}", self.calls));
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Blocks in the host for `ms` (a WASI clock subscription, then
/// `pollable.block`).
fn sleep(ms: u64) {
    std::thread::sleep(std::time::Duration::from_millis(ms));
}

impl Adversary {
    /// Repeats `call` on the first event `count` times; reports how many
    /// went through before the first refusal.
    fn storm(
        &self,
        events: &[LeadershipEvent],
        call: impl Fn(&LeadershipEvent) -> Result<(), CapError>,
    ) -> Result<(), String> {
        let Some(event) = events.first() else {
            return Ok(());
        };
        for accepted in 0..self.config.count {
            if let Err(e) = call(event) {
                return Err(format!("{accepted} accepted, then: {e}"));
            }
        }
        Ok(())
    }

    /// Calls both capabilities; reports the first refusal.
    fn ungranted(&self, events: &[LeadershipEvent]) -> Result<(), String> {
        let (partition, to) = match events.first() {
            Some(e) => (e.partition.clone(), e.observer),
            None => (PartitionId::new("adversary", 0), cluster::local_node()),
        };
        let transferred = leadership::transfer(&partition, to);
        let emitted = notify::emit(&self.config.sink, "adversary ungranted");
        transferred.and(emitted).map_err(|e| format!("{e}"))
    }
}

/// Tries to reach outside the sandbox; reports each attempt's outcome as
/// `what=ok|denied` pairs (always as an error, for the test to read).
fn escape_report() -> String {
    let outcome = |ok: bool| if ok { "ok" } else { "denied" };
    let read_root = std::fs::read_dir("/").is_ok();
    let read_file = std::fs::read("/etc/passwd").is_ok();
    let write_file = std::fs::write("/tmp/adversary-was-here", b"x").is_ok();
    let env = std::env::vars().next().is_some();
    let args = std::env::args().nth(1).is_some();
    let tcp = std::net::TcpStream::connect("127.0.0.1:9").is_ok()
        || std::net::TcpListener::bind("127.0.0.1:0").is_ok();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").is_ok();
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .is_ok_and(|d| d.as_secs() > 0);
    format!(
        "read_root={} read_file={} write_file={} env={} args={} tcp={} udp={} clock={}",
        outcome(read_root),
        outcome(read_file),
        outcome(write_file),
        outcome(env),
        outcome(args),
        outcome(tcp),
        outcome(udp),
        outcome(clock)
    )
}

/// Loops forever, in a way the optimiser cannot remove.
fn spin() -> ! {
    let mut counter = 0u64;
    loop {
        counter = black_box(counter).wrapping_add(1);
    }
}

/// Allocates 1 MiB chunks, touching every page, until something gives.
fn hoard() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; 1 << 20];
        for byte in chunk.iter_mut().step_by(4096) {
            *byte = 1;
        }
        hoard.push(black_box(chunk));
        black_box(&mut hoard);
    }
}

/// Recurses until the stack overflows. The work after the call keeps it
/// from being turned into a loop.
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 32]);
    if black_box(depth) == u64::MAX {
        return frame[0];
    }
    recurse(black_box(depth + 1)).wrapping_add(frame[depth as usize % 32])
}

/// Like assign-leader: record each new leader, ignore stale terms.
fn assign_leader(events: &[LeadershipEvent]) -> Result<(), String> {
    for e in events {
        if e.transition != Transition::BecameLeader {
            continue;
        }
        match assignments::set_leader(&e.partition, e.observer, e.term) {
            Ok(_) => {}
            Err(CapError::StaleEpoch(stored)) => {
                log::debug(format!("{}: stale term (stored {stored})", e.partition));
            }
            Err(err) => return Err(err.to_string()),
        }
    }
    Ok(())
}

/// For each `became-leader` event, a set-leader the host should refuse.
fn bad_writes(
    events: &[LeadershipEvent],
    write: impl Fn(&LeadershipEvent) -> (NodeId, u64),
) -> Result<(), String> {
    for e in events {
        if e.transition != Transition::BecameLeader {
            continue;
        }
        let (leader, epoch) = write(e);
        assignments::set_leader(&e.partition, leader, epoch).map_err(|err| err.to_string())?;
    }
    Ok(())
}

/// Calls `act` for every event naming a leader, with the replica after
/// that leader; the first refusal becomes the batch's error.
fn each_led(
    events: &[LeadershipEvent],
    act: impl Fn(&LeadershipEvent, NodeId) -> Result<(), CapError>,
) -> Result<(), String> {
    let mut first = None;
    for e in events {
        let Some(leader) = e.leader else { continue };
        let Some(at) = e.replicas.iter().position(|r| *r == leader) else {
            continue;
        };
        let other = e.replicas[(at + 1) % e.replicas.len()];
        if let Err(err) = act(e, other) {
            first.get_or_insert(err.to_string());
        }
    }
    first.map_or(Ok(()), Err)
}

register_hook!(Adversary);
