//! The agent's configuration: one TOML file, parsed strictly (unknown keys are errors) and then validated as a
//! whole, so that one run reports every problem, each with its key path (`sources[1].rate_fps: must be > 0`).
//!
//! Every default lives in the `Default` impl of its section; the few that depend on other keys (the MQTT
//! port, client id and prefix, the TLS server name, inbound topics) are computed by the accessors next to
//! them. Optional strings and paths treat `""` as unset, so a template with `client_id = ""` means "default".

mod batch;
mod evidence;
mod feedback;
mod large_payloads;
mod metrics;
mod monitor;
mod onnxruntime;
mod rtsp;
mod snapshot;
mod spool;
mod supervision;
mod update;

use ::mqtt::BrokerAddress;
use protocol::wire::{Format, Topics};
use runtime::ImageLimits;
use runtime::manifest::CascadeSpec;
use serde::{Deserialize, Deserializer};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub use batch::BatchConfig;
pub use evidence::EvidenceConfig;
pub use feedback::FeedbackConfig;
pub use large_payloads::LargePayloadsConfig;
pub use metrics::MetricsConfig;
pub use monitor::MonitorConfig;
pub use onnxruntime::{Auto, OnnxRuntimeConfig};
pub use rtsp::{DecoderChoice, RtspSource, RtspTransport};
pub use snapshot::SnapshotConfig;
pub use spool::{Fsync, SpoolConfig};
pub use supervision::SupervisionConfig;
pub use update::UpdateConfig;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Names the device in topics and payloads: `[A-Za-z0-9_-]+`. Required.
    pub device_id: String,
    pub onnxruntime: OnnxRuntimeConfig,
    pub mqtt: MqttConfig,
    pub health: HealthConfig,
    pub sources: Vec<SourceConfig>,
    /// Present: the agent takes over-the-air model updates.
    pub update: Option<UpdateConfig>,
    pub supervision: SupervisionConfig,
    pub spool: SpoolConfig,
    /// Predictions too large for one MQTT packet.
    pub large_payloads: LargePayloadsConfig,
    /// Snapshots of image sources whose predictions match a rule.
    pub snapshots: Vec<SnapshotConfig>,
    /// Model monitors: drift, alerts, feedback and retraining evidence, per source.
    pub monitors: Vec<MonitorConfig>,
    /// The Prometheus endpoint.
    pub metrics: MetricsConfig,
}

/// `[mqtt]`: the broker connection.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// Unset: 127.0.0.1, unless `brokers` lists the brokers. See [`MqttConfig::brokers`].
    pub host: Option<String>,
    /// Unset: 1883, or 8883 with TLS. See [`MqttConfig::port`].
    pub port: Option<u16>,
    /// `host:port`, `host` or `[ipv6]:port` entries, tried in order and round robin on failure: instead of
    /// `host` and `port` (the port of an entry without one is the default port).
    pub brokers: Option<Vec<String>>,
    /// Unset: the device id. See [`AgentConfig::mqtt_client_id`].
    #[serde(deserialize_with = "empty_as_none")]
    pub client_id: Option<String>,
    /// Unset: `devices/<device_id>`. See [`AgentConfig::topics`].
    #[serde(deserialize_with = "empty_as_none")]
    pub prefix: Option<String>,
    /// 5–65535. A dead link is noticed within twice this (see `mqtt::LinkOptions::keep_alive`).
    pub keep_alive_secs: u64,
    /// 1–60. How long one connection attempt, and a write, may take.
    pub connect_timeout_secs: u64,
    /// Encoding of everything the agent publishes.
    pub format: Format,
    #[serde(deserialize_with = "empty_as_none")]
    pub username: Option<String>,
    #[serde(deserialize_with = "empty_as_none")]
    pub password: Option<String>,
    /// A file whose content (trailing newline trimmed) is the password; read when the link starts.
    #[serde(deserialize_with = "empty_as_none")]
    pub password_file: Option<PathBuf>,
    /// Capacity of the MQTT request queue: publishes beyond it are refused, never waited for.
    pub queue_capacity: usize,
    /// Largest MQTT packet sent or accepted (inbound frames included).
    pub max_packet_bytes: usize,
    /// Largest inbound packet read only to be skipped (over `max_packet_bytes`); larger ones cannot be read.
    pub max_skipped_packet_bytes: usize,
    pub qos: QosConfig,
    /// Present: connect with TLS.
    pub tls: Option<TlsConfig>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            host: None,
            port: None,
            brokers: None,
            client_id: None,
            prefix: None,
            keep_alive_secs: 10,
            connect_timeout_secs: 5,
            format: Format::Json,
            username: None,
            password: None,
            password_file: None,
            queue_capacity: 64,
            max_packet_bytes: 2 * 1024 * 1024,
            max_skipped_packet_bytes: 16 * 1024 * 1024,
            qos: QosConfig::default(),
            tls: None,
        }
    }
}

impl MqttConfig {
    /// The configured port, else the MQTT default for the transport.
    pub fn port(&self) -> u16 {
        match (self.port, &self.tls) {
            (Some(port), _) => port,
            (None, Some(_)) => 8883,
            (None, None) => 1883,
        }
    }

