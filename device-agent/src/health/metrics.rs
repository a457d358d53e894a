//! Per-source counters and latency windows, written by sources and workers on their hot paths and read by
//! the health reporter. Counters are atomics; the latency windows, error counts and identity sit behind
//! small mutexes that are held for a few instructions.

use crate::clock::{Clock, SystemClock};
use crate::monitor::MonitorStats;
use crate::snapshot::SnapshotStats;
use crate::sources::camera::CameraStats;
use protocol::error::ErrorKind;
use protocol::wire::{
    CameraHealth, ErrorCount, MonitorHealth, Percentiles, SnapshotHealth, SourceHealth, StageLatency,
};
use runtime::{ModelIdentity, StageTimings};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

#[cfg(feature = "prometheus")]
mod histogram;

#[cfg(feature = "prometheus")]
pub use histogram::{LatencyHistogram, SourceLatency};

/// Latency samples kept per stage: enough for a stable p99, small enough for a board (5 × 4 KiB per source).
const LATENCY_WINDOW: usize = 1024;
/// The registry of sources, in registration order, and the device's own counters.
pub struct Metrics {
    sources: Mutex<Vec<Arc<SourceStats>>>,
    /// Live camera sources' stream counters, in registration order.
    cameras: Mutex<Vec<Camera>>,
    /// The snapshot counters of the sources that take snapshots, in registration order.
    snapshots: Mutex<Vec<(String, Arc<SnapshotStats>)>>,
    /// The model monitors of the sources that have one, in registration order.
    monitors: Mutex<Vec<(String, Arc<MonitorStats>)>>,
    /// Inbound MQTT messages skipped for their size.
    mqtt_oversized: AtomicU64,
    /// What rates are measured by.
    clock: Arc<dyn Clock>,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::with_clock(Arc::new(SystemClock))
    }

    pub fn with_clock(clock: Arc<dyn Clock>) -> Metrics {
        Metrics {
            sources: Mutex::new(Vec::new()),
            cameras: Mutex::new(Vec::new()),
            snapshots: Mutex::new(Vec::new()),
            monitors: Mutex::new(Vec::new()),
            mqtt_oversized: AtomicU64::new(0),
            clock,
        }
    }

    /// Counts an inbound message the link skipped for its size; returns the count so far.
    pub fn count_mqtt_oversized(&self) -> u64 {
        self.mqtt_oversized.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Inbound messages the link skipped for their size since start.
    pub fn mqtt_oversized(&self) -> u64 {
        self.mqtt_oversized.load(Ordering::Relaxed)
    }

    /// The clock rates are measured by, for the reporter to schedule by.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// Adds a source and returns its stats, for its source thread and worker to share.
    pub fn register(&self, name: &str) -> Arc<SourceStats> {
        let stats = Arc::new(SourceStats::started_at(name, self.clock.now()));
        lock(&self.sources).push(stats.clone());
        stats
    }

    /// Adds a live camera source's stream counters, for its source thread to write.
    pub fn register_camera(&self, name: &str) -> Arc<CameraStats> {
        let stats = Arc::new(CameraStats::default());
        let previous = Mutex::new((CameraCounts::default(), self.clock.now()));
        lock(&self.cameras).push(Camera { name: name.to_owned(), stats: stats.clone(), previous });
        stats
    }

    /// Adds the snapshot counters of a source that takes snapshots.
    pub fn register_snapshots(&self, name: &str) -> Arc<SnapshotStats> {
        let stats = Arc::new(SnapshotStats::default());
        lock(&self.snapshots).push((name.to_owned(), stats.clone()));
        stats
    }

    /// Adds the model monitor of a source, for its worker, feedback route and monitor thread to update.
    pub fn register_monitor(&self, name: &str) -> Arc<MonitorStats> {
        let stats = Arc::new(MonitorStats::default());
        lock(&self.monitors).push((name.to_owned(), stats.clone()));
        stats
    }

    /// Every source's health since the previous snapshot (rates) and over its latency window.
    pub fn snapshot(&self) -> Vec<SourceHealth> {
        let now = self.clock.now();
        lock(&self.sources).iter().map(|stats| stats.snapshot_at(now)).collect()
    }

    /// Every camera's stream since the previous call (rates) and as it is now.
    pub fn cameras(&self) -> Vec<CameraHealth> {
        let (now, now_ms) = (self.clock.now(), self.clock.unix_time_ms());
        let sources = lock(&self.sources);
        lock(&self.cameras)
            .iter()
            .map(|camera| {
                let source = sources.iter().find(|source| source.name == camera.name);
                camera.health_at(source.map(|source| &**source), now, now_ms)
            })
            .collect()
    }

    /// The snapshot counters of every source that takes snapshots.
    pub fn snapshot_counters(&self) -> Vec<SnapshotHealth> {
        lock(&self.snapshots).iter().map(|(name, stats)| stats.health(name)).collect()
    }

    /// The model monitor of every source that has one.
    pub fn monitors(&self) -> Vec<MonitorHealth> {
        lock(&self.monitors).iter().map(|(name, stats)| stats.health(name)).collect()
    }
}

