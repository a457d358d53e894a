//! Reconnect delays: exponential backoff, capped, with jitter, so that cameras that failed together (a switch
//! rebooted) do not all come back in the same instant, and a camera that stays down is asked twice a minute.

use std::time::Duration;

const INITIAL: Duration = Duration::from_millis(500);
const MAX: Duration = Duration::from_secs(30);

/// Delays from [`INITIAL`] doubling to [`MAX`], each drawn between half the step and the step ("equal jitter").
#[derive(Debug)]
pub struct Backoff {
    step: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { step: INITIAL }
    }
}

impl Backoff {
    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let half = self.step / 2;
        self.step = (self.step * 2).min(MAX);
        let half_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(fastrand::u64(0..=half_ms))
    }

    /// The stream works again: the next loss starts from the shortest delay.
    pub fn reset(&mut self) {
        self.step = INITIAL;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_to_the_cap_with_jitter_and_reset() {
        let mut backoff = Backoff::default();
        let steps_ms = [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000];
        let delays: Vec<Duration> = steps_ms.iter().map(|_| backoff.next_delay()).collect();
        for (delay, step) in delays.iter().zip(steps_ms) {
            let step = Duration::from_millis(step);
            assert!(*delay >= step / 2 && *delay <= step, "{delay:?} outside [{:?}, {step:?}]", step / 2);
        }
        backoff.reset();
        assert!(backoff.next_delay() <= INITIAL);
        let draws: Vec<Duration> = (0..20).map(|_| Backoff::default().next_delay()).collect();
        assert!(draws.iter().any(|d| *d != draws[0]), "jittered: {draws:?}");
    }
}
