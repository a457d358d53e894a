//! One simulated device: its own MQTT link (presence with the `offline` last will), its group memberships, health
//! and predictions on timers, and the device side of the update protocol: the real machine of `device-update`,
//! with a shell that keeps the package in memory and simulates the install, self-test and probation.

use super::plan::FleetPlan;
use super::{Fleet, FleetEvent};
use device_update::effects::{Action, Candidate, Disk, Event, Guard, LastStatus, Loaded, Refusal};
use device_update::inbound::{UpdateMessage, subscriptions};
use device_update::judge::ScoreSnapshot;
use device_update::machine::{Machine, ModelView, Recovery, Settings, WorkerView};
use device_update::progress::Progress;
use device_update::settings::{ProbationLimits, UpdateSettings};
use mqtt::{EncodeError, Liveness, MqttHandle, QoS, Route, StatusPayload};
use protocol::error::{ErrorKind, ErrorStage};
use protocol::update::{Announcement, Membership, UpdateStatus, UpdateTopics};
use protocol::wire::{self, ErrorEvent, Format, Health, Prediction, SourceHealth, State, Status, Topics};
use protocol::{ClassScore, ModelIdentity, Output, StageTimings};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Update messages waiting for the device's thread, as in the agent: beyond this the excess is dropped and counted
/// in the status's `messages_dropped` (a chunk is asked for again, an announcement repeated by the pusher).
const INBOX: usize = 64;
/// The source whose predictions the device publishes.
pub const SOURCE: &str = "sim";
/// The execution provider the simulated pipelines "run" on.
const PROVIDER: &str = "simulated";
/// How long shutdown waits for the `offline` status and the queued messages to be acknowledged.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest chunk the device takes: a packet of the link less 1 KiB of headers, as the agent.
pub const MAX_PACKET: usize = 1024 * 1024;

/// What the link's routes hand the device's thread.
pub enum Inbound {
    Update(UpdateMessage),
    /// Our own retained `online` status came back: every subscription before it is in place.
    Subscribed,
    Stop,
}

/// The device's `Status` payload, as the agent's with `agent_version` `<edgectl version>-sim`.
pub struct SimulatedStatus {
    pub device: String,
}

impl StatusPayload for SimulatedStatus {
    fn encode(&self, liveness: Liveness, since_ms: Option<u64>) -> Result<Vec<u8>, EncodeError> {
        let state = match liveness {
            Liveness::Online => State::Online,
            Liveness::Offline => State::Offline,
        };
        let status = Status { state, device: self.device.clone(), agent_version: agent_version(), since_ms };
        Ok(wire::encode(Format::Json, &status)?)
    }
}

pub fn agent_version() -> String {
    format!("{}-sim", env!("CARGO_PKG_VERSION"))
}

/// The inbound routes of device `prefix` in `groups`, feeding a bounded channel that never blocks the link.
pub fn routes(prefix: &str, groups: &[String]) -> (Vec<Route>, SyncSender<Inbound>, Receiver<Inbound>, Arc<AtomicU64>) {
    let (sender, receiver) = sync_channel(INBOX);
    let dropped = Arc::new(AtomicU64::new(0));
    let groups: Vec<UpdateTopics> = groups.iter().map(|group| UpdateTopics::group(group)).collect();
    let mut routes: Vec<Route> = subscriptions(&UpdateTopics::device(prefix), &groups)
        .into_iter()
        .map(|subscription| {
            let topic = subscription.filter.clone();
            Route::to_queue(topic, &sender, &dropped, move |topic, payload| {
                subscription.message(topic, payload).map(Inbound::Update)
            })
        })
        .collect();
    routes.push(Route::to_queue(Topics::new(prefix).status(), &sender, &dropped, |_, payload| {
        let status: Status = serde_json::from_slice(payload).ok()?;
        (status.state == State::Online).then_some(Inbound::Subscribed)
    }));
    (routes, sender, receiver, dropped)
}

/// The package being downloaded, in memory.
struct Staged {
    announcement: Announcement,
    bytes: Vec<u8>,
}

/// One simulated device's state; [`SimulatedDevice::run`] is its thread.
pub struct SimulatedDevice {
    index: u32,
    id: String,
    topics: Topics,
    update_status_topic: String,
    request_topic: String,
    link: MqttHandle,
    machine: Machine,
    model: String,
    /// The version that serves, and the one before the last update (for a rollback command).
    serving: String,
    previous: Option<String>,
    candidate_version: Option<String>,
    staged: Option<Staged>,
    fails_self_test: bool,
    install: Duration,
    prediction_interval: Duration,
    health_interval: Duration,
    started: Instant,
    predictions: u64,
    /// Predictions made by the candidate since it was swapped in (its probation score).
    candidate_predictions: u64,
    error_seq: u64,
    dropped: Arc<AtomicU64>,
    unpublished: u64,
    fleet: Fleet,
}

