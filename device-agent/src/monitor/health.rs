//! One source's monitor as health reports it: counters written on the worker, MQTT and monitor threads, and
//! the monitor thread's latest state.

use protocol::wire::{Alert, FeatureDrift, MonitorHealth};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// A source's monitor counters since start, and its latest state.
#[derive(Debug, Default)]
pub struct MonitorStats {
    observed: AtomicU64,
    dropped: AtomicU64,
    windows_evaluated: AtomicU64,
    alerts_raised: AtomicU64,
    unpublished: AtomicU64,
    latest: Mutex<Latest>,
}

/// What the monitor thread last measured.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Latest {
    pub features: Vec<FeatureDrift>,
    pub active_alerts: Vec<Alert>,
    pub accuracy: Option<f32>,
    pub feedback: FeedbackTotals,
    /// Evidence samples and bytes on disk.
    pub evidence: (u64, u64),
}

/// Feedback counters since start, over every model served.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FeedbackTotals {
    pub matched: u64,
    pub late: u64,
    pub unknown: u64,
    pub invalid: u64,
}

impl FeedbackTotals {
    pub fn plus(self, other: FeedbackTotals) -> FeedbackTotals {
        FeedbackTotals {
            matched: self.matched + other.matched,
            late: self.late + other.late,
            unknown: self.unknown + other.unknown,
            invalid: self.invalid + other.invalid,
        }
    }
}

impl MonitorStats {
    pub fn count_observed(&self) {
        self.observed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_window(&self) {
        self.windows_evaluated.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_raised(&self) {
        self.alerts_raised.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_unpublished(&self) {
        self.unpublished.fetch_add(1, Ordering::Relaxed);
    }

    /// Replaces the latest state.
    pub fn set_latest(&self, latest: Latest) {
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = latest;
    }

    pub fn health(&self, source: &str) -> MonitorHealth {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner).clone();
        MonitorHealth {
            source: source.to_owned(),
            observed: read(&self.observed),
            dropped: read(&self.dropped),
            windows_evaluated: read(&self.windows_evaluated),
            features: latest.features,
            active_alerts: latest.active_alerts,
            alerts_raised: read(&self.alerts_raised),
            accuracy: latest.accuracy,
            feedback_matched: latest.feedback.matched,
            feedback_late: latest.feedback.late,
            feedback_unknown: latest.feedback.unknown,
            feedback_invalid: latest.feedback.invalid,
            evidence_samples: latest.evidence.0,
            evidence_bytes: latest.evidence.1,
            unpublished: read(&self.unpublished),
        }
    }
}
