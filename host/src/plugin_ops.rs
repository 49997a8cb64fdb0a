//! The operator's plugin commands of the CLI: `plugin list`, `reload`,
//! `apply`, `diff` and `promote`. Each asks every node of the target and
//! reports per node; a command fails (non-zero exit) if any node refused or
//! did not answer, after printing what every node said.

use super::Target;
use anyhow::Context;
use leaderhook::admin::plugins::{DiffView, PluginEntry, PluginsView};
use leaderhook::admin::{self, Request};
use leaderhook_hooks::ApplyReport;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Loading and initialising a plugin can take its `init` limit and a
/// compilation: more than a status request.
const TIMEOUT: Duration = Duration::from_secs(60);
/// Characters of a last error `plugin list` shows.
const LAST_ERROR_SHOWN: usize = 120;

/// Sends `request` to every node; prints each answer with `show`, each
/// failure as `addr: error`. Fails if any node failed.
fn every_node(
    out: &mut impl Write,
    target: &Target,
    request: &Request,
    what: &str,
    mut show: impl FnMut(&mut dyn Write, SocketAddr, serde_json::Value) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    for (addr, secret) in target.nodes()? {
        match admin::request(addr, &secret, request, TIMEOUT) {
            Ok(answer) => {
                show(out, addr, answer).with_context(|| format!("the answer of {addr}"))?
            }
            Err(e) => {
                writeln!(out, "{addr}: {what} refused: {e}")?;
                failed.push(addr.to_string());
            }
        }
    }
    anyhow::ensure!(
        failed.is_empty(),
        "{what}: {} node(s) refused or did not answer: {}",
        failed.len(),
        failed.join(", ")
    );
    Ok(())
}

pub fn list(out: &mut impl Write, target: &Target, json: bool) -> anyhow::Result<()> {
    every_node(
        out,
        target,
        &Request::Plugins,
        "plugin list",
        |out, _, answer| {
            if json {
                writeln!(out, "{answer}")?;
                return Ok(());
            }
            let view: PluginsView = serde_json::from_value(answer)?;
            write!(out, "{}", render_list(&view))?;
            Ok(())
        },
    )
}

/// `plugin list` for one node, as text.
pub fn render_list(view: &PluginsView) -> String {
    let mut text = format!("node {}\n", view.node);
    text += "  name                 mode    state          calls   events  failures  p50      p99      source\n";
    for entry in &view.plugins {
        text += &row(entry, entry.stats.state.name());
    }
    if let Some(fallback) = &view.fallback {
        let state = if fallback.engaged {
            "ENGAGED"
        } else {
            "standing-by"
        };
        text += &row(&fallback.plugin, state);
        text += &format!(
            "  safety net: {} ({} switches)\n",
            if fallback.engaged {
                "ENGAGED, the embedded default plugin writes the assignments"
            } else {
                "standing by"
            },
            fallback.switches
        );
    }
    for entry in &view.plugins {
        text += &details(entry);
    }
    if let Some(trace) = &view.trace {
        text += &format!(
            "  trace: {} records written, {} dropped, {} rotations, {} write errors\n",
            trace.written, trace.dropped, trace.rotations, trace.write_errors
        );
    }
    text
}

/// One table row; `state` is the plugin's run state (for the safety net:
/// whether it is engaged).
fn row(entry: &PluginEntry, state: &str) -> String {
    let s = &entry.stats;
    let calls = s.batches + s.failures();
    let time = |us: Option<u64>| match us {
        None => "-".to_owned(),
        Some(u64::MAX) => ">10s".to_owned(),
        Some(us) if us >= 1000 => format!("{}ms", us / 1000),
        Some(us) => format!("{us}us"),
    };
    format!(
        "  {:<20} {:<7} {:<14} {:>6}  {:>7}  {:>8}  {:<7}  {:<7}  {}\n",
        entry.info.name,
        entry.info.mode.name(),
        state,
        calls,
        s.events,
        s.failures(),
        time(s.latency.p50_us),
        time(s.latency.p99_us),
        entry.info.origin
    )
}

/// The lines below the table: hash, contract, grants, failures by kind,
/// capability calls, last error.
fn details(entry: &PluginEntry) -> String {
    let s = &entry.stats;
    let info = &entry.info;
    let grants: Vec<&str> = info.grants.iter().map(|g| g.name()).collect();
    let mut text = format!(
        "  {}: sha256 {}, contract {}, grants [{}]\n",
        info.name,
        info.content_hash.get(..12).unwrap_or(&info.content_hash),
        info.contract_version,
        grants.join(", ")
    );
    let kinds: Vec<String> = [
        ("trap", s.traps),
        ("panic", s.panics),
        ("timeout", s.timeouts),
        ("out-of-memory", s.out_of_memory),
        ("error", s.errors),
        ("init", s.init_failures),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(k, n)| format!("{k} {n}"))
    .collect();
    if !kinds.is_empty() {
        text += &format!("    failures: {}\n", kinds.join(", "));
    }
    let calls: Vec<String> = s
        .calls
        .iter()
        .map(|c| format!("{} {} {}", c.capability.name(), c.outcome.name(), c.count))
        .collect();
    if !calls.is_empty() {
        text += &format!("    capability calls: {}\n", calls.join(", "));
    }
    if let Some(shadow) = &s.shadow {
        text += &format!(
            "    shadow: {} agreements, {} disagreements (plugin diff {})\n",
            shadow.agreements, shadow.disagreements, info.name
        );
    }
    if let Some(error) = &s.last_error {
        let mut shown: String = error.chars().take(LAST_ERROR_SHOWN).collect();
        if shown.len() < error.len() {
            shown += "…";
        }
        text += &format!("    last error: {shown}\n");
    }
    text
}

