//! The agent's own signals over the last `window` inputs: inference p95, error rate, mean top-1 confidence and
//! the predicted classes' shares. Latency and errors are judged against a baseline learned from the model's
//! first [`BASELINE_WINDOWS`] evaluated windows (what is normal depends on the board, not on the model's
//! validation data); confidence and classes against the bundle's reference profile.

use super::alerts::Reading;
use crate::health::nearest_rank;
use protocol::wire::{AlertKind, Severity};
use std::collections::VecDeque;

/// Windows a new model serves before its latency and error rate are judged: their mean is the baseline.
pub const BASELINE_WINDOWS: u32 = 3;
/// A p95 must also grow by this much to count as a jump: a 40 µs model doubling is scheduler noise.
const MIN_LATENCY_JUMP_US: f64 = 1000.0;

/// One input as the signals see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// The inference stage's time; `None` when the input failed.
    pub inference_us: Option<u32>,
    /// Top-1 confidence, for models that have one.
    pub confidence: Option<f32>,
    /// The top-1 class, for classifiers.
    pub class: Option<u32>,
}

/// What a window of samples says.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// `None` when every input failed.
    pub p95_us: Option<u32>,
    pub error_rate: f64,
    pub mean_confidence: Option<f64>,
    /// The most predicted class and its share of the predictions.
    pub top_class: Option<(u32, f64)>,
}

/// The last `capacity` samples, with scratch space for the summary: fixed memory after the first window.
#[derive(Debug)]
pub struct SignalWindow {
    capacity: usize,
    samples: VecDeque<Sample>,
    latencies: Vec<u32>,
    class_counts: Vec<u32>,
}

impl SignalWindow {
    pub fn new(capacity: usize) -> SignalWindow {
        SignalWindow {
            capacity,
            samples: VecDeque::with_capacity(capacity),
            latencies: Vec::with_capacity(capacity),
            class_counts: Vec::new(),
        }
    }

    pub fn push(&mut self, sample: Sample) {
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    pub fn is_full(&self) -> bool {
        self.samples.len() == self.capacity
    }

    pub fn clear(&mut self) {
        self.samples.clear();
    }

    /// Bytes held on the heap: the samples and the summary's scratch space.
    #[cfg(test)]
    pub fn heap_bytes(&self) -> usize {
        self.samples.capacity() * size_of::<Sample>()
            + (self.latencies.capacity() + self.class_counts.capacity()) * size_of::<u32>()
    }

    pub fn summary(&mut self) -> Summary {
        self.latencies.clear();
        self.latencies.extend(self.samples.iter().filter_map(|sample| sample.inference_us));
        self.latencies.sort_unstable();
        let failed = self.samples.len() - self.latencies.len();
        let (confidence_sum, confidences) = (self.samples.iter().filter_map(|sample| sample.confidence))
            .fold((0.0, 0u32), |(sum, count), confidence| (sum + f64::from(confidence), count + 1));
        self.class_counts.iter_mut().for_each(|count| *count = 0);
        let mut predicted = 0u32;
        for class in self.samples.iter().filter_map(|sample| sample.class) {
            let index = class as usize;
            if index >= self.class_counts.len() {
                self.class_counts.resize(index + 1, 0);
            }
            self.class_counts[index] += 1;
            predicted += 1;
        }
        let top_class = (0..self.class_counts.len())
            .max_by_key(|index| (self.class_counts[*index], std::cmp::Reverse(*index)))
            .filter(|_| predicted > 0)
            .map(|index| (index as u32, f64::from(self.class_counts[index]) / f64::from(predicted)));
        Summary {
            p95_us: (!self.latencies.is_empty()).then(|| nearest_rank(&self.latencies, 95)),
            error_rate: failed as f64 / self.samples.len().max(1) as f64,
            mean_confidence: (confidences > 0).then(|| confidence_sum / f64::from(confidences)),
            top_class,
        }
    }
}

/// The p95 and error rate that are normal for the serving model on this device.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Baseline {
    windows: u32,
    error_rate_sum: f64,
    p95_sum: f64,
    p95_windows: u32,
}

impl Baseline {
    /// Learns from `summary` while the baseline is not complete; true when it did.
    pub fn learn(&mut self, summary: &Summary) -> bool {
        if self.windows >= BASELINE_WINDOWS {
            return false;
        }
        self.windows += 1;
        self.error_rate_sum += summary.error_rate;
        if let Some(p95) = summary.p95_us {
            self.p95_sum += f64::from(p95);
            self.p95_windows += 1;
        }
        true
    }

