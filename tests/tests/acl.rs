//! The broker ACL template shipped in `docs/broker/acl.conf`, loaded into a real Mosquitto with a password file:
//! a device publishes under its own prefix and reads its own inbound topics, another device can neither feed,
//! command nor impersonate it nor read what it is sent, an operator can publish its update topics, and the agent
//! itself works behind it.

use integration_tests::agent::Agent;
use integration_tests::broker::Broker;
use integration_tests::{models_dir, repo_root};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);
const DEVICE_A: Login = Login { user: "cam-01", password: "password-a" };
const DEVICE_B: Login = Login { user: "cam-02", password: "password-b" };
const OPERATOR: Login = Login { user: "edgectl", password: "password-o" };

/// A broker with `allow_anonymous false`, a password file for the three logins, and the shipped ACL.
fn acl_broker(files: &Path) -> Broker {
    // mosquitto drops to user `mosquitto` when started as root: its files must be readable by others.
    std::fs::set_permissions(files, std::fs::Permissions::from_mode(0o755)).expect("chmod the directory");
    let passwords = files.join("passwords");
    for (index, login) in [DEVICE_A, DEVICE_B, OPERATOR].iter().enumerate() {
        let create: &[&str] = if index == 0 { &["-c"] } else { &[] };
        let status = Command::new("mosquitto_passwd")
            .args(create)
            .arg("-b")
            .arg(&passwords)
            .args([login.user, login.password])
            .status()
            .expect("mosquitto_passwd runs (package mosquitto)");
        assert!(status.success(), "mosquitto_passwd failed");
    }
    std::fs::set_permissions(&passwords, std::fs::Permissions::from_mode(0o644)).expect("chmod the passwords");
    let acl = repo_root().join("docs/broker/acl.conf");
    Broker::start_with(&[
        "allow_anonymous false",
        &format!("password_file {}", passwords.display()),
        &format!("acl_file {}", acl.display()),
    ])
}

#[derive(Clone, Copy)]
struct Login {
    user: &'static str,
    password: &'static str,
}

impl Login {
    /// Publishes at QoS 1 over MQTT 5, whose PUBACK says whether the ACL let it through.
    fn publish(&self, broker: &Broker, topic: &str, payload: &str) -> Result<(), String> {
        let output = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &broker.port().to_string(), "-V", "mqttv5", "-q", "1"])
            .args(["-u", self.user, "-P", self.password, "-t", topic, "-m", payload])
            .output()
            .expect("mosquitto_pub runs (package mosquitto-clients)");
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        match (output.status.success(), text.contains("Not authorized")) {
            (true, false) => Ok(()),
            _ => Err(text.trim().to_owned()),
        }
    }

    /// Subscribes to `filters`, returning once `ready_topic` (one of them) delivers a marker the operator publishes.
    fn subscribe(&self, broker: &Broker, filters: &[&str], ready_topic: &str) -> Inbox {
        let mut command = Command::new("mosquitto_sub");
        command.args(["-h", "127.0.0.1", "-p", &broker.port().to_string(), "-q", "1", "-F", "%t %p"]);
        command.args(["-u", self.user, "-P", self.password]);
        for filter in filters {
            command.args(["-t", filter]);
        }
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("mosquitto_sub runs");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let inbox = Inbox { child, lines };
        let marker = format!("{ready_topic} {MARKER}");
        let started = Instant::now();
        loop {
            OPERATOR.publish(broker, ready_topic, MARKER).expect("the operator may publish markers");
            if inbox.lines.recv_timeout(Duration::from_millis(300)).is_ok_and(|line| line == marker) {
                break;
            }
            assert!(started.elapsed() < WAIT, "{} never subscribed to {ready_topic}", self.user);
        }
        inbox
    }
}

const MARKER: &str = "ready";

/// What a `mosquitto_sub` received, as `<topic> <payload>` lines; markers are skipped.
struct Inbox {
    child: Child,
    lines: Receiver<String>,
}

