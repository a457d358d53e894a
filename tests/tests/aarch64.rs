//! The cross-built ARM agents, run here under qemu-user (`cross/qemu-run.sh`).
//!
//! These tests need artifacts that `cargo test --workspace` does not build, so they are compiled only with the
//! `arm-artifacts` feature. `scripts/test-arm.sh` builds the artifacts and runs them:
//!
//! ```sh
//! EDGE_AARCH64_AGENT=target/aarch64-unknown-linux-gnu/release/device-agent \
//! EDGE_ARMV7_AGENT=target/armv7-unknown-linux-gnueabihf/release/device-agent \
//!   cargo test -p integration-tests --features arm-artifacts --test aarch64
//! ```
//! Run that way, a missing variable or artifact fails the test with what to build; nothing is skipped.
//!
//! The reference is the x86_64 agent of this workspace (`target/<profile>/device-agent`, with the x86_64 ONNX
//! Runtime), run with `infer` on the same inputs.

use integration_tests::agent::agent_binary;
use integration_tests::broker::Broker;
use integration_tests::subscriber::{Received, Subscriber};
use integration_tests::{models_dir, ort_library, repo_root};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The artifact a variable names; panics with what to do when it is unset or missing.
fn artifact(var: &str, build: &str) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        panic!("{var} is not set: it names the cross-built agent this test runs. Run scripts/test-arm.sh, or `{build}` and set {var}")
    });
    let path = if path.is_absolute() { path } else { repo_root().join(path) };
    assert!(path.is_file(), "{var}={} does not exist: run `{build}` first (scripts/test-arm.sh does)", path.display());
    path
}

fn aarch64_agent() -> PathBuf {
    let agent = artifact("EDGE_AARCH64_AGENT", "cross/build.sh aarch64");
    let ort = std::env::var_os("EDGE_ORT_AARCH64")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("third_party/onnxruntime/aarch64/libonnxruntime.so.1.31.1"));
    assert!(
        ort.is_file(),
        "{} is missing: run scripts/fetch-onnxruntime.sh aarch64 (cross/setup.sh does)",
        ort.display()
    );
    agent
}

/// `cross/qemu-run.sh BINARY ARGS...`: qemu-user with the sysroot overlay and the ARM ONNX Runtime.
fn emulated(binary: &Path) -> Command {
    let mut command = Command::new(repo_root().join("cross/qemu-run.sh"));
    command.arg(binary);
    command
}

/// `device-agent infer` of the x86_64 agent: one JSON payload per input (window).
fn x86_infer(model: &str, inputs: &[PathBuf]) -> Vec<Value> {
    let output = Command::new(agent_binary())
        .args(["infer", "--device-id", "x86", "-m"])
        .arg(models_dir().join(model))
        .args(inputs)
        .env("ORT_DYLIB_PATH", ort_library())
        .env("RUST_LOG", "warn")
        .output()
        .expect("the x86_64 agent runs");
    assert!(output.status.success(), "x86_64 infer {model}: {}", String::from_utf8_lossy(&output.stderr));
    json_lines(&output)
}

fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

/// Numbers within `1e-4` (relative above 1: box corners are in pixels), everything else equal.
fn assert_close(got: &Value, want: &Value, at: &str) {
    match (got, want) {
        (Value::Number(g), Value::Number(w)) => {
            let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
            assert!((g - w).abs() <= 1e-4 * w.abs().max(1.0), "{at}: aarch64 {g} vs x86_64 {w}");
        }
        (Value::Array(g), Value::Array(w)) => {
            assert_eq!(g.len(), w.len(), "{at}: lengths differ: aarch64 {got} vs x86_64 {want}");
            for (i, (g, w)) in g.iter().zip(w).enumerate() {
                assert_close(g, w, &format!("{at}[{i}]"));
            }
        }
        (Value::Object(g), Value::Object(w)) => {
            assert_eq!(g.keys().collect::<Vec<_>>(), w.keys().collect::<Vec<_>>(), "{at}: fields differ");
            for (key, w) in w {
                assert_close(&g[key], w, &format!("{at}.{key}"));
            }
        }
        _ => assert_eq!(got, want, "{at}"),
    }
}

/// The emulated agent as a child process, killed when dropped.
struct Emulated {
    child: Child,
    dir: tempfile::TempDir,
}

