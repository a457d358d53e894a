//! Evidence for retraining: a bounded sample of recent inputs, written to disk when a drift alert is raised
//! and announced on `<prefix>/retrain/candidate`.

use crate::config::EvidenceConfig;
use protocol::ModelIdentity;
use protocol::wire::{Alert, RetrainCandidate};
use runtime::Input;
use std::path::PathBuf;

/// The inputs of one source kept in memory, and the candidates written to disk.
#[derive(Debug)]
pub struct Evidence {
    dir: PathBuf,
}

impl Evidence {
    /// Evidence of source `source`, stored under `dir` (created if missing).
    pub fn open(dir: PathBuf, device: &str, source: &str, config: &EvidenceConfig) -> std::io::Result<Evidence> {
        let _ = (device, source, config);
        todo!("branch evidence {dir:?}")
    }

    /// Keeps `input` among the recent samples, dropping the oldest past the sample count or byte cap.
    pub fn offer(&mut self, seq: u64, at_ms: u64, input: &Input) {
        let _ = (seq, at_ms, input, &self.dir);
        todo!("branch evidence")
    }

    /// Writes the recent samples to disk as a retraining candidate for `alerts` and returns its announcement
    /// for `<prefix>/retrain/candidate`.
    pub fn capture(
        &mut self,
        model: &ModelIdentity,
        alerts: &[Alert],
        now_ms: u64,
    ) -> std::io::Result<RetrainCandidate> {
        let _ = (model, alerts, now_ms);
        todo!("branch evidence")
    }

    /// Samples and bytes on disk now.
    pub fn stored(&self) -> (u64, u64) {
        todo!("branch evidence")
    }
}