impl Inbox {
    fn next(&self) -> String {
        loop {
            let line = self.lines.recv_timeout(WAIT).expect("a message within the wait");
            if !line.ends_with(&format!(" {MARKER}")) {
                return line;
            }
        }
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn devices_are_confined_to_their_own_topics() {
    let files = tempfile::tempdir().expect("temp dir");
    let broker = acl_broker(files.path());
    let inbound = ["devices/cam-01/update/command", "devices/cam-01/update/announce", "devices/cam-01/frames/+"];
    let device_a = DEVICE_A.subscribe(&broker, &inbound, "devices/cam-01/update/command");
    // B asks for A's inbound topics next to its own.
    let device_b = DEVICE_B.subscribe(
        &broker,
        &["devices/cam-02/update/command", "devices/cam-01/#", "devices/+/update/command"],
        "devices/cam-02/update/command",
    );
    let operator = OPERATOR.subscribe(&broker, &["devices/#"], "devices/cam-01/update/command");

    // A publishes under its own prefix only.
    DEVICE_A.publish(&broker, "devices/cam-01/predictions/front", "from-a").expect("A's own prediction");
    assert_eq!(operator.next(), "devices/cam-01/predictions/front from-a");
    let refused = DEVICE_A.publish(&broker, "devices/cam-02/predictions/front", "a-as-b");
    assert!(refused.is_err(), "A published as B");

    // B can neither command, feed nor impersonate A.
    for topic in [
        "devices/cam-01/update/command",
        "devices/cam-01/update/announce",
        "devices/cam-01/update/chunk/0123456789abcdef/0",
        "devices/cam-01/frames/door",
        "devices/cam-01/status",
        "devices/cam-01/predictions/front",
        "groups/lobby/members/cam-01",
    ] {
        let refused = DEVICE_B.publish(&broker, topic, "forged");
        assert!(refused.as_ref().is_err_and(|text| text.contains("Not authorized")), "B on {topic}: {refused:?}");
    }

    // The operator commands and updates A; A gets that, and nothing of B's.
    OPERATOR.publish(&broker, "devices/cam-01/update/command", "rollback").expect("the operator commands A");
    OPERATOR.publish(&broker, "devices/cam-01/update/announce", "announcement").expect("the operator announces");
    OPERATOR.publish(&broker, "devices/cam-01/update/chunk/0123456789abcdef/0", "chunk").expect("and sends chunks");
    assert_eq!(device_a.next(), "devices/cam-01/update/command rollback");
    assert_eq!(device_a.next(), "devices/cam-01/update/announce announcement");
    // The watching operator saw the same, in order, and no forgery in between.
    for expected in [
        "devices/cam-01/update/command rollback",
        "devices/cam-01/update/announce announcement",
        "devices/cam-01/update/chunk/0123456789abcdef/0 chunk",
    ] {
        assert_eq!(operator.next(), expected);
    }

    // B subscribed to A's topics but read none of them: its next message is its own, published last.
    OPERATOR.publish(&broker, "devices/cam-02/update/command", "for-b").expect("the operator commands B");
    assert_eq!(device_b.next(), "devices/cam-02/update/command for-b");
    // Nor can a device write the operator's parts of the protocol for itself through a group.
    assert!(DEVICE_A.publish(&broker, "groups/lobby/update/announce", "x").is_err());
}

#[test]
fn the_agent_runs_behind_the_acl() {
    let files = tempfile::tempdir().expect("temp dir");
    let broker = acl_broker(files.path());
    let operator = OPERATOR.subscribe(&broker, &["devices/cam-01/#"], "devices/cam-01/update/command");
    let config = format!(
        "device_id = \"cam-01\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = {}\nkeep_alive_secs = 5\n\
         username = \"{}\"\npassword = \"{}\"\n[health]\ninterval_secs = 1\n\
         [[sources]]\nname = \"front\"\nkind = \"images\"\nmodel = \"{}\"\npath = \"{}\"\nrate_fps = 5\n",
        broker.port(),
        DEVICE_A.user,
        DEVICE_A.password,
        models_dir().join("image-classifier").display(),
        models_dir().join("frames").display(),
    );
    let agent = Agent::start(&config);
    let (mut online, mut predictions, mut health) = (false, 0, false);
    let deadline = Instant::now() + WAIT;
    while !(online && predictions >= 3 && health) {
        assert!(Instant::now() < deadline, "online {online}, {predictions} predictions, health {health}");
        let line = operator.next();
        online |= line.starts_with("devices/cam-01/status ") && line.contains("\"online\"");
        predictions += usize::from(line.starts_with("devices/cam-01/predictions/front "));
        health |= line.starts_with("devices/cam-01/health ");
    }
    let (status, log) = agent.terminate(Duration::from_secs(10));
    assert!(status.success(), "{log}");
    assert!(!log.contains("MQTT connection failed"), "{log}");
}
