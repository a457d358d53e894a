//! The `monitor-<source>` thread: takes observations and feedback, evaluates the windows, and publishes
//! reports, alerts and retraining candidates straight to the MQTT link (like snapshots: a monitor report is
//! worth sending only while it is recent, so it does not go through the spool).
//!
//! Alerts on `<prefix>/alerts/<source>` are retained while any alert of the source is active; when the last
//! one clears, the clearing report goes out non-retained, then an empty retained payload removes the retained
//! message. The retained report is republished with every monitor report while alerts are active, since a
//! broker restarted without persistence forgets it. A publish the link refuses is counted (`unpublished`),
//! not retried: the next report or alert carries the state again.

use super::evidence::Evidence;
use super::feedback::FeedbackJoin;
use super::health::{FeedbackTotals, Latest};
use super::source::{SourceMonitor, Watch};
use super::tap::{MONITOR_QUEUE, MonitorSender};
use super::{MonitorEvent, MonitorStats, MonitorTap, Observation, Outcome, alerts::Change, drift, signals};
use crate::clock::Clock;
use crate::config::{FeedbackConfig, MonitorConfig};
use crate::mqtt::{MqttHandle, QoS};
use protocol::wire::{
    self, AccuracyReport, Alert, AlertChange, AlertKind, AlertReport, Feedback, Format, MonitorReport, Topics,
};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How long a publish waits for room in the MQTT link's queue while the broker is connected.
const LINK_BACKPRESSURE: Duration = Duration::from_secs(1);
/// How often the no-input alert is checked while waiting.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Where the monitor publishes.
pub trait MonitorLink: Send {
    /// Queues one publish; the error says why the link refused it.
    fn publish(&self, topic: &str, retain: bool, payload: &[u8]) -> Result<(), String>;
}

/// The MQTT link, at one QoS.
pub struct MqttMonitorLink {
    pub link: MqttHandle,
    pub qos: QoS,
}

impl MonitorLink for MqttMonitorLink {
    fn publish(&self, topic: &str, retain: bool, payload: &[u8]) -> Result<(), String> {
        let deadline = Instant::now() + LINK_BACKPRESSURE;
        self.link.publish_while_connected(topic, self.qos, retain, payload, deadline).map_err(|e| e.to_string())
    }
}

/// What a monitor thread is started with.
pub struct MonitorSettings {
    pub device: String,
    pub config: MonitorConfig,
    pub topics: MonitorTopics,
    pub format: Format,
    /// Where evidence is kept ([`crate::config::EvidenceConfig::directory`]); `None` when the source keeps none.
    pub evidence_dir: Option<PathBuf>,
    /// The sensor channels' names, for the columns of kept sensor windows (empty for image models).
    pub channel_names: Vec<String>,
    pub link: Box<dyn MonitorLink>,
    pub clock: Arc<dyn Clock>,
    pub stats: Arc<MonitorStats>,
}

/// The topics one source's monitor publishes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorTopics {
    pub monitor: String,
    pub alerts: String,
    pub retrain_candidate: String,
}

impl MonitorTopics {
    pub fn of(topics: &Topics, source: &str) -> MonitorTopics {
        MonitorTopics {
            monitor: topics.monitor(source),
            alerts: topics.alerts(source),
            retrain_candidate: topics.retrain_candidate(),
        }
    }
}

/// Starts the `monitor-<source>` thread; returns the worker's tap and a sender for the feedback route.
pub fn start(settings: MonitorSettings) -> io::Result<(MonitorTap, MonitorSender)> {
    let config = &settings.config;
    let source = config.source.clone();
    let evidence = match (&config.evidence, settings.evidence_dir.clone()) {
        (Some(evidence), Some(dir)) => match Evidence::open(dir, &settings.device, &source, evidence) {
            Ok(evidence) => Some(evidence.with_channel_names(settings.channel_names.clone())),
            Err(error) => {
                log::warn!(source = source.as_str(); "Evidence cannot be kept: {error}.");
                None
            }
        },
        _ => None,
    };
    let sample_every = evidence
        .as_ref()
        .zip(config.evidence.as_ref())
        .map(|(_, evidence)| (config.window / evidence.samples.max(1)).max(1) as u64);
    let (sender, receiver) = std::sync::mpsc::sync_channel(MONITOR_QUEUE);
    let sender = MonitorSender::new(sender, settings.stats.clone());
    let runner = Runner::new(settings, evidence);
    let thread = std::thread::Builder::new().name(format!("monitor-{source}")).spawn(move || runner.run(&receiver))?;
    Ok((MonitorTap::new(sender.clone(), sample_every, thread), sender))
}

