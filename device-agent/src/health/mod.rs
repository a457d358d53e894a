//! Health: per-source [`Metrics`], process and board statistics, and the `health` thread that publishes a
//! [`Health`] report every `health.interval_secs` (through the spool when there is one).

#[cfg(feature = "prometheus")]
mod export;
mod metrics;
pub mod system;

#[cfg(feature = "prometheus")]
pub use export::{LatestSnapshot, Snapshot};
#[cfg(feature = "prometheus")]
pub use metrics::{LatencyHistogram, SourceLatency};
pub use metrics::{Metrics, SourceStats, nearest_rank};

use crate::AGENT_VERSION;
use crate::clock::Clock;
use crate::conditions::{AGENT, Condition as Raise, Conditions};
use crate::config::AgentConfig;
use crate::mqtt::{self, MqttHandle, QoS};
use crate::outbox::Publish;
use crate::spool::{Class, Spool};
use protocol::wire::{
    self, CameraHealth, Condition, Format, Health, MonitorHealth, SnapshotHealth, SourceHealth, SpoolHealth,
};
use std::io;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::Duration;
use system::{SystemSample, SystemSampler};

/// Publishes health reports until told to stop.
pub struct HealthReporter {
    device: String,
    metrics: Arc<Metrics>,
    mqtt: MqttHandle,
    /// Where reports go and whose state they include; `None`: straight to the link.
    spool: Option<Arc<Spool>>,
    topic: String,
    qos: QoS,
    /// `health.retain`; through the spool, its forwarder retains the live reports instead.
    retain: bool,
    format: Format,
    interval: Duration,
    clock: Arc<dyn Clock>,
    conditions: Arc<Conditions>,
    /// Where each report also goes, for `/metrics`; `None` without an endpoint.
    #[cfg(feature = "prometheus")]
    export: Option<Arc<LatestSnapshot>>,
}

impl HealthReporter {
    pub fn new(
        config: &AgentConfig,
        metrics: Arc<Metrics>,
        mqtt: MqttHandle,
        conditions: Arc<Conditions>,
        spool: Option<Arc<Spool>>,
    ) -> HealthReporter {
        HealthReporter {
            spool,
            device: config.device_id.clone(),
            clock: metrics.clock(),
            metrics,
            topic: config.topics().health(),
            qos: mqtt::qos(config.mqtt.qos.health),
            retain: config.health.retain,
            format: config.mqtt.format,
            interval: Duration::from_secs(config.health.interval_secs),
            mqtt,
            conditions,
            #[cfg(feature = "prometheus")]
            export: None,
        }
    }

    /// Hands every report, with the latency histograms of the same tick, to `/metrics`. The first snapshot is
    /// taken now, so that a scrape before the first report is not empty.
    #[cfg(feature = "prometheus")]
    pub fn export(&mut self) -> Arc<LatestSnapshot> {
        let spool = self.spool.as_ref().map(|spool| spool.health());
        let health = self.gather(SystemSampler::new().sample(), spool, 0);
        let latest = Arc::new(LatestSnapshot::new(Snapshot { health, latency: self.metrics.latency_histograms() }));
        self.export = Some(latest.clone());
        latest
    }

    /// Starts the `health` thread. It reports every interval (the first one interval after start) and ends
    /// as soon as `shutdown` receives a message or its sender is dropped.
    pub fn spawn(self, shutdown: Receiver<()>) -> io::Result<JoinHandle<()>> {
        thread::Builder::new().name("health".into()).spawn(move || self.run(&shutdown))
    }

    fn run(self, shutdown: &Receiver<()>) {
        let mut sampler = SystemSampler::new();
        let mut unpublished = 0u64;
        let mut failing = false;
        let mut spool_write_errors = 0u64;
        // Deadlines rather than sleeps, so that reports don't drift by the time each one takes.
        let mut next = self.clock.now() + self.interval;
        loop {
            match shutdown.recv_timeout(next.saturating_duration_since(self.clock.now())) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
            let now = self.clock.now();
            next += self.interval;
            if next < now {
                // After a stall (a suspended board), skip the missed reports instead of bursting them.
                next = now + self.interval;
            }
            let spool = self.spool.as_ref().map(|spool| spool.health());
            if let Some(spool) = &spool {
                self.watch_spool(spool.write_errors, &mut spool_write_errors);
            }
            let health = self.gather(sampler.sample(), spool, unpublished);
            #[cfg(feature = "prometheus")]
            if let Some(export) = &self.export {
                export.set(Snapshot { health: health.clone(), latency: self.metrics.latency_histograms() });
            }
            match self.publish(&health) {
                Ok(()) => failing = false,
                Err(error) => {
                    // One warning per run of failures; the count goes out with the next report that makes it.
                    if failing {
                        log::debug!("Health report not published: {error}.");
                    } else {
                        log::warn!("Health report not published: {error}.");
                    }
                    failing = true;
                    unpublished += 1;
                }
            }
        }
    }

