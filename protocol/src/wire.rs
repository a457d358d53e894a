//! MQTT payloads and topics: everything the agent publishes, and the sensor windows it accepts.
//!
//! Each message has two encodings, chosen by `mqtt.format` (or a source's `encoding`):
//! - **JSON**: the message as a plain object, field names as in the structs below.
//! - **postcard**: `Envelope { version: u8, kind: MessageKind, body }`. postcard is not self-describing, so
//!   the version byte ([`ENVELOPE_VERSION`]) and the kind let a subscriber refuse what it cannot read. Field
//!   order is the schema: fields are only ever added at the end of a struct (an older reader reads the prefix
//!   it knows, so that needs no version bump), never reordered or renamed. The golden-byte tests at the bottom pin the exact bytes.
//!
//! postcard primitives, for reading the schemas: integers wider than `u8` are LEB128 varints (`u32`, `u64`;
//! the `i64`s of a raw tensor's shape and integers and of an anomaly's label are zigzag varints), `u8` is one raw
//! byte, `f32` is 4 bytes little-endian, `bool` is one byte,
//! `String` and `Vec` are a varint length then the items, `Option` is `0x00`, or `0x01` then the value, and an
//! enum is the varint index of its variant (declaration order) then the variant's fields.
//!
//! To stay readable by both encoders the types use no `skip_serializing_if`, `flatten`, untagged or
//! internally tagged enums.

use crate::error::{ErrorKind, ErrorStage};
use crate::{ModelIdentity, Output, StageTimings};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;

mod batch;
mod monitor;
pub use batch::*;
pub use monitor::*;

/// The version byte that opens every postcard envelope. 2 since predictions' outputs grew inside (a detection's
/// `polygon`, `keypoints`, `mask` and `stages`, an anomaly's label, a raw tensor's type, the segmentation and text
/// outputs): fields followed by others, which a reader of version 1 would misread.
pub const ENVELOPE_VERSION: u8 = 2;

/// How a payload is encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// A plain JSON object.
    #[default]
    Json,
    /// A postcard [envelope](self).
    Postcard,
}

/// The agent's topics, all under one prefix (`devices/<device_id>` by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    /// Topics under `prefix` (no trailing slash; the config checks it).
    pub fn new(prefix: impl Into<String>) -> Topics {
        Topics { prefix: prefix.into() }
    }

    /// The prefix every topic starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Retained [`Status`]: `online` while connected, `offline` as last will and on clean shutdown.
    pub fn status(&self) -> String {
        format!("{}/status", self.prefix)
    }

    /// Periodic [`Health`].
    pub fn health(&self) -> String {
        format!("{}/health", self.prefix)
    }

    /// One [`Prediction`] per inference of `source`, or with batching on, a [`PredictionBatch`] per batch.
    pub fn predictions(&self, source: &str) -> String {
        format!("{}/predictions/{source}", self.prefix)
    }

    /// One [`ErrorEvent`] per failed input of `source`.
    pub fn errors(&self, source: &str) -> String {
        format!("{}/errors/{source}", self.prefix)
    }

    /// Inbound JPEG/PNG frames for an `mqtt_frames` source (default topic).
    pub fn frames(&self, source: &str) -> String {
        format!("{}/frames/{source}", self.prefix)
    }

    /// Inbound [`SensorWindowMsg`]s for an `mqtt_sensor` source (default topic).
    pub fn sensor(&self, source: &str) -> String {
        format!("{}/sensor/{source}", self.prefix)
    }

    /// The retained JPEG of the latest snapshot of `source` (see the agent's `[[snapshots]]`).
    pub fn snapshots(&self, source: &str) -> String {
        format!("{}/snapshots/{source}", self.prefix)
    }

    /// Periodic [`MonitorReport`]s of `source`.
    pub fn monitor(&self, source: &str) -> String {
        format!("{}/monitor/{source}", self.prefix)
    }

    /// [`AlertReport`]s of `source`, retained while an alert is active.
    pub fn alerts(&self, source: &str) -> String {
        format!("{}/alerts/{source}", self.prefix)
    }

    /// Inbound [`Feedback`] (ground truth) for the predictions of `source`.
    pub fn feedback(&self, source: &str) -> String {
        format!("{}/feedback/{source}", self.prefix)
    }

    /// Retraining candidates: the inputs kept when a drift alert was raised.
    pub fn retrain_candidate(&self) -> String {
        format!("{}/retrain/candidate", self.prefix)
    }

    /// Where the samples of a fetched candidate go: `<retrain_samples>/<sample id>`, each one's bytes unmodified.
    pub fn retrain_samples(&self, candidate: &str) -> String {
        format!("{}/retrain/samples/{candidate}", self.prefix)
    }

    /// The [`RetrainFetch`] that ends the answer to a fetch of `candidate`.
    pub fn retrain_fetched(&self, candidate: &str) -> String {
        format!("{}/retrain/fetched/{candidate}", self.prefix)
    }
}

