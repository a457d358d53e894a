//! `[monitors.evidence]`: the inputs kept for retraining when a drift alert is raised (see
//! `crate::monitor::evidence`).

use serde::Deserialize;

/// How many inputs are kept, and within how many bytes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvidenceConfig {
    /// Inputs kept per alert.
    pub samples: usize,
    /// Bytes all kept inputs of the source may take on disk; the oldest are deleted first.
    pub max_bytes: u64,
}

impl Default for EvidenceConfig {
    fn default() -> Self {
        EvidenceConfig { samples: 32, max_bytes: 64 << 20 }
    }
}
