//! Nothing lost: two sensor sources produce thousands of sequenced predictions through a broker outage, a
//! partition that keeps the sockets open, an agent SIGKILLed during an outage and a torn spool tail, and a
//! persistent QoS 1 subscriber must receive every sequence number. Each test prints produced / received /
//! duplicated / dropped-with-counter.

use integration_tests::agent::Agent;
use integration_tests::broker::{Broker, free_port};
use integration_tests::models_dir;
use integration_tests::subscriber::{Received, Subscriber};
use mqtt::testing::Proxy;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The outage: not shortened.
const OUTAGE: Duration = Duration::from_secs(30);

/// A Mosquitto on `port` that keeps persistent sessions and their queued messages across a graceful restart.
fn persistent_broker(port: u16, data: &Path) -> Broker {
    Broker::start_on(
        port,
        &[
            "allow_anonymous true",
            "persistence true",
            &format!("persistence_location {}/", data.display()),
            "max_queued_messages 0",
        ],
    )
}

/// A directory the broker (which drops root privileges) may write.
fn broker_data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).expect("chmod");
    dir
}

/// `recording` repeated `times` (one header): windows of `window` samples at stride 1 number `800 × times −
/// window + 1`.
fn long_recording(dir: &Path, recording: &str, times: usize) -> PathBuf {
    let text = std::fs::read_to_string(models_dir().join("recordings").join(recording)).expect("recording");
    let mut lines = text.lines();
    let header = lines.next().expect("a header");
    let rows: Vec<&str> = lines.collect();
    let mut out = format!("{header}\n");
    for _ in 0..times {
        for row in &rows {
            out.push_str(row);
            out.push('\n');
        }
    }
    let path = dir.join(recording);
    std::fs::write(&path, out).expect("write recording");
    path
}

/// Sensor sources of the test: `(name, model, recording, window)`.
const SOURCES: [(&str, &str, &str, usize); 2] =
    [("vib", "vibration-anomaly", "vibration.csv", 50), ("act", "activity-classifier", "activity.csv", 100)];

/// The two csv sources, stride 1, at `rate_hz` samples/s (0: as fast as possible); with the windows each makes.
fn csv_sources(dir: &Path, times: usize, rate_hz: u32) -> (String, HashMap<String, u64>) {
    let mut text = String::new();
    let mut windows = HashMap::new();
    for (name, model, recording, window) in SOURCES {
        let path = long_recording(dir, recording, times);
        text += &format!(
            "[[sources]]\nname = \"{name}\"\nkind = \"csv\"\nmodel = \"{}\"\npath = \"{}\"\nrate_hz = {rate_hz}\nstride = 1\n",
            models_dir().join(model).display(),
            path.display()
        );
        windows.insert(name.to_owned(), (800 * times - window + 1) as u64);
    }
    (text, windows)
}

fn config(device: &str, port: u16, spool: &str, sources: &str) -> String {
    format!(
        "device_id = \"{device}\"\n[mqtt]\nport = {port}\nkeep_alive_secs = 5\n[health]\ninterval_secs = 1\n\
         [spool]\nreplay_rate = 1000\n{spool}\n{sources}"
    )
}

/// What the subscriber got: sequence numbers per source, duplicates, and the newest health report.
#[derive(Default)]
struct Tally {
    seqs: HashMap<String, Vec<bool>>,
    received: u64,
    duplicated: u64,
    health: Option<serde_json::Value>,
}

impl Tally {
    fn add(&mut self, message: &Received) {
        let payload = message.json();
        if message.topic.ends_with("/health") {
            // The newest by `at_ms`, not the last to arrive: reports made during the outage were spooled, and the
            // spool replays its classes one after the other, so they can come after every live one.
            if self.health.as_ref().is_none_or(|newest| newest["at_ms"].as_u64() <= payload["at_ms"].as_u64()) {
                self.health = Some(payload);
            }
            return;
        }
        let Some(source) = message.topic.rsplit('/').next().filter(|_| message.topic.contains("/predictions/")) else {
            return;
        };
        let seq = payload["seq"].as_u64().expect("a seq") as usize;
        let seen = self.seqs.entry(source.to_owned()).or_default();
        if seen.len() <= seq {
            seen.resize(seq + 1, false);
        }
        if std::mem::replace(&mut seen[seq], true) {
            self.duplicated += 1;
        } else {
            self.received += 1;
        }
    }