/// What an envelope carries. postcard writes the variant index, so the order below is the wire value:
/// Status = 0, Prediction = 1, Error = 2, Health = 3, SensorWindow = 4, MonitorReport = 5, AlertReport = 6,
/// RetrainCandidate = 7, Feedback = 8, RetrainFetch = 9, PredictionBatch = 10. Append only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Status,
    Prediction,
    Error,
    Health,
    SensorWindow,
    MonitorReport,
    AlertReport,
    RetrainCandidate,
    Feedback,
    RetrainFetch,
    PredictionBatch,
}

/// A payload type, tied to its [`MessageKind`] so that an envelope can't be labelled wrongly.
pub trait Message: Serialize {
    /// The kind written into (and expected in) the postcard envelope.
    const KIND: MessageKind;
}

/// Whether the agent is connected. JSON `"online"` / `"offline"`; postcard 0 / 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Online,
    Offline,
}

/// The retained status message: `{"state":"online","device":"cam-01","agent_version":"0.1.0","since_ms":1700000000000}`.
///
/// postcard body: `state`, `device`, `agent_version`, `since_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub state: State,
    pub device: String,
    pub agent_version: String,
    /// When the state began: the connection's acceptance for `online`, the start of the clean shutdown for
    /// `offline`. `None` in the last will, which the broker publishes at a time the agent can't know.
    pub since_ms: Option<u64>,
}

impl Message for Status {
    const KIND: MessageKind = MessageKind::Status;
}

/// One inference of one source.
///
/// postcard body: `device`, `source`, `seq`, `captured_at_ms`, `published_at_ms`, `model` (`name`,
/// `version`, `sha256`), `provider`, `output` (variant index, then its fields, see [`crate::Output`]),
/// `latency_us` (`decode_us`, `preprocess_us`, `inference_us`, `postprocess_us`), `total_us`, `input`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub device: String,
    pub source: String,
    /// Per source, from 0 at each start of the agent.
    pub seq: u64,
    /// When the source produced the input.
    pub captured_at_ms: u64,
    /// When this message was handed over for publishing (to the spool, or without one to the MQTT link); a
    /// message re-sent after an outage keeps it.
    pub published_at_ms: u64,
    pub model: ModelIdentity,
    /// The execution provider that ran the session (`cpu`, `cuda`, ...).
    pub provider: String,
    pub output: Output,
    pub latency_us: StageTimings,
    /// The sum of `latency_us`.
    pub total_us: u32,
    /// The file name, CSV rows or topic the input came from.
    pub input: Option<String>,
}

impl Message for Prediction {
    const KIND: MessageKind = MessageKind::Prediction;
}

/// One input of one source that produced no prediction.
///
/// postcard body: `device`, `source`, `seq`, `at_ms`, `stage`, `kind`, `message`, `input`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEvent {
    pub device: String,
    pub source: String,
    pub seq: u64,
    pub at_ms: u64,
    /// `decode`, `preprocess`, `inference`, `postprocess`, `source`, or `load` (the source's bundle did not load).
    pub stage: ErrorStage,
    /// A stable machine-readable cause: `decode`, `image_too_large`, `sensor_shape`, `non_finite`, `io`,
    /// `queue_full`, ... Health counts errors by this kind.
    pub kind: ErrorKind,
    /// For people.
    pub message: String,
    /// The file name or topic the input came from, when there is one.
    pub input: Option<String>,
}

impl Message for ErrorEvent {
    const KIND: MessageKind = MessageKind::Error;
}

