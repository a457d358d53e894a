//! The agent end to end against a real Mosquitto on loopback: predictions, health and status arrive with every
//! field; bad inputs become error events while the agent keeps serving; SIGTERM drains and says `offline`;
//! SIGKILL leaves `offline` through the last will.

use integration_tests::agent::{Agent, agent_binary};
use integration_tests::broker::Broker;
use integration_tests::fixtures::{edited_bundle, png_header, truncated_jpeg};
use integration_tests::subscriber::{Received, Subscriber};
use integration_tests::{models_dir, references};
use serde_json::Value;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn model(name: &str) -> String {
    models_dir().join(name).display().to_string()
}

fn config(port: u16, sources: &str) -> String {
    format!(
        "device_id = \"cam-01\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = {port}\nkeep_alive_secs = 5\n\
         [health]\ninterval_secs = 1\n{sources}"
    )
}

fn on<'a>(messages: &'a [Received], topic: &str) -> Vec<&'a Received> {
    messages.iter().filter(|m| m.topic == topic).collect()
}

/// The newest health report in which `done` holds for the source named `name`.
fn health_source(health: &Value, name: &str) -> Option<Value> {
    health["sources"].as_array()?.iter().find(|s| s["name"] == name).cloned()
}

fn assert_has_keys(value: &Value, keys: &[&str], what: &str) {
    for key in keys {
        assert!(value.get(key).is_some(), "{what} lacks `{key}`: {value}");
    }
}

#[test]
fn predictions_health_and_status_arrive_and_the_last_will_says_offline() {
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port(), "devices/cam-01/#");
    let sources = format!(
        "[[sources]]\nname = \"front\"\nkind = \"images\"\nmodel = \"{}\"\npath = \"{}\"\nrate_fps = 5\n\
         [[sources]]\nname = \"wrist\"\nkind = \"csv\"\nmodel = \"{}\"\npath = \"{}\"\n",
        model("image-classifier"),
        models_dir().join("frames").display(),
        model("activity-classifier"),
        models_dir().join("recordings/activity.csv").display(),
    );
    let agent = Agent::start(&config(broker.port(), &sources));
    let frames = references::load("image-classifier").cases.len();
    let windows = references::load("activity-classifier").cases.len();
    let messages = sub.collect_until(WAIT, |got| {
        let done = |name: &str, n: u64| {
            on(got, "devices/cam-01/health")
                .iter()
                .filter_map(|m| health_source(&m.json(), name))
                .any(|s| s["frames_ok"].as_u64() == Some(n))
        };
        done("front", frames as u64) && done("wrist", windows as u64)
    });

    let status = on(&messages, "devices/cam-01/status");
    assert_eq!(status.first().map(|m| m.json()["state"].clone()), Some(Value::from("online")), "{status:?}");

    // Every frame, in file-name order, gives the label Python onnxruntime gave it.
    let mut expected: Vec<(String, String)> = references::load("image-classifier")
        .cases
        .into_iter()
        .map(|c| match c.output {
            runtime::Output::Classification { classes } => (c.input, classes[0].label.clone()),
            other => panic!("{other:?}"),
        })
        .collect();
    expected.sort();
    let front: Vec<Value> = on(&messages, "devices/cam-01/predictions/front").iter().map(|m| m.json()).collect();
    assert_eq!(front.len(), frames, "one prediction per frame");
    for prediction in &front {
        assert_has_keys(
            prediction,
            &[
                "device",
                "source",
                "seq",
                "captured_at_ms",
                "published_at_ms",
                "model",
                "provider",
                "output",
                "latency_us",
                "total_us",
                "input",
            ],
            "prediction",
        );
        assert_eq!(prediction["device"], "cam-01");
        assert_eq!(prediction["source"], "front");
        assert_eq!(prediction["provider"], "cpu");
        assert_eq!(prediction["model"]["name"], "image-classifier");
        assert_eq!(prediction["model"]["version"], "1.0.0");
        assert_eq!(prediction["model"]["sha256"].as_str().map(str::len), Some(64));
        assert_has_keys(
            &prediction["latency_us"],
            &["decode_us", "preprocess_us", "inference_us", "postprocess_us"],
            "latency",
        );
        assert!(prediction["latency_us"]["inference_us"].as_u64() > Some(0));
        assert!(prediction["published_at_ms"].as_u64() >= prediction["captured_at_ms"].as_u64());
        let seq = prediction["seq"].as_u64().unwrap() as usize;
        let label = &prediction["output"]["classification"]["classes"][0]["label"];
        assert_eq!(label, expected[seq].1.as_str(), "frame {} ({})", seq, expected[seq].0);
        assert_eq!(
            Some(expected[seq].0.as_str()),
            prediction["input"].as_str().map(|name| format!("frames/{name}")).as_deref()
        );
    }
    let wrist = on(&messages, "devices/cam-01/predictions/wrist");
    assert_eq!(wrist.len(), windows, "sensor windows are never dropped");

    let health = on(&messages, "devices/cam-01/health").last().unwrap().json();
    assert_has_keys(
        &health,
        &[
            "device",
            "agent_version",
            "uptime_s",
            "cpu_percent",
            "rss_bytes",
            "peak_rss_bytes",
            "temperature_c",
            "mqtt_reconnects",
            "sources",
            "arch",
            "spool",
        ],
        "health",
    );
    assert_has_keys(&health["spool"], &["records", "bytes", "oldest_age_ms", "dropped_predictions"], "spool health");
    assert_eq!(health["spool"]["write_errors"], 0, "{health}");
    assert!(health["rss_bytes"].as_u64() > Some(1_000_000), "{health}");
    assert_eq!(health["arch"], std::env::consts::ARCH);
    let front = health_source(&health, "front").unwrap();
    assert_has_keys(
        &front,
        &[
            "model",
            "provider_requested",
            "provider_active",
            "frames_in",
            "frames_ok",
            "frames_per_s",
            "dropped",
            "errors",
            "queue_depth",
            "queue_capacity",
            "latency",
            "predictions_unpublished",
        ],
        "source health",
    );
    assert_eq!(front["provider_active"], "cpu");
    assert_eq!(front["provider_requested"], serde_json::json!(["cpu"]));
    assert_eq!(front["model"]["name"], "image-classifier");
    for stage in ["decode", "preprocess", "inference", "postprocess", "total"] {
        assert_has_keys(&front["latency"][stage], &["p50_us", "p95_us", "p99_us"], stage);
    }
    assert!(front["latency"]["inference"]["p50_us"].as_u64() > Some(0));

    // A late subscriber gets the retained status.
    let late = Subscriber::connect(broker.port(), "devices/cam-01/status");
    let retained = late.first_on("devices/cam-01/status", WAIT);
    assert!(retained.retain && retained.json()["state"] == "online");

    agent.kill();
    let offline = sub
        .collect_until(WAIT, |got| got.iter().any(|m| m.topic.ends_with("/status") && m.json()["state"] == "offline"));
    assert!(offline.iter().any(|m| m.json()["since_ms"].is_null()), "the last will carries no time");
    let after = Subscriber::connect(broker.port(), "devices/cam-01/status");
    let retained = after.first_on("devices/cam-01/status", WAIT);
    assert!(retained.retain && retained.json()["state"] == "offline", "the last will is retained");
}

