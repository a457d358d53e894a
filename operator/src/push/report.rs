//! What `model push` and `model rollback` print: a line per change of a device's state or whole percent, and a
//! summary at the end. Human text by default; with `--json`, one JSON object per line.

use protocol::update::{Announcement, UpdateState, UpdateStatus};
use serde_json::{Map, Value, json};
use std::fmt::Write as _;
use std::time::Duration;

/// Which part of a push a line is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `--device`: each device on its own prefix.
    Devices,
    /// `--group --canary`: the canaries, on their own prefixes.
    Canary,
    /// `--group`: every member, on the group base.
    Group,
    /// `model push --group` in waves (`--wave-rate`, `--ramp`): each device on its own prefix.
    Wave,
    /// `model rollback`.
    Rollback,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Devices => "devices",
            Phase::Canary => "canary",
            Phase::Group => "group",
            Phase::Wave => "wave",
            Phase::Rollback => "rollback",
        }
    }
}

/// The protocol's name of `state` (`self_testing`, `rolled_back`, ...).
pub fn state_name(state: UpdateState) -> String {
    match serde_json::to_value(state) {
        Ok(Value::String(name)) => name,
        _ => format!("{state:?}"),
    }
}

/// `status.percent` rounded down to a whole percent in 0..=100.
pub fn whole_percent(status: &UpdateStatus) -> u32 {
    // `as` saturates: NaN and negatives become 0.
    (status.percent.floor() as u32).min(100)
}

/// The line for a device's new status.
pub fn progress_line(json: bool, phase: Phase, device: &str, status: &UpdateStatus) -> String {
    if json {
        return json!({
            "phase": phase.name(),
            "device": device,
            "state": state_name(status.state),
            "percent": whole_percent(status),
            "bytes": status.bytes,
            "size": status.size,
            "resumed_bytes": status.resumed_bytes,
            "version": status.version,
            "running_version": status.running_version,
            "reason": status.reason,
        })
        .to_string();
    }
    let prefix = if phase == Phase::Canary { "[canary] " } else { "" };
    let state = state_name(status.state);
    match status.state {
        UpdateState::Committed | UpdateState::RolledBack => {
            let reason = status.reason.as_deref().map(|reason| format!(": {reason}")).unwrap_or_default();
            format!("{prefix}{device}: {state}, running {}{reason}", status.running_version)
        }
        UpdateState::Rejected | UpdateState::Failed => {
            format!("{prefix}{device}: {state}: {}", status.reason.as_deref().unwrap_or("no reason given"))
        }
        UpdateState::Idle | UpdateState::Probation => {
            format!("{prefix}{device}: {state}, running {}", status.running_version)
        }
        UpdateState::Downloading | UpdateState::Verifying | UpdateState::SelfTesting => {
            let mut line = format!(
                "{prefix}{device}: {state} {}% ({} of {})",
                whole_percent(status),
                human_bytes(status.bytes),
                human_bytes(status.size)
            );
            if status.resumed_bytes > 0 {
                let _ = write!(line, ", resumed at {}", human_bytes(status.resumed_bytes));
            }
            line
        }
    }
}

/// How a push ended on one device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceOutcome {
    pub device: String,
    /// The last state heard for this update; `None` when the device never answered or was not pushed to.
    pub state: Option<UpdateState>,
    pub reason: Option<String>,
    /// Whether `state` is the outcome (false: the push timed out on this device, or skipped it).
    pub finished: bool,
}

impl DeviceOutcome {
    pub fn committed(&self) -> bool {
        self.finished && self.state == Some(UpdateState::Committed)
    }
}

/// The end of a push.
#[derive(Debug)]
pub struct Summary<'a> {
    pub announcement: &'a Announcement,
    pub devices: &'a [DeviceOutcome],
    pub chunks_published: u64,
    pub chunks_distinct: usize,
    pub elapsed: Duration,
}

impl Summary<'_> {
    pub fn all_committed(&self) -> bool {
        self.devices.iter().all(DeviceOutcome::committed)
    }

    /// The summary as printed: several lines of text, or one `{"summary": {...}}` line.
    pub fn render(&self, json: bool) -> String {
        let elapsed_s = (self.elapsed.as_secs_f64() * 1000.0).round() / 1000.0;
        let announcement = self.announcement;
        if json {
            let devices: Map<String, Value> = self
                .devices
                .iter()
                .map(|outcome| {
                    let state = outcome.state.map(state_name);
                    let fields = json!({"state": state, "reason": outcome.reason, "final": outcome.finished});
                    (outcome.device.clone(), fields)
                })
                .collect();
            return json!({"summary": {
                "update_id": announcement.id,
                "name": announcement.name,
                "version": announcement.version,
                "committed": self.all_committed(),
                "chunks_published": self.chunks_published,
                "chunks_distinct": self.chunks_distinct,
                "chunk_count": announcement.chunk_count(),
                "elapsed_s": elapsed_s,
                "devices": devices,
            }})
            .to_string();
        }
        let committed = self.devices.iter().filter(|outcome| outcome.committed()).count();
        let mut text = format!(
            "{} {} (update {}): {committed} of {} devices committed",
            announcement.name,
            announcement.version,
            announcement.id,
            self.devices.len()
        );
        let width = self.devices.iter().map(|outcome| outcome.device.len()).max().unwrap_or(0);
        for outcome in self.devices {
            let state = match (outcome.state, outcome.finished) {
                (Some(state), true) => state_name(state),
                (Some(state), false) => format!("no outcome (last: {})", state_name(state)),
                (None, _) => "no outcome".to_owned(),
            };
            let _ = write!(text, "\n  {:width$}  {state}", outcome.device);
            if let Some(reason) = &outcome.reason {
                let _ = write!(text, ": {reason}");
            }
        }
        let _ = write!(
            text,
            "\nchunks published: {} ({} distinct of {} in the package); {elapsed_s:.1} s",
            self.chunks_published,
            self.chunks_distinct,
            announcement.chunk_count()
        );
        text
    }
}