    /// The brokers to use, in order: `brokers`, else `host` (default 127.0.0.1) and the port. Entries that do not
    /// parse are left out here; validation reports them.
    pub fn brokers(&self) -> Vec<BrokerAddress> {
        match &self.brokers {
            Some(entries) => entries.iter().filter_map(|entry| BrokerAddress::parse(entry, self.port()).ok()).collect(),
            None => vec![BrokerAddress::new(self.host.as_deref().unwrap_or("127.0.0.1"), self.port())],
        }
    }
}

/// `[mqtt.qos]`: QoS level (0, 1 or 2) per kind of message published, and of every subscription (0 or 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QosConfig {
    pub status: u8,
    pub predictions: u8,
    pub health: u8,
    pub errors: u8,
    /// The QoS of every subscription (update orders and chunks, commands, feedback, MQTT sources). Sessions are
    /// clean, so QoS 1 protects nothing across a reconnect; 0 suits brokers where a QoS 1 subscription is a
    /// stored consumer of its own (NATS: see docs/fleets.md).
    pub subscriptions: u8,
}

impl Default for QosConfig {
    fn default() -> Self {
        QosConfig { status: 1, predictions: 1, health: 0, errors: 1, subscriptions: 1 }
    }
}

/// `[mqtt.tls]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM CA certificate(s) the broker's certificate must chain to. Required.
    #[serde(deserialize_with = "empty_as_none")]
    pub ca_file: Option<PathBuf>,
    /// Mutual TLS: the client certificate chain (PEM), with `client_key_file`; both or neither.
    #[serde(deserialize_with = "empty_as_none")]
    pub client_cert_file: Option<PathBuf>,
    #[serde(deserialize_with = "empty_as_none")]
    pub client_key_file: Option<PathBuf>,
    /// The name the broker's certificate must carry; unset: the host.
    #[serde(deserialize_with = "empty_as_none")]
    pub server_name: Option<String>,
}

/// `[health]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Seconds between health reports (`>= 1`).
    pub interval_secs: u64,
    /// Publish each report retained, so that a new subscriber (the fleet view) sees the last one at once.
    pub retain: bool,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig { interval_secs: 10, retain: true }
    }
}

/// One `[[sources]]` entry, by `kind`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceConfig {
    /// Image files replayed (or a directory watched) at a fixed rate.
    Images(ImagesSource),
    /// JPEG/PNG frames published to a topic.
    MqttFrames(MqttFramesSource),
    /// Sensor samples from a CSV file.
    Csv(CsvSource),
    /// Sensor samples from standard input, one per line.
    Stdin(StdinSource),
    /// Whole sensor windows published to a topic.
    MqttSensor(MqttSensorSource),
    /// A USB or CSI camera through Video4Linux2.
    V4l2(V4l2Source),
    /// An HTTP camera: an MJPEG stream or a snapshot URL.
    HttpMjpeg(HttpMjpegSource),
    /// An RTSP camera (H.264).
    Rtsp(RtspSource),
}

/// `kind = "images"`. Camera-like: only the latest frame is kept.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImagesSource {
    pub name: String,
    pub model: PathBuf,
    /// A directory (its images in name order) or one file; exactly one of `path` and `files`.
    #[serde(deserialize_with = "empty_as_none")]
    pub path: Option<PathBuf>,
    pub files: Vec<PathBuf>,
    /// Frames per second (`> 0`).
    pub rate_fps: f64,
    /// `loop` in TOML: start over after the last file.
    #[serde(rename = "loop")]
    pub repeat: bool,
    /// Watch the `path` directory for new files instead of replaying it.
    pub watch: bool,
    /// Largest image file read; a larger one is reported, not read.
    pub max_file_bytes: u64,
    /// Most memory one frame may take once decoded (see [`runtime::ImageLimits`]).
    pub max_decoded_bytes: u64,
    /// A second-stage bundle run on each detection's crop (`[sources.cascade]`), instead of the bundle's own.
    pub cascade: Option<CascadeSpec>,
}

impl Default for ImagesSource {
    fn default() -> Self {
        ImagesSource {
            name: String::new(),
            model: PathBuf::new(),
            path: None,
            files: Vec::new(),
            rate_fps: 2.0,
            repeat: false,
            watch: false,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_decoded_bytes: DEFAULT_MAX_DECODED_BYTES,
            cascade: None,
        }
    }
}

/// `kind = "mqtt_frames"`. Camera-like: only the latest frame is kept. A frame's encoded size is bounded by
/// `mqtt.max_packet_bytes`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttFramesSource {
    pub name: String,
    pub model: PathBuf,
    /// Unset: `<prefix>/frames/<name>`.
    #[serde(deserialize_with = "empty_as_none")]
    pub topic: Option<String>,
    /// As for [`ImagesSource::max_decoded_bytes`].
    pub max_decoded_bytes: u64,
    /// A second-stage bundle run on each detection's crop (`[sources.cascade]`), instead of the bundle's own.
    pub cascade: Option<CascadeSpec>,
}

impl Default for MqttFramesSource {
    fn default() -> Self {
        MqttFramesSource {
            name: String::new(),
            model: PathBuf::new(),
            topic: None,
            max_decoded_bytes: DEFAULT_MAX_DECODED_BYTES,
            cascade: None,
        }
    }
}

