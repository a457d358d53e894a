//! The hand-off between a source and its worker, with the policy for when it is full:
//!
//! - camera sources use a latest-frame slot ([`Policy::Latest`]): a newer frame replaces an unprocessed one,
//!   and the replaced frame is counted as dropped. A live camera is worth more fresh than complete.
//! - sensor sources use a bounded FIFO ([`Policy::Fifo`]): file and stdin readers block when it is full
//!   (nothing is dropped; the reader simply waits), and MQTT-fed windows that find it full are rejected,
//!   counted and reported as an error event, because the MQTT thread must never block.
//!
//! The same inbox carries the worker's control messages (pipeline swaps), so an idle worker sleeps until a
//! job or a swap arrives, with no timeout, and takes a swap before the next job. The queue-depth gauge is
//! set under the inbox's lock on every put and take, so health always reads the depth as it is.

use runtime::Input;
use std::collections::VecDeque;
use std::sync::mpsc::SendError;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

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

/// What a full queue does with a new job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// One slot; the newest job wins.
    Latest,
    /// Up to `capacity` jobs in order; [`JobSender::put`] waits for room, [`JobSender::offer`] refuses.
    Fifo { capacity: usize },
}

impl Policy {
    fn capacity(self) -> usize {
        match self {
            Policy::Latest => 1,
            Policy::Fifo { capacity } => capacity,
        }
    }
}

/// Reports the queue's depth and capacity each time it changes.
pub type Gauge = Box<dyn Fn(usize, usize) + Send + Sync>;

/// How a job went in.
#[derive(Debug, PartialEq, Eq)]
pub enum Queued {
    Added,
    /// It replaced a job the worker had not taken yet (latest-frame slot).
    Replaced,
}

/// Why a job was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The FIFO is full and the producer may not wait.
    Full,
    /// The queue was closed: no more jobs.
    Closed,
    /// The worker has ended.
    WorkerGone,
}

/// What the worker takes next.
#[derive(Debug)]
pub enum Next<C> {
    Control(C),
    Job(Job),
    /// The queue is closed and drained.
    Finished,
}

struct State<C> {
    jobs: VecDeque<Job>,
    control: VecDeque<C>,
    closed: bool,
    worker_gone: bool,
}

struct Inbox<C> {
    state: Mutex<State<C>>,
    /// The worker waits here for a job, a control message or the end.
    arrived: Condvar,
    /// Producers of a full FIFO wait here for room.
    room: Condvar,
    policy: Policy,
    gauge: Gauge,
}

impl<C> Inbox<C> {
    fn lock(&self) -> MutexGuard<'_, State<C>> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn report_depth(&self, state: &State<C>) {
        (self.gauge)(state.jobs.len(), self.policy.capacity());
    }
}

/// A new queue with `policy`, carrying control messages of type `C` besides jobs. `gauge` is called at once
/// and then on every change of depth.
pub fn job_queue<C>(policy: Policy, gauge: Gauge) -> (JobSender<C>, JobQueue<C>) {
    let state = State { jobs: VecDeque::new(), control: VecDeque::new(), closed: false, worker_gone: false };
    let inbox =
        Arc::new(Inbox { state: Mutex::new(state), arrived: Condvar::new(), room: Condvar::new(), policy, gauge });
    inbox.report_depth(&inbox.lock());
    (JobSender { inbox: inbox.clone() }, JobQueue { inbox })
}

/// The producing end: a source's feed.
pub struct JobSender<C> {
    inbox: Arc<Inbox<C>>,
}

impl<C> JobSender<C> {
    /// Queues `job`: a latest-frame slot replaces a waiting job; a FIFO waits for room.
    pub fn put(&self, job: Job) -> Result<Queued, Refused> {
        self.queue(job, true)
    }

    /// Queues `job` without waiting: a full FIFO refuses it.
    pub fn offer(&self, job: Job) -> Result<Queued, Refused> {
        self.queue(job, false)
    }

    fn queue(&self, job: Job, wait: bool) -> Result<Queued, Refused> {
        let inbox = &*self.inbox;
        let mut state = inbox.lock();
        let queued = match inbox.policy {
            // The slot never refuses: a frame that arrives after close is still taken by a worker that is
            // draining, and otherwise waits unread while the agent exits.
            Policy::Latest => match state.jobs.pop_front() {
                Some(_) => Queued::Replaced,
                None => Queued::Added,
            },
            Policy::Fifo { capacity } => {
                if wait {
                    state = inbox
                        .room
                        .wait_while(state, |s| s.jobs.len() >= capacity && !s.closed && !s.worker_gone)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                }
                if state.worker_gone {
                    return Err(Refused::WorkerGone);
                }
                if state.closed {
                    return Err(Refused::Closed);
                }
                if state.jobs.len() >= capacity {
                    return Err(Refused::Full);
                }
                Queued::Added
            }
        };
        state.jobs.push_back(job);
        inbox.report_depth(&state);
        inbox.arrived.notify_one();
        Ok(queued)
    }

