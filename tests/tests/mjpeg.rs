//! The `http_mjpeg` source against a real HTTP camera written here (a `multipart/x-mixed-replace` stream, or a
//! snapshot URL) on a loopback port, with a real Mosquitto and the real image classifier: predictions equal
//! `device-agent infer` on the same frames, malformed parts are error events on the same connection, a slow
//! worker makes the source skip decoding, and a snapshot URL's HTTP errors are reported and retried.

use integration_tests::agent::{Agent, agent_binary};
use integration_tests::broker::Broker;
use integration_tests::models_dir;
use integration_tests::subscriber::{Received, Subscriber};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);
const FRAMES: [&str; 4] = ["cat.jpg", "coffee.jpg", "rocket.jpg", "grace_hopper.jpg"];
const PREDICTIONS: &str = "devices/cam-01/predictions/cam";
const ERRORS: &str = "devices/cam-01/errors/cam";

fn frame(name: &str) -> Vec<u8> {
    std::fs::read(models_dir().join("frames").join(name)).unwrap()
}

fn config(broker: &Broker, source: &str) -> String {
    format!(
        "device_id = \"cam-01\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = {}\n[health]\ninterval_secs = 1\n\
         [[sources]]\nname = \"cam\"\nkind = \"http_mjpeg\"\nmodel = \"{}\"\n{source}\n",
        broker.port(),
        models_dir().join("image-classifier").display()
    )
}

/// `device-agent infer` on the frames: each one's `output`, in order.
fn infer(frames: &[&str]) -> Vec<Value> {
    let output = std::process::Command::new(agent_binary())
        .args(["infer", "-m"])
        .arg(models_dir().join("image-classifier"))
        .args(frames.iter().map(|name| models_dir().join("frames").join(name)))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines = String::from_utf8(output.stdout).unwrap();
    lines.lines().map(|line| serde_json::from_str::<Value>(line).unwrap()["output"].clone()).collect()
}

fn on<'a>(got: &'a [Received], topic: &str) -> Vec<&'a Received> {
    got.iter().filter(|m| m.topic == topic).collect()
}

/// One part of the stream, with its Content-Length, delimited by `--<boundary>`.
fn part(boundary: &str, body: &[u8]) -> Vec<u8> {
    let head = format!("--{boundary}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n", body.len());
    [head.as_bytes(), body, b"\r\n"].concat()
}

/// A camera serving one `multipart/x-mixed-replace` stream per connection, whose bytes the test sends through
/// [`StreamCamera::send`] to the newest connection.
struct StreamCamera {
    url: String,
    connections: Arc<AtomicUsize>,
    current: Arc<Mutex<Option<Sender<Vec<u8>>>>>,
}

impl StreamCamera {
    fn start() -> StreamCamera {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}/mjpg/video.mjpg", listener.local_addr().unwrap().port());
        let connections = Arc::new(AtomicUsize::new(0));
        let current: Arc<Mutex<Option<Sender<Vec<u8>>>>> = Arc::default();
        let (count, slot) = (connections.clone(), current.clone());
        std::thread::spawn(move || {
            for socket in listener.incoming() {
                let Ok(mut socket) = socket else { return };
                read_request(&mut socket);
                let head = "HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n";
                if socket.write_all(head.as_bytes()).is_err() {
                    continue;
                }
                let (sender, bytes) = channel();
                *slot.lock().unwrap() = Some(sender);
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || write_all(socket, &bytes));
            }
        });
        StreamCamera { url, connections, current }
    }

    /// Waits for the agent to connect.
    fn wait_connected(&self) {
        let deadline = Instant::now() + WAIT;
        while self.connections.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "the agent did not connect");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn send(&self, bytes: Vec<u8>) {
        self.current.lock().unwrap().as_ref().expect("connected").send(bytes).unwrap();
    }
}

fn read_request(socket: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0];
    while !head.ends_with(b"\r\n\r\n") && socket.read(&mut byte).unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn write_all(mut socket: TcpStream, bytes: &Receiver<Vec<u8>>) {
    for chunk in bytes {
        if socket.write_all(&chunk).is_err() {
            return;
        }
    }
}