/// `kind = "csv"`: one sample per row, windows cut by the model's input length.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CsvSource {
    pub name: String,
    pub model: PathBuf,
    /// Required.
    #[serde(deserialize_with = "empty_as_none")]
    pub path: Option<PathBuf>,
    /// Samples per second; 0: as fast as the pipeline takes windows.
    pub rate_hz: f64,
    /// Samples between window starts (`> 0`); unset: the window length (no overlap).
    pub stride: Option<u32>,
    /// `loop` in TOML: start over at the end of the file.
    #[serde(rename = "loop")]
    pub repeat: bool,
    /// Windows waiting for inference; a full queue drops the new window.
    pub queue: usize,
    /// Present: predictions are published in batches.
    pub batch: Option<BatchConfig>,
}

impl Default for CsvSource {
    fn default() -> Self {
        CsvSource {
            name: String::new(),
            model: PathBuf::new(),
            path: None,
            rate_hz: 0.0,
            stride: None,
            repeat: false,
            queue: DEFAULT_SENSOR_QUEUE,
            batch: None,
        }
    }
}

/// `kind = "stdin"`: one sample per line, numbers separated by commas or whitespace.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StdinSource {
    pub name: String,
    pub model: PathBuf,
    /// As for [`CsvSource::stride`].
    pub stride: Option<u32>,
    pub queue: usize,
    /// As for [`CsvSource::batch`].
    pub batch: Option<BatchConfig>,
}

impl Default for StdinSource {
    fn default() -> Self {
        StdinSource {
            name: String::new(),
            model: PathBuf::new(),
            stride: None,
            queue: DEFAULT_SENSOR_QUEUE,
            batch: None,
        }
    }
}

/// `kind = "mqtt_sensor"`: one [`SensorWindowMsg`](protocol::wire::SensorWindowMsg) per message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttSensorSource {
    pub name: String,
    pub model: PathBuf,
    /// Unset: `<prefix>/sensor/<name>`.
    #[serde(deserialize_with = "empty_as_none")]
    pub topic: Option<String>,
    pub encoding: Format,
    pub queue: usize,
    /// As for [`CsvSource::batch`].
    pub batch: Option<BatchConfig>,
}

impl Default for MqttSensorSource {
    fn default() -> Self {
        MqttSensorSource {
            name: String::new(),
            model: PathBuf::new(),
            topic: None,
            encoding: Format::Json,
            queue: DEFAULT_SENSOR_QUEUE,
            batch: None,
        }
    }
}

/// `kind = "v4l2"`: a USB or CSI camera. Camera-like: only the latest frame is kept.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct V4l2Source {
    pub name: String,
    pub model: PathBuf,
    /// The device node.
    pub device: PathBuf,
    /// The pixel format asked of the camera.
    pub format: V4l2Format,
    /// The frame size asked of the camera (`> 0`); it must offer exactly this size in the chosen format.
    pub width: u32,
    pub height: u32,
    /// Frames per second asked of the camera (`> 0`); unset: the fastest it offers at that size and format.
    pub fps: Option<f64>,
    /// Seconds without a frame after which the device is closed and opened again (`>= 1`).
    pub watchdog_secs: u64,
    /// As for [`ImagesSource::max_decoded_bytes`].
    pub max_decoded_bytes: u64,
    /// A second-stage bundle run on each detection's crop (`[sources.cascade]`), instead of the bundle's own.
    pub cascade: Option<CascadeSpec>,
}

impl Default for V4l2Source {
    fn default() -> Self {
        V4l2Source {
            name: String::new(),
            model: PathBuf::new(),
            device: PathBuf::from("/dev/video0"),
            format: V4l2Format::Auto,
            width: 640,
            height: 480,
            fps: None,
            watchdog_secs: 5,
            max_decoded_bytes: DEFAULT_MAX_DECODED_BYTES,
            cascade: None,
        }
    }
}

/// `format` of a `v4l2` source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum V4l2Format {
    Mjpeg,
    Yuyv,
    Nv12,
    /// The first of NV12, YUYV, MJPEG that the camera offers at the size and rate: raw frames need no decoding,
    /// MJPEG is what a USB camera offers at sizes and rates its raw formats cannot reach.
    Auto,
}

/// `kind = "http_mjpeg"`. Camera-like: only the latest frame is kept; parts reach the worker encoded.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpMjpegSource {
    pub name: String,
    pub model: PathBuf,
    /// `http://host[:port]/path`. Required; without credentials (it is the origin of every input and error).
    pub url: String,
    pub mode: MjpegMode,
    /// Snapshots per second (`> 0`); `mode = "snapshot"` only. Unset: 1.
    pub rate_fps: Option<f64>,
    /// HTTP basic credentials: `user:password` on the first line; read at each connection, never logged.
    #[serde(deserialize_with = "empty_as_none")]
    pub credentials_file: Option<PathBuf>,
    /// Seconds without a part (a stream) or a response before reconnecting (1–3600).
    pub watchdog_secs: u64,
    /// Largest part or snapshot taken; a larger one is skipped and reported, never held whole.
    pub max_part_bytes: u64,
    /// As for [`ImagesSource::max_decoded_bytes`].
    pub max_decoded_bytes: u64,
    /// A second-stage bundle run on each detection's crop (`[sources.cascade]`), instead of the bundle's own.
    pub cascade: Option<CascadeSpec>,
}