/// A camera's stream counters, and their values at the previous health report for the rates.
struct Camera {
    name: String,
    stats: Arc<CameraStats>,
    previous: Mutex<(CameraCounts, Instant)>,
}

/// The totals a camera's rates are computed from.
#[derive(Debug, Clone, Copy, Default)]
struct CameraCounts {
    received: u64,
    decoded: u64,
    /// The source's `frames_ok`.
    inferred: u64,
    /// Frames the source handed over that replaced one the worker had not taken (never decoded, for JPEG).
    replaced: u64,
}

impl Camera {
    /// The camera's health at `now` (`now_ms` on the wall), with the inferred frames of `source`,
    /// the worker's side of the same source (`None`: not registered, read as 0).
    fn health_at(&self, source: Option<&SourceStats>, now: Instant, now_ms: u64) -> CameraHealth {
        let stats = &self.stats;
        let counts = CameraCounts {
            received: stats.received_total(),
            decoded: stats.decoded_total(),
            inferred: source.map_or(0, |source| source.frames_ok.load(Ordering::Relaxed)),
            replaced: stats.replaced_total(),
        };
        let (before, since) = std::mem::replace(&mut *lock(&self.previous), (counts, now));
        let elapsed = now.saturating_duration_since(since);
        let rate = |total: u64, before: u64| per_second(total.saturating_sub(before), elapsed);
        let last_frame_ms = stats.last_frame_ms();
        let stream = stats.stream();
        CameraHealth {
            source: self.name.clone(),
            received_per_s: rate(counts.received, before.received),
            decoded_per_s: rate(counts.decoded, before.decoded),
            inferred_per_s: rate(counts.inferred, before.inferred),
            replaced_per_s: rate(counts.replaced, before.replaced),
            decode_errors: stats.decode_errors_total(),
            reconnects: stats.reconnects_total(),
            last_frame_age_ms: (last_frame_ms > 0).then(|| now_ms.saturating_sub(last_frame_ms)),
            width: stream.width,
            height: stream.height,
            codec: stream.codec,
            decoder: stream.decoder,
        }
    }
}

/// One source's counters. All methods take `&self`.
#[derive(Debug)]
pub struct SourceStats {
    name: String,
    frames_in: AtomicU64,
    frames_ok: AtomicU64,
    dropped: AtomicU64,
    unpublished: AtomicU64,
    queue_depth: AtomicU32,
    queue_capacity: AtomicU32,
    errors: Mutex<BTreeMap<ErrorKind, u64>>,
    latency: Mutex<Latency>,
    identity: Mutex<Identity>,
    /// `frames_ok` and the time at the previous snapshot, for the rate.
    last_snapshot: Mutex<(u64, Instant)>,
}

#[derive(Debug, Default)]
struct Identity {
    model: Option<ModelIdentity>,
    provider_requested: Vec<String>,
    provider_active: String,
}

impl SourceStats {
    /// Stats of one source, outside any registry (`device-agent infer`); the agent uses [`Metrics::register`].
    pub fn new(name: &str) -> SourceStats {
        SourceStats::started_at(name, Instant::now())
    }

