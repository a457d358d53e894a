//! Model monitoring payloads: drift and accuracy reports, alerts, retraining candidates, and the ground truth
//! sent back to the agent. Same rules as the rest of [`crate::wire`]: fields only ever appended.

use super::{Message, MessageKind};
use crate::ModelIdentity;
use serde::{Deserialize, Serialize};

/// Published every `monitors.publish_secs` on `<prefix>/monitor/<source>`: the latest evaluated window of a
/// source, feature by feature, and its accuracy from feedback.
///
/// postcard body: `device`, `source`, `model`, `at_ms`, `observed`, `window`, `windows_evaluated`,
/// `features`, `accuracy`, `active_alerts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorReport {
    pub device: String,
    pub source: String,
    /// The model the window was observed on.
    pub model: ModelIdentity,
    pub at_ms: u64,
    /// Inputs observed since this model began serving.
    pub observed: u64,
    /// The configured window size (inputs per window).
    pub window: u32,
    /// Windows evaluated since this model began serving.
    pub windows_evaluated: u64,
    /// Drift of each profiled feature over the latest full window; empty before the first full window or when
    /// the bundle has no profile.
    pub features: Vec<FeatureDrift>,
    /// Accuracy from feedback; `None` when the source takes no feedback.
    pub accuracy: Option<AccuracyReport>,
    /// What is alerting now (as on the alerts topic).
    pub active_alerts: Vec<Alert>,
}

impl Message for MonitorReport {
    const KIND: MessageKind = MessageKind::MonitorReport;
}

/// Which side of the model a feature describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureSide {
    /// Computed from the model's input (brightness, a sensor channel's mean...).
    Input,
    /// Computed from the model's output (predicted class, top-1 confidence...).
    Output,
}

/// One feature's drift over a window against the bundle's reference profile. A statistic that does not apply
/// to the feature (KS for a categorical one, Jensen-Shannon for a continuous one) is `None`.
///
/// postcard body: `feature`, `side`, `psi`, `ks_statistic`, `ks_p_value`, `js_distance`, `window_mean`,
/// `reference_mean`, `drifted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDrift {
    pub feature: String,
    pub side: FeatureSide,
    /// Population Stability Index against the reference bins.
    pub psi: Option<f32>,
    /// Two-sample Kolmogorov-Smirnov statistic against the reference distribution.
    pub ks_statistic: Option<f32>,
    /// Its asymptotic p-value with the effective sample size `m*n/(m+n)`, before any multiple-testing correction.
    pub ks_p_value: Option<f32>,
    /// Jensen-Shannon distance (base 2, 0..=1) of a categorical feature's distribution to the reference's.
    pub js_distance: Option<f32>,
    /// The feature's mean over the window (a categorical feature: its most frequent category index).
    pub window_mean: f32,
    /// The reference's mean (a categorical feature: its most frequent category index).
    pub reference_mean: f32,
    /// Whether this window counts as drifted for this feature (any statistic beyond its threshold).
    pub drifted: bool,
}

/// Accuracy of a source's predictions against the ground truth sent back on `<prefix>/feedback/<source>`.
///
/// postcard body: `labelled`, `correct`, `accuracy`, `classes`, `matched_total`, `late_total`,
/// `unknown_total`, `invalid_total`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccuracyReport {
    /// Labelled predictions in the accuracy window.
    pub labelled: u32,
    /// Of those, predicted right.
    pub correct: u32,
    /// `correct / labelled`; `None` while nothing is labelled.
    pub accuracy: Option<f32>,
    /// Per class over the window (classification and anomaly models).
    pub classes: Vec<ClassAccuracy>,
    /// Feedback joined with a remembered prediction, since start.
    pub matched_total: u64,
    /// Feedback for a prediction already forgotten (older than the ring holds), since start.
    pub late_total: u64,
    /// Feedback for a sequence number never predicted (or a label the model does not have), since start.
    pub unknown_total: u64,
    /// Feedback that could not be decoded, since start.
    pub invalid_total: u64,
}

/// One class's precision and recall over the accuracy window; `None` where the denominator is zero.
///
/// postcard body: `label`, `precision`, `recall`, `support`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassAccuracy {
    pub label: String,
    pub precision: Option<f32>,
    pub recall: Option<f32>,
    /// Labelled predictions whose true label is this class.
    pub support: u32,
}

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A profiled feature drifted (PSI, KS or Jensen-Shannon beyond its threshold).
    Drift,
    /// Inference latency p95 jumped against its baseline.
    Latency,
    /// The share of failed inputs jumped.
    ErrorRate,
    /// The mean top-1 confidence collapsed against the reference.
    ConfidenceCollapse,
    /// One class took most of the predictions though it does not in the reference.
    ClassDominance,
    /// No input arrived for a while.
    NoInput,
    /// Accuracy from feedback fell below its threshold.
    Accuracy,
}

