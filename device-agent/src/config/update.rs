//! `[update]`: over-the-air model updates. Absent: the agent takes no updates.

use super::{Problems, empty_as_none, is_identifier};
use device_update::settings::{ProbationLimits, UpdateSettings};
use serde::Deserialize;
use std::path::PathBuf;

/// `[update]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpdateConfig {
    /// Ed25519 public keys (64 hex digits each, as `edgectl keygen` prints them) whose signatures are
    /// trusted. At least one.
    pub trusted_keys: Vec<String>,
    /// Where the model slots, the download in progress and the update state live. Required; relative to the
    /// config file.
    #[serde(deserialize_with = "empty_as_none")]
    pub state_dir: Option<PathBuf>,
    /// Groups this device belongs to, for `model push --group`.
    pub groups: Vec<String>,
    /// The largest package accepted.
    pub max_package_bytes: u64,
    /// Free space left on the state directory's file system after staging and unpacking a package.
    pub reserve_bytes: u64,
    /// Chunks asked for at once.
    pub request_window: u32,
    /// Seconds without a chunk before the missing ones are asked for again.
    pub request_timeout_secs: f64,
    pub probation: ProbationConfig,
}

impl Default for UpdateConfig {
    /// The machine's defaults: one place says them.
    fn default() -> Self {
        let settings = UpdateSettings::default();
        UpdateConfig {
            trusted_keys: Vec::new(),
            state_dir: None,
            groups: settings.groups,
            max_package_bytes: settings.max_package_bytes,
            reserve_bytes: settings.reserve_bytes,
            request_window: settings.request_window,
            request_timeout_secs: settings.request_timeout_secs,
            probation: ProbationConfig::default(),
        }
    }
}

/// `[update.probation]`: how a new model is judged against the one it replaced before it is committed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProbationConfig {
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
    /// this (needs a `[[monitors]]` entry for the source and a profiled bundle); unset: not judged.
    pub max_output_psi: Option<f64>,
    /// Roll back when the new model's accuracy from feedback falls below this (0–1; needs `[monitors.feedback]`);
    /// unset: not judged.
    pub min_accuracy: Option<f64>,
    /// Labelled predictions the new model needs before its accuracy is judged.
    pub min_labelled: u32,
}

impl Default for ProbationConfig {
    fn default() -> Self {
        let limits = ProbationLimits::default();
        ProbationConfig {
            window_secs: limits.window_secs,
            min_frames: limits.min_frames,
            max_error_rate_increase: limits.max_error_rate_increase,
            max_p95_ratio: limits.max_p95_ratio,
            min_p95_increase_ms: limits.min_p95_increase_ms,
            max_confidence_drop: limits.max_confidence_drop,
            require_same_provider: limits.require_same_provider,
            max_output_psi: limits.max_output_psi,
            min_accuracy: limits.min_accuracy,
            min_labelled: limits.min_labelled,
        }
    }
}

impl ProbationConfig {
    /// The limits as the update machine takes them.
    pub fn limits(&self) -> ProbationLimits {
        ProbationLimits {
            window_secs: self.window_secs,
            min_frames: self.min_frames,
            max_error_rate_increase: self.max_error_rate_increase,
            max_p95_ratio: self.max_p95_ratio,
            min_p95_increase_ms: self.min_p95_increase_ms,
            max_confidence_drop: self.max_confidence_drop,
            require_same_provider: self.require_same_provider,
            max_output_psi: self.max_output_psi,
            min_accuracy: self.min_accuracy,
            min_labelled: self.min_labelled,
        }
    }
}

impl UpdateConfig {
    /// The settings as the update machine takes them.
    pub fn settings(&self) -> UpdateSettings {
        UpdateSettings {
            groups: self.groups.clone(),
            max_package_bytes: self.max_package_bytes,
            reserve_bytes: self.reserve_bytes,
            request_window: self.request_window,
            request_timeout_secs: self.request_timeout_secs,
            probation: self.probation.limits(),
        }
    }

