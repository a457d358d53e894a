use super::*;
use crate::clock::ManualClock;
use crate::monitor::MonitoredModel;
use crate::monitor::feedback::Predicted;
use crate::update::probation::ModelScore;
use protocol::ModelIdentity;
use protocol::wire::{FeatureSide, Severity};
use runtime::StageTimings;
use std::sync::Mutex;

/// What the monitor published: (topic, retained, payload).
type Published = Arc<Mutex<Vec<(String, bool, Vec<u8>)>>>;

struct FakeLink(Published);

impl MonitorLink for FakeLink {
    fn publish(&self, topic: &str, retain: bool, payload: &[u8]) -> Result<(), String> {
        self.0.lock().expect("lock").push((topic.to_owned(), retain, payload.to_vec()));
        Ok(())
    }
}

struct RefusingLink;

impl MonitorLink for RefusingLink {
    fn publish(&self, _: &str, _: bool, _: &[u8]) -> Result<(), String> {
        Err("queue full".into())
    }
}

fn config(extra: impl FnOnce(&mut MonitorConfig)) -> MonitorConfig {
    let mut config = MonitorConfig {
        source: "vib".into(),
        window: 4,
        stride: 2,
        raise_after: 2,
        clear_after: 2,
        ..MonitorConfig::default()
    };
    extra(&mut config);
    config
}

fn runner_with(config: MonitorConfig, link: Box<dyn MonitorLink>) -> (Runner, Arc<MonitorStats>) {
    let stats = Arc::new(MonitorStats::default());
    let settings = MonitorSettings {
        device: "dev-1".into(),
        config,
        topics: MonitorTopics::of(&Topics::new("devices/dev-1"), "vib"),
        format: Format::Json,
        evidence_dir: None,
        channel_names: Vec::new(),
        link,
        clock: Arc::new(ManualClock::new(1_000_000)),
        stats: stats.clone(),
    };
    (Runner::new(settings, None), stats)
}

fn runner(config: MonitorConfig) -> (Runner, Arc<MonitorStats>, Published) {
    let published = Published::default();
    let (runner, stats) = runner_with(config, Box::new(FakeLink(published.clone())));
    (runner, stats, published)
}

fn model(version: &str) -> Arc<MonitoredModel> {
    Arc::new(MonitoredModel {
        identity: ModelIdentity { name: "vibration".into(), version: version.into(), sha256: "ab".repeat(32) },
        specs: Vec::new(),
        profile: None,
        labels: vec!["idle".into(), "walking".into()],
        score: ModelScore::new(),
    })
}

fn inferred(seq: u64, model: &Arc<MonitoredModel>) -> Observation {
    let timings = StageTimings { inference_us: 500, ..StageTimings::default() };
    let outcome = Outcome::Inferred { features: Vec::new(), predicted: Some(Predicted::Class { index: 0 }), timings };
    Observation { seq, captured_at_ms: seq, model: model.clone(), outcome, input: None }
}

fn failed(seq: u64, model: &Arc<MonitoredModel>) -> Observation {
    Observation { seq, captured_at_ms: seq, model: model.clone(), outcome: Outcome::Failed, input: None }
}

fn taken(published: &Published) -> Vec<(String, bool, Vec<u8>)> {
    std::mem::take(&mut *published.lock().expect("lock"))
}

fn alert_report(payload: &[u8]) -> AlertReport {
    serde_json::from_slice(payload).unwrap_or_else(|e| panic!("an alert report: {e}"))
}

/// Feeds `observations` (sequence numbers from `first`) of `model`: ok ones, or failures.
fn feed(runner: &mut Runner, model: &Arc<MonitoredModel>, first: u64, count: u64, ok: bool) {
    for seq in first..first + count {
        runner.observed(if ok { inferred(seq, model) } else { failed(seq, model) });
    }
}

