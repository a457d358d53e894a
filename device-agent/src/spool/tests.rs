//! The spool on real files: recovery from torn and corrupt tails, budgets, acknowledgements and reopening.

use super::*;
use std::path::Path;

const SEGMENT: u64 = 4096;
/// With the topic below, a record is 1050 bytes: three fit a segment.
const PAYLOAD: usize = 1000;
const TOPIC: &str = "devices/d/predictions/s";

/// A spool in `dir` with 4 KiB segments and budgets of `per_class` bytes per class and `total` in all.
pub(crate) fn config(dir: &Path, per_class: u64, total: u64) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_owned(),
        max_bytes: total,
        predictions_max_bytes: per_class,
        errors_max_bytes: per_class,
        health_max_bytes: per_class,
        segment_bytes: SEGMENT,
        fsync: Fsync::Never,
        ..SpoolConfig::default()
    }
}

fn payload(seq: u64) -> Vec<u8> {
    let mut payload = vec![(seq % 251) as u8; PAYLOAD];
    payload[..8].copy_from_slice(&seq.to_le_bytes());
    payload
}

fn append(spool: &Spool, class: Class, count: u64) {
    for _ in 0..count {
        let seq = spool.lock().class(class).head();
        spool.append(class, TOPIC, 1, &payload(seq)).expect("appended");
    }
}

/// Every record the log would send, live and backlog, in order (marked in flight).
fn unsent(spool: &Spool, class: Class) -> Vec<Record> {
    let mut logs = spool.lock();
    let log = logs.class(class);
    let mut seqs: Vec<u64> = std::iter::from_fn(|| log.next_backlog()).collect();
    seqs.extend(std::iter::from_fn(|| log.next_live()));
    seqs.into_iter().map(|seq| log.read(seq).expect("readable")).collect()
}

fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .expect("log dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .collect();
    files.sort();
    files
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn a_torn_or_corrupt_tail_is_cut_at_the_last_whole_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = Spool::open(&config(dir.path(), 1 << 20, 4 << 20)).expect("opened");
    append(&spool, Class::Predictions, 10);
    drop(spool);
    let log_dir = dir.path().join("predictions");
    let files = segment_files(&log_dir);
    let last = files.last().expect("a segment").clone();
    let whole = fs::read(&last).expect("read");
    let first_seq = segment::parse_name(&last.file_name().expect("name").to_string_lossy()).expect("a segment name");
    let record_len = whole.len() / (10 - first_seq) as usize;

    let mut random = 0x2545_F491_4F6C_DD1Du64;
    for round in 0..40 {
        let cut = (xorshift(&mut random) % whole.len() as u64) as usize;
        let mut damaged = whole[..cut].to_vec();
        if round % 2 == 1 {
            // Garbage after the cut instead of nothing: a write that reached the disk only in part.
            damaged.extend((0..(xorshift(&mut random) % 64)).map(|_| xorshift(&mut random) as u8));
        }
        fs::write(&last, &damaged).expect("damaged");
        let spool = Spool::open(&config(dir.path(), 1 << 20, 4 << 20)).expect("reopened");
        let whole_records = (cut / record_len) as u64;
        let records = unsent(&spool, Class::Predictions);
        let seqs: Vec<u64> = records.iter().map(|record| record.seq).collect();
        assert_eq!(seqs, (0..first_seq + whole_records).collect::<Vec<_>>(), "cut at {cut} (round {round})");
        assert!(records.iter().all(|record| record.payload == payload(record.seq) && record.topic == TOPIC));
        assert_eq!(fs::metadata(&last).map(|m| m.len()).unwrap_or(0), whole_records * record_len as u64);
        // Appending goes on after the cut.
        append(&spool, Class::Predictions, 1);
        assert_eq!(unsent(&spool, Class::Predictions).last().map(|record| record.seq), Some(first_seq + whole_records));
        drop(spool);
        fs::write(&last, &whole).expect("restored");
        for extra in segment_files(&log_dir).into_iter().filter(|file| !files.contains(file)) {
            fs::remove_file(extra).expect("removed");
        }
    }
}

#[test]
fn a_flipped_bit_in_a_record_is_never_read_as_a_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = Spool::open(&config(dir.path(), 1 << 20, 4 << 20)).expect("opened");
    append(&spool, Class::Predictions, 3);
    drop(spool);
    let files = segment_files(&dir.path().join("predictions"));
    let mut bytes = fs::read(&files[0]).expect("read");
    // In the payload of the second record.
    let record_len = bytes.len() / 3;
    bytes[record_len + 500] ^= 0x04;
    fs::write(&files[0], &bytes).expect("damaged");
    let spool = Spool::open(&config(dir.path(), 1 << 20, 4 << 20)).expect("reopened");
    let seqs: Vec<u64> = unsent(&spool, Class::Predictions).iter().map(|record| record.seq).collect();
    assert_eq!(seqs, [0]);
}

