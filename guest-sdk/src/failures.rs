//! Reporting every failure of a batch at once, for hooks that keep going
//! past a failed call instead of stopping at the first.

/// Most bytes of failure messages joined into one report; the host keeps
/// only the first 4 KiB of an error anyway, so more would be built for
/// nothing.
pub const MAX_REPORT_BYTES: usize = 4096;

/// Collects the outcomes of a batch's calls and turns them into one result:
/// no failure is `Ok(())`; one is that failure's own message; several are
/// `"N of M <what> failed: first; second; …"`, keeping whole messages up to
/// 4 KiB (`MAX_REPORT_BYTES`) and counting the rest (`"… and K more"`).
///
/// ```
/// use leaderhook_sdk::BatchFailures;
///
/// let mut failures = BatchFailures::new("transfer requests");
/// failures.record(Ok(()));
/// failures.record(Err("orders-0: not granted".to_string()));
/// failures.record(Err("orders-1: not granted".to_string()));
/// assert_eq!(
///     failures.into_result(),
///     Err("2 of 3 transfer requests failed: orders-0: not granted; orders-1: not granted".into())
/// );
/// ```
#[derive(Debug, Clone)]
pub struct BatchFailures {
    what: &'static str,
    tried: usize,
    failed: usize,
    joined: String,
    omitted: usize,
    only: Option<String>,
}

impl BatchFailures {
    /// `what` names the calls, plural, for the report ("events",
    /// "transfer requests").
    pub fn new(what: &'static str) -> Self {
        Self {
            what,
            tried: 0,
            failed: 0,
            joined: String::new(),
            omitted: 0,
            only: None,
        }
    }

    /// Counts one call and keeps its failure, if it failed.
    pub fn record(&mut self, outcome: Result<(), String>) {
        self.tried += 1;
        let Err(message) = outcome else {
            return;
        };
        self.failed += 1;
        if self.failed == 1 {
            self.only = Some(message.clone());
        }
        let separator = if self.joined.is_empty() { 0 } else { 2 };
        if self.joined.len() + separator + message.len() > MAX_REPORT_BYTES {
            self.omitted += 1;
            return;
        }
        if separator > 0 {
            self.joined.push_str("; ");
        }
        self.joined.push_str(&message);
    }

    /// Whether any call failed so far.
    pub fn any(&self) -> bool {
        self.failed > 0
    }

    /// The batch's result.
    pub fn into_result(self) -> Result<(), String> {
        match (self.failed, self.only) {
            (0, _) => Ok(()),
            (1, Some(only)) => Err(only),
            (n, _) => {
                let mut report = format!(
                    "{n} of {} {} failed: {}",
                    self.tried, self.what, self.joined
                );
                if self.omitted > 0 {
                    report.push_str(&format!("; … and {} more", self.omitted));
                }
                Err(report)
            }
        }
    }
}

impl Extend<Result<(), String>> for BatchFailures {
    fn extend<I: IntoIterator<Item = Result<(), String>>>(&mut self, outcomes: I) {
        for outcome in outcomes {
            self.record(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(outcomes: Vec<Result<(), String>>) -> Result<(), String> {
        let mut failures = BatchFailures::new("events");
        failures.extend(outcomes);
        failures.into_result()
    }

    #[test]
    fn none_one_or_several() {
        assert_eq!(report(vec![Ok(()), Ok(())]), Ok(()));
        assert_eq!(report(vec![]), Ok(()));
        assert_eq!(
            report(vec![Ok(()), Err("t-0: refused".into())]),
            Err("t-0: refused".into()),
            "one failure is reported as it is"
        );
        assert_eq!(
            report(vec![Err("a".into()), Ok(()), Err("b".into())]),
            Err("2 of 3 events failed: a; b".into())
        );
    }

    #[test]
    fn the_report_is_bounded_in_bytes() {
        let long = "x".repeat(1000);
        let outcomes = (0..100).map(|_| Err(long.clone())).collect();
        let report = report(outcomes).unwrap_err();
        assert!(report.len() <= MAX_REPORT_BYTES + 100, "{}", report.len());
        assert!(
            report.starts_with("100 of 100 events failed: xxx"),
            "{report}"
        );
        assert!(report.ends_with("; … and 96 more"), "{report}");
    }
}
