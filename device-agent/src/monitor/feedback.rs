//! Accuracy from feedback: ground truth joined with the predictions the monitor remembers.
//!
//! Memory is fixed by the configuration: the predictions of the last `remember` sequence numbers live in a ring
//! indexed by `seq % remember` (each slot keeps its seq, so a slot a newer prediction took is told apart;
//! feedback for an older seq is late, for a seq never predicted unknown), and the
//! last `window` labelled predictions in a ring of (predicted, truth) pairs whose per-class counts are adjusted
//! as a pair enters or leaves. Feedback repeated for one seq counts once: the latest truth replaces the earlier
//! while the pair is still in the window (a correction), and changes nothing once it has left.

use crate::config::FeedbackConfig;
use protocol::wire::{AccuracyReport, ClassAccuracy, Feedback};

/// The classes of an anomaly model, by index: the verdict `anomalous` is class 1.
const ANOMALY_CLASSES: [&str; 2] = ["normal", "anomalous"];

/// What the model predicted for one input, as ground truth is compared with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Predicted {
    /// The top-1 class.
    Class { index: u32 },
    /// The anomaly verdict.
    Anomaly { anomalous: bool },
}

impl Predicted {
    fn class(&self) -> u32 {
        match *self {
            Predicted::Class { index } => index,
            Predicted::Anomaly { anomalous } => u32::from(anomalous),
        }
    }
}

/// Why a piece of feedback was not counted as matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmatched {
    /// Older than the predictions remembered.
    Late,
    /// No prediction with that sequence number, or a label the model does not have.
    Unknown(String),
}

/// A remembered prediction.
#[derive(Debug, Clone, Copy)]
struct Remembered {
    seq: u64,
    predicted: u32,
    /// The position of its (predicted, truth) pair in the window's sequence, once feedback joined it.
    labelled_at: Option<u64>,
}

/// A labelled prediction in the accuracy window.
#[derive(Debug, Clone, Copy)]
struct Pair {
    predicted: u32,
    truth: u32,
}

/// Per-class counts over the window, adjusted pair by pair.
#[derive(Debug)]
struct ClassCounts {
    /// Pairs predicted as the class and truly of it.
    hits: Vec<u32>,
    /// Pairs predicted as the class.
    predicted: Vec<u32>,
    /// Pairs truly of the class.
    actual: Vec<u32>,
    correct: u32,
}

impl ClassCounts {
    fn new(classes: usize) -> ClassCounts {
        ClassCounts { hits: vec![0; classes], predicted: vec![0; classes], actual: vec![0; classes], correct: 0 }
    }

    fn add(&mut self, pair: Pair) {
        self.adjust(pair, |count| *count += 1);
    }

    fn remove(&mut self, pair: Pair) {
        self.adjust(pair, |count| *count -= 1);
    }

    /// Applies `change` to every count `pair` contributes to. A predicted index the model does not have (no
    /// such label) counts as wrong and in no class's predictions.
    fn adjust(&mut self, pair: Pair, change: impl Fn(&mut u32)) {
        let (predicted, truth) = (pair.predicted as usize, pair.truth as usize);
        if let Some(count) = self.predicted.get_mut(predicted) {
            change(count);
        }
        change(&mut self.actual[truth]);
        if predicted == truth {
            change(&mut self.hits[truth]);
            change(&mut self.correct);
        }
    }
}

/// The predictions of one model remembered for joining, and the accuracy window.
#[derive(Debug)]
pub struct FeedbackJoin {
    /// The class labels, index by index (`normal`, `anomalous` for an anomaly model).
    labels: Vec<String>,
    anomaly: bool,
    remembered: Vec<Option<Remembered>>,
    /// The largest seq predicted so far.
    newest: Option<u64>,
    /// The window's pairs, a ring once `window_size` are in.
    window: Vec<Pair>,
    window_size: usize,
    /// Pairs that ever entered the window: the next pair's position.
    labelled: u64,
    counts: ClassCounts,
    matched_total: u64,
    late_total: u64,
    unknown_total: u64,
    invalid_total: u64,
}

impl FeedbackJoin {
    /// A join for a model with class `labels` (empty for an anomaly model).
    pub fn new(config: &FeedbackConfig, labels: Vec<String>) -> FeedbackJoin {
        let anomaly = labels.is_empty();
        let labels = if anomaly { ANOMALY_CLASSES.map(str::to_owned).to_vec() } else { labels };
        FeedbackJoin {
            counts: ClassCounts::new(labels.len()),
            labels,
            anomaly,
            remembered: vec![None; config.remember.max(1)],
            newest: None,
            window: Vec::with_capacity(config.window.max(1)),
            window_size: config.window.max(1),
            labelled: 0,
            matched_total: 0,
            late_total: 0,
            unknown_total: 0,
            invalid_total: 0,
        }
    }

