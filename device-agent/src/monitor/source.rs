//! The windows of one source and what they say: pure state, fed observations and asked to evaluate every
//! `stride` inputs once a window is full. The runner does the IO.

use super::alerts::{AlertMachine, Change, Reading};
use super::drift::DriftThresholds;
use super::signals::{Baseline, References, Sample, SignalThresholds, SignalWindow};
use super::{MonitoredModel, Outcome};
use protocol::wire::{AccuracyReport, AlertKind, FeatureDrift, FeatureSide, Severity};
use runtime::monitor::{DriftWindow, FeatureKind, FeatureSpec, Profile};
use std::sync::Arc;
use std::time::Duration;

/// The confidence features (a classifier's top-1, a detector's mean), whose reference mean the confidence
/// collapse is judged against.
const CONFIDENCE_FEATURES: [&str; 2] = ["top1_confidence", "mean_confidence"];

/// How a source is watched (`[[monitors]]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Watch {
    pub window: usize,
    pub stride: usize,
    pub raise_after: u32,
    pub clear_after: u32,
    pub drift: DriftThresholds,
    pub signals: SignalThresholds,
    /// Alert after this long without input; `None`: never.
    pub idle_after: Option<Duration>,
    /// `feedback.min_accuracy` and `feedback.min_labelled`, when an accuracy alert is wanted.
    pub min_accuracy: Option<(f64, u32)>,
}

/// Where the features that signals read sit in a model's feature vector.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct SignalFeatures {
    confidence: Option<usize>,
    class: Option<usize>,
}

impl SignalFeatures {
    fn of(specs: &[FeatureSpec]) -> SignalFeatures {
        SignalFeatures {
            confidence: specs.iter().position(|spec| CONFIDENCE_FEATURES.contains(&spec.name.as_str())),
            class: specs.iter().position(|spec| {
                spec.side == FeatureSide::Output && matches!(spec.kind, FeatureKind::Categorical { .. })
            }),
        }
    }

    fn sample(&self, outcome: &Outcome) -> Sample {
        match outcome {
            Outcome::Inferred { features, timings, .. } => Sample {
                inference_us: Some(timings.inference_us),
                confidence: self.confidence.and_then(|index| features.get(index).copied()),
                // A category index, as the extractor writes it.
                class: self.class.and_then(|index| features.get(index)).map(|class| *class as u32),
            },
            Outcome::Failed => Sample { inference_us: None, confidence: None, class: None },
        }
    }

    fn references(&self, profile: Option<&Profile>) -> References {
        let Some(profile) = profile else { return References::default() };
        References {
            mean_confidence: self.confidence.and_then(|index| profile.features.get(index)).map(|f| f.mean),
            class_shares: self
                .class
                .and_then(|index| profile.features.get(index))
                .map(|f| f.proportions.clone())
                .unwrap_or_default(),
        }
    }
}

/// One evaluated window.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub changes: Vec<Change>,
    /// The largest PSI of an output feature; `None` without drift measured.
    pub output_psi: Option<f64>,
}

/// The monitor state of one source, for the model it serves now.
#[derive(Debug)]
pub struct SourceMonitor {
    watch: Watch,
    model: Option<Arc<MonitoredModel>>,
    positions: SignalFeatures,
    references: References,
    /// `None` while the model has no profile.
    drift: Option<DriftWindow>,
    signals: SignalWindow,
    baseline: Baseline,
    alerts: AlertMachine,
    since_evaluation: usize,
    observed: u64,
    windows_evaluated: u64,
    features: Vec<FeatureDrift>,
}

impl SourceMonitor {
    pub fn new(watch: Watch) -> SourceMonitor {
        SourceMonitor {
            signals: SignalWindow::new(watch.window),
            alerts: AlertMachine::new(watch.raise_after, watch.clear_after),
            watch,
            model: None,
            positions: SignalFeatures::default(),
            references: References::default(),
            drift: None,
            baseline: Baseline::default(),
            since_evaluation: 0,
            observed: 0,
            windows_evaluated: 0,
            features: Vec::new(),
        }
    }

    /// Whether `model` is the one observed now.
    pub fn serves(&self, model: &Arc<MonitoredModel>) -> bool {
        self.model.as_ref().is_some_and(|current| Arc::ptr_eq(current, model))
    }

