//! Evidence for retraining: a bounded sample of recent inputs, written to disk when a drift alert is raised
//! and announced on `<prefix>/retrain/candidate`.
//!
//! The last `samples` inputs offered are kept in memory (within `max_bytes`), as the files they become: the
//! bytes as they arrived for JPEG, PNG and raw frames, CSV for sensor windows. [`Evidence::capture`] writes them
//! as a candidate, `<directory>/<source>/<candidate>/` ([`store`]), and forgets them: the next candidate holds
//! the inputs offered after it. The source's candidates together stay within `max_bytes`, the oldest deleted
//! first; an operator fetches one over MQTT with a signed order ([`fetch`]).

pub mod fetch;
mod sample;
pub mod store;

use crate::config::EvidenceConfig;
use protocol::ModelIdentity;
use protocol::wire::{Alert, EvidenceSample, RetrainCandidate};
use runtime::Input;
use sample::Sample;
use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use store::Store;

/// The inputs of one source kept in memory, and the candidates written to disk.
#[derive(Debug)]
pub struct Evidence {
    device: String,
    source: String,
    samples: usize,
    max_bytes: u64,
    channel_names: Vec<String>,
    recent: VecDeque<Sample>,
    recent_bytes: u64,
    store: Store,
}

impl Evidence {
    /// Evidence of source `source`, stored under `dir` (created if missing).
    pub fn open(dir: PathBuf, device: &str, source: &str, config: &EvidenceConfig) -> io::Result<Evidence> {
        let mut store = Store::open(dir.join(source))?;
        // The cap may have been lowered since the candidates were written.
        store.trim(config.max_bytes, None)?;
        Ok(Evidence {
            device: device.to_owned(),
            source: source.to_owned(),
            samples: config.samples,
            max_bytes: config.max_bytes,
            channel_names: Vec::new(),
            recent: VecDeque::new(),
            recent_bytes: 0,
            store,
        })
    }

    /// Names the columns of the sensor windows' CSV files (the manifest's channel names); without them they
    /// are `ch0`, `ch1`...
    pub fn with_channel_names(mut self, channel_names: Vec<String>) -> Evidence {
        self.channel_names = channel_names;
        self
    }

    /// Keeps `input` among the recent samples, dropping the oldest past the sample count or byte cap.
    pub fn offer(&mut self, seq: u64, at_ms: u64, input: &Input) {
        let sample = Sample::of(seq, at_ms, input, &self.channel_names);
        self.recent_bytes += sample.bytes.len() as u64;
        self.recent.push_back(sample);
        while self.recent.len() > self.samples || self.recent_bytes > self.max_bytes {
            let Some(oldest) = self.recent.pop_front() else { break };
            self.recent_bytes -= oldest.bytes.len() as u64;
        }
    }

    /// Writes the recent samples to disk as a retraining candidate for `alerts` and returns its announcement
    /// for `<prefix>/retrain/candidate`.
    pub fn capture(&mut self, model: &ModelIdentity, alerts: &[Alert], now_ms: u64) -> io::Result<RetrainCandidate> {
        let mut candidate = RetrainCandidate {
            device: self.device.clone(),
            source: self.source.clone(),
            candidate: self.store.free_id(now_ms),
            model: model.clone(),
            at_ms: now_ms,
            alerts: alerts.to_vec(),
            samples: self.recent.iter().map(announced).collect(),
        };
        // The candidate alone must fit the cap: its oldest samples give way.
        let mut skip = 0;
        while candidate_bytes(&candidate, &self.recent, skip)? > self.max_bytes {
            if skip == self.recent.len() {
                return Err(io::Error::other(format!("not even an empty candidate fits in {} bytes", self.max_bytes)));
            }
            skip += 1;
            candidate.samples.remove(0);
        }
        let files: Vec<(&str, &[u8])> =
            self.recent.iter().skip(skip).map(|sample| (sample.id.as_str(), sample.bytes.as_slice())).collect();
        self.store.write(&candidate, &files)?;
        self.recent.clear();
        self.recent_bytes = 0;
        self.store.trim(self.max_bytes, Some(&candidate.candidate))?;
        Ok(candidate)
    }

    /// Samples and bytes on disk now.
    pub fn stored(&self) -> (u64, u64) {
        self.store.totals()
    }
}

/// How a sample is listed in its candidate.
fn announced(sample: &Sample) -> EvidenceSample {
    EvidenceSample {
        id: sample.id.clone(),
        seq: sample.seq,
        captured_ms: sample.captured_ms,
        bytes: sample.bytes.len() as u64,
        kind: sample.kind.to_owned(),
        frame: sample.frame.clone(),
    }
}

/// The bytes `candidate` takes on disk with the recent samples after the first `skip`.
fn candidate_bytes(candidate: &RetrainCandidate, recent: &VecDeque<Sample>, skip: usize) -> io::Result<u64> {
    let samples: u64 = recent.iter().skip(skip).map(|sample| sample.bytes.len() as u64).sum();
    Ok(samples + store::announcement_json(candidate)?.len() as u64)
}

#[cfg(test)]
mod tests;