    fn started_at(name: &str, now: Instant) -> SourceStats {
        SourceStats {
            name: name.to_owned(),
            frames_in: AtomicU64::new(0),
            frames_ok: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            unpublished: AtomicU64::new(0),
            queue_depth: AtomicU32::new(0),
            queue_capacity: AtomicU32::new(0),
            errors: Mutex::new(BTreeMap::new()),
            latency: Mutex::new(Latency::default()),
            identity: Mutex::new(Identity::default()),
            last_snapshot: Mutex::new((0, now)),
        }
    }

    /// The source delivered an input.
    pub fn frame_in(&self) {
        self.frames_in.fetch_add(1, Ordering::Relaxed);
    }

    /// An input became a prediction, taking `timings`.
    pub fn frame_ok(&self, timings: &StageTimings) {
        self.frames_ok.fetch_add(1, Ordering::Relaxed);
        lock(&self.latency).record(timings);
    }

    /// `count` inputs were dropped before inference (slot overwritten, queue full).
    pub fn dropped(&self, count: u64) {
        self.dropped.fetch_add(count, Ordering::Relaxed);
    }

    /// An input failed with `kind` (see [`ErrorEvent::kind`](protocol::wire::ErrorEvent::kind)).
    pub fn error(&self, kind: ErrorKind) {
        *lock(&self.errors).entry(kind).or_default() += 1;
    }

    /// The spool or the MQTT link refused a message carrying `count` predictions (or one error event).
    pub fn unpublished(&self, count: u64) {
        self.unpublished.fetch_add(count, Ordering::Relaxed);
    }

    /// The source's queue (or latest-frame slot: capacity 1) now holds `depth` of `capacity`.
    pub fn set_queue(&self, depth: usize, capacity: usize) {
        self.queue_depth.store(saturating_u32(depth), Ordering::Relaxed);
        self.queue_capacity.store(saturating_u32(capacity), Ordering::Relaxed);
    }

    /// The model the source's pipeline runs, once loaded.
    pub fn set_model(&self, model: ModelIdentity) {
        lock(&self.identity).model = Some(model);
    }

    /// The execution providers asked for (best first) and the one that took the session.
    pub fn set_providers(&self, requested: Vec<String>, active: String) {
        let mut identity = lock(&self.identity);
        identity.provider_requested = requested;
        identity.provider_active = active;
    }

    /// The p99 of the whole pipeline's latency over the window; `None` before the first prediction.
    pub fn total_p99(&self) -> Option<Duration> {
        let latency = lock(&self.latency);
        let total = &latency.windows.total;
        (!total.samples.is_empty()).then(|| Duration::from_micros(u64::from(total.percentiles().p99_us)))
    }

    fn snapshot_at(&self, now: Instant) -> SourceHealth {
        let frames_ok = self.frames_ok.load(Ordering::Relaxed);
        let frames_per_s = {
            let mut last = lock(&self.last_snapshot);
            let (last_ok, last_at) = *last;
            *last = (frames_ok, now);
            per_second(frames_ok.saturating_sub(last_ok), now.saturating_duration_since(last_at))
        };
        let mut errors: Vec<ErrorCount> =
            lock(&self.errors).iter().map(|(&kind, &count)| ErrorCount { kind, count }).collect();
        // Sorted by the names subscribers read.
        errors.sort_by_key(|error| error.kind.as_str());
        let identity = lock(&self.identity);
        let model = identity.model.clone().unwrap_or_else(|| ModelIdentity {
            name: String::new(),
            version: String::new(),
            sha256: String::new(),
        });
        SourceHealth {
            name: self.name.clone(),
            model,
            provider_requested: identity.provider_requested.clone(),
            provider_active: identity.provider_active.clone(),
            frames_in: self.frames_in.load(Ordering::Relaxed),
            frames_ok,
            frames_per_s,
            dropped: self.dropped.load(Ordering::Relaxed),
            errors,
            queue_depth: self.queue_depth.load(Ordering::Relaxed),
            queue_capacity: self.queue_capacity.load(Ordering::Relaxed),
            latency: lock(&self.latency).windows.percentiles(),
            predictions_unpublished: self.unpublished.load(Ordering::Relaxed),
        }
    }
}

