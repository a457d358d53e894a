//! The other ways inputs arrive, and the other ways out: frames published to MQTT (as an ESP32-CAM sends
//! them), a watched directory, samples on stdin, postcard payloads, and a broker that wants a password.

use integration_tests::agent::Agent;
use integration_tests::broker::{Broker, shared_dir, write_readable};
use integration_tests::models_dir;
use integration_tests::subscriber::{Received, Subscriber};
use std::io::Write;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn base(port: u16, extra_mqtt: &str, sources: &str) -> String {
    format!(
        "device_id = \"cam-01\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = {port}\n{extra_mqtt}\n[health]\ninterval_secs = 1\n{sources}"
    )
}

fn model(name: &str) -> String {
    models_dir().join(name).display().to_string()
}

fn count(got: &[Received], topic: &str) -> usize {
    got.iter().filter(|m| m.topic == topic).count()
}

#[test]
fn frames_published_to_mqtt_are_classified() {
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port(), "devices/cam-01/#");
    let sources =
        format!("[[sources]]\nname = \"door\"\nkind = \"mqtt_frames\"\nmodel = \"{}\"\n", model("face-detector"));
    let agent = Agent::start(&base(broker.port(), "", &sources));
    sub.first_on("devices/cam-01/status", WAIT);
    sub.publish("devices/cam-01/frames/door", std::fs::read(models_dir().join("frames/people.jpg")).unwrap());
    let prediction = sub.first_on("devices/cam-01/predictions/door", WAIT).json();
    let faces = prediction["output"]["detection"]["detections"].as_array().unwrap();
    assert_eq!(faces.len(), 2, "people.jpg holds two faces: {prediction}");
    assert!(faces.iter().all(|f| f["landmarks"].as_array().map(Vec::len) == Some(5)));
    drop(agent);
}

#[test]
fn a_watched_directory_sends_new_files_once() {
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port(), "devices/cam-01/#");
    let inbox = tempfile::tempdir().unwrap();
    std::fs::copy(models_dir().join("frames/cat.jpg"), inbox.path().join("old.jpg")).unwrap();
    let sources = format!(
        "[[sources]]\nname = \"drop\"\nkind = \"images\"\nmodel = \"{}\"\npath = \"{}\"\nwatch = true\nrate_fps = 20\n",
        model("image-classifier"),
        inbox.path().display()
    );
    let agent = Agent::start(&base(broker.port(), "", &sources));
    sub.first_on("devices/cam-01/status", WAIT);
    // Written under a temporary name and renamed, as a camera uploader should.
    std::fs::copy(models_dir().join("frames/coffee.jpg"), inbox.path().join("new.jpg.part")).unwrap();
    std::fs::rename(inbox.path().join("new.jpg.part"), inbox.path().join("new.jpg")).unwrap();
    let prediction = sub.first_on("devices/cam-01/predictions/drop", WAIT).json();
    assert_eq!(
        prediction["output"]["classification"]["classes"][0]["label"], "espresso",
        "the new file, not the old one"
    );
    let more = sub.collect_for(Duration::from_millis(1500));
    assert_eq!(count(&more, "devices/cam-01/predictions/drop"), 0, "each file is sent once");
    drop(agent);
}

#[test]
fn samples_on_stdin_become_windows_and_bad_lines_are_reported() {
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port(), "devices/cam-01/#");
    let sources =
        format!("[[sources]]\nname = \"pipe\"\nkind = \"stdin\"\nmodel = \"{}\"\n", model("vibration-anomaly"));
    let (agent, mut stdin) = Agent::start_with_stdin(&base(broker.port(), "", &sources));
    sub.first_on("devices/cam-01/status", WAIT);
    let recording = std::fs::read_to_string(models_dir().join("recordings/vibration.csv")).unwrap();
    let mut lines: Vec<&str> = recording.lines().skip(1).take(100).collect();
    lines.insert(20, "1.0 2.0");
    for line in lines {
        writeln!(stdin, "{}", line.replace(',', " ")).unwrap();
    }
    drop(stdin);
    let got = sub.collect_until(WAIT, |got| {
        count(got, "devices/cam-01/predictions/pipe") == 2 && count(got, "devices/cam-01/errors/pipe") == 1
    });
    let error = got.iter().find(|m| m.topic.ends_with("/errors/pipe")).unwrap().json();
    assert_eq!((error["stage"].as_str(), error["kind"].as_str()), (Some("source"), Some("parse")));
    assert_eq!(error["input"], "stdin line 21");
    drop(agent);
}

