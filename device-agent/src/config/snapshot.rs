//! `[[snapshots]]`: a JPEG of the frames whose prediction matched a rule, for an image source, published and/or
//! stored (see `crate::snapshot`).

use super::{Problems, SourceConfig, empty_as_none};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;

/// Smallest `max_bytes`: below it even a thumbnail does not fit.
const MIN_SNAPSHOT_BYTES: usize = 4096;
/// Room in an MQTT PUBLISH besides the payload and the topic: fixed header, topic length, packet id.
const PUBLISH_OVERHEAD: usize = 16;

/// One `[[snapshots]]` entry: the snapshots of one image source.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SnapshotConfig {
    /// The `name` of an image source. Required; one entry per source.
    pub source: String,
    /// Detections or classes with one of these labels match; empty: any label.
    pub labels: Vec<String>,
    /// The least score (0–1) of a matching detection or class.
    pub min_score: f32,
    /// An anomaly matches when flagged `anomalous`, or, when set, when its score is at least this.
    pub min_anomaly_score: Option<f32>,
    /// Seconds between two snapshots of the source, at least (`>= 0`).
    pub min_interval_secs: f64,
    /// Publish each snapshot, retained, on `<prefix>/snapshots/<source>`.
    pub publish: bool,
    /// Store each snapshot in this directory as `<source>-<captured_at_ms>-<seq>.jpg`; unset: not stored.
    #[serde(deserialize_with = "empty_as_none")]
    pub directory: Option<PathBuf>,
    /// The newest files of the source kept in `directory`...
    pub keep_files: usize,
    /// ...within this many bytes.
    pub keep_bytes: u64,
    /// Outline the matching detections.
    pub draw_boxes: bool,
    /// Largest JPEG: a lower quality, then a smaller scale is tried until it fits; else the snapshot is skipped.
    pub max_bytes: usize,
    /// JPEG quality tried first (1–100).
    pub quality: u8,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            source: String::new(),
            labels: Vec::new(),
            min_score: 0.5,
            min_anomaly_score: None,
            min_interval_secs: 10.0,
            publish: true,
            directory: None,
            keep_files: 100,
            keep_bytes: 64 << 20,
            draw_boxes: true,
            max_bytes: 512 << 10,
            quality: 85,
        }
    }
}

/// Checks every `[[snapshots]]` entry against the sources and the MQTT packet limit.
pub(super) fn validate(
    snapshots: &[SnapshotConfig],
    sources: &[SourceConfig],
    snapshot_topic: impl Fn(&str) -> String,
    max_packet_bytes: usize,
    problems: &mut Problems,
) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (index, snapshot) in snapshots.iter().enumerate() {
        let key = format!("snapshots[{index}]");
        let name = snapshot.source.as_str();
        match sources.iter().find(|source| source.name() == name) {
            _ if name.is_empty() => problems.push(format!("{key}.source"), "is required"),
            None => problems.push(format!("{key}.source"), format!("no source is named {name:?}")),
            Some(SourceConfig::Csv(_) | SourceConfig::Stdin(_) | SourceConfig::MqttSensor(_)) => {
                problems.push(format!("{key}.source"), format!("{name:?} is a sensor source: it has no frames"))
            }
            Some(_) => {}
        }
        let first = *seen.entry(name).or_insert(index);
        if first != index && !name.is_empty() {
            problems.push(format!("{key}.source"), format!("snapshots[{first}] already takes {name:?}'s snapshots"));
        }
        if snapshot.labels.iter().any(String::is_empty) {
            problems.push(format!("{key}.labels"), "must not contain an empty label");
        }
        if !(0.0..=1.0).contains(&snapshot.min_score) {
            problems.push(format!("{key}.min_score"), "must be between 0 and 1");
        }
        if snapshot.min_anomaly_score.is_some_and(|score| !score.is_finite()) {
            problems.push(format!("{key}.min_anomaly_score"), "must be a finite number");
        }
        if !(snapshot.min_interval_secs.is_finite() && (0.0..=86_400.0).contains(&snapshot.min_interval_secs)) {
            problems.push(format!("{key}.min_interval_secs"), "must be between 0 and 86400");
        }
        if !snapshot.publish && snapshot.directory.is_none() {
            problems.push(format!("{key}.publish"), "snapshots need publish = true or a directory");
        }
        if snapshot.keep_files < 1 {
            problems.push(format!("{key}.keep_files"), "must be >= 1");
        }
        if snapshot.keep_bytes < snapshot.max_bytes as u64 {
            problems.push(format!("{key}.keep_bytes"), "must be >= max_bytes (room for one snapshot)");
        }
        if !(1..=100).contains(&snapshot.quality) {
            problems.push(format!("{key}.quality"), "must be between 1 and 100");
        }
        let room = max_packet_bytes.saturating_sub(snapshot_topic(name).len() + PUBLISH_OVERHEAD);
        if snapshot.max_bytes < MIN_SNAPSHOT_BYTES {
            problems.push(format!("{key}.max_bytes"), format!("must be >= {MIN_SNAPSHOT_BYTES}"));
        } else if snapshot.publish && snapshot.max_bytes > room {
            problems.push(
                format!("{key}.max_bytes"),
                format!("must be <= {room} for the snapshot and its topic to fit in mqtt.max_packet_bytes"),
            );
        }
    }
}