    /// Starts over for `model`: windows, baselines and alerts; returns the clears of what was active.
    pub fn switch(&mut self, model: Arc<MonitoredModel>) -> Vec<Change> {
        self.positions = SignalFeatures::of(&model.specs);
        self.references = self.positions.references(model.profile.as_deref());
        // The window's memory is allocated once per model, and reused while it serves.
        self.drift = model.profile.as_ref().map(|_| DriftWindow::new(model.specs.len(), self.watch.window));
        self.signals.clear();
        self.baseline = Baseline::default();
        self.since_evaluation = 0;
        self.observed = 0;
        self.windows_evaluated = 0;
        self.features.clear();
        self.model = Some(model);
        self.alerts.reset()
    }

    /// The model observed now.
    pub fn model(&self) -> Option<&Arc<MonitoredModel>> {
        self.model.as_ref()
    }

    /// Takes one input of the current model; true when a window is due for evaluation.
    pub fn observe(&mut self, outcome: &Outcome) -> bool {
        self.observed += 1;
        self.signals.push(self.positions.sample(outcome));
        if let (Some(drift), Outcome::Inferred { features, .. }) = (&mut self.drift, outcome) {
            let expected = self.model.as_ref().map_or(0, |model| model.specs.len());
            if features.len() == expected {
                drift.push(features);
            }
        }
        self.since_evaluation += 1;
        if self.signals.is_full() && self.since_evaluation >= self.watch.stride {
            self.since_evaluation = 0;
            return true;
        }
        false
    }

    /// Evaluates the window at `now_ms`: drift (once the drift window is full too), the agent's own signals,
    /// and the accuracy from feedback (`None` without feedback).
    pub fn evaluate(&mut self, now_ms: u64, accuracy: Option<&AccuracyReport>) -> Evaluation {
        self.windows_evaluated += 1;
        let mut readings = Vec::new();
        let mut output_psi = None;
        let model = self.model.clone();
        if let (Some(drift), Some(model)) = (&self.drift, &model)
            && let Some(profile) = &model.profile
            && drift.len() == self.watch.window
        {
            let judged = self.watch.drift.judge(&model.specs, profile, &drift.evaluate(profile), drift.len());
            self.features = judged.features;
            readings.extend(judged.readings);
            output_psi = judged.output_psi;
        }
        let summary = self.signals.summary();
        if !self.baseline.learn(&summary) {
            let labels = model.as_ref().map_or(&[][..], |model| &model.labels[..]);
            readings.extend(self.watch.signals.readings(&summary, &self.baseline, &self.references, labels));
        }
        if let (Some((min_accuracy, min_labelled)), Some(report)) = (self.watch.min_accuracy, accuracy)
            && report.labelled >= min_labelled
            && let Some(value) = report.accuracy
        {
            readings.push(Reading {
                kind: AlertKind::Accuracy,
                subject: "accuracy".to_owned(),
                statistic: "accuracy",
                value,
                threshold: min_accuracy as f32,
                bad: (f64::from(value) < min_accuracy).then_some(Severity::Alert),
            });
        }
        Evaluation { changes: self.alerts.window(readings, now_ms), output_psi }
    }

    /// Judges the time since the last input (`idle`): raises or clears the no-input alert.
    pub fn idle(&mut self, idle: Duration, now_ms: u64) -> Option<Change> {
        let limit = self.watch.idle_after?;
        let reading = Reading {
            kind: AlertKind::NoInput,
            subject: "input".to_owned(),
            statistic: "idle_s",
            value: idle.as_secs_f32(),
            threshold: limit.as_secs_f32(),
            bad: (idle >= limit).then_some(Severity::Alert),
        };
        self.alerts.set_immediate(reading, now_ms)
    }

    /// Whether the no-input alert is on.
    pub fn watches_idle(&self) -> bool {
        self.watch.idle_after.is_some()
    }

    /// Inputs observed since the current model began serving.
    pub fn observed(&self) -> u64 {
        self.observed
    }

    /// Windows evaluated since the current model began serving.
    pub fn windows_evaluated(&self) -> u64 {
        self.windows_evaluated
    }

    /// Each feature's drift in the latest window with drift measured.
    pub fn features(&self) -> &[FeatureDrift] {
        &self.features
    }

    /// Bytes the source's state holds on the heap: its windows, alert machine, references and latest features.
    #[cfg(test)]
    pub fn heap_bytes(&self) -> usize {
        self.drift.as_ref().map_or(0, DriftWindow::heap_bytes)
            + self.signals.heap_bytes()
            + self.alerts.heap_bytes()
            + self.references.class_shares.capacity() * size_of::<f64>()
            + self.features.capacity() * size_of::<FeatureDrift>()
            + self.features.iter().map(|feature| feature.feature.capacity()).sum::<usize>()
    }
}