    /// The report of this tick: the sources' and the link's counters, the raised conditions, the spool.
    fn gather(&self, system: SystemSample, spool: Option<SpoolHealth>, unpublished: u64) -> Health {
        let sources = SourceReports {
            sources: self.metrics.snapshot(),
            cameras: self.metrics.cameras(),
            snapshots: self.metrics.snapshot_counters(),
            monitors: self.metrics.monitors(),
        };
        let mqtt = MqttCounters { reconnects: self.mqtt.reconnects(), oversized: self.metrics.mqtt_oversized() };
        let degraded = Degraded { conditions: self.conditions.snapshot(), spool };
        report(&self.device, self.clock.unix_time_ms(), system, sources, mqtt, unpublished, degraded)
    }

    /// Raises `spool_failing` while appends fail (some did since the last report), and clears it after an
    /// interval without a failure.
    fn watch_spool(&self, write_errors: u64, seen: &mut u64) {
        match SpoolWrites::since(*seen, write_errors) {
            SpoolWrites::Failing(failed) => {
                let detail =
                    format!("{failed} appends to the spool failed in the last interval (counted as unpublished)");
                self.conditions.raise(Raise::SpoolFailing, AGENT, &detail);
            }
            SpoolWrites::Working => {
                self.conditions.clear(Raise::SpoolFailing, AGENT);
            }
        }
        *seen = write_errors;
    }

    fn publish(&self, health: &Health) -> Result<(), String> {
        let payload = wire::encode(self.format, health).map_err(|e| e.to_string())?;
        match &self.spool {
            Some(spool) => spool.publish(Class::Health, self.topic.clone(), self.qos, payload),
            None => {
                self.mqtt.try_publish(self.topic.clone(), self.qos, self.retain, payload).map_err(|e| e.to_string())
            }
        }
    }
}

/// What health says of the MQTT link.
struct MqttCounters {
    reconnects: u64,
    oversized: u64,
}

/// How the spool's appends went over an interval, from its `write_errors` counter.
#[derive(Debug, PartialEq, Eq)]
enum SpoolWrites {
    Working,
    /// This many appends failed.
    Failing(u64),
}

impl SpoolWrites {
    fn since(before: u64, now: u64) -> SpoolWrites {
        match now.saturating_sub(before) {
            0 => SpoolWrites::Working,
            failed => SpoolWrites::Failing(failed),
        }
    }
}

/// What health says of the sources: each one's counters, the live cameras' streams, the snapshots, the
/// model monitors.
struct SourceReports {
    sources: Vec<SourceHealth>,
    cameras: Vec<CameraHealth>,
    snapshots: Vec<SnapshotHealth>,
    monitors: Vec<MonitorHealth>,
}

/// What health says of the agent's degraded parts: the raised conditions and the spool (`None` without one).
struct Degraded {
    conditions: Vec<Condition>,
    spool: Option<SpoolHealth>,
}

