use super::*;
use crate::clock::{Clock, SystemClock};
use crate::config::{AgentConfig, HttpMjpegSource, MjpegMode, SourceConfig};
use crate::health::SourceStats;
use crate::mqtt::QoS;
use crate::outbox::{Outbox, OutboxQos, OutboxSettings, PayloadLimit, Publish};
use crate::queue::{Job, Next};
use crate::spool::Class;
use protocol::wire::{Format, Topics};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

const WAIT: Duration = Duration::from_secs(20);

fn frame(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/../models/frames/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// What a scripted camera does on one connection, after reading the request.
enum Step {
    Send(Vec<u8>),
    Hold(Duration),
}

/// A camera on 127.0.0.1 that plays one script per connection, in order of connection, and reports each
/// request's head.
fn camera(scripts: Vec<Vec<Step>>) -> (u16, Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (requests, received) = channel();
    std::thread::spawn(move || {
        for script in scripts {
            let Ok((socket, _)) = listener.accept() else { return };
            let requests = requests.clone();
            std::thread::spawn(move || play(socket, script, &requests));
        }
    });
    (port, received)
}

fn play(mut socket: std::net::TcpStream, script: Vec<Step>, requests: &Sender<String>) {
    let mut head = Vec::new();
    let mut byte = [0];
    while !head.ends_with(b"\r\n\r\n") && socket.read(&mut byte).unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    let _ = requests.send(String::from_utf8_lossy(&head).into_owned());
    for step in script {
        match step {
            Step::Send(bytes) => {
                if socket.write_all(&bytes).is_err() {
                    return;
                }
            }
            Step::Hold(time) => std::thread::sleep(time),
        }
    }
}

fn stream_head(boundary: &str) -> Step {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=\"{boundary}\"\r\nCache-Control: no-cache\r\n\r\n"
    );
    Step::Send(head.into_bytes())
}

fn part(content_type: &str, body: &[u8]) -> Step {
    let mut part =
        format!("--frame\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    part.extend_from_slice(body);
    part.extend_from_slice(b"\r\n");
    Step::Send(part)
}

/// Error events as (kind, message).
#[derive(Clone, Default)]
struct Errors(Arc<Mutex<Vec<(String, String)>>>);

impl Publish for Errors {
    fn publish(&self, class: Class, _topic: String, _qos: QoS, payload: Vec<u8>) -> Result<(), String> {
        if class == Class::Errors {
            let event: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            let text = |key: &str| event[key].as_str().unwrap_or_default().to_owned();
            assert!(text("input").starts_with("http://127.0.0.1:"), "the URL is the origin: {event}");
            self.0.lock().unwrap().push((text("kind"), text("message")));
        }
        Ok(())
    }
}

impl Errors {
    fn kinds(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().map(|(kind, _)| kind.clone()).collect()
    }

    fn wait_for(&self, count: usize) -> Vec<(String, String)> {
        let deadline = Instant::now() + WAIT;
        while self.0.lock().unwrap().len() < count {
            assert!(Instant::now() < deadline, "only {:?}", self.kinds());
            std::thread::sleep(Duration::from_millis(20));
        }
        self.0.lock().unwrap().clone()
    }
}

/// The camera source running against `127.0.0.1:<port>`, its frames taken as fast as they come.
struct Running {
    stats: Arc<CameraStats>,
    errors: Errors,
    frames: Receiver<Job>,
    shutdown: Arc<Shutdown>,
    source: JoinHandle<()>,
}

fn start(port: u16, mode: Mode, watchdog: Duration, credentials_file: Option<PathBuf>) -> Running {
    let errors = Errors::default();
    let settings = OutboxSettings {
        device: "d".into(),
        topics: Arc::new(Topics::new("devices/d".to_owned())),
        format: Format::Json,
        qos: OutboxQos { predictions: QoS::AtMostOnce, errors: QoS::AtMostOnce },
        link: Arc::new(errors.clone()),
        payload_limit: Arc::new(|_| PayloadLimit::none()),
    };
    let outbox = Outbox::new(&settings, "cam", Arc::new(SourceStats::new("cam")));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (feed, queue) = Feed::camera(outbox, clock);
    let (sender, frames): (Sender<Job>, _) = channel();
    std::thread::spawn(move || {
        while let Next::Job(job) = queue.next() {
            let _ = sender.send(job);
        }
    });
    let url = format!("http://127.0.0.1:{port}/video");
    let camera = MjpegCamera {
        name: "cam".into(),
        url: HttpUrl::parse(&url).unwrap(),
        origin: url,
        mode,
        credentials_file,
        watchdog,
        max_part_bytes: 1 << 20,
    };
    let stats = Arc::new(CameraStats::default());
    let shutdown = Arc::new(Shutdown::default());
    let source = {
        let (stats, shutdown) = (stats.clone(), shutdown.clone());
        std::thread::spawn(move || {
            run(camera, &feed, &stats, &shutdown);
            feed.close();
        })
    };
    Running { stats, errors, frames, shutdown, source }
}

impl Running {
    /// Frames until `count` parts reached the worker or were replaced before it took them.
    fn frames(&self, count: u64) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + WAIT;
        let mut frames = Vec::new();
        while frames.len() as u64 + self.stats.replaced_total() < count {
            assert!(Instant::now() < deadline, "{} frames", frames.len());
            if let Ok(job) = self.frames.recv_timeout(Duration::from_millis(100)) {
                frames.push(job.input);
            }
        }
        frames
            .into_iter()
            .map(|input| match input {
                Input::Image(bytes) => bytes,
                _ => panic!("an encoded image"),
            })
            .collect()
    }

    fn next_frame(&self) -> Vec<u8> {
        let job = self.frames.recv_timeout(WAIT).expect("a frame");
        match job.input {
            Input::Image(bytes) => bytes,
            _ => panic!("an encoded image"),
        }
    }

    /// Stops the source; it must notice within a read slice or two, whatever the camera is doing.
    fn stop(self) {
        let asked = Instant::now();
        self.shutdown.trigger();
        self.source.join().unwrap();
        assert!(asked.elapsed() < Duration::from_secs(2), "stopping took {:?}", asked.elapsed());
    }
}

