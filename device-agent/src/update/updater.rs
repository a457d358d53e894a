//! The `update` thread: a thin shell around the update [machine](super::machine). It owns what the machine
//! must not touch (the event channel, the staged files, the slots, ONNX Runtime, the workers' control channels
//! and the link it publishes on), carries out the machine's actions and feeds their outcomes straight back. It
//! sleeps on its channel until a message arrives or the machine's next deadline passes.

use super::effects::{Action, Candidate, Disk, Event, Guard, LastStatus, Loaded, Refusal};
use super::fsutil::{available_space, write_atomic};
use super::machine::{Machine, ModelView, Settings, WorkerView};
use super::probation::{ModelScore, ScoreSnapshot};
use super::slots::{Recovery, SlotStore};
use super::staging::Staging;
use super::{Inbox, UpdateEvent};
use crate::clock::unix_time_ms;
use crate::config::UpdateConfig;
use crate::monitor::evidence::fetch;
use crate::mqtt::{MqttHandle, PublishError, QoS};
use crate::outbox::error_event;
use crate::shutdown::Shutdown;
use crate::worker::{Serving, Swap, SwapSender};
use packaging::{PublicKey, SelfTest};
use protocol::error::{ErrorKind, ErrorStage};
use protocol::update::{UpdateStatus, UpdateTopics};
use protocol::wire::{self, Format, Topics};
use runtime::manifest::CascadeSpec;
use runtime::{Bundle, EngineOptions, ModelIdentity, OnnxRuntime, Pipeline};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{RecvTimeoutError, sync_channel};
use std::time::{Duration, Instant};

/// How long a worker may take to finish its current inference and take a swap.
const SWAP_TIMEOUT: Duration = Duration::from_secs(60);
/// MQTT overhead kept free in a packet besides the chunk (topic, header).
const CHUNK_HEADROOM: usize = 1024;
const LAST_STATUS_FILE: &str = "last-status.json";
const GUARD_FILE: &str = "guard.json";
/// The longest a fetch of retraining evidence waits for room in the link's queue, for all its messages.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// A change of the drop counters is published (the last status again, with the new counts) at most this often.
const DROPS_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Where the updater's messages go: the MQTT link in the agent, a recorder in tests.
pub trait Publisher: Send {
    /// Queues a message without waiting.
    fn publish(&self, topic: String, qos: QoS, retain: bool, payload: Vec<u8>) -> Result<(), PublishError>;

    /// Queues a message (QoS 1, not retained), waiting for room while the broker is connected, until `deadline`.
    fn publish_paced(&self, topic: String, payload: Vec<u8>, deadline: Instant) -> Result<(), PublishError>;

    /// Keeps a retained message on the broker: published now, and again on every connect (another broker or
    /// cluster node may not have it), replacing what was kept for `topic`.
    fn retain(&self, topic: String, qos: QoS, payload: Vec<u8>) -> Result<(), PublishError>;
}

impl Publisher for MqttHandle {
    fn publish(&self, topic: String, qos: QoS, retain: bool, payload: Vec<u8>) -> Result<(), PublishError> {
        self.try_publish(topic, qos, retain, payload)
    }

    fn publish_paced(&self, topic: String, payload: Vec<u8>, deadline: Instant) -> Result<(), PublishError> {
        self.publish_while_connected(&topic, QoS::AtLeastOnce, false, &payload, deadline)
    }

    fn retain(&self, topic: String, qos: QoS, payload: Vec<u8>) -> Result<(), PublishError> {
        self.retain_on_connect(&topic, qos, payload)
    }
}

/// A worker serving one source of a model, as the updater sees it.
pub struct WorkerLink {
    pub source: String,
    pub control: SwapSender,
    /// The execution provider its pipeline runs on.
    pub provider: String,
    /// Whether the source feeds images (the candidate must take the same kind of input).
    pub takes_images: bool,
    /// The cascade the source's config gives, attached to every pipeline built for it.
    pub cascade: Option<ConfiguredCascade>,
}

/// A source's `[sources.cascade]`: the second stage stays the config's while updates replace the first.
#[derive(Debug, Clone)]
pub struct ConfiguredCascade {
    pub spec: CascadeSpec,
    /// Its key in the config (`sources[0].cascade`), which its errors name.
    pub key: String,
}

