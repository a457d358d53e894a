//! A health [`Snapshot`] in the Prometheus text format (0.0.4): the metric catalogue of `docs/metrics.md`. Every
//! name takes the `edge_` prefix and every series the `device` label; counters end in `_total`, info metrics in
//! `_info` (prometheus-client appends both).

use crate::health::{LatencyHistogram, LatestSnapshot, Snapshot};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, MetricEncoder, NoLabelSet, prometheus_text,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use protocol::wire::{AlertKind, FeatureDrift, FeatureSide, Health, MonitorHealth, SourceHealth};
use std::fmt;
use std::sync::Arc;

/// The label set of a metric with one series (the registry adds `device`).
const NO_LABELS: [(&str, &str); 0] = [];

/// Renders the latest snapshot on each call.
#[derive(Debug)]
pub struct Renderer(Registry);

impl Renderer {
    pub fn new(device: &str, latest: Arc<LatestSnapshot>) -> Renderer {
        let device = [("device".into(), device.to_owned().into())];
        let mut registry = Registry::with_prefix_and_labels("edge", device.into_iter());
        registry.register_collector(Box::new(LatestCollector(latest)));
        Renderer(registry)
    }

    pub fn render(&self) -> Result<String, fmt::Error> {
        let mut text = String::new();
        prometheus_text::encode(&mut text, &self.0)?;
        Ok(text)
    }
}

#[derive(Debug)]
struct LatestCollector(Arc<LatestSnapshot>);

impl Collector for LatestCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        let snapshot = self.0.get();
        let mut families = Families(encoder);
        agent(&mut families, &snapshot.health)?;
        sources(&mut families, &snapshot)?;
        cameras(&mut families, &snapshot.health)?;
        monitors(&mut families, &snapshot.health.monitors)
    }
}

fn agent(families: &mut Families, health: &Health) -> fmt::Result {
    let info = [("version", health.agent_version.as_str()), ("arch", health.arch.as_str())];
    families.info("agent", "The agent's version and CPU architecture.", [info])?;
    families.gauge("process_uptime_seconds", "Seconds since the agent started.", [(NO_LABELS, health.uptime_s)])?;
    let cores = decimal(health.cpu_percent) / 100.0;
    families.gauge(
        "process_cpu_usage_ratio",
        "CPU time of the agent per second over the last health interval (1 = one core busy).",
        [(NO_LABELS, cores)],
    )?;
    families.gauge("process_resident_memory_bytes", "Resident set size.", [(NO_LABELS, health.rss_bytes)])?;
    families.gauge(
        "process_resident_memory_peak_bytes",
        "Peak resident set size.",
        [(NO_LABELS, health.peak_rss_bytes)],
    )?;
    let temperature = health.temperature_c.map(|celsius| (NO_LABELS, decimal(celsius)));
    families.gauge("board_temperature_celsius", "The hottest thermal zone of the board.", temperature)?;
    families.counter(
        "mqtt_reconnects",
        "MQTT connections made again after a loss.",
        [(NO_LABELS, health.mqtt_reconnects)],
    )?;
    families.counter(
        "mqtt_oversized",
        "Inbound MQTT messages skipped for being over mqtt.max_packet_bytes.",
        [(NO_LABELS, health.mqtt_oversized)],
    )?;
    families.counter(
        "health_unpublished",
        "Health reports that could not be handed to the spool or the MQTT link.",
        [(NO_LABELS, health.health_unpublished)],
    )?;
    let conditions =
        health.conditions.iter().map(|c| ([("source", c.source.as_str()), ("kind", c.kind.as_str())], 1u64));
    families.gauge("condition_active", "1 for each condition the agent is degraded by now.", conditions)?;
    let Some(spool) = &health.spool else { return Ok(()) };
    families.gauge(
        "spool_records",
        "Messages in the spool not yet acknowledged by the broker.",
        [(NO_LABELS, spool.records)],
    )?;
    families.gauge("spool_bytes", "Bytes of the spool's segments on disk.", [(NO_LABELS, spool.bytes)])?;
    let oldest = spool.oldest_age_ms as f64 / 1000.0;
    families.gauge("spool_oldest_age_seconds", "Age of the oldest unacknowledged message.", [(NO_LABELS, oldest)])?;
    let dropped = [
        ([("class", "predictions")], spool.dropped_predictions),
        ([("class", "errors")], spool.dropped_errors),
        ([("class", "health")], spool.dropped_health),
    ];
    families.counter("spool_dropped", "Unacknowledged messages deleted to keep within the byte budgets.", dropped)?;
    families.counter("spool_write_errors", "Appends to the spool that failed.", [(NO_LABELS, spool.write_errors)])
}

