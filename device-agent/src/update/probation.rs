//! Probation: how a newly activated model is judged against the one it replaced.
//!
//! Each worker keeps a [`ModelScore`] for the model it serves: inputs taken, inputs failed, recent inference
//! latencies and the top confidence of its predictions. When a candidate is activated, the old model's score
//! becomes the baseline and the candidate starts a fresh one; [`judge`] compares the two.

use crate::health::nearest_rank;
pub use device_update::judge::ScoreSnapshot;
use runtime::{Output, StageTimings};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

/// Inference latencies kept for the p95: enough for a stable percentile, small enough to copy.
const LATENCY_SAMPLES: usize = 512;

/// The running record of one model on one worker.
#[derive(Debug, Default)]
pub struct ModelScore {
    tally: Mutex<Tally>,
}

#[derive(Debug, Default, Clone)]
struct Tally {
    frames: u64,
    errors: u64,
    inference_us: VecDeque<u32>,
    confidence_sum: f64,
    confidence_count: u64,
    output_psi: Option<f64>,
    accuracy: Option<(u32, u32)>,
}

impl ModelScore {
    pub fn new() -> Arc<ModelScore> {
        Arc::new(ModelScore::default())
    }

    /// Records a prediction.
    pub fn prediction(&self, output: &Output, timings: &StageTimings) {
        let mut tally = self.lock();
        tally.frames += 1;
        if tally.inference_us.len() == LATENCY_SAMPLES {
            tally.inference_us.pop_front();
        }
        tally.inference_us.push_back(timings.inference_us);
        if let Some(confidence) = top_confidence(output) {
            tally.confidence_sum += f64::from(confidence);
            tally.confidence_count += 1;
        }
    }

    /// Records the largest output-feature PSI of the monitor's latest window.
    pub fn output_drift(&self, psi: f64) {
        self.lock().output_psi = Some(psi);
    }

    /// Records the accuracy from feedback over the monitor's window: `correct` of `labelled`.
    pub fn accuracy(&self, correct: u32, labelled: u32) {
        self.lock().accuracy = Some((correct, labelled));
    }

    /// Records an input the pipeline refused.
    pub fn failure(&self) {
        let mut tally = self.lock();
        tally.frames += 1;
        tally.errors += 1;
    }

