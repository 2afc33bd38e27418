//! When a delivery is attempted again: Standard Webhooks' schedule (immediately, then 5 s,
//! 5 min, 30 min, 2 h, 5 h, 10 h and 10 h after each failure: 8 attempts over about 27 h),
//! optionally scaled down for tests (`--webhook-retry-base`: the duration that replaces the
//! schedule's 5 s step, every step scaled alike).

use std::time::Duration;

/// The wait before each attempt, from the first.
pub const SCHEDULE: [Duration; 8] = [
    Duration::ZERO,
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// The schedule's second step, which `--webhook-retry-base` replaces.
pub const BASE: Duration = Duration::from_secs(5);

/// The retry schedule in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// What the 5 s step becomes (5 s: the schedule as published).
    pub base: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { base: BASE }
    }
}

impl Backoff {
    /// How long after attempt `attempt` (1-based) failed the next one is due; `None`: it was the
    /// last, and the subscription is disabled.
    pub fn after_failure(&self, attempt: u32) -> Option<Duration> {
        let step = SCHEDULE.get(attempt as usize)?;
        Some(step.mul_f64(self.base.as_secs_f64() / BASE.as_secs_f64()))
    }

    /// How many attempts a delivery gets.
    pub fn attempts(&self) -> u32 {
        SCHEDULE.len() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_standard_webhooks_schedule() {
        let b = Backoff::default();
        let waits: Vec<_> = (1..=8).map(|a| b.after_failure(a)).collect();
        assert_eq!(
            waits,
            vec![
                Some(Duration::from_secs(5)),
                Some(Duration::from_secs(300)),
                Some(Duration::from_secs(1800)),
                Some(Duration::from_secs(7200)),
                Some(Duration::from_secs(18000)),
                Some(Duration::from_secs(36000)),
                Some(Duration::from_secs(36000)),
                None,
            ]
        );
        let total: Duration = SCHEDULE.iter().sum();
        assert!(
            total >= Duration::from_secs(24 * 3600),
            "about a day of retries: {total:?}"
        );
        assert_eq!(b.attempts(), 8);
    }

    #[test]
    fn scales_every_step_alike() {
        let b = Backoff {
            base: Duration::from_millis(100),
        };
        assert_eq!(b.after_failure(1), Some(Duration::from_millis(100)));
        assert_eq!(b.after_failure(2), Some(Duration::from_secs(6)));
        assert_eq!(b.after_failure(8), None);
    }
}