/// `bytes` for people: B, KiB, MiB or GiB with one decimal.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 3] = ["KiB", "MiB", "GiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: UpdateState, bytes: u64, reason: Option<&str>) -> UpdateStatus {
        UpdateStatus {
            device: "cam-01".into(),
            state,
            update_id: Some("0123456789abcdef".into()),
            model: "detector".into(),
            version: "1.3.0".into(),
            running_version: "1.2.0".into(),
            bytes,
            size: 3 * 1024 * 1024,
            percent: bytes as f32 * 100.0 / (3.0 * 1024.0 * 1024.0),
            resumed_bytes: 0,
            reason: reason.map(str::to_owned),
            at_ms: 1,
            order: None,
            messages_dropped: 0,
            errors_unpublished: 0,
        }
    }

    #[test]
    fn human_progress_lines() {
        let mut downloading = status(UpdateState::Downloading, 1024 * 1024 + 1, None);
        assert_eq!(
            progress_line(false, Phase::Devices, "cam-01", &downloading),
            "cam-01: downloading 33% (1.0 MiB of 3.0 MiB)"
        );
        downloading.resumed_bytes = 512 * 1024;
        assert_eq!(
            progress_line(false, Phase::Canary, "cam-01", &downloading),
            "[canary] cam-01: downloading 33% (1.0 MiB of 3.0 MiB), resumed at 512.0 KiB"
        );
        let mut committed = status(UpdateState::Committed, 3 * 1024 * 1024, None);
        committed.running_version = "1.3.0".into();
        assert_eq!(progress_line(false, Phase::Group, "cam-01", &committed), "cam-01: committed, running 1.3.0");
        let rejected = status(UpdateState::Rejected, 0, Some("signature by an untrusted key"));
        assert_eq!(
            progress_line(false, Phase::Group, "cam-01", &rejected),
            "cam-01: rejected: signature by an untrusted key"
        );
        let self_testing = status(UpdateState::SelfTesting, 3 * 1024 * 1024, None);
        assert_eq!(
            progress_line(false, Phase::Group, "cam-01", &self_testing),
            "cam-01: self_testing 100% (3.0 MiB of 3.0 MiB)"
        );
    }

    #[test]
    fn json_progress_lines() {
        let mut failed = status(UpdateState::Failed, 2048, Some("disk full"));
        failed.percent = f32::NAN;
        let line: Value = serde_json::from_str(&progress_line(true, Phase::Canary, "cam-01", &failed)).expect("JSON");
        assert_eq!(
            line,
            json!({"phase": "canary", "device": "cam-01", "state": "failed", "percent": 0, "bytes": 2048,
                   "size": 3 * 1024 * 1024, "resumed_bytes": 0, "version": "1.3.0", "running_version": "1.2.0",
                   "reason": "disk full"})
        );
        let rolled_back = status(UpdateState::RolledBack, 0, None);
        let line: Value =
            serde_json::from_str(&progress_line(true, Phase::Group, "cam-02", &rolled_back)).expect("JSON");
        assert_eq!(
            (&line["state"], &line["reason"], &line["device"]),
            (&json!("rolled_back"), &Value::Null, &json!("cam-02"))
        );
    }

    #[test]
    fn summaries() {
        let announcement = Announcement {
            id: "0123456789abcdef".into(),
            name: "detector".into(),
            version: "1.3.0".into(),
            size: 10,
            sha256: "0123456789abcdef".repeat(4),
            signature: None,
            chunk_size: 4,
            chunk_sha256: Vec::new(),
            chunks_topic: "groups/lab/update/chunk/0123456789abcdef".into(),
            rollback: false,
        };
        let outcome = |device: &str, state, reason: Option<&str>, finished| DeviceOutcome {
            device: device.into(),
            state,
            reason: reason.map(str::to_owned),
            finished,
        };
        let devices = [
            outcome("cam-01", Some(UpdateState::Committed), None, true),
            outcome("cam-0002", Some(UpdateState::Downloading), Some("no outcome within 600 s"), false),
            outcome("cam-03", None, Some("no answer within 600 s"), false),
        ];
        let summary = Summary {
            announcement: &announcement,
            devices: &devices,
            chunks_published: 5,
            chunks_distinct: 3,
            elapsed: Duration::from_millis(12_345),
        };
        assert!(!summary.all_committed());
        assert_eq!(
            summary.render(false),
            "detector 1.3.0 (update 0123456789abcdef): 1 of 3 devices committed\n\
             \x20 cam-01    committed\n\
             \x20 cam-0002  no outcome (last: downloading): no outcome within 600 s\n\
             \x20 cam-03    no outcome: no answer within 600 s\n\
             chunks published: 5 (3 distinct of 3 in the package); 12.3 s"
        );
        let line: Value = serde_json::from_str(&summary.render(true)).expect("JSON");
        assert_eq!(
            line,
            json!({"summary": {
                "update_id": "0123456789abcdef", "name": "detector", "version": "1.3.0", "committed": false,
                "chunks_published": 5, "chunks_distinct": 3, "chunk_count": 3, "elapsed_s": 12.345,
                "devices": {
                    "cam-01": {"state": "committed", "reason": null, "final": true},
                    "cam-0002": {"state": "downloading", "reason": "no outcome within 600 s", "final": false},
                    "cam-03": {"state": null, "reason": "no answer within 600 s", "final": false},
                }
            }})
        );
        let all_committed = Summary { devices: &devices[..1], ..summary };
        assert!(all_committed.all_committed());
    }
}