impl ConfiguredCascade {
    /// Runs the cascade on `pipeline`, the pipeline of `bundle`.
    pub fn attach(
        &self,
        pipeline: &mut Pipeline,
        ort: &OnnxRuntime,
        bundle: &Bundle,
        options: &EngineOptions,
    ) -> runtime::Result<()> {
        pipeline.set_cascade(ort, bundle, Path::new(&self.spec.bundle), self.spec.clone(), options, &self.key)
    }
}

/// A model (by manifest name) that one or more sources serve.
pub struct ServedModel {
    pub name: String,
    pub store: SlotStore,
    pub recovery: Recovery,
    pub running: ModelIdentity,
    pub workers: Vec<WorkerLink>,
}

/// `mqtt.qos` of the two kinds of message the updater publishes besides chunk requests (always QoS 1).
#[derive(Debug, Clone, Copy)]
pub struct UpdateQos {
    pub status: QoS,
    pub errors: QoS,
}

/// Everything the updater is built from.
pub struct UpdaterParts<P> {
    pub config: UpdateConfig,
    pub device: String,
    pub topics: Topics,
    pub own: UpdateTopics,
    pub format: Format,
    pub qos: UpdateQos,
    pub max_packet_bytes: usize,
    pub ort: OnnxRuntime,
    pub options: EngineOptions,
    pub models: Vec<ServedModel>,
    /// Where each source that keeps retraining evidence has its candidates, for signed fetches.
    pub evidence_dirs: Vec<PathBuf>,
    pub link: P,
}

/// What the shell keeps of a served model: its slots and its workers' control channels and cascades.
struct ServedSlots {
    store: SlotStore,
    workers: Vec<(String, SwapSender, Option<ConfiguredCascade>)>,
}

/// The candidate between [`Action::Unpack`] and [`Action::SwapIn`].
struct CandidateBuild {
    bundle: Bundle,
    self_test: Option<SelfTest>,
    pipelines: Vec<Pipeline>,
}

/// The pipelines a candidate on probation replaced, kept for an instant rollback, and the candidate's scores.
struct TrialPipelines {
    replaced: Vec<Serving>,
    scores: Vec<Arc<ModelScore>>,
}

/// The device side of over-the-air updates; see the [module docs](self).
pub struct Updater<P> {
    machine: Machine,
    state_dir: PathBuf,
    device: String,
    own: UpdateTopics,
    errors_topic: String,
    format: Format,
    qos: UpdateQos,
    trusted: Vec<PublicKey>,
    ort: OnnxRuntime,
    options: EngineOptions,
    models: Vec<ServedSlots>,
    staging: Option<Staging>,
    candidate: Option<CandidateBuild>,
    trial: Option<TrialPipelines>,
    error_seq: u64,
    drops: DropCounts,
    topics: Topics,
    max_packet_bytes: usize,
    evidence_dirs: Vec<PathBuf>,
    link: P,
}

/// Update messages lost on the way in (the update thread's queue full) and error events lost on the way out
/// (the link's queue full): stamped on every status, which goes out again when they change.
#[derive(Default)]
struct DropCounts {
    /// Shared with the MQTT thread's routes.
    messages: Arc<AtomicU64>,
    errors_unpublished: u64,
    /// The counts the last status published carried.
    reported: (u64, u64),
    /// The last status published, to publish again with new counts.
    last_sent: Option<UpdateStatus>,
    /// When the changed counts go out.
    due: Option<Instant>,
}

impl DropCounts {
    fn current(&self) -> (u64, u64) {
        (self.messages.load(Ordering::Relaxed), self.errors_unpublished)
    }
}

impl<P: Publisher> Updater<P> {
    pub fn new(parts: UpdaterParts<P>) -> anyhow::Result<Updater<P>> {
        let state_dir = parts.config.state_dir.clone().ok_or_else(|| anyhow::anyhow!("update.state_dir is not set"))?;
        let trusted =
            parts.config.trusted_keys.iter().map(|key| PublicKey::from_hex(key)).collect::<Result<Vec<_>, _>>()?;
        let last: Option<LastStatus> =
            std::fs::read(state_dir.join(LAST_STATUS_FILE)).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let guard = read_guard(&state_dir);
        let (views, models) = parts.models.into_iter().map(split_model).unzip();
        let settings = Settings {
            device: parts.device.clone(),
            config: parts.config.settings.clone(),
            max_chunk: parts.max_packet_bytes.saturating_sub(CHUNK_HEADROOM),
            trusted: trusted.clone(),
        };
        Ok(Updater {
            machine: Machine::new(settings, views, last, guard),
            state_dir,
            device: parts.device,
            own: parts.own,
            errors_topic: parts.topics.errors("update"),
            format: parts.format,
            qos: parts.qos,
            trusted,
            ort: parts.ort,
            options: parts.options,
            models,
            staging: None,
            candidate: None,
            trial: None,
            error_seq: 0,
            drops: DropCounts::default(),
            topics: parts.topics,
            max_packet_bytes: parts.max_packet_bytes,
            evidence_dirs: parts.evidence_dirs,
            link: parts.link,
        })
    }

