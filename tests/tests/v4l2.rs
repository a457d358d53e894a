//! A V4L2 camera that is not there (the normal case on a machine without /dev/video): the agent reports it on
//! the camera's errors topic, naming the device, retries with backoff, and serves its other sources meanwhile.
//! Negotiation and buffer handling are tested against recorded camera answers in the agent's unit tests.

use integration_tests::agent::Agent;
use integration_tests::broker::Broker;
use integration_tests::models_dir;
use integration_tests::subscriber::{Received, Subscriber};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn a_missing_camera_is_reported_and_retried_while_the_other_source_serves() {
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port(), "devices/cam-01/#");
    let dev = tempfile::tempdir().unwrap();
    let absent = dev.path().join("video0");
    let model = |name: &str| models_dir().join(name).display().to_string();
    let config = format!(
        r#"device_id = "cam-01"
[mqtt]
host = "127.0.0.1"
port = {port}
[health]
interval_secs = 1
[[sources]]
name = "usb"
kind = "v4l2"
model = "{detector}"
device = "{device}"
format = "mjpeg"
width = 1280
height = 720
fps = 30
[[sources]]
name = "files"
kind = "images"
model = "{classifier}"
files = ["{coffee}"]
loop = true
rate_fps = 5
"#,
        port = broker.port(),
        detector = model("face-detector"),
        device = absent.display(),
        classifier = model("image-classifier"),
        coffee = models_dir().join("frames/coffee.jpg").display(),
    );
    let agent = Agent::start(&config);
    let errors_topic = "devices/cam-01/errors/usb";
    let done = |got: &[Received]| {
        let errors = got.iter().filter(|m| m.topic == errors_topic).count();
        let predictions = got.iter().any(|m| m.topic == "devices/cam-01/predictions/files");
        let health = got.iter().any(|m| m.topic == "devices/cam-01/health");
        errors >= 2 && predictions && health
    };
    let got = sub.collect_until(WAIT, done);
    assert!(done(&got), "two error events, a prediction and health within {WAIT:?}; log:\n{}", agent.log());

    let errors: Vec<serde_json::Value> = got.iter().filter(|m| m.topic == errors_topic).map(Received::json).collect();
    for error in &errors[..2] {
        assert_eq!(error["kind"], "io", "{error}");
        assert_eq!(error["stage"], "source", "{error}");
        assert_eq!(error["input"], absent.display().to_string(), "{error}");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("cannot open {}: No such file or directory", absent.display())),
            "{message}"
        );
    }
    // The second attempt came after the first backoff (1 s), not at once.
    let at = |error: &serde_json::Value| error["at_ms"].as_u64().unwrap();
    assert!(at(&errors[1]) >= at(&errors[0]) + 900, "{errors:?}");

    let health = got.iter().rev().find(|m| m.topic == "devices/cam-01/health").unwrap().json();
    let names: Vec<&str> = health["sources"].as_array().unwrap().iter().filter_map(|s| s["name"].as_str()).collect();
    assert!(names.contains(&"usb") && names.contains(&"files"), "{health}");
    let prediction = got.iter().find(|m| m.topic == "devices/cam-01/predictions/files").unwrap().json();
    assert_eq!(prediction["output"]["classification"]["classes"][0]["label"], "espresso", "{prediction}");
    drop(agent);
}
