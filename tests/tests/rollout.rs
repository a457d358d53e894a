//! Rollouts in waves end to end (`model push --group --wave-rate|--ramp`): real agents on a real Mosquitto, the
//! sensor model on a CSV recording, `edgectl` killed and run again.

use integration_tests::agent::{Agent, operator_binary};
use integration_tests::broker::Broker;
use integration_tests::fleet::{Simulator, activity_fleet};
use integration_tests::subscriber::Subscriber;
use integration_tests::update::{
    ConfigBuilder, Push, WAIT, Watch, Workbench, at_version, calm_window, csv_loop, model,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const PUSH_WAIT: Duration = Duration::from_secs(120);
const DEVICES: [&str; 4] = ["fleet-1", "fleet-2", "fleet-3", "fleet-4"];

/// Agents in group `fleet` running the activity classifier on a recording, with a 2 s probation.
fn agents(broker: &Broker, bench: &Workbench, states: &[tempfile::TempDir]) -> Vec<Agent> {
    DEVICES
        .iter()
        .zip(states)
        .map(|(device, state)| {
            let config = ConfigBuilder::new(device, broker.port(), &bench.trusted.public, state.path())
                .source(csv_loop("wrist", &model("activity-classifier"), 50))
                .update("groups", "[\"fleet\"]")
                // As tests/update.rs: only the slow model's p95 stands out on a loaded machine.
                .probation("max_p95_ratio", 4)
                .probation("min_frames", 50)
                .probation("window_secs", 2)
                .build();
            Agent::start(&config)
        })
        .collect()
}

fn events<'a>(lines: &'a [Value], event: &str) -> Vec<&'a Value> {
    lines.iter().filter(|line| line["event"] == event).collect()
}

/// Each device's order counters answering `update_id`, from its statuses.
fn orders(watch: &Watch, update_id: &str) -> BTreeMap<String, BTreeSet<u64>> {
    DEVICES
        .iter()
        .map(|device| {
            let counters = watch
                .statuses(device)
                .into_iter()
                .filter(|status| status.update_id.as_deref() == Some(update_id))
                .filter_map(|status| status.order)
                .collect();
            (device.to_string(), counters)
        })
        .collect()
}

