//! When the next pass runs: `--interval` or `--schedule` (cron, UTC), plus `--jitter`, and the backoff after
//! a failed pass.
//!
//! - The first pass runs within a random `[0, --jitter]` of the start (so a new replica becomes ready within
//!   seconds, and a fleet whose pods all start together is spread over the jitter); the first pass after this
//!   replica becomes the leader runs at once.
//! - With `--interval` and a non-zero `--jitter`, the pass after the first good one comes at a uniformly random
//!   point of the interval: from then on a fleet's passes are spread over the whole interval. (Jitter alone
//!   only spreads them like a random walk, a few seconds per pass.) With `--schedule` (cron) passes keep to the
//!   cron times plus jitter: spreading them is the jitter's job.
//! - Every later pass waits for the schedule, then a random jitter in `[0, --jitter]`.
//! - After a failure the next attempt comes after an exponential backoff (5 s, 10 s, 20 s, …), never later
//!   than the next scheduled pass, and never earlier than a `Retry-After` the vault sent (capped at an hour),
//!   plus jitter. Every wait is at least [`MIN_WAIT`], so there is no hot loop whatever the inputs.

use std::time::Duration;

use crate::config::Schedule;

/// First backoff after a failed pass.
pub const BACKOFF_START: Duration = Duration::from_secs(5);
/// The longest `Retry-After` honoured (a longer one is cut to this).
pub const RETRY_AFTER_LIMIT: Duration = Duration::from_secs(3600);
/// The shortest wait between two passes.
pub const MIN_WAIT: Duration = Duration::from_millis(100);

/// The pass timing of one watch loop.
#[derive(Clone, Debug)]
pub struct Timing {
    schedule: Schedule,
    jitter: Duration,
}

impl Timing {
    pub fn new(schedule: Schedule, jitter: Duration) -> Self {
        Self { schedule, jitter }
    }

    /// Time from now to the next scheduled pass (without jitter).
    pub fn until_next(&self) -> Duration {
        match &self.schedule {
            Schedule::Interval(d) => *d,
            Schedule::Cron(cron) => cron
                .upcoming(chrono::Utc)
                .next()
                .and_then(|at| (at - chrono::Utc::now()).to_std().ok())
                // A schedule with no future run (a past year) degrades to a daily check rather than a hot loop.
                .unwrap_or(Duration::from_secs(86_400)),
        }
    }

    /// The typical gap between passes (the interval, or the gap between the next two cron runs).
    pub fn period(&self) -> Duration {
        match &self.schedule {
            Schedule::Interval(d) => *d,
            Schedule::Cron(cron) => {
                let mut it = cron.upcoming(chrono::Utc);
                match (it.next(), it.next()) {
                    (Some(a), Some(b)) => (b - a).to_std().unwrap_or(Duration::from_secs(60)),
                    _ => Duration::from_secs(86_400),
                }
            }
        }
    }

    /// `--jitter`: the largest random delay.
    pub fn max_jitter(&self) -> Duration {
        self.jitter
    }

    /// A random delay in `[0, --jitter]`.
    pub fn jitter(&self) -> Duration {
        let max = self.jitter.as_millis().min(u128::from(u64::MAX)) as u64;
        if max == 0 { Duration::ZERO } else { Duration::from_millis(rand::random_range(0..=max)) }
    }

    /// The wait after a successful pass.
    pub fn after_success(&self) -> Duration {
        (self.until_next() + self.jitter()).max(MIN_WAIT)
    }

    /// The wait after the first good pass: with `--interval` and a non-zero `--jitter`, a uniformly random point
    /// of the interval (the phase of this replica's passes from then on); otherwise [`Timing::after_success`].
    pub fn after_first_success(&self) -> Duration {
        match &self.schedule {
            Schedule::Interval(d) if !self.jitter.is_zero() => {
                let max = d.as_millis().min(u128::from(u64::MAX)) as u64;
                Duration::from_millis(rand::random_range(0..=max)).max(MIN_WAIT)
            }
            _ => self.after_success(),
        }
    }