fn sources(families: &mut Families, snapshot: &Snapshot) -> fmt::Result {
    let sources = &snapshot.health.sources;
    let requested: Vec<String> = sources.iter().map(|s| s.provider_requested.join(",")).collect();
    let models = sources.iter().zip(&requested).map(|(s, requested)| {
        [
            ("source", s.name.as_str()),
            ("model", s.model.name.as_str()),
            ("version", s.model.version.as_str()),
            ("provider_requested", requested.as_str()),
            ("provider_active", s.provider_active.as_str()),
        ]
    });
    families.info("model", "The model each source serves and its execution providers.", models)?;
    let per_source = |value: fn(&SourceHealth) -> u64| sources.iter().map(move |s| (source(&s.name), value(s)));
    families.counter("frames_in", "Inputs the worker took from the source's queue.", per_source(|s| s.frames_in))?;
    families.counter("frames_ok", "Inputs that became predictions.", per_source(|s| s.frames_ok))?;
    families.counter("frames_dropped", "Inputs dropped before inference.", per_source(|s| s.dropped))?;
    let errors = sources
        .iter()
        .flat_map(|s| s.errors.iter().map(|e| ([("source", s.name.as_str()), ("kind", e.kind.as_str())], e.count)));
    families.counter("errors", "Inputs that failed, by error kind.", errors)?;
    families.counter(
        "predictions_unpublished",
        "Predictions and error events that could not be handed to the spool or the MQTT link.",
        per_source(|s| s.predictions_unpublished),
    )?;
    families.gauge("queue_depth", "Inputs waiting in the source's queue.", per_source(|s| s.queue_depth.into()))?;
    families.gauge("queue_capacity", "Capacity of the source's queue.", per_source(|s| s.queue_capacity.into()))?;
    let latency = snapshot.latency.iter().flat_map(|source| {
        source
            .stages
            .named()
            .map(|(stage, histogram)| ([("source", source.source.as_str()), ("stage", stage)], histogram))
    });
    families.histogram(
        "inference_duration_seconds",
        "Time an input spent in each pipeline stage (total: all of them), since start.",
        latency,
    )
}

fn cameras(families: &mut Families, health: &Health) -> fmt::Result {
    let cameras = &health.cameras;
    let sizes: Vec<(String, String)> = cameras.iter().map(|c| (c.width.to_string(), c.height.to_string())).collect();
    let info = cameras.iter().zip(&sizes).map(|(c, (width, height))| {
        [
            ("source", c.source.as_str()),
            ("codec", c.codec.as_str()),
            ("decoder", c.decoder.as_str()),
            ("width", width.as_str()),
            ("height", height.as_str()),
        ]
    });
    families.info("camera", "A live camera's stream as last negotiated or seen.", info)?;
    let rates = cameras.iter().flat_map(|c| {
        [
            ("received", c.received_per_s),
            ("decoded", c.decoded_per_s),
            ("inferred", c.inferred_per_s),
            ("replaced", c.replaced_per_s),
        ]
        .map(|(kind, rate)| ([("source", c.source.as_str()), ("kind", kind)], decimal(rate)))
    });
    families.gauge("camera_frames_per_second", "A camera's frames per second over the last health interval.", rates)?;
    let decode_errors = cameras.iter().map(|c| (source(&c.source), c.decode_errors));
    families.counter("camera_decode_errors", "Frames or packets that could not be decoded.", decode_errors)?;
    let reconnects = cameras.iter().map(|c| (source(&c.source), c.reconnects));
    families.counter("camera_reconnects", "Camera connections made again after the stream was lost.", reconnects)?;
    let ages = cameras.iter().filter_map(|c| Some((source(&c.source), c.last_frame_age_ms? as f64 / 1000.0)));
    families.gauge("camera_last_frame_age_seconds", "How long ago the camera's last frame arrived.", ages)?;
    let snapshots = health.snapshots.iter().flat_map(|s| {
        [
            ("published", s.published),
            ("stored", s.stored),
            ("rate_limited", s.rate_limited),
            ("busy", s.busy),
            ("too_large", s.too_large),
            ("failed", s.failed),
        ]
        .map(|(outcome, count)| ([("source", s.source.as_str()), ("outcome", outcome)], count))
    });
    families.counter("snapshots", "Predictions that matched a snapshot rule, by what became of them.", snapshots)
}