/// The feedback join of the model served now, and the counts of the models served before.
struct FeedbackState {
    config: FeedbackConfig,
    /// `None` before the first observation (the join needs the model's labels).
    join: Option<FeedbackJoin>,
    retired: FeedbackTotals,
}

impl FeedbackState {
    fn switch(&mut self, labels: &[String]) {
        if let Some(join) = &self.join {
            self.retired = self.retired.plus(totals(&join.report()));
        }
        self.join = Some(FeedbackJoin::new(&self.config, labels.to_vec()));
    }

    fn totals(&self, report: Option<&AccuracyReport>) -> FeedbackTotals {
        report.map_or(self.retired, |report| self.retired.plus(totals(report)))
    }
}

/// One line per raise (a warning) and per clear.
fn log_change(source: &str, change: AlertChange, alert: &Alert) {
    let (kind, subject, statistic) = (alert.kind, alert.subject.as_str(), alert.statistic.as_str());
    let (value, threshold) = (alert.value, alert.threshold);
    match change {
        AlertChange::Raised => {
            log::warn!(source, subject; "Alert raised: {kind:?}, {statistic} {value} (threshold {threshold}).")
        }
        AlertChange::Cleared => {
            log::info!(source, subject; "Alert cleared: {kind:?}, {statistic} {value} (threshold {threshold}).")
        }
    }
}

fn totals(report: &AccuracyReport) -> FeedbackTotals {
    FeedbackTotals {
        matched: report.matched_total,
        late: report.late_total,
        unknown: report.unknown_total,
        invalid: report.invalid_total,
    }
}

/// The monitor thread's state and its outputs.
pub(super) struct Runner {
    device: String,
    source: String,
    window: u32,
    topics: MonitorTopics,
    format: Format,
    link: Box<dyn MonitorLink>,
    clock: Arc<dyn Clock>,
    stats: Arc<MonitorStats>,
    monitor: SourceMonitor,
    feedback: Option<FeedbackState>,
    evidence: Option<Evidence>,
    /// The alerts subscribers were told are active, in the order raised.
    active: Vec<Alert>,
    /// The report held retained on the alerts topic; `None` while nothing is active.
    retained: Option<Vec<u8>>,
    publish_every: Duration,
}

impl Runner {
    pub(super) fn new(settings: MonitorSettings, evidence: Option<Evidence>) -> Runner {
        let config = settings.config;
        let watch = Watch {
            window: config.window,
            stride: config.stride,
            raise_after: config.raise_after,
            clear_after: config.clear_after,
            drift: drift::DriftThresholds {
                psi_warn: config.psi_warn,
                psi_alert: config.psi_alert,
                ks_p_value: config.ks_p_value,
                js_alert: config.js_alert,
            },
            signals: signals::SignalThresholds {
                latency_ratio: config.latency_ratio,
                error_rate_increase: config.error_rate_increase,
                confidence_ratio: config.confidence_ratio,
                class_share: config.class_share,
            },
            idle_after: config.idle_secs.map(Duration::from_secs),
            min_accuracy: config.feedback.as_ref().and_then(|feedback| {
                let min_labelled = u32::try_from(feedback.min_labelled).unwrap_or(u32::MAX);
                feedback.min_accuracy.map(|min| (min, min_labelled))
            }),
        };
        Runner {
            device: settings.device,
            window: u32::try_from(config.window).unwrap_or(u32::MAX),
            topics: settings.topics,
            format: settings.format,
            link: settings.link,
            clock: settings.clock,
            stats: settings.stats,
            monitor: SourceMonitor::new(watch),
            feedback: config.feedback.map(|config| FeedbackState { config, join: None, retired: Default::default() }),
            evidence,
            active: Vec::new(),
            retained: None,
            publish_every: Duration::from_secs(config.publish_secs),
            source: config.source,
        }
    }