/// Events per second; 0 over an empty interval.
fn per_second(count: u64, elapsed: Duration) -> f32 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 { (count as f64 / seconds) as f32 } else { 0.0 }
}

fn saturating_u32(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

/// Metrics stay readable after a panic elsewhere: a poisoned lock still holds valid counters.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a source keeps of its latencies: the recent windows (percentiles for MQTT health) and, for Prometheus,
/// histograms since start, recorded together.
#[derive(Debug, Default)]
struct Latency {
    windows: PerStage<LatencyWindow>,
    #[cfg(feature = "prometheus")]
    histograms: PerStage<LatencyHistogram>,
}

impl Latency {
    fn record(&mut self, timings: &StageTimings) {
        self.windows.record(timings, LatencyWindow::push);
        #[cfg(feature = "prometheus")]
        self.histograms.record(timings, LatencyHistogram::observe);
    }
}

/// One latency statistic for each stage of the pipeline and for the whole of it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PerStage<T> {
    pub decode: T,
    pub preprocess: T,
    pub inference: T,
    pub postprocess: T,
    /// The sum of the stages (saturating).
    pub total: T,
}

impl<T> PerStage<T> {
    fn record(&mut self, timings: &StageTimings, mut observe: impl FnMut(&mut T, u32)) {
        let total = [timings.preprocess_us, timings.inference_us, timings.postprocess_us]
            .into_iter()
            .fold(timings.decode_us, u32::saturating_add);
        observe(&mut self.decode, timings.decode_us);
        observe(&mut self.preprocess, timings.preprocess_us);
        observe(&mut self.inference, timings.inference_us);
        observe(&mut self.postprocess, timings.postprocess_us);
        observe(&mut self.total, total);
    }
}

impl PerStage<LatencyWindow> {
    fn percentiles(&self) -> StageLatency {
        StageLatency {
            decode: self.decode.percentiles(),
            preprocess: self.preprocess.percentiles(),
            inference: self.inference.percentiles(),
            postprocess: self.postprocess.percentiles(),
            total: self.total.percentiles(),
        }
    }
}

/// The last [`LATENCY_WINDOW`] samples, overwritten oldest first: memory is fixed after it fills.
#[derive(Debug)]
struct LatencyWindow {
    samples: Vec<u32>,
    /// Where the next sample goes once the window is full.
    oldest: usize,
}

impl Default for LatencyWindow {
    fn default() -> Self {
        LatencyWindow { samples: Vec::with_capacity(LATENCY_WINDOW), oldest: 0 }
    }
}

impl LatencyWindow {
    fn push(&mut self, sample_us: u32) {
        if self.samples.len() < LATENCY_WINDOW {
            self.samples.push(sample_us);
        } else {
            self.samples[self.oldest] = sample_us;
            self.oldest = (self.oldest + 1) % LATENCY_WINDOW;
        }
    }

    /// Sorts a copy (every health interval, at most 1024 values): cheaper than keeping the window sorted on
    /// the hot path.
    fn percentiles(&self) -> Percentiles {
        let mut sorted = self.samples.clone();
        sorted.sort_unstable();
        Percentiles {
            p50_us: nearest_rank(&sorted, 50),
            p95_us: nearest_rank(&sorted, 95),
            p99_us: nearest_rank(&sorted, 99),
        }
    }
}