#[test]
fn postcard_payloads_carry_a_versioned_envelope() {
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port(), "devices/cam-01/#");
    let sources = format!(
        "[[sources]]\nname = \"wrist\"\nkind = \"csv\"\nmodel = \"{}\"\npath = \"{}\"\n",
        model("activity-classifier"),
        models_dir().join("recordings/activity.csv").display()
    );
    let agent = Agent::start(&base(broker.port(), "format = \"postcard\"", &sources));
    let got = sub.collect_until(WAIT, |got| {
        count(got, "devices/cam-01/predictions/wrist") > 0 && count(got, "devices/cam-01/status") > 0
    });
    let prediction = got.iter().find(|m| m.topic == "devices/cam-01/predictions/wrist").unwrap();
    // Envelope: version 2, kind 1 (prediction), then the body: device "cam-01" as a length-prefixed string.
    assert_eq!(&prediction.payload[..3], &[2, 1, 6]);
    assert_eq!(&prediction.payload[3..9], b"cam-01");
    assert!(prediction.payload.windows(19).any(|w| w == b"activity-classifier"));
    let status = got.iter().find(|m| m.topic == "devices/cam-01/status").unwrap();
    assert_eq!(&status.payload[..3], &[2, 0, 0], "version 2, kind status, state online");
    drop(agent);
}

#[test]
fn a_broker_that_wants_a_password_gets_one() {
    let dir = shared_dir();
    let passwords = dir.path().join("passwords");
    write_readable(&passwords, b"");
    let status = std::process::Command::new("mosquitto_passwd")
        .args(["-b"])
        .arg(&passwords)
        .args(["agent", "s3cret"])
        .status()
        .unwrap();
    assert!(status.success());
    let _ = std::fs::set_permissions(&passwords, std::os::unix::fs::PermissionsExt::from_mode(0o644));
    let acl = dir.path().join("acl");
    write_readable(&acl, b"user agent\ntopic readwrite devices/cam-01/#\n");
    let broker = Broker::start_with(&[
        "allow_anonymous false",
        &format!("password_file {}", passwords.display()),
        &format!("acl_file {}", acl.display()),
    ]);
    let secret = dir.path().join("secret");
    write_readable(&secret, b"s3cret\n");
    let sources = format!(
        "[[sources]]\nname = \"shaft\"\nkind = \"csv\"\nmodel = \"{}\"\npath = \"{}\"\n",
        model("vibration-anomaly"),
        models_dir().join("recordings/vibration.csv").display()
    );
    let mqtt = format!("username = \"agent\"\npassword_file = \"{}\"", secret.display());
    // The tests' own subscriber is anonymous, so watch through the broker's log and a second agent-identity
    // check: the agent's retained status must be stored under its own name.
    let agent = Agent::start(&base(broker.port(), &mqtt, &sources));
    let deadline = std::time::Instant::now() + WAIT;
    while !broker.log().contains("as cam-01 (") || !broker.log().contains("u'agent'") {
        assert!(std::time::Instant::now() < deadline, "the agent did not log in: {}\n{}", broker.log(), agent.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(agent);

    let wrong = dir.path().join("wrong");
    write_readable(&wrong, b"nope\n");
    let mqtt = format!("username = \"agent\"\npassword_file = \"{}\"", wrong.display());
    let agent = Agent::start(&base(broker.port(), &mqtt, &sources));
    let deadline = std::time::Instant::now() + WAIT;
    while !agent.log().contains("NotAuthorized") {
        assert!(std::time::Instant::now() < deadline, "a refused login is logged: {}", agent.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(agent);
}
