//! Snapshots: a JPEG of a frame whose prediction matched a rule, published retained on
//! `<prefix>/snapshots/<source>` and/or stored in a directory, rate-limited and size-capped. The prediction's
//! sequence number rides in the JPEG's comment segment and in the file name.
//!
//! The worker only checks the rule and the rate limit, a few comparisons per prediction. A match that may be
//! taken clones the job's input and hands it to the source's `snapshot-<source>` thread through a channel of one,
//! so the worker never waits for an encode or a disk. The thread decodes the frame (a JPEG that needs no boxes
//! and fits is sent as it is), draws the boxes, encodes under `max_bytes`, then publishes and stores. When the
//! channel is full (one snapshot is being written and another waits), the new match is skipped and counted as
//! `busy`, and the rate limit is not used up, so the next match tries again.

mod draw;
mod jpeg;
mod limit;
mod rule;

use crate::config::SnapshotConfig;
use crate::kept_files::KeptFiles;
use crate::mqtt::{MqttHandle, QoS};
use crate::queue::Job;
use image::RgbImage;
use limit::RateLimit;
use protocol::wire::SnapshotHealth;
use rule::Rule;
use runtime::{BoundingBox, Input, Output};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the snapshot thread waits for room in the MQTT link's queue while the broker is connected.
const LINK_BACKPRESSURE: Duration = Duration::from_secs(1);

/// What happened to a matching prediction's snapshot (one match may be both published and stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotOutcome {
    Published,
    Stored,
    RateLimited,
    Busy,
    TooLarge,
    Failed,
}

/// One source's snapshot counters, since start; health reads them as a [`SnapshotHealth`].
#[derive(Debug, Default)]
pub struct SnapshotStats {
    published: AtomicU64,
    stored: AtomicU64,
    rate_limited: AtomicU64,
    busy: AtomicU64,
    too_large: AtomicU64,
    failed: AtomicU64,
}

