//! Exponential backoff with jitter between a camera's connection attempts: a camera that is down, or that refuses
//! the credentials, is asked at a bounded rate, and cameras that failed together (a switch rebooted) or agents
//! restarted together do not reconnect in step.

use std::time::Duration;

/// The waits between attempts: `initial`, doubled after each failure up to `max`, each shortened by a random
/// part of up to a quarter (never under `initial / 2`, so the rate stays bounded).
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { initial, max: max.max(initial), next: initial }
    }

    /// The wait before the next attempt; the one after it is longer.
    pub fn next_wait(&mut self) -> Duration {
        let full = self.next;
        self.next = (self.next * 2).min(self.max);
        full.mul_f64(1.0 - fastrand::f64() / 4.0).max(self.initial / 2)
    }

    /// The longest wait: for failures that another attempt soon will not fix (an unsupported codec).
    pub fn longest(&self) -> Duration {
        self.max
    }

    /// The stream worked: the next failure waits `initial` again.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_maximum_with_jitter_under_a_quarter() {
        let (initial, max) = (Duration::from_millis(1000), Duration::from_millis(30_000));
        let mut backoff = Backoff::new(initial, max);
        let full = [1000, 2000, 4000, 8000, 16_000, 30_000, 30_000];
        let waits: Vec<Duration> = full.iter().map(|_| backoff.next_wait()).collect();
        for (wait, full) in waits.iter().zip(full) {
            let full = Duration::from_millis(full);
            assert!(*wait <= full && *wait >= full.mul_f64(0.75), "{wait:?} for {full:?}");
        }
        backoff.reset();
        assert!(backoff.next_wait() <= initial);
        assert_eq!(backoff.longest(), max);
    }

    #[test]
    fn jitter_spreads_the_waits() {
        let mut backoff = Backoff::new(Duration::from_secs(30), Duration::from_secs(30));
        let waits: std::collections::HashSet<Duration> = (0..20).map(|_| backoff.next_wait()).collect();
        assert!(waits.len() > 10, "{waits:?}");
    }
}
