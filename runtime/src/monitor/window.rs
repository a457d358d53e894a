//! A window of the last N feature vectors, in memory fixed at construction whatever the run time.

use crate::monitor::profile::Profile;
use crate::monitor::stats::KsTest;

/// One feature's statistics over a full window.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureStats {
    pub psi: f64,
    /// Continuous features only.
    pub ks: Option<KsTest>,
    /// Categorical features only.
    pub js_distance: Option<f64>,
    /// The window's mean (categorical: its most frequent category).
    pub mean: f64,
}

/// The last `capacity` feature vectors of a source.
#[derive(Debug, Clone)]
pub struct DriftWindow {
    features: usize,
    capacity: usize,
}

impl DriftWindow {
    /// A window of `capacity` vectors of `features` values each.
    pub fn new(features: usize, capacity: usize) -> DriftWindow {
        let _ = (features, capacity);
        todo!("branch stats")
    }

    /// Adds a vector, replacing the oldest once full.
    pub fn push(&mut self, values: &[f32]) {
        let _ = values;
        todo!("branch stats")
    }

    /// Vectors held (at most the capacity).
    pub fn len(&self) -> usize {
        todo!("branch stats")
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Empties the window (a new model began serving).
    pub fn clear(&mut self) {
        todo!("branch stats")
    }

    /// Each feature's statistics over the vectors held, against `profile`, in profile order.
    pub fn evaluate(&self, profile: &Profile) -> Vec<FeatureStats> {
        let _ = (profile, self.features, self.capacity);
        todo!("branch stats")
    }

    /// Bytes this window holds on the heap: the same from the first push to the last.
    pub fn heap_bytes(&self) -> usize {
        todo!("branch stats")
    }
}