#[test]
fn a_full_class_drops_its_oldest_segment_and_counts_exactly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = Spool::open(&config(dir.path(), 2 * SEGMENT + 100, 1 << 20)).expect("opened");
    append(&spool, Class::Predictions, 20);
    let health = spool.health();
    // Three records a segment, at most two segments: the newest records stay, the oldest went first.
    let records = unsent(&spool, Class::Predictions);
    let first_kept = records[0].seq;
    assert_eq!(records.iter().map(|record| record.seq).collect::<Vec<_>>(), (first_kept..20).collect::<Vec<_>>());
    assert_eq!(health.dropped_predictions, first_kept);
    assert_eq!(health.records, 20 - first_kept);
    assert!(health.bytes <= 2 * SEGMENT + 100, "{} bytes", health.bytes);
    assert_eq!((health.dropped_errors, health.dropped_health, health.write_errors), (0, 0, 0));
    assert_eq!(first_kept, 15);
    assert_eq!(segment_files(&dir.path().join("predictions")).len(), 2);
}

#[test]
fn over_the_total_health_goes_first_then_predictions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = Spool::open(&config(dir.path(), 4 * SEGMENT, 4 * SEGMENT)).expect("opened");
    append(&spool, Class::Predictions, 9);
    append(&spool, Class::Health, 6);
    let before = spool.health();
    assert_eq!((before.dropped_predictions, before.dropped_health), (0, 0));
    // 3 prediction and 2 health segments: the next 4 KiB segment would break the total, and health gives way.
    append(&spool, Class::Errors, 3);
    let after = spool.health();
    assert_eq!((after.dropped_predictions, after.dropped_health, after.dropped_errors), (0, 3, 0));
    append(&spool, Class::Errors, 6);
    let last = spool.health();
    assert_eq!(last.dropped_health, 6, "every health record went before any prediction");
    assert_eq!((last.dropped_predictions, last.dropped_errors), (3, 0));
    assert_eq!(last.records + last.dropped_health + last.dropped_predictions, 9 + 6 + 9);
    assert!(last.bytes <= 4 * SEGMENT);
}

#[test]
fn a_message_larger_than_its_budget_is_dropped_and_counted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = Spool::open(&config(dir.path(), 2 * SEGMENT, 1 << 20)).expect("opened");
    spool.append(Class::Health, "t", 0, &vec![0; 3 * SEGMENT as usize]).expect("handled");
    let health = spool.health();
    assert_eq!((health.dropped_health, health.records), (1, 0));
}

#[test]
fn acknowledged_segments_are_deleted_and_a_reopen_resumes_after_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log_dir = dir.path().join("predictions");
    let spool = Spool::open(&config(dir.path(), 1 << 20, 4 << 20)).expect("opened");
    append(&spool, Class::Predictions, 10);
    assert_eq!(segment_files(&log_dir).len(), 4);
    assert_eq!(unsent(&spool, Class::Predictions).len(), 10);
    {
        let mut logs = spool.lock();
        let log = logs.class(Class::Predictions);
        for seq in (0..7).rev() {
            log.acknowledged(seq);
        }
        log.lost(8);
    }
    // Records 0..6 filled the first two segments: gone. 6 shares the third with 7 and 8.
    assert_eq!(segment_files(&log_dir).len(), 2);
    let health = spool.health();
    let on_disk: u64 = segment_files(&log_dir).iter().map(|file| fs::metadata(file).expect("metadata").len()).sum();
    assert_eq!((health.records, health.bytes), (3, on_disk));
    spool.lock().class(Class::Predictions).persist_position(true).expect("persisted");
    drop(spool);

    let spool = Spool::open(&config(dir.path(), 1 << 20, 4 << 20)).expect("reopened");
    let seqs: Vec<u64> = unsent(&spool, Class::Predictions).iter().map(|record| record.seq).collect();
    assert_eq!(seqs, [7, 8, 9]);
    // New records continue the sequence.
    append(&spool, Class::Predictions, 1);
    assert_eq!(unsent(&spool, Class::Predictions).iter().map(|record| record.seq).collect::<Vec<_>>(), [10]);
}

#[test]
fn a_second_agent_cannot_open_the_same_spool() {
    let dir = tempfile::tempdir().expect("temp dir");
    let _first = Spool::open(&config(dir.path(), 1 << 20, 4 << 20)).expect("opened");
    let second = Spool::open(&config(dir.path(), 1 << 20, 4 << 20));
    assert!(matches!(second, Err(SpoolError::Locked(_))), "{second:?}");
}

#[test]
fn an_unwritable_directory_is_a_typed_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("not-a-dir");
    fs::write(&file, b"").expect("file");
    let error = Spool::open(&config(&file.join("spool"), 1 << 20, 4 << 20)).expect_err("cannot open");
    assert!(matches!(error, SpoolError::Io { .. }), "{error:?}");
}