    pub(super) fn paths_mut(&mut self) -> impl Iterator<Item = &mut PathBuf> {
        self.state_dir.as_mut().into_iter()
    }

    pub(super) fn validate(&self, problems: &mut Problems) {
        if self.trusted_keys.is_empty() {
            problems.push("update.trusted_keys", "at least one public key is required");
        }
        for (index, key) in self.trusted_keys.iter().enumerate() {
            if packaging::PublicKey::from_hex(key).is_err() {
                problems.push(format!("update.trusted_keys[{index}]"), "must be 64 hex digits (an Ed25519 public key)");
            }
        }
        if self.state_dir.is_none() {
            problems.push("update.state_dir", "is required");
        }
        for (index, group) in self.groups.iter().enumerate() {
            if !is_identifier(group) {
                problems.push(format!("update.groups[{index}]"), "must match [A-Za-z0-9_-]+ (it is part of topics)");
            }
        }
        if self.max_package_bytes == 0 {
            problems.push("update.max_package_bytes", "must be > 0");
        }
        if self.request_window == 0 {
            problems.push("update.request_window", "must be > 0");
        }
        if !(self.request_timeout_secs.is_finite() && self.request_timeout_secs > 0.0) {
            problems.push("update.request_timeout_secs", "must be > 0");
        }
        let probation = &self.probation;
        if !(probation.window_secs.is_finite() && probation.window_secs > 0.0) {
            problems.push("update.probation.window_secs", "must be > 0");
        }
        if probation.min_frames == 0 {
            problems.push("update.probation.min_frames", "must be >= 1");
        }
        for (key, value) in [
            ("max_error_rate_increase", probation.max_error_rate_increase),
            ("max_confidence_drop", probation.max_confidence_drop),
            ("min_p95_increase_ms", probation.min_p95_increase_ms),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                problems.push(format!("update.probation.{key}"), "must be >= 0");
            }
        }
        if !(probation.max_p95_ratio.is_finite() && probation.max_p95_ratio >= 1.0) {
            problems.push("update.probation.max_p95_ratio", "must be >= 1");
        }
        if probation.max_output_psi.is_some_and(|psi| !(psi.is_finite() && psi > 0.0)) {
            problems.push("update.probation.max_output_psi", "must be > 0");
        }
        if probation.min_accuracy.is_some_and(|accuracy| !(0.0..=1.0).contains(&accuracy)) {
            problems.push("update.probation.min_accuracy", "must be between 0 and 1");
        }
        if probation.min_labelled == 0 {
            problems.push("update.probation.min_labelled", "must be >= 1");
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::AgentConfig;

    const BASE: &str = "device_id = \"d\"\n[[sources]]\nname = \"imu\"\nmodel = \"m\"\nkind = \"mqtt_sensor\"\n\
        [update]\ntrusted_keys = [\"0000000000000000000000000000000000000000000000000000000000000000\"]\n\
        state_dir = \"state\"\n[update.probation]\n";

    #[test]
    fn monitored_probation_limits_are_optional_and_checked() {
        let config = AgentConfig::parse(BASE).expect("valid");
        let probation = config.update.expect("configured").probation;
        assert_eq!((probation.max_output_psi, probation.min_accuracy, probation.min_labelled), (None, None, 20));
        let set = format!("{BASE}max_output_psi = 0.25\nmin_accuracy = 0.9\nmin_labelled = 100\n");
        let probation = AgentConfig::parse(&set).expect("valid").update.expect("configured").probation;
        assert_eq!(
            (probation.max_output_psi, probation.min_accuracy, probation.min_labelled),
            (Some(0.25), Some(0.9), 100)
        );
        let bad = format!("{BASE}max_output_psi = 0.0\nmin_accuracy = 1.2\nmin_labelled = 0\n");
        let errors: Vec<String> =
            AgentConfig::parse(&bad).expect_err("invalid").0.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                "update.probation.max_output_psi: must be > 0",
                "update.probation.min_accuracy: must be between 0 and 1",
                "update.probation.min_labelled: must be >= 1",
            ]
        );
    }
}
