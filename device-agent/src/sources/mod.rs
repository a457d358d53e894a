//! Sources: where inputs come from. Each file-backed source runs on its own named thread and hands jobs to
//! its worker through a [`Feed`]; MQTT-fed sources are callbacks on the MQTT thread that use the same feed.

pub mod backoff;
pub mod camera;
pub mod directory;
pub mod http_mjpeg;
pub mod images;
pub mod recording;
pub mod rtsp;
pub mod stdin;
pub mod v4l2;

use crate::clock::Clock;
use crate::outbox::Outbox;
use crate::queue::{Job, JobSender, Policy, Queued, Refused, job_queue};
use crate::worker::{JobQueue, Swap};
use protocol::error::ErrorKind;
use runtime::{Input, SensorWindow};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The producing end of a source's queue: numbers and timestamps jobs, applies the queue's full policy, and
/// reports what it drops or cannot read.
pub struct Feed {
    seq: AtomicU64,
    sender: JobSender<Swap>,
    outbox: Outbox,
    clock: Arc<dyn Clock>,
}

impl Feed {
    /// A camera feed: the newest frame wins.
    pub fn camera(outbox: Outbox, clock: Arc<dyn Clock>) -> (Arc<Feed>, JobQueue) {
        Feed::new(Policy::Latest, outbox, clock)
    }

    /// A FIFO feed of `capacity` inputs (sensor windows; every file of `device-agent infer`).
    pub fn fifo(outbox: Outbox, capacity: usize, clock: Arc<dyn Clock>) -> (Arc<Feed>, JobQueue) {
        Feed::new(Policy::Fifo { capacity }, outbox, clock)
    }

    fn new(policy: Policy, outbox: Outbox, clock: Arc<dyn Clock>) -> (Arc<Feed>, JobQueue) {
        let gauge = {
            let outbox = outbox.clone();
            Box::new(move |depth, capacity| outbox.queue_depth(depth, capacity))
        };
        let (sender, queue) = job_queue(policy, gauge);
        (Arc::new(Feed { seq: AtomicU64::new(0), sender, outbox, clock }), queue)
    }

    /// The clock the feed timestamps inputs by, for its source to pace itself by.
    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    fn job(&self, origin: String, input: Input) -> Job {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        Job { seq, captured_at_ms: self.clock.unix_time_ms(), origin, input }
    }

    /// Offers a frame: on a camera feed an unprocessed older frame is replaced and counted as dropped; on a
    /// FIFO feed (`device-agent infer`) it waits for room.
    pub fn frame(&self, origin: String, bytes: Vec<u8>) {
        let job = self.job(origin, Input::Image(bytes));
        self.deliver(job, true);
    }

    /// Offers a camera's frame (encoded or raw) captured at `captured_at_ms` (the stream's own time where it
    /// has one): an unprocessed older frame is replaced and counted as dropped. Returns whether one was.
    pub fn camera_frame(&self, origin: String, input: Input, captured_at_ms: u64) -> bool {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let replaced =
            matches!(self.sender.put(Job { seq, captured_at_ms, origin: origin.clone(), input }), Ok(Queued::Replaced));
        if replaced {
            self.outbox.dropped(1);
        }
        replaced
    }

    /// Queues a window, waiting while the queue is full (file and stdin readers: nothing is dropped).
    pub fn window(&self, origin: String, window: SensorWindow) {
        let job = self.job(origin, Input::Sensor(window));
        self.deliver(job, true);
    }

    /// Queues a window without waiting (MQTT-fed): a full queue rejects it, counted and reported.
    pub fn window_now(&self, origin: String, window: SensorWindow) {
        let job = self.job(origin, Input::Sensor(window));
        self.deliver(job, false);
    }

    fn deliver(&self, job: Job, wait: bool) {
        let (seq, origin) = (job.seq, job.origin.clone());
        let queued = if wait { self.sender.put(job) } else { self.sender.offer(job) };
        let (kind, message) = match queued {
            Ok(Queued::Added) => return,
            Ok(Queued::Replaced) => return self.outbox.dropped(1),
            Err(Refused::Full) => (ErrorKind::QueueFull, format!("the queue is full; input {seq} rejected")),
            Err(Refused::Closed) => (ErrorKind::QueueClosed, "the agent is shutting down".to_owned()),
            Err(Refused::WorkerGone) => (ErrorKind::QueueClosed, "the worker has stopped".to_owned()),
        };
        self.outbox.dropped(1);
        self.outbox.source_error(seq, &origin, kind, &message);
    }

    /// Reports a problem of the source itself (unreadable file, bad CSV row); it takes a sequence number like
    /// the input it stands for.
    pub fn error(&self, origin: &str, kind: ErrorKind, message: &str) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        self.outbox.source_error(seq, origin, kind, message);
    }

    /// No more jobs: lets the worker finish once it has drained the queue.
    pub fn close(&self) {
        self.sender.close();
    }
}