    /// Takes events until the worker finishes, reporting every `publish_secs` and watching for idleness.
    fn run(mut self, events: &Receiver<MonitorEvent>) {
        let mut next_report = self.clock.now() + self.publish_every;
        let mut last_input = self.clock.now();
        loop {
            let now = self.clock.now();
            let wake = if self.monitor.watches_idle() { next_report.min(now + IDLE_CHECK) } else { next_report };
            match events.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(MonitorEvent::Observed(observation)) => {
                    last_input = self.clock.now();
                    self.observed(observation);
                }
                Ok(MonitorEvent::Feedback(feedback)) => self.feedback(&feedback),
                Ok(MonitorEvent::InvalidFeedback) => self.invalid_feedback(),
                Ok(MonitorEvent::Finished) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
            let now = self.clock.now();
            self.idle(now.saturating_duration_since(last_input));
            if now >= next_report {
                self.report();
                // After a stall, skip the missed reports instead of bursting them.
                next_report = (next_report + self.publish_every).max(now);
            }
        }
    }

    pub(super) fn observed(&mut self, observation: Observation) {
        self.stats.count_observed();
        let now_ms = self.clock.unix_time_ms();
        let model = observation.model;
        if !self.monitor.serves(&model) {
            let clears = self.monitor.switch(model.clone());
            if let Some(feedback) = &mut self.feedback {
                feedback.switch(&model.labels);
            }
            self.announce(clears, now_ms);
            self.update_health();
        }
        if let (Some(join), Outcome::Inferred { predicted: Some(predicted), .. }) =
            (self.feedback.as_mut().and_then(|feedback| feedback.join.as_mut()), &observation.outcome)
        {
            join.predicted(observation.seq, predicted.clone());
        }
        if let (Some(evidence), Some(input)) = (&mut self.evidence, &observation.input) {
            evidence.offer(observation.seq, observation.captured_at_ms, input);
        }
        if !self.monitor.observe(&observation.outcome) {
            return;
        }
        let accuracy = self.accuracy();
        let evaluation = self.monitor.evaluate(now_ms, accuracy.as_ref());
        self.stats.count_window();
        if let Some(psi) = evaluation.output_psi {
            model.score.output_drift(psi);
        }
        self.announce(evaluation.changes, now_ms);
        self.update_health();
    }

    pub(super) fn feedback(&mut self, feedback: &Feedback) {
        let Some(state) = &mut self.feedback else { return };
        let Some(join) = &mut state.join else {
            // Nothing was predicted yet: no prediction can match.
            state.retired.unknown += 1;
            return self.update_health();
        };
        if let Err(unmatched) = join.truth(feedback) {
            log::debug!(source = self.source.as_str(), seq = feedback.seq; "Feedback not matched: {unmatched:?}.");
        }
        let report = join.report();
        if let Some(model) = self.monitor.model() {
            model.score.accuracy(report.correct, report.labelled);
        }
        self.update_health();
    }

    fn invalid_feedback(&mut self) {
        let Some(state) = &mut self.feedback else { return };
        match &mut state.join {
            Some(join) => join.invalid(),
            None => state.retired.invalid += 1,
        }
        self.update_health();
    }

    fn idle(&mut self, idle: Duration) {
        let now_ms = self.clock.unix_time_ms();
        if let Some(change) = self.monitor.idle(idle, now_ms) {
            self.announce(vec![change], now_ms);
            self.update_health();
        }
    }

    fn accuracy(&self) -> Option<AccuracyReport> {
        self.feedback.as_ref()?.join.as_ref().map(FeedbackJoin::report)
    }