#[test]
fn an_alert_is_retained_while_active_and_removed_when_it_clears() {
    let (mut runner, stats, published) = runner(config(|_| {}));
    let model = model("1.0.0");
    // The window fills at 4 inputs, then a window every 2: 3 windows learn the baseline error rate (0).
    feed(&mut runner, &model, 0, 8, true);
    assert!(taken(&published).is_empty());
    assert_eq!(stats.health("vib").windows_evaluated, 3);

    // All failing: the error rate is judged bad from the first window, raised at the second.
    feed(&mut runner, &model, 8, 2, false);
    assert!(taken(&published).is_empty(), "one bad window is not enough");
    feed(&mut runner, &model, 10, 2, false);
    let raised = taken(&published);
    assert_eq!(raised.len(), 1);
    let (topic, retained, payload) = &raised[0];
    assert_eq!((topic.as_str(), *retained), ("devices/dev-1/alerts/vib", true));
    let report = alert_report(payload);
    assert_eq!((report.device.as_str(), report.source.as_str(), report.change), ("dev-1", "vib", AlertChange::Raised));
    let alert = &report.alert;
    assert_eq!(
        (alert.kind, alert.subject.as_str(), alert.statistic.as_str()),
        (AlertKind::ErrorRate, "error_rate", "error_rate")
    );
    assert_eq!((alert.value, alert.threshold, alert.severity), (1.0, 0.1, Severity::Alert));
    assert_eq!(report.active, std::slice::from_ref(alert));
    let health = stats.health("vib");
    assert_eq!((health.alerts_raised, health.active_alerts.len()), (1, 1));

    // Good again: cleared after two good windows, then the retained message is removed.
    feed(&mut runner, &model, 12, 4, true);
    assert!(taken(&published).is_empty(), "the first good window does not clear");
    feed(&mut runner, &model, 16, 2, true);
    let cleared = taken(&published);
    assert_eq!(cleared.len(), 2);
    let report = alert_report(&cleared[0].2);
    assert_eq!((cleared[0].1, report.change, report.active.len()), (false, AlertChange::Cleared, 0));
    assert_eq!((report.alert.value, report.alert.since_ms), (0.0, alert.since_ms));
    assert_eq!((cleared[1].0.as_str(), cleared[1].1, cleared[1].2.len()), ("devices/dev-1/alerts/vib", true, 0));
    assert!(stats.health("vib").active_alerts.is_empty());
}

#[test]
fn reports_carry_the_windows_and_renew_the_retained_alerts() {
    let (mut runner, _stats, published) = runner(config(|_| {}));
    runner.report();
    assert!(taken(&published).is_empty(), "nothing to report before the first input");
    let model = model("1.0.0");
    feed(&mut runner, &model, 0, 8, true);
    feed(&mut runner, &model, 8, 4, false);
    let raised = taken(&published);
    runner.report();
    let reported = taken(&published);
    assert_eq!(reported.len(), 2);
    let (topic, retained, payload) = &reported[0];
    assert_eq!((topic.as_str(), *retained), ("devices/dev-1/monitor/vib", false));
    let report: MonitorReport = serde_json::from_slice(payload).expect("a monitor report");
    assert_eq!((report.observed, report.window, report.windows_evaluated), (12, 4, 5));
    assert_eq!(report.model.version, "1.0.0");
    assert_eq!((report.accuracy, report.features.len(), report.active_alerts.len()), (None, 0, 1));
    // The retained alert report again, as it was.
    assert_eq!(reported[1], raised[0]);
}

#[test]
fn a_new_model_clears_its_predecessors_alerts_and_starts_over() {
    let (mut runner, stats, published) = runner(config(|_| {}));
    let old = model("1.0.0");
    feed(&mut runner, &old, 0, 8, true);
    feed(&mut runner, &old, 8, 4, false);
    assert_eq!(taken(&published).len(), 1);

    let new = model("2.0.0");
    runner.observed(failed(12, &new));
    let cleared = taken(&published);
    assert_eq!(cleared.len(), 2, "the clear, then the retained message removed");
    assert_eq!(alert_report(&cleared[0].2).change, AlertChange::Cleared);
    // Failures of the new model are its baseline, not an alert.
    feed(&mut runner, &new, 13, 20, false);
    assert!(taken(&published).is_empty());
    runner.report();
    let report: MonitorReport = serde_json::from_slice(&taken(&published)[0].2).expect("a monitor report");
    assert_eq!((report.model.version.as_str(), report.observed), ("2.0.0", 21));
    assert_eq!(stats.health("vib").observed, 33);
}

#[test]
fn feedback_is_joined_recorded_for_probation_and_alerted_on() {
    let feedback = FeedbackConfig { min_accuracy: Some(0.5), min_labelled: 4, ..FeedbackConfig::default() };
    let (mut runner, stats, published) = runner(config(|config| config.feedback = Some(feedback)));
    let truth = |seq: u64, label: &str| Feedback { seq, label: Some(label.into()), anomalous: None };
    runner.feedback(&truth(0, "idle"));
    assert_eq!(stats.health("vib").feedback_unknown, 1, "nothing predicted yet");

    let model = model("1.0.0");
    feed(&mut runner, &model, 0, 8, true);
    // Every input was predicted `idle` (class 0): two right, four wrong.
    for seq in 0..6 {
        runner.feedback(&truth(seq, if seq < 2 { "idle" } else { "walking" }));
    }
    runner.invalid_feedback();
    assert_eq!(model.score.snapshot().accuracy, Some((2, 6)));
    let health = stats.health("vib");
    assert_eq!((health.feedback_matched, health.feedback_unknown, health.feedback_invalid), (6, 1, 1));
    assert_eq!(health.accuracy, Some(2.0 / 6.0));

    feed(&mut runner, &model, 8, 4, true);
    let raised = taken(&published);
    assert_eq!(raised.len(), 1);
    let alert = alert_report(&raised[0].2).alert;
    assert_eq!((alert.kind, alert.statistic.as_str(), alert.threshold), (AlertKind::Accuracy, "accuracy", 0.5));
    assert!((alert.value - 2.0 / 6.0).abs() < 1e-6);
    runner.report();
    let report: MonitorReport = serde_json::from_slice(&taken(&published)[0].2).expect("a monitor report");
    let accuracy = report.accuracy.expect("feedback is configured");
    assert_eq!((accuracy.labelled, accuracy.correct, accuracy.invalid_total), (6, 2, 1));
}

