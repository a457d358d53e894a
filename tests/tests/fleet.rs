//! Fleets on a clustered broker: a three-node NATS cluster with JetStream and MQTT, real agents and simulated
//! devices (`edgectl fleet simulate`), rolled out in waves by `edgectl model push --group`.
//!
//! Sized for a 2-core CI machine: the 1,000-device rollout takes a few minutes; the others run a few hundred
//! devices. Every test prints its figures (time per wave, CPU and peak memory of the brokers, the agents and the
//! simulators) on stderr.

use integration_tests::agent::Agent;
use integration_tests::fleet::{Simulator, Usage, activity_fleet};
use integration_tests::nats::NatsCluster;
use integration_tests::subscriber::{Received, Subscriber};
use integration_tests::update::{
    ConfigBuilder, Push, PushOutcome, Workbench, at_version, calm_window, csv_loop, model,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

const GROUP: &str = "fleet";
/// Simulated devices connect a few hundred a second; a loaded CI machine is slower.
const READY_WAIT: Duration = Duration::from_secs(180);
const ROLLOUT_WAIT: Duration = Duration::from_secs(600);

/// A fleet on the cluster: real agents `agent-00`… and simulated devices `sim-0020`…, all in group `fleet`, each
/// process with the cluster's nodes in another order so that connections spread over the three nodes.
struct Fleet {
    cluster: NatsCluster,
    bench: Workbench,
    agents: Vec<Agent>,
    _states: Vec<tempfile::TempDir>,
    simulators: Vec<Simulator>,
    devices: Vec<String>,
    /// One fleet at a time: two would share two cores between six brokers and thousands of sessions. Last, so
    /// that it is released after everything else has stopped.
    _serial: MutexGuard<'static, ()>,
}

static SERIAL: Mutex<()> = Mutex::new(());

impl Fleet {
    fn start(real: usize, simulated: usize, simulator_args: &[&str]) -> Fleet {
        let serial = SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let cluster = NatsCluster::start();
        let bench = Workbench::new();
        let mut devices = Vec::new();
        let (mut agents, mut states) = (Vec::new(), Vec::new());
        for index in 0..real {
            let device = format!("agent-{index:02}");
            let state = tempfile::tempdir().expect("temp dir");
            let config = ConfigBuilder::new(&device, 0, &bench.trusted.public, state.path())
                .brokers(rotated(&cluster.brokers(), index))
                .subscription_qos(0)
                .source(csv_loop("wrist", &model("activity-classifier"), 5))
                .update("groups", format!("[\"{GROUP}\"]"))
                .probation("window_secs", 2)
                .probation("min_frames", 5)
                // Three brokers and a thousand devices share two cores: a few milliseconds of scheduling delay in
                // the p95 of a dozen inputs are not the model's (a CI run rolled back at 3.4 ms against 0.3 ms).
                .probation("min_p95_increase_ms", 50)
                .build();
            agents.push(Agent::start(&config));
            states.push(state);
            devices.push(device);
        }
        // One simulator: its device i starts on node i mod 3 and fails over to the others.
        let mut simulators = Vec::new();
        if simulated > 0 {
            let (count, first) = (simulated.to_string(), real.to_string());
            let mut args = vec![
                "--devices",
                &count,
                "--first-index",
                &first,
                "--id-prefix",
                "sim-",
                "--rate",
                "0.1",
                "--health-secs",
                "30",
                "--probation-secs",
                "2",
                "--install-ms",
                "100",
                "--subscription-qos",
                "0",
            ];
            args.extend(activity_fleet(GROUP, &bench.trusted.public));
            args.extend_from_slice(simulator_args);
            simulators.push(Simulator::start(&cluster.brokers(), &args, READY_WAIT));
            devices.extend((real..real + simulated).map(|i| format!("sim-{i:04}")));
        }
        let fleet = Fleet { cluster, bench, agents, _states: states, simulators, devices, _serial: serial };
        fleet.wait_online();
        fleet
    }

    /// Until every device's retained status says `online` and its membership is retained.
    fn wait_online(&self) {
        let deadline = Instant::now() + READY_WAIT;
        loop {
            let online = self.retained("devices/+/status", |m| m.json()["state"] == "online");
            let members = self.retained(&format!("groups/{GROUP}/members/+"), |_| true);
            if online.len() == self.devices.len() && members.len() == self.devices.len() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {} online, {} members; the others' retained status on each running node:\n{}\n{}",
                online.len(),
                self.devices.len(),
                members.len(),
                self.statuses_of(self.devices.iter().filter(|d| !online.contains(*d) || !members.contains(*d))),
                self.logs()
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// The retained messages on `filter`, as node `node` serves them.
    fn retained_on(&self, node: usize, filter: &str) -> Vec<Received> {
        let subscriber = Subscriber::at_most_once(self.cluster.mqtt_port(node), filter);
        subscriber.collect_for(Duration::from_secs(3)).into_iter().filter(|m| m.retain).collect()
    }

    /// A node that is running.
    fn running_node(&self) -> usize {
        (0..3).find(|&node| self.cluster.is_running(node)).expect("a node runs")
    }

    /// The device of each retained message on `filter` that passes `keep`, read from a node that is running.
    fn retained(&self, filter: &str, keep: impl Fn(&Received) -> bool) -> BTreeSet<String> {
        let messages = self.retained_on(self.running_node(), filter);
        messages.iter().filter(|m| keep(m)).map(|m| device_of(&m.topic)).collect()
    }

    /// What each running node holds as the retained `status` of `devices`, a line per device and node.
    fn statuses_of<'a>(&self, devices: impl Iterator<Item = &'a String>) -> String {
        let devices: BTreeSet<&String> = devices.collect();
        let mut lines = Vec::new();
        for node in (0..3).filter(|&node| self.cluster.is_running(node)) {
            let statuses: BTreeMap<String, String> = self
                .retained_on(node, "devices/+/status")
                .iter()
                .map(|m| (device_of(&m.topic), String::from_utf8_lossy(&m.payload).into_owned()))
                .collect();
            lines.extend(devices.iter().map(|d| format!("node {node}: {d}: {:?}", statuses.get(*d))));
        }
        lines.join("\n")
    }

    /// The retained update status of every device, by device.
    fn update_states(&self) -> BTreeMap<String, Value> {
        let messages = self.retained_on(self.running_node(), "devices/+/update/status");
        messages.iter().map(|m| (device_of(&m.topic), m.json())).collect()
    }

    fn push(&self, package: &std::path::Path, brokers: &[String], args: &[&str]) -> Push {
        let mut all = vec!["--group", GROUP];
        all.extend_from_slice(args);
        Push::start_listing(package, brokers, &self.bench.trusted, &all)
    }

    fn package(&self) -> std::path::PathBuf {
        let v110 = at_version("activity-classifier", "1.1.0");
        self.bench.signed(v110.path(), &calm_window())
    }

    fn logs(&self) -> String {
        let mut text = String::new();
        for (index, agent) in self.agents.iter().enumerate().take(3) {
            text += &format!("---- agent-{index:02}:\n{}\n", agent.log());
        }
        for simulator in &self.simulators {
            text += &format!("---- simulator:\n{}\n", simulator.stderr());
        }
        for node in 0..3 {
            let log = self.cluster.log(node);
            text += &format!("---- nats node {node} (tail):\n{}\n", tail(&log, 40));
        }
        text
    }

    /// CPU and peak memory of the brokers, the agents and the simulators, one line each.
    fn figures(&self) -> String {
        let mut lines = Vec::new();
        for node in 0..3 {
            if let Some(usage) = self.cluster.pid(node).and_then(Usage::of) {
                lines.push(format!("nats node {node}: {}", usage.describe()));
            }
        }
        let agents: Vec<Usage> = self.agents.iter().filter_map(|a| Usage::of(a.pid())).collect();
        if let Some(max) = agents.iter().map(|u| u.peak_rss_bytes).max() {
            let cpu: f64 = agents.iter().map(|u| u.cpu_s).sum::<f64>() / agents.len() as f64;
            lines.push(format!(
                "agents ({}): mean {cpu:.1} s CPU, largest peak {:.1} MiB",
                agents.len(),
                max as f64 / 1048576.0
            ));
        }
        for simulator in &self.simulators {
            if let Some(usage) = Usage::of(simulator.pid()) {
                lines.push(format!("simulator {}: {}", simulator.pid(), usage.describe()));
            }
        }
        lines.join("\n")
    }
}

/// `list` starting at `first` (mod its length).
fn rotated(list: &[String], first: usize) -> Vec<String> {
    let mut list = list.to_vec();
    let len = list.len();
    list.rotate_left(first % len);
    list
}

/// `devices/<id>/…` or `groups/<g>/members/<id>` → `<id>`.
fn device_of(topic: &str) -> String {
    let parts: Vec<&str> = topic.split('/').collect();
    match parts.as_slice() {
        ["groups", _, "members", device] => (*device).to_owned(),
        ["devices", device, ..] => (*device).to_owned(),
        _ => panic!("unexpected topic {topic}"),
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The rollout's summary line (`event: summary`).
fn summary(lines: &[Value]) -> Value {
    lines.iter().rev().find(|line| line["event"] == "summary").cloned().unwrap_or(Value::Null)
}

/// What a failed push said: its last lines and its log's tail.
fn failure(outcome: &PushOutcome) -> String {
    let lines: Vec<String> = outcome.lines.iter().rev().take(20).rev().map(Value::to_string).collect();
    format!(
        "exit {:?}; last lines:\n{}\nedgectl log (tail):\n{}",
        outcome.code,
        lines.join("\n"),
        tail(&outcome.stderr, 30)
    )
}

/// The waves of a rollout's summary as (wave, devices, seconds from its start to its last outcome).
fn wave_times(lines: &[Value]) -> Vec<(u64, u64, f64)> {
    let summary = summary(lines);
    let waves = summary["waves"].as_array().cloned().unwrap_or_default();
    waves
        .iter()
        .map(|wave| {
            let devices =
                wave["devices"].as_array().map_or_else(|| wave["devices"].as_u64().unwrap_or(0), |d| d.len() as u64);
            (wave["wave"].as_u64().unwrap_or_default(), devices, wave["duration_s"].as_f64().unwrap_or_default())
        })
        .collect()
}

/// Until the rollout says its first wave passed its gate.
fn first_gate_passed(push: &mut Push) {
    let deadline = Instant::now() + ROLLOUT_WAIT;
    while !push.lines().iter().any(|line| line["event"] == "gate" && line["passed"] == true) {
        if !push.running() {
            let stderr = push.stderr();
            panic!("the push ended before its first wave passed: {:?}\n{stderr}", push.lines());
        }
        assert!(Instant::now() < deadline, "no wave passed: {:?}", push.lines());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A canary of 10, then waves of 200 every 10 s (1,200 a minute) with a 2 s soak, aborting past `max_failures`
/// once 20 devices have finished.
fn waves_at_1200_a_minute(max_failures: &str) -> [&str; 12] {
    [
        "--canary",
        "10",
        "--wave-rate",
        "1200",
        "--wave-secs",
        "10",
        "--soak-secs",
        "2",
        "--max-failures",
        max_failures,
        "--min-finished",
        "20",
    ]
}

#[test]
fn a_thousand_devices_take_a_canary_then_waves_at_a_set_rate() {
    let fleet = Fleet::start(20, 980, &[]);
    let package = fleet.package();
    let started = Instant::now();
    let push = fleet.push(&package, &fleet.cluster.brokers(), &waves_at_1200_a_minute("2%"));
    let outcome = push.finish(ROLLOUT_WAIT);
    let elapsed = started.elapsed();
    assert!(outcome.success, "{}\n{}", failure(&outcome), fleet.logs());
    let states = fleet.update_states();
    let not_committed: Vec<_> =
        fleet.devices.iter().filter(|d| states.get(*d).is_none_or(|s| s["state"] != "committed")).collect();
    assert!(not_committed.is_empty(), "not committed: {not_committed:?}");
    let waves = wave_times(&outcome.lines);
    assert!(waves.len() >= 2, "a canary wave and more: {waves:?}");
    assert_eq!(waves[0].1, 10, "the canary wave: {waves:?}");
    assert_eq!(waves.iter().map(|w| w.1).sum::<u64>(), 1000, "{waves:?}");
    eprintln!("1,000 devices (20 agents, 980 simulated) committed in {:.1} s", elapsed.as_secs_f64());
    for (wave, devices, seconds) in &waves {
        eprintln!("  wave {wave}: {devices} devices, {seconds:.1} s");
    }
    eprintln!("{}", fleet.figures());
}

#[test]
fn a_node_killed_mid_rollout_leaves_no_device_half_updated() {
    let mut fleet = Fleet::start(6, 294, &[]);
    let package = fleet.package();
    // The operator starts on node 0, the node that dies.
    let mut push = fleet.push(&package, &fleet.cluster.brokers(), &waves_at_1200_a_minute("5%"));
    first_gate_passed(&mut push);
    fleet.cluster.kill(0);
    let outcome = push.finish(ROLLOUT_WAIT);
    assert!(outcome.success, "{}\n{}", failure(&outcome), fleet.logs());
    // Every device reconnected to a surviving node, said so (retained `online`), kept its membership, and ended
    // committed: none is left downloading, verifying, testing or on probation.
    fleet.wait_online();
    let states = fleet.update_states();
    for device in &fleet.devices {
        let state = states.get(device).map(|s| s["state"].clone());
        assert_eq!(state, Some(Value::from("committed")), "{device}: {:?}", states.get(device));
    }
    eprintln!("node 0 killed after the first wave; {}", fleet.figures());
}

#[test]
fn failing_devices_abort_the_rollout_and_the_rest_never_hear_of_it() {
    // sim-0040 to sim-0049, the fifth wave, fail the package's self-test.
    let failing: Vec<String> = (40..50).map(|i| format!("sim-{i:04}")).collect();
    let mut failing_args = Vec::new();
    for device in &failing {
        failing_args.extend(["--fail-self-test", device.as_str()]);
    }
    let fleet = Fleet::start(0, 150, &failing_args);
    let package = fleet.package();
    let announcements = Subscriber::connect(fleet.cluster.mqtt_port(1), "devices/+/update/announce");
    // Waves of ten every 5 s: the canary and three waves commit; the fifth wave's failures pass 10% of the
    // finished devices.
    let args =
        ["--canary", "10", "--wave-rate", "120", "--wave-secs", "5", "--soak-secs", "1", "--max-failures", "10%"];
    let outcome = fleet
        .push(&package, &fleet.cluster.brokers(), &[&args[..], &["--min-finished", "10"]].concat())
        .finish(ROLLOUT_WAIT);
    assert!(!outcome.success, "the rollout must abort: {:#?}", summary(&outcome.lines));
    assert!(outcome.lines.iter().any(|line| line["event"] == "aborted"), "{:?}", outcome.lines);
    let announced: BTreeSet<String> =
        announcements.collect_for(Duration::from_secs(3)).iter().map(|m| device_of(&m.topic)).collect();
    let expected: BTreeSet<String> = (0..50).map(|i| format!("sim-{i:04}")).collect();
    assert_eq!(announced, expected, "the five waves up to the failing one were announced, no other device");
    // The devices not reached never heard of the update: their retained status is still the one they started with.
    let states = fleet.update_states();
    let reached: BTreeSet<String> =
        states.iter().filter(|(_, s)| s["state"] != "idle").map(|(device, _)| device.clone()).collect();
    assert_eq!(reached, announced, "only the announced devices moved");
    let rejected: Vec<&String> = failing.iter().filter(|d| states[*d]["state"] == "rejected").collect();
    assert!(rejected.len() >= 5, "the failing devices were rejected: {states:?}");
    eprintln!(
        "aborted after {} of {} devices were announced, {} rejected",
        announced.len(),
        fleet.devices.len(),
        rejected.len()
    );
}

#[test]
fn an_operator_killed_mid_rollout_finishes_it_when_run_again_without_pushing_twice() {
    let fleet = Fleet::start(2, 118, &[]);
    let package = fleet.package();
    let announcements = Subscriber::connect(fleet.cluster.mqtt_port(2), "devices/+/update/announce");
    let args = [
        "--canary",
        "5",
        "--wave-rate",
        "600",
        "--wave-secs",
        "10",
        "--soak-secs",
        "2",
        "--max-failures",
        "5%",
        "--min-finished",
        "10",
    ];
    let mut first = fleet.push(&package, &fleet.cluster.brokers(), &args);
    first_gate_passed(&mut first);
    drop(first); // SIGKILL
    let outcome = fleet.push(&package, &fleet.cluster.brokers(), &args).finish(ROLLOUT_WAIT);
    assert!(outcome.success, "{}\n{}", failure(&outcome), fleet.logs());
    let states = fleet.update_states();
    assert!(fleet.devices.iter().all(|d| states.get(d).is_some_and(|s| s["state"] == "committed")), "{states:?}");
    // Each device was sent one signed order, however often it was repeated.
    let mut counters: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for message in announcements.collect_for(Duration::from_secs(3)) {
        let envelope = message.json();
        let order: Value = serde_json::from_str(envelope["signed"].as_str().expect("signed text")).expect("an order");
        counters.entry(device_of(&message.topic)).or_default().insert(order["counter"].as_u64().expect("counter"));
    }
    assert_eq!(counters.len(), fleet.devices.len(), "every device was announced to");
    let twice: Vec<_> = counters.iter().filter(|(_, c)| c.len() > 1).collect();
    assert!(twice.is_empty(), "devices pushed under two orders: {twice:?}");
}
