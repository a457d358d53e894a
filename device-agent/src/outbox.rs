//! A source's outbox: turns results and errors into wire messages, counts them in health, and hands them to
//! the spool (or, without one, to the MQTT link) without blocking the worker on the network. A message that
//! cannot be taken (the spool failed to write it, the link's queue is full or closed) is counted as
//! unpublished, never silently lost.

use crate::clock::unix_time_ms as now_ms;
use crate::health::SourceStats;
use crate::mqtt::{MqttHandle, PublishError, QoS};
use crate::queue::Job;
use crate::spool::{Class, Spool};
use protocol::error::{ErrorKind, ErrorStage};
use protocol::wire::{self, ErrorEvent, Format, Prediction, Topics};
use runtime::{Output, Pipeline, StageTimings};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where encoded messages go: the spool in the agent (the MQTT link when the spool could not open), standard
/// output in `device-agent infer`.
pub trait Publish: Send + Sync {
    /// Hands `payload`, a message of `class`, over, waiting at most briefly; `Err` (why, for a log line) when it
    /// cannot be taken.
    fn publish(&self, class: Class, topic: String, qos: QoS, payload: Vec<u8>) -> Result<(), String>;
}

impl Publish for Spool {
    fn publish(&self, class: Class, topic: String, qos: QoS, payload: Vec<u8>) -> Result<(), String> {
        self.append(class, &topic, qos as u8, &payload).map_err(|error| error.to_string())
    }
}

/// How long a worker waits for room in the link's queue while the broker is connected but slower than the
/// worker: backpressure (a camera's newer frames replace the waiting one, file readers wait) instead of a lost
/// prediction. While the broker is away a full queue refuses at once, and the message is counted.
const LINK_BACKPRESSURE: Duration = Duration::from_secs(1);

impl Publish for MqttHandle {
    fn publish(&self, _class: Class, topic: String, qos: QoS, payload: Vec<u8>) -> Result<(), String> {
        self.publish_while_connected(&topic, qos, false, &payload, Instant::now() + LINK_BACKPRESSURE)
            .map_err(|error: PublishError| error.to_string())
    }
}

/// The per-source half of the agent's output path.
#[derive(Clone)]
pub struct Outbox {
    device: Arc<str>,
    source: Arc<str>,
    topics: Arc<Topics>,
    format: Format,
    qos: OutboxQos,
    link: Arc<dyn Publish>,
    stats: Arc<SourceStats>,
}

/// QoS of the two topics an outbox writes.
#[derive(Debug, Clone, Copy)]
pub struct OutboxQos {
    pub predictions: QoS,
    pub errors: QoS,
}

/// Everything an outbox needs that is the same for every source.
#[derive(Clone)]
pub struct OutboxSettings {
    pub device: Arc<str>,
    pub topics: Arc<Topics>,
    pub format: Format,
    pub qos: OutboxQos,
    pub link: Arc<dyn Publish>,
}

impl Outbox {
    /// The outbox of source `source`.
    pub fn new(settings: &OutboxSettings, source: &str, stats: Arc<SourceStats>) -> Outbox {
        Outbox {
            device: settings.device.clone(),
            source: source.into(),
            topics: settings.topics.clone(),
            format: settings.format,
            qos: settings.qos,
            link: settings.link.clone(),
            stats,
        }
    }

    /// A job was taken by the worker.
    pub fn frame_in(&self) {
        self.stats.frame_in();
    }

    /// `n` inputs were dropped before inference (replaced in the latest-frame slot, or rejected by a full queue).
    pub fn dropped(&self, n: u64) {
        self.stats.dropped(n);
    }

    /// The worker's queue gauge.
    pub fn queue_depth(&self, depth: usize, capacity: usize) {
        self.stats.set_queue(depth, capacity);
    }

    /// `pipeline` serves this source from now on: health shows its model and providers.
    pub fn serving(&self, pipeline: &Pipeline) {
        let provider = pipeline.provider();
        self.stats.set_model(pipeline.identity().clone());
        self.stats.set_providers(
            provider.requested.iter().map(|p| p.name().to_owned()).collect(),
            provider.active.name().to_owned(),
        );
    }

    /// Publishes the prediction `pipeline` made for `job`.
    pub fn prediction(&self, job: &Job, pipeline: &Pipeline, output: Output, timings: StageTimings) {
        self.stats.frame_ok(&timings);
        let message = self.prediction_message(job, pipeline, output, timings);
        let topic = self.topics.predictions(&self.source);
        self.send(Class::Predictions, topic, self.qos.predictions, wire::encode(self.format, &message));
    }

    /// The prediction message for `job`, exactly as it is published.
    pub fn prediction_message(
        &self,
        job: &Job,
        pipeline: &Pipeline,
        output: Output,
        timings: StageTimings,
    ) -> Prediction {
        Prediction {
            device: self.device.to_string(),
            source: self.source.to_string(),
            seq: job.seq,
            captured_at_ms: job.captured_at_ms,
            published_at_ms: now_ms(),
            model: pipeline.identity().clone(),
            provider: pipeline.provider().active.name().to_owned(),
            output,
            latency_us: timings,
            total_us: timings.total_us(),
            input: (!job.origin.is_empty()).then(|| job.origin.clone()),
        }
    }

    /// Reports a job the pipeline refused.
    pub fn pipeline_error(&self, job: &Job, error: &runtime::Error) {
        self.report(job.seq, &job.origin, error.stage(), error.kind(), &error.to_string());
    }

    /// Reports a problem of the source (stage `source`).
    pub fn source_error(&self, seq: u64, origin: &str, kind: ErrorKind, message: &str) {
        self.report(seq, origin, ErrorStage::Source, kind, message);
    }

    /// The error event for an input, exactly as it is published.
    pub fn error_message(
        &self,
        seq: u64,
        origin: &str,
        stage: ErrorStage,
        kind: ErrorKind,
        message: &str,
    ) -> ErrorEvent {
        error_event(&self.device, &self.source, seq, stage, kind, message, origin)
    }

    fn report(&self, seq: u64, origin: &str, stage: ErrorStage, kind: ErrorKind, message: &str) {
        log::warn!(source = &*self.source, seq, stage = stage.as_str(), kind = kind.as_str(), input = origin; "No prediction for this input: {message}.");
        self.stats.error(kind);
        let event = self.error_message(seq, origin, stage, kind, message);
        self.send(Class::Errors, self.topics.errors(&self.source), self.qos.errors, wire::encode(self.format, &event));
    }

    fn send(&self, class: Class, topic: String, qos: QoS, payload: Result<Vec<u8>, wire::WireError>) {
        let result = match payload {
            Ok(payload) => self.link.publish(class, topic, qos, payload),
            Err(error) => Err(format!("encoding: {error}")),
        };
        if let Err(reason) = result {
            log::debug!(source = &*self.source; "Message not published: {reason}.");
            self.stats.unpublished();
        }
    }
}

/// The one place an [`ErrorEvent`] is built: by outboxes, for sources that cannot start, and by the updater. An
/// empty `origin` means the input came from nowhere in particular.
pub fn error_event(
    device: &str,
    source: &str,
    seq: u64,
    stage: ErrorStage,
    kind: ErrorKind,
    message: &str,
    origin: &str,
) -> ErrorEvent {
    ErrorEvent {
        device: device.to_owned(),
        source: source.to_owned(),
        seq,
        at_ms: now_ms(),
        stage,
        kind,
        message: message.to_owned(),
        input: (!origin.is_empty()).then(|| origin.to_owned()),
    }
}