impl Default for HttpMjpegSource {
    fn default() -> Self {
        HttpMjpegSource {
            name: String::new(),
            model: PathBuf::new(),
            url: String::new(),
            mode: MjpegMode::Stream,
            rate_fps: None,
            credentials_file: None,
            watchdog_secs: 10,
            max_part_bytes: DEFAULT_MAX_FILE_BYTES,
            max_decoded_bytes: DEFAULT_MAX_DECODED_BYTES,
            cascade: None,
        }
    }
}

impl HttpMjpegSource {
    /// The snapshot rate: `rate_fps`, else one per second.
    pub fn snapshot_rate_fps(&self) -> f64 {
        self.rate_fps.unwrap_or(1.0)
    }
}

/// How an HTTP camera serves frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MjpegMode {
    /// One `multipart/x-mixed-replace` response, a JPEG per part.
    Stream,
    /// One JPEG per request, polled at `rate_fps`.
    Snapshot,
}

const DEFAULT_SENSOR_QUEUE: usize = 8;
/// A camera's JPEG is a few MB; more is a mistake or an attack, and it is read into memory whole.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 16 << 20;
/// Room for a 20-megapixel frame; see docs/configuration.md for what it counts.
const DEFAULT_MAX_DECODED_BYTES: u64 = runtime::preprocess::DEFAULT_MAX_DECODED_BYTES;
/// Below this even a VGA frame with its resize intermediate does not fit: a typo, not a limit.
const MIN_DECODED_BYTES: u64 = 1 << 20;
/// No JPEG frame worth inferring on is smaller: a typo, not a limit.
const MIN_PART_BYTES: u64 = 1024;
/// A part is held in memory whole; more than this is a typo.
const MAX_PART_BYTES: u64 = 1 << 30;
/// More queued windows than this only adds latency; the bound keeps a typo from reserving memory.
const MAX_SENSOR_QUEUE: usize = 4096;
/// The MQTT protocol's limit on a packet's remaining length.
const MAX_MQTT_PACKET_BYTES: usize = 268_435_455;

impl SourceConfig {
    /// The source's name, unique among sources.
    pub fn name(&self) -> &str {
        match self {
            SourceConfig::Images(s) => &s.name,
            SourceConfig::MqttFrames(s) => &s.name,
            SourceConfig::Csv(s) => &s.name,
            SourceConfig::Stdin(s) => &s.name,
            SourceConfig::MqttSensor(s) => &s.name,
            SourceConfig::V4l2(s) => &s.name,
            SourceConfig::HttpMjpeg(s) => &s.name,
            SourceConfig::Rtsp(s) => &s.name,
        }
    }

    /// The model bundle directory.
    pub fn model(&self) -> &Path {
        match self {
            SourceConfig::Images(s) => &s.model,
            SourceConfig::MqttFrames(s) => &s.model,
            SourceConfig::Csv(s) => &s.model,
            SourceConfig::Stdin(s) => &s.model,
            SourceConfig::MqttSensor(s) => &s.model,
            SourceConfig::V4l2(s) => &s.model,
            SourceConfig::HttpMjpeg(s) => &s.model,
            SourceConfig::Rtsp(s) => &s.model,
        }
    }

    /// Whether the source delivers frames (an image model) rather than sensor windows. Every such source is
    /// camera-like: the newest frame wins.
    pub fn takes_images(&self) -> bool {
        match self {
            SourceConfig::Images(_)
            | SourceConfig::MqttFrames(_)
            | SourceConfig::V4l2(_)
            | SourceConfig::HttpMjpeg(_)
            | SourceConfig::Rtsp(_) => true,
            SourceConfig::Csv(_) | SourceConfig::Stdin(_) | SourceConfig::MqttSensor(_) => false,
        }
    }

