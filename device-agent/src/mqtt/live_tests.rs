//! The link against a real broker: each test starts its own mosquitto on ephemeral loopback ports and
//! watches it with `mosquitto_sub`. They fail, never skip, when `mosquitto`, `mosquitto_sub`,
//! `mosquitto_pub` or `openssl` is missing (Debian: `mosquitto mosquitto-clients openssl`).
//!
//! They live here rather than in `tests/` because the agent is a binary crate.

use super::*;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(10);

/// A CA, a server certificate for `localhost` (DNS name only, so dialling 127.0.0.1 needs
/// `server_name`), and a client certificate, all made with the `openssl` CLI.
pub(crate) struct Pki {
    // Holds the files for as long as the paths are used.
    _dir: TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Pki {
    pub(crate) fn generate() -> Pki {
        let dir = readable_temp_dir();
        let path = |name: &str| dir.path().join(name);
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        openssl(
            &[
                &["req", "-x509"],
                &ec[..],
                &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=edge-test-ca"],
            ],
            dir.path(),
        );
        for (name, cn, ext) in [
            ("server", "localhost", "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n"),
            ("client", "edge-test-client", "extendedKeyUsage=clientAuth\n"),
        ] {
            let (key, csr, cert, ext_file) =
                (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("{name}.ext"));
            std::fs::write(path(&ext_file), ext).expect("write extensions");
            openssl(&[&["req"], &ec[..], &["-keyout", &key, "-out", &csr, "-subj", &format!("/CN={cn}")]], dir.path());
            openssl(
                &[
                    &["x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"],
                    &["-out", &cert, "-days", "2", "-extfile", &ext_file],
                ],
                dir.path(),
            );
        }
        make_world_readable(dir.path());
        Pki {
            ca: path("ca.pem"),
            server_cert: path("server.pem"),
            server_key: path("server.key"),
            client_cert: path("client.pem"),
            client_key: path("client.key"),
            _dir: dir,
        }
    }
}

fn openssl(args: &[&[&str]], dir: &Path) {
    let args: Vec<&str> = args.concat();
    let output = Command::new("openssl")
        .args(&args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running openssl (install it): {e}"));
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// mosquitto drops to user `mosquitto` when started as root, so its files must be readable by others.
fn readable_temp_dir() -> TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
    dir
}

fn make_world_readable(dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("read temp dir") {
        let path = entry.expect("dir entry").path();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// A TLS listener beside the plain one (which the test's own clients use).
pub(crate) struct TlsListener<'a> {
    pub pki: &'a Pki,
    pub require_certificate: bool,
}

/// A mosquitto process, killed on drop.
pub(crate) struct Broker {
    child: Child,
    port: u16,
    tls_port: u16,
    config: PathBuf,
    _dir: TempDir,
}

impl Broker {
    pub(crate) fn start(tls: Option<TlsListener<'_>>) -> Broker {
        let dir = readable_temp_dir();
        let (port, tls_port) = (free_port(), free_port());
        let mut text = format!("allow_anonymous true\npersistence false\nlistener {port} 127.0.0.1\n");
        if let Some(TlsListener { pki, require_certificate }) = tls {
            text += &format!(
                "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {require_certificate}\n",
                pki.ca.display(),
                pki.server_cert.display(),
                pki.server_key.display()
            );
        }
        let config = dir.path().join("mosquitto.conf");
        std::fs::write(&config, text).expect("write mosquitto.conf");
        make_world_readable(dir.path());
        let child = spawn_mosquitto(&config, port);
        Broker { child, port, tls_port, config, _dir: dir }
    }

    /// Kills the broker and starts it again on the same ports (retained messages are gone: no persistence).
    fn restart(&mut self) {
        stop(&mut self.child);
        self.child = spawn_mosquitto(&self.config, self.port);
    }

    /// The retained payload of `topic`, if any.
    fn retained(&self, topic: &str) -> Option<Vec<u8>> {
        let output = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-t", topic])
            .args(["--retained-only", "-C", "1", "-W", "3"])
            .output()
            .unwrap_or_else(|e| panic!("running mosquitto_sub (install mosquitto-clients): {e}"));
        let mut payload = output.stdout;
        // mosquitto_sub ends each message with a newline.
        payload.pop_if(|last| *last == b'\n');
        (!payload.is_empty()).then_some(payload)
    }

    fn publish(&self, topic: &str, payload: &str) {
        let status = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-t", topic, "-m", payload, "-q", "1"])
            .status()
            .unwrap_or_else(|e| panic!("running mosquitto_pub (install mosquitto-clients): {e}"));
        assert!(status.success(), "mosquitto_pub failed");
    }

    /// A config for the plain listener, or the TLS one when `mqtt_keys` has a `[mqtt.tls]` table.
    pub(crate) fn agent_config(&self, device: &str, mqtt_keys: &str) -> AgentConfig {
        let port = if mqtt_keys.contains("[mqtt.tls]") { self.tls_port } else { self.port };
        let text = format!(
            "device_id = \"{device}\"\n[mqtt]\nport = {port}\nkeep_alive_secs = 5\n{mqtt_keys}\n\
             [[sources]]\nname = \"s\"\nmodel = \"m\"\nkind = \"images\"\npath = \"p\"\n"
        );
        AgentConfig::parse(&text).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

fn spawn_mosquitto(config: &Path, port: u16) -> Child {
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("running mosquitto (install it): {e}"));
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < WAIT, "mosquitto did not listen on {port}");
        thread::sleep(Duration::from_millis(20));
    }
    child
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// `mosquitto_sub` on one filter, printing each message as `MSG <topic> <payload>` (it flushes after each
/// message, not after its debug lines, so readiness is proven with a marker message instead of SUBACK).
pub(crate) struct Subscriber {
    child: Child,
    lines: mpsc::Receiver<String>,
    marker_topic: String,
}

impl Subscriber {
    /// Subscribes to `filter` and returns once a marker published on `marker_topic` (inside `filter`) came
    /// back; later markers are skipped by [`Subscriber::next_message`].
    pub(crate) fn start(broker: &Broker, filter: &str, marker_topic: &str) -> Subscriber {
        let mut child = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &broker.port.to_string(), "-t", filter, "-q", "1", "-F", "MSG %t %p"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("running mosquitto_sub (install mosquitto-clients): {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let subscriber = Subscriber { child, lines, marker_topic: marker_topic.to_owned() };
        let marker = format!("MSG {marker_topic} {MARKER}");
        wait_for("mosquitto_sub to subscribe", || {
            broker.publish(marker_topic, MARKER);
            subscriber.lines.recv_timeout(Duration::from_millis(200)).is_ok_and(|line| line == marker)
        });
        subscriber
    }

    pub(crate) fn next_message(&self) -> (String, String) {
        loop {
            let line = self.lines.recv_timeout(WAIT).expect("a message within the wait");
            let Some(message) = line.strip_prefix("MSG ") else { continue };
            let (topic, payload) = message.split_once(' ').unwrap_or((message, ""));
            if (topic, payload) != (self.marker_topic.as_str(), MARKER) {
                return (topic.to_owned(), payload.to_owned());
            }
        }
    }
}

const MARKER: &str = "subscriber-ready";

impl Drop for Subscriber {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < WAIT, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn status_json(payload: Option<Vec<u8>>) -> serde_json::Value {
    let payload = payload.expect("a retained status");
    serde_json::from_slice(&payload).unwrap_or_else(|e| panic!("status {:?}: {e}", String::from_utf8_lossy(&payload)))
}

#[test]
fn online_status_publishes_and_a_draining_shutdown() {
    let broker = Broker::start(None);
    let config = broker.agent_config("live-1", "");
    let topics = config.topics();
    let (handle, thread) = MqttLink::start(&config, Vec::new()).expect("link starts");
    wait_for("the connection", || handle.is_connected());

    let online = status_json(broker.retained(&topics.status()));
    assert_eq!(online["state"], "online");
    assert_eq!(online["device"], "live-1");
    assert_eq!(online["agent_version"], AGENT_VERSION);
    assert!(online["since_ms"].as_u64().is_some(), "{online}");

    // Many QoS 1 publishes, then shutdown at once: every one must reach the subscriber before it returns.
    let subscriber = Subscriber::start(&broker, "devices/live-1/predictions/#", "devices/live-1/predictions/marker");
    let count = 200;
    for seq in 0..count {
        let payload = format!("{{\"seq\":{seq}}}").into_bytes();
        loop {
            match handle.try_publish(topics.predictions("front"), QoS::AtLeastOnce, false, payload.clone()) {
                Err(PublishError::QueueFull) => thread::sleep(Duration::from_millis(1)),
                other => break other.expect("queued"),
            }
        }
    }
    let report = handle.shutdown(Duration::from_secs(5));
    assert_eq!(report, ShutdownReport { unacked: 0, closed: true });
    thread.join().expect("mqtt thread ends");
    for seq in 0..count {
        assert_eq!(subscriber.next_message(), (topics.predictions("front"), format!("{{\"seq\":{seq}}}")));
    }

    let offline = status_json(broker.retained(&topics.status()));
    assert_eq!(offline["state"], "offline");
    assert!(offline["since_ms"].as_u64().is_some(), "a clean shutdown, not the will: {offline}");
    assert_eq!(
        handle.try_publish(topics.health(), QoS::AtMostOnce, false, b"late".to_vec()),
        Err(PublishError::Closed)
    );
    assert_eq!(handle.try_publish("bad/#".into(), QoS::AtMostOnce, false, Vec::new()), Err(PublishError::Closed));
}

#[test]
fn last_will_marks_the_device_offline() {
    let broker = Broker::start(None);
    let config = broker.agent_config("live-2", "format = \"postcard\"");
    let status_topic = config.topics().status();
    let (handle, thread) = MqttLink::start(&config, Vec::new()).expect("link starts");
    wait_for("the connection", || handle.is_connected());
    assert_eq!(handle.try_publish("a/#".into(), QoS::AtMostOnce, false, Vec::new()), Err(PublishError::InvalidTopic));

    // End the thread without a Disconnect, as a crash would: the broker then publishes the will.
    handle.shared.request_stop(Stop::Now);
    handle.try_publish("nudge".into(), QoS::AtMostOnce, false, Vec::new()).expect("queued");
    thread.join().expect("mqtt thread ends");
    let mut will = Vec::new();
    wait_for("the last will", || {
        will = broker.retained(&status_topic).unwrap_or_default();
        // postcard: envelope version 1, kind 0 (status), then state 1 (offline).
        will.starts_with(&[1, 0, 1])
    });
    let status: Status = wire::decode(wire::Format::Postcard, &will).expect("a postcard status");
    assert_eq!((status.state, status.since_ms), (State::Offline, None));
}

#[test]
fn routes_receive_payloads_across_a_broker_restart() {
    let mut broker = Broker::start(None);
    let config = broker.agent_config("live-3", "");
    let topic = config.topics().frames("door");
    let (sender, received) = mpsc::channel();
    let route = Route {
        topic: topic.clone(),
        qos: QoS::AtLeastOnce,
        sink: Box::new(move |_topic: &str, payload: &[u8]| {
            let _ = sender.send(payload.to_vec());
        }),
    };
    let (handle, thread) = MqttLink::start(&config, vec![route]).expect("link starts");
    wait_for("the connection", || handle.is_connected());

    // The subscription is queued at ConnAck; publish until it is in place.
    let deliver = |broker: &Broker, payload: &str| {
        wait_for("an inbound payload", || {
            broker.publish(&topic, payload);
            received.recv_timeout(Duration::from_millis(200)).is_ok_and(|bytes| bytes == payload.as_bytes())
        });
    };
    deliver(&broker, "frame-1");
    assert_eq!(handle.reconnects(), 0);

    broker.restart();
    wait_for("the reconnection", || handle.reconnects() == 1 && handle.is_connected());
    // persistence is off, so this retained status comes from the new connection.
    let online = status_json(broker.retained(&config.topics().status()));
    assert_eq!(online["state"], "online");
    deliver(&broker, "frame-2");

    assert_eq!(handle.shutdown(Duration::from_secs(5)), ShutdownReport { unacked: 0, closed: true });
    thread.join().expect("mqtt thread ends");
}

#[test]
fn tls_verifies_the_broker_by_server_name() {
    let pki = Pki::generate();
    let broker = Broker::start(Some(TlsListener { pki: &pki, require_certificate: false }));
    let tls = |extra: &str| broker.agent_config("live-4", &format!("[mqtt.tls]\nca_file = {:?}\n{extra}", pki.ca));

    // The certificate names `localhost` only, so dialling 127.0.0.1 needs `server_name`.
    let (handle, thread) = MqttLink::start(&tls("server_name = \"localhost\""), Vec::new()).expect("link starts");
    wait_for("the TLS connection", || handle.is_connected());
    let online = status_json(broker.retained("devices/live-4/status"));
    assert_eq!(online["state"], "online");
    assert_eq!(handle.shutdown(Duration::from_secs(5)), ShutdownReport { unacked: 0, closed: true });
    thread.join().expect("mqtt thread ends");

    let (handle, thread) = MqttLink::start(&tls(""), Vec::new()).expect("link starts");
    thread::sleep(Duration::from_secs(2));
    assert!(!handle.is_connected(), "127.0.0.1 is not a name in the certificate");
    assert!(handle.shutdown(Duration::from_secs(2)).closed);
    thread.join().expect("mqtt thread ends");
}

#[test]
fn mutual_tls() {
    let pki = Pki::generate();
    let broker = Broker::start(Some(TlsListener { pki: &pki, require_certificate: true }));
    let tls = |extra: &str| {
        broker.agent_config(
            "live-5",
            &format!("[mqtt.tls]\nca_file = {:?}\nserver_name = \"localhost\"\n{extra}", pki.ca),
        )
    };

    let (handle, thread) = MqttLink::start(&tls(""), Vec::new()).expect("link starts");
    thread::sleep(Duration::from_secs(2));
    assert!(!handle.is_connected(), "the broker requires a client certificate");
    assert!(handle.shutdown(Duration::from_secs(2)).closed);
    thread.join().expect("mqtt thread ends");

    let client_auth = format!("client_cert_file = {:?}\nclient_key_file = {:?}\n", pki.client_cert, pki.client_key);
    let (handle, thread) = MqttLink::start(&tls(&client_auth), Vec::new()).expect("link starts");
    wait_for("the mutual TLS connection", || handle.is_connected());
    let online = status_json(broker.retained("devices/live-5/status"));
    assert_eq!(online["state"], "online");
    assert_eq!(handle.shutdown(Duration::from_secs(5)), ShutdownReport { unacked: 0, closed: true });
    thread.join().expect("mqtt thread ends");
}

#[test]
fn invalid_route_filters_are_refused() {
    let config = AgentConfig::parse(
        "device_id = \"d\"\n[[sources]]\nname = \"s\"\nmodel = \"m\"\nkind = \"images\"\npath = \"p\"\n",
    )
    .expect("valid");
    let route = Route { topic: "a/#/b".into(), qos: QoS::AtMostOnce, sink: Box::new(|_: &str, _: &[u8]| {}) };
    let Err(error) = MqttLink::start(&config, vec![route]) else { panic!("an invalid filter was accepted") };
    assert_eq!(error.to_string(), "invalid MQTT topic filter \"a/#/b\"");
}
