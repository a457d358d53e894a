//! At most one snapshot per interval and source.

use std::time::{Duration, Instant};

/// Spaces snapshots at least `interval` apart.
#[derive(Debug)]
pub struct RateLimit {
    interval: Duration,
    last: Option<Instant>,
}

impl RateLimit {
    pub fn new(interval: Duration) -> RateLimit {
        RateLimit { interval, last: None }
    }

    /// Whether a snapshot may be taken at `now`: the first always may.
    pub fn allows(&self, now: Instant) -> bool {
        self.last.is_none_or(|last| now.saturating_duration_since(last) >= self.interval)
    }

    /// A snapshot was taken at `now`: the next waits for the interval.
    pub fn taken(&mut self, now: Instant) {
        self.last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_snapshot_per_interval() {
        let start = Instant::now();
        let mut limit = RateLimit::new(Duration::from_secs(10));
        assert!(limit.allows(start));
        limit.taken(start);
        assert!(!limit.allows(start));
        assert!(!limit.allows(start + Duration::from_millis(9_999)));
        assert!(limit.allows(start + Duration::from_secs(10)));
        // Not taken (the hand-off was busy): the next frame may try again.
        assert!(limit.allows(start + Duration::from_secs(11)));
        limit.taken(start + Duration::from_secs(11));
        assert!(!limit.allows(start + Duration::from_secs(20)));
    }

    #[test]
    fn a_zero_interval_allows_every_snapshot() {
        let start = Instant::now();
        let mut limit = RateLimit::new(Duration::ZERO);
        limit.taken(start);
        assert!(limit.allows(start));
    }
}
