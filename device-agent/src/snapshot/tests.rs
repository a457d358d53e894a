//! The worker's side (rule, rate limit, hand-off) and the snapshot thread's output, stored in a directory.

use super::*;
use crate::config::SnapshotConfig;
use runtime::Detection;
use std::path::Path;

fn face(x_min: f32, score: f32) -> Output {
    let bbox = BoundingBox { x_min, y_min: 4.0, x_max: x_min + 20.0, y_max: 30.0 };
    Output::Detection {
        detections: vec![Detection {
            class_index: 0,
            label: "face".into(),
            score,
            bbox,
            landmarks: Vec::new(),
            polygon: Vec::new(),
            keypoints: Vec::new(),
            mask: None,
            stages: Vec::new(),
        }],
    }
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let frame = RgbImage::from_pixel(width, height, image::Rgb([90, 90, 90]));
    let mut bytes = std::io::Cursor::new(Vec::new());
    frame.write_to(&mut bytes, image::ImageFormat::Png).expect("PNG encodes");
    bytes.into_inner()
}

fn job(seq: u64, input: Vec<u8>) -> Job {
    Job { seq, captured_at_ms: 1_700_000_000_000 + seq, origin: String::new(), input: Input::Image(input) }
}

fn stored_config(dir: &Path) -> SnapshotConfig {
    SnapshotConfig {
        source: "door".into(),
        labels: vec!["face".into()],
        publish: false,
        directory: Some(dir.to_owned()),
        min_interval_secs: 10.0,
        ..SnapshotConfig::default()
    }
}

fn stored_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir).map_or_else(
        |_| Vec::new(),
        |entries| entries.map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned()).collect(),
    );
    names.sort();
    names
}

fn wait_for(done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The JSON of a JPEG's first comment segment.
fn comment(jpeg: &[u8]) -> serde_json::Value {
    assert_eq!(&jpeg[2..4], [0xFF, 0xFE], "a comment right after SOI");
    let length = usize::from(u16::from_be_bytes([jpeg[4], jpeg[5]]));
    serde_json::from_slice(&jpeg[6..4 + length]).expect("JSON")
}

#[test]
fn matches_are_rate_limited_and_written_with_their_sequence_number() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stats = Arc::new(SnapshotStats::default());
    let mut snapshots = Snapshots::start(&stored_config(dir.path()), "cam-01", None, stats.clone()).expect("starts");
    let start = Instant::now();
    snapshots.consider_at(&job(0, png(64, 48)), &face(10.0, 0.2), start);
    snapshots.consider_at(&job(1, png(64, 48)), &face(10.0, 0.9), start);
    snapshots.consider_at(&job(2, png(64, 48)), &face(10.0, 0.9), start + Duration::from_secs(5));
    // The thread takes the first from the channel before the next is handed over (else: busy).
    wait_for(|| stats.health("door").stored == 1);
    snapshots.consider_at(&job(3, png(64, 48)), &face(10.0, 0.9), start + Duration::from_secs(10));
    snapshots.finish();

    let health = stats.health("door");
    assert_eq!((health.stored, health.rate_limited, health.published, health.failed), (2, 1, 0, 0));
    let files = stored_files(dir.path());
    assert_eq!(files, ["door-1700000000001-1.jpg", "door-1700000000003-3.jpg"]);
    let jpeg = std::fs::read(dir.path().join(&files[0])).expect("readable");
    assert_eq!(
        comment(&jpeg),
        serde_json::json!({"device": "cam-01", "source": "door", "seq": 1, "captured_at_ms": 1_700_000_000_001u64})
    );
    let frame = image::load_from_memory(&jpeg).expect("decodes").to_rgb8();
    assert_eq!(frame.dimensions(), (64, 48));
    // The box's top-left corner is green, the middle of the box still grey (within JPEG's loss).
    let corner = frame.get_pixel(11, 5);
    assert!(corner[1] > 200 && corner[0] < 80, "edge {corner:?}");
    let inside = frame.get_pixel(20, 17);
    assert!(inside.0.iter().all(|&c| (80..=100).contains(&c)), "inside {inside:?}");
}

#[test]
fn a_full_hand_off_skips_and_leaves_the_rate_limit_unused() {
    let (sender, _waiting) = std::sync::mpsc::sync_channel(1);
    let stats = Arc::new(SnapshotStats::default());
    let mut snapshots = Snapshots {
        rule: Rule::new(&stored_config(Path::new("unused"))),
        limit: RateLimit::new(Duration::from_secs(10)),
        draw_boxes: true,
        sender,
        stats: stats.clone(),
        thread: std::thread::spawn(|| ()),
    };
    let start = Instant::now();
    let at = |secs| start + Duration::from_secs(secs);
    // The first waits in the channel (nothing takes it), the second is within the interval.
    snapshots.consider_at(&job(0, Vec::new()), &face(0.0, 0.9), at(0));
    snapshots.consider_at(&job(1, Vec::new()), &face(0.0, 0.9), at(1));
    assert_eq!((stats.health("door").busy, stats.health("door").rate_limited), (0, 1));
    // After the interval the channel is still full: skipped, and the interval is not used up by a skip.
    snapshots.consider_at(&job(2, Vec::new()), &face(0.0, 0.9), at(10));
    snapshots.consider_at(&job(3, Vec::new()), &face(0.0, 0.9), at(11));
    assert_eq!((stats.health("door").busy, stats.health("door").rate_limited), (2, 1));
}

