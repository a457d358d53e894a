//! Brokers for tests: a mosquitto per test on ephemeral loopback ports, watched with `mosquitto_sub`, TLS
//! material made with `openssl`, and a [`Proxy`] that partitions the network. Tests fail, never skip, when
//! `mosquitto`, `mosquitto_sub`, `mosquitto_pub` or `openssl` is missing (Debian: `mosquitto mosquitto-clients
//! openssl`).

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};
use tempfile::TempDir;

mod proxy;

pub use proxy::Proxy;

const WAIT: Duration = Duration::from_secs(10);

/// A CA, a server certificate for `localhost` (DNS name only, so dialling 127.0.0.1 needs
/// `server_name`), the same one expired, and a client certificate, all made with the `openssl` CLI.
pub struct Pki {
    // Holds the files for as long as the paths are used.
    _dir: TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// For `server_key`, valid on 1 January 2020 only.
    pub expired_server_cert: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Pki {
    pub fn generate() -> Pki {
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
        // `openssl x509` only signs from now on; `openssl ca` takes any dates.
        std::fs::write(path("ca.cnf"), EXPIRED_CA_CONFIG).expect("write the CA config");
        std::fs::write(path("index.txt"), "").expect("write the CA index");
        std::fs::write(path("serial.txt"), "01\n").expect("write the CA serial");
        openssl(
            &[
                &["ca", "-batch", "-config", "ca.cnf", "-in", "server.csr", "-out", "expired.pem", "-notext"],
                &["-startdate", "20200101000000Z", "-enddate", "20200102000000Z", "-extfile", "server.ext"],
            ],
            dir.path(),
        );
        make_world_readable(dir.path());
        Pki {
            ca: path("ca.pem"),
            server_cert: path("server.pem"),
            server_key: path("server.key"),
            expired_server_cert: path("expired.pem"),
            client_cert: path("client.pem"),
            client_key: path("client.key"),
            _dir: dir,
        }
    }
}

const EXPIRED_CA_CONFIG: &str = "[ca]\ndefault_ca = test\n[test]\ndatabase = index.txt\nnew_certs_dir = .\n\
    certificate = ca.pem\nprivate_key = ca.key\nserial = serial.txt\ndefault_md = sha256\npolicy = any\n\
    [any]\ncommonName = supplied\n";

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

/// A port nothing listens on (until something binds it).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// A TLS listener beside the plain one (which the test's own clients use).
pub struct TlsListener<'a> {
    pub pki: &'a Pki,
    pub require_certificate: bool,
    /// Serve the expired certificate.
    pub expired: bool,
}

/// A mosquitto process, killed on drop.
pub struct Broker {
    child: Child,
    port: u16,
    tls_port: u16,
    config: PathBuf,
    _dir: TempDir,
}

impl Broker {
    pub fn start(tls: Option<TlsListener<'_>>) -> Broker {
        Broker::start_on(free_port(), tls)
    }

    /// A broker whose plain listener is on `port` (see [`free_port`]).
    pub fn start_on(port: u16, tls: Option<TlsListener<'_>>) -> Broker {
        let dir = readable_temp_dir();
        let tls_port = free_port();
        let mut text = format!("allow_anonymous true\npersistence false\nlistener {port} 127.0.0.1\n");
        if let Some(TlsListener { pki, require_certificate, expired }) = tls {
            let cert = if expired { &pki.expired_server_cert } else { &pki.server_cert };
            text += &format!(
                "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {require_certificate}\n",
                pki.ca.display(),
                cert.display(),
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
    pub fn restart(&mut self) {
        stop(&mut self.child);
        self.child = spawn_mosquitto(&self.config, self.port);
    }

    /// The retained payload of `topic`, if any.
    pub fn retained(&self, topic: &str) -> Option<Vec<u8>> {
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

    pub fn publish(&self, topic: &str, payload: &str) {
        self.mosquitto_pub(&["-t", topic, "-m", payload]);
    }

    /// Publishes `payload` on `topic` as the retained message.
    pub fn publish_retained(&self, topic: &str, payload: &str) {
        self.mosquitto_pub(&["-t", topic, "-m", payload, "-r"]);
    }

    /// Publishes `payload` on `topic` as the retained message, from a file (for payloads of any size).
    pub fn publish_retained_bytes(&self, topic: &str, payload: &[u8]) {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), payload).expect("write the payload");
        let path = file.path().to_str().expect("a UTF-8 temp path");
        self.mosquitto_pub(&["-t", topic, "-f", path, "-r"]);
    }

    fn mosquitto_pub(&self, args: &[&str]) {
        let status = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q", "1"])
            .args(args)
            .status()
            .unwrap_or_else(|e| panic!("running mosquitto_pub (install mosquitto-clients): {e}"));
        assert!(status.success(), "mosquitto_pub failed");
    }

    /// The plain listener's port (which `mosquitto_sub` and `mosquitto_pub` use).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TLS listener's port.
    pub fn tls_port(&self) -> u16 {
        self.tls_port
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
pub struct Subscriber {
    child: Child,
    lines: mpsc::Receiver<String>,
    marker_topic: String,
}

impl Subscriber {
    /// Subscribes to `filter` and returns once a marker published on `marker_topic` (inside `filter`) came
    /// back; later markers are skipped by [`Subscriber::next_message`].
    pub fn start(broker: &Broker, filter: &str, marker_topic: &str) -> Subscriber {
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

    pub fn next_message(&self) -> (String, String) {
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

/// Checks `done` every 20 ms until it holds (tests watch other processes), failing after 10 s.
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < WAIT, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}
