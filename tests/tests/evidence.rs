//! Retraining evidence end to end, through `edgectl retrain fetch`:
//!
//! - a drift alert on a profiled image classifier fed over MQTT keeps the inputs that caused it, announces the
//!   candidate, and the fetched samples are byte-identical to the frames the test sent; the byte cap holds on
//!   disk (the candidate gives up its oldest samples to fit);
//! - a candidate kept on disk (found again at start) is fetched only with a signed order from a trusted key;
//!   an unknown candidate is refused by the device, a malformed id by `edgectl` itself.

use integration_tests::agent::{Agent, agent_binary, operator_binary};
use integration_tests::broker::Broker;
use integration_tests::subscriber::{Received, Subscriber};
use integration_tests::update::{ConfigBuilder, Keys, Workbench, quoted};
use integration_tests::{models_dir, ort_library};
use protocol::ModelIdentity;
use protocol::wire::{AlertKind, EvidenceSample, RetrainCandidate};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);
const DEVICE: &str = "ev-1";

/// `edgectl retrain fetch` of `candidate` from [`DEVICE`] into `out`, signed with `keys`.
fn fetch(port: u16, keys: &Keys, candidate: &str, out: &Path, timeout_secs: u32) -> Output {
    Command::new(operator_binary())
        .args(["retrain", "fetch", "--broker", &format!("127.0.0.1:{port}"), "--device", DEVICE])
        .arg("--key")
        .arg(keys.private())
        .args(["--candidate", candidate, "--timeout", &timeout_secs.to_string()])
        .arg("--out")
        .arg(out)
        .output()
        .expect("edgectl runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// An `mqtt_frames` source `door` through `bundle`, monitored with `monitor` (TOML lines of `[[monitors]]`) and
/// keeping evidence as `evidence` says.
fn config(port: u16, keys: &Keys, state: &Path, bundle: &Path, monitor: &str, evidence: &str) -> String {
    let source = format!(
        "[[sources]]\nname = \"door\"\nkind = \"mqtt_frames\"\nmodel = {}\n",
        quoted(&bundle.display().to_string())
    );
    let mut text = ConfigBuilder::new(DEVICE, port, &keys.public, state).source(source).build();
    text.push_str(&format!("[[monitors]]\nsource = \"door\"\n{monitor}[monitors.evidence]\n{evidence}"));
    text
}

/// Bytes of every file under `dir`, recursively.
fn bytes_under(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|entry| {
                    let entry = entry.expect("an entry");
                    let meta = entry.metadata().expect("metadata");
                    if meta.is_dir() { bytes_under(&entry.path()) } else { meta.len() }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Waits until the agent is connected and its updater took its start (the retained idle status).
fn wait_ready(sub: &Subscriber) {
    let status = format!("devices/{DEVICE}/update/status");
    sub.collect_until(WAIT, |got| got.iter().any(|message| message.topic == status));
}

#[test]
fn a_kept_candidate_is_fetched_byte_identical_with_a_signed_order_only() {
    let bench = Workbench::new();
    let broker = Broker::start();
    let state = tempfile::tempdir().expect("temp dir");
    let candidate_id = "1700000000000-0";
    let kept = state.path().join("evidence/door").join(candidate_id);
    std::fs::create_dir_all(&kept).expect("candidate dir");
    let frames = [("3.png", "astronaut.png", "png"), ("4.jpg", "cat.jpg", "jpeg")];
    let mut samples = Vec::new();
    for (seq, (id, frame, kind)) in frames.iter().enumerate() {
        let bytes = std::fs::read(models_dir().join("frames").join(frame)).expect("a frame");
        std::fs::write(kept.join(id), &bytes).expect("a sample");
        samples.push(EvidenceSample {
            id: (*id).to_owned(),
            seq: seq as u64 + 3,
            captured_ms: 1_699_999_999_000,
            bytes: bytes.len() as u64,
            kind: (*kind).to_owned(),
            frame: None,
        });
    }
    let candidate = RetrainCandidate {
        device: DEVICE.into(),
        source: "door".into(),
        candidate: candidate_id.into(),
        model: ModelIdentity { name: "image-classifier".into(), version: "1.0.0".into(), sha256: String::new() },
        at_ms: 1_700_000_000_000,
        alerts: Vec::new(),
        samples,
    };
    std::fs::write(kept.join("candidate.json"), serde_json::to_vec(&candidate).expect("json")).expect("written");

    let sub = Subscriber::connect(broker.port(), &format!("devices/{DEVICE}/#"));
    let bundle = models_dir().join("image-classifier");
    let agent = Agent::start(&config(broker.port(), &bench.trusted, state.path(), &bundle, "", ""));
    wait_ready(&sub);

    let out = bench.dir().join("fetched");
    let fetched = fetch(broker.port(), &bench.trusted, candidate_id, &out, 30);
    assert!(fetched.status.success(), "fetch failed: {}\n{}", stderr(&fetched), agent.log());
    for (id, frame, _) in frames {
        let sent = std::fs::read(models_dir().join("frames").join(frame)).expect("a frame");
        assert_eq!(std::fs::read(out.join(id)).expect("a fetched sample"), sent, "{id}");
    }
    let announced: RetrainCandidate =
        serde_json::from_slice(&std::fs::read(out.join("candidate.json")).expect("candidate.json")).expect("json");
    assert_eq!(announced, candidate);
    assert_eq!(std::fs::read_to_string(out.join("labels.csv")).expect("labels"), "sample,label\n3.png,\n4.jpg,\n");

    // A stranger's order is refused (an error event), so the fetch hears nothing.
    let stranger = bench.keygen("stranger");
    let refused = fetch(broker.port(), &stranger, candidate_id, &bench.dir().join("stranger"), 3);
    assert!(!refused.status.success() && stderr(&refused).contains("no answer"), "{}", stderr(&refused));
    let errors = format!("devices/{DEVICE}/errors/update");
    sub.collect_until(WAIT, |got: &[Received]| {
        got.iter().any(|m| m.topic == errors && m.json()["kind"] == "untrusted_key")
    });
    // A candidate the device does not have is refused by the device; a malformed id by edgectl.
    let unknown = fetch(broker.port(), &bench.trusted, "1700000000000-9", &bench.dir().join("unknown"), 30);
    assert!(stderr(&unknown).contains("no candidate 1700000000000-9"), "{}", stderr(&unknown));
    let malformed = fetch(broker.port(), &bench.trusted, "../door", &bench.dir().join("malformed"), 3);
    assert!(stderr(&malformed).contains("a candidate id is <at_ms>-<n>"), "{}", stderr(&malformed));

    let (status, log) = agent.terminate(Duration::from_secs(20));
    assert!(status.success(), "the agent stops cleanly:\n{log}");
}

/// A copy of the image classifier profiled (`device-agent model profile`) on 24 darker noise frames.
fn profiled_bundle() -> tempfile::TempDir {
    let bundle = tempfile::tempdir().expect("temp dir");
    for file in ["manifest.toml", "model.onnx", "labels.txt"] {
        std::fs::copy(models_dir().join("image-classifier").join(file), bundle.path().join(file)).expect("copy");
    }
    let reference = tempfile::tempdir().expect("temp dir");
    let frames: Vec<PathBuf> = (0..24)
        .map(|index| {
            let path = reference.path().join(format!("{index}.png"));
            std::fs::write(&path, noise_png(index, 30, 100)).expect("a reference frame");
            path
        })
        .collect();
    let output = Command::new(agent_binary())
        .args(["model", "profile"])
        .arg(bundle.path())
        .args(&frames)
        .env("ORT_DYLIB_PATH", ort_library())
        .output()
        .expect("device-agent model profile runs");
    assert!(output.status.success(), "model profile failed: {}", String::from_utf8_lossy(&output.stderr));
    bundle
}

/// A 96x96 PNG of noise between `low` and `low + span` that does not compress (about 25 KB), distinct per
/// `index`.
fn noise_png(index: u32, low: u8, span: u8) -> Vec<u8> {
    let (width, height) = (96u32, 96u32);
    let mut state = 0x9E37_79B9u32 ^ index.wrapping_mul(0x85EB_CA6B) | 1;
    let pixels: Vec<u8> = (0..width * height * 3)
        .map(|_| {
            // xorshift32
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            low + (state % u32::from(span)) as u8
        })
        .collect();
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.write_header().and_then(|mut writer| writer.write_image_data(&pixels)).expect("a PNG");
    bytes
}

#[test]
fn a_drift_alert_keeps_the_inputs_that_caused_it_within_the_byte_cap() {
    let bench = Workbench::new();
    let broker = Broker::start();
    let state = tempfile::tempdir().expect("temp dir");
    let bundle = profiled_bundle();
    let max_bytes = 65_536u64;
    let monitor = "window = 8\nstride = 4\nraise_after = 2\npublish_secs = 1\n";
    let evidence = format!("samples = 8\nmax_bytes = {max_bytes}\n");
    let sub = Subscriber::connect(broker.port(), &format!("devices/{DEVICE}/#"));
    let agent = Agent::start(&config(broker.port(), &bench.trusted, state.path(), bundle.path(), monitor, &evidence));
    wait_ready(&sub);

    // One frame at a time, each after the previous one's prediction: the latest-frame slot drops none, and the
    // prediction's seq names the bytes sent.
    let (frames_topic, predictions) =
        (format!("devices/{DEVICE}/frames/door"), format!("devices/{DEVICE}/predictions/door"));
    let candidate_topic = format!("devices/{DEVICE}/retrain/candidate");
    let mut sent: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut announced = None;
    for index in 0..200 {
        // Far brighter than any reference frame.
        let frame = noise_png(1000 + index, 200, 56);
        sub.publish(&frames_topic, frame.clone());
        let got = sub.collect_until(WAIT, |got| got.iter().any(|m| m.topic == predictions));
        let seq = got.iter().find(|m| m.topic == predictions).map(|m| m.json()["seq"].as_u64().expect("seq"));
        sent.insert(seq.expect("a prediction"), frame);
        if let Some(message) = got.iter().find(|m| m.topic == candidate_topic) {
            announced = Some(serde_json::from_slice::<RetrainCandidate>(&message.payload).expect("a candidate"));
            break;
        }
    }
    let candidate = announced.unwrap_or_else(|| panic!("no candidate after 200 shifted frames:\n{}", agent.log()));
    assert!(candidate.alerts.iter().all(|alert| alert.kind == AlertKind::Drift), "{:?}", candidate.alerts);
    assert!(!candidate.samples.is_empty() && candidate.samples.len() < 8, "8 frames are over the cap");
    let on_disk = bytes_under(&state.path().join("evidence/door"));
    assert!(on_disk <= max_bytes, "{on_disk} bytes on disk, cap {max_bytes}");
    let kept: u64 = candidate.samples.iter().map(|sample| sample.bytes).sum();
    assert!(kept <= max_bytes);

    let out = bench.dir().join("fetched");
    let fetched = fetch(broker.port(), &bench.trusted, &candidate.candidate, &out, 30);
    assert!(fetched.status.success(), "fetch failed: {}\n{}", stderr(&fetched), agent.log());
    for sample in &candidate.samples {
        assert_eq!(sample.id, format!("{}.png", sample.seq));
        let bytes = std::fs::read(out.join(&sample.id)).expect("a fetched sample");
        assert_eq!(Some(&bytes), sent.get(&sample.seq), "sample {} is the frame sent as seq {}", sample.id, sample.seq);
    }
    let (status, log) = agent.terminate(Duration::from_secs(20));
    assert!(status.success(), "the agent stops cleanly:\n{log}");
}
