//! The inference worker: one named thread per source, owning that source's pipeline (one ONNX Runtime
//! session). It takes jobs from the source's queue until the queue is closed and drained.

use crate::outbox::Outbox;
use crate::queue::{Idle, JobQueue};
use runtime::Pipeline;
use std::time::Duration;

/// How long a worker waits for a job before refreshing its queue-depth gauge.
const IDLE_WAIT: Duration = Duration::from_millis(250);

/// Runs jobs through `pipeline` and publishes each result or error until the queue finishes.
pub fn run(mut pipeline: Pipeline, queue: JobQueue, outbox: &Outbox) {
    loop {
        let (depth, capacity) = queue.depth();
        outbox.queue_depth(depth, capacity);
        let job = match queue.next(IDLE_WAIT) {
            Ok(job) => job,
            Err(Idle::Timeout) => continue,
            Err(Idle::Finished) => return,
        };
        outbox.frame_in();
        match pipeline.infer(&job.input) {
            Ok((output, timings)) => outbox.prediction(&job, pipeline.identity(), output, timings),
            Err(error) => outbox.pipeline_error(&job, &error),
        }
    }
}