/// The periodic health report.
///
/// postcard body: `device`, `agent_version`, `uptime_s`, `cpu_percent`, `rss_bytes`, `peak_rss_bytes`,
/// `temperature_c`, `mqtt_reconnects`, `sources` (each a [`SourceHealth`]), `health_unpublished`, `arch`,
/// `mqtt_oversized`, `conditions` (each a [`Condition`]), `spool` (an `Option` of [`SpoolHealth`]), `cameras`
/// (each a [`CameraHealth`]), `snapshots` (each a [`SnapshotHealth`]), `monitors` (each a [`MonitorHealth`]),
/// `at_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub device: String,
    pub agent_version: String,
    pub uptime_s: u64,
    /// Process CPU time over the last interval, in percent of one core (so up to 100 × cores).
    pub cpu_percent: f32,
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
    /// The hottest thermal zone, `None` where the board exposes none.
    pub temperature_c: Option<f32>,
    pub mqtt_reconnects: u64,
    pub sources: Vec<SourceHealth>,
    /// Earlier health reports that could not be handed over (the spool failed to write them, or without a spool
    /// the MQTT link's queue was full or closed).
    pub health_unpublished: u64,
    /// The CPU architecture the agent was built for (`x86_64`, `aarch64`, `arm`).
    pub arch: String,
    /// Inbound MQTT messages skipped since start for being over `mqtt.max_packet_bytes` (each one also an error
    /// event on `<prefix>/errors/mqtt`).
    pub mqtt_oversized: u64,
    /// What the agent is degraded by right now (empty when all is well); each was also reported once, when it
    /// began, as an [`ErrorEvent`] on the errors topic of its `source`.
    pub conditions: Vec<Condition>,
    /// The on-disk spool; `None` when it could not be opened (messages then go straight to the link's queue).
    pub spool: Option<SpoolHealth>,
    /// The live camera sources' streams, one per camera source (added after `spool`: an older postcard reader
    /// reads the prefix it knows).
    pub cameras: Vec<CameraHealth>,
    /// The snapshots of each source that has a `[[snapshots]]` entry.
    pub snapshots: Vec<SnapshotHealth>,
    /// The model monitor of each source that has a `[[monitors]]` entry.
    pub monitors: Vec<MonitorHealth>,
    /// When the report was made (Unix ms), so that a retained report's age is known; 0 in a JSON report from an
    /// agent before it was added.
    #[serde(default)]
    pub at_ms: u64,
}

/// A lasting condition in a [`Health`] report: `{"kind":"state_dir_read_only","source":"agent",
/// "since_ms":1700000000000,"detail":"..."}`.
///
/// postcard body: `kind`, `source`, `since_ms`, `detail`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    /// `state_dir_read_only`, `state_dir_missing`, `state_dir_failing`, `disk_full`, `spool_failing`,
    /// `inference_stuck`: the kind of the error event that reported it.
    pub kind: ErrorKind,
    /// `agent` for the device as a whole, else the source concerned.
    pub source: String,
    /// When the condition began.
    pub since_ms: u64,
    /// For people: the latest reason (an OS error, how long a worker has been busy).
    pub detail: String,
}

impl Message for Health {
    const KIND: MessageKind = MessageKind::Health;
}

/// One source in a [`Health`] report.
///
/// postcard body: `name`, `model`, `provider_requested`, `provider_active`, `frames_in`, `frames_ok`,
/// `frames_per_s`, `dropped`, `errors`, `queue_depth`, `queue_capacity`, `latency`, `predictions_unpublished`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceHealth {
    pub name: String,
    /// Empty strings until the source's model is loaded.
    pub model: ModelIdentity,
    /// The execution providers asked for, best first.
    pub provider_requested: Vec<String>,
    /// The one that took the session.
    pub provider_active: String,
    /// Inputs the worker took from the source's queue (dropped ones are counted in `dropped` instead).
    pub frames_in: u64,
    /// Inputs that became predictions.
    pub frames_ok: u64,
    /// Predictions per second over the last health interval.
    pub frames_per_s: f32,
    /// Inputs dropped before inference: camera frames overwritten in the latest-frame slot, sensor windows
    /// refused by a full queue.
    pub dropped: u64,
    /// Failed inputs by [`ErrorEvent::kind`], sorted by kind.
    pub errors: Vec<ErrorCount>,
    pub queue_depth: u32,
    pub queue_capacity: u32,
    pub latency: StageLatency,
    /// Predictions and error events of this source that could not be handed over: the spool failed to write them
    /// (or without a spool, the MQTT link's queue was full or closed).
    pub predictions_unpublished: u64,
}

