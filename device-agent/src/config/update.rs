//! `[update]`: over-the-air model updates. Absent: the agent takes no updates.

use super::{Problems, empty_as_none, is_identifier};
use device_update::settings::UpdateSettings;
use serde::Deserialize;
use std::path::PathBuf;

/// `[update]`: the agent's own keys, and the update machine's settings at the same level.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
// Unknown keys are still errors: the flattened settings take theirs, and any key left over is refused.
#[serde(default, deny_unknown_fields)]
pub struct UpdateConfig {
    /// Ed25519 public keys (64 hex digits each, as `edgectl keygen` prints them) whose signatures are
    /// trusted. At least one.
    pub trusted_keys: Vec<String>,
    /// Where the model slots, the download in progress and the update state live. Required; relative to the
    /// config file.
    #[serde(deserialize_with = "empty_as_none")]
    pub state_dir: Option<PathBuf>,
    /// `groups`, `max_package_bytes`, `reserve_bytes`, `request_window`, `request_timeout_secs` and
    /// `[update.probation]`, as the update machine takes them.
    #[serde(flatten)]
    pub settings: UpdateSettings,
}

/// The key and message of the first error in the update machine's settings of `[update]`: toml points a type
/// error inside the flattened settings at the `[update]` line only, without the key.
pub(super) fn settings_error(text: &str) -> Option<(String, String)> {
    let mut table: toml::Table = toml::from_str(text).ok()?;
    let toml::Value::Table(mut update) = table.remove("update")? else { return None };
    update.remove("trusted_keys");
    update.remove("state_dir");
    let error = serde_path_to_error::deserialize::<_, UpdateSettings>(toml::Value::Table(update)).err()?;
    Some((format!("update.{}", error.path()), error.inner().to_string()))
}

impl UpdateConfig {
    pub(super) fn paths_mut(&mut self) -> impl Iterator<Item = &mut PathBuf> {
        self.state_dir.as_mut().into_iter()
    }

    pub(super) fn validate(&self, problems: &mut Problems) {
        let settings = &self.settings;
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
        for (index, group) in settings.groups.iter().enumerate() {
            if !is_identifier(group) {
                problems.push(format!("update.groups[{index}]"), "must match [A-Za-z0-9_-]+ (it is part of topics)");
            }
        }
        if settings.max_package_bytes == 0 {
            problems.push("update.max_package_bytes", "must be > 0");
        }
        if settings.request_window == 0 {
            problems.push("update.request_window", "must be > 0");
        }
        if !(settings.request_timeout_secs.is_finite() && settings.request_timeout_secs > 0.0) {
            problems.push("update.request_timeout_secs", "must be > 0");
        }
        let probation = &settings.probation;
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
        let probation = config.update.expect("configured").settings.probation;
        assert_eq!((probation.max_output_psi, probation.min_accuracy, probation.min_labelled), (None, None, 20));
        let set = format!("{BASE}max_output_psi = 0.25\nmin_accuracy = 0.9\nmin_labelled = 100\n");
        let probation = AgentConfig::parse(&set).expect("valid").update.expect("configured").settings.probation;
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

    /// The machine's settings sit in `[update]` itself, next to the agent's own keys.
    #[test]
    fn the_machine_settings_are_read_from_the_update_table() {
        let head = BASE.trim_end_matches("[update.probation]\n");
        let text = format!(
            "{head}groups = [\"lab\"]\nmax_package_bytes = 1000\nreserve_bytes = 10\nrequest_window = 4\n\
             request_timeout_secs = 2\n[update.probation]\nwindow_secs = 30.0\nrequire_same_provider = false\n"
        );
        let settings = AgentConfig::parse(&text).expect("valid").update.expect("configured").settings;
        assert_eq!(settings.groups, ["lab"]);
        assert_eq!((settings.max_package_bytes, settings.reserve_bytes, settings.request_window), (1000, 10, 4));
        assert_eq!(settings.request_timeout_secs, 2.0);
        assert_eq!((settings.probation.window_secs, settings.probation.require_same_provider), (30.0, false));
        assert_eq!(settings.probation.min_frames, 20, "unset keys keep the machine's defaults");
    }

    /// The flattened settings' errors point at the `[update]` table (toml loses the key's own span there); an
    /// unknown key is still named.
    #[test]
    fn unknown_and_mistyped_update_keys_are_rejected() {
        let head = BASE.trim_end_matches("[update.probation]\n");
        for (text, expected) in [
            (format!("{head}request_windows = 4\n"), "unknown field `request_windows`"),
            (format!("{BASE}window = 4\n"), "update.probation.window: unknown field `window`"),
            // The key is named although toml only points at the table.
            (
                format!("{head}request_window = \"4\"\n"),
                "update.request_window: invalid type: string \"4\", expected u32",
            ),
            (format!("{BASE}min_frames = -1\n"), "update.probation.min_frames: invalid value"),
        ] {
            let Err(errors) = AgentConfig::parse(&text) else { panic!("accepted {text}") };
            let errors = errors.to_string();
            assert!(errors.contains(expected) && errors.contains("[update]"), "{text}\n{errors}");
        }
    }
}
