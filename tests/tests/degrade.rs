//! Degrade, don't die: an unusable state directory at start, and systemd's notifications. Real agents, a real
//! Mosquitto.

use integration_tests::agent::Agent;
use integration_tests::broker::Broker;
use integration_tests::models_dir;
use integration_tests::subscriber::Received;
use integration_tests::update::{ConfigBuilder, Watch, images_loop, now_ms, status_topic};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

/// Waiting for an agent to say something (it loads an 18 MB model first).
const WAIT: Duration = Duration::from_secs(90);
/// Any Ed25519 public key: these agents are never sent a package.
const TRUSTED_KEY: &str = "8fee9cd46a57751ef3b0bad45a1643678736734cc8385af5ca62cf6a5e82dcb6";

fn log_of(agent: &Agent) -> impl Fn() -> String + '_ {
    move || format!("agent log:\n{}", agent.log())
}

fn on_topic<'a>(watch: &'a Watch, topic: &'a str) -> impl Iterator<Item = &'a Received> + 'a {
    watch.seen.iter().filter(move |message| message.topic == topic)
}

/// The condition kinds of each health report seen, with the report's arrival order.
fn health_conditions(watch: &Watch, device: &str) -> Vec<Vec<String>> {
    on_topic(watch, &format!("devices/{device}/health"))
        .map(|message| {
            let conditions = message.json()["conditions"].as_array().cloned().unwrap_or_default();
            conditions.iter().map(|c| c["kind"].as_str().unwrap_or_default().to_owned()).collect()
        })
        .collect()
}

/// How the state directory is made unwritable for the agent, and writable again.
enum Lock {
    /// Not root: the directory's mode.
    Mode,
    /// Root, for whom modes do not stop writes: a read-only bind mount of the directory onto itself, in a private
    /// mount namespace of the agent's own (what a failing SD card's ext4 does: EROFS).
    ReadOnlyMount,
}

impl Lock {
    fn for_this_user() -> Lock {
        if rustix::process::geteuid().is_root() { Lock::ReadOnlyMount } else { Lock::Mode }
    }

    fn start(&self, config: &str, state: &Path) -> Agent {
        match self {
            Lock::Mode => {
                std::fs::set_permissions(state, std::fs::Permissions::from_mode(0o555)).expect("chmod");
                Agent::start(config)
            }
            Lock::ReadOnlyMount => {
                let dir = state.display();
                let mount = format!("mount --bind -o ro '{dir}' '{dir}' && exec \"$0\" \"$@\"");
                Agent::start_wrapped(config, &["unshare", "-m", "--propagation", "private", "sh", "-c", &mount])
            }
        }
    }

    fn release(&self, agent: &Agent, state: &Path) {
        match self {
            Lock::Mode => std::fs::set_permissions(state, std::fs::Permissions::from_mode(0o755)).expect("chmod"),
            Lock::ReadOnlyMount => {
                let status = std::process::Command::new("nsenter")
                    .args(["-t", &agent.pid().to_string(), "-m", "mount", "-o", "remount,bind,rw"])
                    .arg(state)
                    .status()
                    .expect("nsenter runs");
                assert!(status.success(), "remounting read-write in the agent's namespace");
            }
        }
    }
}