    fn error_rate(&self) -> Option<f64> {
        (self.windows >= BASELINE_WINDOWS).then(|| self.error_rate_sum / f64::from(self.windows))
    }

    fn p95_us(&self) -> Option<f64> {
        (self.windows >= BASELINE_WINDOWS && self.p95_windows > 0).then(|| self.p95_sum / f64::from(self.p95_windows))
    }
}

/// What the profile says is normal for the model's outputs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct References {
    /// The reference mean of the top-1 confidence.
    pub mean_confidence: Option<f64>,
    /// The reference share of each predicted class.
    pub class_shares: Vec<f64>,
}

/// The signal thresholds of one source (`[[monitors]]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SignalThresholds {
    pub latency_ratio: f64,
    pub error_rate_increase: f64,
    pub confidence_ratio: f64,
    pub class_share: f64,
}

impl SignalThresholds {
    /// The readings of one window; a signal without its baseline or reference gives none. `labels` name the
    /// classes (the index as text past them).
    pub fn readings(
        &self,
        summary: &Summary,
        baseline: &Baseline,
        references: &References,
        labels: &[String],
    ) -> Vec<Reading> {
        let reading = |kind, subject: &str, statistic, value: f64, threshold: f64, bad: bool| Reading {
            kind,
            subject: subject.to_owned(),
            statistic,
            value: value as f32,
            threshold: threshold as f32,
            bad: bad.then_some(Severity::Alert),
        };
        let mut readings = Vec::new();
        if let (Some(base), Some(p95)) = (baseline.p95_us(), summary.p95_us) {
            let p95 = f64::from(p95);
            let limit = (base * self.latency_ratio).max(base + MIN_LATENCY_JUMP_US);
            readings.push(reading(AlertKind::Latency, "inference_p95", "p95_us", p95, limit, p95 > limit));
        }
        if let Some(base) = baseline.error_rate() {
            let (rate, limit) = (summary.error_rate, base + self.error_rate_increase);
            readings.push(reading(AlertKind::ErrorRate, "error_rate", "error_rate", rate, limit, rate > limit));
        }
        if let (Some(reference), Some(mean)) = (references.mean_confidence, summary.mean_confidence) {
            let limit = reference * self.confidence_ratio;
            let subject = "top1_confidence";
            readings.push(reading(
                AlertKind::ConfidenceCollapse,
                subject,
                "mean_confidence",
                mean,
                limit,
                mean < limit,
            ));
        }
        if let Some((class, share)) = summary.top_class
            && let Some(reference) = references.class_shares.get(class as usize)
            && *reference < self.class_share
        {
            let label = labels.get(class as usize).cloned().unwrap_or_else(|| class.to_string());
            let bad = share > self.class_share;
            readings.push(reading(AlertKind::ClassDominance, &label, "class_share", share, self.class_share, bad));
        }
        readings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THRESHOLDS: SignalThresholds =
        SignalThresholds { latency_ratio: 2.0, error_rate_increase: 0.1, confidence_ratio: 0.5, class_share: 0.9 };

    fn ok(inference_us: u32, confidence: f32, class: u32) -> Sample {
        Sample { inference_us: Some(inference_us), confidence: Some(confidence), class: Some(class) }
    }

    const FAILED: Sample = Sample { inference_us: None, confidence: None, class: None };

    fn summary_of(samples: &[Sample]) -> Summary {
        let mut window = SignalWindow::new(samples.len());
        samples.iter().for_each(|sample| window.push(*sample));
        assert!(window.is_full());
        window.summary()
    }

    fn learned(summary: &Summary) -> Baseline {
        let mut baseline = Baseline::default();
        while baseline.learn(summary) {}
        baseline
    }

    fn labels() -> Vec<String> {
        ["sitting", "walking"].map(String::from).to_vec()
    }

    fn judged(readings: &[Reading], kind: AlertKind) -> &Reading {
        readings.iter().find(|reading| reading.kind == kind).unwrap_or_else(|| panic!("no {kind:?} reading"))
    }

    #[test]
    fn a_window_is_summarised() {
        let mut samples = vec![ok(100, 0.8, 1); 18];
        samples.push(ok(5000, 0.4, 0));
        samples.push(FAILED);
        let summary = summary_of(&samples);
        assert_eq!(summary.p95_us, Some(5000));
        assert_eq!(summary.error_rate, 0.05);
        assert!((summary.mean_confidence.unwrap() - (18.0 * 0.8 + 0.4) / 19.0).abs() < 1e-6);
        assert_eq!(summary.top_class, Some((1, 18.0 / 19.0)));
    }

    #[test]
    fn latency_and_errors_are_judged_only_once_the_baseline_is_learned() {
        let normal = summary_of(&vec![ok(2000, 0.9, 0); 10]);
        let mut baseline = Baseline::default();
        for _ in 0..BASELINE_WINDOWS - 1 {
            assert!(baseline.learn(&normal));
        }
        assert!(THRESHOLDS.readings(&normal, &baseline, &References::default(), &labels()).is_empty());
        assert!(baseline.learn(&normal));
        assert!(!baseline.learn(&normal), "learned once");
        let readings = THRESHOLDS.readings(&normal, &baseline, &References::default(), &labels());
        assert!(readings.iter().all(|reading| reading.bad.is_none()));
        assert_eq!(readings.len(), 2);
    }

    #[test]
    fn a_latency_jump_over_the_ratio_and_the_floor_is_bad() {
        let baseline = learned(&summary_of(&vec![ok(2000, 0.9, 0); 10]));
        let slow = summary_of(&vec![ok(4500, 0.9, 0); 10]);
        let latency = THRESHOLDS.readings(&slow, &baseline, &References::default(), &labels());
        let latency = judged(&latency, AlertKind::Latency);
        assert_eq!((latency.value, latency.threshold, latency.bad), (4500.0, 4000.0, Some(Severity::Alert)));
        // A fast model doubling its time is not a jump below the floor.
        let fast = learned(&summary_of(&vec![ok(40, 0.9, 0); 10]));
        let doubled = THRESHOLDS.readings(&summary_of(&vec![ok(90, 0.9, 0); 10]), &fast, &References::default(), &[]);
        assert_eq!(judged(&doubled, AlertKind::Latency).bad, None);
    }

    #[test]
    fn an_error_rate_jump_is_bad() {
        let baseline = learned(&summary_of(&[ok(100, 0.9, 0), ok(100, 0.9, 0), ok(100, 0.9, 0), FAILED]));
        let failing = summary_of(&[ok(100, 0.9, 0), ok(100, 0.9, 0), FAILED, FAILED]);
        let readings = THRESHOLDS.readings(&failing, &baseline, &References::default(), &labels());
        let errors = judged(&readings, AlertKind::ErrorRate);
        assert_eq!((errors.value, errors.threshold, errors.bad), (0.5, 0.35, Some(Severity::Alert)));
    }

    #[test]
    fn confidence_collapses_below_a_fraction_of_the_reference() {
        let references = References { mean_confidence: Some(0.9), class_shares: Vec::new() };
        let unsure = summary_of(&vec![ok(100, 0.4, 0); 10]);
        let readings = THRESHOLDS.readings(&unsure, &Baseline::default(), &references, &labels());
        let collapse = judged(&readings, AlertKind::ConfidenceCollapse);
        assert_eq!((collapse.statistic, collapse.value, collapse.threshold), ("mean_confidence", 0.4, 0.45));
        assert_eq!(collapse.bad, Some(Severity::Alert));
        let sure = summary_of(&vec![ok(100, 0.5, 0); 10]);
        let readings = THRESHOLDS.readings(&sure, &Baseline::default(), &references, &labels());
        assert_eq!(judged(&readings, AlertKind::ConfidenceCollapse).bad, None);
    }

    #[test]
    fn one_class_dominating_is_bad_unless_the_reference_is_dominated_too() {
        let mut samples = vec![ok(100, 0.9, 1); 19];
        samples.push(ok(100, 0.9, 0));
        let summary = summary_of(&samples);
        let balanced = References { mean_confidence: None, class_shares: vec![0.5, 0.5] };
        let readings = THRESHOLDS.readings(&summary, &Baseline::default(), &balanced, &labels());
        let dominance = judged(&readings, AlertKind::ClassDominance);
        assert_eq!(
            (dominance.subject.as_str(), dominance.value, dominance.bad),
            ("walking", 0.95, Some(Severity::Alert))
        );
        let skewed = References { mean_confidence: None, class_shares: vec![0.05, 0.95] };
        assert!(THRESHOLDS.readings(&summary, &Baseline::default(), &skewed, &labels()).is_empty());
    }
}