    pub fn snapshot(&self) -> ScoreSnapshot {
        let tally = self.lock().clone();
        let mut latencies: Vec<u32> = tally.inference_us.into_iter().collect();
        latencies.sort_unstable();
        ScoreSnapshot {
            frames: tally.frames,
            errors: tally.errors,
            p95_inference_us: (!latencies.is_empty()).then(|| nearest_rank(&latencies, 95)),
            mean_confidence: (tally.confidence_count > 0).then(|| tally.confidence_sum / tally.confidence_count as f64),
            output_psi: tally.output_psi,
            accuracy: tally.accuracy,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The confidence of a prediction: the best class's probability, the mean score of the detections, or the score
/// of the text read.
fn top_confidence(output: &Output) -> Option<f32> {
    match output {
        Output::Classification { classes } => classes.first().map(|class| class.score),
        Output::Detection { detections } if !detections.is_empty() => {
            Some(detections.iter().map(|d| d.score).sum::<f32>() / detections.len() as f32)
        }
        Output::Text { score, .. } => Some(*score),
        Output::Detection { .. } | Output::Anomaly { .. } | Output::Raw { .. } | Output::Segmentation { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use device_update::judge::{Verdict, judge};
    use device_update::settings::ProbationLimits;
    use runtime::ClassScore;

    fn limits() -> ProbationLimits {
        ProbationLimits { min_frames: 10, min_p95_increase_ms: 0.1, ..ProbationLimits::default() }
    }

    fn classified(score: f32) -> Output {
        Output::Classification { classes: vec![ClassScore { index: 0, label: "a".into(), score }] }
    }

    fn scored(frames: u64, errors: u64, inference_us: u32, confidence: f32) -> ScoreSnapshot {
        let score = ModelScore::default();
        let timings = StageTimings { inference_us, ..StageTimings::default() };
        for _ in 0..frames - errors {
            score.prediction(&classified(confidence), &timings);
        }
        for _ in 0..errors {
            score.failure();
        }
        score.snapshot()
    }

    #[test]
    fn a_candidate_is_not_judged_before_min_frames() {
        assert_eq!(judge(&limits(), &scored(100, 0, 100, 0.9), &scored(9, 9, 100_000, 0.1)), Verdict::TooEarly);
    }

    #[test]
    fn an_equal_candidate_is_healthy() {
        assert_eq!(judge(&limits(), &scored(100, 1, 100, 0.9), &scored(20, 0, 120, 0.85)), Verdict::Healthy);
    }

    #[test]
    fn more_errors_slower_or_less_sure_is_unhealthy() {
        let baseline = scored(100, 0, 100, 0.9);
        for (candidate, what) in [
            (scored(20, 5, 100, 0.9), "error rate"),
            (scored(20, 0, 250, 0.9), "p95"),
            (scored(20, 0, 100, 0.5), "confidence"),
        ] {
            match judge(&limits(), &baseline, &candidate) {
                Verdict::Unhealthy(reason) => assert!(reason.contains(what), "{reason}"),
                other => panic!("expected {what} to fail, got {other:?}"),
            }
        }
    }

    #[test]
    fn small_latency_changes_are_noise() {
        let limits = ProbationLimits { min_frames: 10, min_p95_increase_ms: 1.0, ..ProbationLimits::default() };
        assert_eq!(judge(&limits, &scored(100, 0, 200, 0.9), &scored(20, 0, 900, 0.9)), Verdict::Healthy);
        assert!(matches!(judge(&limits, &scored(100, 0, 200, 0.9), &scored(20, 0, 1300, 0.9)), Verdict::Unhealthy(_)));
    }

    #[test]
    fn latency_needs_a_baseline_but_errors_do_not() {
        let idle = ScoreSnapshot {
            frames: 0,
            errors: 0,
            p95_inference_us: None,
            mean_confidence: None,
            output_psi: None,
            accuracy: None,
        };
        assert_eq!(judge(&limits(), &idle, &scored(20, 0, 100_000, 0.9)), Verdict::Healthy);
        assert!(matches!(judge(&limits(), &idle, &scored(20, 20, 100, 0.9)), Verdict::Unhealthy(_)));
    }

    #[test]
    fn output_drift_and_accuracy_are_judged_when_configured_and_measured() {
        let configured =
            ProbationLimits { max_output_psi: Some(0.25), min_accuracy: Some(0.8), min_labelled: 10, ..limits() };
        let baseline = scored(100, 0, 100, 0.9);
        let monitored = |output_psi, accuracy| ScoreSnapshot { output_psi, accuracy, ..scored(20, 0, 100, 0.9) };
        for (candidate, verdict) in [
            (monitored(None, None), None),
            (monitored(Some(0.25), Some((8, 10))), None),
            (monitored(Some(0.3), None), Some("output drift: PSI 0.300")),
            (monitored(None, Some((7, 10))), Some("accuracy 70.0% over 10 labelled")),
            (monitored(None, Some((0, 9))), None),
        ] {
            match (judge(&configured, &baseline, &candidate), verdict) {
                (Verdict::Healthy, None) => {}
                (Verdict::Unhealthy(reason), Some(expected)) => assert!(reason.contains(expected), "{reason}"),
                (other, expected) => panic!("{candidate:?}: {other:?}, expected {expected:?}"),
            }
        }
        let unset = limits();
        assert_eq!(judge(&unset, &baseline, &monitored(Some(5.0), Some((0, 100)))), Verdict::Healthy);
        assert_eq!(
            judge(&configured, &baseline, &ScoreSnapshot { frames: 5, ..monitored(Some(5.0), None) }),
            Verdict::TooEarly
        );
    }

    #[test]
    fn the_p95_follows_recent_samples() {
        let score = ModelScore::default();
        let slow = StageTimings { inference_us: 10_000, ..StageTimings::default() };
        let fast = StageTimings { inference_us: 10, ..StageTimings::default() };
        for _ in 0..LATENCY_SAMPLES {
            score.prediction(&classified(0.5), &slow);
        }
        for _ in 0..LATENCY_SAMPLES {
            score.prediction(&classified(0.5), &fast);
        }
        assert_eq!(score.snapshot().p95_inference_us, Some(10));
        assert_eq!(score.snapshot().frames, 2 * LATENCY_SAMPLES as u64);
    }
}
