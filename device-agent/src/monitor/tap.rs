//! The worker's hand-off to its monitor thread, with the policy for when it is full:
//!
//! - observations go through a bounded channel ([`MONITOR_QUEUE`]) with `try_send`: when the monitor thread
//!   is behind, the new observation is dropped and counted (`dropped` in health). Inference never waits for
//!   monitoring; a window simply spans a few more inputs.
//! - inbound feedback takes the same channel from the MQTT thread, which must never block: dropped and counted
//!   the same way.
//! - the end is sent with a blocking `send` once the worker has drained its queue, so the monitor sees every
//!   observation that was queued before it stops.
//!
//! The per-input cost on the worker is a copy of a few dozen features and a channel send; every `sample_every`
//! inputs, when evidence is kept, a clone of the input.

use super::feedback::Predicted;
use super::{MonitorEvent, MonitorStats, MonitoredModel, Observation, Outcome};
use crate::queue::Job;
use crate::worker::Serving;
use runtime::{Output, StageTimings};
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::thread::JoinHandle;

/// Observations and feedback waiting for the monitor thread. A window is 200 inputs by default; a quarter of
/// one absorbs a slow evaluation or publish without holding many sampled frames.
pub const MONITOR_QUEUE: usize = 64;

/// A sender into a monitor thread that never waits: a full queue drops and counts.
#[derive(Clone)]
pub struct MonitorSender {
    sender: SyncSender<MonitorEvent>,
    stats: Arc<MonitorStats>,
}

impl MonitorSender {
    pub fn new(sender: SyncSender<MonitorEvent>, stats: Arc<MonitorStats>) -> MonitorSender {
        MonitorSender { sender, stats }
    }

    /// Queues `event`, or counts it as dropped when the queue is full; after the thread ended, forgets it.
    pub fn offer(&self, event: MonitorEvent) {
        match self.sender.try_send(event) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => self.stats.count_dropped(),
        }
    }
}

/// The worker's side of a source's monitor.
pub struct MonitorTap {
    sender: MonitorSender,
    /// The model served now; set by [`MonitorTap::serve`].
    model: Option<Arc<MonitoredModel>>,
    /// Every this many inputs, a copy goes along as evidence; `None`: no evidence is kept.
    sample_every: Option<u64>,
    inputs: u64,
    thread: JoinHandle<()>,
}

impl MonitorTap {
    pub(super) fn new(sender: MonitorSender, sample_every: Option<u64>, thread: JoinHandle<()>) -> MonitorTap {
        MonitorTap { sender, model: None, sample_every, inputs: 0, thread }
    }

    /// Turns monitoring on for `serving`'s pipeline; what follows is observed as its model's.
    pub fn serve(&mut self, serving: &mut Serving) {
        self.model = Some(MonitoredModel::of(serving));
    }

    /// Observes `job`, inferred as `output` by the pipeline last given to [`MonitorTap::serve`], which computed
    /// `features` ([`runtime::Pipeline::features`]).
    pub fn inferred(&mut self, job: &Job, features: Option<&[f32]>, output: &Output, timings: &StageTimings) {
        let outcome = Outcome::Inferred {
            features: features.map(<[f32]>::to_vec).unwrap_or_default(),
            predicted: predicted(output),
            timings: *timings,
        };
        self.observe(job, outcome);
    }

    /// Observes `job`, which the pipeline refused.
    pub fn failed(&mut self, job: &Job) {
        self.observe(job, Outcome::Failed);
    }

    fn observe(&mut self, job: &Job, outcome: Outcome) {
        let Some(model) = &self.model else { return };
        self.inputs += 1;
        let sampled = self.sample_every.is_some_and(|every| self.inputs.is_multiple_of(every));
        let observation = Observation {
            seq: job.seq,
            captured_at_ms: job.captured_at_ms,
            model: model.clone(),
            outcome,
            input: sampled.then(|| job.input.clone()),
        };
        self.sender.offer(MonitorEvent::Observed(observation));
    }

    /// Lets the monitor thread take what was queued, and waits for it to end.
    pub fn finish(self) {
        // A blocking send: the thread is draining, and must see the end after the last observation.
        let _ = self.sender.sender.send(MonitorEvent::Finished);
        let _ = self.thread.join();
    }
}

/// What feedback is compared with: the top-1 class, or the anomaly verdict.
fn predicted(output: &Output) -> Option<Predicted> {
    match output {
        Output::Classification { classes } => classes.first().map(|class| Predicted::Class { index: class.index }),
        Output::Anomaly { anomalous, .. } => Some(Predicted::Anomaly { anomalous: *anomalous }),
        Output::Detection { .. } | Output::Raw { .. } | Output::Segmentation { .. } | Output::Text { .. } => None,
    }
}