    /// The `kind` as written in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Images(_) => "images",
            SourceConfig::MqttFrames(_) => "mqtt_frames",
            SourceConfig::Csv(_) => "csv",
            SourceConfig::Stdin(_) => "stdin",
            SourceConfig::MqttSensor(_) => "mqtt_sensor",
            SourceConfig::V4l2(_) => "v4l2",
            SourceConfig::HttpMjpeg(_) => "http_mjpeg",
            SourceConfig::Rtsp(_) => "rtsp",
        }
    }

    /// The limits the frames of an image source are held to; `None` for sensor sources.
    pub fn image_limits(&self) -> Option<ImageLimits> {
        let max_decoded_bytes = match self {
            SourceConfig::Images(s) => s.max_decoded_bytes,
            SourceConfig::MqttFrames(s) => s.max_decoded_bytes,
            SourceConfig::V4l2(s) => s.max_decoded_bytes,
            SourceConfig::HttpMjpeg(s) => s.max_decoded_bytes,
            SourceConfig::Rtsp(s) => s.max_decoded_bytes,
            SourceConfig::Csv(_) | SourceConfig::Stdin(_) | SourceConfig::MqttSensor(_) => return None,
        };
        Some(ImageLimits { max_decoded_bytes, ..ImageLimits::default() })
    }

    /// The second stage run on the crops of the source's detections, replacing the bundle's own `[cascade]`.
    pub fn cascade(&self) -> Option<&CascadeSpec> {
        match self {
            SourceConfig::Images(s) => s.cascade.as_ref(),
            SourceConfig::MqttFrames(s) => s.cascade.as_ref(),
            SourceConfig::V4l2(s) => s.cascade.as_ref(),
            SourceConfig::HttpMjpeg(s) => s.cascade.as_ref(),
            SourceConfig::Rtsp(s) => s.cascade.as_ref(),
            SourceConfig::Csv(_) | SourceConfig::Stdin(_) | SourceConfig::MqttSensor(_) => None,
        }
    }

    fn cascade_mut(&mut self) -> Option<&mut CascadeSpec> {
        match self {
            SourceConfig::Images(s) => s.cascade.as_mut(),
            SourceConfig::MqttFrames(s) => s.cascade.as_mut(),
            SourceConfig::V4l2(s) => s.cascade.as_mut(),
            SourceConfig::HttpMjpeg(s) => s.cascade.as_mut(),
            SourceConfig::Rtsp(s) => s.cascade.as_mut(),
            SourceConfig::Csv(_) | SourceConfig::Stdin(_) | SourceConfig::MqttSensor(_) => None,
        }
    }

    /// How the source batches its predictions; `None`: one message per prediction (image sources always).
    pub fn batch(&self) -> Option<BatchConfig> {
        match self {
            SourceConfig::Csv(s) => s.batch,
            SourceConfig::Stdin(s) => s.batch,
            SourceConfig::MqttSensor(s) => s.batch,
            SourceConfig::Images(_)
            | SourceConfig::MqttFrames(_)
            | SourceConfig::V4l2(_)
            | SourceConfig::HttpMjpeg(_)
            | SourceConfig::Rtsp(_) => None,
        }
    }

    /// The topic an MQTT source subscribes to (its own, or the default under `topics`); `None` for others.
    pub fn inbound_topic(&self, topics: &Topics) -> Option<String> {
        match self {
            SourceConfig::MqttFrames(s) => Some(s.topic.clone().unwrap_or_else(|| topics.frames(&s.name))),
            SourceConfig::MqttSensor(s) => Some(s.topic.clone().unwrap_or_else(|| topics.sensor(&s.name))),
            SourceConfig::Images(_)
            | SourceConfig::Csv(_)
            | SourceConfig::Stdin(_)
            | SourceConfig::V4l2(_)
            | SourceConfig::HttpMjpeg(_)
            | SourceConfig::Rtsp(_) => None,
        }
    }

    fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        match self {
            SourceConfig::Images(s) => {
                let mut paths: Vec<&mut PathBuf> = vec![&mut s.model];
                paths.extend(s.path.as_mut());
                paths.extend(s.files.iter_mut());
                paths
            }
            SourceConfig::MqttFrames(s) => vec![&mut s.model],
            SourceConfig::Csv(s) => {
                let mut paths: Vec<&mut PathBuf> = vec![&mut s.model];
                paths.extend(s.path.as_mut());
                paths
            }
            SourceConfig::Stdin(s) => vec![&mut s.model],
            SourceConfig::MqttSensor(s) => vec![&mut s.model],
            // The device node is absolute (`/dev/...`); a relative one is not resolved against the config file.
            SourceConfig::V4l2(s) => vec![&mut s.model],
            SourceConfig::HttpMjpeg(s) => {
                let mut paths: Vec<&mut PathBuf> = vec![&mut s.model];
                paths.extend(s.credentials_file.as_mut());
                paths
            }
            SourceConfig::Rtsp(s) => {
                let mut paths: Vec<&mut PathBuf> = vec![&mut s.model];
                paths.extend(s.credentials_file.as_mut());
                paths
            }
        }
    }
}

impl AgentConfig {
    /// Parses and validates a config. Paths stay as written; [`AgentConfig::load`] makes them relative to
    /// the file.
    pub fn parse(text: &str) -> Result<AgentConfig, ConfigErrors> {
        let config: AgentConfig = toml::from_str(text).map_err(|e| {
            let error = match update::settings_error(text) {
                Some((key, message)) => ConfigError { key, message: format!("{message}\n{e}") },
                None => ConfigError { key: String::new(), message: e.to_string() },
            };
            ConfigErrors(vec![error])
        })?;
        let problems = config.validate();
        if problems.is_empty() { Ok(config) } else { Err(ConfigErrors(problems)) }
    }

