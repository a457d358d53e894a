//! `[monitors.feedback]`: accuracy from ground truth (see `crate::monitor::feedback`).

use super::Problems;
use serde::Deserialize;

/// The most predictions remembered, or labelled predictions in the window: bounds the join's memory (a few
/// MB at most).
const MAX_RING: usize = 1_000_000;

/// How a source's predictions are joined with the ground truth sent back for them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeedbackConfig {
    /// Predictions remembered for joining (a ring).
    pub remember: usize,
    /// Labelled predictions the accuracy is computed over.
    pub window: usize,
    /// Alert when the accuracy over the window falls below this (0–1); unset: no accuracy alert.
    pub min_accuracy: Option<f64>,
    /// Labelled predictions needed in the window before the accuracy is judged.
    pub min_labelled: usize,
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        FeedbackConfig { remember: 10_000, window: 500, min_accuracy: None, min_labelled: 50 }
    }
}

impl FeedbackConfig {
    /// Checks the keys of the entry at `key` (`monitors[0].feedback`).
    pub(super) fn validate(&self, key: &str, problems: &mut Problems) {
        for (name, value) in [("remember", self.remember), ("window", self.window)] {
            if !(1..=MAX_RING).contains(&value) {
                problems.push(format!("{key}.{name}"), format!("must be between 1 and {MAX_RING}"));
            }
        }
        if self.min_accuracy.is_some_and(|accuracy| !(0.0..=1.0).contains(&accuracy)) {
            problems.push(format!("{key}.min_accuracy"), "must be between 0 and 1");
        }
        if self.min_labelled < 1 || self.min_labelled > self.window {
            problems.push(format!("{key}.min_labelled"), "must be between 1 and window (else it is never reached)");
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::AgentConfig;

    const SOURCE: &str = "device_id = \"d\"\n[[sources]]\nname = \"imu\"\nmodel = \"m\"\nkind = \"mqtt_sensor\"\n";

    fn errors(feedback: &str) -> Vec<String> {
        let text = format!("{SOURCE}[[monitors]]\nsource = \"imu\"\n[monitors.feedback]\n{feedback}");
        AgentConfig::parse(&text).err().map_or_else(Vec::new, |e| e.0.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn feedback_defaults_and_limits() {
        let text = format!("{SOURCE}[[monitors]]\nsource = \"imu\"\n[monitors.feedback]\n");
        let config = AgentConfig::parse(&text).expect("valid");
        let feedback = config.monitors[0].feedback.clone().expect("configured");
        assert_eq!(
            (feedback.remember, feedback.window, feedback.min_accuracy, feedback.min_labelled),
            (10_000, 500, None, 50)
        );
        assert!(errors("remember = 20\nwindow = 20\nmin_accuracy = 0.8\nmin_labelled = 20\n").is_empty());
        assert_eq!(
            errors("remember = 0\nwindow = 2000000\nmin_accuracy = 1.5\nmin_labelled = 0\n"),
            [
                "monitors[0].feedback.remember: must be between 1 and 1000000",
                "monitors[0].feedback.window: must be between 1 and 1000000",
                "monitors[0].feedback.min_accuracy: must be between 0 and 1",
                "monitors[0].feedback.min_labelled: must be between 1 and window (else it is never reached)",
            ]
        );
        assert_eq!(
            errors("window = 10\n"),
            ["monitors[0].feedback.min_labelled: must be between 1 and window (else it is never reached)"]
        );
    }
}
