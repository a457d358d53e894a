//! Broker failover end to end: an agent with a list of brokers moves to the next when its broker dies, and
//! re-establishes there what a fresh broker lacks (its retained `online` status, its group membership, its last
//! update status); `edgectl` passes over a dead broker. On two Mosquittos, and on a three-node NATS cluster.

use integration_tests::agent::Agent;
use integration_tests::broker::{Broker, free_port, retained};
use integration_tests::nats::NatsCluster;
use integration_tests::update::{
    ConfigBuilder, Push, WAIT, Watch, Workbench, at_version, calm_window, csv_loop, log_of, model, now_ms,
    predictions_after,
};
use serde_json::Value;
use std::time::{Duration, Instant};

const DEVICE: &str = "wrist-01";
const SOURCE: &str = "wrist";
const GROUP: &str = "lab";

fn status_topic() -> String {
    format!("devices/{DEVICE}/status")
}

fn membership_topic() -> String {
    format!("groups/{GROUP}/members/{DEVICE}")
}

fn update_status_topic() -> String {
    format!("devices/{DEVICE}/update/status")
}

/// An agent on `brokers` in group `lab`, classifying a CSV recording 10 windows a second.
/// The agent's config; `subscription_qos` is `mqtt.qos.subscriptions` (0 on NATS, see docs/fleets.md).
fn config(brokers: Vec<String>, subscription_qos: u8, bench: &Workbench, state: &tempfile::TempDir) -> String {
    ConfigBuilder::new(DEVICE, 0, &bench.trusted.public, state.path())
        .brokers(brokers)
        .subscription_qos(subscription_qos)
        .update("groups", format!("[\"{GROUP}\"]"))
        .source(csv_loop(SOURCE, &model("activity-classifier"), 10))
        .build()
        // Health every 5 s, not every second: each report is retained, and a retained message is a replicated
        // JetStream write on NATS, which a fresh three-node cluster on two loaded cores answers late enough to
        // miss the agent's keep-alive.
        .replace("[health]\ninterval_secs = 1\n", "[health]\ninterval_secs = 5\n")
}

/// Waits until the broker at `port` serves, to a late subscriber, the retained `online` status, the group
/// membership and the update status of the device.
fn assert_state_served(port: u16, agent: &Agent) {
    let deadline = Instant::now() + WAIT;
    loop {
        let status = retained(port, &status_topic()).map(|text| json(&text));
        let membership = retained(port, &membership_topic()).map(|text| json(&text));
        let update = retained(port, &update_status_topic()).map(|text| json(&text));
        let online = status.as_ref().is_some_and(|status| status["state"] == "online");
        let member = membership.as_ref().is_some_and(|m| m["device"] == DEVICE);
        let updater = update.as_ref().is_some_and(|u| u["state"].is_string());
        if online && member && updater {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "port {port}: status {status:?}, membership {membership:?}, update status {update:?}\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?} is not JSON: {e}"))
}

/// The `host:port` of the broker the agent connected to last, from its log.
fn connected_to(agent: &Agent) -> String {
    let log = agent.log();
    let line = log.lines().rev().find_map(|line| line.split("MQTT connected to ").nth(1));
    line.unwrap_or_else(|| panic!("the agent never connected:\n{log}")).trim_end_matches('.').to_owned()
}

#[test]
fn a_dead_broker_hands_the_agent_and_its_state_to_the_next() {
    let first = Broker::start();
    let second = Broker::start();
    let brokers = vec![format!("127.0.0.1:{}", first.port()), format!("127.0.0.1:{}", second.port())];
    let bench = Workbench::new();
    let state = tempfile::tempdir().unwrap();
    let agent = Agent::start(&config(brokers.clone(), 1, &bench, &state));
    assert_state_served(first.port(), &agent);
    assert_eq!(connected_to(&agent), brokers[0]);
    assert_eq!(retained(second.port(), &status_topic()), None, "the second broker has seen nothing yet");

    let mut watch = Watch::new(second.port(), &format!("devices/{DEVICE}/#"));
    let stopped_ms = now_ms();
    first.stop();
    predictions_after(&mut watch, &agent, DEVICE, SOURCE, stopped_ms, 3);
    assert_eq!(connected_to(&agent), brokers[1]);
    assert!(agent.log().contains(&format!("MQTT moving to broker 2 of 2: {}.", brokers[1])), "{}", agent.log());
    assert_state_served(second.port(), &agent);
}

#[test]
fn a_nats_cluster_keeps_the_agent_and_its_state_when_its_node_dies() {
    let mut cluster = NatsCluster::start();
    let brokers = cluster.brokers();
    let bench = Workbench::new();
    let state = tempfile::tempdir().unwrap();
    let agent = Agent::start(&config(brokers.clone(), 0, &bench, &state));
    // Published on node 0 (listed first), read through node 2.
    let mut watch = Watch::at_most_once(cluster.mqtt_port(2), &format!("devices/{DEVICE}/predictions/#"));
    predictions_after(&mut watch, &agent, DEVICE, SOURCE, 0, 3);
    let node = brokers.iter().position(|broker| *broker == connected_to(&agent)).expect("a node of the cluster");
    assert_eq!(node, 0, "the first node listed");

    let killed_ms = now_ms();
    cluster.kill(node);
    assert!(!cluster.is_running(node));
    predictions_after(&mut watch, &agent, DEVICE, SOURCE, killed_ms, 3);
    let now_on = connected_to(&agent);
    assert_ne!(now_on, brokers[node], "{}", agent.log());
    for survivor in [1, 2] {
        assert!(cluster.is_running(survivor));
        assert_state_served(cluster.mqtt_port(survivor), &agent);
    }
}

#[test]
fn a_push_passes_over_a_dead_broker_listed_first() {
    let broker = Broker::start();
    let bench = Workbench::new();
    let state = tempfile::tempdir().unwrap();
    let config = ConfigBuilder::new(DEVICE, broker.port(), &bench.trusted.public, state.path())
        .source(csv_loop(SOURCE, &model("activity-classifier"), 10))
        .build();
    let mut watch = Watch::new(broker.port(), &format!("devices/{DEVICE}/#"));
    let agent = Agent::start(&config);
    watch.until(WAIT, log_of(&agent), |w| !w.predictions(DEVICE, SOURCE).is_empty());

    let v110 = at_version("activity-classifier", "1.1.0");
    let package = bench.signed(v110.path(), &calm_window());
    let brokers = [format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", broker.port())];
    let outcome = Push::start_listing(&package, &brokers, &bench.trusted, &["--device", DEVICE]).finish(WAIT);
    assert!(outcome.success, "{outcome:#?}\n{}", agent.log());
    assert_eq!(outcome.state(DEVICE), Some("committed"), "{outcome:#?}");
    watch.until(WAIT, log_of(&agent), |w| w.reported(DEVICE, "committed", None));
}
