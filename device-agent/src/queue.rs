//! The hand-off between a source and its worker, with the policy for when it is full:
//!
//! - camera sources use a [`LatestSlot`]: a newer frame replaces an unprocessed one, and the replaced frame
//!   is counted as dropped. A live camera is worth more fresh than complete.
//! - sensor sources use a bounded FIFO ([`JobQueue::Fifo`]): file and stdin readers block when it is full
//!   (nothing is dropped; the reader simply waits), and MQTT-fed windows that find it full are rejected,
//!   counted and reported as an error event, because the MQTT thread must never block.

use runtime::Input;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// One input on its way to a worker.
#[derive(Debug)]
pub struct Job {
    /// Sequence number per source, assigned at capture: gaps are frames dropped before inference.
    pub seq: u64,
    /// Capture time, milliseconds since the Unix epoch.
    pub captured_at_ms: u64,
    /// Where the input came from (file name, topic, CSV rows), for error events.
    pub origin: String,
    pub input: Input,
}

#[derive(Default)]
struct SlotState {
    job: Option<Job>,
    closed: bool,
}

/// A single-frame slot where the newest frame wins.
#[derive(Default)]
pub struct LatestSlot {
    state: Mutex<SlotState>,
    ready: Condvar,
}

impl LatestSlot {
    /// Stores `job`; returns true when it replaced a frame the worker had not taken yet.
    pub fn put(&self, job: Job) -> bool {
        let replaced = self.lock().job.replace(job).is_some();
        self.ready.notify_one();
        replaced
    }

    /// Waits up to `timeout` for a frame.
    pub fn take(&self, timeout: Duration) -> Result<Job, Idle> {
        let state = self.lock();
        let (mut state, _) = self
            .ready
            .wait_timeout_while(state, timeout, |s| s.job.is_none() && !s.closed)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match state.job.take() {
            Some(job) => Ok(job),
            None if state.closed => Err(Idle::Finished),
            None => Err(Idle::Timeout),
        }
    }

    /// Wakes the worker for good; a frame still in the slot can be taken.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// 1 when a frame waits, else 0.
    pub fn depth(&self) -> usize {
        usize::from(self.lock().job.is_some())
    }

    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What a worker reads from.
pub enum JobQueue {
    Latest(std::sync::Arc<LatestSlot>),
    Fifo { receiver: Receiver<Job>, capacity: usize, depth: std::sync::Arc<std::sync::atomic::AtomicUsize> },
}

/// Why [`JobQueue::next`] returned no job.
#[derive(Debug, PartialEq, Eq)]
pub enum Idle {
    /// Nothing arrived within the timeout.
    Timeout,
    /// Every producer is gone and the queue is empty.
    Finished,
}

impl JobQueue {
    /// The next job, waiting at most `timeout`.
    pub fn next(&self, timeout: Duration) -> Result<Job, Idle> {
        match self {
            JobQueue::Latest(slot) => slot.take(timeout),
            JobQueue::Fifo { receiver, depth, .. } => match receiver.recv_timeout(timeout) {
                Ok(job) => {
                    depth.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    Ok(job)
                }
                Err(RecvTimeoutError::Timeout) => Err(Idle::Timeout),
                Err(RecvTimeoutError::Disconnected) => Err(Idle::Finished),
            },
        }
    }

    /// Jobs waiting and the most that can wait.
    pub fn depth(&self) -> (usize, usize) {
        match self {
            JobQueue::Latest(slot) => (slot.depth(), 1),
            JobQueue::Fifo { capacity, depth, .. } => {
                (depth.load(std::sync::atomic::Ordering::Relaxed), *capacity)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(seq: u64) -> Job {
        Job { seq, captured_at_ms: 0, origin: String::new(), input: Input::Image(vec![]) }
    }

    #[test]
    fn newest_frame_wins_and_replacements_are_reported() {
        let slot = LatestSlot::default();
        assert!(!slot.put(job(1)));
        assert!(slot.put(job(2)));
        assert_eq!(slot.depth(), 1);
        assert_eq!(slot.take(Duration::from_millis(1)).map(|j| j.seq), Ok(2));
        assert_eq!(slot.take(Duration::from_millis(1)).map(|j| j.seq), Err(Idle::Timeout));
        slot.close();
        assert_eq!(slot.take(Duration::from_millis(1)).map(|j| j.seq), Err(Idle::Finished));
    }

    #[test]
    fn close_wakes_a_waiting_worker() {
        let slot = std::sync::Arc::new(LatestSlot::default());
        let waiter = {
            let slot = slot.clone();
            std::thread::spawn(move || {
                let started = std::time::Instant::now();
                (slot.take(Duration::from_secs(30)).is_err(), started.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        slot.close();
        let (empty, waited) = waiter.join().unwrap();
        assert!(empty);
        assert!(waited < Duration::from_secs(10), "close did not wake the worker: waited {waited:?}");
    }
}