#[test]
fn sigterm_drains_the_queue_and_publishes_offline() {
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port(), "devices/cam-01/#");
    let sources = format!(
        "[[sources]]\nname = \"shaft\"\nkind = \"csv\"\nmodel = \"{}\"\npath = \"{}\"\nloop = true\nqueue = 4\n",
        model("vibration-anomaly"),
        models_dir().join("recordings/vibration.csv").display(),
    );
    let agent = Agent::start(&config(broker.port(), &sources));
    let before = sub.collect_until(WAIT, |got| on(got, "devices/cam-01/predictions/shaft").len() >= 20);
    let (status, log) = agent.terminate(WAIT);
    assert!(status.success(), "clean exit: {status:?}\n{log}");
    assert!(log.contains("Agent stopped"), "{log}");
    let messages = sub
        .collect_until(WAIT, |got| got.iter().any(|m| m.topic.ends_with("/status") && m.json()["state"] == "offline"));
    let offline = messages.iter().find(|m| m.topic.ends_with("/status")).unwrap().json();
    assert!(offline["since_ms"].as_u64().is_some(), "a clean shutdown says when: {offline}");
    // Sequence numbers of what was published have no gaps: the queue was drained, not dropped. (Records made
    // before the first connection are replayed from the spool beside live ones, so the order is not kept.)
    let mut seqs: Vec<u64> = before
        .iter()
        .chain(&messages)
        .filter(|m| m.topic.ends_with("/predictions/shaft"))
        .map(|m| m.json()["seq"].as_u64().unwrap())
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.first(), Some(&0), "{seqs:?}");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
}

fn error_kinds(health: &Value, source: &str) -> Vec<(String, u64)> {
    health_source(health, source)
        .and_then(|s| s["errors"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap_or_default().to_owned(), e["count"].as_u64().unwrap_or(0)))
        .collect()
}