#[test]
fn a_stream_goes_on_past_malformed_parts_and_hands_over_encoded_frames() {
    let (cat, coffee) = (frame("cat.jpg"), frame("coffee.jpg"));
    let script = vec![
        stream_head("frame"),
        part("image/jpeg", &cat),
        part("image/jpeg", &coffee[..coffee.len() / 2]),
        part("text/plain", b"camera rebooting"),
        part("image/jpeg", &coffee),
        Step::Hold(Duration::from_secs(30)),
    ];
    let (port, _) = camera(vec![script]);
    let running = start(port, Mode::Stream, Duration::from_secs(30), None);
    let errors = running.errors.wait_for(2);
    assert_eq!(running.errors.kinds(), ["malformed_part", "malformed_part"]);
    assert!(errors[0].1.contains("part 2: a truncated JPEG"), "{errors:?}");
    assert!(errors[1].1.contains("not a JPEG") && errors[1].1.contains("text/plain"), "{errors:?}");
    let frames = running.frames(2);
    assert_eq!(frames.last(), Some(&coffee), "the newest frame always reaches the worker");
    assert!(frames.iter().all(|frame| *frame == cat || *frame == coffee));
    let stats = &running.stats;
    assert_eq!((stats.received_total(), stats.decode_errors_total(), stats.reconnects_total()), (4, 2, 0));
    let stream = stats.stream();
    assert_eq!((stream.width, stream.height, stream.codec.as_str()), (600, 400, "mjpeg"));
    assert_eq!(stats.decoded_total(), 0, "the worker decodes, not the source");
    running.stop();
}

#[test]
fn a_silent_stream_trips_the_watchdog_and_is_reconnected() {
    let cat = frame("cat.jpg");
    let first = vec![stream_head("frame"), part("image/jpeg", &cat), Step::Hold(Duration::from_secs(30))];
    let second = vec![stream_head("frame"), part("image/jpeg", &cat), Step::Hold(Duration::from_secs(30))];
    let (port, requests) = camera(vec![first, second]);
    let running = start(port, Mode::Stream, Duration::from_secs(1), None);
    running.next_frame();
    let errors = running.errors.wait_for(1);
    assert_eq!(errors[0].0, "stream_stalled", "{errors:?}");
    running.next_frame();
    assert_eq!(running.stats.reconnects_total(), 1);
    let request = requests.recv().unwrap();
    assert!(request.starts_with("GET /video HTTP/1.1\r\n") && request.contains("Host: 127.0.0.1:"), "{request}");
    assert!(!request.contains("Authorization"), "{request}");
    running.stop();
}