/// Canary then rate waves, all commit in wave order; the tool is killed after the second wave began and its
/// re-run finishes the rollout, each device having seen one order only.
#[test]
fn waves_commit_in_order_and_a_killed_rollout_is_finished_by_a_rerun() {
    let broker = Broker::start();
    let bench = Workbench::new();
    let states: Vec<tempfile::TempDir> = DEVICES.iter().map(|_| tempfile::tempdir().unwrap()).collect();
    let mut watch = Watch::new(broker.port(), "devices/+/update/status");
    let agents = agents(&broker, &bench, &states);
    let logs = || agents.iter().map(|a| a.log()).collect::<Vec<_>>().join("\n----\n");
    watch.until(WAIT, logs, |w| DEVICES.iter().all(|d| !w.statuses(d).is_empty()));

    let v110 = at_version("activity-classifier", "1.1.0");
    let package = bench.signed(v110.path(), &calm_window());
    // Canary, then 60 devices a minute in 2 s waves: waves of 1, 2, 1.
    let args = ["--group", "fleet", "--canary", "1", "--wave-rate", "60", "--wave-secs", "2", "--soak-secs", "1"];
    let mut first = Push::start(&package, broker.port(), &bench.trusted, &args);
    let deadline = Instant::now() + PUSH_WAIT;
    while events(first.lines(), "wave_started").len() < 2 {
        let lines = first.lines().to_vec();
        assert!(first.running() && Instant::now() < deadline, "{lines:?}\n{}", first.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = first.kill();
    let waves = events(&killed, "wave_started");
    assert_eq!((&waves[0]["wave"], &waves[0]["devices"]), (&Value::from(0), &serde_json::json!(["fleet-1"])));
    assert_eq!(events(&killed, "gate")[0]["passed"], true, "{killed:?}");

    let outcome = Push::start(&package, broker.port(), &bench.trusted, &args).finish(PUSH_WAIT);
    assert!(outcome.success, "{outcome:#?}\n{}", logs());
    let summary = events(&outcome.lines, "summary")[0];
    assert_eq!(
        (&summary["end"], &summary["committed"], &summary["failed"]),
        (&"finished".into(), &4.into(), &0.into())
    );
    let id = summary["update_id"].as_str().unwrap().to_owned();
    // The re-run started only the waves the first run had not.
    let rerun: Vec<&Value> = events(&outcome.lines, "wave_started").into_iter().map(|line| &line["wave"]).collect();
    assert_eq!(rerun, [&Value::from(2)], "{:?}", outcome.lines);
    let durations: Vec<&Value> = summary["waves"].as_array().unwrap().iter().map(|w| &w["duration_s"]).collect();
    assert!(durations.iter().all(|d| d.as_f64().is_some()), "{summary}");

    watch.until(WAIT, logs, |w| DEVICES.iter().all(|d| w.reported(d, "committed", Some(&id))));
    for (device, counters) in orders(&watch, &id) {
        assert_eq!(counters.len(), 1, "{device} saw one order: {counters:?}");
    }
    // Waves in order: a later wave's devices started downloading after the earlier wave's committed.
    let at = |device: &str, state: &str| {
        watch
            .statuses(device)
            .iter()
            .find(|s| s.update_id.as_deref() == Some(&id) && s.state.as_str() == state)
            .unwrap()
            .at_ms
    };
    assert!(at("fleet-1", "committed") <= at("fleet-2", "downloading"));
    assert!(at("fleet-3", "committed") <= at("fleet-4", "downloading"));
}

/// A model that is slower on these devices rolls back in probation: past --max-failures the rollout aborts and
/// the devices not reached never get an announcement.
#[test]
fn failures_past_the_budget_abort_and_the_rest_never_hear_of_it() {
    let broker = Broker::start();
    let bench = Workbench::new();
    let states: Vec<tempfile::TempDir> = DEVICES.iter().map(|_| tempfile::tempdir().unwrap()).collect();
    let mut watch = Watch::new(broker.port(), "devices/+/update/#");
    let agents = agents(&broker, &bench, &states);
    let logs = || agents.iter().map(|a| a.log()).collect::<Vec<_>>().join("\n----\n");
    watch.until(WAIT, logs, |w| DEVICES.iter().all(|d| !w.statuses(d).is_empty()));

    let slow = at_version("testing/activity-classifier-slow", "1.2.0");
    let package = bench.signed(slow.path(), &calm_window());
    let args = [
        "--group",
        "fleet",
        "--ramp",
        "exponential",
        "--first-wave",
        "2",
        "--max-failures",
        "40%",
        "--min-finished",
        "2",
        "--soak-secs",
        "1",
        "--timeout",
        "60",
    ];
    let outcome = Push::start(&package, broker.port(), &bench.trusted, &args).finish(PUSH_WAIT);
    assert_eq!(outcome.code, Some(1), "{outcome:#?}\n{}", logs());
    let aborted = events(&outcome.lines, "aborted");
    assert!(aborted[0]["reason"].as_str().unwrap().contains("more than --max-failures 40%"), "{aborted:?}");
    let summary = events(&outcome.lines, "summary")[0];
    assert_eq!((&summary["end"], &summary["not_reached"]), (&"aborted".into(), &2.into()), "{summary}");
    watch.drain(Duration::from_secs(2));
    for device in ["fleet-3", "fleet-4"] {
        let announce = format!("devices/{device}/update/announce");
        assert!(!watch.seen.iter().any(|m| m.topic == announce), "{device} got an announcement");
    }
}

/// Runs `edgectl rollout <command> --group fleet` with `bench`'s key and returns what it printed.
fn rollout_control(command: &str, broker: &Broker, bench: &Workbench) -> String {
    let output = std::process::Command::new(operator_binary())
        .args(["rollout", command, "--broker", &format!("127.0.0.1:{}", broker.port()), "--group", "fleet"])
        .arg("--key")
        .arg(bench.trusted.private())
        .output()
        .expect("edgectl runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "rollout {command}: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

/// Until the push has printed a line with `event`; returns how many `wave_started` lines it had printed then.
fn waves_started_at(push: &mut Push, event: &str) -> usize {
    let deadline = Instant::now() + PUSH_WAIT;
    loop {
        let lines = push.lines().to_vec();
        if let Some(at) = lines.iter().position(|line| line["event"] == event) {
            return events(&lines[..at], "wave_started").len();
        }
        assert!(push.running(), "the push ended before {event}: {lines:?}");
        assert!(Instant::now() < deadline, "no {event}: {lines:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `edgectl rollout pause|resume|abort`, signed with the operator's key, steer a running rollout: no wave starts
/// while it is paused, the next one starts once it is resumed, and after an abort the devices not reached are
/// never announced to.
#[test]
fn a_rollout_pauses_resumes_and_aborts_on_signed_controls() {
    let broker = Broker::start();
    let bench = Workbench::new();
    let brokers = vec![format!("127.0.0.1:{}", broker.port())];
    let mut simulated = vec!["--devices", "6", "--probation-secs", "1", "--install-ms", "50"];
    simulated.extend(activity_fleet("fleet", &bench.trusted.public));
    let _devices = Simulator::start(&brokers, &simulated, WAIT);
    let announcements = Subscriber::connect(broker.port(), "devices/+/update/announce");
    let v110 = at_version("activity-classifier", "1.1.0");
    let package = bench.signed(v110.path(), &calm_window());
    // Waves of one device, ten seconds apart.
    let waves = ["--group", "fleet", "--wave-rate", "6", "--wave-secs", "10", "--soak-secs", "1"];
    let mut push = Push::start_listing(&package, &brokers, &bench.trusted, &waves);
    waves_started_at(&mut push, "gate");

    assert!(rollout_control("pause", &broker, &bench).contains("pause published"));
    let paused_after = waves_started_at(&mut push, "paused");
    // Longer than --wave-secs: a running rollout would have started its next wave.
    std::thread::sleep(Duration::from_secs(15));
    assert_eq!(events(push.lines(), "wave_started").len(), paused_after, "a wave started while paused");

    rollout_control("resume", &broker, &bench);
    let resumed_after = waves_started_at(&mut push, "resumed");
    assert_eq!(resumed_after, paused_after);
    let deadline = Instant::now() + PUSH_WAIT;
    while events(push.lines(), "wave_started").len() == resumed_after {
        assert!(Instant::now() < deadline && push.running(), "no wave after resume: {:?}", push.lines());
        std::thread::sleep(Duration::from_millis(100));
    }

    rollout_control("abort", &broker, &bench);
    let outcome = push.finish(PUSH_WAIT);
    assert!(!outcome.success, "an aborted rollout exits 1: {:?}", outcome.lines);
    assert_eq!(events(&outcome.lines, "aborted").len(), 1, "{:?}", outcome.lines);
    let summary = events(&outcome.lines, "summary")[0];
    let started: BTreeSet<String> = events(&outcome.lines, "wave_started")
        .iter()
        .flat_map(|wave| wave["devices"].as_array().expect("devices").iter())
        .map(|device| device.as_str().expect("a device").to_owned())
        .collect();
    assert_eq!(summary["not_reached"].as_u64(), Some(6 - started.len() as u64), "{summary}");
    assert!(started.len() < 6, "the abort came before the last wave: {started:?}");
    let announced: BTreeSet<String> = announcements
        .collect_for(Duration::from_secs(2))
        .iter()
        .map(|message| message.topic.split('/').nth(1).expect("devices/<id>/...").to_owned())
        .collect();
    assert_eq!(announced, started, "only the devices of started waves were announced to");
}