/// The nearest-rank percentile of sorted samples: the smallest sample with at least `percent`% of the
/// samples at or below it. 0 when there are none.
pub fn nearest_rank(sorted: &[u32], percent: usize) -> u32 {
    let rank = (percent * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::sources::camera::StreamInfo;

    fn timings(decode_us: u32, preprocess_us: u32, inference_us: u32, postprocess_us: u32) -> StageTimings {
        StageTimings { decode_us, preprocess_us, inference_us, postprocess_us }
    }

    /// The definition, with floating point: rank = ceil(p/100 × n), 1-based.
    fn reference(samples: &[u32], percent: f64) -> u32 {
        if samples.is_empty() {
            return 0;
        }
        let mut sorted = samples.to_vec();
        sorted.sort();
        let rank = ((percent / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
        sorted[rank - 1]
    }

    #[test]
    fn percentiles_match_the_reference() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut random = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for len in (0..=50).chain([99, 100, 101, 999, 1000, 1024]) {
            let samples: Vec<u32> = (0..len).map(|_| (random() % 10_000) as u32).collect();
            let mut window = LatencyWindow::default();
            samples.iter().for_each(|&sample| window.push(sample));
            let got = window.percentiles();
            let expected = Percentiles {
                p50_us: reference(&samples, 50.0),
                p95_us: reference(&samples, 95.0),
                p99_us: reference(&samples, 99.0),
            };
            assert_eq!(got, expected, "{len} samples");
        }
    }

    #[test]
    fn percentiles_by_hand() {
        assert_eq!(nearest_rank(&[], 50), 0);
        assert_eq!(nearest_rank(&[7], 99), 7);
        let hundred: Vec<u32> = (1..=100).collect();
        assert_eq!((nearest_rank(&hundred, 50), nearest_rank(&hundred, 95), nearest_rank(&hundred, 99)), (50, 95, 99));
        let ten: Vec<u32> = (1..=10).collect();
        assert_eq!((nearest_rank(&ten, 50), nearest_rank(&ten, 95), nearest_rank(&ten, 99)), (5, 10, 10));
    }

    #[test]
    fn window_is_bounded_and_keeps_the_latest() {
        let mut window = LatencyWindow::default();
        for sample in 0..(3 * LATENCY_WINDOW as u32 + 5) {
            window.push(sample);
        }
        assert_eq!(window.samples.len(), LATENCY_WINDOW);
        assert_eq!(window.samples.capacity(), LATENCY_WINDOW);
        let oldest_kept = 2 * LATENCY_WINDOW as u32 + 5;
        assert_eq!(window.samples.iter().min(), Some(&oldest_kept));
        assert_eq!(window.percentiles().p99_us, reference(&window.samples, 99.0));
    }

    #[test]
    fn rate_over_the_interval_since_the_last_snapshot() {
        assert_eq!(per_second(0, Duration::ZERO), 0.0);
        assert_eq!(per_second(5, Duration::ZERO), 0.0);
        assert_eq!(per_second(25, Duration::from_secs(10)), 2.5);
        assert_eq!(per_second(3, Duration::from_millis(500)), 6.0);

        let start = Instant::now();
        let stats = SourceStats::started_at("front", start);
        for _ in 0..20 {
            stats.frame_ok(&timings(1, 2, 3, 4));
        }
        assert_eq!(stats.snapshot_at(start + Duration::from_secs(10)).frames_per_s, 2.0);
        for _ in 0..5 {
            stats.frame_ok(&timings(1, 2, 3, 4));
        }
        // Only the 5 since the previous snapshot, over the 5 s since it.
        assert_eq!(stats.snapshot_at(start + Duration::from_secs(15)).frames_per_s, 1.0);
        assert_eq!(stats.snapshot_at(start + Duration::from_secs(15)).frames_per_s, 0.0);
    }

    #[test]
    fn snapshot_reports_every_counter() {
        let start = Instant::now();
        let stats = SourceStats::started_at("front", start);
        let before = stats.snapshot_at(start);
        assert_eq!(before.model.name, "");
        assert_eq!(before.latency, StageLatency::default());

        stats.set_model(ModelIdentity { name: "m".into(), version: "1".into(), sha256: "ab".into() });
        stats.set_providers(vec!["cuda".into(), "cpu".into()], "cpu".into());
        for _ in 0..4 {
            stats.frame_in();
        }
        stats.frame_ok(&timings(10, 20, 300, 40));
        stats.frame_ok(&timings(u32::MAX, 1, 0, 0));
        stats.dropped(2);
        stats.error(ErrorKind::Io);
        stats.error(ErrorKind::Decode);
        stats.error(ErrorKind::Io);
        stats.unpublished(1);
        stats.set_queue(3, usize::MAX);

        let health = stats.snapshot_at(start + Duration::from_secs(1));
        assert_eq!(health.name, "front");
        assert_eq!(health.model.version, "1");
        assert_eq!(health.provider_requested, ["cuda", "cpu"]);
        assert_eq!(health.provider_active, "cpu");
        assert_eq!((health.frames_in, health.frames_ok, health.dropped), (4, 2, 2));
        let errors: Vec<(&str, u64)> = health.errors.iter().map(|e| (e.kind.as_str(), e.count)).collect();
        assert_eq!(errors, [("decode", 1), ("io", 2)]);
        assert_eq!((health.queue_depth, health.queue_capacity), (3, u32::MAX));
        assert_eq!(health.predictions_unpublished, 1);
        assert_eq!(health.latency.inference, Percentiles { p50_us: 0, p95_us: 300, p99_us: 300 });
        // The total saturates instead of overflowing.
        assert_eq!(health.latency.total, Percentiles { p50_us: 370, p95_us: u32::MAX, p99_us: u32::MAX });
    }

    #[test]
    fn rates_are_measured_by_the_registry_clock() {
        let clock = Arc::new(ManualClock::new(0));
        let metrics = Metrics::with_clock(clock.clone());
        let front = metrics.register("front");
        for _ in 0..6 {
            front.frame_ok(&timings(1, 2, 3, 4));
        }
        clock.advance(Duration::from_secs(2));
        assert_eq!(metrics.snapshot()[0].frames_per_s, 3.0);
        front.frame_ok(&timings(1, 2, 3, 4));
        clock.advance(Duration::from_millis(250));
        assert_eq!(metrics.snapshot()[0].frames_per_s, 4.0);
    }

    #[test]
    fn camera_rates_over_the_interval_with_the_workers_inferred_count() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let metrics = Metrics::with_clock(clock.clone());
        let source = metrics.register("door");
        let camera = metrics.register_camera("door");
        let before = &metrics.cameras()[0];
        assert_eq!((before.source.as_str(), before.last_frame_age_ms, before.width), ("door", None, 0));

        camera.set_stream(StreamInfo { width: 1920, height: 1080, codec: "h264".into(), decoder: "sw".into() });
        for _ in 0..20 {
            camera.received(1_000_500);
            camera.decoded();
        }
        camera.decode_error();
        camera.reconnected();
        for _ in 0..5 {
            source.frame_ok(&timings(1, 2, 3, 4));
        }
        for _ in 0..15 {
            camera.replaced();
        }
        clock.advance(Duration::from_secs(2));
        let health = &metrics.cameras()[0];
        assert_eq!(
            (health.received_per_s, health.decoded_per_s, health.inferred_per_s, health.replaced_per_s),
            (10.0, 10.0, 2.5, 7.5)
        );
        assert_eq!((health.decode_errors, health.reconnects), (1, 1));
        // The clock started at 1 000 000 ms and moved 2 s; the frames arrived at 1 000 500.
        assert_eq!(health.last_frame_age_ms, Some(1_500));
        assert_eq!(
            (health.width, health.height, health.codec.as_str(), health.decoder.as_str()),
            (1920, 1080, "h264", "sw")
        );

        // Only what came since the previous report; the totals stay.
        camera.received(1_002_500);
        clock.advance(Duration::from_millis(500));
        let health = &metrics.cameras()[0];
        assert_eq!((health.received_per_s, health.decoded_per_s, health.inferred_per_s), (2.0, 0.0, 0.0));
        assert_eq!((health.decode_errors, health.last_frame_age_ms), (1, Some(0)));
    }

    #[test]
    fn a_camera_without_worker_stats_reads_zero_inferred() {
        let clock = Arc::new(ManualClock::new(0));
        let metrics = Metrics::with_clock(clock.clone());
        metrics.register("other").frame_ok(&timings(1, 2, 3, 4));
        metrics.register_camera("lonely").received(0);
        clock.advance(Duration::from_secs(1));
        let health = &metrics.cameras()[0];
        assert_eq!((health.received_per_s, health.inferred_per_s), (1.0, 0.0));
    }

    #[test]
    fn registry_snapshots_in_registration_order() {
        let metrics = Metrics::new();
        let front = metrics.register("front");
        metrics.register("back");
        front.frame_in();
        let names: Vec<String> = metrics.snapshot().into_iter().map(|source| source.name).collect();
        assert_eq!(names, ["front", "back"]);
        assert_eq!(metrics.snapshot()[0].frames_in, 1);
    }
}
