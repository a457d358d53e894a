//! The attacks of issue 10 on over-the-air updates, each against a real agent and a real Mosquitto, by a client
//! that can publish anything on the broker: unsigned, forged, expired, misaddressed and replayed commands;
//! replayed and edited announcements of an old package; poisoned chunks; a forged `committed` status; a flood
//! of bad commands. None may change what the device runs, or be taken by `edgectl` as success.

use integration_tests::agent::Agent;
use integration_tests::broker::Broker;
use integration_tests::update::{
    ConfigBuilder, Push, WAIT, Watch, Workbench, at_version, calm_window, csv_loop, log_of, model, now_ms,
    predictions_after, retained_status,
};
use protocol::update::{Envelope, Instruction, Order, UpdateState, UpdateStatus};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Waiting for a push to end.
const PUSH_WAIT: Duration = Duration::from_secs(300);
const DEVICE: &str = "wrist-01";
const COMMAND_TOPIC: &str = "devices/wrist-01/update/command";
const ANNOUNCE_TOPIC: &str = "devices/wrist-01/update/announce";

/// A device serving the activity classifier with updates on, its state in `state`. These tests are about who
/// may update it, not about probation: a latency rise under the tests' load (the poison flood, other tests)
/// must not roll a sound update back.
fn wrist_config(bench: &Workbench, port: u16, state: &Path) -> String {
    ConfigBuilder::new(DEVICE, port, &bench.trusted.public, state)
        .source(csv_loop("wrist", &model("activity-classifier"), 10))
        .probation("min_p95_increase_ms", 100)
        .build()
}

/// A broker and a device serving predictions, watched on all its topics.
struct Serving {
    broker: Broker,
    bench: Workbench,
    state: tempfile::TempDir,
    config: String,
    watch: Watch,
    agent: Agent,
}

fn serving() -> Serving {
    let broker = Broker::start();
    let bench = Workbench::new();
    let state = tempfile::tempdir().unwrap();
    let config = wrist_config(&bench, broker.port(), state.path());
    let mut watch = Watch::new(broker.port(), "devices/wrist-01/#");
    let agent = Agent::start(&config);
    watch.until(WAIT, log_of(&agent), |w| !w.predictions(DEVICE, "wrist").is_empty());
    Serving { broker, bench, state, config, watch, agent }
}

/// Pushes `package` to the device with the trusted key and `options`; returns the outcome's state.
fn push(bench: &Workbench, port: u16, package: &Path, options: &[&str]) -> (Option<String>, String) {
    let args: Vec<&str> = ["--device", DEVICE, "--timeout", "120"].iter().chain(options).copied().collect();
    let outcome = Push::start(package, port, &bench.trusted, &args).finish(PUSH_WAIT);
    let reason = outcome.summary["devices"][DEVICE]["reason"].as_str().unwrap_or_default().to_owned();
    (outcome.state(DEVICE).map(str::to_owned), reason)
}

/// Publishes `payload` on `topic` and returns the error event it causes.
fn refused(watch: &mut Watch, agent: &Agent, topic: &str, payload: Vec<u8>) -> serde_json::Value {
    let before = watch.update_errors(DEVICE).len();
    watch.publish(topic, payload);
    watch.until(WAIT, log_of(agent), |w| w.update_errors(DEVICE).len() > before);
    watch.update_errors(DEVICE)[before].clone()
}

/// Asserts that the device still runs `version`, committed, and serves it.
fn still_runs(watch: &mut Watch, agent: &Agent, port: u16, version: &str) {
    let status = retained_status(port, DEVICE);
    assert_eq!((status.running_version.as_str(), status.state), (version, UpdateState::Committed), "{status:?}");
    let served = predictions_after(watch, agent, DEVICE, "wrist", now_ms(), 3);
    assert!(served.iter().all(|p| p.version == version), "{served:?}");
}

