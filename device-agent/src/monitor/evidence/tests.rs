use super::fetch::{answer, locate};
use super::*;
use protocol::wire::{AlertKind, Severity, Topics};
use std::path::Path;

fn config(samples: usize, max_bytes: u64) -> EvidenceConfig {
    EvidenceConfig { samples, max_bytes, directory: None }
}

fn model() -> ModelIdentity {
    ModelIdentity { name: "demo".into(), version: "1.0.0".into(), sha256: "ab".repeat(32) }
}

fn alert() -> Alert {
    Alert {
        kind: AlertKind::Drift,
        subject: "brightness".into(),
        statistic: "psi".into(),
        value: 0.4,
        threshold: 0.25,
        severity: Severity::Alert,
        since_ms: 5,
    }
}

/// A JPEG-looking input of `len` bytes, distinct per `seq`.
fn jpeg(seq: u64, len: usize) -> Input {
    let mut bytes = vec![0xFF, 0xD8, 0xFF];
    bytes.extend((0..len - 3).map(|i| (i as u64 * 31 + seq) as u8));
    Input::Image(bytes)
}

fn image_bytes(input: &Input) -> &[u8] {
    match input {
        Input::Image(bytes) => bytes,
        _ => unreachable!(),
    }
}

/// Bytes of every file under `dir`, recursively.
fn bytes_on_disk(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                bytes_on_disk(&entry.path())
            } else {
                entry.metadata().unwrap().len()
            }
        })
        .sum()
}

#[test]
fn a_capture_writes_the_last_samples_byte_for_byte_with_their_announcement() {
    let dir = tempfile::tempdir().unwrap();
    let mut evidence = Evidence::open(dir.path().to_owned(), "d1", "cam", &config(3, 1 << 20)).unwrap();
    let inputs: Vec<Input> = (0..5).map(|seq| jpeg(seq, 1000)).collect();
    for (seq, input) in inputs.iter().enumerate() {
        evidence.offer(seq as u64, 100 + seq as u64, input);
    }
    let candidate = evidence.capture(&model(), &[alert()], 1_700_000_000_000).unwrap();
    assert_eq!((candidate.candidate.as_str(), candidate.device.as_str()), ("1700000000000-0", "d1"));
    let ids: Vec<&str> = candidate.samples.iter().map(|sample| sample.id.as_str()).collect();
    assert_eq!(ids, ["2.jpg", "3.jpg", "4.jpg"], "the last three, oldest first");
    let written = dir.path().join("cam").join("1700000000000-0");
    for (sample, input) in candidate.samples.iter().zip(&inputs[2..]) {
        assert_eq!(std::fs::read(written.join(&sample.id)).unwrap(), image_bytes(input));
        assert_eq!((sample.kind.as_str(), sample.bytes, sample.frame.clone()), ("jpeg", 1000, None));
    }
    let stored: RetrainCandidate =
        serde_json::from_slice(&std::fs::read(written.join(store::CANDIDATE_FILE)).unwrap()).unwrap();
    assert_eq!(stored, candidate);
    assert_eq!(evidence.stored(), (3, bytes_on_disk(dir.path())));

    // The samples went with the candidate: the next one holds what came after, under a fresh id.
    evidence.offer(5, 200, &jpeg(5, 1000));
    let next = evidence.capture(&model(), &[alert()], 1_700_000_000_000).unwrap();
    assert_eq!(next.candidate, "1700000000000-1");
    assert_eq!(next.samples.iter().map(|s| s.seq).collect::<Vec<_>>(), [5]);
}

#[test]
fn the_byte_cap_holds_in_memory_and_on_disk_the_oldest_deleted_first() {
    let dir = tempfile::tempdir().unwrap();
    let cap = 10_000;
    let mut evidence = Evidence::open(dir.path().to_owned(), "d1", "cam", &config(100, cap)).unwrap();
    let mut ids = Vec::new();
    for round in 0..6u64 {
        for seq in round * 10..round * 10 + 10 {
            evidence.offer(seq, seq, &jpeg(seq, 1500));
        }
        let candidate = evidence.capture(&model(), &[alert()], 1_000 + round).unwrap();
        let kept: u64 = candidate.samples.iter().map(|sample| sample.bytes).sum();
        assert!(kept <= cap, "one candidate alone fits the cap");
        assert_eq!(candidate.samples.last().map(|s| s.seq), Some(round * 10 + 9), "the newest kept");
        ids.push(candidate.candidate);
        let on_disk = bytes_on_disk(dir.path());
        assert!(on_disk <= cap, "{on_disk} bytes on disk after round {round}");
        assert_eq!(evidence.stored().1, on_disk);
        assert!(dir.path().join("cam").join(ids.last().unwrap()).is_dir(), "the new candidate is never deleted");
    }
    assert!(!dir.path().join("cam").join(&ids[0]).exists(), "the oldest went first");
}

