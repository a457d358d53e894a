//! `[spool]`: the store-and-forward log between the outboxes (and health) and the MQTT link.

use super::Problems;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

const MIB: u64 = 1024 * 1024;
/// Opening the spool reads each segment whole to check it: a bound on the memory that takes.
const MAX_SEGMENT_BYTES: u64 = 64 * MIB;
const MIN_SEGMENT_BYTES: u64 = 4096;

/// `[spool]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolConfig {
    /// Where the logs live (one directory per class); relative to the config file.
    pub dir: PathBuf,
    /// All classes together.
    pub max_bytes: u64,
    pub predictions_max_bytes: u64,
    pub errors_max_bytes: u64,
    pub health_max_bytes: u64,
    /// A log's segments are deleted whole: the unit of both acknowledgement and dropping.
    pub segment_bytes: u64,
    pub fsync: Fsync,
    /// With `fsync = "interval"`.
    pub fsync_interval_ms: u64,
    /// Messages per second replayed from the backlog after an outage or a restart (live ones go at once).
    pub replay_rate: f64,
}

/// When appended records are made durable (a SIGKILL loses nothing under any policy; a power cut loses what
/// was not synced).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fsync {
    /// After every record.
    Always,
    /// Every `fsync_interval_ms`.
    Interval,
    /// When the kernel writes its page cache back.
    Never,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: PathBuf::from("spool"),
            max_bytes: 64 * MIB,
            predictions_max_bytes: 48 * MIB,
            errors_max_bytes: 8 * MIB,
            health_max_bytes: 8 * MIB,
            segment_bytes: MIB,
            fsync: Fsync::Interval,
            fsync_interval_ms: 1000,
            replay_rate: 200.0,
        }
    }
}

impl SpoolConfig {
    pub fn fsync_interval(&self) -> Duration {
        Duration::from_millis(self.fsync_interval_ms)
    }

    pub(super) fn paths_mut(&mut self) -> impl Iterator<Item = &mut PathBuf> {
        std::iter::once(&mut self.dir)
    }

    pub(super) fn validate(&self, problems: &mut Problems) {
        if self.dir.as_os_str().is_empty() {
            problems.push("spool.dir", "must not be empty");
        }
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes) {
            problems
                .push("spool.segment_bytes", format!("must be between {MIN_SEGMENT_BYTES} and {MAX_SEGMENT_BYTES}"));
        }
        // Two segments at least: the oldest can be dropped while the newest is appended to.
        let least = 2 * self.segment_bytes;
        for (key, bytes) in [
            ("max_bytes", self.max_bytes),
            ("predictions_max_bytes", self.predictions_max_bytes),
            ("errors_max_bytes", self.errors_max_bytes),
            ("health_max_bytes", self.health_max_bytes),
        ] {
            if bytes < least {
                problems.push(format!("spool.{key}"), format!("must be at least 2 × spool.segment_bytes ({least})"));
            }
        }
        if self.fsync == Fsync::Interval && !(1..=3_600_000).contains(&self.fsync_interval_ms) {
            problems.push("spool.fsync_interval_ms", "must be between 1 and 3600000");
        }
        if !(self.replay_rate.is_finite() && self.replay_rate > 0.0) {
            problems.push("spool.replay_rate", "must be > 0");
        }
    }
}