/// How bad an alert is: `warn` (PSI between the warn and alert thresholds) or `alert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warn,
    Alert,
}

/// One active (or just cleared) alert.
///
/// postcard body: `kind`, `subject`, `statistic`, `value`, `threshold`, `severity`, `since_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub kind: AlertKind,
    /// What it is about: the feature's name for drift, else the signal (`inference_p95`, `error_rate`...).
    pub subject: String,
    /// The statistic that crossed: `psi`, `ks_p_value`, `js_distance`, `p95_us`, `error_rate`,
    /// `mean_confidence`, `class_share`, `idle_s`, `accuracy`.
    pub statistic: String,
    /// Its value in the window that raised (or cleared) the alert.
    pub value: f32,
    /// The threshold it is compared with (after any multiple-testing correction).
    pub threshold: f32,
    pub severity: Severity,
    /// When the alert was raised.
    pub since_ms: u64,
}

/// Whether an [`AlertReport`] announces a raise or a clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertChange {
    Raised,
    Cleared,
}

/// Published on `<prefix>/alerts/<source>` whenever an alert of the source is raised or cleared: retained while
/// any is active; when the last one clears, the clearing report is published and the retained message removed.
///
/// postcard body: `device`, `source`, `at_ms`, `change`, `alert`, `active`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertReport {
    pub device: String,
    pub source: String,
    pub at_ms: u64,
    pub change: AlertChange,
    /// The alert raised or cleared.
    pub alert: Alert,
    /// Every alert of the source active after this change.
    pub active: Vec<Alert>,
}

impl Message for AlertReport {
    const KIND: MessageKind = MessageKind::AlertReport;
}

/// Ground truth for one prediction, sent to `<prefix>/feedback/<source>`: `{"seq":42,"label":"walking"}` or
/// `{"seq":42,"anomalous":true}`. `seq` is the prediction's sequence number.
///
/// postcard body: `seq`, `label`, `anomalous`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feedback {
    pub seq: u64,
    /// The true class label (classification models).
    #[serde(default)]
    pub label: Option<String>,
    /// Whether the input truly was anomalous (anomaly models).
    #[serde(default)]
    pub anomalous: Option<bool>,
}

impl Message for Feedback {
    const KIND: MessageKind = MessageKind::Feedback;
}

/// The monitor of one source in a [`super::Health`] report; counters since start.
///
/// postcard body: `source`, `observed`, `dropped`, `windows_evaluated`, `features`, `active_alerts`,
/// `alerts_raised`, `accuracy`, `feedback_matched`, `feedback_late`, `feedback_unknown`, `feedback_invalid`,
/// `evidence_samples`, `evidence_bytes`, `unpublished`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorHealth {
    pub source: String,
    /// Inputs the monitor took.
    pub observed: u64,
    /// Observations and feedback dropped because the monitor's queue was full.
    pub dropped: u64,
    pub windows_evaluated: u64,
    /// Each profiled feature's latest statistics (as on the monitor topic).
    pub features: Vec<FeatureDrift>,
    /// What is alerting now.
    pub active_alerts: Vec<Alert>,
    /// Alerts raised since start.
    pub alerts_raised: u64,
    /// Accuracy over the feedback window; `None` without feedback.
    pub accuracy: Option<f32>,
    pub feedback_matched: u64,
    pub feedback_late: u64,
    pub feedback_unknown: u64,
    pub feedback_invalid: u64,
    /// Retraining samples kept on disk now, and their bytes.
    pub evidence_samples: u64,
    pub evidence_bytes: u64,
    /// Monitor reports, alert reports and retraining candidates the MQTT link refused (not retried).
    pub unpublished: u64,
}

/// Announced on `<prefix>/retrain/candidate` when a drift alert is raised and inputs were kept as evidence.
///
/// postcard body: `device`, `source`, `candidate`, `model`, `at_ms`, `alerts`, `samples`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrainCandidate {
    pub device: String,
    pub source: String,
    /// The candidate's id, unique on the device; names what an operator fetches.
    pub candidate: String,
    /// The model that saw the inputs.
    pub model: ModelIdentity,
    pub at_ms: u64,
    /// The alerts that caused it.
    pub alerts: Vec<Alert>,
    /// The inputs kept, oldest first.
    pub samples: Vec<EvidenceSample>,
}

impl Message for RetrainCandidate {
    const KIND: MessageKind = MessageKind::RetrainCandidate;
}

/// `(at_ms, n)` of a candidate id `<at_ms>-<n>` (decimal digits only, so the id is a safe file name and a single
/// topic level); `None` for anything else.
pub fn parse_candidate_id(id: &str) -> Option<(u64, u64)> {
    let (at_ms, n) = id.split_once('-')?;
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !digits(at_ms) || !digits(n) {
        return None;
    }
    Some((at_ms.parse().ok()?, n.parse().ok()?))
}