#[test]
fn bad_inputs_become_error_events_and_the_agent_keeps_serving() {
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port(), "devices/cam-01/#");
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    std::fs::write(frames.join("a_truncated.jpg"), truncated_jpeg()).unwrap();
    std::fs::write(frames.join("b_empty.jpg"), b"").unwrap();
    std::fs::write(frames.join("c_bomb.png"), png_header(40_000, 40_000)).unwrap();
    std::fs::copy(models_dir().join("frames/coffee.jpg"), frames.join("d_coffee.jpg")).unwrap();
    // A recording whose first window holds a NaN sample (second column).
    let recording = std::fs::read_to_string(models_dir().join("recordings/vibration.csv")).unwrap();
    let mut rows: Vec<String> = recording.lines().take(1 + 150).map(str::to_owned).collect();
    rows[10] = "0.1,NaN,0.2".to_owned(); // data row 10 is sample 9 (0-based) of the first window
    std::fs::write(dir.path().join("nan.csv"), rows.join("\n")).unwrap();
    let sources = format!(
        "[[sources]]\nname = \"front\"\nkind = \"images\"\nmodel = \"{}\"\npath = \"{}\"\nrate_fps = 10\n\
         [[sources]]\nname = \"wrist\"\nkind = \"csv\"\nmodel = \"{}\"\npath = \"{}\"\n\
         [[sources]]\nname = \"shaker\"\nkind = \"mqtt_sensor\"\nmodel = \"{}\"\n",
        model("image-classifier"),
        frames.display(),
        model("vibration-anomaly"),
        dir.path().join("nan.csv").display(),
        model("vibration-anomaly"),
    );
    let mut agent = Agent::start_in(dir, &config(broker.port(), &sources));
    sub.first_on("devices/cam-01/status", WAIT);
    let inbound = "devices/cam-01/sensor/shaker";
    let good: Vec<f32> = (0..150).map(|i| (i as f32 * 0.1).sin()).collect();
    sub.publish(inbound, serde_json::json!({"channels": 3, "values": &good[..147]}).to_string());
    sub.publish(inbound, "{not json");
    sub.publish(inbound, serde_json::json!({"channels": 3, "values": good}).to_string());

    let messages = sub.collect_until(WAIT, |got| {
        on(got, "devices/cam-01/health").last().is_some_and(|h| {
            let h = h.json();
            error_kinds(&h, "front").len() == 3
                && error_kinds(&h, "wrist").len() == 1
                && error_kinds(&h, "shaker").len() == 2
        }) && on(got, "devices/cam-01/predictions/shaker").len() == 1
            && on(got, "devices/cam-01/predictions/front").len() == 1
            && on(got, "devices/cam-01/predictions/wrist").len() == 2
    });
    assert!(agent.wait_timeout(Duration::from_millis(100)).is_none(), "the agent keeps running");

    let errors = |source: &str| -> Vec<Value> {
        on(&messages, &format!("devices/cam-01/errors/{source}")).iter().map(|m| m.json()).collect()
    };
    let front = errors("front");
    let find = |events: &[Value], kind: &str| -> Value {
        events.iter().find(|e| e["kind"] == kind).cloned().unwrap_or_else(|| panic!("no {kind} event in {events:?}"))
    };
    let truncated = find(&front, "decode");
    assert_eq!((truncated["input"].as_str(), truncated["stage"].as_str()), (Some("a_truncated.jpg"), Some("decode")));
    assert!(truncated["message"].as_str().unwrap().contains("truncated"), "{truncated}");
    assert_eq!(find(&front, "empty_input")["input"], "b_empty.jpg");
    let bomb = find(&front, "image_too_large");
    assert_eq!(bomb["input"], "c_bomb.png");
    assert!(bomb["message"].as_str().unwrap().contains("40000x40000"), "{bomb}");
    let served = on(&messages, "devices/cam-01/predictions/front")[0].json();
    assert_eq!(served["seq"], 3, "the good frame after three bad ones");
    assert_eq!(served["output"]["classification"]["classes"][0]["label"], "espresso");

    let nan = find(&errors("wrist"), "non_finite");
    assert_eq!(nan["stage"], "preprocess");
    assert_eq!(nan["input"], "nan.csv rows 1-50");
    assert!(nan["message"].as_str().unwrap().contains("sample 9, channel 1"), "{nan}");

    let shaker = errors("shaker");
    let short = find(&shaker, "sensor_shape");
    assert!(short["message"].as_str().unwrap().contains("49 samples"), "{short}");
    assert_eq!(find(&shaker, "malformed")["input"], inbound);

    let health = on(&messages, "devices/cam-01/health").last().unwrap().json();
    let mut front_kinds = error_kinds(&health, "front");
    front_kinds.sort();
    assert_eq!(front_kinds, vec![("decode".into(), 1), ("empty_input".into(), 1), ("image_too_large".into(), 1)]);
    assert_eq!(error_kinds(&health, "wrist"), vec![("non_finite".into(), 1)]);
    let (status, log) = agent.terminate(WAIT);
    assert!(status.success(), "{log}");
}

