//! A check's status from its results: the damping thresholds (`success_before_passing`,
//! `failures_before_critical`, as Consul and Kubernetes probes have) and a service's health
//! from its checks (the worst status wins).
//!
//! Pure and deterministic; unit tested. Must not run anything.

use shoal_core::Health;

/// Most bytes of a check's output kept (the record carries only its first line, shorter).
pub const MAX_OUTPUT: usize = 4096;

/// The status of one check as results come in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damper {
    pub status: Health,
    /// Output of the result that set (or confirmed) `status`.
    pub output: String,
    success_before_passing: u32,
    failures_before_critical: u32,
    successes: u32,
    failures: u32,
}

/// Cuts `s` to at most `max` bytes at a character boundary.
pub fn bounded(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

impl Damper {
    pub fn new(
        initial: Health,
        success_before_passing: u32,
        failures_before_critical: u32,
    ) -> Self {
        Damper {
            status: initial,
            output: String::new(),
            success_before_passing: success_before_passing.max(1),
            failures_before_critical: failures_before_critical.max(1),
            successes: 0,
            failures: 0,
        }
    }

    /// Takes one result; returns whether the status changed. A warning applies at once; a
    /// pass needs `success_before_passing` in a row, a failure `failures_before_critical` in
    /// a row. While a change waits, the status (and its output) stay.
    pub fn apply(&mut self, result: Health, output: String) -> bool {
        let before = self.status;
        let output = bounded(output, MAX_OUTPUT);
        match result {
            Health::Passing => {
                self.failures = 0;
                self.successes = self.successes.saturating_add(1);
                if self.status == Health::Passing || self.successes >= self.success_before_passing {
                    self.status = Health::Passing;
                    self.output = output;
                }
            }
            Health::Critical => {
                self.successes = 0;
                self.failures = self.failures.saturating_add(1);
                if self.status == Health::Critical || self.failures >= self.failures_before_critical
                {
                    self.status = Health::Critical;
                    self.output = output;
                }
            }
            Health::Warning => {
                self.successes = 0;
                self.failures = 0;
                self.status = Health::Warning;
                self.output = output;
            }
        }
        self.status != before
    }
}

impl Damper {
    /// Sets the status at once, whatever the thresholds (a ttl that ran out: the app said
    /// nothing, there is no result to wait for).
    pub fn force(&mut self, status: Health, output: String) -> bool {
        let before = self.status;
        self.status = status;
        self.output = bounded(output, MAX_OUTPUT);
        self.successes = 0;
        self.failures = 0;
        self.status != before
    }
}

/// A service's health from its checks' (status, output): the worst status, with the output of
/// the first check that has it. `None` without checks.
pub fn aggregate<'a>(
    checks: impl IntoIterator<Item = (Health, &'a str)>,
) -> Option<(Health, &'a str)> {
    let mut worst: Option<(Health, &str)> = None;
    for (h, o) in checks {
        if worst.is_none_or(|(w, _)| h > w) {
            worst = Some((h, o));
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damping_waits_for_consecutive_results() {
        let mut d = Damper::new(Health::Passing, 2, 3);
        assert!(!d.apply(Health::Critical, "a".into()));
        assert!(!d.apply(Health::Critical, "b".into()));
        assert_eq!(d.status, Health::Passing);
        // A pass in between resets the count.
        assert!(!d.apply(Health::Passing, "ok".into()));
        assert!(!d.apply(Health::Critical, "c".into()));
        assert!(!d.apply(Health::Critical, "d".into()));
        assert!(d.apply(Health::Critical, "e".into()));
        assert_eq!((d.status, d.output.as_str()), (Health::Critical, "e"));
        assert!(!d.apply(Health::Passing, "p1".into()));
        assert_eq!(d.output, "e");
        assert!(d.apply(Health::Passing, "p2".into()));
        assert_eq!(d.status, Health::Passing);
        assert!(d.apply(Health::Warning, "slow".into()));
        assert_eq!(d.status, Health::Warning);
    }

    #[test]
    fn no_damping_by_default_and_output_is_bounded() {
        let mut d = Damper::new(Health::Critical, 1, 1);
        assert!(d.apply(Health::Passing, "x".repeat(10_000)));
        assert_eq!(d.output.len(), MAX_OUTPUT);
        assert!(d.apply(Health::Critical, "é".repeat(3000)));
        assert!(d.output.len() <= MAX_OUTPUT);
    }

    #[test]
    fn worst_check_decides() {
        assert_eq!(aggregate([]), None);
        assert_eq!(
            aggregate([
                (Health::Passing, "a"),
                (Health::Critical, "b"),
                (Health::Warning, "c"),
                (Health::Critical, "d")
            ]),
            Some((Health::Critical, "b"))
        );
    }
}
