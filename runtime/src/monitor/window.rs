//! A window of the last N feature vectors, in memory fixed at construction whatever the run time.

use crate::monitor::features::FeatureKind;
use crate::monitor::profile::{FeatureProfile, Profile, category_counts, most_frequent};
use crate::monitor::stats::{KsTest, js_distance, ks_against_reference, psi};

/// One feature's statistics over a full window.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureStats {
    /// Population Stability Index against the profile's bins (or categories).
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
    /// `capacity` vectors of `features` values, a ring allocated whole at construction.
    values: Vec<f32>,
    /// Vectors held.
    len: usize,
    /// The slot the next vector goes into.
    next: usize,
}

impl DriftWindow {
    /// A window of `capacity` vectors of `features` values each.
    pub fn new(features: usize, capacity: usize) -> DriftWindow {
        DriftWindow { features, capacity, values: vec![0.0; features * capacity], len: 0, next: 0 }
    }

    /// Adds a vector, replacing the oldest once full. A vector of another length (a bug of the caller) is
    /// truncated or padded with zeros, so that the ring keeps its shape.
    pub fn push(&mut self, values: &[f32]) {
        debug_assert_eq!(values.len(), self.features);
        if self.capacity == 0 {
            return;
        }
        let slot = &mut self.values[self.next * self.features..(self.next + 1) * self.features];
        let copied = values.len().min(self.features);
        slot[..copied].copy_from_slice(&values[..copied]);
        slot[copied..].fill(0.0);
        self.next = (self.next + 1) % self.capacity;
        self.len = (self.len + 1).min(self.capacity);
    }

    /// Vectors held (at most the capacity).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first push and after [`DriftWindow::clear`].
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True once the window holds `capacity` vectors.
    pub fn is_full(&self) -> bool {
        self.len == self.capacity
    }

    /// Empties the window (a new model began serving).
    pub fn clear(&mut self) {
        self.len = 0;
        self.next = 0;
    }

    /// Each feature's statistics over the vectors held, against `profile`, in profile order: PSI over the
    /// profile's fixed bins (never recomputed from the window), KS for continuous features against the
    /// profile's quantiles with its size, Jensen-Shannon for categorical ones.
    pub fn evaluate(&self, profile: &Profile) -> Vec<FeatureStats> {
        debug_assert_eq!(profile.features.len(), self.features);
        let mut column = Vec::with_capacity(self.len);
        profile
            .features
            .iter()
            .take(self.features)
            .enumerate()
            .map(|(feature, reference)| {
                column.clear();
                // The order of the vectors does not matter to any statistic: the ring is read as it lies.
                column.extend(
                    self.values[..self.len * self.features]
                        .chunks_exact(self.features)
                        .map(|vector| f64::from(vector[feature])),
                );
                feature_stats(reference, &mut column, profile.size)
            })
            .collect()
    }

    /// Bytes this window holds on the heap: the same from the first push to the last.
    pub fn heap_bytes(&self) -> usize {
        self.values.capacity() * size_of::<f32>()
    }
}

/// The statistics of one feature's window `values` (reordered) against its `reference`.
fn feature_stats(reference: &FeatureProfile, values: &mut [f64], reference_size: u64) -> FeatureStats {
    match reference.kind {
        FeatureKind::Continuous => {
            let mut counts = vec![0u64; reference.proportions.len()];
            for &value in values.iter() {
                // A profile built by hand may have fewer shares than bins; `Profile::parse` refuses that.
                if let Some(count) = counts.get_mut(reference.bin(value)) {
                    *count += 1;
                }
            }
            values.sort_unstable_by(f64::total_cmp);
            let mean = if values.is_empty() { 0.0 } else { values.iter().sum::<f64>() / values.len() as f64 };
            FeatureStats {
                psi: psi(&reference.proportions, &counts),
                ks: Some(ks_against_reference(&reference.quantiles, reference_size, values)),
                js_distance: None,
                mean,
            }
        }
        FeatureKind::Categorical { categories } => {
            let counts = category_counts(categories, values.iter().copied());
            let shares: Vec<f64> = counts.iter().map(|&count| count as f64).collect();
            FeatureStats {
                psi: psi(&reference.proportions, &counts),
                ks: None,
                js_distance: Some(js_distance(&shares, &reference.proportions)),
                mean: most_frequent(&counts) as f64,
            }
        }
    }
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;
