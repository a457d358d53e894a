//! A three-node NATS cluster with its MQTT gateway on every node, for tests of fleets and failover.
//!
//! Each node has its own directory (config, JetStream store, log), a `server_name`, routes to all three, and an
//! MQTT listener on a free loopback port. `consumer_replicas: 1` with memory storage keeps each QoS 1
//! subscription a single in-memory consumer instead of an R3 raft group (which made hundreds of clients take
//! minutes to subscribe); the MQTT streams (sessions, retained messages) stay R3, so retained messages
//! survive the loss of a node.

use crate::broker::{free_port, retained};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NODES: usize = 3;
/// JetStream elects its meta leader and creates the MQTT streams before MQTT works: seconds, more on a loaded
/// machine.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
const READY_TOPIC: &str = "test/cluster/ready";

/// Three `nats-server` nodes, stopped (SIGKILL, then reaped) on drop.
pub struct NatsCluster {
    nodes: Vec<Node>,
}

struct Node {
    child: Option<Child>,
    mqtt_port: u16,
    dir: tempfile::TempDir,
}

struct Ports {
    client: u16,
    cluster: u16,
    mqtt: u16,
}

impl NatsCluster {
    /// Starts the nodes and waits until MQTT works on every one: a retained message published on node 0 is read
    /// on nodes 1 and 2.
    pub fn start() -> NatsCluster {
        let ports: Vec<Ports> =
            (0..NODES).map(|_| Ports { client: free_port(), cluster: free_port(), mqtt: free_port() }).collect();
        let routes: Vec<String> = ports.iter().map(|p| format!("\"nats-route://127.0.0.1:{}\"", p.cluster)).collect();
        let nodes = ports
            .iter()
            .enumerate()
            .map(|(index, ports)| {
                let dir = tempfile::tempdir().expect("temp dir");
                let config = dir.path().join("nats.conf");
                std::fs::write(&config, node_config(index, ports, &routes, dir.path())).expect("write nats.conf");
                let child = Command::new("nats-server")
                    .arg("-c")
                    .arg(&config)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("nats-server starts (scripts/setup.sh installs it)");
                Node { child: Some(child), mqtt_port: ports.mqtt, dir }
            })
            .collect();
        let cluster = NatsCluster { nodes };
        cluster.wait_ready();
        cluster
    }

    /// `127.0.0.1:<mqtt port>` of each node, in node order.
    pub fn brokers(&self) -> Vec<String> {
        self.nodes.iter().map(|node| format!("127.0.0.1:{}", node.mqtt_port)).collect()
    }

    pub fn mqtt_port(&self, node: usize) -> u16 {
        self.nodes[node].mqtt_port
    }

    /// Kills `node` (SIGKILL) and waits for its exit.
    pub fn kill(&mut self, node: usize) {
        if let Some(mut child) = self.nodes[node].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether `node`'s process is alive (not killed, not exited).
    pub fn is_running(&self, node: usize) -> bool {
        self.pid(node).is_some_and(|pid| {
            // A process that exited by itself stays a zombie until reaped: state `Z` in /proc/<pid>/stat.
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
        })
    }

    /// The process id of a node not killed, for CPU and memory figures (`/proc/<pid>/stat`, `status`).
    pub fn pid(&self, node: usize) -> Option<u32> {
        self.nodes[node].child.as_ref().map(Child::id)
    }

    /// What `node` logged so far.
    pub fn log(&self, node: usize) -> String {
        std::fs::read_to_string(log_path(self.nodes[node].dir.path())).unwrap_or_default()
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let marker = format!("ready-{}", std::process::id());
        while !mosquitto_pub_retained(self.mqtt_port(0), READY_TOPIC, &marker) {
            self.assert_before(deadline, "a retained publish on node 0");
            std::thread::sleep(Duration::from_millis(500));
        }
        for node in 1..NODES {
            while retained(self.mqtt_port(node), READY_TOPIC).as_deref() != Some(marker.as_str()) {
                self.assert_before(deadline, &format!("the retained message on node {node}"));
                // A publish accepted while the MQTT streams were still being made may not have been stored.
                mosquitto_pub_retained(self.mqtt_port(0), READY_TOPIC, &marker);
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }

    fn assert_before(&self, deadline: Instant, what: &str) {
        if Instant::now() < deadline {
            return;
        }
        let logs: Vec<String> = (0..NODES).map(|node| format!("node {node}:\n{}", self.log(node))).collect();
        panic!("the NATS cluster is not ready after {READY_TIMEOUT:?}: no {what}\n{}", logs.join("\n"));
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in 0..NODES {
            self.kill(node);
        }
    }
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join("nats.log")
}

fn node_config(index: usize, ports: &Ports, routes: &[String], dir: &Path) -> String {
    format!(
        "server_name: node-{index}\n\
         listen: 127.0.0.1:{client}\n\
         log_file: \"{log}\"\n\
         jetstream {{ store_dir: \"{store}\" }}\n\
         cluster {{\n  name: edge-test\n  listen: 127.0.0.1:{cluster}\n  routes: [{routes}]\n}}\n\
         mqtt {{\n  listen: 127.0.0.1:{mqtt}\n  consumer_replicas: 1\n  consumer_memory_storage: true\n}}\n",
        client = ports.client,
        cluster = ports.cluster,
        mqtt = ports.mqtt,
        log = log_path(dir).display(),
        store = dir.join("jetstream").display(),
        routes = routes.join(", "),
    )
}

/// Publishes `payload` retained at QoS 1 on `127.0.0.1:port`; whether the broker acknowledged it.
fn mosquitto_pub_retained(port: u16, topic: &str, payload: &str) -> bool {
    let port = port.to_string();
    let args = ["-h", "127.0.0.1", "-p", &port, "-q", "1", "-r", "-t", topic, "-m", payload];
    Command::new("mosquitto_pub")
        .args(args)
        .stderr(Stdio::null())
        .status()
        .expect("mosquitto_pub runs (scripts/setup.sh installs mosquitto-clients)")
        .success()
}