    /// Remembers the prediction of input `seq`.
    pub fn predicted(&mut self, seq: u64, predicted: Predicted) {
        let slot = self.slot(seq);
        self.remembered[slot] = Some(Remembered { seq, predicted: predicted.class(), labelled_at: None });
        self.newest = Some(self.newest.map_or(seq, |newest| newest.max(seq)));
    }

    /// Joins ground truth with its prediction.
    pub fn truth(&mut self, feedback: &Feedback) -> Result<(), Unmatched> {
        let joined = self.join(feedback);
        match &joined {
            Ok(()) => {}
            Err(Unmatched::Late) => self.late_total += 1,
            Err(Unmatched::Unknown(_)) => self.unknown_total += 1,
        }
        joined
    }

    /// Counts a payload that could not be decoded.
    pub fn invalid(&mut self) {
        self.invalid_total += 1;
    }

    /// Accuracy over the window, per-class precision and recall, and the counters.
    pub fn report(&self) -> AccuracyReport {
        let ratio = |numerator: u32, denominator: u32| {
            (denominator > 0).then(|| (f64::from(numerator) / f64::from(denominator)) as f32)
        };
        let counts = &self.counts;
        let labelled = u32::try_from(self.window.len()).unwrap_or(u32::MAX);
        let classes = self
            .labels
            .iter()
            .enumerate()
            .map(|(class, label)| ClassAccuracy {
                label: label.clone(),
                precision: ratio(counts.hits[class], counts.predicted[class]),
                recall: ratio(counts.hits[class], counts.actual[class]),
                support: counts.actual[class],
            })
            .collect();
        AccuracyReport {
            labelled,
            correct: counts.correct,
            accuracy: ratio(counts.correct, labelled),
            classes,
            matched_total: self.matched_total,
            late_total: self.late_total,
            unknown_total: self.unknown_total,
            invalid_total: self.invalid_total,
        }
    }

    fn join(&mut self, feedback: &Feedback) -> Result<(), Unmatched> {
        let truth = self.truth_class(feedback)?;
        let seq = feedback.seq;
        // By seq, not by slot: a slot no newer prediction took still holds its seq, but the ring covers only the
        // last `remember` sequence numbers.
        if self.newest.is_some_and(|newest| newest >= seq && newest - seq >= self.remembered.len() as u64) {
            return Err(Unmatched::Late);
        }
        let slot = self.slot(seq);
        let remembered = match self.remembered[slot] {
            Some(remembered) if remembered.seq == seq => remembered,
            _ => return Err(Unmatched::Unknown(format!("no prediction has seq {seq}"))),
        };
        let pair = Pair { predicted: remembered.predicted, truth };
        match remembered.labelled_at {
            None => {
                self.matched_total += 1;
                let position = self.push_pair(pair);
                self.remembered[slot] = Some(Remembered { labelled_at: Some(position), ..remembered });
            }
            Some(position) if self.labelled - position <= self.window.len() as u64 => {
                // A correction: the latest truth replaces the earlier one.
                let index = self.window_index(position);
                self.counts.remove(self.window[index]);
                self.window[index] = pair;
                self.counts.add(pair);
            }
            // Judged already and out of the window: the repeat changes nothing.
            Some(_) => {}
        }
        Ok(())
    }

    /// Adds a labelled pair to the window, the oldest leaving when it is full; returns its position.
    fn push_pair(&mut self, pair: Pair) -> u64 {
        let position = self.labelled;
        if self.window.len() < self.window_size {
            self.window.push(pair);
        } else {
            let index = self.window_index(position);
            self.counts.remove(self.window[index]);
            self.window[index] = pair;
        }
        self.counts.add(pair);
        self.labelled += 1;
        position
    }

    /// The class index of the truth `feedback` states, or why the model has no such class.
    fn truth_class(&self, feedback: &Feedback) -> Result<u32, Unmatched> {
        let index = if self.anomaly {
            let anomalous = feedback
                .anomalous
                .ok_or_else(|| Unmatched::Unknown("feedback for an anomaly model needs `anomalous`".to_owned()))?;
            usize::from(anomalous)
        } else {
            let label = feedback
                .label
                .as_deref()
                .ok_or_else(|| Unmatched::Unknown("feedback for a classifier needs `label`".to_owned()))?;
            self.labels
                .iter()
                .position(|known| known == label)
                .ok_or_else(|| Unmatched::Unknown(format!("the model has no label {label:?}")))?
        };
        // Labels come from a manifest, far fewer than u32::MAX.
        Ok(index as u32)
    }

    fn window_index(&self, position: u64) -> usize {
        (position % self.window_size as u64) as usize
    }

    fn slot(&self, seq: u64) -> usize {
        (seq % self.remembered.len() as u64) as usize
    }
}

#[cfg(test)]
mod tests;
