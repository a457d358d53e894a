//! The `rtsp` source against a real RTSP server (GStreamer's, `tests/rtsp/server.py`) on loopback, serving H.264
//! encoded live from the project's frames: predictions match `infer` on the same frames within the codec's loss,
//! a killed and restarted server is reconnected, a stalled stream trips the watchdog, and wrong credentials are
//! a clear error retried at a bounded rate.

use integration_tests::agent::Agent;
use integration_tests::broker::{Broker, free_port};
use integration_tests::subscriber::{Received, Subscriber};
use integration_tests::{models_dir, onnx_runtime, repo_root};
use runtime::{Bundle, Detection, EngineOptions, Input, Output, Pipeline};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);
const PREDICTIONS: &str = "devices/cam-01/predictions/porch";
const ERRORS: &str = "devices/cam-01/errors/porch";
const HEALTH: &str = "devices/cam-01/health";
/// Measured with x264 at quantiser 12: worst box IoU 0.995, worst score difference 0.0007; the margin covers
/// colour conversions that differ by a level or two.
const MIN_IOU: f32 = 0.9;
const MAX_SCORE_DIFF: f32 = 0.02;

/// `tests/rtsp/server.py` as a child process: `rtsp://127.0.0.1:<port>/cam`, killed when dropped.
struct RtspServer {
    child: Child,
    stdin: ChildStdin,
    lines: Arc<Mutex<Vec<String>>>,
}