pub fn reload(
    out: &mut impl Write,
    target: &Target,
    name: String,
    path: Option<PathBuf>,
) -> anyhow::Result<()> {
    // Nodes resolve a relative path against their own working directory:
    // send what the operator means, from here.
    let path = match path {
        Some(p) if p.to_string_lossy().starts_with("builtin:") => {
            Some(p.to_string_lossy().into_owned())
        }
        Some(p) => Some(
            std::path::absolute(&p)
                .with_context(|| format!("{}", p.display()))?
                .to_string_lossy()
                .into_owned(),
        ),
        None => None,
    };
    let request = Request::Reload {
        plugin: name.clone(),
        path,
    };
    every_node(out, target, &request, "reload", |out, addr, _| {
        writeln!(out, "{addr}: {name} reloaded")?;
        Ok(())
    })
}

pub fn apply(out: &mut impl Write, target: &Target) -> anyhow::Result<()> {
    every_node(
        out,
        target,
        &Request::ApplyConfig,
        "plugin apply",
        |out, addr, answer| {
            let report: ApplyReport = serde_json::from_value(answer)?;
            writeln!(out, "{addr}: {}", render_apply(&report))?;
            Ok(())
        },
    )
}

/// One line: what `apply` changed on a node.
pub fn render_apply(report: &ApplyReport) -> String {
    if report.is_empty() {
        let mut text = "no plugin changes".to_owned();
        for note in &report.notes {
            text += &format!("; {note}");
        }
        return text;
    }
    let mut parts = Vec::new();
    for (what, names) in [
        ("added", &report.added),
        ("removed", &report.removed),
        ("changed", &report.changed),
    ] {
        if !names.is_empty() {
            parts.push(format!("{what} {}", names.join(", ")));
        }
    }
    if report.reordered {
        parts.push("reordered".into());
    }
    parts.extend(report.notes.iter().cloned());
    format!("applied: {}", parts.join("; "))
}

pub fn diff(out: &mut impl Write, target: &Target, name: String, json: bool) -> anyhow::Result<()> {
    let request = Request::PluginDiff { plugin: name };
    every_node(out, target, &request, "plugin diff", |out, _, answer| {
        if json {
            writeln!(out, "{answer}")?;
            return Ok(());
        }
        let view: DiffView = serde_json::from_value(answer)?;
        write!(out, "{}", render_diff(&view))?;
        Ok(())
    })
}

/// A shadow plugin's comparison on one node, as text.
pub fn render_diff(view: &DiffView) -> String {
    let s = &view.shadow;
    let mut text = format!(
        "node {}: {} (shadow) agreed {} times, disagreed {} times{}\n",
        view.node,
        view.plugin,
        s.agreements,
        s.disagreements,
        if s.unjudged > 0 {
            format!(", {} not judged", s.unjudged)
        } else {
            String::new()
        }
    );
    for d in &s.differences {
        text += &format!("  on {}:\n", d.events.join(", "));
        for call in &d.shadow_only {
            text += &format!("    + {call}    (shadow only)\n");
        }
        for call in &d.active_only {
            text += &format!("    - {call}    (active only)\n");
        }
        if d.unlisted > 0 {
            text += &format!("    … {} more calls\n", d.unlisted);
        }
    }
    text
}

pub fn promote(
    out: &mut impl Write,
    target: &Target,
    name: String,
    replacing: Option<String>,
    persist: bool,
) -> anyhow::Result<()> {
    let request = Request::Promote {
        plugin: name.clone(),
        replacing: replacing.clone(),
        persist,
    };
    every_node(out, target, &request, "promote", |out, addr, answer| {
        let persisted = answer["persisted_in"].as_str().map(str::to_owned);
        write!(out, "{addr}: {name} active")?;
        if let Some(other) = &replacing {
            write!(out, ", {other} removed")?;
        }
        match persisted {
            Some(file) => writeln!(out, "; written into {file}")?,
            None => writeln!(out, " (until the next restart or apply: not persisted)")?,
        }
        Ok(())
    })
}

/// `plugin test PLUGIN --trace FILE...`: replays a recorded trace through
/// the plugin (every grant given: the comparison shows what it would do).
pub fn replay(
    out: &mut impl Write,
    engine: leaderhook_hooks::HookEngine,
    plugin: String,
    traces: &[PathBuf],
    against: Option<String>,
) -> anyhow::Result<()> {
    use leaderhook_hooks::{Grant, PluginConfig};
    let (records, torn) = leaderhook_harness::replay::read_trace(traces)?;
    let config = PluginConfig::new(
        "under-test",
        plugin.as_str(),
        &[Grant::Assignments, Grant::Leadership, Grant::Notify],
    );
    let report =
        leaderhook_harness::replay::replay(&engine, config, &records, against.as_deref(), torn)?;
    write!(out, "{}", report.render())?;
    anyhow::ensure!(
        report.passed(),
        "{plugin} decided otherwise than `{}` in {} of {} recorded batches ({} failed)",
        report.reference,
        report.differing,
        report.batches,
        report.failures.len()
    );
    Ok(())
}