    /// Sequence numbers of `source` below `produced` never received.
    fn missing(&self, source: &str, produced: u64) -> Vec<u64> {
        let seen = self.seqs.get(source).map(Vec::as_slice).unwrap_or_default();
        (0..produced).filter(|&seq| !seen.get(seq as usize).copied().unwrap_or(false)).collect()
    }

    fn spool_counter(&self, name: &str) -> u64 {
        self.health.as_ref().and_then(|health| health["spool"][name].as_u64()).unwrap_or(0)
    }

    /// Collects until every produced sequence number arrived and a health report says the spool is empty.
    fn collect_all(&mut self, subscriber: &Subscriber, produced: &HashMap<String, u64>, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let complete = produced.iter().all(|(source, &count)| self.missing(source, count).is_empty());
            if complete && self.health.as_ref().is_some_and(|health| health["spool"]["records"] == 0) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            if let Some(message) = subscriber.next(left.min(Duration::from_millis(200))) {
                self.add(&message);
            }
        }
    }

    /// Prints the table and asserts that nothing is lost.
    fn report(&self, what: &str, produced: &HashMap<String, u64>) {
        let produced_total: u64 = produced.values().sum();
        let dropped = self.spool_counter("dropped_predictions");
        println!(
            "{what}: produced {produced_total}, received {}, duplicated {}, dropped with counter {dropped}",
            self.received, self.duplicated
        );
        for (source, &count) in produced {
            let missing = self.missing(source, count);
            assert!(
                missing.is_empty(),
                "{what}: {source} lost {} of {count} without a counter (first {:?}); health {:?}",
                missing.len(),
                &missing[..missing.len().min(10)],
                self.health
            );
        }
        assert_eq!(dropped, 0, "the spool had room: nothing may be dropped");
        assert_eq!(self.spool_counter("write_errors"), 0);
    }
}

/// What cuts the agent off its broker for 30 s.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// The broker is stopped, then restarted on the same port.
    BrokerStopped,
    /// A proxy between the agent and the broker stops forwarding but keeps both sockets open (a radio link that
    /// dies): only keep-alive tells the agent.
    Partition,
}

/// Two sources produce 6,252 sequenced predictions, most of them while `fault` lasts 30 s; every one must arrive.
fn thirty_seconds_of(fault: Fault, device: &str) {
    let work = tempfile::tempdir().expect("temp dir");
    let data = broker_data_dir();
    let port = free_port();
    let broker = persistent_broker(port, data.path());
    let proxy = Proxy::start(port);
    let agent_port = match fault {
        Fault::BrokerStopped => port,
        Fault::Partition => proxy.port(),
    };
    let subscriber = Subscriber::persistent(port, &format!("devices/{device}/#"), &format!("{device}-sub"));
    // About 100 windows per second per source for 32 s: most of them during the outage.
    let (sources, produced) = csv_sources(work.path(), 4, 100);
    let agent = Agent::start(&config(device, agent_port, "", &sources));
    let mut tally = Tally::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while tally.received < 200 {
        assert!(Instant::now() < deadline, "no predictions before the outage; log:\n{}", agent.log());
        if let Some(message) = subscriber.next(Duration::from_millis(200)) {
            tally.add(&message);
        }
    }

    let before = tally.received;
    let _broker = match fault {
        Fault::BrokerStopped => {
            broker.stop_gracefully();
            std::thread::sleep(OUTAGE);
            persistent_broker(port, data.path())
        }
        Fault::Partition => {
            proxy.partition();
            std::thread::sleep(OUTAGE);
            proxy.heal();
            broker
        }
    };
    let restored_at = Instant::now();
    tally.collect_all(&subscriber, &produced, Duration::from_secs(120));
    let drained = restored_at.elapsed();
    println!(
        "after the outage ({fault:?}): {} predictions in {:.1} s ({:.0}/s, replay capped at 1000/s, live ones beside it)",
        tally.received - before,
        drained.as_secs_f64(),
        (tally.received - before) as f64 / drained.as_secs_f64()
    );
    tally.report(&format!("{fault:?} for 30 s"), &produced);
    assert!(tally.health.as_ref().is_some_and(|health| health["mqtt_reconnects"].as_u64() >= Some(1)));
    drop(agent);
}

#[test]
fn a_broker_outage_of_30_s_loses_nothing() {
    thirty_seconds_of(Fault::BrokerStopped, "outage-1");
}

