//! The prepare thread: one per source, named `prepare-<source>`, between the source's queue and its worker. It
//! decodes and preprocesses the next input while the worker runs the previous one, so a second core works on
//! decoding instead of the worker waiting for it.
//!
//! ```text
//! source ──(latest slot | FIFO)──> prepare-<name> ──hand-off──> worker-<name>
//!                                        ^───────free buffers───────┘
//! ```
//!
//! [`BUFFERS`] (two) [`Prepared`] buffers circulate: one the worker runs, one being prepared. The channels and
//! what happens when they are full:
//!
//! - **source queue** ([`crate::queue`], unchanged: latest-frame slot for cameras, FIFO for sensors). The
//!   prepare thread takes a job from it only while it holds a free buffer, so it prepares one job ahead of the
//!   worker, never more, and a camera frame that a newer one will replace in the slot is never decoded. Swaps
//!   arrive there too, taken before jobs as before.
//! - **hand-off** (prepare → worker, in order): prepared jobs, each with its buffer and its preparation's
//!   outcome (a bad JPEG goes to the worker in order, to be published as before), and swaps. It never holds
//!   more than the two buffered jobs and a swap, because a job needs a buffer: it is never full, and a send
//!   fails only when the worker has ended.
//! - **free buffers** (worker → prepare): the worker gives a buffer back as soon as the run has read it. The
//!   prepare thread waits on it when it holds none; it ends when the worker has ended.
//!
//! A swap builds the new model's preparer (with the source's frame limits) and is handed on in order: jobs
//! prepared before it run on the model they were prepared for, jobs after it on the new one. At shutdown the
//! source queue closes; the prepare thread prepares what it holds and ends, closing the hand-off, and the worker
//! runs what was handed off, then finishes.

use crate::queue::{Job, Next};
use crate::worker::{JobQueue, Swap};
use runtime::{Prepared, Preparer};
use std::sync::mpsc::{Receiver, Sender, channel};

/// Buffers per source: one being run, one being prepared.
pub const BUFFERS: usize = 2;

/// What the worker takes from its prepare thread, in the order of the source's queue.
pub enum Handoff {
    /// A job and the buffer it was prepared into, with the preparation's outcome.
    Job { job: Job, prepared: Prepared, outcome: runtime::Result<()> },
    /// Windows that were waiting together, for a model that takes batches: the worker prepares and runs them as
    /// one batch. `token` is a buffer, given back like a job's, so that batches too are never more than
    /// [`BUFFERS`] ahead of the worker.
    Batch { jobs: Vec<Job>, token: Prepared },
    /// A new model to serve from the next job on (boxed: a pipeline is large, and swaps are rare).
    Swap(Box<Swap>),
}

/// The prepare thread's ends of its channels.
pub struct PrepareEnds {
    handoff: Sender<Handoff>,
    free: Receiver<Prepared>,
}

/// The worker's ends: what to run, and where to give buffers back.
pub struct WorkerEnds {
    pub handoff: Receiver<Handoff>,
    pub free: Sender<Prepared>,
}

/// The channels between a prepare thread and its worker, with [`BUFFERS`] free buffers.
pub fn channels() -> (PrepareEnds, WorkerEnds) {
    let (handoff_sender, handoff) = channel();
    let (free, free_receiver) = channel();
    for _ in 0..BUFFERS {
        // The receiver is alive: it is returned below.
        let _ = free.send(Prepared::new());
    }
    (PrepareEnds { handoff: handoff_sender, free: free_receiver }, WorkerEnds { handoff, free })
}