impl RtspServer {
    /// `options`: `--auth <user> <password>`, `--h265`.
    fn start(port: u16, frames: &Path, options: &[&str]) -> RtspServer {
        let mut command = Command::new("/usr/bin/python3");
        command.arg(repo_root().join("tests/rtsp/server.py")).arg(port.to_string()).arg(frames.join("%03d.png"));
        command.args(options);
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the RTSP server starts (scripts/setup.sh installs GStreamer's)");
        let stdin = child.stdin.take().expect("piped stdin");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (stdout, collected) = (child.stdout.take().expect("piped stdout"), lines.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                collected.lock().unwrap().push(line);
            }
        });
        let server = RtspServer { child, stdin, lines };
        let deadline = Instant::now() + WAIT;
        while !server.lines.lock().unwrap().iter().any(|l| l == "ready") {
            assert!(Instant::now() < deadline, "the RTSP server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// RTSP connections accepted so far.
    fn clients(&self) -> usize {
        self.lines.lock().unwrap().iter().filter(|l| *l == "client").count()
    }

    /// Stops the frames of the sessions playing now; their connections stay open.
    fn pause(&mut self) {
        writeln!(self.stdin, "pause").expect("the server reads commands");
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two of the project's frames at 640x480, as PNG (lossless, so the stream's only loss is the codec's), each
/// held for one second of the 10 frame/s stream: `000.png`..`019.png`.
fn frames() -> (tempfile::TempDir, Vec<Output>) {
    let dir = tempfile::tempdir().unwrap();
    let bundle = Bundle::load(models_dir().join("face-detector")).expect("bundle loads");
    let mut pipeline = Pipeline::new(&onnx_runtime(), &bundle, &EngineOptions::default()).expect("pipeline builds");
    let mut references = Vec::new();
    for (index, name) in ["people.jpg", "grace_hopper.jpg"].into_iter().enumerate() {
        let still = dir.path().join(format!("still-{index}.png"));
        let status = Command::new("ffmpeg")
            .args(["-loglevel", "error", "-i"])
            .arg(models_dir().join("frames").join(name))
            .args(["-vf", "scale=640:480"])
            .arg(&still)
            .status()
            .expect("ffmpeg runs");
        assert!(status.success(), "ffmpeg scales {name}");
        for copy in 0..10 {
            std::fs::copy(&still, dir.path().join(format!("{:03}.png", index * 10 + copy))).unwrap();
        }
        let (output, _) = pipeline.infer(&Input::Image(std::fs::read(&still).unwrap())).expect("infer");
        references.push(output);
    }
    (dir, references)
}

fn config(broker: u16, rtsp: u16, extra: &str) -> String {
    format!(
        "device_id = \"cam-01\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = {broker}\n[health]\ninterval_secs = 1\n\
         [[sources]]\nname = \"porch\"\nkind = \"rtsp\"\nmodel = \"{}\"\nurl = \"rtsp://127.0.0.1:{rtsp}/cam\"\n\
         watchdog_secs = 2\nreconnect_initial_ms = 250\nreconnect_max_ms = 1000\n{extra}\n",
        models_dir().join("face-detector").display()
    )
}

fn on<'a>(got: &'a [Received], topic: &'a str) -> impl Iterator<Item = &'a Received> + 'a {
    got.iter().filter(move |m| m.topic == topic)
}

fn detections(output: &Output) -> &[Detection] {
    match output {
        Output::Detection { detections } => detections,
        other => panic!("not a detection: {other:?}"),
    }
}

/// The reference the prediction is closest to, with the worst box IoU and the largest score difference over its
/// faces; `None` when no reference has as many faces.
fn closest(prediction: &Output, references: &[Output]) -> Option<(usize, f32, f32)> {
    let got = detections(prediction);
    references
        .iter()
        .enumerate()
        .filter(|(_, reference)| detections(reference).len() == got.len())
        .map(|(index, reference)| {
            let (mut worst_iou, mut worst_score) = (1.0f32, 0.0f32);
            for want in detections(reference) {
                let best = got.iter().max_by(|a, b| a.bbox.iou(&want.bbox).total_cmp(&b.bbox.iou(&want.bbox)));
                let best = best.expect("as many faces");
                worst_iou = worst_iou.min(best.bbox.iou(&want.bbox));
                worst_score = worst_score.max((best.score - want.score).abs());
            }
            (index, worst_iou, worst_score)
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// Every prediction of `got` matches one of the references within the codec tolerance; returns which references
/// were seen.
fn assert_match(got: &[Received], references: &[Output]) -> Vec<usize> {
    let (mut seen, mut min_iou, mut max_diff) = (Vec::new(), 1.0f32, 0.0f32);
    for message in on(got, PREDICTIONS) {
        let json = message.json();
        let output: Output = serde_json::from_value(json["output"].clone()).expect("an output");
        let Some((index, iou, diff)) = closest(&output, references) else {
            panic!("{json} has no reference with as many faces: {references:?}");
        };
        assert!(iou >= MIN_IOU && diff <= MAX_SCORE_DIFF, "{json}: IoU {iou}, score diff {diff} vs {references:?}");
        (min_iou, max_diff) = (min_iou.min(iou), max_diff.max(diff));
        seen.push(index);
    }
    eprintln!("codec loss over {} predictions: worst box IoU {min_iou:.3}, worst score diff {max_diff:.4}", seen.len());
    seen
}

#[test]
fn predictions_match_infer_and_a_restarted_server_is_reconnected() {
    let (frames, references) = frames();
    assert_eq!(detections(&references[0]).len(), 2, "people.jpg holds two faces");
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port(), "devices/cam-01/#");
    let port = free_port();
    let server = RtspServer::start(port, frames.path(), &[]);
    let agent = Agent::start(&config(broker.port(), port, ""));

    // 25 predictions span the two stills (one second each at 10 frames/s, inference permitting).
    let got = sub.collect_until(WAIT, |got| on(got, PREDICTIONS).count() >= 25);
    let seen = assert_match(&got, &references);
    assert!(seen.contains(&0) && seen.contains(&1), "both stills were predicted on: {seen:?}");
    let prediction = on(&got, PREDICTIONS).next().unwrap().json();
    assert_eq!(prediction["input"], format!("rtsp://127.0.0.1:{port}/cam"));

    drop(server);
    let lost = sub.collect_until(WAIT, |got| on(got, ERRORS).any(|m| m.json()["kind"] == "stream_lost"));
    let event = on(&lost, ERRORS).find(|m| m.json()["kind"] == "stream_lost").unwrap().json();
    assert_eq!((event["source"].as_str(), event["stage"].as_str()), (Some("porch"), Some("source")), "{event}");
    // Refused connections while it is down, then the server is back on the same port.
    std::thread::sleep(Duration::from_millis(1500));
    let server = RtspServer::start(port, frames.path(), &[]);
    let resumed = sub.collect_until(WAIT, |got| on(got, PREDICTIONS).count() >= 5);
    assert_match(&resumed, &references);
    assert!(server.clients() >= 1);
    let log = agent.log();
    assert_eq!(log.matches("playing (h264)").count(), 2, "one session before the kill, one after: {log}");
    // Health counts the reconnect and describes the stream (the stills are scaled to 640x480 by `frames`).
    let camera = |got: &[Received]| {
        on(got, HEALTH).last().map(|m| m.json()["cameras"][0].clone()).filter(|c| c["reconnects"] == 1)
    };
    let health = sub.collect_until(WAIT, |got| camera(got).is_some_and(|c| c["inferred_per_s"].as_f64() > Some(0.0)));
    let camera = camera(&health).expect("a health report after the reconnect");
    assert_eq!(camera["source"], "porch", "{camera}");
    assert_eq!((camera["width"].as_u64(), camera["height"].as_u64()), (Some(640), Some(480)), "{camera}");
    assert_eq!((camera["codec"].as_str(), camera["decoder"].as_str()), (Some("h264"), Some("openh264")), "{camera}");
    assert!(camera["received_per_s"].as_f64() > Some(0.0) && camera["decoded_per_s"].as_f64() > Some(0.0));
    assert!(camera["last_frame_age_ms"].as_u64().is_some_and(|age| age < 2_000), "{camera}");
    drop(agent);
}

#[test]
fn a_stream_that_stops_sending_frames_trips_the_watchdog() {
    let (frames, references) = frames();
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port(), "devices/cam-01/#");
    let port = free_port();
    let mut server = RtspServer::start(port, frames.path(), &[]);
    // No hardware decoder here: the software one decodes, and health says why.
    let extra = "decoder = \"v4l2m2m\"\ndecoder_device = \"/dev/no-such-decoder\"";
    let agent = Agent::start(&config(broker.port(), port, extra));
    let got = sub.collect_until(WAIT, |got| {
        on(got, PREDICTIONS).count() >= 3 && on(got, HEALTH).any(|m| m.json()["cameras"][0]["width"] == 640)
    });
    let health = on(&got, HEALTH).find(|m| m.json()["cameras"][0]["width"] == 640).unwrap().json();
    assert_eq!(
        health["cameras"][0]["decoder"], "openh264 (v4l2m2m unavailable: /dev/no-such-decoder: not found)",
        "{health}"
    );

    server.pause();
    let stalled = sub.collect_until(WAIT, |got| on(got, ERRORS).any(|m| m.json()["kind"] == "stream_stalled"));
    let event = on(&stalled, ERRORS).find(|m| m.json()["kind"] == "stream_stalled").unwrap().json();
    assert!(event["message"].as_str().unwrap().contains("no frame for watchdog_secs (2s)"), "{event}");
    // The watchdog's new session plays (the server pauses only the sessions playing when told).
    let resumed = sub.collect_until(WAIT, |got| on(got, PREDICTIONS).count() >= 3);
    assert_match(&resumed, &references);
    assert_eq!(server.clients(), 2, "one connection before the stall, one after");
    drop(agent);
}

#[test]
fn wrong_credentials_are_a_clear_error_retried_at_a_bounded_rate() {
    let (frames, _) = frames();
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port(), "devices/cam-01/#");
    let port = free_port();
    let server = RtspServer::start(port, frames.path(), &["--auth", "viewer", "right-password"]);
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("camera.credentials");
    std::fs::write(&credentials, "viewer:wrong-password\n").unwrap();
    let extra = format!("credentials_file = \"{}\"", credentials.display());
    let agent = Agent::start(&config(broker.port(), port, &extra));

    let got = sub.collect_until(WAIT, |got| on(got, ERRORS).count() >= 2);
    let started = Instant::now();
    let clients_before = server.clients();
    let event = on(&got, ERRORS).next().unwrap().json();
    assert_eq!(event["kind"], "auth_failed", "{event}");
    let message = event["message"].as_str().unwrap();
    assert!(message.contains("401") && message.contains("camera.credentials"), "{event}");
    // Backoff 250 ms doubling to 1 s (jitter shortens a wait by a quarter at most): at most 7 attempts in 5 s.
    let more = sub.collect_for(Duration::from_secs(5));
    let attempts = server.clients() - clients_before;
    assert!((2..=7).contains(&attempts), "{attempts} connections in {:?}", started.elapsed());
    let log = agent.kill();
    for text in on(&got, ERRORS).chain(on(&more, ERRORS)).map(|m| String::from_utf8_lossy(&m.payload).into_owned()) {
        assert!(!text.contains("wrong-password"), "an event shows the password: {text}");
    }
    assert!(!log.contains("wrong-password"), "the log shows the password: {log}");
    assert!(log.contains("auth_failed"), "{log}");

    std::fs::write(&credentials, "viewer\nright-password\n").unwrap();
    let agent = Agent::start(&config(broker.port(), port, &extra));
    sub.collect_until(WAIT, |got| on(got, PREDICTIONS).count() >= 1);
    drop(agent);
}

#[test]
fn an_h265_stream_is_an_unsupported_codec_retried_slowly() {
    let (frames, _) = frames();
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port(), "devices/cam-01/#");
    let port = free_port();
    let server = RtspServer::start(port, frames.path(), &["--h265"]);
    let agent = Agent::start(&config(broker.port(), port, ""));
    let got = sub.collect_until(WAIT, |got| on(got, ERRORS).count() >= 2);
    for event in on(&got, ERRORS).map(Received::json) {
        assert_eq!(event["kind"], "unsupported_codec", "{event}");
        assert_eq!(event["message"], "the video stream is h265; only H.264 is decoded here (OpenH264)");
    }
    assert_eq!(on(&got, PREDICTIONS).count(), 0);
    assert!(server.clients() >= 2, "it keeps asking");
    drop(agent);
}
