//! A Mosquitto broker of the test's own, on 127.0.0.1 and a free port, stopped by PID when dropped.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running broker.
pub struct Broker {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Broker {
    /// An anonymous broker.
    pub fn start() -> Broker {
        Broker::start_with(&["allow_anonymous true"])
    }

    /// A broker whose listener takes `settings` (one per line) after `listener <port> 127.0.0.1`.
    pub fn start_with(settings: &[&str]) -> Broker {
        let port = free_port();
        Broker::start_on(port, settings)
    }

    /// A broker on a given port (to restart one where a client expects it).
    pub fn start_on(port: u16, settings: &[&str]) -> Broker {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("mosquitto.conf");
        let mut text = format!("listener {port} 127.0.0.1\npersistence false\n");
        for line in settings {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::File::create(&config).and_then(|mut f| f.write_all(text.as_bytes())).expect("write config");
        let log = std::fs::File::create(dir.path().join("mosquitto.log")).expect("log file");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mosquitto starts (scripts/setup.sh installs it)");
        let broker = Broker { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen on {port}: {}", broker.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        broker
    }

    /// The broker's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A directory that lives as long as the broker (for certificates and password files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the broker logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// Stops the broker now.
    pub fn stop(mut self) {
        self.terminate();
    }

    /// Stops the broker as systemd would (SIGTERM): with persistence, it saves its sessions and queued messages.
    pub fn stop_gracefully(mut self) {
        crate::sigterm(&self.child);
        let _ = self.child.wait();
    }

    fn terminate(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// A temporary directory readable by the `mosquitto` user (the broker drops root privileges).
pub fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let _ = std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755));
    dir
}

/// Writes `contents` world-readable, so the broker can read it after dropping privileges.
pub fn write_readable(path: &PathBuf, contents: &[u8]) {
    std::fs::write(path, contents).expect("write file");
    let _ = std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o644));
}

/// The retained payload of `topic` on the MQTT broker at `127.0.0.1:port` (any broker: Mosquitto, a NATS node),
/// as a late subscriber gets it within 3 s; `None` when there is none or the broker does not answer. QoS 0: on
/// NATS a QoS 1 subscription is a JetStream consumer, which may be placed on a node that died.
pub fn retained(port: u16, topic: &str) -> Option<String> {
    let port = port.to_string();
    let output = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port, "-q", "0", "-t", topic, "-C", "1", "-W", "3"])
        .stderr(Stdio::null())
        .output()
        .expect("mosquitto_sub runs (scripts/setup.sh installs mosquitto-clients)");
    let text = String::from_utf8_lossy(&output.stdout).trim_end().to_owned();
    (output.status.success() && !text.is_empty()).then_some(text)
}
