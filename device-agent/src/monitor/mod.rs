//! The model monitor of a source (`[[monitors]]`): drift of its inputs and outputs against the bundle's
//! reference profile, alerts with hysteresis, accuracy from feedback, and evidence kept for retraining.
//!
//! ```text
//! worker-<source> ──observations──> monitor-<source> ──> <prefix>/monitor/<source>
//! mqtt (feedback/<source>) ──^   (bounded: drop       ──> <prefix>/alerts/<source>
//!                                 and count)          ──> <prefix>/retrain/candidate
//! ```
//! The worker's side is a [`MonitorTap`]: a copy of the features the pipeline computed, the prediction and
//! its timings, handed over without waiting. The `monitor-<source>` thread keeps the windows
//! ([`source::SourceMonitor`]), runs the alert state machine ([`alerts`]) and publishes ([`runner`]).

mod alerts;
mod drift;
#[cfg(test)]
mod eval;
pub mod evidence;
pub mod feedback;
mod health;
mod inbound;
mod runner;
mod signals;
mod source;
mod tap;

pub use health::MonitorStats;
pub use inbound::feedback_route;
pub use runner::{MonitorLink, MonitorSettings, MonitorTopics, MqttMonitorLink, start};
pub use tap::MonitorTap;

use crate::update::probation::ModelScore;
use crate::worker::Serving;
use feedback::Predicted;
use protocol::ModelIdentity;
use protocol::wire::Feedback;
use runtime::monitor::{FeatureSpec, Profile};
use runtime::{Input, StageTimings};
use std::sync::Arc;

/// A serving model as the monitor knows it: made once per pipeline a worker serves, so that the monitor sees
/// a new model as a new `Arc`.
#[derive(Debug)]
pub struct MonitoredModel {
    pub identity: ModelIdentity,
    /// The features the pipeline computes, in order.
    pub specs: Vec<FeatureSpec>,
    /// The bundle's reference profile; `None`: no drift is measured.
    pub profile: Option<Arc<Profile>>,
    /// Class labels in output order (possibly empty).
    pub labels: Vec<String>,
    /// Where the monitor records output drift and accuracy, for probation.
    pub score: Arc<ModelScore>,
}

impl MonitoredModel {
    /// Turns monitoring on in `serving`'s pipeline and describes its model.
    pub fn of(serving: &mut Serving) -> Arc<MonitoredModel> {
        let pipeline = &mut serving.pipeline;
        pipeline.enable_monitoring();
        Arc::new(MonitoredModel {
            identity: pipeline.identity().clone(),
            specs: pipeline.feature_specs().to_vec(),
            profile: pipeline.profile().cloned(),
            labels: pipeline.labels().to_vec(),
            score: serving.score.clone(),
        })
    }
}

/// One input the worker took.
#[derive(Debug)]
pub struct Observation {
    pub seq: u64,
    pub captured_at_ms: u64,
    /// The model that took it.
    pub model: Arc<MonitoredModel>,
    pub outcome: Outcome,
    /// A copy of the input, for the inputs sampled as evidence.
    pub input: Option<Input>,
}

/// What became of an observed input.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Inferred {
        /// The monitoring features, in [`MonitoredModel::specs`] order.
        features: Vec<f32>,
        /// What feedback is compared with; `None` for outputs feedback cannot judge (detections, raw).
        predicted: Option<Predicted>,
        timings: StageTimings,
    },
    Failed,
}

/// What the monitor thread takes, in arrival order.
#[derive(Debug)]
pub enum MonitorEvent {
    Observed(Observation),
    Feedback(Feedback),
    /// A payload on the feedback topic that did not decode.
    InvalidFeedback,
    /// The worker ended: the thread ends too.
    Finished,
}