/// Whether `id` is a sample's file name as the agent makes them (`<seq>.<extension>`): ASCII letters, digits
/// and dots, starting with a digit, so never `.`, `..`, a path or a topic wildcard.
pub fn is_sample_id(id: &str) -> bool {
    id.len() <= 64
        && id.starts_with(|c: char| c.is_ascii_digit())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
}

/// One input kept as evidence: its file, `<seq>.jpg`, `<seq>.png`, `<seq>.<pixel format>.raw`, `<seq>.csv` or
/// `<seq>.bin` (an image that is neither JPEG nor PNG).
///
/// postcard body: `id`, `seq`, `captured_ms`, `bytes`, `kind`, `frame`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceSample {
    /// The sample's id within its candidate (its file name).
    pub id: String,
    /// The input's sequence number (as in its prediction).
    pub seq: u64,
    pub captured_ms: u64,
    pub bytes: u64,
    /// `jpeg`, `png`, `image` (other encoded bytes), `frame` (raw pixels) or `window` (sensor values, CSV).
    pub kind: String,
    /// How a raw frame's bytes are laid out; `None` for the other kinds.
    pub frame: Option<FrameGeometry>,
}

/// The layout of a raw frame kept as evidence: its planes one after another, plane `i` taking `strides[i]`
/// bytes per row (as the camera or decoder gave them, padding included).
///
/// postcard body: `format`, `width`, `height`, `strides`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameGeometry {
    /// `rgb8`, `bgr8`, `gray8`, `yuyv`, `nv12` or `i420`.
    pub format: String,
    pub width: u32,
    pub height: u32,
    /// One per plane.
    pub strides: Vec<u32>,
}

/// The device's answer to a signed `fetch_evidence` order, on `<prefix>/retrain/fetched/<candidate>`, published
/// after the samples it lists (each on `<prefix>/retrain/samples/<candidate>/<sample id>`, its bytes unmodified).
///
/// postcard body: `device`, `candidate`, `order`, `announcement`, `published`, `skipped`, `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrainFetch {
    pub device: String,
    pub candidate: String,
    /// The `counter` of the order answered.
    pub order: u64,
    /// The candidate as stored (its `candidate.json`); `None` when it was not found.
    pub announcement: Option<RetrainCandidate>,
    /// Ids of the samples published.
    pub published: Vec<String>,
    /// Samples not published, and why (larger than an MQTT packet, unreadable, the link's queue full).
    pub skipped: Vec<SkippedSample>,
    /// Why nothing was published (no such candidate); `None` when the candidate was found.
    pub error: Option<String>,
}

impl Message for RetrainFetch {
    const KIND: MessageKind = MessageKind::RetrainFetch;
}

/// A sample a fetch did not publish.
///
/// postcard body: `id`, `reason`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedSample {
    pub id: String,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Format, Topics, decode, encode};

    #[test]
    fn candidate_and_sample_ids_are_safe_names() {
        assert_eq!(parse_candidate_id("1733318212345-2"), Some((1_733_318_212_345, 2)));
        for bad in ["", "-", "1-", "-1", "1-2-3", "../1-2", "1-2/..", "a-1", "1 -2", "+-1", "99999999999999999999999-0"]
        {
            assert_eq!(parse_candidate_id(bad), None, "{bad:?}");
        }
        assert!(is_sample_id("42.jpg") && is_sample_id("42.nv12.raw") && is_sample_id("7.csv"));
        for bad in ["", ".", "..", ".hidden", "a.jpg", "4/2.jpg", "42.jpg/", "4\\2", "4#", "4+"] {
            assert!(!is_sample_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn fetch_answers_round_trip_on_their_topics() {
        let topics = Topics::new("devices/d1");
        assert_eq!(topics.retrain_samples("5-0"), "devices/d1/retrain/samples/5-0");
        assert_eq!(topics.retrain_fetched("5-0"), "devices/d1/retrain/fetched/5-0");
        let answer = RetrainFetch {
            device: "d1".into(),
            candidate: "5-0".into(),
            order: 42,
            announcement: None,
            published: vec!["1.jpg".into()],
            skipped: vec![SkippedSample { id: "2.jpg".into(), reason: "too large".into() }],
            error: None,
        };
        for format in [Format::Json, Format::Postcard] {
            let bytes = encode(format, &answer).expect("encoded");
            assert_eq!(decode::<RetrainFetch>(format, &bytes).expect("decoded"), answer);
        }
        let json: serde_json::Value = serde_json::from_slice(&encode(Format::Json, &answer).unwrap()).unwrap();
        assert_eq!(json["skipped"][0]["reason"], "too large");
    }
}