#[test]
fn no_input_raises_and_clears_at_once() {
    let (mut runner, _stats, published) = runner(config(|config| config.idle_secs = Some(30)));
    runner.idle(Duration::from_secs(29));
    assert!(taken(&published).is_empty());
    runner.idle(Duration::from_secs(31));
    let raised = alert_report(&taken(&published)[0].2);
    assert_eq!((raised.alert.kind, raised.alert.statistic.as_str()), (AlertKind::NoInput, "idle_s"));
    assert_eq!((raised.alert.value, raised.alert.threshold), (31.0, 30.0));
    runner.idle(Duration::ZERO);
    let cleared = taken(&published);
    assert_eq!(alert_report(&cleared[0].2).change, AlertChange::Cleared);
    assert_eq!(cleared.len(), 2);
}

#[test]
fn refused_publishes_are_counted() {
    let (mut runner, stats) = runner_with(config(|_| {}), Box::new(RefusingLink));
    let model = model("1.0.0");
    feed(&mut runner, &model, 0, 8, true);
    feed(&mut runner, &model, 8, 4, false);
    runner.report();
    // The alert, the monitor report and the retained alert again.
    assert_eq!(stats.health("vib").unpublished, 3);
}

#[test]
fn the_thread_takes_what_was_queued_and_ends_after_the_worker() {
    let published = Published::default();
    let stats = Arc::new(MonitorStats::default());
    let settings = MonitorSettings {
        device: "dev-1".into(),
        config: config(|_| {}),
        topics: MonitorTopics::of(&Topics::new("devices/dev-1"), "vib"),
        format: Format::Json,
        evidence_dir: None,
        channel_names: Vec::new(),
        link: Box::new(FakeLink(published.clone())),
        clock: Arc::new(crate::clock::SystemClock),
        stats: stats.clone(),
    };
    let (tap, sender) = start(settings).expect("thread starts");
    let model = model("1.0.0");
    for seq in 0..40 {
        sender.offer(MonitorEvent::Observed(inferred(seq, &model)));
        // The queue holds 64: nothing is dropped at this pace.
        std::thread::yield_now();
    }
    tap.finish();
    let health = stats.health("vib");
    assert_eq!(health.observed + health.dropped, 40);
    assert_eq!(health.windows_evaluated, (health.observed - 4) / 2 + 1);
    assert!(published.lock().expect("lock").is_empty());
}

#[test]
fn a_full_queue_drops_and_counts() {
    let stats = Arc::new(MonitorStats::default());
    let (sender, receiver) = std::sync::mpsc::sync_channel(1);
    let sender = MonitorSender::new(sender, stats.clone());
    sender.offer(MonitorEvent::InvalidFeedback);
    sender.offer(MonitorEvent::InvalidFeedback);
    assert_eq!(stats.health("vib").dropped, 1);
    drop(receiver);
    sender.offer(MonitorEvent::InvalidFeedback);
    assert_eq!(stats.health("vib").dropped, 1, "after the thread ended, nothing is counted");
}

/// A sensor-like model with one input feature, the predicted class and the top-1 confidence, profiled on 1000
/// reference inputs: `x` spread evenly over 0..1, the classes half and half, the confidence 0.9.
fn profiled_model() -> Arc<MonitoredModel> {
    use runtime::monitor::{FeatureKind, FeatureSpec, ProfileBuilder};
    let specs = vec![
        FeatureSpec { name: "x".into(), kind: FeatureKind::Continuous, side: FeatureSide::Input },
        FeatureSpec {
            name: "predicted_class".into(),
            kind: FeatureKind::Categorical { categories: 2 },
            side: FeatureSide::Output,
        },
        FeatureSpec { name: "top1_confidence".into(), kind: FeatureKind::Continuous, side: FeatureSide::Output },
    ];
    let mut builder = ProfileBuilder::new(&specs);
    for index in 0..1000 {
        builder.add(&reference_features(index));
    }
    let profile = builder.build().expect("a profile");
    Arc::new(MonitoredModel {
        specs,
        profile: Some(Arc::new(profile)),
        ..Arc::into_inner(model("1.0.0")).expect("one owner")
    })
}

