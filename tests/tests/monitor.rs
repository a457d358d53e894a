//! Model monitoring end to end: the activity classifier, profiled on its shipped recording with
//! `device-agent model profile`, fed that recording's windows over MQTT. Windows from the recording raise no alert;
//! an offset on one channel raises a drift alert on the alerts topic (retained, naming the feature, the statistic,
//! its value and the threshold) within `raise_after` evaluations; it clears once the recording comes back; the
//! monitor topic and health carry the statistics.

use integration_tests::agent::Agent;
use integration_tests::broker::Broker;
use integration_tests::models_dir;
use integration_tests::profile::profiled_copy;
use integration_tests::subscriber::{Received, Subscriber};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);
const SENSOR: &str = "devices/mon-01/sensor/wrist";
const PREDICTIONS: &str = "devices/mon-01/predictions/wrist";
const ALERTS: &str = "devices/mon-01/alerts/wrist";
const MONITOR: &str = "devices/mon-01/monitor/wrist";
const HEALTH: &str = "devices/mon-01/health";
/// The model's window and the profile's stride over the recording: 71 windows from its 800 rows.
const WINDOW: usize = 100;
const STRIDE: usize = 10;
/// Evaluations every `MONITOR_STRIDE` inputs; `RAISE_AFTER` bad ones raise, as many good ones clear.
const MONITOR_STRIDE: usize = 10;
const RAISE_AFTER: usize = 2;
/// Added to `acc_x` (in the recording's units; its values span about -20..30): past anything the profile saw.
const OFFSET: f32 = 40.0;

/// The recording's windows as the profile saw them (`--stride 10`), each flattened time-major.
fn recording_windows() -> Vec<Vec<f32>> {
    let text = std::fs::read_to_string(models_dir().join("recordings/activity.csv")).expect("the recording");
    let rows: Vec<Vec<f32>> = text
        .lines()
        .skip(1)
        .map(|line| line.split(',').map(|value| value.parse().expect("a number")).collect())
        .collect();
    (0..=rows.len() - WINDOW).step_by(STRIDE).map(|start| rows[start..start + WINDOW].concat()).collect()
}

/// A copy of the activity classifier with the profile of its recording.
fn profiled_bundle() -> (tempfile::TempDir, PathBuf) {
    let recording = models_dir().join("recordings/activity.csv");
    profiled_copy("activity-classifier", &[recording], &["--stride", &STRIDE.to_string()])
}

fn config(port: u16, bundle: &Path, windows: usize) -> String {
    format!(
        r#"device_id = "mon-01"
[mqtt]
host = "127.0.0.1"
port = {port}
[health]
interval_secs = 1
[[sources]]
name = "wrist"
kind = "mqtt_sensor"
model = "{bundle}"
queue = 64
[[monitors]]
source = "wrist"
# One window is exactly one pass over the recording: its windows match the profile whatever their order.
window = {windows}
stride = {MONITOR_STRIDE}
raise_after = {RAISE_AFTER}
clear_after = {RAISE_AFTER}
publish_secs = 1
# Timings on a shared test machine are not what this test is about.
latency_ratio = 100.0
"#,
        bundle = bundle.display(),
    )
}

/// Feeds windows over MQTT and keeps what the agent publishes.
struct Feeder<'a> {
    sub: &'a Subscriber,
    sent: usize,
    seen: Vec<Received>,
}

impl Feeder<'_> {
    /// Publishes `windows` and waits for their predictions, then a moment for the monitor's messages. At most
    /// half the source's queue is in flight at once, so that a slow (shared) machine drops none.
    fn send(&mut self, windows: &[Vec<f32>]) -> Vec<Received> {
        let mut got = Vec::new();
        for chunk in windows.chunks(32) {
            for values in chunk {
                self.sub.publish(SENSOR, json!({"channels": 6, "values": values}).to_string());
            }
            self.sent += chunk.len();
            let wanted = self.sent - self.predictions();
            let answered = self.sub.collect_until(WAIT, |got| on(got, PREDICTIONS).count() >= wanted);
            self.seen.extend(answered.iter().cloned());
            got.extend(answered);
        }
        let settled = self.sub.collect_for(Duration::from_millis(300));
        self.seen.extend(settled.iter().cloned());
        got.extend(settled);
        got
    }

    fn predictions(&self) -> usize {
        on(&self.seen, PREDICTIONS).count()
    }
}

fn on<'a>(messages: &'a [Received], topic: &'a str) -> impl DoubleEndedIterator<Item = &'a Received> {
    messages.iter().filter(move |message| message.topic == topic && !message.payload.is_empty())
}

/// The windows `from..from + count` of the recording, looping, with `offset` added to `acc_x`.
fn cycle(windows: &[Vec<f32>], from: usize, count: usize, offset: f32) -> Vec<Vec<f32>> {
    (from..from + count)
        .map(|index| {
            let mut values = windows[index % windows.len()].clone();
            values.iter_mut().step_by(6).for_each(|acc_x| *acc_x += offset);
            values
        })
        .collect()
}

fn is_acc_x_drift(alert: &Value) -> bool {
    alert["kind"] == "drift" && alert["subject"] == "acc_x.mean"
}

