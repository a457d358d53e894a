//! Stuck inferences: a worker that has been in one inference for many times its usual (p99) latency is stuck;
//! past a hard limit the agent counts as dead (the supervisor stops pinging systemd's watchdog). The decision is
//! pure: the time and what each worker is doing go in, the changes come out.

use crate::clock::Clock;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// When a worker counts as stuck (`[supervision]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StuckLimits {
    /// Stuck after this many times the source's p99 latency...
    pub factor: f64,
    /// ...but never before this (it is also the limit until a first inference has returned).
    pub floor: Duration,
    /// Busy this long: the agent is dead, to be restarted. `None`: never.
    pub restart_after: Option<Duration>,
}

/// When a worker began the inference it is in; written by the worker, read by the supervisor.
pub struct Busy {
    since: Mutex<Option<Instant>>,
    clock: Arc<dyn Clock>,
}

impl Busy {
    pub fn new(clock: Arc<dyn Clock>) -> Busy {
        Busy { since: Mutex::new(None), clock }
    }

    /// The worker starts an inference.
    pub fn begin(&self) {
        *self.lock() = Some(self.clock.now());
    }

    /// The worker returned.
    pub fn end(&self) {
        *self.lock() = None;
    }

    /// When the current inference began; `None` while the worker waits for work.
    pub fn since(&self) -> Option<Instant> {
        *self.lock()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.since.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One worker, as the detector sees it at one instant.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    pub source: &'a str,
    pub busy_since: Option<Instant>,
    /// The source's p99 latency so far; `None` before its first inference returned.
    pub p99: Option<Duration>,
}

/// A change the detector found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `source`'s worker has been busy for `busy`, past its `limit`.
    Stuck { source: String, busy: Duration, limit: Duration },
    /// `source`'s worker, stuck before, returned after at most `busy`.
    Returned { source: String, busy: Duration },
}

/// What one check found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub changes: Vec<Change>,
    /// Sources whose worker has been busy past [`StuckLimits::restart_after`].
    pub past_restart: Vec<String>,
}

/// Remembers which workers it reported stuck, so that each is reported once and its return too.
#[derive(Debug)]
pub struct StuckDetector {
    limits: StuckLimits,
    /// Reported stuck: the source and when its inference began.
    stuck: Vec<(String, Instant)>,
}

impl StuckDetector {
    pub fn new(limits: StuckLimits) -> StuckDetector {
        StuckDetector { limits, stuck: Vec::new() }
    }

    /// The stuck limit for a source with this p99 latency. Before its first inference returned there is no
    /// p99, and the first one also warms the session up (slow on a small board, or under emulation): it gets
    /// the factor times the floor.
    pub fn limit(&self, p99: Option<Duration>) -> Duration {
        let scaled = match p99 {
            Some(p99) => Duration::try_from_secs_f64(p99.as_secs_f64() * self.limits.factor).ok(),
            None => Duration::try_from_secs_f64(self.limits.floor.as_secs_f64() * self.limits.factor).ok(),
        };
        scaled.unwrap_or(Duration::MAX).max(self.limits.floor)
    }