    /// Publishes each change on the alerts topic, and a retraining candidate when drift alerts were raised.
    fn announce(&mut self, changes: Vec<Change>, now_ms: u64) {
        let mut drifted = Vec::new();
        for Change { change, alert, escalation } in changes {
            let same = |active: &Alert| active.kind == alert.kind && active.subject == alert.subject;
            self.active.retain(|active| !same(active));
            if change == AlertChange::Raised {
                self.active.push(alert.clone());
                if !escalation {
                    self.stats.count_raised();
                    if alert.kind == AlertKind::Drift {
                        drifted.push(alert.clone());
                    }
                }
            }
            log_change(&self.source, change, &alert);
            let report = AlertReport {
                device: self.device.clone(),
                source: self.source.clone(),
                at_ms: now_ms,
                change,
                alert,
                active: self.active.clone(),
            };
            self.publish_alert(&report);
        }
        if !drifted.is_empty() {
            self.capture_evidence(&drifted, now_ms);
        }
    }

    fn publish_alert(&mut self, report: &AlertReport) {
        let Some(payload) = self.encode(report) else { return };
        let topic = self.topics.alerts.clone();
        if report.active.is_empty() {
            self.publish(&topic, false, &payload);
            // The last alert cleared: remove the retained message.
            self.publish(&topic, true, &[]);
            self.retained = None;
        } else {
            self.publish(&topic, true, &payload);
            self.retained = Some(payload);
        }
    }

    fn capture_evidence(&mut self, alerts: &[Alert], now_ms: u64) {
        let (Some(evidence), Some(model)) = (&mut self.evidence, self.monitor.model()) else { return };
        match evidence.capture(&model.identity, alerts, now_ms) {
            Ok(candidate) => {
                if let Some(payload) = self.encode(&candidate) {
                    let topic = self.topics.retrain_candidate.clone();
                    self.publish(&topic, false, &payload);
                }
            }
            Err(error) => log::warn!(source = self.source.as_str(); "Evidence not captured: {error}."),
        }
    }

    /// Publishes the monitor report (once a model was observed) and renews the retained alerts.
    pub(super) fn report(&mut self) {
        if let Some(model) = self.monitor.model() {
            let report = MonitorReport {
                device: self.device.clone(),
                source: self.source.clone(),
                model: model.identity.clone(),
                at_ms: self.clock.unix_time_ms(),
                observed: self.monitor.observed(),
                window: self.window,
                windows_evaluated: self.monitor.windows_evaluated(),
                features: self.monitor.features().to_vec(),
                accuracy: self.accuracy(),
                active_alerts: self.active.clone(),
            };
            if let Some(payload) = self.encode(&report) {
                let topic = self.topics.monitor.clone();
                self.publish(&topic, false, &payload);
            }
        }
        if let Some(retained) = self.retained.clone() {
            let topic = self.topics.alerts.clone();
            self.publish(&topic, true, &retained);
        }
    }

    /// Bytes the source's state holds on the heap: the monitor's, and the alerts held for the alerts topic.
    #[cfg(test)]
    pub(super) fn heap_bytes(&self) -> usize {
        let alert = |alert: &Alert| alert.subject.capacity() + alert.statistic.capacity();
        self.monitor.heap_bytes()
            + self.active.capacity() * size_of::<Alert>()
            + self.active.iter().map(alert).sum::<usize>()
            + self.retained.as_ref().map_or(0, Vec::capacity)
    }

    fn encode<M: wire::Message>(&self, message: &M) -> Option<Vec<u8>> {
        match wire::encode(self.format, message) {
            Ok(payload) => Some(payload),
            Err(error) => {
                log::warn!(source = self.source.as_str(); "Monitor message not encoded: {error}.");
                self.stats.count_unpublished();
                None
            }
        }
    }

    fn publish(&self, topic: &str, retain: bool, payload: &[u8]) {
        if let Err(error) = self.link.publish(topic, retain, payload) {
            log::debug!(source = self.source.as_str(); "Monitor message not published on {topic}: {error}.");
            self.stats.count_unpublished();
        }
    }

    fn update_health(&self) {
        let accuracy = self.accuracy();
        let feedback = self.feedback.as_ref().map(|state| state.totals(accuracy.as_ref())).unwrap_or_default();
        self.stats.set_latest(Latest {
            features: self.monitor.features().to_vec(),
            active_alerts: self.active.clone(),
            accuracy: accuracy.and_then(|report| report.accuracy),
            feedback,
            evidence: self.evidence.as_ref().map_or((0, 0), Evidence::stored),
        });
    }
}

#[cfg(test)]
mod tests;
