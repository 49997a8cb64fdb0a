//! When a plugin's `on-tick` is due (its entry's `tick_ms`), for the lane
//! that delivers it. Ticks missed while the plugin was busy are not made
//! up: the next one comes one interval after the last one ran, so a stall
//! never ends in a burst of ticks.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy)]
pub(crate) struct TickSchedule {
    interval: Option<Duration>,
    next: Option<Instant>,
}

impl TickSchedule {
    /// The first tick comes one interval after `now`; none without one.
    pub(crate) fn new(interval: Option<Duration>, now: Instant) -> Self {
        Self {
            interval,
            next: interval.map(|i| now + i),
        }
    }

    pub(crate) fn due(&self, now: Instant) -> bool {
        self.next.is_some_and(|next| next <= now)
    }

    /// How long until the next tick; `None` when the plugin has no ticks.
    pub(crate) fn wait(&self, now: Instant) -> Option<Duration> {
        self.next.map(|next| next.saturating_duration_since(now))
    }

    /// A tick ran (or was given up on) at `now`.
    pub(crate) fn ticked(&mut self, now: Instant) {
        self.next = self.interval.map(|i| now + i);
    }
}

/// The host's clock as `on-tick` receives it: ms since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_come_one_interval_apart_and_missed_ones_are_not_made_up() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let mut schedule = TickSchedule::new(Some(second), start);
        assert!(!schedule.due(start));
        assert_eq!(schedule.wait(start), Some(second));
        assert!(schedule.due(start + second));
        // The plugin was busy for ten intervals: one tick, then the next
        // one a full interval later.
        let late = start + 10 * second;
        assert!(schedule.due(late));
        schedule.ticked(late);
        assert!(!schedule.due(late + second / 2));
        assert!(schedule.due(late + second));
    }

    #[test]
    fn no_interval_no_ticks() {
        let now = Instant::now();
        let schedule = TickSchedule::new(None, now);
        assert!(!schedule.due(now + Duration::from_secs(3600)));
        assert_eq!(schedule.wait(now), None);
    }
}
