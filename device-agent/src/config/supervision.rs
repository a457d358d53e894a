//! `[supervision]`: when a worker counts as stuck, when the agent counts as dead (for systemd's watchdog), and
//! how often an unusable state directory is tried again.

use super::Problems;
use crate::supervisor::StuckLimits;
use serde::Deserialize;
use std::time::Duration;

/// `[supervision]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupervisionConfig {
    /// A worker is stuck once one inference has taken this many times the source's p99 latency...
    pub stuck_factor: f64,
    /// ...and at least this many seconds (the limit before a first inference has returned).
    pub stuck_floor_secs: f64,
    /// Seconds in one inference after which the agent stops pinging systemd's watchdog, so that systemd
    /// restarts it; 0: never.
    pub stuck_restart_secs: f64,
    /// Seconds between attempts to use an unusable state directory, and between free-space checks.
    pub retry_secs: f64,
}

impl Default for SupervisionConfig {
    fn default() -> Self {
        SupervisionConfig { stuck_factor: 10.0, stuck_floor_secs: 10.0, stuck_restart_secs: 300.0, retry_secs: 30.0 }
    }
}

impl SupervisionConfig {
    pub fn stuck_limits(&self) -> StuckLimits {
        StuckLimits {
            factor: self.stuck_factor,
            floor: Duration::from_secs_f64(self.stuck_floor_secs),
            restart_after: (self.stuck_restart_secs > 0.0).then(|| Duration::from_secs_f64(self.stuck_restart_secs)),
        }
    }

    pub fn retry(&self) -> Duration {
        Duration::from_secs_f64(self.retry_secs)
    }

    pub(super) fn validate(&self, problems: &mut Problems) {
        if !(self.stuck_factor.is_finite() && self.stuck_factor >= 1.0) {
            problems.push("supervision.stuck_factor", "must be >= 1");
        }
        if !(self.stuck_floor_secs.is_finite() && self.stuck_floor_secs > 0.0) {
            problems.push("supervision.stuck_floor_secs", "must be > 0");
        }
        let restart = self.stuck_restart_secs;
        if !(restart.is_finite() && (restart == 0.0 || restart >= self.stuck_floor_secs)) {
            problems.push("supervision.stuck_restart_secs", "must be 0 (never) or >= stuck_floor_secs");
        }
        if !(self.retry_secs.is_finite() && self.retry_secs >= 1.0 && self.retry_secs <= 86_400.0) {
            problems.push("supervision.retry_secs", "must be between 1 and 86400");
        }
    }
}