fn reference_features(index: u64) -> [f32; 3] {
    // The golden-ratio sequence fills 0..1 evenly: any 20 in a row spread over every decile.
    [(index as f64 * 0.618_033_988_75).fract() as f32, (index % 2) as f32, 0.9]
}

fn observed_features(seq: u64, model: &Arc<MonitoredModel>, features: [f32; 3]) -> Observation {
    let timings = StageTimings { inference_us: 500, ..StageTimings::default() };
    let predicted = Some(Predicted::Class { index: features[1] as u32 });
    let outcome = Outcome::Inferred { features: features.to_vec(), predicted, timings };
    let input = Some(runtime::Input::Sensor(runtime::SensorWindow { channels: 1, values: vec![features[0]] }));
    Observation { seq, captured_at_ms: 5000 + seq, model: model.clone(), outcome, input }
}

#[test]
fn a_shift_raises_a_drift_alert_with_evidence_and_clears_when_it_ends() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(|config| {
        config.window = 20;
        config.stride = 10;
        config.evidence = Some(crate::config::EvidenceConfig { samples: 4, ..Default::default() });
    });
    let evidence = Evidence::open(dir.path().into(), "dev-1", "vib", config.evidence.as_ref().expect("set"))
        .expect("evidence opens");
    let published = Published::default();
    let stats = Arc::new(MonitorStats::default());
    let settings = MonitorSettings {
        device: "dev-1".into(),
        config,
        topics: MonitorTopics::of(&Topics::new("devices/dev-1"), "vib"),
        format: Format::Json,
        evidence_dir: None,
        channel_names: vec!["x".into()],
        link: Box::new(FakeLink(published.clone())),
        clock: Arc::new(ManualClock::new(1_000_000)),
        stats: stats.clone(),
    };
    let mut runner = Runner::new(settings, Some(evidence));
    let model = profiled_model();
    let mut seq = 0;
    let mut feed = |runner: &mut Runner, count: u64, shift: f32| {
        for _ in 0..count {
            let [x, class, confidence] = reference_features(seq);
            runner.observed(observed_features(seq, &model, [x + shift, class, confidence]));
            seq += 1;
        }
    };
    // Windows of the reference: 10 evaluations, no alert.
    feed(&mut runner, 110, 0.0);
    assert!(taken(&published).is_empty(), "no alert on reference windows");
    let health = stats.health("vib");
    assert_eq!(health.windows_evaluated, 10);
    let x = &health.features[0];
    assert_eq!((x.feature.as_str(), x.side, x.drifted), ("x", FeatureSide::Input, false));
    assert!(x.psi.expect("psi") < 0.1 && x.ks_p_value.expect("ks") > 0.01, "{x:?}");
    assert!(health.features[1].js_distance.is_some() && health.features[1].ks_p_value.is_none());
    assert_eq!(model.score.snapshot().output_psi.map(|psi| psi < 0.1), Some(true));

    // Shifted past the reference's range: half a window is enough for the PSI's alert band, and the alert is
    // raised at the second bad window.
    feed(&mut runner, 10, 2.0);
    assert!(taken(&published).is_empty(), "one bad window is not enough");
    feed(&mut runner, 10, 2.0);
    let raised = taken(&published);
    assert_eq!(raised.len(), 2, "the alert and the retraining candidate");
    let report = alert_report(&raised[0].2);
    let alert = &report.alert;
    assert_eq!((alert.kind, alert.subject.as_str(), alert.statistic.as_str()), (AlertKind::Drift, "x", "psi"));
    // The alert band, raised to PSI's noise floor for a window this small.
    assert_eq!(alert.severity, Severity::Alert);
    assert!(alert.threshold > 0.25 && alert.value >= alert.threshold, "{alert:?}");
    let (topic, retained, payload) = &raised[1];
    assert_eq!((topic.as_str(), *retained), ("devices/dev-1/retrain/candidate", false));
    let candidate: wire::RetrainCandidate = serde_json::from_slice(payload).expect("a candidate");
    assert_eq!((candidate.alerts.len(), candidate.samples.len()), (1, 4));
    assert_eq!(candidate.alerts[0], *alert);
    assert!(stats.health("vib").evidence_samples >= 4);

    // Back to the reference: the window straddling it is still bad, then two good ones clear the alert.
    feed(&mut runner, 20, 0.0);
    assert!(taken(&published).is_empty());
    feed(&mut runner, 10, 0.0);
    let cleared = taken(&published);
    assert_eq!(cleared.len(), 2, "the clear and the retained message removed");
    let report = alert_report(&cleared[0].2);
    assert_eq!((report.change, report.alert.subject.as_str()), (AlertChange::Cleared, "x"));
    assert!(report.alert.value < 0.1);
}
