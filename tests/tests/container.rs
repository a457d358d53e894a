//! The agent's OCI image (cross/image.sh, built from scratch around this build's agent) run by podman against a
//! real Mosquitto: config, bundle and recording mounted read-only, the state directory a named volume; predictions
//! arrive and decode, and `podman stop` (SIGTERM) ends with the retained `offline` of a clean shutdown and exit 0.

use integration_tests::broker::{Broker, shared_dir, write_readable};
use integration_tests::container::Image;
use integration_tests::subscriber::{Received, Subscriber};
use integration_tests::{models_dir, references};
use serde_json::Value;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);
const DEVICE: &str = "ctr-01";

fn config(port: u16) -> String {
    format!(
        "device_id = \"{DEVICE}\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = {port}\nkeep_alive_secs = 5\n\
         [health]\ninterval_secs = 1\n[spool]\ndir = \"/var/lib/edge-agent/spool\"\n\
         [update]\ntrusted_keys = [\"8fee9cd46a57751ef3b0bad45a1643678736734cc8385af5ca62cf6a5e82dcb6\"]\n\
         state_dir = \"/var/lib/edge-agent/update\"\n\
         [[sources]]\nname = \"wrist\"\nkind = \"csv\"\nmodel = \"/models/activity-classifier\"\n\
         path = \"/recordings/activity.csv\"\n"
    )
}

fn is_offline(message: &Received) -> bool {
    message.topic.ends_with("/status") && message.json()["state"] == "offline"
}

#[test]
fn the_image_runs_the_agent_under_podman_and_sigterm_leaves_a_clean_offline() {
    let mut image = Image::build();
    let inspected: Value = serde_json::from_str(&image.podman_ok(&["image", "inspect", image.tag()])).unwrap();
    let image_config = &inspected[0]["Config"];
    assert_eq!(image_config["User"], "10001:10001", "{image_config}");
    assert_eq!(image_config["StopSignal"], "SIGTERM", "{image_config}");
    assert!(image_config["Volumes"].get("/var/lib/edge-agent").is_some(), "{image_config}");
    assert_eq!(image_config["Entrypoint"], serde_json::json!(["/usr/bin/device-agent"]));
    assert_eq!(image_config["Cmd"], serde_json::json!(["run", "--config", "/etc/edge-agent/agent.toml"]));

    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port(), &format!("devices/{DEVICE}/#"));
    let config_dir = shared_dir();
    write_readable(&config_dir.path().join("agent.toml"), config(broker.port()).as_bytes());
    let (container, volume) = (image.name("agent"), image.name("state"));
    let mounts = [
        format!("{}:/etc/edge-agent:ro", config_dir.path().display()),
        format!("{}:/models/activity-classifier:ro", models_dir().join("activity-classifier").display()),
        format!("{}:/recordings/activity.csv:ro", models_dir().join("recordings/activity.csv").display()),
        format!("{volume}:/var/lib/edge-agent"),
    ];
    let mut run = vec!["run", "--detach", "--pull", "never", "--name", &container, "--network", "host", "--read-only"];
    for mount in &mounts {
        run.extend(["--volume", mount]);
    }
    run.push(image.tag());
    image.podman_ok(&run);
    let logs = || image.podman_ok(&["logs", &container]);

    // Every window of the recording, decoded, with the label Python onnxruntime gave it.
    let expected = references::load("activity-classifier").cases;
    let predictions_topic = format!("devices/{DEVICE}/predictions/wrist");
    let messages =
        sub.collect_until(WAIT, |got| got.iter().filter(|m| m.topic == predictions_topic).count() == expected.len());
    let status = messages.iter().find(|m| m.topic.ends_with("/status")).map(Received::json);
    assert_eq!(status.as_ref().map(|s| s["state"].clone()), Some(Value::from("online")), "{}", logs());
    for prediction in messages.iter().filter(|m| m.topic == predictions_topic).map(Received::json) {
        assert_eq!(prediction["device"], DEVICE);
        assert_eq!(prediction["model"]["name"], "activity-classifier");
        let seq = prediction["seq"].as_u64().expect("seq") as usize;
        let label = match &expected[seq].output {
            runtime::Output::Classification { classes } => classes[0].label.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(prediction["output"]["classification"]["classes"][0]["label"], label.as_str(), "window {seq}");
    }

    // `podman stop` sends the image's STOPSIGNAL (SIGTERM): a clean shutdown says when, unlike the last will.
    image.podman_ok(&["stop", "--time", "30", &container]);
    let after = sub.collect_until(WAIT, |got| got.iter().any(is_offline));
    let offline = after.iter().find(|m| is_offline(m)).unwrap().json();
    assert!(offline["since_ms"].as_u64().is_some(), "a clean shutdown says when: {offline}\n{}", logs());
    let exit = image.podman_ok(&["inspect", "--format", "{{.State.ExitCode}}", &container]);
    assert_eq!(exit, "0", "the agent exits 0 on SIGTERM:\n{}", logs());
    let retained = Subscriber::connect(broker.port(), &format!("devices/{DEVICE}/status"))
        .first_on(&format!("devices/{DEVICE}/status"), WAIT);
    assert!(retained.retain && retained.json()["since_ms"].as_u64().is_some(), "{retained:?}");

    // The agent (uid 10001) wrote its state into the volume, where it outlives the container.
    let volume_path = image.podman_ok(&["volume", "inspect", "--format", "{{.Mountpoint}}", &volume]);
    for dir in ["spool", "update"] {
        let path = std::path::Path::new(&volume_path).join(dir);
        assert!(path.is_dir(), "{} is missing from the state volume:\n{}", path.display(), logs());
    }
}
