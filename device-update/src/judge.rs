//! Probation's verdict: a candidate model's score against the one it replaced. The agent keeps the scores
//! (`device-agent/src/update/probation.rs`); this is the comparison.

use crate::settings::ProbationLimits;

/// The score of one model on one worker (or simulated device) at one instant.
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
pub fn judge(limits: &ProbationLimits, baseline: &ScoreSnapshot, candidate: &ScoreSnapshot) -> Verdict {
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
fn judge_monitored(limits: &ProbationLimits, candidate: &ScoreSnapshot) -> Verdict {
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