/// What one device needs from the command line.
pub struct DeviceSpec {
    pub index: u32,
    pub groups: Vec<String>,
    pub model: String,
    pub version: String,
    pub trusted: Vec<packaging::PublicKey>,
    pub rate: f64,
    pub health: Duration,
    pub probation: Duration,
    pub install: Duration,
    pub subscription_qos: QoS,
}

impl SimulatedDevice {
    pub fn new(spec: &DeviceSpec, plan: &FleetPlan, link: MqttHandle, dropped: Arc<AtomicU64>, fleet: Fleet) -> Self {
        let id = plan.device_id(spec.index);
        let prefix = format!("devices/{id}");
        let own = UpdateTopics::device(&prefix);
        let settings = Settings {
            device: id.clone(),
            config: UpdateSettings {
                groups: spec.groups.clone(),
                probation: ProbationLimits {
                    window_secs: spec.probation.as_secs_f64(),
                    // The simulated candidate's score is its prediction count: judged from the first.
                    min_frames: 1,
                    ..ProbationLimits::default()
                },
                ..UpdateSettings::default()
            },
            max_chunk: MAX_PACKET - 1024,
            trusted: spec.trusted.clone(),
        };
        let view = ModelView {
            name: spec.model.clone(),
            running_version: spec.version.clone(),
            slot_update: None,
            recovery: Recovery::None,
            workers: vec![WorkerView { source: SOURCE.into(), provider: PROVIDER.into(), takes_images: false }],
        };
        SimulatedDevice {
            index: spec.index,
            topics: Topics::new(prefix),
            update_status_topic: own.status(),
            request_topic: own.request(),
            link,
            machine: Machine::new(settings, vec![view], None, Guard::default()),
            model: spec.model.clone(),
            serving: spec.version.clone(),
            previous: None,
            candidate_version: None,
            staged: None,
            fails_self_test: plan.fails_self_test(spec.index),
            install: spec.install,
            prediction_interval: Duration::from_secs_f64(1.0 / spec.rate),
            health_interval: spec.health,
            started: Instant::now(),
            predictions: 0,
            candidate_predictions: 0,
            error_seq: 0,
            dropped,
            unpublished: 0,
            fleet,
            id,
        }
    }