    /// Runs until `shutdown`. A candidate still on probation then stays unconfirmed on disk, and the next start
    /// rolls it back: only a model that finished probation is ever booted as committed.
    pub fn run(mut self, inbox: Inbox, shutdown: Arc<Shutdown>) {
        let Inbox { events, wake, dropped } = inbox;
        self.drops.messages = dropped;
        std::thread::scope(|scope| {
            // The shutdown latch is not a channel: this turns it into the message that ends the loop below.
            scope.spawn(move || {
                while !shutdown.wait(Duration::from_secs(3600)) {}
                let _ = wake.send(UpdateEvent::Stop);
            });
            self.apply(Event::Start { disk: self.disk() });
            loop {
                let now = Instant::now();
                let received = match self.machine.next_deadline().into_iter().chain(self.drops.due).min() {
                    Some(deadline) if deadline <= now => Err(RecvTimeoutError::Timeout),
                    Some(deadline) => events.recv_timeout(deadline - now),
                    None => events.recv().map_err(|_| RecvTimeoutError::Disconnected),
                };
                let event = match received {
                    Ok(UpdateEvent::Message(message)) => message.into_event(|| self.disk(), unix_time_ms()),
                    Err(RecvTimeoutError::Timeout) => Event::Tick,
                    Ok(UpdateEvent::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                };
                self.apply(event);
                self.report_drops();
            }
            self.apply(Event::Stop);
        });
    }

    /// Takes an event to the machine and carries out what it says; each outcome goes back at once.
    fn apply(&mut self, event: Event) {
        for action in self.machine.on(event, Instant::now()) {
            if let Some(outcome) = self.execute(action) {
                self.apply(outcome);
            }
        }
    }

    fn disk(&self) -> Disk {
        Disk {
            free_space: available_space(&self.state_dir).map_err(|e| e.to_string()),
            staged: Staging::staged(&self.state_dir),
        }
    }

    /// Carries out `action`; returns its outcome, for those that have one.
    fn execute(&mut self, action: Action) -> Option<Event> {
        match action {
            Action::PublishStatus(status) => self.send_status(status),
            Action::PublishEvidence { candidate, order } => self.publish_evidence(&candidate, order),
            Action::RecordStatus(last) => self.record_status(last),
            Action::RequestChunks(request) => match serde_json::to_vec(&request) {
                Ok(payload) => {
                    if let Err(e) = self.link.publish(self.own.request(), QoS::AtLeastOnce, false, payload) {
                        log::debug!("Chunk request not queued: {e}.");
                    }
                }
                Err(e) => log::warn!("Encoding a chunk request failed: {e}."),
            },
            Action::ReportError { stage, kind, message } => self.report_error(stage, kind, message),
            Action::OpenStaging(announcement) => {
                let opened = Staging::open(&self.state_dir, &announcement).map(|(staging, progress)| {
                    self.staging = Some(staging);
                    progress
                });
                return Some(Event::StagingOpened(opened.map_err(|e| e.to_string())));
            }
            Action::WriteChunk { index, offset, bytes } => {
                let written = match &self.staging {
                    Some(staging) => staging.write_chunk(offset, &bytes).map_err(|e| e.to_string()),
                    None => Err("no download is staged".into()),
                };
                return Some(Event::ChunkWritten { index, result: written });
            }
            Action::PersistStaging(bitmap) => {
                if let Some(Err(e)) = self.staging.as_ref().map(|staging| staging.persist(&bitmap)) {
                    log::warn!("Persisting download progress failed: {e}.");
                }
            }
            Action::DiscardStaging => {
                self.staging = None;
                if let Err(e) = Staging::discard(&self.state_dir) {
                    log::warn!("Removing the staged package failed: {e}.");
                }
            }
            Action::CheckPackage => return Some(Event::PackageChecked(self.check_package())),
            Action::Unpack { model } => return Some(Event::Unpacked(self.unpack(model))),
            Action::BuildPipeline { model } => return Some(Event::PipelineBuilt(self.build_pipeline(model))),
            Action::SelfTest => return Some(Event::SelfTested(self.self_test())),
            Action::DropCandidate => self.candidate = None,
            Action::Activate { model, update_id, version } => {
                let activated = self.models[model].store.activate(&update_id, &version);
                return Some(Event::Activated(activated.map_err(|e| e.to_string())));
            }
            Action::SwapIn { model } => return Some(self.swap_in(model)),
            Action::SampleScores => {
                let scores = self.trial.iter().flat_map(|trial| &trial.scores).map(|score| score.snapshot());
                return Some(Event::Scores(scores.collect()));
            }
            Action::Commit { model } => {
                // The replaced pipelines are no rollback target any more.
                self.trial = None;
                return Some(Event::SlotsWritten(self.models[model].store.commit().map_err(|e| e.to_string())));
            }
            Action::SwapBack { model } => {
                if let Some(trial) = self.trial.take() {
                    self.swap_all(model, trial.replaced);
                }
            }
            Action::LoadPrevious { model } => {
                return Some(Event::PreviousLoaded { model, result: self.roll_back_committed(model) });
            }
            Action::RecordRollback { model } => {
                let recorded = self.models[model].store.roll_back().map(|_| ()).map_err(|e| e.to_string());
                return Some(Event::SlotsWritten(recorded));
            }
            Action::SaveGuard(guard) => {
                let saved = serde_json::to_vec_pretty(&guard)
                    .map_err(std::io::Error::other)
                    .and_then(|bytes| write_atomic(&self.state_dir.join(GUARD_FILE), &bytes));
                return Some(Event::GuardSaved(saved.map_err(|e| e.to_string())));
            }
        }
        None
    }

    /// Publishes the last status again when the drop counts changed, at most once per
    /// [`DROPS_REPORT_INTERVAL`].
    fn report_drops(&mut self) {
        if self.drops.current() == self.drops.reported {
            return;
        }
        let now = Instant::now();
        match self.drops.due {
            None => self.drops.due = Some(now + DROPS_REPORT_INTERVAL),
            Some(due) if now >= due => {
                self.drops.due = None;
                if let Some(status) = self.drops.last_sent.clone() {
                    self.send_status(status);
                }
            }
            Some(_) => {}
        }
    }

    /// sha256 of the whole package, then its signature and version: an unsigned package must not cost the
    /// candidate slot (which may hold the rollback target). Answers the version the manifest holds. Every chunk
    /// matched its signed sha256 on arrival, so a package that does not is this device's failure (its disk),
    /// not the package's.
    fn check_package(&self) -> Result<String, Refusal> {
        let staging = self.staging.as_ref().ok_or_else(|| Refusal::failed("no package is staged"))?;
        staging.check_sha256().map_err(|e| Refusal::failed(e.to_string()))?;
        let package = packaging::package::inspect(staging.package_path()).map_err(rejected)?;
        packaging::signature::verify(&package.manifest_bytes, package.signature.as_deref(), &self.trusted)
            .map_err(rejected)?;
        Ok(package.manifest.version.to_string())
    }

    fn unpack(&mut self, model: usize) -> Result<Candidate, Refusal> {
        let staging = self.staging.as_ref().ok_or_else(|| Refusal::failed("no package is staged"))?;
        let store = &mut self.models[model].store;
        let temp =
            store.begin_candidate().map_err(|e| Refusal::failed(format!("preparing the candidate slot: {e}")))?;
        packaging::package::unpack(staging.package_path(), &temp, &self.trusted).map_err(rejected)?;
        let slot =
            store.install_candidate().map_err(|e| Refusal::failed(format!("installing the candidate slot: {e}")))?;
        let bundle = Bundle::load(&slot).map_err(rejected)?;
        let self_test = SelfTest::of_bundle(&bundle).map_err(rejected)?;
        let manifest = bundle.manifest();
        let candidate = Candidate {
            name: manifest.name.clone(),
            version: manifest.version.to_string(),
            takes_images: matches!(manifest.input, runtime::manifest::InputSpec::Image(_)),
            has_self_test: self_test.is_some(),
        };
        self.candidate = Some(CandidateBuild { bundle, self_test, pipelines: Vec::new() });
        Ok(candidate)
    }

    fn build_pipeline(&mut self, model: usize) -> Result<String, Refusal> {
        let candidate = self.candidate.as_mut().ok_or_else(|| Refusal::failed("no candidate is unpacked"))?;
        let mut pipeline = Pipeline::new(&self.ort, &candidate.bundle, &self.options).map_err(rejected)?;
        // The pipelines are built in the order of the model's workers.
        if let Some((_, _, Some(cascade))) = self.models[model].workers.get(candidate.pipelines.len()) {
            cascade.attach(&mut pipeline, &self.ort, &candidate.bundle, &self.options).map_err(rejected)?;
        }
        let provider = pipeline.provider().active.name().to_owned();
        candidate.pipelines.push(pipeline);
        Ok(provider)
    }

    /// Runs the golden vectors on each candidate pipeline while the workers keep serving the old model.
    fn self_test(&mut self) -> Result<(), Refusal> {
        let CandidateBuild { bundle, self_test, pipelines } =
            self.candidate.as_mut().ok_or_else(|| Refusal::failed("no candidate is unpacked"))?;
        let self_test =
            self_test.as_ref().ok_or_else(|| Refusal::rejected("the package has no golden self-test vectors"))?;
        for pipeline in pipelines {
            self_test.run(bundle, pipeline).map_err(rejected)?;
        }
        Ok(())
    }

    fn swap_in(&mut self, model: usize) -> Event {
        let pipelines = self.candidate.take().map(|candidate| candidate.pipelines).unwrap_or_default();
        let serving: Vec<Serving> = pipelines.into_iter().map(Serving::new).collect();
        let scores = serving.iter().map(|serving| serving.score.clone()).collect();
        let (replaced, baselines) = self.swap_all(model, serving);
        self.trial = Some(TrialPipelines { replaced, scores });
        Event::SwappedIn { baselines }
    }

    /// Returns a committed model to the previous slot: its pipelines are built and swapped in like an update's.
    fn roll_back_committed(&mut self, model: usize) -> Result<Loaded, String> {
        let served = &self.models[model];
        let previous = served.store.previous_dir().ok_or("there is no previous model")?;
        let bundle = Bundle::load(&previous).map_err(|e| e.to_string())?;
        let mut serving = Vec::new();
        let mut providers = Vec::new();
        for (_, _, cascade) in &served.workers {
            let mut pipeline = Pipeline::new(&self.ort, &bundle, &self.options).map_err(|e| e.to_string())?;
            if let Some(cascade) = cascade {
                cascade.attach(&mut pipeline, &self.ort, &bundle, &self.options).map_err(|e| e.to_string())?;
            }
            providers.push(pipeline.provider().active.name().to_owned());
            serving.push(Serving::new(pipeline));
        }
        self.swap_all(model, serving);
        Ok(Loaded { version: bundle.identity().version, providers })
    }

    /// Hands each worker of `model` its new pipeline and waits for the old one. Returns the old pipelines and
    /// their scores at the moment they were replaced.
    fn swap_all(&mut self, model: usize, serving: Vec<Serving>) -> (Vec<Serving>, Vec<ScoreSnapshot>) {
        let mut replaced = Vec::new();
        let mut baselines = Vec::new();
        for ((source, control, _), new) in self.models[model].workers.iter().zip(serving) {
            let (reply, old) = sync_channel(1);
            if control.send(Swap { serving: new, replaced: reply }).is_err() {
                continue; // The worker has ended (shutdown): nothing serves there any more.
            }
            match old.recv_timeout(SWAP_TIMEOUT) {
                Ok(old) => {
                    baselines.push(old.score.snapshot());
                    replaced.push(old);
                }
                Err(_) => log::error!(source = source.as_str(); "Worker did not take the new model in time."),
            }
        }
        (replaced, baselines)
    }

    /// Keeps an outcome on disk, then publishes it: a restart never says less than subscribers saw.
    fn record_status(&mut self, mut last: LastStatus) {
        last.status.at_ms = unix_time_ms();
        match serde_json::to_vec(&last) {
            Ok(bytes) => {
                if let Err(e) = write_atomic(&self.state_dir.join(LAST_STATUS_FILE), &bytes) {
                    log::warn!("Saving the update status failed: {e}.");
                }
            }
            Err(e) => log::warn!("Encoding the update status failed: {e}."),
        }
        self.send_status(last.status);
    }

    fn send_status(&mut self, mut status: UpdateStatus) {
        status.at_ms = unix_time_ms();
        self.drops.reported = self.drops.current();
        (status.messages_dropped, status.errors_unpublished) = self.drops.reported;
        self.drops.last_sent = Some(status.clone());
        match serde_json::to_vec(&status) {
            Ok(payload) => {
                if let Err(e) = self.link.retain(self.own.status(), self.qos.status, payload) {
                    log::warn!("Update status not published: {e}.");
                }
            }
            Err(e) => log::warn!("Encoding the update status failed: {e}."),
        }
    }

    /// Answers a signed fetch of retraining evidence: the samples, then what went out. It waits for room in the
    /// link's queue (at most [`FETCH_TIMEOUT`]) rather than refuse samples: a fetch is rare, and asked for.
    fn publish_evidence(&mut self, candidate: &str, order: u64) {
        let deadline = Instant::now() + FETCH_TIMEOUT;
        let (dirs, topics, link) = (&self.evidence_dirs, &self.topics, &self.link);
        let answer =
            fetch::answer(dirs, topics, &self.device, candidate, order, self.max_packet_bytes, |topic, bytes| {
                link.publish_paced(topic, bytes, deadline).map_err(|e| e.to_string())
            });
        let (sent, skipped) = (answer.published.len(), answer.skipped.len());
        match &answer.error {
            Some(error) => log::warn!(candidate; "Evidence fetch refused: {error}."),
            None => log::info!(candidate, sent, skipped; "Evidence fetched."),
        }
        let published = wire::encode(self.format, &answer).map_err(|e| e.to_string()).and_then(|payload| {
            link.publish_paced(topics.retrain_fetched(candidate), payload, deadline).map_err(|e| e.to_string())
        });
        if let Err(e) = published {
            log::warn!(candidate; "The answer to an evidence fetch was not published: {e}.");
        }
    }

    /// An error event on `<prefix>/errors/update`, in `mqtt.format`.
    fn report_error(&mut self, stage: ErrorStage, kind: ErrorKind, message: String) {
        self.error_seq += 1;
        let event = error_event(&self.device, "update", self.error_seq, stage, kind, &message, "");
        let published = wire::encode(self.format, &event).map_err(|e| e.to_string()).and_then(|payload| {
            self.link.publish(self.errors_topic.clone(), self.qos.errors, false, payload).map_err(|e| e.to_string())
        });
        if let Err(e) = published {
            // Reported in the update status's `errors_unpublished`.
            self.drops.errors_unpublished += 1;
            log::debug!("Update error event not published: {e}.");
        }
    }
}

/// The guard a previous run kept. One that cannot be read is logged and replaced by an empty one: the agent
/// keeps serving, and takes orders again from any counter.
fn read_guard(state_dir: &std::path::Path) -> Guard {
    let path = state_dir.join(GUARD_FILE);
    let read = std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()));
    match read {
        Ok(guard) => guard,
        Err(_) if !path.exists() => Guard::default(),
        Err(e) => {
            log::error!("{} cannot be read ({e}); replay protection and version floors start again.", path.display());
            Guard::default()
        }
    }
}