#[test]
fn a_read_only_state_dir_at_start_still_serves_and_recovers() {
    let broker = Broker::start();
    let root = tempfile::tempdir().expect("temp dir");
    let state = root.path().join("state");
    std::fs::create_dir(&state).expect("state dir");
    let mut config = ConfigBuilder::new("ro-01", broker.port(), TRUSTED_KEY, &state)
        .source(images_loop("front", &models_dir().join("image-classifier"), &["cat.jpg", "coffee.jpg"], 4.0))
        .build();
    config.push_str("[supervision]\nretry_secs = 1\n");
    let lock = Lock::for_this_user();
    let mut watch = Watch::new(broker.port(), "devices/ro-01/#");
    let agent = lock.start(&config, &state);

    let errors = "devices/ro-01/errors/agent";
    watch.until(WAIT, log_of(&agent), |watch| {
        on_topic(watch, "devices/ro-01/predictions/front").count() >= 3
            && on_topic(watch, errors).count() >= 1
            && health_conditions(watch, "ro-01").iter().any(|kinds| kinds == &["state_dir_read_only"])
    });
    let event = on_topic(&watch, errors).next().expect("an error event").json();
    assert_eq!((event["stage"].as_str(), event["kind"].as_str()), (Some("storage"), Some("state_dir_read_only")));
    assert!(event["message"].as_str().is_some_and(|m| m.contains("serving the factory bundles")), "{event}");
    let prediction = on_topic(&watch, "devices/ro-01/predictions/front").next().expect("a prediction").json();
    assert_eq!(prediction["model"]["version"], "1.0.0", "the factory bundle serves");
    assert!(on_topic(&watch, &status_topic("ro-01")).next().is_none(), "no updater while the directory is unusable");
    eprintln!(
        "unwritable by {}: serving, condition raised",
        if matches!(lock, Lock::Mode) { "mode 0555" } else { "a read-only bind mount" }
    );

    lock.release(&agent, &state);
    let released_ms = now_ms();
    let reports_before = health_conditions(&watch, "ro-01").len();
    watch.until(WAIT, log_of(&agent), |watch| {
        let reports = health_conditions(watch, "ro-01");
        reports.len() > reports_before
            && reports.last().is_some_and(Vec::is_empty)
            && on_topic(watch, &status_topic("ro-01")).count() >= 1
    });
    assert!(state.join("lock").exists(), "the agent took the state directory");
    assert!(agent.log().contains("works again: updates resume"), "{}", agent.log());
    let served_after = on_topic(&watch, "devices/ro-01/predictions/front")
        .filter(|message| message.json()["published_at_ms"].as_u64().is_some_and(|ms| ms > released_ms))
        .count();
    assert!(served_after > 0, "still serving after the recovery");
    assert_eq!(on_topic(&watch, errors).count(), 1, "the condition was reported once");
    let (status, log) = agent.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status:?}\n{log}");
}

/// Notifications the agent sent to a socket standing in for systemd's.
fn notifications(socket: &UnixDatagram, until: Instant, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    while !done(&seen) && Instant::now() < until {
        if let Ok(length) = socket.recv(&mut buffer) {
            seen.extend(String::from_utf8_lossy(&buffer[..length]).lines().map(str::to_owned));
        }
    }
    seen
}

#[test]
fn systemd_is_told_ready_pinged_while_alive_and_told_stopping() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the fake NOTIFY_SOCKET");
    socket.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let config = format!(
        "device_id = \"wd-01\"\n[mqtt]\nport = {}\n{}",
        broker.port(),
        images_loop("front", &models_dir().join("image-classifier"), &["cat.jpg"], 2.0)
    );
    let notify_socket = format!("NOTIFY_SOCKET={}", path.display());
    // A 2 s watchdog: pinged every second.
    let agent = Agent::start_wrapped(&config, &["env", &notify_socket, "WATCHDOG_USEC=2000000"]);

    let seen = notifications(&socket, Instant::now() + WAIT, |seen| {
        seen.iter().filter(|line| *line == "WATCHDOG=1").count() >= 3
    });
    assert_eq!(seen.first().map(String::as_str), Some("READY=1"), "READY first: {seen:?}\n{}", agent.log());
    let pings = seen.iter().filter(|line| *line == "WATCHDOG=1").count();
    assert!(pings >= 3, "pinged while alive: {seen:?}\n{}", agent.log());
    assert!(!seen.iter().any(|line| line == "STOPPING=1"), "{seen:?}");

    let (status, log) = agent.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status:?}\n{log}");
    let rest = notifications(&socket, Instant::now() + Duration::from_secs(2), |seen| {
        seen.iter().any(|line| line == "STOPPING=1")
    });
    assert!(rest.iter().any(|line| line == "STOPPING=1"), "STOPPING on shutdown: {rest:?}\n{log}");
}