#[test]
fn candidates_survive_a_restart_and_a_lowered_cap_and_temporaries_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut evidence = Evidence::open(dir.path().to_owned(), "d1", "cam", &config(4, 1 << 20)).unwrap();
    for at_ms in [10, 20] {
        for seq in 0..4 {
            evidence.offer(seq, seq, &jpeg(seq + at_ms, 2000));
        }
        evidence.capture(&model(), &[alert()], at_ms).unwrap();
    }
    let before = evidence.stored();
    drop(evidence);
    std::fs::create_dir(dir.path().join("cam").join(".tmp-30-0")).unwrap();
    std::fs::write(dir.path().join("cam").join(".tmp-30-0").join("0.jpg"), b"half").unwrap();
    let reopened = Evidence::open(dir.path().to_owned(), "d1", "cam", &config(4, 1 << 20)).unwrap();
    assert_eq!(reopened.stored(), before);
    assert_eq!(before.0, 8);
    assert!(!dir.path().join("cam").join(".tmp-30-0").exists(), "an interrupted capture is removed");

    let lowered = Evidence::open(dir.path().to_owned(), "d1", "cam", &config(4, before.1 - 1)).unwrap();
    assert_eq!(lowered.stored().0, 4, "the oldest candidate went");
    assert!(!dir.path().join("cam").join("10-0").exists() && dir.path().join("cam").join("20-0").exists());
}

#[test]
fn disk_errors_are_returned() {
    let dir = tempfile::tempdir().unwrap();
    let mut evidence = Evidence::open(dir.path().to_owned(), "d1", "cam", &config(4, 1 << 20)).unwrap();
    evidence.offer(1, 1, &jpeg(1, 100));
    std::fs::remove_dir_all(dir.path().join("cam")).unwrap();
    assert!(evidence.capture(&model(), &[alert()], 5).is_err());
    assert_eq!(evidence.stored(), (0, 0));
    let file = dir.path().join("file");
    std::fs::write(&file, b"not a directory").unwrap();
    assert!(Evidence::open(file, "d1", "cam", &config(4, 1 << 20)).is_err());
}

#[test]
fn a_fetch_publishes_the_samples_within_the_packet_limit_and_lists_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut evidence = Evidence::open(dir.path().to_owned(), "d1", "cam", &config(4, 1 << 20)).unwrap();
    let (small, large) = (jpeg(1, 500), jpeg(2, 5000));
    evidence.offer(1, 1, &small);
    evidence.offer(2, 2, &large);
    let candidate = evidence.capture(&model(), &[alert()], 77).unwrap();
    let dirs = [dir.path().join("other"), dir.path().join("cam")];
    let topics = Topics::new("devices/d1");
    let mut sent = Vec::new();
    let answered = answer(&dirs, &topics, "d1", &candidate.candidate, 9, 2000, |topic, bytes| {
        sent.push((topic, bytes));
        Ok(())
    });
    assert_eq!(sent, [("devices/d1/retrain/samples/77-0/1.jpg".to_owned(), image_bytes(&small).to_vec())]);
    assert_eq!((answered.order, answered.published.clone()), (9, vec!["1.jpg".to_owned()]));
    assert_eq!(answered.skipped.len(), 1);
    assert!(answered.skipped[0].reason.contains("5000 bytes"), "{:?}", answered.skipped);
    assert_eq!(answered.announcement, Some(candidate));

    for bad in ["../cam/77-0", "77-0/../../etc", "77-1", "x"] {
        let refused = answer(&dirs, &topics, "d1", bad, 10, 2000, |_, _| panic!("nothing is published"));
        assert!(refused.error.is_some() && refused.announcement.is_none(), "{bad}");
    }
    assert!(locate(&dirs, "77-0").is_ok());
}
