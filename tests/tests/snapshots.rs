//! Snapshots end to end: the agent on a frame with faces, a rule on the face detector's detections, and the
//! JPEGs that come out on the snapshot topic and in the snapshot directory.

use integration_tests::agent::Agent;
use integration_tests::broker::Broker;
use integration_tests::models_dir;
use integration_tests::subscriber::{Received, Subscriber};
use std::collections::HashSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);
const SNAPSHOTS: &str = "devices/cam-01/snapshots/door";
const PREDICTIONS: &str = "devices/cam-01/predictions/door";

/// The JSON in a JPEG's comment segment, which the agent writes right after the start of the image.
fn comment(jpeg: &[u8]) -> serde_json::Value {
    assert_eq!(&jpeg[..4], [0xFF, 0xD8, 0xFF, 0xFE], "a JPEG whose first segment is a comment");
    let length = usize::from(u16::from_be_bytes([jpeg[4], jpeg[5]]));
    serde_json::from_slice(&jpeg[6..4 + length]).expect("the comment is JSON")
}

fn on<'a>(messages: &'a [Received], topic: &'a str) -> impl Iterator<Item = &'a Received> {
    messages.iter().filter(move |message| message.topic == topic)
}

#[test]
fn matching_predictions_give_rate_limited_snapshots_with_their_sequence_number() {
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port(), "devices/cam-01/#");
    let stored = tempfile::tempdir().expect("tempdir");
    let frame = models_dir().join("frames/people.jpg");
    let config = format!(
        r#"device_id = "cam-01"
[mqtt]
host = "127.0.0.1"
port = {port}
[health]
interval_secs = 1
[[sources]]
name = "door"
kind = "images"
model = "{model}"
files = ["{frame}"]
loop = true
rate_fps = 5.0
[[snapshots]]
source = "door"
labels = ["face"]
min_score = 0.5
min_interval_secs = 2.0
directory = "{stored}"
keep_files = 2
"#,
        port = broker.port(),
        model = models_dir().join("face-detector").display(),
        frame = frame.display(),
        stored = stored.path().display(),
    );
    let agent = Agent::start(&config);

    let got = sub.collect_until(WAIT, |got| on(got, SNAPSHOTS).count() >= 3);
    let predictions: Vec<serde_json::Value> = on(&got, PREDICTIONS).map(Received::json).collect();
    let faces: HashSet<u64> = predictions
        .iter()
        .filter(|prediction| {
            prediction["output"]["detection"]["detections"]
                .as_array()
                .is_some_and(|faces| faces.iter().any(|face| face["score"].as_f64() >= Some(0.5)))
        })
        .map(|prediction| prediction["seq"].as_u64().expect("seq"))
        .collect();
    let snapshots: Vec<&Received> = on(&got, SNAPSHOTS).collect();
    let (width, height) = image::image_dimensions(&frame).expect("the frame's size");
    let mut seqs = Vec::new();
    for snapshot in &snapshots {
        let meta = comment(&snapshot.payload);
        assert_eq!((meta["device"].as_str(), meta["source"].as_str()), (Some("cam-01"), Some("door")));
        let seq = meta["seq"].as_u64().expect("seq");
        assert!(faces.contains(&seq), "snapshot of seq {seq}: no prediction with a face above 0.5 had it");
        let decoded = image::load_from_memory_with_format(&snapshot.payload, image::ImageFormat::Jpeg)
            .expect("the snapshot decodes");
        assert_eq!((decoded.width(), decoded.height()), (width, height), "the frame's size");
        seqs.push(seq);
    }
    assert!(seqs.windows(2).all(|pair| pair[0] < pair[1]), "in order: {seqs:?}");
    // 5 frames/s (or as fast as the detector goes) against one snapshot per 2 s.
    assert!(
        snapshots.len() < predictions.len(),
        "rate-limited: {} snapshots for {} predictions",
        snapshots.len(),
        predictions.len()
    );

    // Health counts what was skipped for the interval; a later subscriber gets the newest snapshot, retained.
    let health = sub.collect_until(WAIT, |got| {
        on(got, "devices/cam-01/health").any(|health| health.json()["snapshots"][0]["rate_limited"].as_u64() > Some(0))
    });
    let report = on(&health, "devices/cam-01/health").last().expect("a report").json();
    let counts = &report["snapshots"][0];
    assert_eq!(counts["source"], "door");
    assert!(counts["published"].as_u64() >= Some(3) && counts["stored"].as_u64() >= Some(3), "{counts}");
    assert_eq!((counts["too_large"].as_u64(), counts["failed"].as_u64()), (Some(0), Some(0)), "{counts}");
    let late = Subscriber::connect(broker.port(), SNAPSHOTS);
    let retained = late.first_on(SNAPSHOTS, WAIT);
    assert!(retained.retain, "the snapshot is retained");
    assert!(comment(&retained.payload)["seq"].as_u64() >= seqs.last().copied());

    // The directory keeps the newest two, named by capture time and sequence number.
    let (status, log) = agent.terminate(Duration::from_secs(30));
    assert!(status.success(), "{log}");
    let mut files: Vec<String> = std::fs::read_dir(stored.path())
        .expect("the snapshot directory")
        .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    for name in &files {
        let seq: u64 = name.trim_end_matches(".jpg").rsplit('-').next().and_then(|seq| seq.parse().ok()).expect(name);
        let jpeg = std::fs::read(stored.path().join(name)).expect("readable");
        assert_eq!(comment(&jpeg)["seq"].as_u64(), Some(seq), "{name}");
        assert!(name.starts_with("door-"), "{name}");
    }
}