/// Every alert kind, so that `edge_alerts_active` has a series (0 or more) for each.
const ALERT_KINDS: [AlertKind; 7] = [
    AlertKind::Drift,
    AlertKind::Latency,
    AlertKind::ErrorRate,
    AlertKind::ConfidenceCollapse,
    AlertKind::ClassDominance,
    AlertKind::NoInput,
    AlertKind::Accuracy,
];

fn monitors(families: &mut Families, monitors: &[MonitorHealth]) -> fmt::Result {
    let per_source = |value: fn(&MonitorHealth) -> u64| monitors.iter().map(move |m| (source(&m.source), value(m)));
    families.counter("monitor_observed", "Inputs the model monitor took.", per_source(|m| m.observed))?;
    families.counter(
        "monitor_dropped",
        "Observations and feedback dropped because the monitor's queue was full.",
        per_source(|m| m.dropped),
    )?;
    families.counter("monitor_windows", "Drift windows evaluated.", per_source(|m| m.windows_evaluated))?;
    families.counter(
        "monitor_unpublished",
        "Monitor reports, alert reports and retraining candidates the MQTT link refused.",
        per_source(|m| m.unpublished),
    )?;
    let features = || monitors.iter().flat_map(|m| m.features.iter().map(move |f| (feature(&m.source, f), f)));
    let statistic =
        |value: fn(&FeatureDrift) -> Option<f32>| features().filter_map(move |(l, f)| Some((l, decimal(value(f)?))));
    families.gauge(
        "drift_psi",
        "Population Stability Index of a feature's latest window against the reference profile.",
        statistic(|f| f.psi),
    )?;
    families.gauge(
        "drift_ks_statistic",
        "Two-sample Kolmogorov-Smirnov statistic of a feature's latest window against the reference.",
        statistic(|f| f.ks_statistic),
    )?;
    families.gauge(
        "drift_ks_p_value",
        "The KS statistic's p-value (effective sample size m*n/(m+n)), before any multiple-testing correction.",
        statistic(|f| f.ks_p_value),
    )?;
    families.gauge(
        "drift_js_distance",
        "Jensen-Shannon distance (base 2) of a categorical feature's latest window to the reference.",
        statistic(|f| f.js_distance),
    )?;
    let drifted = features().map(|(labels, f)| (labels, u64::from(f.drifted)));
    families.gauge("drift_detected", "1 when a feature's latest window counts as drifted.", drifted)?;
    let window_mean = features().map(|(labels, f)| (labels, decimal(f.window_mean)));
    families.gauge("drift_window_mean", "A feature's mean over the latest window.", window_mean)?;
    let reference_mean = features().map(|(labels, f)| (labels, decimal(f.reference_mean)));
    families.gauge("drift_reference_mean", "A feature's mean in the reference profile.", reference_mean)?;
    let active = monitors.iter().flat_map(|m| {
        ALERT_KINDS.map(|kind| {
            let count = m.active_alerts.iter().filter(|alert| alert.kind == kind).count() as u64;
            ([("source", m.source.as_str()), ("kind", alert_kind(kind))], count)
        })
    });
    families.gauge("alerts_active", "Alerts active now, by kind.", active)?;
    families.counter("alerts_raised", "Alerts raised since start.", per_source(|m| m.alerts_raised))?;
    let accuracy = monitors.iter().filter_map(|m| Some((source(&m.source), decimal(m.accuracy?))));
    families.gauge("accuracy_ratio", "Accuracy of the predictions over the feedback window.", accuracy)?;
    let feedback = monitors.iter().flat_map(|m| {
        [
            ("matched", m.feedback_matched),
            ("late", m.feedback_late),
            ("unknown", m.feedback_unknown),
            ("invalid", m.feedback_invalid),
        ]
        .map(|(outcome, count)| ([("source", m.source.as_str()), ("outcome", outcome)], count))
    });
    families.counter("feedback", "Ground truth received, by what became of it.", feedback)?;
    families.gauge("evidence_samples", "Retraining samples kept on disk.", per_source(|m| m.evidence_samples))?;
    families.gauge("evidence_bytes", "Bytes of the retraining samples kept on disk.", per_source(|m| m.evidence_bytes))
}

