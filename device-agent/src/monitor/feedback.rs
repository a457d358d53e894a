//! Accuracy from feedback: ground truth joined with the predictions the monitor remembers.

use crate::config::FeedbackConfig;
use protocol::wire::{AccuracyReport, Feedback};

/// What the model predicted for one input, as ground truth is compared with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Predicted {
    /// The top-1 class.
    Class { index: u32 },
    /// The anomaly verdict.
    Anomaly { anomalous: bool },
}

/// Why a piece of feedback was not counted as matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmatched {
    /// Older than the predictions remembered.
    Late,
    /// No prediction with that sequence number, or a label the model does not have.
    Unknown(String),
}

/// The predictions of one model remembered for joining, and the accuracy window.
#[derive(Debug)]
pub struct FeedbackJoin {
    labels: Vec<String>,
}

impl FeedbackJoin {
    /// A join for a model with class `labels` (empty for an anomaly model).
    pub fn new(config: &FeedbackConfig, labels: Vec<String>) -> FeedbackJoin {
        let _ = config;
        todo!("branch feedback {labels:?}")
    }

    /// Remembers the prediction of input `seq`.
    pub fn predicted(&mut self, seq: u64, predicted: Predicted) {
        let _ = (seq, predicted, &self.labels);
        todo!("branch feedback")
    }

    /// Joins ground truth with its prediction.
    pub fn truth(&mut self, feedback: &Feedback) -> Result<(), Unmatched> {
        let _ = feedback;
        todo!("branch feedback")
    }

    /// Counts a payload that could not be decoded.
    pub fn invalid(&mut self) {
        todo!("branch feedback")
    }

    /// Accuracy over the window, per-class precision and recall, and the counters.
    pub fn report(&self) -> AccuracyReport {
        todo!("branch feedback")
    }
}
