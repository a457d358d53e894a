//! `/metrics` against a real Prometheus (Debian's `prometheus`, started here on loopback with its own config and
//! storage, never the packaged service): it scrapes a real agent every second, and its HTTP API must return the
//! agent's counters as MQTT health reports them, and data for every query of the Grafana dashboard.

use integration_tests::agent::Agent;
use integration_tests::broker::{Broker, free_port};
use integration_tests::profile::{frames_and_variants, profiled_copy};
use integration_tests::subscriber::{Received, Subscriber};
use integration_tests::{fixtures, models_dir, repo_root, sigterm};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(120);
const DEVICE: &str = "cam-01";
/// The frames the finite source reads once, and the file it cannot decode.
const FRAMES: [&str; 7] =
    ["astronaut.png", "camera.png", "cat.jpg", "coffee.jpg", "grace_hopper.jpg", "people.jpg", "rocket.jpg"];

/// A Prometheus server of the test's own, stopped by PID when dropped (a failing test included).
struct Prometheus {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes `target` (`host:port`) every second.
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("prometheus.yml");
        let text = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: edge-agent\n    static_configs:\n      - targets: [\"{target}\"]\n"
        );
        std::fs::write(&config, text).expect("write config");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts (scripts/setup.sh installs it)");
        let prometheus = Prometheus { child, port, dir };
        wait_for("Prometheus to be ready", Duration::from_secs(60), || {
            prometheus.get("/-/ready").ok().filter(|(status, _)| *status == 200)
        });
        prometheus
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `GET path` (already encoded): the status and the body. HTTP/1.0, so that the body is never chunked.
    fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
        Ok((status, body.to_owned()))
    }

    /// The result vector of an instant query; panics on a query Prometheus refuses.
    fn query(&self, promql: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/api/v1/query?query={}", encode(promql))).expect("Prometheus answers");
        let answer: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!((status, answer["status"].as_str()), (200, Some("success")), "{promql}: {body}");
        answer["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The value of the one series `promql` selects, once it has one.
    fn value(&self, promql: &str) -> Option<f64> {
        match self.query(promql).as_slice() {
            [series] => series["value"][1].as_str().and_then(|value| value.parse().ok()),
            _ => None,
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        sigterm(&self.child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a query parameter.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(byte).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// Polls `check` every 250 ms until it gives a value, or panics naming `what` after `timeout`.
fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// An agent with two image sources: `door` reads the frames and one truncated JPEG once, `yard` loops over the
/// frames; `monitors` is appended to its config.
struct Setup {
    broker: Broker,
    subscriber: Subscriber,
    agent: Agent,
    prometheus: Prometheus,
    /// Holds the truncated JPEG.
    _inputs: tempfile::TempDir,
}

impl Setup {
    fn start(yard_model: &Path, monitors: &str) -> Setup {
        let broker = Broker::start();
        let subscriber = Subscriber::connect(broker.port(), &format!("devices/{DEVICE}/#"));
        let inputs = tempfile::tempdir().expect("temp dir");
        let truncated = inputs.path().join("truncated.jpg");
        std::fs::write(&truncated, fixtures::truncated_jpeg()).expect("write the truncated JPEG");
        let frames: Vec<PathBuf> = FRAMES.iter().map(|frame| models_dir().join("frames").join(frame)).collect();
        let list =
            |paths: &[PathBuf]| paths.iter().map(|p| format!("{:?}", p.display().to_string())).collect::<Vec<_>>();
        let door_files = [list(&frames), list(std::slice::from_ref(&truncated))].concat().join(", ");
        let yard_files = list(&frames).join(", ");
        let metrics_port = free_port();
        let config = format!(
            r#"device_id = "{DEVICE}"
[mqtt]
host = "127.0.0.1"
port = {port}
[health]
interval_secs = 1
[metrics]
listen = "127.0.0.1:{metrics_port}"
[[sources]]
name = "door"
kind = "images"
model = "{classifier}"
files = [{door_files}]
rate_fps = 20.0
[[sources]]
name = "yard"
kind = "images"
model = "{yard}"
files = [{yard_files}]
loop = true
rate_fps = 10.0
{monitors}"#,
            port = broker.port(),
            classifier = models_dir().join("image-classifier").display(),
            yard = yard_model.display(),
        );
        let agent = Agent::start(&config);
        let prometheus = Prometheus::start(&format!("127.0.0.1:{metrics_port}"));
        Setup { broker, subscriber, agent, prometheus, _inputs: inputs }
    }

    /// Fails with the agent's and Prometheus's logs.
    fn explain(&self) -> String {
        format!("agent log:\n{}\nprometheus log:\n{}", self.agent.log(), self.prometheus.log())
    }

    fn stop(self) {
        let Setup { broker, subscriber, agent, prometheus, _inputs } = self;
        drop(prometheus);
        let (status, log) = agent.terminate(Duration::from_secs(30));
        assert!(status.success(), "the agent exits cleanly; log:\n{log}");
        subscriber.close();
        drop(broker);
    }
}

/// The latest health report on MQTT, once `done` holds for it.
fn health_when(subscriber: &Subscriber, done: impl Fn(&Value) -> bool) -> Value {
    let topic = format!("devices/{DEVICE}/health");
    let reports = subscriber.collect_until(WAIT, |got| got.iter().any(|m| m.topic == topic && done(&m.json())));
    reports.iter().filter(|m| m.topic == topic).map(Received::json).find(&done).expect("found")
}

/// Inputs of a source that failed, all kinds.
fn errors(source: &Value) -> u64 {
    source["errors"].as_array().map_or(0, |errors| errors.iter().filter_map(|e| e["count"].as_u64()).sum())
}

fn source<'a>(health: &'a Value, name: &str) -> &'a Value {
    health["sources"].as_array().and_then(|s| s.iter().find(|s| s["name"] == name)).expect("the source in health")
}

#[test]
fn prometheus_scrapes_the_counters_mqtt_health_reports() {
    let setup = Setup::start(&models_dir().join("image-classifier"), "");
    let prometheus = &setup.prometheus;

    // `door` is done once its last input is counted, failed or predicted; from then on its counters do not move,
    // so health and Prometheus must show the same numbers.
    let inputs = FRAMES.len() as u64 + 1;
    let health = health_when(&setup.subscriber, |health| {
        health["sources"].as_array().is_some_and(|sources| {
            sources.iter().any(|s| s["name"] == "door" && s["frames_in"].as_u64() == Some(inputs) && errors(s) == 1)
        })
    });
    let door = source(&health, "door");
    assert_eq!(door["frames_ok"].as_u64(), Some(FRAMES.len() as u64), "{door}");
    let selector = format!(r#"device="{DEVICE}",source="door""#);
    let expected = [
        (format!("edge_frames_in_total{{{selector}}}"), door["frames_in"].as_f64()),
        (format!("edge_frames_ok_total{{{selector}}}"), door["frames_ok"].as_f64()),
        (format!("edge_frames_dropped_total{{{selector}}}"), door["dropped"].as_f64()),
        (format!("sum(edge_errors_total{{{selector}}})"), Some(1.0)),
    ];
    let deadline = Instant::now() + WAIT;
    while expected.iter().any(|(promql, value)| prometheus.value(promql) != *value) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    for (promql, value) in &expected {
        assert_eq!(prometheus.value(promql), *value, "{promql}\n{}", setup.explain());
    }
    let latency_count = format!(r#"edge_inference_duration_seconds_count{{{selector},stage="total"}}"#);
    assert_eq!(prometheus.value(&latency_count), Some(FRAMES.len() as f64), "one observation per prediction");
    let under_10s = format!(r#"edge_inference_duration_seconds_bucket{{{selector},stage="total",le="10"}}"#);
    assert_eq!(prometheus.value(&under_10s), Some(FRAMES.len() as f64));
    let p95 = format!(
        r#"histogram_quantile(0.95, sum by (le) (edge_inference_duration_seconds_bucket{{{selector},stage="inference"}}))"#
    );
    let p95 = prometheus.value(&p95).expect("a p95");
    assert!(p95 > 0.0 && p95 <= 10.0, "p95 {p95} s");

    let agent_info = prometheus.query(&format!(r#"edge_agent_info{{device="{DEVICE}"}}"#));
    assert_eq!(agent_info.len(), 1, "{agent_info:?}");
    assert_eq!(agent_info[0]["metric"]["version"], health["agent_version"]);
    assert_eq!(agent_info[0]["metric"]["arch"], health["arch"]);
    let model = prometheus.query(&format!("edge_model_info{{{selector}}}"));
    assert_eq!(model.len(), 1, "{model:?}");
    for (label, reported) in [("model", &door["model"]["name"]), ("version", &door["model"]["version"])] {
        assert_eq!(&model[0]["metric"][label], reported, "{label}");
    }
    assert_eq!(model[0]["metric"]["provider_active"], door["provider_active"]);
    assert_eq!(prometheus.value(r#"up{job="edge-agent"}"#), Some(1.0));
    assert!(prometheus.value(&format!(r#"edge_process_resident_memory_bytes{{device="{DEVICE}"}}"#)) > Some(1e6));

    setup.stop();
}

/// Every query of the dashboard, with its template variables filled in.
fn dashboard_queries() -> Vec<(String, String)> {
    let path = repo_root().join("docs/grafana/edge-agent-dashboard.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("the dashboard")).expect("JSON");
    let mut queries = Vec::new();
    collect_queries(&dashboard, "", &mut queries);
    queries.into_iter().map(|(panel, expr)| (panel, expr.replace("$device", DEVICE))).collect()
}

fn collect_queries(value: &Value, panel: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(object) => {
            let panel = object.get("title").and_then(Value::as_str).unwrap_or(panel);
            if let Some(expr) = object.get("expr").and_then(Value::as_str) {
                out.push((panel.to_owned(), expr.to_owned()));
            }
            object.values().for_each(|child| collect_queries(child, panel, out));
        }
        Value::Array(items) => items.iter().for_each(|item| collect_queries(item, panel, out)),
        _ => {}
    }
}

#[test]
fn every_dashboard_query_returns_data() {
    let queries = dashboard_queries();
    assert!(queries.len() > 30, "{} queries", queries.len());
    let frames = tempfile::tempdir().expect("temp dir");
    let (_copy, profiled) = profiled_copy("image-classifier", &frames_and_variants(frames.path()), &[]);
    let monitors = "[[monitors]]\nsource = \"yard\"\nwindow = 8\nstride = 4\npublish_secs = 1\n\
                    [monitors.feedback]\nwindow = 20\nmin_labelled = 1\n";
    let setup = Setup::start(&profiled, monitors);
    let prometheus = &setup.prometheus;

    // The dashboard's device variable, once the first scrape is in.
    let devices = format!("/api/v1/label/device/values?match[]={}", encode("edge_agent_info"));
    wait_for("the device variable's values", WAIT, || {
        let (status, values) = prometheus.get(&devices).ok()?;
        (status == 200 && values.contains(&format!("\"{DEVICE}\""))).then_some(())
    });

    // Ground truth for yard's predictions (its top class), so that accuracy has data; rates need a few scrapes.
    let predictions = format!("devices/{DEVICE}/predictions/yard");
    let feedback = format!("devices/{DEVICE}/feedback/yard");
    let deadline = Instant::now() + WAIT;
    let mut empty: Vec<(String, String)> = queries.clone();
    while !empty.is_empty() && Instant::now() < deadline {
        for message in setup.subscriber.collect_for(Duration::from_millis(500)) {
            if message.topic == predictions {
                let prediction = message.json();
                let label = &prediction["output"]["classification"]["classes"][0]["label"];
                let truth = serde_json::json!({"seq": prediction["seq"], "label": label});
                setup.subscriber.publish(&feedback, truth.to_string());
            }
        }
        empty.retain(|(_, expr)| prometheus.query(expr).is_empty());
    }
    assert!(empty.is_empty(), "queries without data after {WAIT:?}:\n{empty:#?}\n{}", setup.explain());
    setup.stop();
}
