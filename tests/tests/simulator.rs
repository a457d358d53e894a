//! `edgectl fleet simulate` against a real Mosquitto: 50 simulated devices come online with their memberships,
//! health and predictions; `model push --group` takes them to `committed`, or `rejected` where their simulated
//! self-test fails; unsigned and replayed announcements are refused as by the agent; SIGTERM leaves every device
//! `offline`, retained.

use integration_tests::agent::operator_binary;
use integration_tests::broker::Broker;
use integration_tests::sigterm;
use integration_tests::subscriber::Received;
use integration_tests::update::{Push, WAIT, Watch, at_version, calm_window, now_ms};
use protocol::update::{Envelope, Membership, Order, UpdateStatus};
use protocol::wire::{Health, Prediction, State, Status};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

const DEVICES: u32 = 50;
/// `--fail-self-test-every`: devices 9, 19, 29, 39 and 49 fail.
const FAIL_EVERY: u32 = 10;
const MODEL: &str = "activity-classifier";

fn id(index: u32) -> String {
    format!("sim-{index:04}")
}

/// The simulator as a child process, its `--json` lines read as they come.
struct Simulator {
    child: Child,
    lines: Receiver<Value>,
}

impl Simulator {
    fn start(port: u16, trusted_key: &str) -> Simulator {
        let (devices, every) = (DEVICES.to_string(), FAIL_EVERY.to_string());
        let mut child = Command::new(operator_binary())
            .args(["fleet", "simulate", "--broker", &format!("127.0.0.1:{port}"), "--devices", &devices])
            .args(["--group", "lab", "--model", MODEL, "--version", "1.0.0", "--trusted-key", trusted_key])
            .args(["--rate", "2", "--health-secs", "1", "--probation-secs", "1", "--install-ms", "50"])
            .args(["--fail-self-test-every", &every, "--json"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("edgectl starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
                if sender.send(value).is_err() {
                    return;
                }
            }
        });
        Simulator { child, lines }
    }