    pub fn check<'a>(&mut self, now: Instant, workers: impl IntoIterator<Item = Observation<'a>>) -> Verdict {
        let mut verdict = Verdict::default();
        for worker in workers {
            if let Some(index) = self.stuck.iter().position(|(source, _)| source == worker.source) {
                let began = self.stuck[index].1;
                if worker.busy_since == Some(began) {
                    self.check_restart(now, worker.source, began, &mut verdict);
                    continue;
                }
                self.stuck.swap_remove(index);
                let busy = now.saturating_duration_since(began);
                verdict.changes.push(Change::Returned { source: worker.source.to_owned(), busy });
            }
            let Some(began) = worker.busy_since else { continue };
            let busy = now.saturating_duration_since(began);
            let limit = self.limit(worker.p99);
            if busy >= limit {
                self.stuck.push((worker.source.to_owned(), began));
                verdict.changes.push(Change::Stuck { source: worker.source.to_owned(), busy, limit });
                self.check_restart(now, worker.source, began, &mut verdict);
            }
        }
        verdict
    }

    fn check_restart(&self, now: Instant, source: &str, began: Instant, verdict: &mut Verdict) {
        if self.limits.restart_after.is_some_and(|after| now.saturating_duration_since(began) >= after) {
            verdict.past_restart.push(source.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    const LIMITS: StuckLimits =
        StuckLimits { factor: 10.0, floor: Duration::from_secs(2), restart_after: Some(Duration::from_secs(60)) };

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn observe<'a>(source: &'a str, busy: &Busy, p99: Option<Duration>) -> Observation<'a> {
        Observation { source, busy_since: busy.since(), p99 }
    }

    #[test]
    fn the_limit_is_the_p99_times_the_factor_never_below_the_floor() {
        let detector = StuckDetector::new(LIMITS);
        assert_eq!(detector.limit(Some(ms(500))), Duration::from_secs(5));
        assert_eq!(detector.limit(Some(ms(50))), Duration::from_secs(2), "floor");
        assert_eq!(detector.limit(None), Duration::from_secs(20), "no latency yet: the factor times the floor");
    }

    #[test]
    fn a_worker_is_reported_stuck_once_and_returned_when_it_returns() {
        let clock = Arc::new(ManualClock::new(0));
        let busy = Busy::new(clock.clone());
        let mut detector = StuckDetector::new(LIMITS);
        let p99 = Some(ms(300));

        assert_eq!(detector.check(clock.now(), [observe("front", &busy, p99)]), Verdict::default(), "idle");
        busy.begin();
        clock.advance(ms(2_900));
        assert_eq!(detector.check(clock.now(), [observe("front", &busy, p99)]), Verdict::default(), "under 3 s");
        clock.advance(ms(100));
        let verdict = detector.check(clock.now(), [observe("front", &busy, p99)]);
        let stuck = Change::Stuck { source: "front".into(), busy: ms(3_000), limit: ms(3_000) };
        assert_eq!(verdict.changes, [stuck]);
        assert!(verdict.past_restart.is_empty());
        clock.advance(ms(5_000));
        assert_eq!(detector.check(clock.now(), [observe("front", &busy, p99)]), Verdict::default(), "reported once");

        busy.end();
        clock.advance(ms(1_000));
        let verdict = detector.check(clock.now(), [observe("front", &busy, p99)]);
        assert_eq!(verdict.changes, [Change::Returned { source: "front".into(), busy: ms(9_000) }]);
        assert_eq!(detector.check(clock.now(), [observe("front", &busy, p99)]), Verdict::default());
    }

    #[test]
    fn a_new_inference_after_a_stuck_one_starts_a_new_count() {
        let clock = Arc::new(ManualClock::new(0));
        let busy = Busy::new(clock.clone());
        let mut detector = StuckDetector::new(LIMITS);
        let p99 = Some(ms(100));
        busy.begin();
        clock.advance(ms(2_500));
        assert_eq!(detector.check(clock.now(), [observe("front", &busy, p99)]).changes.len(), 1);
        // Between two checks it returned and began the next inference.
        busy.end();
        busy.begin();
        clock.advance(ms(500));
        let verdict = detector.check(clock.now(), [observe("front", &busy, p99)]);
        assert_eq!(verdict.changes, [Change::Returned { source: "front".into(), busy: ms(3_000) }]);
    }

    #[test]
    fn past_the_hard_limit_the_source_is_named_at_every_check() {
        let clock = Arc::new(ManualClock::new(0));
        let (front, rear) = (Busy::new(clock.clone()), Busy::new(clock.clone()));
        let mut detector = StuckDetector::new(LIMITS);
        front.begin();
        clock.advance(Duration::from_secs(30));
        rear.begin();
        let both = |detector: &mut StuckDetector| {
            detector.check(clock.now(), [observe("front", &front, None), observe("rear", &rear, None)])
        };
        assert!(both(&mut detector).past_restart.is_empty());
        clock.advance(Duration::from_secs(30));
        let verdict = both(&mut detector);
        assert_eq!(verdict.past_restart, ["front"]);
        assert_eq!(verdict.changes.len(), 1, "rear was reported stuck at its own limit, front before");
        assert_eq!(both(&mut detector).past_restart, ["front"], "still past it");
        front.end();
        assert!(both(&mut detector).past_restart.is_empty());
    }

    #[test]
    fn without_a_hard_limit_a_stuck_worker_never_asks_for_a_restart() {
        let clock = Arc::new(ManualClock::new(0));
        let busy = Busy::new(clock.clone());
        let mut detector = StuckDetector::new(StuckLimits { restart_after: None, ..LIMITS });
        busy.begin();
        clock.advance(Duration::from_secs(3600));
        let verdict = detector.check(clock.now(), [observe("front", &busy, None)]);
        assert_eq!((verdict.changes.len(), verdict.past_restart.len()), (1, 0));
    }
}