fn report(
    device: &str,
    at_ms: u64,
    system: SystemSample,
    sources: SourceReports,
    mqtt: MqttCounters,
    health_unpublished: u64,
    degraded: Degraded,
) -> Health {
    Health {
        device: device.to_owned(),
        agent_version: AGENT_VERSION.to_owned(),
        uptime_s: system.uptime_s,
        cpu_percent: system.cpu_percent,
        rss_bytes: system.rss_bytes,
        peak_rss_bytes: system.peak_rss_bytes,
        temperature_c: system.temperature_c,
        mqtt_reconnects: mqtt.reconnects,
        sources: sources.sources,
        health_unpublished,
        arch: std::env::consts::ARCH.to_owned(),
        mqtt_oversized: mqtt.oversized,
        conditions: degraded.conditions,
        spool: degraded.spool,
        cameras: sources.cameras,
        snapshots: sources.snapshots,
        monitors: sources.monitors,
        at_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::conditions::tests::recorded;
    use crate::mqtt::tests::agent_config;
    use crate::snapshot::SnapshotOutcome;
    use ::mqtt::testing::{Broker, Subscriber};
    use protocol::error::ErrorKind;
    use runtime::StageTimings;
    use std::sync::mpsc;
    use std::time::Instant;

    #[test]
    fn reports_are_published_and_the_thread_stops_promptly() {
        let broker = Broker::start(None);
        let config = agent_config(&broker, "health-1", "[health]\ninterval_secs = 1");
        let (mqtt, pending) = crate::mqtt::connect(&config).expect("valid");
        let mqtt_thread = pending.start(Vec::new()).expect("link starts");
        let subscriber = Subscriber::start(&broker, "devices/health-1/health", "devices/health-1/health");

        let metrics = Arc::new(Metrics::new());
        let front = metrics.register("front");
        front.frame_in();
        front.frame_ok(&StageTimings { decode_us: 1, preprocess_us: 2, inference_us: 3, postprocess_us: 4 });
        metrics.register_camera("front").decode_error();
        metrics.register_snapshots("front").count(SnapshotOutcome::RateLimited);
        let (conditions, _events) = recorded(Arc::new(SystemClock));
        conditions.raise(Raise::DiskFull, AGENT, "no space left");
        let (stop, shutdown) = mpsc::channel();
        let reporter = HealthReporter::new(&config, metrics, mqtt.clone(), Arc::new(conditions), None)
            .spawn(shutdown)
            .expect("spawn");

        let (topic, payload) = subscriber.next_message();
        assert_eq!(topic, "devices/health-1/health");
        let health: Health = serde_json::from_str(&payload).expect("a JSON health report");
        assert_eq!((health.device.as_str(), health.agent_version.as_str()), ("health-1", AGENT_VERSION));
        assert!(health.rss_bytes > 0);
        assert_eq!(health.sources.len(), 1);
        assert_eq!((health.sources[0].frames_in, health.sources[0].frames_ok), (1, 1));
        assert_eq!(health.sources[0].latency.total.p50_us, 10);
        assert_eq!(health.health_unpublished, 0);
        assert_eq!(health.conditions.len(), 1);
        assert_eq!(
            (health.conditions[0].kind, health.conditions[0].detail.as_str()),
            (ErrorKind::DiskFull, "no space left")
        );
        assert_eq!(health.spool, None);
        assert_eq!(health.cameras.len(), 1);
        assert_eq!((health.cameras[0].source.as_str(), health.cameras[0].decode_errors), ("front", 1));
        assert_eq!(health.snapshots.len(), 1);
        assert_eq!((health.snapshots[0].source.as_str(), health.snapshots[0].rate_limited), ("front", 1));

        let asked = Instant::now();
        stop.send(()).expect("reporter is running");
        reporter.join().expect("health thread ends");
        assert!(asked.elapsed() < Duration::from_millis(500), "took {:?}", asked.elapsed());

        assert!(mqtt.shutdown(Duration::from_secs(5)).closed);
        mqtt_thread.join().expect("mqtt thread ends");
    }

    #[test]
    fn a_dropped_sender_stops_the_thread() {
        let broker = Broker::start(None);
        let config = agent_config(&broker, "health-2", "");
        let (mqtt, pending) = crate::mqtt::connect(&config).expect("valid");
        let mqtt_thread = pending.start(Vec::new()).expect("link starts");
        let (stop, shutdown) = mpsc::channel::<()>();
        let (conditions, _events) = recorded(Arc::new(SystemClock));
        let reporter = HealthReporter::new(&config, Arc::new(Metrics::new()), mqtt.clone(), Arc::new(conditions), None)
            .spawn(shutdown)
            .expect("spawn");
        drop(stop);
        reporter.join().expect("health thread ends");
        assert!(mqtt.shutdown(Duration::from_secs(5)).closed);
        mqtt_thread.join().expect("mqtt thread ends");
    }

    #[test]
    fn spool_writes_fail_while_the_counter_moves() {
        assert_eq!(SpoolWrites::since(0, 0), SpoolWrites::Working);
        assert_eq!(SpoolWrites::since(2, 5), SpoolWrites::Failing(3));
        assert_eq!(SpoolWrites::since(5, 5), SpoolWrites::Working);
    }
}
