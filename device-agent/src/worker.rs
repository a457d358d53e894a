//! The inference worker: one named thread per source, owning that source's pipeline (one ONNX Runtime
//! session). It runs the jobs its [prepare thread](crate::prepare) has decoded and preprocessed, in the order of
//! the source's queue, until that thread has ended (the queue closed and drained).
//!
//! Between two jobs it takes the [`Swap`]s handed on with them: the updater hands it a new pipeline and gets
//! the old one back. Sequence numbers are assigned at capture, so the swap drops nothing: the next job simply
//! runs on the new model.

use crate::monitor::MonitorTap;
use crate::outbox::Outbox;
use crate::prepare::{Handoff, WorkerEnds};
use crate::queue::{self, Job};
use crate::snapshot::Snapshots;
use crate::supervisor::Busy;
use crate::update::probation::ModelScore;
use runtime::{BatchBuffers, Input, Output, Pipeline, StageTimings};
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

/// A source's queue: jobs, and swaps taken between two jobs.
pub type JobQueue = queue::JobQueue<Swap>;

/// Where the updater sends a worker its swaps.
pub type SwapSender = queue::ControlSender<Swap>;

/// Runs prepared jobs through the serving pipeline and publishes each result or error until the prepare
/// thread ends, giving each buffer back as soon as the run has read it. Between jobs it sleeps until a job or
/// a swap arrives. A batch (for a model that takes batches: the windows that were waiting together) runs as one
/// inference. Returns what it served last. `busy` tells the supervisor when the inference in progress began.
/// `snapshots` (the source's, if it takes any) sees every prediction, and `monitor` (the source's, if it has
/// one) every input; both finish with the worker.
pub fn run(
    mut serving: Serving,
    ends: WorkerEnds,
    outbox: &Outbox,
    busy: &Busy,
    mut snapshots: Option<Snapshots>,
    mut monitor: Option<MonitorTap>,
) -> Serving {
    outbox.serving(&serving.pipeline);
    if let Some(monitor) = &mut monitor {
        monitor.serve(&mut serving);
    }
    let (mut results, mut buffers) = (Vec::new(), BatchBuffers::default());
    loop {
        match ends.handoff.recv() {
            Ok(Handoff::Job { job, prepared, outcome }) => {
                outbox.frame_in();
                let result = outcome.and_then(|()| {
                    busy.begin();
                    let result = serving.pipeline.run(&prepared);
                    busy.end();
                    result
                });
                // The prepare thread has ended at shutdown; the buffer is then simply dropped.
                let _ = ends.free.send(prepared);
                publish(&mut serving, &job, result, outbox, &mut snapshots, &mut monitor);
            }
            Ok(Handoff::Batch { jobs, token }) => {
                for _ in &jobs {
                    outbox.frame_in();
                }
                let inputs: Vec<&Input> = jobs.iter().map(|job| &job.input).collect();
                busy.begin();
                serving.pipeline.infer_batch(&inputs, &mut buffers, &mut results);
                busy.end();
                let _ = ends.free.send(token);
                for (job, result) in jobs.iter().zip(results.drain(..)) {
                    publish(&mut serving, job, result, outbox, &mut snapshots, &mut monitor);
                }
            }
            Ok(Handoff::Swap(mut swap)) => {
                outbox.serving(&swap.serving.pipeline);
                if let Some(monitor) = &mut monitor {
                    monitor.serve(&mut swap.serving);
                }
                let old = std::mem::replace(&mut serving, swap.serving);
                // The updater may have given up waiting; the old pipeline is then simply dropped.
                let _ = swap.replaced.send(old);
            }
            Err(_) => {
                outbox.finish();
                if let Some(snapshots) = snapshots {
                    snapshots.finish();
                }
                if let Some(monitor) = monitor {
                    monitor.finish();
                }
                return serving;
            }
        }
    }
}

/// Records one job's result in the model's score, the snapshots and the monitor, and publishes it.
fn publish(
    serving: &mut Serving,
    job: &Job,
    result: runtime::Result<(Output, StageTimings)>,
    outbox: &Outbox,
    snapshots: &mut Option<Snapshots>,
    monitor: &mut Option<MonitorTap>,
) {
    match result {
        Ok((output, timings)) => {
            serving.score.prediction(&output, &timings);
            if let Some(snapshots) = snapshots {
                snapshots.consider(job, &output);
            }
            if let Some(monitor) = monitor {
                monitor.inferred(job, serving.pipeline.features(), &output, &timings);
            }
            outbox.prediction(job, &serving.pipeline, output, timings);
        }
        Err(error) => {
            serving.score.failure();
            if let Some(monitor) = monitor {
                monitor.failed(job);
            }
            outbox.pipeline_error(job, &error);
        }
    }
}

/// How many waiting windows run at once: a batch for a model that takes batches, except on a monitored source,
/// whose monitor observes each window's own features; else one.
pub fn batch_limit(pipeline: &Pipeline, monitored: bool) -> usize {
    if monitored { 1 } else { pipeline.max_batch() }
}
