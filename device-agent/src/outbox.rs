//! A source's outbox: turns results and errors into wire messages, counts them in health, and hands them to
//! the spool (or, without one, to the MQTT link) without blocking the worker on the network. A message that
//! cannot be taken (the spool failed to write it, the link's queue is full or closed) is counted as
//! unpublished, never silently lost. With `[sources.batch]`, predictions leave several to a message
//! ([`batch`]); error events always leave one by one. A prediction too large for one MQTT packet becomes an error
//! event ([`oversize`]).

mod batch;
mod oversize;

pub use oversize::PayloadLimit;

use crate::clock::unix_time_ms as now_ms;
use crate::config::BatchConfig;
use crate::health::SourceStats;
use crate::mqtt::{MqttHandle, PublishError, QoS};
use crate::queue::Job;
use crate::spool::{Class, Spool};
use batch::{BatchTarget, Batcher};
use protocol::error::{ErrorKind, ErrorStage};
use protocol::wire::{self, BatchedPrediction, ErrorEvent, Format, Prediction, Topics};
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
    sender: Sender,
    stats: Arc<SourceStats>,
    /// Present with `[sources.batch]`.
    batcher: Option<Arc<Batcher>>,
}

/// Hands encoded messages to the spool or the link and counts the predictions they carry that were refused.
#[derive(Clone)]
struct Sender {
    source: Arc<str>,
    link: Arc<dyn Publish>,
    stats: Arc<SourceStats>,
    limit: Arc<PayloadLimit>,
}

impl Sender {
    /// Hands over `payload`, a message carrying `count` predictions or error events.
    fn send(&self, class: Class, topic: String, qos: QoS, payload: Result<Vec<u8>, wire::WireError>, count: u64) {
        let result = match payload {
            Ok(payload) => self.link.publish(class, topic, qos, payload),
            Err(error) => Err(format!("encoding: {error}")),
        };
        if let Err(reason) = result {
            log::debug!(source = &*self.source, count; "Message not published: {reason}.");
            self.stats.unpublished(count);
        }
    }
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
    /// The packet limit of each source's predictions, by source name.
    pub payload_limit: Arc<dyn Fn(&str) -> PayloadLimit + Send + Sync>,
}

impl Outbox {
    /// The outbox of source `source`, one message per prediction.
    pub fn new(settings: &OutboxSettings, source: &str, stats: Arc<SourceStats>) -> Outbox {
        let source: Arc<str> = source.into();
        Outbox {
            device: settings.device.clone(),
            source: source.clone(),
            topics: settings.topics.clone(),
            format: settings.format,
            qos: settings.qos,
            sender: Sender {
                limit: Arc::new((settings.payload_limit)(&source)),
                source,
                link: settings.link.clone(),
                stats: stats.clone(),
            },
            stats,
            batcher: None,
        }
    }

    /// The outbox of source `source`, publishing its predictions in batches as `limits` says; its
    /// `batch-<source>` thread runs until [`Outbox::finish`].
    pub fn batched(
        settings: &OutboxSettings,
        source: &str,
        stats: Arc<SourceStats>,
        limits: BatchConfig,
    ) -> std::io::Result<Outbox> {
        let mut outbox = Outbox::new(settings, source, stats);
        // Cloned before it has a batcher, so the batcher does not hold itself.
        let reporter = outbox.clone();
        let refuse: batch::Refuse = Box::new(move |prediction, payload| {
            let input = prediction.input.as_deref().unwrap_or_default();
            reporter.refuse_oversized(prediction.seq, prediction.captured_at_ms, input, payload);
        });
        let target = BatchTarget {
            device: settings.device.to_string(),
            source: source.to_owned(),
            topic: settings.topics.predictions(source),
            qos: settings.qos.predictions,
            format: settings.format,
        };
        outbox.batcher = Some(Batcher::start(limits, target, outbox.sender.clone(), refuse)?);
        Ok(outbox)
    }

    /// The source's worker has finished: the predictions still waiting in a batch are published.
    pub fn finish(&self) {
        if let Some(batcher) = &self.batcher {
            batcher.finish();
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

    /// Publishes the prediction `pipeline` made for `job`, at once or with its batch.
    pub fn prediction(&self, job: &Job, pipeline: &Pipeline, output: Output, timings: StageTimings) {
        self.stats.frame_ok(&timings);
        if let Some(batcher) = &self.batcher {
            let prediction = BatchedPrediction {
                seq: job.seq,
                captured_at_ms: job.captured_at_ms,
                output,
                latency_us: timings,
                total_us: timings.total_us(),
                input: origin(job),
            };
            batcher.add(pipeline.identity(), pipeline.provider().active.name(), prediction);
            return;
        }
        let message = self.prediction_message(job, pipeline, output, timings);
        let topic = self.topics.predictions(&self.source);
        let payload = wire::encode(self.format, &message);
        if let Ok(bytes) = &payload
            && !self.sender.limit.fits(&topic, self.qos.predictions, bytes.len())
        {
            self.refuse_oversized(job.seq, job.captured_at_ms, &job.origin, bytes);
            return;
        }
        self.sender.send(Class::Predictions, topic, self.qos.predictions, payload, 1);
    }

    /// Reports prediction `seq`, encoded as `payload`, as too large to publish (and keeps it when so configured).
    fn refuse_oversized(&self, seq: u64, captured_at_ms: u64, origin: &str, payload: &[u8]) {
        let topic = self.topics.predictions(&self.source);
        let message = self.sender.limit.refuse(&topic, self.qos.predictions, payload, seq, captured_at_ms);
        self.report(seq, origin, ErrorStage::Publish, ErrorKind::PayloadTooLarge, &message);
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
            input: origin(job),
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
        let topic = self.topics.errors(&self.source);
        self.sender.send(Class::Errors, topic, self.qos.errors, wire::encode(self.format, &event), 1);
    }
}

/// Where `job` came from, as a prediction names it.
fn origin(job: &Job) -> Option<String> {
    (!job.origin.is_empty()).then(|| job.origin.clone())
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