impl SnapshotStats {
    pub fn count(&self, outcome: SnapshotOutcome) {
        let counter = match outcome {
            SnapshotOutcome::Published => &self.published,
            SnapshotOutcome::Stored => &self.stored,
            SnapshotOutcome::RateLimited => &self.rate_limited,
            SnapshotOutcome::Busy => &self.busy,
            SnapshotOutcome::TooLarge => &self.too_large,
            SnapshotOutcome::Failed => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn health(&self, source: &str) -> SnapshotHealth {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        SnapshotHealth {
            source: source.to_owned(),
            published: read(&self.published),
            stored: read(&self.stored),
            rate_limited: read(&self.rate_limited),
            busy: read(&self.busy),
            too_large: read(&self.too_large),
            failed: read(&self.failed),
        }
    }
}

/// Where a source's snapshots are published: retained, on its snapshot topic.
pub struct Publisher {
    pub link: MqttHandle,
    pub topic: String,
    pub qos: QoS,
}

/// A matching frame on its way to the snapshot thread.
struct Taken {
    seq: u64,
    captured_at_ms: u64,
    input: Input,
    /// The boxes to draw; empty when none are to be drawn.
    boxes: Vec<BoundingBox>,
}

/// The worker's side of one source's snapshots: the rule, the rate limit and the hand-off to its thread.
pub struct Snapshots {
    rule: Rule,
    limit: RateLimit,
    draw_boxes: bool,
    sender: SyncSender<Taken>,
    stats: Arc<SnapshotStats>,
    thread: JoinHandle<()>,
}

impl Snapshots {
    /// Starts the `snapshot-<source>` thread of `config`'s source; `publisher` is `None` when the snapshots are
    /// only stored.
    pub fn start(
        config: &SnapshotConfig,
        device: &str,
        publisher: Option<Publisher>,
        stats: Arc<SnapshotStats>,
    ) -> io::Result<Snapshots> {
        let store = config
            .directory
            .clone()
            .map(|dir| KeptFiles::new(dir, &config.source, "jpg", config.keep_files, config.keep_bytes));
        let writer = Writer {
            device: device.to_owned(),
            source: config.source.clone(),
            quality: config.quality,
            max_bytes: config.max_bytes,
            publisher,
            store,
            stats: stats.clone(),
        };
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name(format!("snapshot-{}", config.source))
            .spawn(move || writer.run(&receiver))?;
        Ok(Snapshots {
            rule: Rule::new(config),
            limit: RateLimit::new(Duration::from_secs_f64(config.min_interval_secs)),
            draw_boxes: config.draw_boxes,
            sender,
            stats,
            thread,
        })
    }

    /// Takes a snapshot of `job` if `output` matches the rule and the rate limit allows.
    pub fn consider(&mut self, job: &Job, output: &Output) {
        self.consider_at(job, output, Instant::now());
    }

    fn consider_at(&mut self, job: &Job, output: &Output, now: Instant) {
        let Some(boxes) = self.rule.matches(output) else { return };
        if !self.limit.allows(now) {
            return self.stats.count(SnapshotOutcome::RateLimited);
        }
        let boxes = if self.draw_boxes { boxes } else { Vec::new() };
        let taken = Taken { seq: job.seq, captured_at_ms: job.captured_at_ms, input: job.input.clone(), boxes };
        match self.sender.try_send(taken) {
            Ok(()) => self.limit.taken(now),
            Err(TrySendError::Full(_)) => self.stats.count(SnapshotOutcome::Busy),
            Err(TrySendError::Disconnected(_)) => self.stats.count(SnapshotOutcome::Failed),
        }
    }

    /// Lets the thread write what it was handed, and waits for it to end.
    pub fn finish(self) {
        drop(self.sender);
        let _ = self.thread.join();
    }
}

/// The snapshot thread's work: frame to JPEG, then out.
struct Writer {
    device: String,
    source: String,
    quality: u8,
    max_bytes: usize,
    publisher: Option<Publisher>,
    store: Option<KeptFiles>,
    stats: Arc<SnapshotStats>,
}

impl Writer {
    fn run(self, taken: &Receiver<Taken>) {
        for snapshot in taken {
            self.write(&snapshot);
        }
    }

    fn write(&self, taken: &Taken) {
        let jpeg = match self.jpeg(taken) {
            Ok(Some(jpeg)) => jpeg,
            Ok(None) => {
                let source = self.source.as_str();
                log::debug!(source, seq = taken.seq; "Snapshot over max_bytes at every quality and scale: skipped.");
                return self.stats.count(SnapshotOutcome::TooLarge);
            }
            Err(error) => {
                log::warn!(source = self.source.as_str(), seq = taken.seq; "Snapshot not taken: {error}.");
                return self.stats.count(SnapshotOutcome::Failed);
            }
        };
        if let Some(publisher) = &self.publisher {
            let deadline = Instant::now() + LINK_BACKPRESSURE;
            match publisher.link.publish_while_connected(&publisher.topic, publisher.qos, true, &jpeg, deadline) {
                Ok(()) => self.stats.count(SnapshotOutcome::Published),
                Err(error) => {
                    log::debug!(source = self.source.as_str(), seq = taken.seq; "Snapshot not published: {error}.");
                    self.stats.count(SnapshotOutcome::Failed);
                }
            }
        }
        if let Some(store) = &self.store {
            match store.store(taken.captured_at_ms, taken.seq, &jpeg) {
                Ok(_) => self.stats.count(SnapshotOutcome::Stored),
                Err(error) => {
                    log::warn!(source = self.source.as_str(), seq = taken.seq; "Snapshot not stored: {error}.");
                    self.stats.count(SnapshotOutcome::Failed);
                }
            }
        }
    }

    /// The snapshot's JPEG with its metadata comment; `None` when it cannot be made to fit `max_bytes`.
    fn jpeg(&self, taken: &Taken) -> Result<Option<Vec<u8>>, String> {
        let comment = serde_json::to_vec(&serde_json::json!({
            "device": self.device,
            "source": self.source,
            "seq": taken.seq,
            "captured_at_ms": taken.captured_at_ms,
        }))
        .map_err(|error| error.to_string())?;
        let Some(budget) = self.max_bytes.checked_sub(jpeg::comment_overhead(comment.len())) else {
            return Ok(None);
        };
        let encoded = match &taken.input {
            // A camera's own JPEG needs no decoding nor a second loss of quality when it is sent as it is.
            Input::Image(bytes) if jpeg::is_jpeg(bytes) && taken.boxes.is_empty() && bytes.len() <= budget => {
                bytes.clone()
            }
            input => {
                let mut frame = rgb_frame(input)?;
                let (width, height) = frame.dimensions();
                draw::draw_boxes(&mut frame, width, height, &taken.boxes, draw::thickness_for(width, height));
                match jpeg::encode_within(&frame, self.quality, budget).map_err(|error| error.to_string())? {
                    Some(encoded) => encoded,
                    None => return Ok(None),
                }
            }
        };
        jpeg::with_comment(&encoded, &comment).map(Some).ok_or_else(|| "the encoder wrote no JPEG".to_owned())
    }
}

/// The frame of an image input, RGB8.
fn rgb_frame(input: &Input) -> Result<RgbImage, String> {
    match input {
        Input::Image(bytes) => image::load_from_memory(bytes)
            .map(|image| image.to_rgb8())
            .map_err(|error| format!("cannot decode the frame: {error}")),
        Input::Frame(frame) => RgbImage::from_raw(frame.width(), frame.height(), frame.to_rgb8())
            .ok_or_else(|| format!("a {}x{} frame's RGB does not fill it", frame.width(), frame.height())),
        Input::Sensor(_) => Err("a sensor window has no picture".to_owned()),
    }
}

#[cfg(test)]
mod tests;
