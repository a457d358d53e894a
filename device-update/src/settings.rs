//! What the machine needs to know of the device's update configuration: the agent's `[update]` table holds
//! these as they are (hence `Deserialize`, strict like the rest of its file), the simulator builds them from its
//! flags.

use serde::Deserialize;
use std::time::Duration;

/// The update limits of one device.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpdateSettings {
    /// Groups this device belongs to: orders addressed to them are taken.
    pub groups: Vec<String>,
    /// The largest package accepted.
    pub max_package_bytes: u64,
    /// Free space left on the state directory's file system after staging and unpacking a package.
    pub reserve_bytes: u64,
    /// Chunks asked for at once.
    pub request_window: u32,
    /// Seconds without a chunk before the missing ones are asked for again.
    pub request_timeout_secs: f64,
    pub probation: ProbationLimits,
}

impl Default for UpdateSettings {
    fn default() -> Self {
        UpdateSettings {
            groups: Vec::new(),
            max_package_bytes: 512 * 1024 * 1024,
            reserve_bytes: 16 * 1024 * 1024,
            request_window: 16,
            request_timeout_secs: 5.0,
            probation: ProbationLimits::default(),
        }
    }
}

impl UpdateSettings {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.request_timeout_secs)
    }
}

/// How a new model is judged against the one it replaced before it is committed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProbationLimits {
    /// Seconds the new model serves on probation; it is committed at the end unless it broke a limit.
    pub window_secs: f64,
    /// Inputs the new model must have taken (per source) before it is judged.
    pub min_frames: u64,
    /// Roll back when the share of failed inputs rises by more than this (0.05: five points).
    pub max_error_rate_increase: f64,
    /// Roll back when the p95 inference latency grows by more than this factor...
    pub max_p95_ratio: f64,
    /// ...and by more than this many milliseconds: below it, a p95 change is scheduling noise, not the model.
    pub min_p95_increase_ms: f64,
    /// Roll back when the mean top confidence (classifiers and detectors) falls by more than this.
    pub max_confidence_drop: f64,
    /// Refuse a model that would run on another execution provider than the one it replaces.
    pub require_same_provider: bool,
    /// Roll back when the largest PSI of the new model's outputs against its own reference profile goes above
    /// this (needs a monitor for the source and a profiled bundle); `None`: not judged.
    pub max_output_psi: Option<f64>,
    /// Roll back when the new model's accuracy from feedback (0–1) falls below this; `None`: not judged.
    pub min_accuracy: Option<f64>,
    /// Labelled predictions the new model needs before its accuracy is judged.
    pub min_labelled: u32,
}

impl Default for ProbationLimits {
    fn default() -> Self {
        ProbationLimits {
            window_secs: 60.0,
            min_frames: 20,
            max_error_rate_increase: 0.05,
            max_p95_ratio: 2.0,
            min_p95_increase_ms: 1.0,
            max_confidence_drop: 0.2,
            require_same_provider: true,
            max_output_psi: None,
            min_accuracy: None,
            min_labelled: 20,
        }
    }
}

impl ProbationLimits {
    pub fn window(&self) -> Duration {
        Duration::from_secs_f64(self.window_secs)
    }
}