/// Prepares the source's jobs for its worker until the queue is closed and drained, or the worker has ended.
/// `max_batch` is [`crate::worker::batch_limit`] of the model served; above one, the jobs waiting in the queue
/// are handed on together, up to that many, unprepared (the worker runs them as one batch).
pub fn run(mut preparer: Preparer, mut max_batch: usize, monitored: bool, queue: JobQueue, ends: PrepareEnds) {
    // The source's frame limits outlive its model: a pipeline the updater built gets them too.
    let image_limits = preparer.image_limits();
    let mut held = None;
    loop {
        let mut prepared = match held.take() {
            Some(prepared) => prepared,
            None => match ends.free.recv() {
                Ok(prepared) => prepared,
                Err(_) => return,
            },
        };
        let handoff = match queue.next() {
            Next::Job(job) if max_batch > 1 => {
                let mut jobs = vec![job];
                queue.take_waiting(max_batch - 1, &mut jobs);
                Handoff::Batch { jobs, token: prepared }
            }
            Next::Job(job) => {
                let outcome = preparer.prepare(&job.input, &mut prepared);
                Handoff::Job { job, prepared, outcome }
            }
            Next::Control(mut swap) => {
                if let Some(limits) = image_limits {
                    swap.serving.pipeline.set_image_limits(limits);
                }
                preparer = swap.serving.pipeline.preparer();
                max_batch = crate::worker::batch_limit(&swap.serving.pipeline, monitored);
                held = Some(prepared);
                Handoff::Swap(Box::new(swap))
            }
            Next::Finished => return,
        };
        if ends.handoff.send(handoff).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{Policy, Queued, job_queue};
    use crate::worker::Serving;
    use runtime::{Bundle, EngineOptions, Input, OnnxRuntime, Pipeline};
    use std::path::PathBuf;
    use std::sync::mpsc::sync_channel;
    use std::time::Duration;

    /// Long enough never to fire on a working thread; a hung wait fails the test instead of the whole run.
    const HANG: Duration = Duration::from_secs(30);

    fn classifier(ort: &OnnxRuntime) -> Pipeline {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/image-classifier");
        let bundle = Bundle::load(dir).expect("shipped bundle loads");
        Pipeline::new(ort, &bundle, &EngineOptions::default()).expect("pipeline builds")
    }

    fn job(seq: u64, bytes: &[u8]) -> Job {
        Job { seq, captured_at_ms: 0, origin: format!("frame {seq}"), input: Input::Image(bytes.to_vec()) }
    }

    /// The next hand-off's job: its seq, buffer and outcome.
    fn next_job(worker: &WorkerEnds) -> (u64, Prepared, runtime::Result<()>) {
        match worker.handoff.recv_timeout(HANG).expect("a hand-off") {
            Handoff::Job { job, prepared, outcome } => (job.seq, prepared, outcome),
            Handoff::Batch { .. } | Handoff::Swap(_) => panic!("a job expected"),
        }
    }

    #[test]
    fn prepares_one_job_ahead_in_order_and_never_decodes_a_frame_that_is_replaced() {
        let ort = OnnxRuntime::load(crate::ort_library(None)).expect("ONNX Runtime loads ($ORT_DYLIB_PATH)");
        let mut pipeline = classifier(&ort);
        let cat = std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/frames/cat.jpg")).unwrap();
        let (sender, queue) = job_queue(Policy::Latest, Box::new(|_, _| {}));
        let control = queue.control();
        let (prepare_ends, worker) = channels();
        let preparer = pipeline.preparer();
        let thread = std::thread::spawn(move || run(preparer, 1, false, queue, prepare_ends));

        sender.put(job(1, &cat)).unwrap();
        let (seq, first, outcome) = next_job(&worker);
        assert_eq!(seq, 1);
        outcome.expect("a good JPEG prepares");
        // A bad frame goes to the worker in order, with its error.
        sender.put(job(2, b"not a jpeg")).unwrap();
        let (seq, second, outcome) = next_job(&worker);
        assert_eq!(seq, 2);
        assert_eq!(outcome.unwrap_err().stage().as_str(), "decode");
        // Both buffers are with the worker: frame 3 waits in the slot, and frame 4 replaces it undecoded.
        sender.put(job(3, &cat)).unwrap();
        assert_eq!(sender.put(job(4, &cat)), Ok(Queued::Replaced));
        assert!(worker.handoff.recv_timeout(Duration::from_millis(100)).is_err(), "nothing prepared without a buffer");
        // The worker runs what was prepared into the first buffer, then gives it back: frame 4 is prepared.
        assert!(pipeline.run(&first).is_ok());
        worker.free.send(first).unwrap();
        let (seq, fourth, outcome) = next_job(&worker);
        assert_eq!(seq, 4);
        outcome.expect("prepares");
        assert!(pipeline.run(&fourth).is_ok());

        // A swap is handed on in order, and the jobs after it are prepared for the new model.
        worker.free.send(second).unwrap();
        let (replaced, _old) = sync_channel(1);
        let swapped = Serving::new(classifier(&ort));
        assert!(control.send(Swap { serving: swapped, replaced }).is_ok());
        let Handoff::Swap(swap) = worker.handoff.recv_timeout(HANG).expect("a hand-off") else {
            panic!("the swap expected")
        };
        let mut new_pipeline = swap.serving.pipeline;
        worker.free.send(fourth).unwrap();
        sender.put(job(5, &cat)).unwrap();
        let (seq, fifth, outcome) = next_job(&worker);
        assert_eq!(seq, 5);
        outcome.expect("prepares");
        assert!(new_pipeline.run(&fifth).is_ok());

        // Shutdown: the closed queue ends the thread, which closes the hand-off.
        sender.close();
        thread.join().unwrap();
        assert!(worker.handoff.recv_timeout(HANG).is_err(), "the hand-off is closed");
    }
}