#[test]
fn a_shifted_channel_raises_a_drift_alert_that_clears_when_the_shift_ends() {
    let (_copy, bundle) = profiled_bundle();
    let windows = recording_windows();
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port(), "devices/mon-01/#");
    let agent = Agent::start(&config(broker.port(), &bundle, windows.len()));
    sub.first_on("devices/mon-01/status", WAIT);
    let mut feeder = Feeder { sub: &sub, sent: 0, seen: Vec::new() };

    // The recording, three passes: the first fills the window, then 14 evaluations without an alert.
    let passes = windows.len() + 14 * MONITOR_STRIDE;
    let reference = feeder.send(&cycle(&windows, 0, passes, 0.0));
    assert_eq!(on(&reference, ALERTS).count(), 0, "an alert on the recording: {:?}", on(&reference, ALERTS).next());

    // The offset, a stride at a time. A window of 71 against a reference of 71 puts PSI's noise floor near 0.84,
    // so the alert comes once most of the window is shifted: within a window's worth of evaluations and then
    // RAISE_AFTER.
    let bound = windows.len().div_ceil(MONITOR_STRIDE) + RAISE_AFTER;
    let mut evaluations = 0;
    let raised = loop {
        evaluations += 1;
        assert!(evaluations <= bound, "no drift alert after {bound} evaluations of the shift");
        let got = feeder.send(&cycle(&windows, passes + (evaluations - 1) * MONITOR_STRIDE, MONITOR_STRIDE, OFFSET));
        if let Some(report) = on(&got, ALERTS).map(Received::json).find(|report| is_acc_x_drift(&report["alert"])) {
            break report;
        }
    };
    eprintln!("drift alert raised at evaluation {evaluations} of the shift: {raised}");
    assert_eq!(raised["change"], "raised");
    let alert = &raised["alert"];
    assert_eq!(alert["statistic"], "psi");
    let (value, threshold) = (alert["value"].as_f64().expect("value"), alert["threshold"].as_f64().expect("threshold"));
    // A band, raised to the noise floor for this window and reference.
    assert!(value >= threshold && threshold >= 0.1, "{alert}");
    assert!(raised["active"].as_array().expect("active").iter().any(is_acc_x_drift));

    // Retained: a subscriber arriving now gets the active alerts.
    let late = Subscriber::connect(broker.port(), ALERTS);
    let retained = late.next(WAIT).expect("the retained alert report");
    assert!(retained.retain, "the alert report is retained");
    assert!(retained.json()["active"].as_array().expect("active").iter().any(is_acc_x_drift), "{:?}", retained.json());
    late.close();

    // The monitor report and health carry the statistics of the drifted feature.
    let report = feeder.sub.collect_until(WAIT, |got| on(got, MONITOR).count() > 0);
    let report = on(&report, MONITOR).last().expect("a monitor report").json();
    let acc_x = feature(&report["features"], "acc_x.mean");
    assert_eq!((acc_x["side"].clone(), acc_x["drifted"].clone()), (json!("input"), json!(true)), "{acc_x}");
    assert!(acc_x["psi"].as_f64() > Some(0.25) && acc_x["ks_p_value"].as_f64() < Some(0.01), "{acc_x}");
    assert!(acc_x["window_mean"].as_f64() > acc_x["reference_mean"].as_f64(), "{acc_x}");
    assert!(report["active_alerts"].as_array().expect("active").iter().any(is_acc_x_drift));
    let health = feeder.sub.collect_until(WAIT, |got| on(got, HEALTH).count() > 0);
    let health = on(&health, HEALTH).last().expect("a health report").json();
    let monitor = &health["monitors"][0];
    assert_eq!(monitor["source"], "wrist");
    assert!(monitor["windows_evaluated"].as_u64() > Some(15), "{monitor}");
    assert_eq!(feature(&monitor["features"], "acc_x.mean")["drifted"], true);
    assert_eq!(monitor["dropped"], 0);

    // The recording again: every alert clears within a window and RAISE_AFTER evaluations, and the retained
    // message is removed.
    let resumed = passes + evaluations * MONITOR_STRIDE;
    let mut sent = 0;
    let last_clear = loop {
        assert!(sent <= windows.len() + 4 * MONITOR_STRIDE, "the alerts did not clear: {:?}", last_alerts(&feeder));
        let got = feeder.send(&cycle(&windows, resumed + sent, MONITOR_STRIDE, 0.0));
        sent += MONITOR_STRIDE;
        if let Some(index) =
            got.iter().position(|m| m.topic == ALERTS && !m.payload.is_empty() && m.json()["active"] == json!([]))
        {
            break got[index..].to_vec();
        }
    };
    eprintln!("every alert cleared {sent} inputs after the shift ended");
    assert!(!last_clear[0].retain && last_clear[0].json()["change"] == "cleared");
    // The empty retained payload that removes the retained report follows the clear.
    assert!(last_clear.iter().any(|m| m.topic == ALERTS && m.payload.is_empty()), "{:?}", last_clear.len());
    let late = Subscriber::connect(broker.port(), ALERTS);
    assert!(late.next(Duration::from_secs(1)).is_none(), "no retained alert once everything cleared");

    let (status, log) = agent.terminate(WAIT);
    assert!(status.success(), "{log}");
}

fn feature<'a>(features: &'a Value, name: &str) -> &'a Value {
    let features = features.as_array().expect("features");
    features.iter().find(|feature| feature["feature"] == name).unwrap_or_else(|| panic!("no {name} in {features:?}"))
}

fn last_alerts(feeder: &Feeder<'_>) -> Vec<Value> {
    on(&feeder.seen, ALERTS).map(Received::json).rev().take(3).collect()
}
