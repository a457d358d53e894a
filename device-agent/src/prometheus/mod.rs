//! `/metrics` for Prometheus (cargo feature `prometheus`, `[metrics] listen`): the `metrics` thread renders the
//! latest health snapshot on each scrape, so that `/metrics` and MQTT health never disagree. One connection at a
//! time: a scraper comes every few seconds, and a client that stalls is cut off by [`http`]'s bounds.

mod http;
mod render;

use crate::config::AgentConfig;
use crate::health::{HealthReporter, LatestSnapshot};
use render::Renderer;
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// How often the idle thread looks at the stop flag: the longest [`Exporter::stop`] waits for it.
const STOP_POLL: Timespec = Timespec { tv_sec: 0, tv_nsec: 200_000_000 };
/// The pause after a failed accept (out of file descriptors), which would otherwise be retried at once.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Starts `/metrics` when `[metrics] listen` is set, fed by `health`'s reports. An address that cannot be bound
/// is logged and the agent runs without the endpoint: monitoring must not stop inference.
pub fn start(config: &AgentConfig, health: &mut HealthReporter) -> Option<Exporter> {
    let listen = config.metrics.listen_addr()?;
    let started =
        TcpListener::bind(listen).and_then(|listener| Exporter::start(listener, &config.device_id, health.export()));
    match started {
        Ok(exporter) => {
            log::info!(address = exporter.address().to_string().as_str(); "Serving /metrics.");
            Some(exporter)
        }
        Err(error) => {
            log::error!("/metrics not served: cannot listen on {listen}: {error}.");
            None
        }
    }
}

/// The running endpoint.
pub struct Exporter {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Exporter {
    /// Starts the `metrics` thread answering on `listener` with `latest` (every series labelled with `device`).
    pub fn start(listener: TcpListener, device: &str, latest: Arc<LatestSnapshot>) -> io::Result<Exporter> {
        // Accepts only after poll said a connection waits; one the client reset meanwhile must not block.
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let renderer = Renderer::new(device, latest);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread =
            thread::Builder::new().name("metrics".into()).spawn(move || serve(&listener, &renderer, &stopped))?;
        Ok(Exporter { address, stop, thread })
    }