    /// The wait after the `failures`-th consecutive failed pass (1 = the first).
    pub fn after_failure(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        backoff(failures, self.until_next(), retry_after) + self.jitter()
    }
}

/// Exponential backoff from [`BACKOFF_START`], capped at `cap` (the next scheduled pass), raised to a
/// `Retry-After` (itself capped at [`RETRY_AFTER_LIMIT`]), and at least [`MIN_WAIT`].
pub fn backoff(failures: u32, cap: Duration, retry_after: Option<Duration>) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    let wait = BACKOFF_START.saturating_mul(1 << exp).min(cap);
    let wait = match retry_after {
        Some(ra) => wait.max(ra.min(RETRY_AFTER_LIMIT)),
        None => wait,
    };
    wait.max(MIN_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn backoff_doubles_from_five_seconds_up_to_the_next_scheduled_pass() {
        let two_minutes = Duration::from_secs(120);
        let waits: Vec<u64> = (1..=7).map(|n| backoff(n, two_minutes, None).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 120, 120]);
        assert_eq!(backoff(1000, HOUR, None), HOUR, "no overflow after many failures");
    }

    #[test]
    fn the_pass_after_the_first_lands_anywhere_in_the_interval_when_jitter_is_on() {
        let interval = Duration::from_secs(120);
        let timing = Timing::new(Schedule::Interval(interval), Duration::from_secs(10));
        let waits: Vec<Duration> = (0..400).map(|_| timing.after_first_success()).collect();
        assert!(waits.iter().all(|w| *w >= MIN_WAIT && *w <= interval));
        // Spread over the interval, not bunched at its end: 400 uniform draws fill every quarter.
        for q in 0..4u32 {
            let (lo, hi) = (interval * q / 4, interval * (q + 1) / 4);
            assert!(waits.iter().any(|w| *w >= lo && *w < hi), "no wait in quarter {q}");
        }
        // Without jitter (tests, or a user who wants exact periods) the schedule is kept exactly.
        let exact = Timing::new(Schedule::Interval(interval), Duration::ZERO);
        assert_eq!(exact.after_first_success(), interval);
    }

    #[test]
    fn retry_after_is_honoured_even_beyond_the_backoff() {
        assert_eq!(backoff(1, HOUR, Some(Duration::from_secs(90))), Duration::from_secs(90));
        assert_eq!(backoff(1, Duration::from_secs(2), Some(Duration::from_secs(30))), Duration::from_secs(30));
        assert_eq!(backoff(1, HOUR, Some(Duration::from_secs(86_400))), RETRY_AFTER_LIMIT);
    }

    #[test]
    fn a_tiny_interval_never_makes_a_hot_loop() {
        assert!(backoff(1, Duration::ZERO, None) >= MIN_WAIT);
        let t = Timing::new(Schedule::Interval(Duration::from_millis(1)), Duration::ZERO);
        assert!(t.after_success() >= MIN_WAIT);
    }

    #[test]
    fn jitter_stays_within_its_bound() {
        let t = Timing::new(Schedule::Interval(Duration::from_secs(60)), Duration::from_secs(10));
        for _ in 0..200 {
            let j = t.jitter();
            assert!(j <= Duration::from_secs(10), "{j:?}");
        }
        let none = Timing::new(Schedule::Interval(Duration::from_secs(60)), Duration::ZERO);
        assert_eq!(none.jitter(), Duration::ZERO);
    }

    #[test]
    fn a_cron_schedule_waits_until_its_next_run() {
        let cron = crate::config::parse_cron("*/10 * * * *").unwrap();
        let t = Timing::new(Schedule::Cron(Box::new(cron)), Duration::ZERO);
        assert!(t.until_next() <= Duration::from_secs(600));
        assert_eq!(t.period(), Duration::from_secs(600));
    }
}
