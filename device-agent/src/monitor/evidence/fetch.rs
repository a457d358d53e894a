//! What a signed `fetch_evidence` order reads: a candidate found among the sources' evidence directories by its
//! id (checked to be a plain `<at_ms>-<n>` first, so that no order can name a path outside them), its
//! `candidate.json`, and each sample's bytes as stored, refused when larger than an MQTT packet carries. The
//! update thread, which verifies orders, publishes what this reads (see `crate::update`).

use super::store::CANDIDATE_FILE;
use crate::config::AgentConfig;
use protocol::wire::{
    EvidenceSample, RetrainCandidate, RetrainFetch, SkippedSample, Topics, is_sample_id, parse_candidate_id,
};
use std::path::{Path, PathBuf};

/// The directory of `source`'s candidates under an evidence `directory`.
pub fn source_dir(directory: &Path, source: &str) -> PathBuf {
    directory.join(source)
}

/// The candidate directories of every source that keeps evidence.
pub fn evidence_dirs(config: &AgentConfig) -> Vec<PathBuf> {
    config
        .monitors
        .iter()
        .filter_map(|monitor| {
            let directory = monitor.evidence.as_ref()?.directory(config.update.as_ref())?;
            Some(source_dir(&directory, &monitor.source))
        })
        .collect()
}

/// A candidate found on disk.
#[derive(Debug)]
pub struct Located {
    dir: PathBuf,
    pub announcement: RetrainCandidate,
}

/// Finds candidate `id` in one of `dirs`; the error says why it cannot be fetched.
pub fn locate(dirs: &[PathBuf], id: &str) -> Result<Located, String> {
    if parse_candidate_id(id).is_none() {
        return Err(format!("{id:?} is not a candidate id (<at_ms>-<n>)"));
    }
    let mut found = dirs.iter().map(|dir| dir.join(id)).filter(|dir| dir.is_dir());
    let dir = found.next().ok_or_else(|| format!("no candidate {id} on this device"))?;
    if found.next().is_some() {
        return Err(format!("candidate {id} exists for more than one source"));
    }
    let text = std::fs::read(dir.join(CANDIDATE_FILE)).map_err(|e| format!("reading {CANDIDATE_FILE}: {e}"))?;
    let announcement = serde_json::from_slice(&text).map_err(|e| format!("reading {CANDIDATE_FILE}: {e}"))?;
    Ok(Located { dir, announcement })
}

impl Located {
    /// The bytes of `sample`, unless they are more than `max_bytes` or its id is not a sample's file name.
    pub fn read(&self, sample: &EvidenceSample, max_bytes: usize) -> Result<Vec<u8>, String> {
        if !is_sample_id(&sample.id) {
            return Err("not a sample file name".to_owned());
        }
        let path = self.dir.join(&sample.id);
        let size = std::fs::metadata(&path).map_err(|e| e.to_string())?.len();
        if size > max_bytes as u64 {
            return Err(format!("{size} bytes, more than the {max_bytes} an MQTT packet carries here"));
        }
        std::fs::read(&path).map_err(|e| e.to_string())
    }
}

/// Room in an MQTT PUBLISH besides the payload and the topic: fixed header, topic length, packet id.
const PUBLISH_OVERHEAD: usize = 16;

/// Answers a fetch of `candidate` (order `order`): each sample through `publish(topic, bytes)`, on
/// `<retrain_samples>/<sample id>`, within `max_packet_bytes` with its topic; returns the answer listing what
/// went out, to publish after them.
pub fn answer(
    dirs: &[PathBuf],
    topics: &Topics,
    device: &str,
    candidate: &str,
    order: u64,
    max_packet_bytes: usize,
    mut publish: impl FnMut(String, Vec<u8>) -> Result<(), String>,
) -> RetrainFetch {
    let mut answer = RetrainFetch {
        device: device.to_owned(),
        candidate: candidate.to_owned(),
        order,
        announcement: None,
        published: Vec::new(),
        skipped: Vec::new(),
        error: None,
    };
    let located = match locate(dirs, candidate) {
        Ok(located) => located,
        Err(error) => {
            answer.error = Some(error);
            return answer;
        }
    };
    let samples_topic = topics.retrain_samples(candidate);
    for sample in &located.announcement.samples {
        let topic = format!("{samples_topic}/{}", sample.id);
        let room = max_packet_bytes.saturating_sub(topic.len() + PUBLISH_OVERHEAD);
        match located.read(sample, room).and_then(|bytes| publish(topic, bytes)) {
            Ok(()) => answer.published.push(sample.id.clone()),
            Err(reason) => answer.skipped.push(SkippedSample { id: sample.id.clone(), reason }),
        }
    }
    answer.announcement = Some(located.announcement);
    answer
}