    /// Reads, parses and validates `path`, then resolves relative paths against its directory.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError { key: String::new(), message: format!("reading {}: {e}", path.display()) }])
        })?;
        let mut config = AgentConfig::parse(&text)?;
        config.resolve_paths(path.parent().unwrap_or(Path::new("")));
        Ok(config)
    }

    /// Makes every relative path (models, source files, TLS files, password file, spool) relative to `base_dir`.
    /// The ONNX Runtime library is left alone: it has its own lookup.
    pub fn resolve_paths(&mut self, base_dir: &Path) {
        let mqtt = &mut self.mqtt;
        let mut paths: Vec<&mut PathBuf> = mqtt.password_file.iter_mut().collect();
        if let Some(tls) = &mut mqtt.tls {
            paths.extend(tls.ca_file.as_mut());
            paths.extend(tls.client_cert_file.as_mut());
            paths.extend(tls.client_key_file.as_mut());
        }
        for source in &mut self.sources {
            paths.extend(source.paths_mut());
        }
        paths.extend(self.snapshots.iter_mut().filter_map(|snapshot| snapshot.directory.as_mut()));
        paths.extend(self.monitors.iter_mut().filter_map(|monitor| monitor.evidence.as_mut()?.directory.as_mut()));
        if let Some(update) = &mut self.update {
            paths.extend(update.paths_mut());
        }
        paths.extend(self.spool.paths_mut());
        paths.extend(self.large_payloads.paths_mut());
        for path in paths {
            // `join` keeps absolute paths as they are.
            *path = base_dir.join(&*path);
        }
        // A cascade's bundle is text, as in a manifest: the config's text is UTF-8, only its directory may not be.
        for cascade in self.sources.iter_mut().filter_map(SourceConfig::cascade_mut) {
            cascade.bundle = base_dir.join(&cascade.bundle).to_string_lossy().into_owned();
        }
    }

    /// The MQTT client id: `mqtt.client_id`, else the device id.
    pub fn mqtt_client_id(&self) -> &str {
        self.mqtt.client_id.as_deref().unwrap_or(&self.device_id)
    }

    /// The agent's topics, under `mqtt.prefix` or `devices/<device_id>`.
    pub fn topics(&self) -> Topics {
        match &self.mqtt.prefix {
            Some(prefix) => Topics::new(prefix.clone()),
            None => Topics::new(format!("devices/{}", self.device_id)),
        }
    }

    fn validate(&self) -> Vec<ConfigError> {
        let mut problems = Problems::default();
        if self.device_id.is_empty() {
            problems.push("device_id", "is required");
        } else if !is_identifier(&self.device_id) {
            problems.push("device_id", "must match [A-Za-z0-9_-]+");
        }
        self.onnxruntime.validate(&mut problems);
        self.mqtt.validate(&mut problems);
        if self.health.interval_secs < 1 {
            problems.push("health.interval_secs", "must be >= 1");
        }
        self.validate_sources(&mut problems);
        if let Some(update) = &self.update {
            update.validate(&mut problems);
        }
        self.supervision.validate(&mut problems);
        self.spool.validate(&mut problems);
        self.large_payloads.validate(&mut problems);
        self.metrics.validate(&mut problems);
        let topics = self.topics();
        snapshot::validate(
            &self.snapshots,
            &self.sources,
            |source| topics.snapshots(source),
            self.mqtt.max_packet_bytes,
            &mut problems,
        );
        monitor::validate(&self.monitors, &self.sources, &mut problems);
        self.validate_feedback_and_evidence(&mut problems);
        problems.0
    }

    /// `[monitors.feedback]` and `[monitors.evidence]` of each monitor.
    fn validate_feedback_and_evidence(&self, problems: &mut Problems) {
        for (index, monitor) in self.monitors.iter().enumerate() {
            if let Some(feedback) = &monitor.feedback {
                feedback.validate(&format!("monitors[{index}].feedback"), problems);
            }
            if let Some(evidence) = &monitor.evidence {
                evidence.validate(&format!("monitors[{index}].evidence"), self.update.as_ref(), problems);
            }
        }
    }

    fn validate_sources(&self, problems: &mut Problems) {
        if self.sources.is_empty() {
            problems.push("sources", "at least one source is required");
        }
        let topics = self.topics();
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut inbound: HashMap<String, usize> = HashMap::new();
        let mut first_stdin = None;
        for (index, source) in self.sources.iter().enumerate() {
            let key = format!("sources[{index}]");
            source.validate(&key, problems);
            let name = source.name();
            if !name.is_empty()
                && let Some(first) = names.insert(name, index)
            {
                problems.push(format!("{key}.name"), format!("duplicate of sources[{first}].name ({name:?})"));
            }
            if let Some(topic) = source.inbound_topic(&topics)
                && let Some(first) = inbound.insert(topic.clone(), index)
            {
                problems.push(format!("{key}.topic"), format!("{topic:?} is also the topic of sources[{first}]"));
            }
            if matches!(source, SourceConfig::Stdin(_)) {
                match first_stdin {
                    Some(first) => {
                        problems.push(format!("{key}.kind"), format!("sources[{first}] already reads stdin"))
                    }
                    None => first_stdin = Some(index),
                }
            }
        }
    }
}