    fn next_event(&self, event: &str) -> Value {
        loop {
            let line = self.lines.recv_timeout(WAIT).unwrap_or_else(|e| panic!("no {event:?} line: {e}"));
            if line["event"] == event {
                return line;
            }
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The retained messages on `filter`, as a late subscriber gets them (live ones, health's next report, are left
/// out): the callers check that every device has one.
fn retained(port: u16, filter: &str) -> Vec<Received> {
    let mut watch = Watch::new(port, filter);
    let count = |watch: &Watch| watch.seen.iter().filter(|message| message.retain).count();
    watch.until(WAIT, String::new, |watch| count(watch) >= DEVICES as usize);
    watch.drain(Duration::from_millis(300));
    watch.seen.into_iter().filter(|message| message.retain).collect()
}

fn devices_of<'a>(messages: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
    messages.map(str::to_owned).collect()
}

#[test]
fn fifty_simulated_devices_come_online_take_a_group_push_refuse_attacks_and_go_offline() {
    let broker = Broker::start();
    let port = broker.port();
    let bench = integration_tests::update::Workbench::new();
    let mut watch = Watch::new(port, "#");
    let mut simulator = Simulator::start(port, &bench.trusted.public);
    let ready = simulator.next_event("ready");
    assert_eq!((ready["devices"].as_u64(), ready["connected"].as_u64()), (Some(50), Some(50)), "{ready}");
    let all: BTreeSet<String> = (0..DEVICES).map(id).collect();

    let statuses: Vec<Status> =
        retained(port, "devices/+/status").iter().map(|m| serde_json::from_slice(&m.payload).unwrap()).collect();
    assert!(statuses.iter().all(|s| s.state == State::Online && s.agent_version.ends_with("-sim")), "{statuses:?}");
    assert_eq!(devices_of(statuses.iter().map(|s| s.device.as_str())), all);
    let members: Vec<Membership> =
        retained(port, "groups/lab/members/+").iter().map(|m| serde_json::from_slice(&m.payload).unwrap()).collect();
    assert!(members.iter().all(|m| m.prefix == format!("devices/{}", m.device)), "{members:?}");
    assert_eq!(devices_of(members.iter().map(|m| m.device.as_str())), all);
    let healths: Vec<Health> =
        retained(port, "devices/+/health").iter().map(|m| serde_json::from_slice(&m.payload).unwrap()).collect();
    assert_eq!(devices_of(healths.iter().map(|h| h.device.as_str())), all);
    assert!(healths.iter().all(|h| h.sources[0].model.version == "1.0.0"), "{healths:?}");
    let predicted = |watch: &Watch, version: &str| -> BTreeSet<String> {
        let predictions = watch.seen.iter().filter(|m| m.topic.ends_with("/predictions/sim"));
        let decoded = predictions.map(|m| serde_json::from_slice::<Prediction>(&m.payload).expect("a Prediction"));
        decoded.filter(|p| p.model.name == MODEL && p.model.version == version).map(|p| p.device).collect()
    };
    watch.until(WAIT, String::new, |watch| predicted(watch, "1.0.0") == all);

    let v110 = at_version(MODEL, "1.1.0");
    let package = bench.signed(v110.path(), &calm_window());
    let outcome = Push::start(&package, port, &bench.trusted, &["--group", "lab", "--timeout", "120"])
        .finish(Duration::from_secs(180));
    let failing = |index: u32| index % FAIL_EVERY == FAIL_EVERY - 1;
    for index in 0..DEVICES {
        let expected = if failing(index) { "rejected" } else { "committed" };
        assert_eq!(outcome.state(&id(index)), Some(expected), "{}: {outcome:#?}", id(index));
    }
    let mut outcomes = BTreeSet::new();
    while outcomes.len() < DEVICES as usize {
        let line = simulator.next_event("outcome");
        outcomes.insert((line["device"].as_str().unwrap().to_owned(), line["state"].as_str().unwrap().to_owned()));
    }
    let rejected: Vec<&(String, String)> = outcomes.iter().filter(|(_, state)| state == "rejected").collect();
    assert_eq!(rejected.len(), 5, "{outcomes:?}");
    let status_of = |watch: &Watch, device: &str| -> Vec<UpdateStatus> {
        let topic = format!("devices/{device}/update/status");
        watch.seen.iter().filter(|m| m.topic == topic).map(|m| serde_json::from_slice(&m.payload).unwrap()).collect()
    };
    watch.drain(Duration::from_millis(500));
    let refused = status_of(&watch, &id(9));
    let reason = refused.last().and_then(|s| s.reason.clone()).unwrap_or_default();
    assert!(reason.contains("simulated self-test failure"), "{refused:?}");
    let committed: BTreeSet<String> = (0..DEVICES).filter(|&i| !failing(i)).map(id).collect();
    watch.until(WAIT, String::new, |watch| predicted(watch, "1.1.0") == committed);

    // The push's announcement, unsigned (its order without the envelope), then replayed with an old counter.
    let announce = watch.seen.iter().find(|m| m.topic == "groups/lab/update/announce").expect("the announcement");
    let envelope: Envelope = serde_json::from_slice(&announce.payload).expect("an envelope");
    let order: Order = serde_json::from_str(&envelope.signed).expect("an order");
    let device = id(0);
    let own_announce = format!("devices/{device}/update/announce");
    let replayed = bench.order(&bench.trusted, &device, 1, now_ms() + 60_000, order.instruction);
    for (payload, kind) in [(envelope.signed.clone().into_bytes(), "malformed"), (replayed, "replayed")] {
        let before = watch.update_errors(&device).len();
        watch.publish(&own_announce, payload);
        watch.until(WAIT, String::new, |watch| watch.update_errors(&device).len() > before);
        let error = watch.update_errors(&device)[before].clone();
        assert_eq!((error["stage"].as_str(), error["kind"].as_str()), (Some("announce"), Some(kind)), "{error}");
    }

    sigterm(&simulator.child);
    let summary = simulator.next_event("summary");
    assert_eq!(summary["disconnected_cleanly"].as_u64(), Some(50), "{summary}");
    let exit = simulator.child.wait().expect("the simulator exits");
    assert!(exit.success(), "{exit}");
    let statuses: Vec<Status> =
        retained(port, "devices/+/status").iter().map(|m| serde_json::from_slice(&m.payload).unwrap()).collect();
    assert!(statuses.iter().all(|s| s.state == State::Offline), "{statuses:?}");
    assert_eq!(devices_of(statuses.iter().map(|s| s.device.as_str())), all);
}
