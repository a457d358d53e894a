//! `[large_payloads]`: predictions too large for one MQTT packet (`mqtt.max_packet_bytes`), such as a `raw`
//! decoder's big tensors. Each becomes a `payload_too_large` error event; with `store = true` the prediction is
//! also kept in `dir`, and the event names its file.

use super::Problems;
use serde::Deserialize;
use std::path::PathBuf;

const MIB: u64 = 1024 * 1024;

/// `[large_payloads]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LargePayloadsConfig {
    /// Keep each such prediction, encoded as it would have been published, in `dir`.
    pub store: bool,
    /// Relative to the config file. Shared by every source: each keeps its own files.
    pub dir: PathBuf,
    /// Per source: the oldest files beyond this many are deleted.
    pub keep_files: usize,
    /// Per source: the oldest files beyond this many bytes together are deleted.
    pub keep_bytes: u64,
}

impl Default for LargePayloadsConfig {
    fn default() -> Self {
        LargePayloadsConfig {
            store: false,
            dir: PathBuf::from("large-payloads"),
            keep_files: 20,
            keep_bytes: 256 * MIB,
        }
    }
}

impl LargePayloadsConfig {
    pub(super) fn paths_mut(&mut self) -> impl Iterator<Item = &mut PathBuf> {
        std::iter::once(&mut self.dir)
    }

    pub(super) fn validate(&self, problems: &mut Problems) {
        if self.dir.as_os_str().is_empty() {
            problems.push("large_payloads.dir", "must not be empty");
        }
        if self.keep_files == 0 {
            problems.push("large_payloads.keep_files", "must be >= 1");
        }
        if self.keep_bytes < MIB {
            problems.push("large_payloads.keep_bytes", format!("must be >= {MIB}"));
        }
    }
}