    /// No more jobs: the worker finishes once it has taken those queued. Producers waiting for room give up.
    pub fn close(&self) {
        self.inbox.lock().closed = true;
        self.inbox.arrived.notify_one();
        self.inbox.room.notify_all();
    }
}

/// The sending end of a worker's control messages.
pub struct ControlSender<C> {
    inbox: Arc<Inbox<C>>,
}

impl<C> ControlSender<C> {
    /// Hands `message` to the worker, which takes it before its next job; it comes back when the worker
    /// has ended.
    pub fn send(&self, message: C) -> Result<(), SendError<C>> {
        let mut state = self.inbox.lock();
        if state.worker_gone {
            return Err(SendError(message));
        }
        state.control.push_back(message);
        self.inbox.arrived.notify_one();
        Ok(())
    }
}

/// What a worker reads from.
pub struct JobQueue<C> {
    inbox: Arc<Inbox<C>>,
}

impl<C> JobQueue<C> {
    /// A sender of control messages to this queue's worker.
    pub fn control(&self) -> ControlSender<C> {
        ControlSender { inbox: self.inbox.clone() }
    }

    /// Waits for the next control message or job (control messages first), or for the end.
    pub fn next(&self) -> Next<C> {
        let inbox = &*self.inbox;
        let state = inbox.lock();
        let mut state = inbox
            .arrived
            .wait_while(state, |s| s.control.is_empty() && s.jobs.is_empty() && !s.closed)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(message) = state.control.pop_front() {
            return Next::Control(message);
        }
        match state.jobs.pop_front() {
            Some(job) => {
                inbox.report_depth(&state);
                inbox.room.notify_one();
                Next::Job(job)
            }
            None => Next::Finished,
        }
    }

    /// Moves up to `max` jobs that are already waiting into `into`, without waiting for more; none while a control
    /// message waits, since it goes before the next job. A worker that infers in batches adds them to the job
    /// [`JobQueue::next`] gave it.
    pub fn take_waiting(&self, max: usize, into: &mut Vec<Job>) {
        let inbox = &*self.inbox;
        let mut state = inbox.lock();
        if !state.control.is_empty() || state.jobs.is_empty() || max == 0 {
            return;
        }
        let taken = max.min(state.jobs.len());
        into.extend(state.jobs.drain(..taken));
        inbox.report_depth(&state);
        inbox.room.notify_all();
    }
}