#[test]
fn unsigned_forged_expired_misaddressed_and_replayed_commands_are_refused() {
    let Serving { broker, bench, state: _state, config, mut watch, agent } = serving();
    let port = broker.port();
    let v110 = at_version("activity-classifier", "1.1.0");
    let package = bench.signed(v110.path(), &calm_window());
    assert_eq!(push(&bench, port, &package, &[]).0.as_deref(), Some("committed"), "{}", agent.log());

    let rollback = || Instruction::Rollback { model: None };
    let (counter, later) = (now_ms() * 1000, now_ms() + 60_000);
    let stranger = bench.keygen("stranger");
    let trusted = &bench.trusted;
    let attacks = [
        ("the unsigned command of the issue", br#"{"command":"rollback"}"#.to_vec(), "malformed"),
        ("signed by an untrusted key", bench.order(&stranger, DEVICE, counter, later, rollback()), "untrusted_key"),
        ("expired", bench.order(trusted, DEVICE, counter, now_ms() - 1_000, rollback()), "expired"),
        ("for another device", bench.order(trusted, "wrist-02", counter, later, rollback()), "misaddressed"),
        ("older than the push", bench.order(trusted, DEVICE, 1, later, rollback()), "replayed"),
    ];
    for (what, payload, kind) in attacks {
        let error = refused(&mut watch, &agent, COMMAND_TOPIC, payload);
        assert_eq!((error["stage"].as_str(), error["kind"].as_str()), (Some("command"), Some(kind)), "{what}: {error}");
        eprintln!("{what}: {}", error["message"]);
    }
    still_runs(&mut watch, &agent, port, "1.1.0");

    // The operator's command is obeyed, once.
    let command = bench.order(trusted, DEVICE, counter, later, rollback());
    watch.publish(COMMAND_TOPIC, command.clone());
    let answered = |w: &Watch| w.statuses(DEVICE).iter().any(|s| s.order == Some(counter));
    watch.until(WAIT, log_of(&agent), answered);
    let answer = watch.statuses(DEVICE).into_iter().find(|s| s.order == Some(counter)).unwrap();
    assert_eq!((answer.state, answer.running_version.as_str()), (UpdateState::RolledBack, "1.0.0"), "{answer:?}");
    let log = agent.kill();
    let agent = Agent::start(&config);
    let restarted_ms = now_ms();
    watch.until(
        WAIT,
        || format!("{log}\n{}", agent.log()),
        |w| w.statuses(DEVICE).iter().any(|s| s.at_ms >= restarted_ms),
    );
    let error = refused(&mut watch, &agent, COMMAND_TOPIC, command);
    assert_eq!(error["kind"].as_str(), Some("replayed"), "replayed after a restart: {error}");

    // A rollback on the operator's command is no verdict on the package: it may be pushed again.
    assert_eq!(push(&bench, port, &package, &[]).0.as_deref(), Some("committed"), "{}", agent.log());
    still_runs(&mut watch, &agent, port, "1.1.0");
}

#[test]
fn old_packages_come_back_only_by_a_signed_downgrade_and_never_below_the_floor() {
    let Serving { broker, bench, state, config, mut watch, agent } = serving();
    let port = broker.port();
    let (v110, v120) = (at_version("activity-classifier", "1.1.0"), at_version("activity-classifier", "1.2.0"));
    let old = bench.signed(v110.path(), &calm_window());
    let new = bench.signed(v120.path(), &calm_window());
    assert_eq!(push(&bench, port, &old, &[]).0.as_deref(), Some("committed"), "{}", agent.log());
    watch.drain(Duration::from_millis(200));
    let recorded = watch.seen.iter().find(|m| m.topic == ANNOUNCE_TOPIC).expect("the announcement was seen");
    let recorded = recorded.payload.clone();
    assert_eq!(push(&bench, port, &new, &[]).0.as_deref(), Some("committed"), "{}", agent.log());

    // The old push's announcement again, as recorded; edited to say "rollback"; and without its signature.
    let error = refused(&mut watch, &agent, ANNOUNCE_TOPIC, recorded.clone());
    assert_eq!(error["kind"].as_str(), Some("replayed"), "{error}");
    let mut envelope: Envelope = serde_json::from_slice(&recorded).unwrap();
    envelope.signed = envelope.signed.replace("\"rollback\":false", "\"rollback\":true");
    assert!(envelope.signed.contains("\"rollback\":true"));
    let error = refused(&mut watch, &agent, ANNOUNCE_TOPIC, serde_json::to_vec(&envelope).unwrap());
    assert_eq!(error["kind"].as_str(), Some("bad_signature"), "{error}");
    let order: Order = serde_json::from_str(&envelope.signed).unwrap();
    let Instruction::Announce(unsigned) = order.instruction else { panic!("{order:?}") };
    let error = refused(&mut watch, &agent, ANNOUNCE_TOPIC, serde_json::to_vec(&unsigned).unwrap());
    assert_eq!(error["kind"].as_str(), Some("malformed"), "{error}");
    still_runs(&mut watch, &agent, port, "1.2.0");

    // Pushed by the operator, the old version still needs a signed downgrade.
    let (state_of, reason) = push(&bench, port, &old, &[]);
    assert_eq!(state_of.as_deref(), Some("rejected"));
    assert!(reason.contains("below this device's version floor 1.2.0"), "{reason}");
    assert_eq!(push(&bench, port, &old, &["--rollback"]).0.as_deref(), Some("committed"), "{}", agent.log());
    still_runs(&mut watch, &agent, port, "1.1.0");

    // Up to 1.2.0 again; then the slots are lost (an unreadable state.json): the device boots its factory
    // 1.0.0 and still refuses 1.1.0, below its floor.
    assert_eq!(push(&bench, port, &new, &[]).0.as_deref(), Some("committed"), "{}", agent.log());
    drop(agent.kill());
    std::fs::write(state.path().join("models/activity-classifier/state.json"), b"{").unwrap();
    let agent = Agent::start(&config);
    let served = predictions_after(&mut watch, &agent, DEVICE, "wrist", now_ms(), 3);
    assert!(served.iter().all(|p| p.version == "1.0.0"), "the factory bundle serves: {served:?}");
    let (state_of, reason) = push(&bench, port, &old, &[]);
    assert_eq!(state_of.as_deref(), Some("rejected"), "{}", agent.log());
    assert!(reason.contains("below this device's version floor 1.2.0"), "{reason}");
    eprintln!("1.1.0 after the reset: {reason}");
}

#[test]
fn poisoned_chunks_are_refused_on_arrival_and_the_release_still_installs() {
    let broker = Broker::start();
    let port = broker.port();
    let bench = Workbench::new();
    let state = tempfile::tempdir().unwrap();
    let mut watch = Watch::new(port, "devices/wrist-01/update/status");
    let agent = Agent::start(&wrist_config(&bench, port, state.path()));
    watch.until(WAIT, log_of(&agent), |w| !w.statuses(DEVICE).is_empty());
    let v110 = at_version("activity-classifier", "1.1.0");
    let package = bench.signed(v110.path(), &calm_window());
    let bytes = std::fs::read(&package).unwrap();
    let id = packaging::hex_sha256(&bytes)[..16].to_owned();
    let chunk_size = 512;

    // Whenever the device asks for chunks, garbage of the right length for every chunk: for those not yet asked
    // for, it comes before the pusher's.
    let stop = Arc::new(AtomicBool::new(false));
    let poisoner = {
        let (stop, mut attacker) = (stop.clone(), Watch::new(port, "devices/wrist-01/update/request"));
        let chunks: Vec<usize> = bytes.chunks(chunk_size).map(<[u8]>::len).collect();
        std::thread::spawn(move || {
            let mut answered = 0;
            while !stop.load(Ordering::Relaxed) {
                attacker.drain(Duration::from_millis(20));
                if attacker.seen.len() > answered {
                    answered = attacker.seen.len();
                    for (index, len) in chunks.iter().enumerate() {
                        let topic = format!("devices/wrist-01/update/chunk/{id}/{index}");
                        attacker.publish(&topic, vec![0x5a; *len]);
                    }
                }
            }
            answered
        })
    };
    let outcome =
        Push::start(&package, port, &bench.trusted, &["--device", DEVICE, "--chunk-size", "512"]).finish(PUSH_WAIT);
    stop.store(true, Ordering::Relaxed);
    let requests = poisoner.join().unwrap();
    assert!(outcome.success, "{outcome:#?}\n{}", agent.log());
    let refusals = agent.log().matches("it does not match its signed sha256").count();
    eprintln!("{requests} requests answered with poison; {refusals} poisoned chunks refused; {}", outcome.summary);
    assert!(refusals > 0, "the poison arrived and was refused:\n{}", agent.log());
    assert_eq!(retained_status(port, DEVICE).running_version, "1.1.0");
}

#[test]
fn a_forged_committed_status_is_not_success() {
    let broker = Broker::start();
    let port = broker.port();
    let bench = Workbench::new();
    let v110 = at_version("activity-classifier", "1.1.0");
    let package = bench.signed(v110.path(), &calm_window());
    let sha256 = packaging::hex_sha256(&std::fs::read(&package).unwrap());
    // What the device would say had it committed the package; no device is there to say otherwise.
    let forged = UpdateStatus {
        device: "ghost-01".into(),
        state: UpdateState::Committed,
        update_id: Some(sha256[..16].to_owned()),
        model: "activity-classifier".into(),
        version: "1.1.0".into(),
        running_version: "1.1.0".into(),
        bytes: 0,
        size: 0,
        percent: 100.0,
        resumed_bytes: 0,
        reason: None,
        at_ms: now_ms() + 60_000,
        order: None,
        messages_dropped: 0,
        errors_unpublished: 0,
    };
    let published = std::process::Command::new("mosquitto_pub")
        .args(["-p", &port.to_string(), "-r", "-q", "1", "-t", "devices/ghost-01/update/status", "-m"])
        .arg(serde_json::to_string(&forged).unwrap())
        .status()
        .expect("mosquitto_pub runs");
    assert!(published.success());
    let outcome =
        Push::start(&package, port, &bench.trusted, &["--device", "ghost-01", "--timeout", "5"]).finish(PUSH_WAIT);
    assert!(!outcome.success, "{outcome:#?}");
    assert_eq!(outcome.state("ghost-01"), None, "{outcome:#?}");
}

#[test]
fn update_error_events_beyond_their_queue_are_counted() {
    // Unlimited queues in the broker: what is lost, the agent loses, and must count.
    let broker = Broker::start_with(&["allow_anonymous true", "max_queued_messages 0"]);
    let port = broker.port();
    let bench = Workbench::new();
    let state = tempfile::tempdir().unwrap();
    let mut errors = Watch::new(port, "devices/wrist-01/errors/update");
    let mut statuses = Watch::new(port, "devices/wrist-01/update/status");
    let attacker = Watch::new(port, "nothing/to/see");
    let agent = Agent::start(&wrist_config(&bench, port, state.path()));
    statuses.until(WAIT, log_of(&agent), |w| !w.statuses(DEVICE).is_empty());
    let sent = 5_000;
    for _ in 0..sent {
        attacker.publish(COMMAND_TOPIC, br#"{"command":"rollback"}"#.to_vec());
    }
    // Error events delivered, update messages dropped on the way in, error events not published.
    let mut accounted = (0, 0, 0);
    let deadline = std::time::Instant::now() + WAIT;
    while accounted.0 + accounted.1 + accounted.2 < sent && std::time::Instant::now() < deadline {
        errors.drain(Duration::from_millis(500));
        statuses.drain(Duration::ZERO);
        let status = statuses.statuses(DEVICE).pop().unwrap();
        accounted = (errors.seen.len() as u64, status.messages_dropped, status.errors_unpublished);
    }
    let (delivered, dropped, unpublished) = accounted;
    eprintln!(
        "{sent} bad commands: {delivered} error events delivered, {dropped} dropped on the way in (counted), \
         {unpublished} not published (counted)"
    );
    assert_eq!(delivered + dropped + unpublished, sent, "every bad command is an error event or a count");
    errors.drain(Duration::from_secs(2));
    assert_eq!(errors.seen.len() as u64, delivered, "no more came");
    assert!(errors.update_errors(DEVICE).iter().all(|e| e["kind"] == "malformed"));
}
