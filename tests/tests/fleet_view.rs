//! `edgectl fleet list`: three real agents in a group on one Mosquitto, listed from what the broker retains,
//! by group and by prefix, as JSON and as a table, and followed live with `--watch` while they go offline.

use integration_tests::agent::Agent;
use integration_tests::broker::Broker;
use integration_tests::update::{
    ConfigBuilder, Push, WAIT, Workbench, at_version, calm_window, csv_loop, edgectl, model, now_ms,
};
use serde_json::Value;
use std::time::{Duration, Instant};

const DEVICES: [&str; 3] = ["fleet-a", "fleet-b", "fleet-c"];
/// Waiting for a push of the small sensor model to end on a loaded machine.
const PUSH_WAIT: Duration = Duration::from_secs(120);

/// An agent of group `lab` running the activity classifier on source `wrist`; `extra`: more TOML (sources,
/// monitors) before the `[update]` section.
fn config(bench: &Workbench, port: u16, device: &str, state: &std::path::Path, extra: &str) -> String {
    ConfigBuilder::new(device, port, &bench.trusted.public, state)
        .source(csv_loop("wrist", &model("activity-classifier"), 2))
        .source(extra.to_owned())
        .update("groups", "[\"lab\"]")
        .build()
}

/// A quiet source with a no-input alert after a second: an alert that is active from the start.
const QUIET_SOURCE: &str = r#"[[sources]]
name = "quiet"
kind = "mqtt_sensor"
model = "MODEL"
[[monitors]]
source = "quiet"
idle_secs = 1
publish_secs = 1
"#;

/// `fleet list --json` with `args`: one object per device, by device id.
fn list(port: u16, args: &[&str]) -> Vec<Value> {
    let broker = format!("127.0.0.1:{port}");
    let mut all = vec!["fleet", "list", "--broker", &broker, "--json"];
    all.extend(args);
    edgectl(&all).lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect()
}

fn row<'a>(rows: &'a [Value], device: &str) -> &'a Value {
    rows.iter().find(|row| row["device"] == device).unwrap_or_else(|| panic!("no {device} in {rows:#?}"))
}

