//! The hand-off from the `health` thread to the Prometheus exporter: each tick's report and the latency
//! histograms taken with it, so that `/metrics` and MQTT health never disagree.

use super::SourceLatency;
use protocol::wire::Health;
use std::sync::{Arc, Mutex, PoisonError};

/// What one health tick measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The report, as published on the health topic.
    pub health: Health,
    /// Each source's latency histograms since start.
    pub latency: Vec<SourceLatency>,
}

/// The latest [`Snapshot`]: the health thread replaces it, each scrape renders it.
#[derive(Debug)]
pub struct LatestSnapshot(Mutex<Arc<Snapshot>>);

impl LatestSnapshot {
    pub fn new(first: Snapshot) -> LatestSnapshot {
        LatestSnapshot(Mutex::new(Arc::new(first)))
    }

    pub fn set(&self, snapshot: Snapshot) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(snapshot);
    }

    /// The latest snapshot, shared: rendering it holds no lock.
    pub fn get(&self) -> Arc<Snapshot> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}