/// The f64 nearest the decimal an f32 prints as (0.001, not 0.0010000000474974514), as MQTT health's JSON has it.
fn decimal(value: f32) -> f64 {
    value.to_string().parse().unwrap_or(f64::from(value))
}

fn source(name: &str) -> [(&'static str, &str); 1] {
    [("source", name)]
}

fn feature<'a>(source: &'a str, feature: &'a FeatureDrift) -> [(&'static str, &'a str); 3] {
    let side = match feature.side {
        FeatureSide::Input => "input",
        FeatureSide::Output => "output",
    };
    [("source", source), ("feature", feature.feature.as_str()), ("side", side)]
}

/// The kind as the wire spells it.
fn alert_kind(kind: AlertKind) -> &'static str {
    match kind {
        AlertKind::Drift => "drift",
        AlertKind::Latency => "latency",
        AlertKind::ErrorRate => "error_rate",
        AlertKind::ConfidenceCollapse => "confidence_collapse",
        AlertKind::ClassDominance => "class_dominance",
        AlertKind::NoInput => "no_input",
        AlertKind::Accuracy => "accuracy",
    }
}

/// Writes metric families; one without series is left out rather than described empty.
struct Families<'a>(DescriptorEncoder<'a>);

impl Families<'_> {
    fn gauge<L: EncodeLabelSet, V: EncodeGaugeValue>(
        &mut self,
        name: &str,
        help: &str,
        series: impl IntoIterator<Item = (L, V)>,
    ) -> fmt::Result {
        self.family(name, help, MetricType::Gauge, series, |metric, value| metric.encode_gauge(&value))
    }

    /// `name` without `_total`, which is appended.
    fn counter<L: EncodeLabelSet, V: EncodeCounterValue>(
        &mut self,
        name: &str,
        help: &str,
        series: impl IntoIterator<Item = (L, V)>,
    ) -> fmt::Result {
        self.family(name, help, MetricType::Counter, series, |metric, value| {
            metric.encode_counter::<NoLabelSet, V, u64>(&value, None)
        })
    }

    /// `name` without `_info`, which is appended; every series has the value 1.
    fn info<L: EncodeLabelSet>(&mut self, name: &str, help: &str, series: impl IntoIterator<Item = L>) -> fmt::Result {
        let series = series.into_iter().map(|labels| (labels, ()));
        self.family(name, help, MetricType::Info, series, |metric, ()| metric.encode_info(&NO_LABELS))
    }

    fn histogram<'h, L: EncodeLabelSet>(
        &mut self,
        name: &str,
        help: &str,
        series: impl IntoIterator<Item = (L, &'h LatencyHistogram)>,
    ) -> fmt::Result {
        self.family(name, help, MetricType::Histogram, series, |metric, histogram| {
            let buckets: Vec<(f64, u64)> = histogram
                .buckets()
                .map(|(bound_us, count)| (bound_us.map_or(f64::INFINITY, |us| f64::from(us) / 1e6), count))
                .collect();
            let sum = histogram.sum_us() as f64 / 1e6;
            metric.encode_histogram::<NoLabelSet>(sum, histogram.count(), &buckets, None)
        })
    }

    fn family<L: EncodeLabelSet, V>(
        &mut self,
        name: &str,
        help: &str,
        metric_type: MetricType,
        series: impl IntoIterator<Item = (L, V)>,
        encode: impl Fn(&mut MetricEncoder, V) -> fmt::Result,
    ) -> fmt::Result {
        let mut series = series.into_iter().peekable();
        if series.peek().is_none() {
            return Ok(());
        }
        let mut metric = self.0.encode_descriptor(name, help, None, metric_type)?;
        for (labels, value) in series {
            encode(&mut metric.encode_family(&labels)?, value)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Metrics;
    use protocol::ModelIdentity;
    use protocol::error::ErrorKind;
    use protocol::wire::{
        Alert, CameraHealth, Condition, ErrorCount, Severity, SnapshotHealth, SpoolHealth, StageLatency,
    };
    use runtime::StageTimings;
    use std::collections::BTreeSet;

    fn source_health() -> SourceHealth {
        SourceHealth {
            name: "front".into(),
            model: ModelIdentity { name: "classifier".into(), version: "1.2.0".into(), sha256: "ab".into() },
            provider_requested: vec!["cuda".into(), "cpu".into()],
            provider_active: "cpu".into(),
            frames_in: 7,
            frames_ok: 3,
            frames_per_s: 1.5,
            dropped: 2,
            errors: vec![
                ErrorCount { kind: ErrorKind::Decode, count: 1 },
                ErrorCount { kind: ErrorKind::Io, count: 3 },
            ],
            queue_depth: 1,
            queue_capacity: 8,
            latency: StageLatency::default(),
            predictions_unpublished: 4,
        }
    }

    fn feature(name: &str, side: FeatureSide, psi: Option<f32>, js: Option<f32>) -> FeatureDrift {
        FeatureDrift {
            feature: name.into(),
            side,
            psi,
            ks_statistic: psi.map(|_| 0.25),
            ks_p_value: psi.map(|_| 0.001),
            js_distance: js,
            window_mean: 0.5,
            reference_mean: 0.25,
            drifted: psi.is_some(),
        }
    }

    fn monitor_health() -> MonitorHealth {
        let alert = Alert {
            kind: AlertKind::Drift,
            subject: "brightness".into(),
            statistic: "psi".into(),
            value: 0.5,
            threshold: 0.25,
            severity: Severity::Alert,
            since_ms: 1,
        };
        MonitorHealth {
            source: "front".into(),
            observed: 300,
            dropped: 5,
            windows_evaluated: 6,
            features: vec![
                feature("brightness", FeatureSide::Input, Some(0.5), None),
                feature("class", FeatureSide::Output, None, Some(0.125)),
            ],
            active_alerts: vec![alert.clone(), Alert { subject: "contrast".into(), ..alert }],
            alerts_raised: 9,
            accuracy: Some(0.75),
            feedback_matched: 40,
            feedback_late: 2,
            feedback_unknown: 1,
            feedback_invalid: 0,
            evidence_samples: 12,
            evidence_bytes: 4096,
            unpublished: 3,
        }
    }

    fn health() -> Health {
        Health {
            device: "cam-01".into(),
            agent_version: "0.1.0".into(),
            uptime_s: 61,
            cpu_percent: 150.0,
            rss_bytes: 30 << 20,
            peak_rss_bytes: 40 << 20,
            temperature_c: None,
            mqtt_reconnects: 2,
            sources: vec![source_health()],
            health_unpublished: 1,
            arch: "x86_64".into(),
            mqtt_oversized: 0,
            conditions: vec![Condition {
                kind: ErrorKind::DiskFull,
                source: "agent".into(),
                since_ms: 5,
                detail: "no space \"left\"\non device".into(),
            }],
            spool: Some(SpoolHealth {
                records: 10,
                bytes: 2048,
                oldest_age_ms: 1500,
                dropped_predictions: 3,
                dropped_errors: 0,
                dropped_health: 1,
                write_errors: 0,
            }),
            cameras: vec![CameraHealth {
                source: "front".into(),
                received_per_s: 25.0,
                decoded_per_s: 25.0,
                inferred_per_s: 10.0,
                replaced_per_s: 15.0,
                decode_errors: 1,
                reconnects: 2,
                last_frame_age_ms: Some(40),
                width: 1920,
                height: 1080,
                codec: "h264".into(),
                decoder: "openh264".into(),
            }],
            snapshots: vec![SnapshotHealth {
                source: "front".into(),
                published: 3,
                stored: 2,
                rate_limited: 7,
                busy: 0,
                too_large: 0,
                failed: 1,
            }],
            monitors: vec![monitor_health()],
            at_ms: 1_700_000_000_000,
        }
    }

    fn render(health: Health) -> String {
        let metrics = Metrics::new();
        let front = metrics.register("front");
        for inference_us in [4_000, 4_500, 30_000] {
            front.frame_ok(&StageTimings { decode_us: 0, preprocess_us: 200, inference_us, postprocess_us: 50 });
        }
        let latest = Arc::new(LatestSnapshot::new(Snapshot { health, latency: metrics.latency_histograms() }));
        Renderer::new("cam-01", latest).render().expect("rendered")
    }

    fn lines(text: &str) -> BTreeSet<&str> {
        text.lines().collect()
    }

    #[test]
    fn every_part_of_the_report_is_rendered() {
        let text = render(health());
        let lines = lines(&text);
        for expected in [
            r#"edge_agent_info{device="cam-01",version="0.1.0",arch="x86_64"} 1"#,
            r#"edge_process_uptime_seconds{device="cam-01"} 61"#,
            r#"edge_process_cpu_usage_ratio{device="cam-01"} 1.5"#,
            r#"edge_process_resident_memory_bytes{device="cam-01"} 31457280"#,
            r#"edge_mqtt_reconnects_total{device="cam-01"} 2"#,
            r#"edge_mqtt_oversized_total{device="cam-01"} 0"#,
            r#"edge_health_unpublished_total{device="cam-01"} 1"#,
            r#"edge_condition_active{device="cam-01",source="agent",kind="disk_full"} 1"#,
            r#"edge_spool_records{device="cam-01"} 10"#,
            r#"edge_spool_oldest_age_seconds{device="cam-01"} 1.5"#,
            r#"edge_spool_dropped_total{device="cam-01",class="health"} 1"#,
            r#"edge_model_info{device="cam-01",source="front",model="classifier",version="1.2.0",provider_requested="cuda,cpu",provider_active="cpu"} 1"#,
            r#"edge_frames_in_total{device="cam-01",source="front"} 7"#,
            r#"edge_frames_ok_total{device="cam-01",source="front"} 3"#,
            r#"edge_frames_dropped_total{device="cam-01",source="front"} 2"#,
            r#"edge_errors_total{device="cam-01",source="front",kind="io"} 3"#,
            r#"edge_predictions_unpublished_total{device="cam-01",source="front"} 4"#,
            r#"edge_queue_depth{device="cam-01",source="front"} 1"#,
            r#"edge_queue_capacity{device="cam-01",source="front"} 8"#,
            r#"edge_camera_info{device="cam-01",source="front",codec="h264",decoder="openh264",width="1920",height="1080"} 1"#,
            r#"edge_camera_frames_per_second{device="cam-01",source="front",kind="replaced"} 15.0"#,
            r#"edge_camera_reconnects_total{device="cam-01",source="front"} 2"#,
            r#"edge_camera_last_frame_age_seconds{device="cam-01",source="front"} 0.04"#,
            r#"edge_snapshots_total{device="cam-01",source="front",outcome="rate_limited"} 7"#,
            r#"edge_monitor_observed_total{device="cam-01",source="front"} 300"#,
            r#"edge_monitor_windows_total{device="cam-01",source="front"} 6"#,
            r#"edge_monitor_unpublished_total{device="cam-01",source="front"} 3"#,
            r#"edge_drift_psi{device="cam-01",source="front",feature="brightness",side="input"} 0.5"#,
            r#"edge_drift_ks_p_value{device="cam-01",source="front",feature="brightness",side="input"} 0.001"#,
            r#"edge_drift_js_distance{device="cam-01",source="front",feature="class",side="output"} 0.125"#,
            r#"edge_drift_detected{device="cam-01",source="front",feature="class",side="output"} 0"#,
            r#"edge_drift_reference_mean{device="cam-01",source="front",feature="brightness",side="input"} 0.25"#,
            r#"edge_alerts_active{device="cam-01",source="front",kind="drift"} 2"#,
            r#"edge_alerts_active{device="cam-01",source="front",kind="no_input"} 0"#,
            r#"edge_alerts_raised_total{device="cam-01",source="front"} 9"#,
            r#"edge_accuracy_ratio{device="cam-01",source="front"} 0.75"#,
            r#"edge_feedback_total{device="cam-01",source="front",outcome="late"} 2"#,
            r#"edge_evidence_bytes{device="cam-01",source="front"} 4096"#,
        ] {
            assert!(lines.contains(expected), "missing {expected}\nin\n{text}");
        }
        // A statistic that does not apply to a feature has no series, and an absent reading no family.
        assert!(!text.contains(r#"edge_drift_psi{device="cam-01",source="front",feature="class""#));
        assert!(!text.contains("edge_board_temperature_celsius"));
        assert_eq!(text.matches("edge_alerts_active{").count(), ALERT_KINDS.len());
    }

    #[test]
    fn latency_is_a_cumulative_histogram_in_seconds() {
        let text = render(health());
        let lines = lines(&text);
        let series = r#"device="cam-01",source="front",stage="inference""#;
        for (le, count) in [("0.0025", 0), ("0.005", 2), ("0.01", 2), ("0.025", 2), ("0.05", 3), ("10", 3), ("+Inf", 3)]
        {
            let line = format!(r#"edge_inference_duration_seconds_bucket{{{series},le="{le}"}} {count}"#);
            assert!(lines.contains(line.as_str()), "missing {line}\nin\n{text}");
        }
        assert!(lines.contains(format!("edge_inference_duration_seconds_count{{{series}}} 3").as_str()));
        assert!(lines.contains(format!("edge_inference_duration_seconds_sum{{{series}}} 0.0385").as_str()));
        assert!(lines.contains(
            r#"edge_inference_duration_seconds_bucket{device="cam-01",source="front",stage="total",le="0.0001"} 0"#
        ));
        assert_eq!(text.matches("# TYPE edge_inference_duration_seconds histogram").count(), 1);
        assert_eq!(text.matches("edge_inference_duration_seconds_count{").count(), 5, "one per stage");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut health = health();
        health.sources[0].model.name = "a\"b\\c\nd".into();
        let text = render(health);
        assert!(text.contains(r#"model="a\"b\\c\nd""#), "{text}");
    }

    #[test]
    fn an_agent_without_sources_still_says_what_it_is() {
        let empty = Health {
            sources: Vec::new(),
            cameras: Vec::new(),
            snapshots: Vec::new(),
            monitors: Vec::new(),
            spool: None,
            conditions: Vec::new(),
            ..health()
        };
        let latest = Arc::new(LatestSnapshot::new(Snapshot { health: empty, latency: Vec::new() }));
        let text = Renderer::new("cam-01", latest).render().expect("rendered");
        assert!(text.contains(r#"edge_agent_info{device="cam-01",version="0.1.0",arch="x86_64"} 1"#));
        assert!(!text.contains("edge_frames_in_total"), "no family without series:\n{text}");
        assert!(!text.contains("# TYPE edge_spool"), "{text}");
    }

    /// The catalogue in docs/metrics.md names every family rendered, with its type.
    #[test]
    fn every_metric_is_in_the_catalogue() {
        let catalogue = include_str!("../../../docs/metrics.md");
        let mut health = health();
        health.temperature_c = Some(51.5);
        let text = render(health);
        let mut families = 0;
        for line in text.lines().filter(|line| line.starts_with("# TYPE ")) {
            let mut words = line["# TYPE ".len()..].split(' ');
            let (name, kind) = (words.next().expect("a name"), words.next().expect("a type"));
            // Info metrics are gauges of value 1 in the 0.0.4 text format.
            let kind = if name.ends_with("_info") { "info" } else { kind };
            let row = format!("| `{name}` | {kind} |");
            assert!(catalogue.contains(&row), "docs/metrics.md lacks the row starting {row}");
            families += 1;
        }
        assert!(families > 40, "{families} families");
    }
}