#[test]
fn stream_predictions_match_infer_and_resume_on_the_same_connection_after_malformed_parts() {
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port(), "devices/cam-01/#");
    let camera = StreamCamera::start();
    let agent = Agent::start(&config(&broker, &format!("url = \"{}\"", camera.url)));
    camera.wait_connected();
    let expected = infer(&FRAMES);

    // One frame at a time, each once the previous prediction is out: none is replaced before inference.
    let mut outputs = Vec::new();
    for name in &FRAMES[..3] {
        camera.send(part("frame", &frame(name)));
        outputs.push(sub.first_on(PREDICTIONS, WAIT).json());
    }
    for (prediction, expected) in outputs.iter().zip(&expected) {
        assert_eq!(&prediction["output"], expected, "the stream's prediction is infer's on the same frame");
        assert_eq!(prediction["input"].as_str(), Some(camera.url.as_str()));
    }

    // A truncated JPEG, then a part under a wrong boundary, then a good part.
    let coffee = frame("coffee.jpg");
    camera.send(part("frame", &coffee[..coffee.len() / 2]));
    let truncated = sub.first_on(ERRORS, WAIT).json();
    assert_eq!((truncated["stage"].as_str(), truncated["kind"].as_str()), (Some("source"), Some("malformed_part")));
    assert!(truncated["message"].as_str().unwrap().contains("truncated JPEG"), "{truncated}");
    camera.send(part("wrong", &frame("cat.jpg")));
    camera.send(part("frame", &frame(FRAMES[3])));
    let got = sub.collect_until(WAIT, |got| !on(got, ERRORS).is_empty() && !on(got, PREDICTIONS).is_empty());
    let garbled = on(&got, ERRORS)[0].json();
    assert_eq!(garbled["kind"], "malformed_part");
    assert!(garbled["message"].as_str().unwrap().contains("where a boundary was expected"), "{garbled}");
    let resumed = on(&got, PREDICTIONS)[0].json();
    assert_eq!(resumed["output"], expected[3], "predictions resume with the next good part");
    assert_eq!(camera.connections.load(Ordering::SeqCst), 1, "malformed parts do not drop the connection");
    drop(agent);
}

#[test]
fn a_slow_worker_makes_the_source_skip_decoding_replaced_parts() {
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port(), "devices/cam-01/#");
    let camera = StreamCamera::start();
    let agent = Agent::start(&config(&broker, &format!("url = \"{}\"", camera.url)));
    camera.wait_connected();
    // 200 parts a second for 3 s: far faster than the classifier infers.
    let parts: Vec<Vec<u8>> = FRAMES.iter().map(|name| part("frame", &frame(name))).collect();
    let sent = 600;
    let start = Instant::now();
    for index in 0..sent {
        camera.send(parts[index % parts.len()].clone());
        let due = start + Duration::from_millis(5 * (index as u64 + 1));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    // Health once everything sent is accounted for: inferred, replaced in the slot, or waiting in it.
    let got = sub.collect_until(WAIT, |got| {
        on(got, "devices/cam-01/health").last().is_some_and(|health| {
            let source = &health.json()["sources"][0];
            let taken = source["frames_in"].as_u64().unwrap_or(0) + source["dropped"].as_u64().unwrap_or(0);
            taken + 1 >= sent as u64
        })
    });
    let health = on(&got, "devices/cam-01/health").last().unwrap().json();
    let source = &health["sources"][0];
    let (inferred, replaced) = (source["frames_in"].as_u64().unwrap(), source["dropped"].as_u64().unwrap());
    assert!(inferred < sent as u64 && replaced > 0, "{inferred} inferred, {replaced} replaced of {sent}: {health}");
    assert!(inferred >= 1 && !on(&got, PREDICTIONS).is_empty());
    assert!(on(&got, ERRORS).is_empty(), "replacing is not an error: {:?}", on(&got, ERRORS));
    assert_eq!(camera.connections.load(Ordering::SeqCst), 1);
    drop(agent);
}

#[test]
fn a_snapshot_url_is_polled_and_its_http_errors_are_reported_and_retried() {
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port(), "devices/cam-01/#");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}/snapshot.jpg", listener.local_addr().unwrap().port());
    let requests = Arc::new(AtomicUsize::new(0));
    let served = requests.clone();
    std::thread::spawn(move || {
        let jpeg = frame("rocket.jpg");
        for socket in listener.incoming() {
            let Ok(mut socket) = socket else { return };
            read_request(&mut socket);
            let response = match served.fetch_add(1, Ordering::SeqCst) {
                0 => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
                1 => b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n".to_vec(),
                _ => {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                        jpeg.len()
                    );
                    [head.as_bytes(), &jpeg].concat()
                }
            };
            let _ = socket.write_all(&response);
        }
    });
    let source = format!("url = \"{url}\"\nmode = \"snapshot\"\nrate_fps = 5");
    let agent = Agent::start(&config(&broker, &source));
    let got = sub.collect_until(WAIT, |got| on(got, PREDICTIONS).len() >= 2);
    let errors: Vec<Value> = on(&got, ERRORS).iter().map(|m| m.json()).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().all(|e| e["kind"] == "http_status"));
    assert!(
        errors[0]["message"].as_str().unwrap().contains("404")
            && errors[1]["message"].as_str().unwrap().contains("500")
    );
    let expected = infer(&["rocket.jpg"]);
    assert!(on(&got, PREDICTIONS).iter().all(|p| p.json()["output"] == expected[0]));
    assert!(requests.load(Ordering::SeqCst) >= 4);
    drop(agent);
}
