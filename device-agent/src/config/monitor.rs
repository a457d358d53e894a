//! `[[monitors]]`: drift, alerts, feedback and retraining evidence of one source (see `crate::monitor`).

use super::{EvidenceConfig, FeedbackConfig};
use serde::Deserialize;

/// One `[[monitors]]` entry: the model monitor of one source.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorConfig {
    /// The `name` of a source. Required; one entry per source.
    pub source: String,
    /// Inputs per drift window.
    pub window: usize,
    /// Inputs between two evaluations of the window.
    pub stride: usize,
    /// Ground truth on `<prefix>/feedback/<source>`; absent: no feedback is taken.
    pub feedback: Option<FeedbackConfig>,
    /// Inputs kept as evidence when a drift alert is raised; absent: none are kept.
    pub evidence: Option<EvidenceConfig>,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig { source: String::new(), window: 200, stride: 50, feedback: None, evidence: None }
    }
}