impl MqttConfig {
    fn validate(&self, problems: &mut Problems) {
        if self.host.as_deref() == Some("") {
            problems.push("mqtt.host", "must not be empty");
        }
        if self.port == Some(0) {
            problems.push("mqtt.port", "must be > 0");
        }
        self.validate_brokers(problems);
        if let Some(why) = self.prefix.as_deref().and_then(topic_problem) {
            problems.push("mqtt.prefix", why);
        }
        if !(5..=u64::from(u16::MAX)).contains(&self.keep_alive_secs) {
            problems.push("mqtt.keep_alive_secs", "must be between 5 and 65535");
        }
        if !(1..=60).contains(&self.connect_timeout_secs) {
            problems.push("mqtt.connect_timeout_secs", "must be between 1 and 60");
        }
        if self.password.is_some() && self.password_file.is_some() {
            problems.push("mqtt.password_file", "set either password or password_file, not both");
        }
        if self.username.is_none() && (self.password.is_some() || self.password_file.is_some()) {
            problems.push("mqtt.username", "is required when a password is set");
        }
        if self.queue_capacity < 1 {
            problems.push("mqtt.queue_capacity", "must be >= 1");
        }
        if !(1024..=MAX_MQTT_PACKET_BYTES).contains(&self.max_packet_bytes) {
            problems.push("mqtt.max_packet_bytes", format!("must be between 1024 and {MAX_MQTT_PACKET_BYTES}"));
        }
        if !(self.max_packet_bytes..=MAX_MQTT_PACKET_BYTES).contains(&self.max_skipped_packet_bytes) {
            problems.push(
                "mqtt.max_skipped_packet_bytes",
                format!("must be between mqtt.max_packet_bytes and {MAX_MQTT_PACKET_BYTES}"),
            );
        }
        let qos = &self.qos;
        for (name, level) in
            [("status", qos.status), ("predictions", qos.predictions), ("health", qos.health), ("errors", qos.errors)]
        {
            if level > 2 {
                problems.push(format!("mqtt.qos.{name}"), "must be 0, 1 or 2");
            }
        }
        if qos.subscriptions > 1 {
            problems.push("mqtt.qos.subscriptions", "must be 0 or 1");
        }
        if let Some(tls) = &self.tls {
            if tls.ca_file.is_none() {
                problems.push("mqtt.tls.ca_file", "is required when [mqtt.tls] is present");
            }
            match (&tls.client_cert_file, &tls.client_key_file) {
                (Some(_), None) => problems.push("mqtt.tls.client_key_file", "is required with client_cert_file"),
                (None, Some(_)) => problems.push("mqtt.tls.client_cert_file", "is required with client_key_file"),
                _ => {}
            }
        }
    }
}

impl SourceConfig {
    fn validate(&self, key: &str, problems: &mut Problems) {
        let name = self.name();
        if name.is_empty() {
            problems.push(format!("{key}.name"), "is required");
        } else if !is_identifier(name) {
            problems.push(format!("{key}.name"), "must match [A-Za-z0-9_-]+ (it is part of topics)");
        } else if name == "update" {
            problems.push(
                format!("{key}.name"),
                "\"update\" is reserved: <prefix>/errors/update carries the updater's errors",
            );
        } else if name == crate::mqtt::LINK_SOURCE {
            problems
                .push(format!("{key}.name"), "\"mqtt\" is reserved: <prefix>/errors/mqtt carries the link's errors");
        } else if name == crate::conditions::AGENT {
            problems.push(
                format!("{key}.name"),
                "\"agent\" is reserved: <prefix>/errors/agent carries the agent's conditions",
            );
        }
        if self.model().as_os_str().is_empty() {
            problems.push(format!("{key}.model"), "is required");
        }
        if let Some(cascade) = self.cascade() {
            for (key, why) in cascade.problems(&format!("{key}.cascade")) {
                problems.push(key, why);
            }
        }
        match self {
            SourceConfig::Images(s) => {
                match (&s.path, s.files.is_empty()) {
                    (None, true) => problems.push(format!("{key}.path"), "one of path or files is required"),
                    (Some(_), false) => problems.push(format!("{key}.files"), "set either path or files, not both"),
                    _ => {}
                }
                if !(s.rate_fps.is_finite() && s.rate_fps > 0.0) {
                    problems.push(format!("{key}.rate_fps"), "must be > 0");
                }
                if s.watch && s.path.is_none() {
                    problems.push(format!("{key}.watch"), "needs path (a directory)");
                }
                if s.watch && s.repeat {
                    problems.push(format!("{key}.loop"), "can't be combined with watch");
                }
                if s.max_file_bytes == 0 {
                    problems.push(format!("{key}.max_file_bytes"), "must be > 0");
                }
                validate_decoded_bytes(key, s.max_decoded_bytes, problems);
            }
            SourceConfig::MqttFrames(s) => {
                validate_topic(key, s.topic.as_deref(), problems);
                validate_decoded_bytes(key, s.max_decoded_bytes, problems);
            }
            SourceConfig::Csv(s) => {
                if s.path.is_none() {
                    problems.push(format!("{key}.path"), "is required");
                }
                if !(s.rate_hz.is_finite() && s.rate_hz >= 0.0) {
                    problems.push(format!("{key}.rate_hz"), "must be >= 0");
                }
                validate_stride(key, s.stride, problems);
                validate_queue(key, s.queue, problems);
            }
            SourceConfig::Stdin(s) => {
                validate_stride(key, s.stride, problems);
                validate_queue(key, s.queue, problems);
            }
            SourceConfig::MqttSensor(s) => {
                validate_topic(key, s.topic.as_deref(), problems);
                validate_queue(key, s.queue, problems);
            }
            SourceConfig::V4l2(s) => {
                if s.device.as_os_str().is_empty() {
                    problems.push(format!("{key}.device"), "is required");
                }
                if s.width == 0 || s.height == 0 {
                    problems.push(format!("{key}.width"), "width and height must be > 0");
                }
                if s.fps.is_some_and(|fps| !(fps.is_finite() && fps > 0.0)) {
                    problems.push(format!("{key}.fps"), "must be > 0");
                }
                if s.watchdog_secs < 1 {
                    problems.push(format!("{key}.watchdog_secs"), "must be >= 1");
                }
                validate_decoded_bytes(key, s.max_decoded_bytes, problems);
            }
            SourceConfig::HttpMjpeg(s) => s.validate(key, problems),
            SourceConfig::Rtsp(s) => s.validate(key, problems),
        }
        if let Some(batch) = self.batch() {
            batch.validate(key, problems);
        }
    }
}

