//! Probation: how a newly activated model is judged against the one it replaced.
//!
//! Each worker keeps a [`ModelScore`] for the model it serves: inputs taken, inputs failed, recent inference
//! latencies and the top confidence of its predictions. When a candidate is activated, the old model's score
//! becomes the baseline and the candidate starts a fresh one; [`judge`] compares the two.

use crate::config::ProbationConfig;
use crate::health::nearest_rank;
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

/// A [`ModelScore`] at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreSnapshot {
    /// Inputs taken (predictions and failures).
    pub frames: u64,
    pub errors: u64,
    /// p95 of the recent inference latencies; `None` before the first prediction.
    pub p95_inference_us: Option<u32>,
    /// Mean top confidence; `None` for models without one (anomaly, raw) or before the first prediction.
    pub mean_confidence: Option<f64>,
    /// The largest PSI of an output feature in the monitor's latest window; `None` without a monitor, a
    /// profile or a full window.
    pub output_psi: Option<f64>,
    /// Correct and labelled predictions in the monitor's feedback window; `None` without feedback.
    pub accuracy: Option<(u32, u32)>,
}

impl ScoreSnapshot {
    fn error_rate(&self) -> f64 {
        if self.frames == 0 { 0.0 } else { self.errors as f64 / self.frames as f64 }
    }
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

/// What [`judge`] concludes.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Fewer than `min_frames` inputs so far.
    TooEarly,
    /// Within every limit.
    Healthy,
    /// Beyond a limit; the reason names it with both values.
    Unhealthy(String),
}

/// Compares a candidate's score with its baseline. A limit is applied only where both sides have data: a
/// baseline that served nothing cannot say what latency is normal, but a candidate whose error rate rises
/// above the baseline's is judged even then.
pub fn judge(limits: &ProbationConfig, baseline: &ScoreSnapshot, candidate: &ScoreSnapshot) -> Verdict {
    if candidate.frames < limits.min_frames {
        return Verdict::TooEarly;
    }
    let (old_rate, new_rate) = (baseline.error_rate(), candidate.error_rate());
    if new_rate - old_rate > limits.max_error_rate_increase {
        return Verdict::Unhealthy(format!(
            "error rate {:.1}% against {:.1}% before (limit +{:.1} points)",
            new_rate * 100.0,
            old_rate * 100.0,
            limits.max_error_rate_increase * 100.0
        ));
    }
    if baseline.frames >= limits.min_frames
        && let (Some(old_p95), Some(new_p95)) = (baseline.p95_inference_us, candidate.p95_inference_us)
        && f64::from(new_p95) > f64::from(old_p95.max(1)) * limits.max_p95_ratio
        && f64::from(new_p95.saturating_sub(old_p95)) > limits.min_p95_increase_ms * 1000.0
    {
        return Verdict::Unhealthy(format!(
            "p95 inference latency {new_p95} us against {old_p95} us before (limit x{} and +{} ms)",
            limits.max_p95_ratio, limits.min_p95_increase_ms
        ));
    }
    if let (Some(old), Some(new)) = (baseline.mean_confidence, candidate.mean_confidence)
        && old - new > limits.max_confidence_drop
    {
        return Verdict::Unhealthy(format!(
            "mean confidence {new:.3} against {old:.3} before (limit -{})",
            limits.max_confidence_drop
        ));
    }
    judge_monitored(limits, candidate)
}

/// The monitor's measures of the candidate alone, against its own reference profile and the ground truth: a
/// baseline is not needed, and not judged when the monitor has not measured (no profile, no full window, too
/// few labelled predictions).
fn judge_monitored(limits: &ProbationConfig, candidate: &ScoreSnapshot) -> Verdict {
    if let (Some(limit), Some(psi)) = (limits.max_output_psi, candidate.output_psi)
        && psi > limit
    {
        return Verdict::Unhealthy(format!("output drift: PSI {psi:.3} against the reference profile (limit {limit})"));
    }
    if let (Some(limit), Some((correct, labelled))) = (limits.min_accuracy, candidate.accuracy)
        && labelled >= limits.min_labelled.max(1)
        && f64::from(correct) / f64::from(labelled) < limit
    {
        let accuracy = f64::from(correct) / f64::from(labelled);
        return Verdict::Unhealthy(format!(
            "accuracy {:.1}% over {labelled} labelled predictions (limit {:.1}%)",
            accuracy * 100.0,
            limit * 100.0
        ));
    }
    Verdict::Healthy
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::ClassScore;

    fn limits() -> ProbationConfig {
        ProbationConfig { min_frames: 10, min_p95_increase_ms: 0.1, ..ProbationConfig::default() }
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
        let limits = ProbationConfig { min_frames: 10, min_p95_increase_ms: 1.0, ..ProbationConfig::default() };
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
            ProbationConfig { max_output_psi: Some(0.25), min_accuracy: Some(0.8), min_labelled: 10, ..limits() };
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
