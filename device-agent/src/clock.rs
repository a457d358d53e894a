//! Time as the data path reads it: monotonic time for intervals and deadlines, wall-clock milliseconds for
//! the payloads' `*_ms` fields, and waiting until a deadline. The agent runs on [`SystemClock`]; unit tests
//! drive a [`ManualClock`], so paced loops and rates are tested without real waits.

use crate::shutdown::Shutdown;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of time.
pub trait Clock: Send + Sync {
    /// Monotonic time.
    fn now(&self) -> Instant;
    /// Milliseconds since the Unix epoch.
    fn unix_time_ms(&self) -> u64;
    /// Waits until `deadline` or until `shutdown` is triggered; true when it was.
    fn wait_until(&self, deadline: Instant, shutdown: &Shutdown) -> bool;
}

/// The operating system's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn unix_time_ms(&self) -> u64 {
        unix_time_ms()
    }

    fn wait_until(&self, deadline: Instant, shutdown: &Shutdown) -> bool {
        shutdown.wait(deadline.saturating_duration_since(Instant::now()))
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970), the time base of every `*_ms` field.
pub fn unix_time_ms() -> u64 {
    since_epoch_ms(SystemTime::now())
}

fn since_epoch_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
}

/// A clock that moves only when told to: by [`ManualClock::advance`], or by a wait, which returns at once
/// with the clock at the deadline, as if the time had passed.
#[cfg(test)]
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    start_unix_ms: u64,
    elapsed: std::sync::Mutex<Duration>,
}

#[cfg(test)]
impl ManualClock {
    /// A clock that reads `start_unix_ms` on the wall.
    pub fn new(start_unix_ms: u64) -> ManualClock {
        ManualClock { start: Instant::now(), start_unix_ms, elapsed: std::sync::Mutex::new(Duration::ZERO) }
    }

    /// Moves both clocks forward by `by`.
    pub fn advance(&self, by: Duration) {
        *self.lock() += by;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Duration> {
        self.elapsed.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + *self.lock()
    }

    fn unix_time_ms(&self) -> u64 {
        let elapsed_ms = u64::try_from(self.lock().as_millis()).unwrap_or(u64::MAX);
        self.start_unix_ms.saturating_add(elapsed_ms)
    }

    fn wait_until(&self, deadline: Instant, shutdown: &Shutdown) -> bool {
        if shutdown.is_triggered() {
            return true;
        }
        let mut elapsed = self.lock();
        *elapsed = (*elapsed).max(deadline.saturating_duration_since(self.start));
        false
    }
}

/// Spaces events `period` apart on a clock, by deadlines rather than sleeps, so that the time each event
/// takes does not slow the rate down.
#[derive(Debug)]
pub struct Pacer {
    period: Duration,
    next: Option<Instant>,
}

impl Pacer {
    /// Events `period` apart; a zero period does not wait.
    pub fn new(period: Duration) -> Pacer {
        Pacer { period, next: None }
    }

    /// Events at `rate` per second; a rate that is not a positive finite number does not wait.
    pub fn per_second(rate: f64) -> Pacer {
        Pacer::new(Duration::try_from_secs_f64(1.0 / rate).unwrap_or(Duration::ZERO))
    }

    /// Waits until one period after the previous event (not at all before the first); true when `shutdown`
    /// was triggered. After a stall (a suspended board, a slow consumer) the schedule restarts from now
    /// instead of bursting the missed events.
    pub fn wait(&mut self, clock: &dyn Clock, shutdown: &Shutdown) -> bool {
        if self.period.is_zero() {
            return shutdown.is_triggered();
        }
        let now = clock.now();
        let deadline = match self.next {
            Some(next) if next > now => next,
            _ => now,
        };
        self.next = Some(deadline + self.period);
        clock.wait_until(deadline, shutdown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_when_told_and_jumps_to_deadlines() {
        let clock = ManualClock::new(1_000);
        let start = clock.now();
        clock.advance(Duration::from_millis(250));
        assert_eq!((clock.now() - start, clock.unix_time_ms()), (Duration::from_millis(250), 1_250));
        let shutdown = Shutdown::default();
        assert!(!clock.wait_until(start + Duration::from_secs(2), &shutdown));
        assert_eq!(clock.unix_time_ms(), 3_000);
        // A deadline in the past does not move the clock back.
        assert!(!clock.wait_until(start, &shutdown));
        assert_eq!(clock.unix_time_ms(), 3_000);
        shutdown.trigger();
        assert!(clock.wait_until(start + Duration::from_secs(10), &shutdown));
        assert_eq!(clock.unix_time_ms(), 3_000);
    }

    #[test]
    fn pacer_spaces_events_by_deadlines() {
        let clock = ManualClock::new(0);
        let shutdown = Shutdown::default();
        let mut pacer = Pacer::per_second(10.0);
        let mut times = Vec::new();
        for _ in 0..4 {
            assert!(!pacer.wait(&clock, &shutdown));
            times.push(clock.unix_time_ms());
            // The work between two events comes out of the period, not on top of it.
            clock.advance(Duration::from_millis(30));
        }
        assert_eq!(times, [0, 100, 200, 300]);
    }

    #[test]
    fn pacer_restarts_after_a_stall_and_stops_on_shutdown() {
        let clock = ManualClock::new(0);
        let shutdown = Shutdown::default();
        let mut pacer = Pacer::new(Duration::from_millis(100));
        pacer.wait(&clock, &shutdown);
        clock.advance(Duration::from_millis(350));
        pacer.wait(&clock, &shutdown);
        assert_eq!(clock.unix_time_ms(), 350, "no catching up on missed events");
        pacer.wait(&clock, &shutdown);
        assert_eq!(clock.unix_time_ms(), 450);
        shutdown.trigger();
        assert!(pacer.wait(&clock, &shutdown));
        assert!(Pacer::per_second(f64::INFINITY).wait(&clock, &shutdown));
        assert_eq!(clock.unix_time_ms(), 450);
    }
}
