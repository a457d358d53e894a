//! `[monitors.feedback]`: accuracy from ground truth (see `crate::monitor::feedback`).

use serde::Deserialize;

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