#[test]
fn a_bundle_that_mismatches_its_graph_is_refused_and_the_other_sources_serve() {
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port(), "devices/cam-01/#");
    let dir = tempfile::tempdir().unwrap();
    let bad = edited_bundle("activity-classifier", |m| m.replace("window = 100", "window = 128"));
    let sources = format!(
        "[[sources]]\nname = \"broken\"\nkind = \"csv\"\nmodel = \"{}\"\npath = \"{}\"\n\
         [[sources]]\nname = \"good\"\nkind = \"csv\"\nmodel = \"{}\"\npath = \"{}\"\n",
        bad.path().display(),
        models_dir().join("recordings/activity.csv").display(),
        model("vibration-anomaly"),
        models_dir().join("recordings/vibration.csv").display(),
    );
    let config_text = config(broker.port(), &sources);

    // `run --check` refuses it, naming both sides.
    std::fs::write(dir.path().join("check.toml"), &config_text).unwrap();
    let check = std::process::Command::new(agent_binary())
        .args(["run", "--check", "--config"])
        .arg(dir.path().join("check.toml"))
        .env("ORT_DYLIB_PATH", integration_tests::ort_library())
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(stderr.contains("[1, 6, 128]") && stderr.contains("[1, 6, 100]"), "{stderr}");

    let agent = Agent::start_in(dir, &config_text);
    let messages = sub.collect_until(WAIT, |got| {
        !on(got, "devices/cam-01/errors/broken").is_empty()
            && on(got, "devices/cam-01/predictions/good").len() >= 5
            && !on(got, "devices/cam-01/health").is_empty()
    });
    let health = on(&messages, "devices/cam-01/health")[0].json();
    assert_eq!(
        error_kinds(&health, "broken"),
        vec![("manifest_mismatch".to_owned(), 1)],
        "the refused source stays in health"
    );
    let refused = on(&messages, "devices/cam-01/errors/broken")[0].json();
    assert_eq!((refused["stage"].as_str(), refused["kind"].as_str()), (Some("load"), Some("manifest_mismatch")));
    assert!(refused["message"].as_str().unwrap().contains("manifest says [1, 6, 128]"), "{refused}");
    drop(agent);
}

#[test]
fn check_reads_the_tls_files_it_will_need() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    let text = format!(
        "device_id = \"cam-01\"\n[mqtt]\nhost = \"localhost\"\n[mqtt.tls]\nca_file = \"missing-ca.pem\"\n\
         [[sources]]\nname = \"good\"\nkind = \"csv\"\nmodel = \"{}\"\npath = \"{}\"\n",
        model("vibration-anomaly"),
        models_dir().join("recordings/vibration.csv").display()
    );
    std::fs::write(&path, text).unwrap();
    let output = std::process::Command::new(agent_binary())
        .args(["run", "--check", "--config"])
        .arg(&path)
        .env("ORT_DYLIB_PATH", integration_tests::ort_library())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("missing-ca.pem"), "{stderr}");
}

#[test]
fn an_invalid_config_is_refused_with_every_problem_and_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        "device_id = \"cam 01\"\n[mqtt]\nkeep_alive_secs = 1\n[[sources]]\nname = \"a\"\nkind = \"images\"\nmodel = \"m\"\n\
         path = \"p\"\nrate_fps = 0\n[[sources]]\nname = \"a\"\nkind = \"csv\"\nmodel = \"m\"\npath = \"p\"\n",
    )
    .unwrap();
    let output =
        std::process::Command::new(agent_binary()).args(["run", "--check", "--config"]).arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for key in ["device_id", "mqtt.keep_alive_secs", "sources[0].rate_fps", "sources[1].name"] {
        assert!(stderr.contains(key), "{key} not reported:\n{stderr}");
    }
}

/// `device-agent infer` on the activity model with `library` as the ONNX Runtime: must fail; returns stderr.
fn infer_with_library(library: &str) -> String {
    let output = std::process::Command::new(agent_binary())
        .args(["infer", "--onnxruntime", library, "-m"])
        .arg(models_dir().join("activity-classifier"))
        .arg(models_dir().join("recordings/activity.csv"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_missing_onnxruntime_library_says_which_path_was_tried_and_how_to_get_one() {
    let stderr = infer_with_library("/nonexistent/libonnxruntime.so.1");
    assert!(stderr.contains("/nonexistent/libonnxruntime.so.1"), "{stderr}");
    assert!(stderr.contains("fetch-onnxruntime.sh") && stderr.contains("PyPI"), "says how to get one: {stderr}");

    // A bare name the loader cannot find: dlopen's own reason is kept.
    let stderr = infer_with_library("libonnxruntime-missing.so.1");
    assert!(
        stderr.contains("libonnxruntime-missing.so.1") && stderr.contains("cannot open shared object file"),
        "{stderr}"
    );
}