#[test]
fn a_partition_of_30_s_that_keeps_sockets_open_loses_nothing() {
    thirty_seconds_of(Fault::Partition, "outage-4");
}

/// Waits until the spool's prediction segments stop growing: the sources have produced everything.
fn wait_until_spooled(spool: &Path) {
    let size = || -> u64 {
        std::fs::read_dir(spool.join("predictions"))
            .map(|entries| entries.flatten().filter_map(|entry| entry.metadata().ok()).map(|m| m.len()).sum())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = (0, Instant::now());
    loop {
        let now = size();
        if now != last.0 {
            last = (now, Instant::now());
        } else if now > 0 && last.1.elapsed() > Duration::from_secs(2) {
            return;
        }
        assert!(Instant::now() < deadline, "the spool kept growing");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// During an outage the agent is SIGKILLed with everything in its spool, then started again (with a source that
/// produces nothing) on the same spool; `damage` is applied to the spool in between. Returns the tally, what was
/// produced and the second run's log.
fn killed_during_an_outage(
    device: &str,
    spool_keys: &str,
    damage: impl FnOnce(&Path),
) -> (Tally, HashMap<String, u64>, String) {
    let work = tempfile::tempdir().expect("temp dir");
    let spool = work.path().join("spool");
    let spool_config = format!("dir = \"{}\"\n{spool_keys}", spool.display());
    let data = broker_data_dir();
    let port = free_port();
    let broker = persistent_broker(port, data.path());
    let subscriber = Subscriber::persistent(port, &format!("devices/{device}/#"), &format!("{device}-sub"));
    let (sources, produced) = csv_sources(work.path(), 2, 0);
    let agent = Agent::start(&config(device, port, &spool_config, &sources));
    let mut tally = Tally::default();
    // Some go out live, then the broker goes away.
    let deadline = Instant::now() + Duration::from_secs(60);
    while tally.received < 50 {
        assert!(Instant::now() < deadline, "no predictions; log:\n{}", agent.log());
        if let Some(message) = subscriber.next(Duration::from_millis(100)) {
            tally.add(&message);
        }
    }
    broker.stop_gracefully();
    wait_until_spooled(&spool);
    let log = agent.kill();
    damage(&spool);

    let idle = format!(
        "[[sources]]\nname = \"idle\"\nkind = \"mqtt_sensor\"\nmodel = \"{}\"\n",
        models_dir().join("vibration-anomaly").display()
    );
    let restarted = Agent::start(&config(device, port, &spool_config, &idle));
    std::thread::sleep(Duration::from_secs(2));
    let _broker = persistent_broker(port, data.path());
    tally.collect_all(&subscriber, &produced, Duration::from_secs(90));
    let restarted_log = restarted.log();
    if tally.missing("vib", produced["vib"]).len() + tally.missing("act", produced["act"]).len() > 0 {
        println!("first run's log:\n{log}\nsecond run's log:\n{restarted_log}");
    }
    (tally, produced, restarted_log)
}

#[test]
fn an_agent_killed_during_an_outage_sends_its_spool_after_the_restart() {
    let (tally, produced, _) = killed_during_an_outage("outage-2", "", |_| {});
    tally.report("SIGKILL during the outage", &produced);
}

/// A power cut between a write and its fsync leaves the last record torn: the agent, SIGKILLed with nothing
/// synced, finds garbage after its last whole record, cuts it, and loses nothing that was whole.
#[test]
fn a_torn_tail_after_a_kill_before_fsync_is_cut_and_the_rest_delivered() {
    let (tally, produced, log) =
        killed_during_an_outage("outage-3", "fsync = \"interval\"\nfsync_interval_ms = 3600000", |spool| {
            let mut segments: Vec<PathBuf> = std::fs::read_dir(spool.join("predictions"))
                .expect("the predictions log")
                .flatten()
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
                .collect();
            segments.sort();
            let last = segments.last().expect("a segment");
            let mut bytes = std::fs::read(last).expect("read");
            // A record header announcing 900 bytes, then only some of them.
            bytes.extend_from_slice(&900u32.to_le_bytes());
            bytes.extend_from_slice(&[0xA5; 300]);
            std::fs::write(last, bytes).expect("torn");
        });
    tally.report("SIGKILL before fsync, torn tail", &produced);
    assert!(log.contains("Cut 304 bytes off a spool segment at a Torn record"), "{log}");
}