/// Splits a served model into what the machine decides with and what the shell works with.
fn split_model(model: ServedModel) -> (ModelView, ServedSlots) {
    let ServedModel { name, store, recovery, running, workers } = model;
    let view = ModelView {
        name,
        running_version: running.version,
        slot_update: store.update_id().zip(store.version()).map(|(id, version)| (id.to_owned(), version.to_owned())),
        recovery,
        workers: workers
            .iter()
            .map(|worker| WorkerView {
                source: worker.source.clone(),
                provider: worker.provider.clone(),
                takes_images: worker.takes_images,
            })
            .collect(),
    };
    let workers = workers.into_iter().map(|worker| (worker.source, worker.control, worker.cascade)).collect();
    (view, ServedSlots { store, workers })
}

fn rejected(error: impl ToString) -> Refusal {
    Refusal::rejected(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use device_update::inbound::UpdateMessage;
    use std::sync::Mutex;

    /// Every message the updater publishes: topic, retained, payload.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<(String, bool, serde_json::Value)>>>);

    impl Publisher for Recorder {
        fn publish(&self, topic: String, _: QoS, retain: bool, payload: Vec<u8>) -> Result<(), PublishError> {
            self.0.lock().unwrap().push((topic, retain, serde_json::from_slice(&payload).unwrap()));
            Ok(())
        }

        fn publish_paced(&self, topic: String, payload: Vec<u8>, _: Instant) -> Result<(), PublishError> {
            self.publish(topic, QoS::AtLeastOnce, false, payload)
        }

        fn retain(&self, topic: String, qos: QoS, payload: Vec<u8>) -> Result<(), PublishError> {
            self.publish(topic, qos, true, payload)
        }
    }

    /// The shell runs the machine's actions on its link and disk, and ends when the agent stops, after the
    /// messages already queued. The unsigned rollback of the issue is refused with an error event.
    #[test]
    fn the_shell_publishes_what_the_machine_decides_and_stops_with_the_agent() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state");
        let (store, recovery) = SlotStore::open(&state_dir, "demo", &dir.path().join("factory")).unwrap();
        let (_jobs, swaps) = crate::queue::job_queue::<Swap>(crate::queue::Policy::Latest, Box::new(|_, _| {}));
        let control = swaps.control();
        let recorder = Recorder::default();
        let own = UpdateTopics::device("devices/d1");
        let updater = Updater::new(UpdaterParts {
            config: UpdateConfig { state_dir: Some(state_dir.clone()), ..UpdateConfig::default() },
            device: "d1".into(),
            topics: Topics::new("devices/d1"),
            own: own.clone(),
            format: Format::Json,
            qos: UpdateQos { status: QoS::AtLeastOnce, errors: QoS::AtMostOnce },
            max_packet_bytes: 65_536,
            ort: OnnxRuntime::load(crate::ort_library(None)).unwrap(),
            options: EngineOptions::default(),
            models: vec![ServedModel {
                name: "demo".into(),
                store,
                recovery,
                running: ModelIdentity { name: "demo".into(), version: "1.0.0".into(), sha256: String::new() },
                workers: vec![WorkerLink {
                    source: "wrist".into(),
                    control,
                    provider: "cpu".into(),
                    takes_images: false,
                    cascade: None,
                }],
            }],
            evidence_dirs: Vec::new(),
            link: recorder.clone(),
        })
        .unwrap();
        let (wake, events) = sync_channel(8);
        wake.send(UpdateEvent::Message(UpdateMessage::Announce { base: own, payload: b"{".to_vec() })).unwrap();
        wake.send(UpdateEvent::Message(UpdateMessage::Command(br#"{"command":"rollback"}"#.to_vec()))).unwrap();
        let shutdown = Arc::new(Shutdown::default());
        shutdown.trigger();
        updater.run(Inbox { events, wake, dropped: Arc::default() }, shutdown);

        let published = recorder.0.lock().unwrap().clone();
        let topics: Vec<(&str, bool)> = published.iter().map(|(topic, retain, _)| (topic.as_str(), *retain)).collect();
        assert_eq!(
            topics,
            [
                ("devices/d1/update/status", true),
                ("devices/d1/errors/update", false),
                ("devices/d1/errors/update", false)
            ]
        );
        let (idle, error, unsigned) = (&published[0].2, &published[1].2, &published[2].2);
        assert_eq!((idle["state"].as_str(), idle["running_version"].as_str()), (Some("idle"), Some("1.0.0")));
        assert!(idle["at_ms"].as_u64().unwrap() > 0, "stamped with the wall clock");
        assert_eq!((idle["messages_dropped"].as_u64(), idle["errors_unpublished"].as_u64()), (Some(0), Some(0)));
        assert_eq!((error["seq"].as_u64(), error["stage"].as_str()), (Some(1), Some("announce")));
        assert_eq!((error["kind"].as_str(), error["source"].as_str()), (Some("malformed"), Some("update")));
        assert_eq!((unsigned["stage"].as_str(), unsigned["kind"].as_str()), (Some("command"), Some("malformed")));
        assert!(!state_dir.join(LAST_STATUS_FILE).exists(), "the unsigned rollback did nothing");
        assert!(!state_dir.join(GUARD_FILE).exists(), "nor did it touch the guard");
    }
}