/// The spool in a [`Health`] report: what waits on disk for the broker's acknowledgement, and what was lost.
///
/// postcard body: `records`, `bytes`, `oldest_age_ms`, `dropped_predictions`, `dropped_errors`, `dropped_health`,
/// `write_errors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolHealth {
    /// Messages not yet acknowledged by the broker.
    pub records: u64,
    /// Bytes of the spool's segments on disk.
    pub bytes: u64,
    /// Age of the oldest unacknowledged message; 0 when there is none.
    pub oldest_age_ms: u64,
    /// Unacknowledged predictions deleted to keep within the byte budgets (or unreadable), since start.
    pub dropped_predictions: u64,
    /// The same for error events.
    pub dropped_errors: u64,
    /// The same for health reports.
    pub dropped_health: u64,
    /// Appends that failed (disk full, I/O error); those messages count in `predictions_unpublished` or
    /// `health_unpublished`.
    pub write_errors: u64,
}

/// A live camera's stream in a [`Health`] report. Rates are per second over the last health interval, as
/// [`SourceHealth::frames_per_s`].
///
/// postcard body: `source`, `received_per_s`, `decoded_per_s`, `inferred_per_s`, `replaced_per_s`,
/// `decode_errors`, `reconnects`, `last_frame_age_ms`, `width`, `height`, `codec`, `decoder`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraHealth {
    pub source: String,
    /// Frames (access units, multipart parts, device buffers) that arrived from the camera.
    pub received_per_s: f32,
    /// Frames the source decoded itself (video decoders; JPEG parts are decoded by the worker).
    pub decoded_per_s: f32,
    /// Frames that became predictions.
    pub inferred_per_s: f32,
    /// Frames replaced in the latest-frame slot before the worker took them.
    pub replaced_per_s: f32,
    /// Frames or packets that could not be decoded or parsed, since start.
    pub decode_errors: u64,
    /// Connections made again after the stream was lost, since start.
    pub reconnects: u64,
    /// How long ago the last frame arrived; `None` before the first.
    pub last_frame_age_ms: Option<u64>,
    /// The stream's resolution as last negotiated or seen; 0 before it is known.
    pub width: u32,
    pub height: u32,
    /// `h264`, `h265`, `mjpeg`, `yuyv`, `nv12`...; empty before it is known.
    pub codec: String,
    /// What turns the stream into frames: `openh264`, `v4l2m2m:/dev/video10`, `jpeg`, `none`...
    pub decoder: String,
}

/// The snapshots of one source in a [`Health`] report, counted since start. Every prediction that matched the
/// source's rule is counted once: published and/or stored, or skipped for one reason.
///
/// postcard body: `source`, `published`, `stored`, `rate_limited`, `busy`, `too_large`, `failed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHealth {
    pub source: String,
    /// JPEGs handed to the MQTT link.
    pub published: u64,
    /// JPEGs written to the snapshot directory.
    pub stored: u64,
    /// Matches within `min_interval_secs` of the previous snapshot.
    pub rate_limited: u64,
    /// Matches that found the snapshot thread still busy with the previous one.
    pub busy: u64,
    /// Snapshots over `max_bytes` even at the lowest quality and scale.
    pub too_large: u64,
    /// Snapshots that could not be decoded, encoded, written or handed to the MQTT link.
    pub failed: u64,
}

/// How many inputs failed with one error kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCount {
    pub kind: ErrorKind,
    pub count: u64,
}

/// Latency percentiles per stage, over the last samples of a source (see `health::metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageLatency {
    pub decode: Percentiles,
    pub preprocess: Percentiles,
    pub inference: Percentiles,
    pub postprocess: Percentiles,
    pub total: Percentiles,
}

/// Nearest-rank percentiles in microseconds; all 0 when there are no samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50_us: u32,
    pub p95_us: u32,
    pub p99_us: u32,
}

