//! raft-rs logs through `slog`; this drain hands its records to `tracing`, so elections,
//! rejected messages and storage warnings of every group reach the node's log.
//!
//! Events have the target `raft` (filter them with e.g. `RUST_LOG=info,raft=warn`); their
//! message is raft-rs's followed by the record's and the logger's key-values (`group`,
//! `raft_id`, `term`, …): `became leader at term 3; group=12 raft_id=2`. Levels: critical and error -> ERROR, warning -> WARN, info -> INFO (role changes,
//! elections, votes: nothing while a cluster is idle), debug and trace -> TRACE (raft-rs logs
//! every message sent and every index persisted at debug; at TRACE they stay out of a node's
//! debug log).
//!
//! A small hand-written drain rather than `tracing-slog` (which drops the logger's key-values,
//! and so the group id, and maps debug to DEBUG) or `slog-stdlog` (a second facade and a
//! process-global `log` logger).

use std::fmt::Write as _;
use tracing::Level;

/// The target of every forwarded event.
pub const TARGET: &str = "raft";

/// A logger for raft-rs whose records go to `tracing`.
pub fn logger() -> slog::Logger {
    slog::Logger::root(TracingDrain, slog::o!())
}

/// The level a raft-rs record is logged at.
pub fn level(level: slog::Level) -> Level {
    match level {
        slog::Level::Critical | slog::Level::Error => Level::ERROR,
        slog::Level::Warning => Level::WARN,
        slog::Level::Info => Level::INFO,
        slog::Level::Debug | slog::Level::Trace => Level::TRACE,
    }
}

/// Forwards slog records to `tracing` (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingDrain;

/// Is an event of `level` under the `raft` target wanted by the current subscriber?
fn enabled(level: Level) -> bool {
    // `enabled!` needs a constant level.
    match level {
        Level::ERROR => tracing::enabled!(target: TARGET, Level::ERROR),
        Level::WARN => tracing::enabled!(target: TARGET, Level::WARN),
        Level::INFO => tracing::enabled!(target: TARGET, Level::INFO),
        Level::DEBUG => tracing::enabled!(target: TARGET, Level::DEBUG),
        Level::TRACE => tracing::enabled!(target: TARGET, Level::TRACE),
    }
}

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(
        &self,
        record: &slog::Record<'_>,
        values: &slog::OwnedKVList,
    ) -> Result<(), slog::Never> {
        let level = level(record.level());
        if !enabled(level) {
            return Ok(());
        }
        let mut fields = KeyValues::default();
        let _ = slog::KV::serialize(&record.kv(), record, &mut fields);
        let _ = slog::KV::serialize(values, record, &mut fields);
        let (message, kv) = (record.msg(), fields.0);
        match level {
            Level::ERROR => tracing::error!(target: TARGET, "{message}; {kv}"),
            Level::WARN => tracing::warn!(target: TARGET, "{message}; {kv}"),
            Level::INFO => tracing::info!(target: TARGET, "{message}; {kv}"),
            Level::DEBUG => tracing::debug!(target: TARGET, "{message}; {kv}"),
            Level::TRACE => tracing::trace!(target: TARGET, "{message}; {kv}"),
        }
        Ok(())
    }

    fn is_enabled(&self, level: slog::Level) -> bool {
        enabled(self::level(level))
    }
}

/// `key=value` pairs, space-separated.
#[derive(Default)]
struct KeyValues(String);

impl slog::Serializer for KeyValues {
    fn emit_arguments(&mut self, key: slog::Key, value: &std::fmt::Arguments<'_>) -> slog::Result {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        let _ = write!(self.0, "{key}={value}");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::storage::MemStorage;
    use std::sync::{Arc, Mutex};

    /// Runs `f` under a subscriber at `max`; what it logged.
    fn captured(max: Level, f: impl FnOnce()) -> String {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(max)
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buf.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A one-voter group elects itself through a logger made like the Raft loop's.
    fn elect_a_single_voter_group() {
        let storage = MemStorage::new_with_conf_state((vec![1], vec![]));
        let config = raft::Config {
            id: 1,
            ..Default::default()
        };
        let logger = logger().new(slog::o!("group" => 7u64));
        let mut node = raft::RawNode::new(&config, storage, &logger).unwrap();
        node.campaign().unwrap();
        assert_eq!(node.raft.state, raft::StateRole::Leader);
    }

    #[test]
    fn an_election_reaches_the_info_log_with_its_group() {
        let log = captured(Level::INFO, elect_a_single_voter_group);
        let line = log
            .lines()
            .find(|l| l.contains("became leader at term 1"))
            .unwrap_or_else(|| panic!("no election in the log:\n{log}"));
        assert!(line.contains(" INFO raft:"), "{line}");
        assert!(line.contains("group=7"), "{line}");
        assert!(line.contains("raft_id=1"), "{line}");
    }

    #[test]
    fn levels_are_mapped_and_debug_stays_below_the_debug_log() {
        let emit = || {
            let logger = logger();
            slog::crit!(logger, "crit record");
            slog::error!(logger, "error record");
            slog::warn!(logger, "warn record"; "term" => 3);
            slog::info!(logger, "info record");
            slog::debug!(logger, "debug record");
        };
        let at_debug = captured(Level::DEBUG, emit);
        let line = |text: &str| {
            at_debug
                .lines()
                .find(|l| l.contains(text))
                .map(str::to_owned)
        };
        assert!(line("crit record").unwrap().contains("ERROR raft:"));
        assert!(line("error record").unwrap().contains("ERROR raft:"));
        let warn = line("warn record").unwrap();
        assert!(
            warn.contains(" WARN raft:") && warn.contains("term=3"),
            "{warn}"
        );
        assert!(line("info record").unwrap().contains(" INFO raft:"));
        assert_eq!(line("debug record"), None, "raft debug shown at DEBUG");

        let at_trace = captured(Level::TRACE, emit);
        // slog compiles debug records out of release builds by default.
        if cfg!(debug_assertions) {
            let debug = at_trace.lines().find(|l| l.contains("debug record"));
            assert!(debug.unwrap().contains("TRACE raft:"), "{at_trace}");
        }
        let at_warn = captured(Level::WARN, emit);
        assert!(!at_warn.contains("info record"), "{at_warn}");
        assert!(at_warn.contains("warn record"), "{at_warn}");
    }
}