impl<C> Drop for JobQueue<C> {
    /// Refuses whatever comes next and releases waiting producers; control messages still queued are
    /// dropped, which tells their senders (by their reply channels) that no worker took them.
    fn drop(&mut self) {
        let control = {
            let mut state = self.inbox.lock();
            state.worker_gone = true;
            state.jobs.clear();
            self.inbox.report_depth(&state);
            std::mem::take(&mut state.control)
        };
        self.inbox.room.notify_all();
        drop(control);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// Long enough never to fire on a working queue; a hung wait fails the test instead of the whole run.
    const HANG: Duration = Duration::from_secs(30);

    fn job(seq: u64) -> Job {
        Job { seq, captured_at_ms: 0, origin: String::new(), input: Input::Image(vec![]) }
    }

    fn seq<C>(next: Next<C>) -> Option<u64> {
        match next {
            Next::Job(job) => Some(job.seq),
            _ => None,
        }
    }

    /// Every (depth, capacity) the gauge was given, in order.
    type Readings = Arc<Mutex<Vec<(usize, usize)>>>;

    /// A queue whose gauge readings are recorded.
    fn recorded(policy: Policy) -> (JobSender<u32>, JobQueue<u32>, Readings) {
        let readings = Arc::new(Mutex::new(Vec::new()));
        let gauge = {
            let readings = readings.clone();
            Box::new(move |depth, capacity| readings.lock().unwrap().push((depth, capacity)))
        };
        let (sender, queue) = job_queue(policy, gauge);
        (sender, queue, readings)
    }

    /// Runs `next` on another thread and returns what it got, failing instead of hanging.
    fn next_on_a_thread(queue: JobQueue<u32>) -> (Next<u32>, JobQueue<u32>) {
        let (done, result) = mpsc::channel();
        std::thread::spawn(move || {
            let next = queue.next();
            let _ = done.send((next, queue));
        });
        result.recv_timeout(HANG).expect("the waiting worker was not woken")
    }

    #[test]
    fn newest_frame_wins_and_the_gauge_follows_put_and_take() {
        let (sender, queue, readings) = recorded(Policy::Latest);
        assert_eq!(sender.put(job(1)), Ok(Queued::Added));
        assert_eq!(sender.put(job(2)), Ok(Queued::Replaced));
        assert_eq!(seq(queue.next()), Some(2));
        assert_eq!(*readings.lock().unwrap(), [(0, 1), (1, 1), (1, 1), (0, 1)]);
        sender.close();
        assert!(matches!(queue.next(), Next::Finished));
    }

    #[test]
    fn a_closed_queue_is_drained_before_the_worker_finishes() {
        let (sender, queue, _) = recorded(Policy::Fifo { capacity: 3 });
        sender.put(job(1)).unwrap();
        sender.put(job(2)).unwrap();
        sender.close();
        assert_eq!(sender.put(job(3)), Err(Refused::Closed));
        assert_eq!([seq(queue.next()), seq(queue.next())], [Some(1), Some(2)]);
        assert!(matches!(queue.next(), Next::Finished));
    }

    #[test]
    fn a_full_fifo_refuses_offers_and_makes_put_wait_for_room() {
        let (sender, queue, readings) = recorded(Policy::Fifo { capacity: 2 });
        sender.put(job(1)).unwrap();
        sender.offer(job(2)).unwrap();
        assert_eq!(sender.offer(job(3)), Err(Refused::Full));
        let (put, waited) = mpsc::channel();
        let producer = std::thread::spawn(move || {
            let _ = put.send(sender.put(job(4)));
            sender
        });
        assert_eq!(seq(queue.next()), Some(1));
        assert_eq!(waited.recv_timeout(HANG), Ok(Ok(Queued::Added)), "taking a job made room");
        let sender = producer.join().unwrap();
        assert_eq!([seq(queue.next()), seq(queue.next())], [Some(2), Some(4)]);
        assert!(readings.lock().unwrap().iter().all(|&(depth, capacity)| depth <= 2 && capacity == 2));
        assert_eq!(readings.lock().unwrap().last(), Some(&(0, 2)));
        sender.close();
    }

    #[test]
    fn a_batch_takes_only_what_waits_and_never_passes_a_control_message() {
        let (sender, queue, readings) = recorded(Policy::Fifo { capacity: 8 });
        for seq in 1..=5 {
            sender.put(job(seq)).unwrap();
        }
        let mut batch = Vec::new();
        queue.take_waiting(3, &mut batch);
        assert_eq!(batch.iter().map(|job| job.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(readings.lock().unwrap().last(), Some(&(2, 8)));
        queue.control().send(9).unwrap();
        queue.take_waiting(3, &mut batch);
        assert_eq!(batch.len(), 3, "the swap goes first");
        assert!(matches!(queue.next(), Next::Control(9)));
        queue.take_waiting(10, &mut batch);
        assert_eq!(batch.iter().map(|job| job.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        queue.take_waiting(10, &mut batch);
        assert_eq!(batch.len(), 5, "nothing waits: nothing is taken, nothing waited for");
    }

    #[test]
    fn control_messages_wake_an_idle_worker_and_go_before_jobs() {
        let (sender, queue, _) = recorded(Policy::Latest);
        let control = queue.control();
        let sent = std::thread::spawn(move || control.send(7).map(|()| control));
        let (next, queue) = next_on_a_thread(queue);
        assert!(matches!(next, Next::Control(7)));
        let control = sent.join().unwrap().unwrap();
        sender.put(job(1)).unwrap();
        control.send(8).unwrap();
        assert!(matches!(queue.next(), Next::Control(8)));
        assert_eq!(seq(queue.next()), Some(1));
    }

    #[test]
    fn close_wakes_a_waiting_worker() {
        let (sender, queue, _) = recorded(Policy::Latest);
        let closer = std::thread::spawn(move || sender.close());
        let (next, _queue) = next_on_a_thread(queue);
        assert!(matches!(next, Next::Finished));
        closer.join().unwrap();
    }

    #[test]
    fn a_gone_worker_refuses_jobs_and_control_and_releases_waiting_producers() {
        let (sender, queue, readings) = recorded(Policy::Fifo { capacity: 1 });
        let control = queue.control();
        sender.put(job(1)).unwrap();
        let producer = std::thread::spawn(move || sender.put(job(2)));
        let (next, queue) = next_on_a_thread(queue);
        assert_eq!(seq(next), Some(1));
        drop(queue);
        // The producer either got its job in before the worker ended or was refused: never left waiting.
        assert!(matches!(producer.join().unwrap(), Ok(Queued::Added) | Err(Refused::WorkerGone)));
        assert_eq!(control.send(3), Err(SendError(3)));
        assert_eq!(readings.lock().unwrap().last(), Some(&(0, 1)));
    }
}