    /// Where it listens (the port the OS chose when `listen` named port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops the thread once the connection in hand, if any, is answered.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

fn serve(listener: &TcpListener, renderer: &Renderer, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let mut ready = [PollFd::new(listener, PollFlags::IN)];
        match poll(&mut ready, Some(&STOP_POLL)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => {}
            Err(error) => {
                log::error!("/metrics stopped: waiting for connections failed: {error}.");
                return;
            }
        }
        let stream = match listener.accept() {
            Ok((stream, _peer)) => stream,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            Err(error) => {
                log::warn!("/metrics: accept failed: {error}.");
                thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        };
        let answered = stream.set_nonblocking(false).and_then(|()| {
            http::serve(stream, || {
                renderer.render().map_err(|error| log::error!("/metrics: rendering failed: {error}.")).ok()
            })
        });
        if let Err(error) = answered {
            log::debug!("/metrics: request not answered: {error}.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::conditions::tests::recorded;
    use crate::health::{Metrics, Snapshot};
    use crate::mqtt::tests::agent_config;
    use ::mqtt::testing::{Broker, Subscriber};
    use protocol::wire::Health;
    use runtime::StageTimings;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    fn empty_snapshot() -> Arc<LatestSnapshot> {
        let health: Health = serde_json::from_value(serde_json::json!({
            "device": "cam-01", "agent_version": "0.1.0", "uptime_s": 1, "cpu_percent": 0.0, "rss_bytes": 1,
            "peak_rss_bytes": 1, "temperature_c": null, "mqtt_reconnects": 0, "sources": [], "health_unpublished": 0,
            "arch": "x86_64", "mqtt_oversized": 0, "conditions": [], "spool": null, "cameras": [], "snapshots": [],
            "monitors": []
        }))
        .expect("a health report");
        Arc::new(LatestSnapshot::new(Snapshot { health, latency: Vec::new() }))
    }

    fn loopback() -> TcpListener {
        TcpListener::bind("127.0.0.1:0").expect("a free port")
    }

    /// Sends `request` as is and returns the whole response.
    fn exchange(address: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(address).expect("connects");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout set");
        stream.write_all(request).expect("sent");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("a response, then close");
        response
    }

    fn scrape(address: SocketAddr) -> String {
        let response = exchange(address, b"GET /metrics HTTP/1.1\r\nHost: device\r\n\r\n");
        let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"), "{head}");
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())), "{head}");
        body.to_owned()
    }

    #[test]
    fn serves_metrics_and_refuses_the_rest() {
        let exporter = Exporter::start(loopback(), "cam-01", empty_snapshot()).expect("started");
        let address = exporter.address();
        let body = scrape(address);
        assert!(body.contains(r#"edge_agent_info{device="cam-01",version="0.1.0",arch="x86_64"} 1"#), "{body}");

        let not_found = exchange(address, b"GET / HTTP/1.1\r\n\r\n");
        assert!(not_found.starts_with("HTTP/1.1 404 Not Found\r\n"), "{not_found}");
        let post = exchange(address, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert!(post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n") && post.contains("Allow: GET\r\n"), "{post}");
        let garbage = exchange(address, b"\x00\x01\x02 hello\r\n\r\n");
        assert!(garbage.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{garbage}");
        let mut huge = b"GET /metrics HTTP/1.1\r\n".to_vec();
        huge.extend(std::iter::repeat_n(b'a', 64 * 1024));
        let too_large = exchange(address, &huge);
        assert!(too_large.starts_with("HTTP/1.1 431 "), "{too_large}");
        // Still serving after all that.
        assert!(scrape(address).contains("edge_agent_info"));

        let asked = Instant::now();
        exporter.stop();
        assert!(asked.elapsed() < Duration::from_secs(1), "took {:?}", asked.elapsed());
        assert!(TcpStream::connect(address).is_err(), "the listener is closed");
    }

    #[test]
    fn a_client_that_stalls_is_cut_off_and_the_next_one_served() {
        let exporter = Exporter::start(loopback(), "cam-01", empty_snapshot()).expect("started");
        let address = exporter.address();
        let mut stalled = TcpStream::connect(address).expect("connects");
        stalled.write_all(b"GET /metrics HTTP/1.1\r\n").expect("half a head");
        // Give the thread time to take the stalled connection first.
        std::thread::sleep(Duration::from_millis(200));
        let asked = Instant::now();
        assert!(scrape(address).contains("edge_agent_info"));
        let waited = asked.elapsed();
        assert!(waited < Duration::from_secs(6), "waited {waited:?}");
        stalled.set_read_timeout(Some(Duration::from_secs(1))).expect("timeout set");
        let mut nothing = Vec::new();
        assert_eq!(stalled.read_to_end(&mut nothing).map(|_| nothing.len()).ok(), Some(0), "closed without an answer");
        exporter.stop();
    }

    /// One snapshot feeds both: the report a scrape renders is the one published on MQTT in the same tick.
    #[test]
    fn metrics_and_mqtt_health_agree() {
        let broker = Broker::start(None);
        let config = agent_config(&broker, "prom-1", "[health]\ninterval_secs = 1");
        let (mqtt, pending) = crate::mqtt::connect(&config).expect("valid");
        let mqtt_thread = pending.start(Vec::new()).expect("link starts");
        let subscriber = Subscriber::start(&broker, "devices/prom-1/health", "devices/prom-1/health");

        let metrics = Arc::new(Metrics::new());
        let front = metrics.register("front");
        let (conditions, _events) = recorded(Arc::new(SystemClock));
        let mut reporter = HealthReporter::new(&config, metrics, mqtt.clone(), Arc::new(conditions), None);
        let latest = reporter.export();
        assert_eq!(latest.get().health.sources[0].frames_in, 0, "a first snapshot before the first report");
        let exporter = Exporter::start(loopback(), "prom-1", latest.clone()).expect("started");
        let (stop, shutdown) = mpsc::channel();
        let health_thread = reporter.spawn(shutdown).expect("spawn");
        for _ in 0..5 {
            front.frame_in();
        }
        for _ in 0..3 {
            front.frame_ok(&StageTimings { decode_us: 10, preprocess_us: 20, inference_us: 3_000, postprocess_us: 5 });
        }

        // A report and the snapshot taken with it are equal, field by field (a later tick may have come
        // between receiving one and reading the other: then the next report is compared).
        let same_tick = (0..5).find_map(|_| {
            let (_, payload) = subscriber.next_message();
            let published: Health = serde_json::from_str(&payload).expect("a JSON health report");
            (latest.get().health == published).then_some(published)
        });
        let published = same_tick.expect("a report equal to its snapshot");
        assert_eq!((published.sources[0].frames_in, published.sources[0].frames_ok), (5, 3));
        let body = scrape(exporter.address());
        for line in [
            r#"edge_frames_in_total{device="prom-1",source="front"} 5"#,
            r#"edge_frames_ok_total{device="prom-1",source="front"} 3"#,
            r#"edge_inference_duration_seconds_count{device="prom-1",source="front",stage="inference"} 3"#,
        ] {
            assert!(body.lines().any(|l| l == line), "missing {line}\nin\n{body}");
        }

        stop.send(()).expect("reporter is running");
        health_thread.join().expect("health thread ends");
        exporter.stop();
        assert!(mqtt.shutdown(Duration::from_secs(5)).closed);
        mqtt_thread.join().expect("mqtt thread ends");
    }
}