#[test]
fn a_camera_jpeg_without_boxes_is_sent_as_it_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = SnapshotConfig { draw_boxes: false, ..stored_config(dir.path()) };
    let stats = Arc::new(SnapshotStats::default());
    let original = {
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95)
            .encode(&[200u8; 32 * 16 * 3], 32, 16, image::ExtendedColorType::Rgb8)
            .expect("encodes");
        bytes
    };
    let mut snapshots = Snapshots::start(&config, "cam-01", None, stats.clone()).expect("starts");
    snapshots.consider_at(&job(4, original.clone()), &face(0.0, 0.9), Instant::now());
    snapshots.finish();
    let files = stored_files(dir.path());
    let stored = std::fs::read(dir.path().join(&files[0])).expect("stored");
    // SOI, the comment's marker, then its length (which counts itself).
    let comment_length = usize::from(u16::from_be_bytes([stored[4], stored[5]]));
    assert_eq!(stored[..2], original[..2]);
    assert_eq!(stored[4 + comment_length..], original[2..], "the camera's bytes follow the comment");
}

#[test]
fn a_frame_over_max_bytes_at_every_scale_is_counted_too_large() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Noise does not compress: 512×512 of it is far over 1000 bytes even at a quarter size and quality 30.
    let mut state = 1u32;
    let noise: Vec<u8> = (0..512 * 512 * 3)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        })
        .collect();
    let frame = RgbImage::from_raw(512, 512, noise).expect("sized");
    let mut bytes = std::io::Cursor::new(Vec::new());
    frame.write_to(&mut bytes, image::ImageFormat::Png).expect("PNG encodes");
    let config = SnapshotConfig { max_bytes: 1000, ..stored_config(dir.path()) };
    let stats = Arc::new(SnapshotStats::default());
    let mut snapshots = Snapshots::start(&config, "cam-01", None, stats.clone()).expect("starts");
    snapshots.consider_at(&job(0, bytes.into_inner()), &face(0.0, 0.9), Instant::now());
    snapshots.finish();
    let health = stats.health("door");
    assert_eq!((health.too_large, health.stored), (1, 0));
    assert!(stored_files(dir.path()).is_empty());
}

#[test]
fn an_undecodable_frame_is_counted_failed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stats = Arc::new(SnapshotStats::default());
    let mut snapshots = Snapshots::start(&stored_config(dir.path()), "cam-01", None, stats.clone()).expect("starts");
    snapshots.consider_at(&job(0, b"not an image".to_vec()), &face(0.0, 0.9), Instant::now());
    snapshots.finish();
    assert_eq!((stats.health("door").failed, stats.health("door").stored), (1, 0));
}

#[test]
fn a_raw_frame_is_converted_and_encoded_at_its_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stats = Arc::new(SnapshotStats::default());
    // A grey NV12 frame: luma 128, neutral chroma.
    let (width, height) = (32, 16);
    let nv12 = [vec![128u8; 32 * 16], vec![128u8; 32 * 8]].concat();
    let frame = runtime::Frame::packed(runtime::PixelFormat::Nv12, width, height, nv12).expect("a frame");
    let job = Job { seq: 9, captured_at_ms: 5, origin: String::new(), input: Input::Frame(frame) };
    let config = SnapshotConfig { draw_boxes: false, ..stored_config(dir.path()) };
    let mut snapshots = Snapshots::start(&config, "cam-01", None, stats.clone()).expect("starts");
    snapshots.consider_at(&job, &face(0.0, 0.9), Instant::now());
    snapshots.finish();
    assert_eq!(stats.health("door").stored, 1);
    let jpeg = std::fs::read(dir.path().join("door-0000000000005-9.jpg")).expect("stored");
    assert_eq!(comment(&jpeg)["seq"], 9);
    let decoded = image::load_from_memory(&jpeg).expect("decodes").to_rgb8();
    assert_eq!(decoded.dimensions(), (width, height));
    // BT.601 limited range: luma 128 is grey 130.
    assert!(
        decoded.pixels().all(|pixel| pixel.0.iter().all(|&c| c.abs_diff(130) <= 3)),
        "{:?}",
        decoded.get_pixel(0, 0)
    );
}