impl HttpMjpegSource {
    fn validate(&self, key: &str, problems: &mut Problems) {
        if self.url.is_empty() {
            problems.push(format!("{key}.url"), "is required");
        } else if let Err(error) = crate::sources::http_mjpeg::HttpUrl::parse(&self.url) {
            problems.push(format!("{key}.url"), error.to_string());
        }
        match (self.mode, self.rate_fps) {
            (MjpegMode::Stream, Some(_)) => problems
                .push(format!("{key}.rate_fps"), "only for mode = \"snapshot\" (a stream comes at the camera's rate)"),
            (MjpegMode::Snapshot, Some(rate)) if !(rate.is_finite() && rate > 0.0) => {
                problems.push(format!("{key}.rate_fps"), "must be > 0")
            }
            _ => {}
        }
        if !(1..=3600).contains(&self.watchdog_secs) {
            problems.push(format!("{key}.watchdog_secs"), "must be between 1 and 3600");
        }
        if !(MIN_PART_BYTES..=MAX_PART_BYTES).contains(&self.max_part_bytes) {
            problems.push(
                format!("{key}.max_part_bytes"),
                format!("must be between {MIN_PART_BYTES} and {MAX_PART_BYTES} (1 GiB)"),
            );
        }
        validate_decoded_bytes(key, self.max_decoded_bytes, problems);
    }
}

fn validate_topic(key: &str, topic: Option<&str>, problems: &mut Problems) {
    if let Some(why) = topic.and_then(topic_problem) {
        problems.push(format!("{key}.topic"), why);
    }
}

fn validate_decoded_bytes(key: &str, max_decoded_bytes: u64, problems: &mut Problems) {
    if max_decoded_bytes < MIN_DECODED_BYTES {
        problems.push(format!("{key}.max_decoded_bytes"), format!("must be >= {MIN_DECODED_BYTES} (1 MiB)"));
    }
}

fn validate_stride(key: &str, stride: Option<u32>, problems: &mut Problems) {
    if stride == Some(0) {
        problems.push(format!("{key}.stride"), "must be > 0");
    }
}

fn validate_queue(key: &str, queue: usize, problems: &mut Problems) {
    if !(1..=MAX_SENSOR_QUEUE).contains(&queue) {
        problems.push(format!("{key}.queue"), format!("must be between 1 and {MAX_SENSOR_QUEUE}"));
    }
}

/// What is wrong with a topic (or prefix) the agent publishes or subscribes to, if anything.
fn topic_problem(topic: &str) -> Option<&'static str> {
    if topic.is_empty() {
        Some("must not be empty")
    } else if topic.contains(['+', '#']) {
        Some("must not contain MQTT wildcards (+ #)")
    } else if topic.contains('\0') {
        Some("must not contain NUL")
    } else if topic.ends_with('/') {
        Some("must not end with /")
    } else {
        None
    }
}

fn is_identifier(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `""` is "unset", so that templates can list every key.
fn empty_as_none<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: From<String>,
{
    let text = String::deserialize(deserializer)?;
    Ok(if text.is_empty() { None } else { Some(T::from(text)) })
}

/// One problem, at one key (empty for problems of the file as a whole, such as TOML syntax).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() { f.write_str(&self.message) } else { write!(f, "{}: {}", self.key, self.message) }
    }
}

/// Every problem found (section by section), displayed one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl MqttConfig {
    fn validate_brokers(&self, problems: &mut Problems) {
        let Some(entries) = &self.brokers else { return };
        for (key, given) in [("mqtt.host", self.host.is_some()), ("mqtt.port", self.port.is_some())] {
            if given {
                problems.push("mqtt.brokers", format!("{key} is given too: list the brokers in one of them only"));
            }
        }
        if entries.is_empty() {
            problems.push("mqtt.brokers", "must list at least one broker");
        }
        for (index, entry) in entries.iter().enumerate() {
            if let Err(e) = BrokerAddress::parse(entry, self.port()) {
                problems.push(format!("mqtt.brokers[{index}]"), e.to_string());
            }
        }
    }
}

#[derive(Default)]
struct Problems(Vec<ConfigError>);

impl Problems {
    fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError { key: key.into(), message: message.into() });
    }
}

#[cfg(test)]
mod tests;