    /// Publishes the memberships, then runs until [`Inbound::Stop`]: then `offline` and a clean disconnect.
    pub fn run(mut self, groups: &[String], inbox: Receiver<Inbound>) {
        for group in groups {
            let membership = Membership { device: self.id.clone(), prefix: self.topics.prefix().to_owned() };
            let topic = UpdateTopics::group(group).member(&self.id);
            self.publish_json(topic, QoS::AtLeastOnce, true, &membership);
        }
        self.apply(Event::Start { disk: disk() });
        let mut next_prediction = Instant::now() + self.prediction_interval;
        let mut next_health = Instant::now();
        // Ready once: `online` comes back at every reconnect, and again after a late last will.
        let mut ready = false;
        loop {
            let now = Instant::now();
            if now >= next_health {
                self.publish_health();
                next_health = now + self.health_interval;
            }
            if now >= next_prediction {
                self.publish_prediction();
                next_prediction += self.prediction_interval;
                if next_prediction < now {
                    // Behind (a slow install, a busy machine): skip, do not burst.
                    next_prediction = now + self.prediction_interval;
                }
            }
            let deadline = [Some(next_prediction), Some(next_health), self.machine.next_deadline()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(now);
            let event = match inbox.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Inbound::Update(message)) => message.into_event(disk, unix_time_ms()),
                Ok(Inbound::Subscribed) => {
                    if !ready {
                        ready = true;
                        self.fleet.send(FleetEvent::Ready);
                    }
                    continue;
                }
                Err(RecvTimeoutError::Timeout) => Event::Tick,
                Ok(Inbound::Stop) | Err(RecvTimeoutError::Disconnected) => break,
            };
            self.apply(event);
        }
        self.apply(Event::Stop);
        let report = self.link.shutdown(SHUTDOWN_TIMEOUT);
        self.fleet.send(FleetEvent::Stopped { index: self.index, closed: report.closed, unacked: report.unacked });
    }

    fn apply(&mut self, event: Event) {
        for action in self.machine.on(event, Instant::now()) {
            if let Some(outcome) = self.execute(action) {
                self.apply(outcome);
            }
        }
    }

    /// Carries out `action` in memory; returns its outcome, for those that have one.
    fn execute(&mut self, action: Action) -> Option<Event> {
        match action {
            Action::PublishStatus(status) => self.publish_status(status),
            Action::RecordStatus(LastStatus { status, .. }) => self.publish_status(status),
            Action::PublishEvidence { candidate, .. } => {
                let message = format!("evidence fetch of {candidate}: a simulated device keeps no evidence");
                self.report_error(ErrorStage::Command, ErrorKind::Io, message);
            }
            Action::RequestChunks(request) => {
                let topic = self.request_topic.clone();
                self.publish_json(topic, QoS::AtLeastOnce, false, &request);
            }
            Action::ReportError { stage, kind, message } => self.report_error(stage, kind, message),
            Action::OpenStaging(announcement) => {
                let size = usize::try_from(announcement.size).unwrap_or(usize::MAX);
                let progress = Progress::empty(&announcement);
                self.staged = Some(Staged { bytes: vec![0; size], announcement });
                return Some(Event::StagingOpened(Ok(progress)));
            }
            Action::WriteChunk { index, offset, bytes } => {
                let written = self.staged.as_mut().ok_or_else(|| "no download is open".to_owned()).and_then(|staged| {
                    let start = usize::try_from(offset).map_err(|e| e.to_string())?;
                    let slot =
                        staged.bytes.get_mut(start..start + bytes.len()).ok_or("chunk past the package's end")?;
                    slot.copy_from_slice(&bytes);
                    Ok(())
                });
                return Some(Event::ChunkWritten { index, result: written });
            }
            // In memory: nothing to make durable.
            Action::PersistStaging(_) => {}
            Action::DiscardStaging => self.staged = None,
            Action::CheckPackage => return Some(Event::PackageChecked(self.check_package())),
            Action::Unpack { .. } => {
                // The simulated install: the time an unpack and a load take.
                std::thread::sleep(self.install);
                let staged = self.staged.take()?;
                let version = staged.announcement.version;
                self.candidate_version = Some(version.clone());
                let candidate =
                    Candidate { name: self.model.clone(), version, takes_images: false, has_self_test: true };
                return Some(Event::Unpacked(Ok(candidate)));
            }
            Action::BuildPipeline { .. } => return Some(Event::PipelineBuilt(Ok(PROVIDER.into()))),
            Action::SelfTest => {
                let tested = if self.fails_self_test {
                    Err(Refusal::rejected("simulated self-test failure (edgectl fleet simulate --fail-self-test)"))
                } else {
                    Ok(())
                };
                return Some(Event::SelfTested(tested));
            }
            Action::DropCandidate => self.candidate_version = None,
            Action::Activate { .. } => return Some(Event::Activated(Ok(()))),
            Action::SwapIn { .. } => {
                let candidate = self.candidate_version.take().unwrap_or_else(|| self.serving.clone());
                self.previous = Some(std::mem::replace(&mut self.serving, candidate));
                self.candidate_predictions = 0;
                return Some(Event::SwappedIn { baselines: vec![self.score(self.predictions)] });
            }
            Action::SampleScores => return Some(Event::Scores(vec![self.score(self.candidate_predictions)])),
            Action::Commit { .. } | Action::RecordRollback { .. } => return Some(Event::SlotsWritten(Ok(()))),
            Action::SwapBack { .. } => {
                if let Some(previous) = self.previous.take() {
                    self.serving = previous;
                }
            }
            Action::LoadPrevious { model } => {
                let result = match self.previous.take() {
                    Some(previous) => {
                        self.previous = Some(std::mem::replace(&mut self.serving, previous.clone()));
                        Ok(Loaded { version: previous, providers: vec![PROVIDER.into()] })
                    }
                    None => Err("this simulated device has run no other version since it started".to_owned()),
                };
                return Some(Event::PreviousLoaded { model, result });
            }
            // In memory: a restarted simulator starts with no guard, like a fresh device.
            Action::SaveGuard(_) => return Some(Event::GuardSaved(Ok(()))),
        }
        None
    }

    /// The downloaded package's sha256 against the announcement (each chunk's was checked as it came). The
    /// manifest is not read: the simulated device takes the announced version.
    fn check_package(&self) -> Result<String, Refusal> {
        let staged = self.staged.as_ref().ok_or_else(|| Refusal::failed("no package is staged"))?;
        let sha256 = packaging::hex_sha256(&staged.bytes);
        if sha256 != staged.announcement.sha256 {
            return Err(Refusal::rejected(format!(
                "the package's sha256 is {sha256}, the announcement says {}",
                staged.announcement.sha256
            )));
        }
        Ok(staged.announcement.version.clone())
    }

    /// A score of `frames` predictions without errors: the simulated model is always healthy.
    fn score(&self, frames: u64) -> ScoreSnapshot {
        ScoreSnapshot {
            frames,
            errors: 0,
            p95_inference_us: None,
            mean_confidence: None,
            output_psi: None,
            accuracy: None,
        }
    }

    fn publish_status(&mut self, mut status: UpdateStatus) {
        status.at_ms = unix_time_ms();
        status.messages_dropped = self.dropped.load(Ordering::Relaxed);
        status.errors_unpublished = self.unpublished;
        let topic = self.update_status_topic.clone();
        self.publish_json(topic, QoS::AtLeastOnce, true, &status);
        if status.state.is_final() && status.order.is_some() {
            self.fleet.send(FleetEvent::Outcome(Box::new(status)));
        }
    }

    fn report_error(&mut self, stage: ErrorStage, kind: ErrorKind, message: String) {
        self.error_seq += 1;
        let event = ErrorEvent {
            device: self.id.clone(),
            source: "update".into(),
            seq: self.error_seq,
            at_ms: unix_time_ms(),
            stage,
            kind,
            message,
            input: None,
        };
        let topic = self.topics.errors("update");
        self.publish_wire(topic, QoS::AtLeastOnce, false, &event);
    }

    fn identity(&self) -> ModelIdentity {
        ModelIdentity { name: self.model.clone(), version: self.serving.clone(), sha256: String::new() }
    }

    fn publish_prediction(&mut self) {
        let now = unix_time_ms();
        let prediction = Prediction {
            device: self.id.clone(),
            source: SOURCE.into(),
            seq: self.predictions,
            captured_at_ms: now,
            published_at_ms: now,
            model: self.identity(),
            provider: PROVIDER.into(),
            output: Output::Classification {
                classes: vec![ClassScore { index: 0, label: "simulated".into(), score: 1.0 }],
            },
            latency_us: StageTimings::default(),
            total_us: 0,
            input: None,
        };
        self.predictions += 1;
        self.candidate_predictions += 1;
        let topic = self.topics.predictions(SOURCE);
        self.publish_wire(topic, QoS::AtMostOnce, false, &prediction);
    }

    fn publish_health(&mut self) {
        let uptime = self.started.elapsed();
        let source = SourceHealth {
            name: SOURCE.into(),
            model: self.identity(),
            provider_requested: vec![PROVIDER.into()],
            provider_active: PROVIDER.into(),
            frames_in: self.predictions,
            frames_ok: self.predictions,
            frames_per_s: (1.0 / self.prediction_interval.as_secs_f64()) as f32,
            dropped: 0,
            errors: Vec::new(),
            queue_depth: 0,
            queue_capacity: 0,
            latency: Default::default(),
            predictions_unpublished: 0,
        };
        let health = Health {
            device: self.id.clone(),
            agent_version: agent_version(),
            uptime_s: uptime.as_secs(),
            // A simulated device has no process of its own: the simulator's are in its own measurements.
            cpu_percent: 0.0,
            rss_bytes: 0,
            peak_rss_bytes: 0,
            temperature_c: None,
            mqtt_reconnects: self.link.reconnects(),
            sources: vec![source],
            health_unpublished: 0,
            arch: std::env::consts::ARCH.into(),
            mqtt_oversized: 0,
            conditions: Vec::new(),
            spool: None,
            cameras: Vec::new(),
            snapshots: Vec::new(),
            monitors: Vec::new(),
            at_ms: unix_time_ms(),
        };
        let topic = self.topics.health();
        self.publish_wire(topic, QoS::AtLeastOnce, true, &health);
    }

    fn publish_wire<M: wire::Message>(&mut self, topic: String, qos: QoS, retain: bool, message: &M) {
        match wire::encode(Format::Json, message) {
            Ok(payload) => self.publish(topic, qos, retain, payload),
            Err(e) => log::warn!(device = self.id.as_str(); "{topic}: not encoded: {e}."),
        }
    }

    fn publish_json(&mut self, topic: String, qos: QoS, retain: bool, message: &impl serde::Serialize) {
        match serde_json::to_vec(message) {
            Ok(payload) => self.publish(topic, qos, retain, payload),
            Err(e) => log::warn!(device = self.id.as_str(); "{topic}: not encoded: {e}."),
        }
    }

    /// Queues a publish; a full queue is counted in the update status's `errors_unpublished` and logged.
    fn publish(&mut self, topic: String, qos: QoS, retain: bool, payload: Vec<u8>) {
        if let Err(e) = self.link.try_publish(topic.clone(), qos, retain, payload) {
            self.unpublished += 1;
            log::debug!(device = self.id.as_str(); "{topic}: not published: {e}.");
        }
    }
}

/// A simulated device has room for any package it accepts (it is held in memory) and nothing staged.
fn disk() -> Disk {
    Disk { free_space: Ok(u64::MAX / 4), staged: None }
}

pub fn unix_time_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}