impl Emulated {
    fn start(binary: &Path, config: &str) -> Emulated {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("agent.toml");
        std::fs::write(&config_path, config).expect("write config");
        let log = std::fs::File::create(dir.path().join("agent.log")).expect("log file");
        let child = emulated(binary)
            .args(["run", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cross/qemu-run.sh starts");
        Emulated { child, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// SIGTERM, then the exit status (bounded wait).
    fn terminate(mut self, timeout: Duration) -> std::process::ExitStatus {
        // qemu, which cross/qemu-run.sh execs, so the signal reaches the agent.
        integration_tests::sigterm(&self.child);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the emulated agent did not stop within {timeout:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Emulated {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn publish_file(port: u16, topic: &str, file: &Path) {
    let status = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-t", topic, "-f"])
        .arg(file)
        .status()
        .expect("mosquitto_pub runs (scripts/setup.sh installs mosquitto-clients)");
    assert!(status.success(), "mosquitto_pub {topic}");
}

fn count_on(messages: &[Received], topic: &str) -> usize {
    messages.iter().filter(|m| m.topic == topic).count()
}

/// The aarch64 agent, emulated, against a real Mosquitto on loopback: predictions for the shared reference
/// frames (image classifier over MQTT, face detector from a file) and both sensor recordings match the x86_64
/// agent's within 1e-4, and its health names aarch64.
#[test]
fn aarch64_agent_under_qemu_matches_x86_64_over_mqtt() {
    let agent = aarch64_agent();
    let models = models_dir();
    // The frames themselves: models/frames/raw holds the raw-frame test data, not images.
    let mut frames: Vec<PathBuf> = std::fs::read_dir(models.join("frames"))
        .expect("models/frames")
        .map(|e| e.expect("entry").path())
        .filter(|path| path.is_file())
        .collect();
    frames.sort();
    assert!(frames.len() >= 5, "the shared reference frames are in models/frames");
    // CenterFace at 640x480 takes ~15 s a frame under qemu; one frame with faces keeps CI short.
    let face_frame = models.join("frames/people.jpg");
    let activity = models.join("recordings/activity.csv");
    let vibration = models.join("recordings/vibration.csv");

    let want_frames = x86_infer("image-classifier", &frames);
    let want_faces = x86_infer("face-detector", std::slice::from_ref(&face_frame));
    let want_activity = x86_infer("activity-classifier", std::slice::from_ref(&activity));
    let want_vibration = x86_infer("vibration-anomaly", std::slice::from_ref(&vibration));
    assert!(!want_faces[0]["output"]["detection"]["detections"].as_array().unwrap().is_empty(), "people.jpg has faces");

    let broker = Broker::start();
    let subscriber = Subscriber::connect(broker.port(), "devices/arm-01/#");
    let config = format!(
        r#"
device_id = "arm-01"
[mqtt]
host = "127.0.0.1"
port = {port}
[health]
interval_secs = 1
[[sources]]
name = "frames"
model = "{models}/image-classifier"
kind = "mqtt_frames"
[[sources]]
name = "faces"
model = "{models}/face-detector"
kind = "images"
files = ["{face}"]
rate_fps = 1.0
[[sources]]
name = "activity"
model = "{models}/activity-classifier"
kind = "csv"
path = "{activity}"
[[sources]]
name = "vibration"
model = "{models}/vibration-anomaly"
kind = "csv"
path = "{vibration}"
"#,
        port = broker.port(),
        models = models.display(),
        face = face_frame.display(),
        activity = activity.display(),
        vibration = vibration.display(),
    );
    let started = Instant::now();
    let emulated = Emulated::start(&agent, &config);
    let patience = Duration::from_secs(300);

    // `online` comes after the inbound subscriptions, so frames published from here on are received.
    let is_online = |m: &Received| m.topic == "devices/arm-01/status" && m.json()["state"] == "online";
    let mut collected = subscriber.collect_until(Duration::from_secs(120), |got| got.iter().any(is_online));

    // The latest-frame slot keeps only the newest frame: publish each once the previous one is answered.
    let frames_topic = "devices/arm-01/predictions/frames";
    for (i, frame) in frames.iter().enumerate() {
        publish_file(broker.port(), "devices/arm-01/frames/frames", frame);
        let more = subscriber
            .collect_until(patience, |got| count_on(&collected, frames_topic) + count_on(got, frames_topic) > i);
        collected.extend(more);
    }
    let expected = [
        ("devices/arm-01/predictions/faces", want_faces.len()),
        ("devices/arm-01/predictions/activity", want_activity.len()),
        ("devices/arm-01/predictions/vibration", want_vibration.len()),
    ];
    let more = subscriber.collect_until(patience, |got| {
        expected.iter().all(|(topic, n)| count_on(&collected, topic) + count_on(got, topic) >= *n)
            && got.iter().chain(&collected).any(|m| m.topic == "devices/arm-01/health")
    });
    collected.extend(more);
    let elapsed = started.elapsed();

    let errors: Vec<_> =
        collected.iter().filter(|m| m.topic.starts_with("devices/arm-01/errors/")).map(|m| m.json()).collect();
    assert!(errors.is_empty(), "the emulated agent reported errors: {errors:?}");
    for (source, want) in
        [("frames", &want_frames), ("faces", &want_faces), ("activity", &want_activity), ("vibration", &want_vibration)]
    {
        let topic = format!("devices/arm-01/predictions/{source}");
        let got: Vec<Value> = collected.iter().filter(|m| m.topic == topic).map(Received::json).collect();
        assert_eq!(got.len(), want.len(), "{source}: one prediction per input");
        for prediction in &got {
            let seq = prediction["seq"].as_u64().expect("seq") as usize;
            let reference = &want[seq];
            assert_eq!(prediction["model"], reference["model"], "{source}[{seq}]: model identity");
            assert_eq!(prediction["provider"], "cpu");
            assert_close(&prediction["output"], &reference["output"], &format!("{source}[{seq}].output"));
        }
    }

    let health = collected.iter().rev().find(|m| m.topic == "devices/arm-01/health").expect("health").json();
    assert_eq!(health["arch"], "aarch64", "health names the architecture: {health}");
    eprintln!(
        "aarch64 under qemu: {} predictions in {:.1} s; health rss {} MB, peak {} MB (qemu's, emulator included)",
        collected.iter().filter(|m| m.topic.contains("/predictions/")).count(),
        elapsed.as_secs_f64(),
        health["rss_bytes"].as_u64().unwrap_or(0) / 1_000_000,
        health["peak_rss_bytes"].as_u64().unwrap_or(0) / 1_000_000,
    );

    let status = emulated.terminate(Duration::from_secs(60));
    assert!(status.success(), "SIGTERM stops the emulated agent cleanly: {status:?}");
    let offline = subscriber.collect_until(Duration::from_secs(10), |got| {
        got.iter().any(|m| m.topic == "devices/arm-01/status" && m.json()["state"] == "offline")
    });
    assert!(!offline.is_empty());
    subscriber.close();
}

/// `device-agent infer` of the aarch64 agent agrees with x86_64's on the sensor recordings (every window).
#[test]
fn aarch64_infer_matches_x86_64_on_the_recordings() {
    let agent = aarch64_agent();
    for (model, recording) in [("activity-classifier", "activity.csv"), ("vibration-anomaly", "vibration.csv")] {
        let inputs = [models_dir().join("recordings").join(recording)];
        let want = x86_infer(model, &inputs);
        let output = emulated(&agent)
            .args(["infer", "--device-id", "x86", "-m"])
            .arg(models_dir().join(model))
            .args(&inputs)
            .env("RUST_LOG", "warn")
            .output()
            .expect("qemu runs");
        assert!(output.status.success(), "aarch64 infer {model}: {}", String::from_utf8_lossy(&output.stderr));
        let got = json_lines(&output);
        assert_eq!(got.len(), want.len(), "{model}: windows");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_close(&g["output"], &w["output"], &format!("{model} window {i}"));
        }
    }
}

/// No registry ships ONNX Runtime for armv7: without one the armv7 agent must say what is missing and where
/// to get it, and exit non-zero (not crash).
#[test]
fn armv7_agent_without_onnxruntime_says_what_is_missing() {
    let agent = artifact("EDGE_ARMV7_AGENT", "cross/build.sh armv7");
    let output = emulated(&agent)
        .args(["infer", "-m"])
        .arg(models_dir().join("activity-classifier"))
        .arg(models_dir().join("recordings/activity.csv"))
        // Set and empty: cross/qemu-run.sh then gives the agent no library at all, even one under third_party/.
        .env("EDGE_ORT_ARMV7", "")
        .env_remove("ORT_DYLIB_PATH")
        .env("RUST_LOG", "info")
        .output()
        .expect("qemu-arm runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("armv7 agent without ONNX Runtime:\n{stderr}");
    assert_eq!(output.status.code(), Some(1), "a clean failure, not a crash: {stderr}");
    assert!(stderr.contains("cannot load ONNX Runtime from libonnxruntime.so.1"), "{stderr}");
    assert!(
        stderr.contains("onnxruntime.library") && stderr.contains("ORT_DYLIB_PATH"),
        "says how to point at one: {stderr}"
    );
}
