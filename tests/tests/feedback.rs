//! Accuracy from feedback end to end: the agent classifies the activity recording, the test sends ground truth
//! for the predictions it saw (the model's own labels, every fourth one swapped for another class), and the
//! accuracy, precision and recall on the monitor topic equal what the test computes from the same pairs; late,
//! unknown, repeated and undecodable feedback is counted, not guessed.

use integration_tests::agent::Agent;
use integration_tests::broker::Broker;
use integration_tests::models_dir;
use integration_tests::subscriber::{Received, Subscriber};
use integration_tests::update::{csv_loop, quoted};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);
const PREDICTIONS: &str = "devices/fb-1/predictions/wrist";
const MONITOR: &str = "devices/fb-1/monitor/wrist";
const FEEDBACK: &str = "devices/fb-1/feedback/wrist";
/// Predictions the agent remembers: feedback older than that is late.
const REMEMBER: u64 = 200;
/// Pairs the test labels, all within the remembered predictions.
const LABELLED: usize = 60;

/// The labels of `models/activity-classifier`, in index order.
fn labels() -> Vec<String> {
    let text = std::fs::read_to_string(models_dir().join("activity-classifier/labels.txt")).expect("labels.txt");
    text.lines().map(str::to_owned).collect()
}

/// (seq, top-1 label) of a prediction.
fn predicted(message: &Received) -> (u64, String) {
    let json = message.json();
    let label = json["output"]["classification"]["classes"][0]["label"].as_str().expect("a classification");
    (json["seq"].as_u64().expect("seq"), label.to_owned())
}

/// A ratio as the agent computes it: in f64, reported as f32 (`None` over nothing).
fn ratio(numerator: usize, denominator: usize) -> Option<f32> {
    (denominator > 0).then(|| (numerator as f64 / denominator as f64) as f32)
}

/// A reported f32 (JSON writes its shortest decimal form, which reads back as the same f32).
fn reported(value: &Value) -> Option<f32> {
    value.as_f64().map(|value| value as f32)
}

#[test]
fn accuracy_on_the_monitor_topic_equals_the_accuracy_of_the_pairs_sent() {
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port(), "devices/fb-1/#");
    let model = models_dir().join("activity-classifier");
    let config = format!(
        "device_id = \"fb-1\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = {}\n{}[[monitors]]\nsource = {}\nwindow = 20\n\
         stride = 10\npublish_secs = 1\n[monitors.feedback]\nremember = {REMEMBER}\nwindow = 500\n",
        broker.port(),
        csv_loop("wrist", &model, 20),
        quoted("wrist"),
    );
    let agent = Agent::start(&config);

    // Predictions until the oldest ones are out of the ring.
    let predictions = |got: &[Received]| -> BTreeMap<u64, String> {
        got.iter().filter(|message| message.topic == PREDICTIONS).map(predicted).collect()
    };
    let got = sub.collect_until(WAIT, |got| {
        got.last().is_some_and(|last| last.topic == PREDICTIONS && predicted(last).0 > REMEMBER + 60)
    });
    let seen = predictions(&got);

    let labels = labels();
    let newest = *seen.keys().next_back().expect("predictions");
    let pairs: Vec<(u64, String, String)> = seen
        .range(newest + 1 - LABELLED as u64..)
        .enumerate()
        .map(|(index, (&seq, predicted))| {
            let truth = if index % 4 == 0 {
                let other = (labels.iter().position(|label| label == predicted).expect("a known label") + 1) % 4;
                labels[other].clone()
            } else {
                predicted.clone()
            };
            (seq, predicted.clone(), truth)
        })
        .collect();
    assert_eq!(pairs.len(), LABELLED, "the newest predictions have consecutive seqs");
    for (seq, _, truth) in &pairs {
        sub.publish(FEEDBACK, json!({"seq": seq, "label": truth}).to_string());
    }
    // Counted once: the same truth again for a labelled seq.
    sub.publish(FEEDBACK, json!({"seq": pairs[1].0, "label": pairs[1].2}).to_string());
    // Late: older than the ring holds.
    sub.publish(FEEDBACK, json!({"seq": 1, "label": labels[0]}).to_string());
    sub.publish(FEEDBACK, json!({"seq": 2, "label": labels[0]}).to_string());
    // Unknown: never predicted, and a label the model does not have.
    sub.publish(FEEDBACK, json!({"seq": 1_000_000_000u64, "label": labels[0]}).to_string());
    sub.publish(FEEDBACK, json!({"seq": newest, "label": "flying"}).to_string());
    // Invalid: not a feedback message.
    sub.publish(FEEDBACK, "not json");

    let expected_totals = json!({"matched": LABELLED, "late": 2, "unknown": 2, "invalid": 1});
    let totals = |accuracy: &Value| {
        json!({"matched": accuracy["matched_total"], "late": accuracy["late_total"],
               "unknown": accuracy["unknown_total"], "invalid": accuracy["invalid_total"]})
    };
    let reports = sub.collect_until(WAIT, |got| {
        got.iter().any(|message| message.topic == MONITOR && totals(&message.json()["accuracy"]) == expected_totals)
    });
    let report = reports.iter().rev().find(|message| message.topic == MONITOR).expect("a monitor report").json();
    let accuracy = &report["accuracy"];

    let correct = pairs.iter().filter(|(_, predicted, truth)| predicted == truth).count();
    assert_eq!((accuracy["labelled"].as_u64(), accuracy["correct"].as_u64()), (Some(60), Some(correct as u64)));
    assert_eq!(reported(&accuracy["accuracy"]), ratio(correct, LABELLED), "{accuracy}");
    assert_eq!(correct, LABELLED - LABELLED / 4, "every fourth truth differs");
    for (class, label) in labels.iter().enumerate() {
        let hits = pairs.iter().filter(|(_, p, t)| p == label && t == label).count();
        let predicted = pairs.iter().filter(|(_, p, _)| p == label).count();
        let actual = pairs.iter().filter(|(_, _, t)| t == label).count();
        let class = &accuracy["classes"][class];
        assert_eq!(class["label"], json!(label));
        assert_eq!(reported(&class["precision"]), ratio(hits, predicted), "{label}: {class}");
        assert_eq!(reported(&class["recall"]), ratio(hits, actual), "{label}: {class}");
        assert_eq!(class["support"], json!(actual), "{label}: {class}");
    }

    let (status, log) = agent.terminate(Duration::from_secs(20));
    assert!(status.success(), "the agent stops cleanly:\n{log}");
}