/// Lists the group until `done` holds for the rows, and returns them.
fn list_until(port: u16, agents: &[&Agent], done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let rows = list(port, &["--group", "lab"]);
        if done(&rows) {
            return rows;
        }
        let logs: Vec<String> = agents.iter().map(|agent| agent.log()).collect();
        assert!(Instant::now() < deadline, "the fleet never got there: {rows:#?}\nagent logs:\n{}", logs.join("\n"));
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn the_fleet_view_lists_a_group_and_a_prefix_and_follows_devices_going_offline() {
    let broker = Broker::start();
    let port = broker.port();
    let bench = Workbench::new();
    let states: Vec<tempfile::TempDir> = DEVICES.iter().map(|_| tempfile::tempdir().expect("temp dir")).collect();
    let quiet = QUIET_SOURCE.replace("MODEL", &model("activity-classifier").display().to_string());
    let a = Agent::start(&config(&bench, port, "fleet-a", states[0].path(), ""));
    let b = Agent::start(&config(&bench, port, "fleet-b", states[1].path(), ""));
    let c = Agent::start(&config(&bench, port, "fleet-c", states[2].path(), &quiet));
    let agents = [&a, &b, &c];

    // A finished update on fleet-a.
    let v110 = at_version("activity-classifier", "1.1.0");
    let package = bench.signed(v110.path(), &calm_window());
    let outcome = Push::start(&package, port, &bench.trusted, &["--device", "fleet-a"]).finish(PUSH_WAIT);
    assert_eq!(outcome.state("fleet-a"), Some("committed"), "{outcome:#?}\n{}", a.log());

    // Every device online with its health (retained, from a report after the update), fleet-c's alert active.
    let rows = list_until(port, &agents, |rows| {
        rows.len() == 3
            && rows.iter().all(|row| row["state"] == "online" && row["health"].is_object())
            && row(rows, "fleet-a")["models"][0]["version"] == "1.1.0"
            && row(rows, "fleet-c")["alerts"].as_array().is_some_and(|alerts| !alerts.is_empty())
    });
    let listed_ms = now_ms();
    for device in DEVICES {
        let row = row(&rows, device);
        assert_eq!(row["prefix"], format!("devices/{device}"));
        assert!(row["since_ms"].as_u64().is_some_and(|since| since <= listed_ms), "{row:#}");
        assert_eq!(row["agent_version"], env!("CARGO_PKG_VERSION"), "{row:#}");
        let wrist = &row["models"][0];
        assert_eq!((&wrist["source"], &wrist["model"]), (&Value::from("wrist"), &Value::from("activity-classifier")));
        let health = &row["health"];
        assert!(health["at_ms"].as_u64().is_some_and(|at| at > 0 && at <= listed_ms), "{row:#}");
        assert!(health["rss_bytes"].as_u64().is_some_and(|rss| rss > 0), "{row:#}");
        assert_eq!(row["problems"], Value::Array(Vec::new()), "{row:#}");
    }
    assert_eq!(row(&rows, "fleet-b")["models"][0]["version"], "1.0.0");
    let update = &row(&rows, "fleet-a")["update"];
    assert_eq!((&update["state"], &update["version"]), (&Value::from("committed"), &Value::from("1.1.0")));
    assert_eq!(row(&rows, "fleet-b")["update"]["state"], "idle");
    let alert = &row(&rows, "fleet-c")["alerts"][0];
    assert_eq!((&alert["source"], &alert["kind"]), (&Value::from("quiet"), &Value::from("no_input")), "{alert:#}");
    assert_eq!(row(&rows, "fleet-c")["models"].as_array().map(Vec::len), Some(2));

    // The same devices by prefix, as a table.
    let table = edgectl(&["fleet", "list", "--broker", &format!("127.0.0.1:{port}"), "--prefix", "devices/"]);
    assert!(table.starts_with("DEVICE"), "{table}");
    for device in DEVICES {
        let line = table.lines().find(|line| line.starts_with(device)).unwrap_or_else(|| panic!("{device}: {table}"));
        assert!(line.contains("online since"), "{table}");
        assert!(line.contains("wrist=activity-classifier@1."), "{table}");
    }
    assert!(table.contains("committed activity-classifier@1.1.0") && table.contains("quiet:NoInput"), "{table}");

    // Watched live: fleet-b stops cleanly (SIGTERM), fleet-c dies (SIGKILL) and the broker sends its last will.
    let broker_address = format!("127.0.0.1:{port}");
    let mut watch =
        Push::command(&["fleet", "list", "--broker", &broker_address, "--group", "lab", "--json", "--watch"]);
    let first_lines = |watch: &mut Push| watch.lines().len() >= 3;
    wait_for(&mut watch, first_lines);
    let (status, log) = b.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status}\n{log}");
    let offline = |device: &'static str| move |watch: &mut Push| last_state(watch, device) == Some("offline");
    wait_for(&mut watch, offline("fleet-b"));
    let stopped = watch.lines().iter().rev().find(|line| line["device"] == "fleet-b").cloned().expect("a line");
    assert!(stopped["since_ms"].as_u64().is_some_and(|since| since > listed_ms), "{stopped:#}");

    c.kill();
    wait_for(&mut watch, offline("fleet-c"));
    let killed = watch.lines().iter().rev().find(|line| line["device"] == "fleet-c").cloned().expect("a line");
    assert_eq!(killed["since_ms"], Value::Null, "the last will carries no time: {killed:#}");
    assert!(last_state(&mut watch, "fleet-a") == Some("online"), "{:#?}", watch.lines());

    let table = edgectl(&["fleet", "list", "--broker", &broker_address, "--group", "lab"]);
    let line = |device: &str| table.lines().find(|line| line.starts_with(device)).unwrap_or_default().to_owned();
    assert!(line("fleet-b").contains("offline since"), "{table}");
    assert!(line("fleet-c").contains("offline, last health at"), "{table}");
    assert!(line("fleet-a").contains("online since"), "{table}");
    drop(a);
}

/// The state of `device` in the last watch line about it.
fn last_state<'a>(watch: &'a mut Push, device: &str) -> Option<&'a str> {
    watch.lines().iter().rev().find(|line| line["device"] == device).and_then(|line| line["state"].as_str())
}

fn wait_for(watch: &mut Push, done: impl Fn(&mut Push) -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done(watch) {
        let stderr = watch.stderr();
        assert!(watch.running(), "the watch ended: {:#?}\n{stderr}", watch.lines());
        assert!(Instant::now() < deadline, "the watch never showed it: {:#?}\n{stderr}", watch.lines());
        std::thread::sleep(Duration::from_millis(100));
    }
}
