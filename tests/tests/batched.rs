//! Batched publishing (`[sources.batch]`): a recording replayed as fast as the worker takes its windows arrives
//! whole, in batches, once each and in order, and the agent's health counts what arrived.

use integration_tests::agent::Agent;
use integration_tests::broker::Broker;
use integration_tests::models_dir;
use integration_tests::subscriber::{Received, Subscriber};
use protocol::wire::{self, Format, Prediction, PredictionBatch};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// Windows of 100 samples every sample of the 800-sample activity recording.
const WINDOWS: u64 = 701;
const MAX_PREDICTIONS: u64 = 50;

/// Two sources on the same recording: `timed` runs the classifier's dynamic-batch variant (inferring what waits
/// in its queue as one batch) and publishes its last, partial batch after 50 ms; `held` runs the shipped
/// classifier and would wait a minute, so its last batch leaves only when the agent shuts down.
fn config(port: u16) -> String {
    let source = |name: &str, model: &str, max_delay_ms: u64| {
        format!(
            "[[sources]]\nname = \"{name}\"\nkind = \"csv\"\nmodel = \"{}\"\npath = \"{}\"\nstride = 1\nqueue = 64\n\
             [sources.batch]\nmax_predictions = {MAX_PREDICTIONS}\nmax_delay_ms = {max_delay_ms}\n",
            models_dir().join(model).display(),
            models_dir().join("recordings/activity.csv").display()
        )
    };
    format!(
        "device_id = \"d\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = {port}\n[health]\ninterval_secs = 1\n{}{}",
        source("timed", "testing/activity-classifier-batched", 50),
        source("held", "activity-classifier", 60_000)
    )
}

/// The predictions that arrived on `source`'s topic, message by message.
fn batches(got: &[Received], source: &str) -> Vec<Vec<Prediction>> {
    let topic = format!("devices/d/predictions/{source}");
    got.iter()
        .filter(|message| message.topic == topic)
        .map(|message| {
            wire::decode::<PredictionBatch>(Format::Json, &message.payload).expect("a batch").into_predictions()
        })
        .collect()
}

fn arrived(got: &[Received], source: &str) -> u64 {
    batches(got, source).iter().map(|batch| batch.len() as u64).sum()
}

/// The source's entry in the last health report that counts every window inferred.
fn health_of(got: &[Received], source: &str) -> Option<serde_json::Value> {
    got.iter().filter(|message| message.topic == "devices/d/health").map(Received::json).find_map(|health| {
        let sources = health["sources"].as_array()?;
        sources.iter().find(|s| s["name"] == source && s["frames_ok"] == WINDOWS).cloned()
    })
}

fn assert_whole_and_in_order(batches: &[Vec<Prediction>], source: &str) {
    let seqs: Vec<u64> = batches.iter().flatten().map(|prediction| prediction.seq).collect();
    assert_eq!(seqs, (0..WINDOWS).collect::<Vec<_>>(), "{source}: every window once, in order");
    assert!(batches.iter().all(|batch| batch.len() as u64 <= MAX_PREDICTIONS), "{source}: batches within the limit");
    assert!(batches.len() as u64 >= WINDOWS.div_ceil(MAX_PREDICTIONS), "{source}: at most 50 per message");
    let first = &batches[0][0];
    assert_eq!((first.source.as_str(), first.model.name.as_str()), (source, "activity-classifier"));
    assert_eq!(first.input.as_deref(), Some("activity.csv rows 1-100"));
}

#[test]
fn a_recording_replayed_at_full_speed_arrives_whole_in_batches() {
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port(), "devices/d/#");
    let agent = Agent::start(&config(broker.port()));

    let full_batches = WINDOWS - WINDOWS % MAX_PREDICTIONS;
    let got = sub.collect_until(WAIT, |got| {
        arrived(got, "timed") == WINDOWS
            && arrived(got, "held") >= full_batches
            && health_of(got, "timed").is_some()
            && health_of(got, "held").is_some()
    });
    assert_whole_and_in_order(&batches(&got, "timed"), "timed");
    for source in ["timed", "held"] {
        let health = health_of(&got, source).expect("counted");
        assert_eq!(health["frames_in"], WINDOWS, "{source}: {health}");
        assert_eq!(health["dropped"], 0, "{source}: {health}");
        assert_eq!(health["predictions_unpublished"], 0, "{source}: {health}");
        assert_eq!(health["errors"], serde_json::json!([]), "{source}: {health}");
    }
    let held_before_shutdown = arrived(&got, "held");
    assert_eq!(held_before_shutdown, full_batches, "only full batches before shutdown");

    let (status, log) = agent.terminate(WAIT);
    assert!(status.success(), "clean shutdown: {log}");
    let rest = sub.collect_until(WAIT, |more| held_before_shutdown + arrived(more, "held") == WINDOWS);
    let held: Vec<Vec<Prediction>> = batches(&got, "held").into_iter().chain(batches(&rest, "held")).collect();
    assert_whole_and_in_order(&held, "held");
    assert_eq!(arrived(&rest, "timed"), 0, "nothing twice");
}