/// A window of sensor samples sent to an `mqtt_sensor` source: `{"channels":6,"values":[...]}`, samples
/// interleaved time-major (`values[t * channels + c]`). postcard body: `channels`, `values`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorWindowMsg {
    pub channels: u32,
    pub values: Vec<f32>,
}

impl Message for SensorWindowMsg {
    const KIND: MessageKind = MessageKind::SensorWindow;
}

/// Why a payload could not be encoded or decoded.
#[derive(Debug)]
pub enum WireError {
    Json(serde_json::Error),
    Postcard(postcard::Error),
    /// The envelope's version byte is not [`ENVELOPE_VERSION`].
    UnsupportedVersion(u8),
    /// The envelope carries another kind of message.
    UnexpectedKind {
        expected: MessageKind,
        found: MessageKind,
    },
    /// Bytes left after the message.
    TrailingBytes(usize),
    /// A sensor window that decoded but can't be a window.
    InvalidWindow(String),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Json(e) => write!(f, "invalid JSON: {e}"),
            WireError::Postcard(e) => write!(f, "invalid postcard: {e}"),
            WireError::UnsupportedVersion(v) => {
                write!(f, "unsupported envelope version {v} (this agent reads {ENVELOPE_VERSION})")
            }
            WireError::UnexpectedKind { expected, found } => {
                write!(f, "envelope holds a {found:?} message, expected {expected:?}")
            }
            WireError::TrailingBytes(n) => write!(f, "{n} unexpected bytes after the message"),
            WireError::InvalidWindow(why) => write!(f, "invalid sensor window: {why}"),
        }
    }
}

impl std::error::Error for WireError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WireError::Json(e) => Some(e),
            WireError::Postcard(e) => Some(e),
            _ => None,
        }
    }
}

/// The postcard frame around every message; see the [module docs](self).
#[derive(Serialize)]
struct Envelope<'a, M> {
    version: u8,
    kind: MessageKind,
    body: &'a M,
}

/// Encodes `message` as `format` says.
pub fn encode<M: Message>(format: Format, message: &M) -> Result<Vec<u8>, WireError> {
    match format {
        Format::Json => serde_json::to_vec(message).map_err(WireError::Json),
        Format::Postcard => {
            let envelope = Envelope { version: ENVELOPE_VERSION, kind: M::KIND, body: message };
            postcard::to_stdvec(&envelope).map_err(WireError::Postcard)
        }
    }
}

/// Decodes a payload written by [`encode`], checking the envelope's version and kind for postcard.
pub fn decode<M: Message + DeserializeOwned>(format: Format, bytes: &[u8]) -> Result<M, WireError> {
    match format {
        Format::Json => serde_json::from_slice(bytes).map_err(WireError::Json),
        Format::Postcard => {
            let ((version, kind), body) =
                postcard::take_from_bytes::<(u8, MessageKind)>(bytes).map_err(WireError::Postcard)?;
            if version != ENVELOPE_VERSION {
                return Err(WireError::UnsupportedVersion(version));
            }
            if kind != M::KIND {
                return Err(WireError::UnexpectedKind { expected: M::KIND, found: kind });
            }
            let (message, rest) = postcard::take_from_bytes::<M>(body).map_err(WireError::Postcard)?;
            if !rest.is_empty() {
                return Err(WireError::TrailingBytes(rest.len()));
            }
            Ok(message)
        }
    }
}

/// Decodes an inbound sensor window and checks its shape: at least one channel, at least one sample, and
/// whole samples only. Values are not checked here; the pipeline reports non-finite ones.
pub fn decode_sensor_window(encoding: Format, bytes: &[u8]) -> Result<SensorWindowMsg, WireError> {
    let window: SensorWindowMsg = decode(encoding, bytes)?;
    if window.channels == 0 {
        return Err(WireError::InvalidWindow("channels must be > 0".into()));
    }
    if window.values.is_empty() {
        return Err(WireError::InvalidWindow("no values".into()));
    }
    if !window.values.len().is_multiple_of(window.channels as usize) {
        return Err(WireError::InvalidWindow(format!(
            "{} values are not a whole number of {}-channel samples",
            window.values.len(),
            window.channels
        )));
    }
    Ok(window)
}

#[cfg(test)]
mod tests;