#[test]
fn snapshots_are_polled_and_http_errors_retried_with_credentials_sent() {
    let rocket = frame("rocket.jpg");
    let with_length = [
        format!("HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n", rocket.len()).as_bytes(),
        &rocket,
    ]
    .concat();
    let mut chunked = b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in rocket.chunks(1000) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let until_close = [b"HTTP/1.0 200 OK\r\nContent-Type: image/jpeg\r\n\r\n".as_slice(), &rocket].concat();
    let scripts = vec![
        vec![Step::Send(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n".to_vec())],
        vec![Step::Send(with_length)],
        vec![Step::Send(chunked)],
        vec![Step::Send(until_close)],
        vec![Step::Send(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec())],
    ];
    let (port, requests) = camera(scripts);
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("camera");
    std::fs::write(&credentials, "viewer:pa55\n").unwrap();
    let running = start(port, Mode::Snapshot { rate_fps: 20.0 }, Duration::from_secs(5), Some(credentials));
    assert!(running.frames(3).iter().all(|frame| *frame == rocket));
    let errors = running.errors.wait_for(2);
    assert_eq!(running.errors.kinds()[..2], ["http_status", "http_status"]);
    assert!(errors[0].1.contains("500 Internal Server Error") && errors[1].1.contains("404"), "{errors:?}");
    assert_eq!(running.stats.reconnects_total(), 1, "snapshots worked again once after the 500");
    let request = requests.recv().unwrap();
    assert!(request.contains("Authorization: Basic dmlld2VyOnBhNTU=\r\n"), "{request}");
    assert!(errors.iter().all(|(_, message)| !message.contains("pa55")));
    running.stop();
}

#[test]
fn the_boundary_comes_from_the_content_type() {
    assert_eq!(boundary(Some("multipart/x-mixed-replace;boundary=frame")), Ok("frame".into()));
    assert_eq!(boundary(Some("Multipart/X-Mixed-Replace; Boundary=\"--my boundary\"")), Ok("--my boundary".into()));
    let error = boundary(Some("image/jpeg")).unwrap_err();
    assert!(error.contains("mode = \"snapshot\""), "{error}");
    assert!(boundary(Some("multipart/x-mixed-replace")).unwrap_err().contains("names no boundary"));
    assert!(boundary(None).is_err());
}

fn mjpeg_source(keys: &str) -> Result<HttpMjpegSource, Vec<String>> {
    let text =
        format!("device_id = \"d\"\n[[sources]]\nname = \"cam\"\nkind = \"http_mjpeg\"\nmodel = \"m\"\n{keys}\n");
    match AgentConfig::parse(&text) {
        Ok(config) => match config.sources.into_iter().next() {
            Some(SourceConfig::HttpMjpeg(source)) => Ok(source),
            other => panic!("{other:?}"),
        },
        Err(errors) => Err(errors.0.iter().map(ToString::to_string).collect()),
    }
}

#[test]
fn config_keys_and_defaults() {
    let source = mjpeg_source("url = \"http://cam.local/video\"").unwrap();
    assert_eq!((source.mode, source.rate_fps, source.watchdog_secs), (MjpegMode::Stream, None, 10));
    assert_eq!((source.max_part_bytes, source.credentials_file), (16 << 20, None));
    let source = mjpeg_source(
        "url = \"http://cam.local/snap.jpg\"\nmode = \"snapshot\"\nrate_fps = 0.5\ncredentials_file = \"cam.pw\"\n\
         watchdog_secs = 3\nmax_part_bytes = 65536\nmax_decoded_bytes = 8388608",
    )
    .unwrap();
    assert_eq!((source.mode, source.snapshot_rate_fps(), source.watchdog_secs), (MjpegMode::Snapshot, 0.5, 3));
    assert_eq!((source.credentials_file, source.max_part_bytes), (Some(PathBuf::from("cam.pw")), 65536));
    assert_eq!(mjpeg_source("url = \"http://c/\"\nmode = \"snapshot\"").unwrap().snapshot_rate_fps(), 1.0);
}

#[test]
fn config_mistakes_name_their_key() {
    let errors = |keys: &str| mjpeg_source(keys).unwrap_err().join("\n");
    assert!(errors("").contains("sources[0].url: is required"));
    assert!(errors("url = \"https://cam/\"").contains("sources[0].url: must start with http://"));
    assert!(errors("url = \"http://admin:pw@cam/\"").contains("use credentials_file"));
    assert!(
        errors("url = \"http://cam/\"\nrate_fps = 2").contains("sources[0].rate_fps: only for mode = \"snapshot\"")
    );
    assert!(
        errors("url = \"http://cam/\"\nmode = \"snapshot\"\nrate_fps = 0").contains("sources[0].rate_fps: must be > 0")
    );
    assert!(errors("url = \"http://cam/\"\nwatchdog_secs = 0").contains("sources[0].watchdog_secs"));
    assert!(errors("url = \"http://cam/\"\nmax_part_bytes = 10").contains("sources[0].max_part_bytes"));
    assert!(errors("url = \"http://cam/\"\nmode = \"poll\"").contains("unknown variant"));
}
