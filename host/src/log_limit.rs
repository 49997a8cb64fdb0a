//! Rate-limited logging for events an outsider can trigger at will (refused connections, failed
//! authentications): the first one of each interval is logged with how many were suppressed
//! since the previous line, the rest only counted, so a flood cannot flood the log.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Default interval between two lines of one limiter.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    last: Option<Instant>,
    suppressed: u64,
}

impl Default for LogLimiter {
    fn default() -> Self {
        Self::new(LOG_INTERVAL)
    }
}

impl LogLimiter {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new(State {
                last: None,
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)` if this occurrence should be logged, `n` being how many were suppressed since
    /// the last logged one; `None` if it should only be counted.
    pub fn allow(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if state
            .last
            .is_some_and(|last| now.duration_since(last) < self.interval)
        {
            state.suppressed += 1;
            return None;
        }
        state.last = Some(now);
        Some(std::mem::take(&mut state.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_suppressed_count() {
        let limiter = LogLimiter::new(Duration::from_millis(200));
        assert_eq!(limiter.allow(), Some(0));
        for _ in 0..5 {
            assert_eq!(limiter.allow(), None);
        }
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(limiter.allow(), Some(5));
        assert_eq!(limiter.allow(), None);
    }
}
