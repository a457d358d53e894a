//! Sources: where inputs come from. Each file-backed source runs on its own named thread and hands jobs to
//! its worker through a [`Feed`]; MQTT-fed sources are callbacks on the MQTT thread that use the same feed.

pub mod images;
pub mod recording;
pub mod stdin;

use crate::outbox::Outbox;
use crate::queue::{Job, JobQueue, LatestSlot};
use runtime::{Input, SensorWindow};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// The producing end of a source's queue: numbers jobs, applies the queue's full policy, and reports what
/// it drops or cannot read.
pub struct Feed {
    seq: AtomicU64,
    target: Target,
    outbox: Outbox,
}

enum Target {
    Latest(Arc<LatestSlot>),
    Fifo { sender: Mutex<Option<SyncSender<Job>>>, depth: Arc<AtomicUsize> },
}

impl Feed {
    /// A camera feed: the newest frame wins.
    pub fn camera(outbox: Outbox) -> (Arc<Feed>, JobQueue) {
        let slot = Arc::new(LatestSlot::default());
        let feed = Feed { seq: AtomicU64::new(0), target: Target::Latest(slot.clone()), outbox };
        (Arc::new(feed), JobQueue::Latest(slot))
    }

    /// A FIFO feed of `capacity` inputs (sensor windows; every file of `device-agent infer`).
    pub fn fifo(outbox: Outbox, capacity: usize) -> (Arc<Feed>, JobQueue) {
        let (sender, receiver) = sync_channel(capacity);
        let depth = Arc::new(AtomicUsize::new(0));
        let target = Target::Fifo { sender: Mutex::new(Some(sender)), depth: depth.clone() };
        let feed = Feed { seq: AtomicU64::new(0), target, outbox };
        (Arc::new(feed), JobQueue::Fifo { receiver, capacity, depth })
    }

    fn job(&self, origin: String, input: Input) -> Job {
        Job { seq: self.seq.fetch_add(1, Ordering::Relaxed), captured_at_ms: now_ms(), origin, input }
    }

    /// Offers a frame: on a camera feed an unprocessed older frame is replaced and counted as dropped; on a
    /// FIFO feed (`device-agent infer`) it waits for room.
    pub fn frame(&self, origin: String, bytes: Vec<u8>) {
        let job = self.job(origin, Input::Image(bytes));
        self.deliver(job, true);
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
        let (sender, depth) = match &self.target {
            Target::Latest(slot) => {
                if slot.put(job) {
                    self.outbox.dropped(1);
                }
                return;
            }
            Target::Fifo { sender, depth } => (sender, depth),
        };
        let (seq, origin) = (job.seq, job.origin.clone());
        // Clone the sender out of the lock so that a blocking send does not hold up `close`.
        let sender = sender.lock().unwrap_or_else(|p| p.into_inner()).clone();
        depth.fetch_add(1, Ordering::Relaxed);
        let failed = match (sender, wait) {
            (None, _) => Some(("queue_closed", "the agent is shutting down".to_owned())),
            (Some(sender), true) => sender.send(job).err().map(|_| ("queue_closed", "the worker has stopped".to_owned())),
            (Some(sender), false) => match sender.try_send(job) {
                Ok(()) => None,
                Err(TrySendError::Full(_)) => Some(("queue_full", format!("the queue is full; input {seq} rejected"))),
                Err(TrySendError::Disconnected(_)) => Some(("queue_closed", "the worker has stopped".to_owned())),
            },
        };
        if let Some((kind, message)) = failed {
            depth.fetch_sub(1, Ordering::Relaxed);
            self.outbox.dropped(1);
            self.outbox.source_error(seq, &origin, kind, &message);
        }
    }

    /// Reports a problem of the source itself (unreadable file, bad CSV row); it takes a sequence number like
    /// the input it stands for.
    pub fn error(&self, origin: &str, kind: &str, message: &str) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        self.outbox.source_error(seq, origin, kind, message);
    }

    /// No more jobs: lets the worker finish once it has drained the queue.
    pub fn close(&self) {
        match &self.target {
            Target::Latest(slot) => slot.close(),
            Target::Fifo { sender, .. } => drop(sender.lock().unwrap_or_else(|p| p.into_inner()).take()),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
