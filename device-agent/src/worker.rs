//! The inference worker: one named thread per source, owning that source's pipeline (one ONNX Runtime
//! session). It takes jobs from the source's queue until the queue is closed and drained.
//!
//! Between two jobs it takes the [`Swap`]s its queue carries: the updater hands it a new pipeline and gets
//! the old one back. Sequence numbers are assigned at capture, so the swap drops nothing: the next job simply
//! runs on the new model.

use crate::monitor::MonitorTap;
use crate::outbox::Outbox;
use crate::queue::{self, Next};
use crate::snapshot::Snapshots;
use crate::supervisor::Busy;
use crate::update::probation::ModelScore;
use runtime::{BatchBuffers, Input, Pipeline};
use std::sync::Arc;
use std::sync::mpsc::SyncSender;

/// A pipeline and the record of how it serves.
pub struct Serving {
    pub pipeline: Pipeline,
    pub score: Arc<ModelScore>,
}

impl Serving {
    pub fn new(pipeline: Pipeline) -> Serving {
        Serving { pipeline, score: ModelScore::new() }
    }
}

/// Replace the worker's pipeline; the one it served is sent back on `replaced`.
pub struct Swap {
    pub serving: Serving,
    pub replaced: SyncSender<Serving>,
}

/// A worker's queue: jobs, and swaps taken between two jobs.
pub type JobQueue = queue::JobQueue<Swap>;

/// Where the updater sends a worker its swaps.
pub type SwapSender = queue::ControlSender<Swap>;

/// Runs jobs through the serving pipeline and publishes each result or error until the queue finishes.
/// Between jobs it sleeps until a job or a swap arrives. For a model that takes batches, the jobs already
/// waiting behind the one it takes run with it as one batch (it never waits for more). Returns what it served last. `busy` tells the
/// supervisor when the inference in progress began. `snapshots` (the source's, if it takes any) sees every
/// prediction, and `monitor` (the source's, if it has one) every input; both finish with the worker.
pub fn run(
    mut serving: Serving,
    queue: JobQueue,
    outbox: &Outbox,
    busy: &Busy,
    mut snapshots: Option<Snapshots>,
    mut monitor: Option<MonitorTap>,
) -> Serving {
    outbox.serving(&serving.pipeline);
    if let Some(monitor) = &mut monitor {
        monitor.serve(&mut serving);
    }
    // The source's frame limits outlive its model: a pipeline the updater built gets them too.
    let image_limits = serving.pipeline.image_limits();
    let mut max_batch = batch_limit(&serving, monitor.is_some());
    let (mut jobs, mut results, mut buffers) = (Vec::new(), Vec::new(), BatchBuffers::default());
    loop {
        let job = match queue.next() {
            Next::Job(job) => job,
            Next::Control(mut swap) => {
                if let Some(limits) = image_limits {
                    swap.serving.pipeline.set_image_limits(limits);
                }
                outbox.serving(&swap.serving.pipeline);
                if let Some(monitor) = &mut monitor {
                    monitor.serve(&mut swap.serving);
                }
                let old = std::mem::replace(&mut serving, swap.serving);
                max_batch = batch_limit(&serving, monitor.is_some());
                // The updater may have given up waiting; the old pipeline is then simply dropped.
                let _ = swap.replaced.send(old);
                continue;
            }
            Next::Finished => {
                outbox.finish();
                if let Some(snapshots) = snapshots {
                    snapshots.finish();
                }
                if let Some(monitor) = monitor {
                    monitor.finish();
                }
                return serving;
            }
        };
        jobs.push(job);
        queue.take_waiting(max_batch - 1, &mut jobs);
        for _ in &jobs {
            outbox.frame_in();
        }
        busy.begin();
        if let [job] = jobs.as_slice() {
            results.push(serving.pipeline.infer(&job.input));
        } else {
            let inputs: Vec<&Input> = jobs.iter().map(|job| &job.input).collect();
            serving.pipeline.infer_batch(&inputs, &mut buffers, &mut results);
        }
        busy.end();
        for (job, result) in jobs.drain(..).zip(results.drain(..)) {
            match result {
                Ok((output, timings)) => {
                    serving.score.prediction(&output, &timings);
                    if let Some(snapshots) = &mut snapshots {
                        snapshots.consider(&job, &output);
                    }
                    if let Some(monitor) = &mut monitor {
                        monitor.inferred(&job, serving.pipeline.features(), &output, &timings);
                    }
                    outbox.prediction(&job, &serving.pipeline, output, timings);
                }
                Err(error) => {
                    serving.score.failure();
                    if let Some(monitor) = &mut monitor {
                        monitor.failed(&job);
                    }
                    outbox.pipeline_error(&job, &error);
                }
            }
        }
    }
}

/// How many waiting windows the worker runs at once: a batch for a model that takes batches, except on a
/// monitored source, whose monitor observes each window's own features; else one.
fn batch_limit(serving: &Serving, monitored: bool) -> usize {
    if monitored { 1 } else { serving.pipeline.max_batch() }
}
