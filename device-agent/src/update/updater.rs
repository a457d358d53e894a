//! The `update` thread's state machine: idle, downloading (one package at a time), or a candidate on
//! probation. Verification and the self-test run on this thread while the workers keep serving the old model.
//!
//! Every outcome is published, retained, on `<prefix>/update/status`, and the last one is kept in
//! `<state_dir>/last-status.json`: a device that restarts says the same thing, and does not retry an update it
//! refused or rolled back (a package is identified by its sha256, so a fixed package is a new update).

use super::fsutil::{available_space, write_atomic};
use super::probation::{ModelScore, ScoreSnapshot, Verdict, judge};
use protocol::update::{Announcement, ChunkRequest, UpdateCommand, UpdateState, UpdateStatus, UpdateTopics, update_id};
use super::slots::{Recovery, SlotStore};
use super::staging::Staging;
use super::UpdateEvent;
use crate::config::UpdateConfig;
use crate::mqtt::{MqttHandle, QoS};
use crate::shutdown::Shutdown;
use crate::clock::unix_time_ms;
use protocol::wire::{self, ErrorEvent, Format, Topics};
use crate::worker::{Serving, Swap, SwapSender};
use runtime::signature::PublicKey;
use runtime::{Bundle, EngineOptions, ModelIdentity, OnnxRuntime, Pipeline};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::time::{Duration, Instant};

/// How often the thread wakes without events: probation checks, re-requests, progress.
const TICK: Duration = Duration::from_millis(100);
/// Progress is published at most this often while downloading.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// Staged chunks are made durable at least this often, and every [`PERSIST_CHUNKS`] chunks or request window,
/// whichever is smaller: a crash then loses at most two windows (one unsaved, one in flight).
const PERSIST_INTERVAL: Duration = Duration::from_millis(500);
const PERSIST_CHUNKS: u32 = 32;
/// How long a worker may take to finish its current inference and take a swap.
const SWAP_TIMEOUT: Duration = Duration::from_secs(60);
/// MQTT overhead kept free in a packet besides the chunk (topic, header).
const CHUNK_HEADROOM: usize = 1024;
const LAST_STATUS_FILE: &str = "last-status.json";
/// Bounds the progress bitmap (and the requests) of one download: 2^20 chunks is 128 KiB of bitmap.
const MAX_CHUNKS: u32 = 1 << 20;

/// A worker serving one source of a model, as the updater sees it.
pub struct WorkerLink {
    pub source: String,
    pub control: SwapSender,
    /// The score of the pipeline the worker serves now.
    pub score: Arc<ModelScore>,
    /// The execution provider that pipeline runs on.
    pub provider: String,
    /// Whether the source feeds images (the candidate must take the same kind of input).
    pub takes_images: bool,
}

/// A model (by manifest name) that one or more sources serve.
pub struct ServedModel {
    pub name: String,
    pub store: SlotStore,
    pub recovery: Recovery,
    pub running: ModelIdentity,
    pub workers: Vec<WorkerLink>,
}

/// The last status, kept on disk so that a restarted device repeats it and doesn't retry a refused update.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LastStatus {
    status: UpdateStatus,
    /// The update was refused or rolled back on its merits: the same package is not tried again.
    final_for_package: bool,
}

struct Download {
    model: usize,
    announcement: Announcement,
    staging: Staging,
    in_flight: BTreeSet<u32>,
    last_chunk_at: Instant,
    last_persist_at: Instant,
    unpersisted: u32,
    last_progress_at: Instant,
}

struct Trial {
    model: usize,
    update_id: String,
    version: String,
    started: Instant,
    baselines: Vec<ScoreSnapshot>,
    candidate_scores: Vec<Arc<ModelScore>>,
    replaced: Vec<Serving>,
    previous_identity: ModelIdentity,
}

enum Phase {
    Idle,
    Downloading(Box<Download>),
    Probation(Box<Trial>),
}

/// Why an update did not go through: the state to report and the reason.
struct Refusal {
    state: UpdateState,
    reason: String,
}

impl Refusal {
    fn rejected(reason: impl Into<String>) -> Refusal {
        Refusal { state: UpdateState::Rejected, reason: reason.into() }
    }

    fn failed(reason: impl Into<String>) -> Refusal {
        Refusal { state: UpdateState::Failed, reason: reason.into() }
    }
}

/// The device side of over-the-air updates; see the [module docs](self).
pub struct Updater {
    config: UpdateConfig,
    state_dir: PathBuf,
    device: String,
    own: UpdateTopics,
    errors_topic: String,
    format: Format,
    qos: UpdateQos,
    trusted: Vec<PublicKey>,
    max_chunk: usize,
    ort: OnnxRuntime,
    options: EngineOptions,
    models: Vec<ServedModel>,
    phase: Phase,
    last: Option<LastStatus>,
    error_seq: u64,
    link: MqttHandle,
}

/// `mqtt.qos` of the two kinds of message the updater publishes besides chunk requests (always QoS 1).
#[derive(Debug, Clone, Copy)]
pub struct UpdateQos {
    pub status: QoS,
    pub errors: QoS,
}

/// Everything the updater is built from.
pub struct UpdaterParts {
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
    pub link: MqttHandle,
}

impl Updater {
    pub fn new(parts: UpdaterParts) -> anyhow::Result<Updater> {
        let state_dir = parts.config.state_dir.clone().ok_or_else(|| anyhow::anyhow!("update.state_dir is not set"))?;
        let trusted = parts
            .config
            .trusted_keys
            .iter()
            .map(|key| PublicKey::from_hex(key))
            .collect::<Result<Vec<_>, _>>()?;
        let last = std::fs::read(state_dir.join(LAST_STATUS_FILE)).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok());
        Ok(Updater {
            config: parts.config,
            state_dir,
            errors_topic: parts.topics.errors("update"),
            device: parts.device,
            own: parts.own,
            format: parts.format,
            qos: parts.qos,
            trusted,
            max_chunk: parts.max_packet_bytes.saturating_sub(CHUNK_HEADROOM),
            ort: parts.ort,
            options: parts.options,
            models: parts.models,
            phase: Phase::Idle,
            last,
            error_seq: 0,
            link: parts.link,
        })
    }

    /// Runs until `shutdown`. A candidate still on probation then stays unconfirmed on disk, and the next start
    /// rolls it back: only a model that finished probation is ever booted as committed.
    pub fn run(mut self, events: Receiver<UpdateEvent>, shutdown: Arc<Shutdown>) {
        self.report_start();
        self.resume_staged();
        while !shutdown.is_triggered() {
            match events.recv_timeout(TICK) {
                Ok(UpdateEvent::Announce { base, payload }) => self.on_announce(&base, &payload),
                Ok(UpdateEvent::Chunk { id, index, payload }) => self.on_chunk(&id, index, &payload),
                Ok(UpdateEvent::Command(payload)) => self.on_command(&payload),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.tick();
        }
        if let Phase::Downloading(download) = &mut self.phase {
            let _ = download.staging.persist();
        }
    }

    /// Publishes the state the device starts in: a rollback done at start, else the last status, else idle.
    fn report_start(&mut self) {
        let mut rolled_back = false;
        for index in 0..self.models.len() {
            let model = &self.models[index];
            match &model.recovery {
                Recovery::RolledBack { update_id, version } => {
                    log::warn!(model = model.name.as_str(), version = version.as_str(); "The agent stopped during probation; rolled back.");
                    let status = self.status_for(
                        index,
                        UpdateState::RolledBack,
                        Some(update_id.clone()),
                        version.clone(),
                        Some("the agent stopped during probation; the previous model serves".into()),
                    );
                    // Not final for the package: the model was not judged, so a new push may try it again.
                    self.publish(status, false);
                    rolled_back = true;
                }
                Recovery::None => {}
                Recovery::Reset(reason) => log::warn!(model = model.name.as_str(); "Update state was reset: {reason}."),
            }
        }
        if rolled_back {
            return;
        }
        let status = match self.last.clone() {
            // The outcome reached the slots but not this file: the slots are the truth.
            Some(last) if last.status.state == UpdateState::Probation => {
                let Some(model) = self.models.iter().position(|m| m.name == last.status.model) else { return };
                let id = last.status.update_id.clone();
                let committed = id.as_deref().is_some_and(|id| self.runs_update(model, id));
                let (state, reason) = if committed {
                    (UpdateState::Committed, None)
                } else {
                    (UpdateState::RolledBack, Some("the agent stopped before the outcome was recorded; the previous model serves".into()))
                };
                let status = self.status_for(model, state, id, last.status.version.clone(), reason);
                self.publish(status, false);
                return;
            }
            Some(last) => UpdateStatus { at_ms: unix_time_ms(), ..last.status },
            None => match self.models.first() {
                Some(model) => {
                    let version = model.running.version.clone();
                    self.status_for(0, UpdateState::Idle, None, version, None)
                }
                None => return,
            },
        };
        self.send_status(&status);
    }

    /// A download interrupted by a restart asks for its missing chunks at once; the pusher, if it is still
    /// there, answers, and the transfer goes on where it stopped.
    fn resume_staged(&mut self) {
        let Some(announcement) = Staging::staged(&self.state_dir) else { return };
        let Some(model) = self.models.iter().position(|m| m.name == announcement.name) else { return };
        if let Err(refusal) = self.start_download(model, announcement) {
            log::warn!("The staged download cannot resume: {}.", refusal.reason);
        }
    }

    fn on_announce(&mut self, base: &UpdateTopics, payload: &[u8]) {
        let announcement: Announcement = match serde_json::from_slice(payload) {
            Ok(announcement) => announcement,
            Err(e) => return self.report_error("announce", "malformed", &format!("invalid announcement: {e}")),
        };
        if let Phase::Downloading(download) = &mut self.phase
            && download.announcement.id == announcement.id
        {
            // Repeated while we download: the pusher may have lost our requests; ask again.
            download.in_flight.clear();
            self.request_more();
            return;
        }
        if let Phase::Probation(trial) = &self.phase {
            if trial.update_id != announcement.id {
                log::info!(update = announcement.id.as_str(); "Announcement ignored: another update is on probation.");
            }
            return;
        }
        let Some(model) = self.models.iter().position(|m| m.name == announcement.name) else {
            return self.refuse_announcement(&announcement, Refusal::rejected(format!("no source serves a model named {:?}", announcement.name)));
        };
        if self.runs_update(model, &announcement.id) {
            let version = self.models[model].running.version.clone();
            let status = self.status_for(model, UpdateState::Committed, Some(announcement.id.clone()), version, None);
            return self.send_status(&status);
        }
        if let Some(last) = &self.last
            && last.final_for_package
            && last.status.update_id.as_deref() == Some(&announcement.id)
        {
            let status = UpdateStatus { at_ms: unix_time_ms(), ..last.status.clone() };
            return self.send_status(&status);
        }
        if let Err(refusal) = self.check_announcement(model, base, &announcement) {
            return self.refuse_announcement(&announcement, refusal);
        }
        if let Phase::Downloading(current) = &self.phase {
            log::warn!(replaced = current.announcement.id.as_str(), by = announcement.id.as_str(); "A newer announcement replaces the download in progress.");
        }
        if let Err(refusal) = self.start_download(model, announcement.clone()) {
            self.refuse_announcement(&announcement, refusal);
        }
    }

    /// Whether update `id` is what serves `model` now (the store remembers the last update even after a rollback).
    fn runs_update(&self, model: usize, id: &str) -> bool {
        let served = &self.models[model];
        served.store.update_id() == Some(id) && served.store.version() == Some(served.running.version.as_str())
    }

    fn check_announcement(&self, model: usize, base: &UpdateTopics, announcement: &Announcement) -> Result<(), Refusal> {
        if announcement.id != update_id(&announcement.sha256) || announcement.sha256.len() != 64 {
            return Err(Refusal::rejected("the announcement's id is not the start of its sha256"));
        }
        if announcement.chunks_topic != base.chunks(&announcement.id) {
            return Err(Refusal::rejected(format!("chunks must come on {}", base.chunks(&announcement.id))));
        }
        if announcement.chunk_size == 0 || announcement.chunk_size as usize > self.max_chunk {
            return Err(Refusal::rejected(format!(
                "chunk size {} is not between 1 and {} (mqtt.max_packet_bytes less 1 KiB)",
                announcement.chunk_size, self.max_chunk
            )));
        }
        if announcement.chunk_count() > MAX_CHUNKS {
            return Err(Refusal::rejected(format!(
                "{} chunks are more than {MAX_CHUNKS}: push with a larger chunk size",
                announcement.chunk_count()
            )));
        }
        if announcement.size == 0 || announcement.size > self.config.max_package_bytes {
            return Err(Refusal::rejected(format!(
                "package of {} bytes is larger than update.max_package_bytes ({})",
                announcement.size, self.config.max_package_bytes
            )));
        }
        check_version(&self.models[model].running.version, &announcement.version, announcement.rollback)
    }

    fn start_download(&mut self, model: usize, announcement: Announcement) -> Result<(), Refusal> {
        let resuming = Staging::staged(&self.state_dir).is_some_and(|staged| staged.id == announcement.id);
        // Staging and the unpacked slot each hold the package once; a resumed download has its file already.
        let needed = announcement.size * if resuming { 1 } else { 2 } + self.config.reserve_bytes;
        let available = available_space(&self.state_dir).map_err(|e| Refusal::failed(format!("checking free space: {e}")))?;
        if needed > available {
            return Err(Refusal::rejected(format!(
                "not enough free space: the package needs {needed} bytes (twice its {} bytes plus update.reserve_bytes), {available} are free",
                announcement.size
            )));
        }
        let staging =
            Staging::open(&self.state_dir, &announcement).map_err(|e| Refusal::failed(format!("staging the download: {e}")))?;
        log::info!(update = announcement.id.as_str(), version = announcement.version.as_str(), resumed_bytes = staging.resumed_bytes(); "Downloading update.");
        let now = Instant::now();
        self.phase = Phase::Downloading(Box::new(Download {
            model,
            announcement,
            staging,
            in_flight: BTreeSet::new(),
            last_chunk_at: now,
            last_persist_at: now,
            unpersisted: 0,
            last_progress_at: now,
        }));
        self.publish_progress();
        self.request_more();
        self.complete_if_done();
        Ok(())
    }

    fn on_chunk(&mut self, id: &str, index: u32, payload: &[u8]) {
        let Phase::Downloading(download) = &mut self.phase else { return };
        if download.announcement.id != id {
            return;
        }
        download.in_flight.remove(&index);
        match download.staging.write_chunk(index, payload) {
            Ok(true) => {
                download.last_chunk_at = Instant::now();
                download.unpersisted += 1;
            }
            Ok(false) => {}
            Err(e) => {
                log::warn!(update = id, chunk = index; "Chunk refused: {e}.");
                return;
            }
        }
        if download.in_flight.len() <= self.config.request_window as usize / 2 {
            self.request_more();
        }
        self.complete_if_done();
    }

    /// Asks for missing chunks not yet asked for, up to the request window.
    fn request_more(&mut self) {
        let Phase::Downloading(download) = &mut self.phase else { return };
        let window = self.config.request_window as usize;
        let wanted = window.saturating_sub(download.in_flight.len());
        if wanted == 0 {
            return;
        }
        let mut fresh = Vec::new();
        for [start, end] in download.staging.missing(window + download.in_flight.len()) {
            for index in start..end {
                if fresh.len() < wanted && !download.in_flight.contains(&index) {
                    fresh.push(index);
                }
            }
        }
        if fresh.is_empty() {
            return;
        }
        download.in_flight.extend(&fresh);
        let request = ChunkRequest { id: download.announcement.id.clone(), device: self.device.clone(), ranges: ranges(&fresh) };
        if let Ok(payload) = serde_json::to_vec(&request)
            && let Err(e) = self.link.try_publish(self.own.request(), QoS::AtLeastOnce, false, payload)
        {
            log::debug!("Chunk request not queued: {e}.");
        }
    }

    fn complete_if_done(&mut self) {
        let Phase::Downloading(download) = &mut self.phase else { return };
        if !download.staging.is_complete() {
            return;
        }
        if let Err(e) = download.staging.persist() {
            log::warn!("Persisting the staged package failed: {e}.");
        }
        let Phase::Downloading(download) = std::mem::replace(&mut self.phase, Phase::Idle) else { return };
        self.install(*download);
    }

    fn tick(&mut self) {
        match &mut self.phase {
            Phase::Idle => {}
            Phase::Downloading(download) => {
                let now = Instant::now();
                if download.unpersisted > 0
                    && (download.unpersisted >= PERSIST_CHUNKS.min(self.config.request_window)
                        || now - download.last_persist_at >= PERSIST_INTERVAL)
                {
                    if let Err(e) = download.staging.persist() {
                        log::warn!("Persisting download progress failed: {e}.");
                    }
                    download.unpersisted = 0;
                    download.last_persist_at = now;
                }
                if now - download.last_chunk_at >= self.config.request_timeout() {
                    // Requests or chunks were lost (broker restart, pusher restart): ask again for what is missing.
                    download.in_flight.clear();
                    download.last_chunk_at = now;
                    self.request_more();
                }
                if now - self.progress_at() >= PROGRESS_INTERVAL {
                    self.publish_progress();
                }
            }
            Phase::Probation(_) => self.judge_probation(),
        }
    }

    fn progress_at(&self) -> Instant {
        match &self.phase {
            Phase::Downloading(download) => download.last_progress_at,
            _ => Instant::now(),
        }
    }

    fn publish_progress(&mut self) {
        let Phase::Downloading(download) = &mut self.phase else { return };
        download.last_progress_at = Instant::now();
        let announcement = &download.announcement;
        let mut status = UpdateStatus {
            device: self.device.clone(),
            state: UpdateState::Downloading,
            update_id: Some(announcement.id.clone()),
            model: announcement.name.clone(),
            version: announcement.version.clone(),
            running_version: self.models[download.model].running.version.clone(),
            bytes: download.staging.bytes_received(),
            size: announcement.size,
            percent: 0.0,
            resumed_bytes: download.staging.resumed_bytes(),
            reason: None,
            at_ms: unix_time_ms(),
        };
        status.percent = percent(status.bytes, status.size);
        self.send_status(&status);
    }

    /// Verifies the complete package, installs it in the candidate slot, self-tests it and, if it passes,
    /// swaps it in and starts probation. Any refusal leaves the running model serving.
    fn install(&mut self, download: Download) {
        let Download { model, announcement, staging, .. } = download;
        let id = announcement.id.clone();
        let mut status = self.status_for(model, UpdateState::Verifying, Some(id.clone()), announcement.version.clone(), None);
        status.bytes = announcement.size;
        status.size = announcement.size;
        status.percent = 100.0;
        self.send_status(&status);
        let result = self.verify_and_test(model, &announcement, &staging, &mut status);
        if let Err(e) = Staging::discard(&self.state_dir) {
            log::warn!("Removing the staged package failed: {e}.");
        }
        match result {
            Ok(pipelines) => self.activate(model, &announcement, pipelines),
            Err(refusal) => {
                // A refusal on the package's merits is final for it; a failure of this device (disk, I/O) is not.
                let final_for_package = refusal.state == UpdateState::Rejected;
                status.state = refusal.state;
                status.reason = Some(refusal.reason);
                status.at_ms = unix_time_ms();
                self.publish(status, final_for_package);
            }
        }
    }

    fn verify_and_test(
        &mut self,
        model: usize,
        announcement: &Announcement,
        staging: &Staging,
        status: &mut UpdateStatus,
    ) -> Result<Vec<Pipeline>, Refusal> {
        staging.finish_check().map_err(|e| Refusal::rejected(e.to_string()))?;
        // Signature and version first: an unsigned or older package must not cost the candidate slot (which may
        // hold the rollback target).
        let package = runtime::package::inspect(staging.package_path()).map_err(|e| Refusal::rejected(e.to_string()))?;
        runtime::signature::verify(&package.manifest_bytes, package.signature.as_deref(), &self.trusted)
            .map_err(|e| Refusal::rejected(e.to_string()))?;
        check_version(&self.models[model].running.version, &package.manifest.version.to_string(), announcement.rollback)?;
        let store = &mut self.models[model].store;
        let temp = store.begin_candidate().map_err(|e| Refusal::failed(format!("preparing the candidate slot: {e}")))?;
        runtime::package::unpack(staging.package_path(), &temp, &self.trusted).map_err(|e| Refusal::rejected(e.to_string()))?;
        let slot = store.install_candidate().map_err(|e| Refusal::failed(format!("installing the candidate slot: {e}")))?;
        let bundle = Bundle::load(&slot).map_err(|e| Refusal::rejected(e.to_string()))?;
        let manifest = bundle.manifest();
        if manifest.name != announcement.name || manifest.version.to_string() != announcement.version {
            return Err(Refusal::rejected(format!(
                "the announcement says {} {}, the package holds {} {}",
                announcement.name, announcement.version, manifest.name, manifest.version
            )));
        }
        check_version(&self.models[model].running.version, &announcement.version, announcement.rollback)?;
        let takes_images = matches!(manifest.input, runtime::manifest::InputSpec::Image(_));
        let mut pipelines = Vec::new();
        for worker in &self.models[model].workers {
            if worker.takes_images != takes_images {
                return Err(Refusal::rejected(format!("source {} cannot feed this model's kind of input", worker.source)));
            }
            let pipeline = Pipeline::new(&self.ort, &bundle, &self.options).map_err(|e| Refusal::rejected(e.to_string()))?;
            let provider = pipeline.provider().active.name();
            if self.config.probation.require_same_provider && provider != worker.provider {
                return Err(Refusal::rejected(format!(
                    "the candidate would run on {provider}, the running model runs on {} (update.probation.require_same_provider)",
                    worker.provider
                )));
            }
            pipelines.push(pipeline);
        }
        let self_test = bundle.self_test().ok_or_else(|| {
            Refusal::rejected("the package has no golden self-test vectors (pack it with `model pack --self-test`)")
        })?;
        status.state = UpdateState::SelfTesting;
        status.at_ms = unix_time_ms();
        self.send_status(status);
        for pipeline in &mut pipelines {
            self_test.run(&bundle, pipeline).map_err(|e| Refusal::rejected(e.to_string()))?;
        }
        Ok(pipelines)
    }

    fn activate(&mut self, model: usize, announcement: &Announcement, pipelines: Vec<Pipeline>) {
        if let Err(e) = self.models[model].store.activate(&announcement.id, &announcement.version) {
            let mut status =
                self.status_for(model, UpdateState::Failed, Some(announcement.id.clone()), announcement.version.clone(), None);
            status.reason = Some(format!("recording the candidate as active: {e}"));
            return self.publish(status, false);
        }
        let previous_identity = self.models[model].running.clone();
        let candidate_scores: Vec<Arc<ModelScore>> = pipelines.iter().map(|_| ModelScore::new()).collect();
        let identity = pipelines[0].identity().clone();
        let serving = pipelines.into_iter().zip(&candidate_scores).map(|(pipeline, score)| Serving { pipeline, score: score.clone() });
        let (replaced, baselines) = self.swap_all(model, serving.collect());
        self.models[model].running = identity;
        log::info!(model = announcement.name.as_str(), version = announcement.version.as_str(); "Update active, on probation.");
        let status =
            self.status_for(model, UpdateState::Probation, Some(announcement.id.clone()), announcement.version.clone(), None);
        self.publish(status, false);
        self.phase = Phase::Probation(Box::new(Trial {
            model,
            update_id: announcement.id.clone(),
            version: announcement.version.clone(),
            started: Instant::now(),
            baselines,
            candidate_scores,
            replaced,
            previous_identity,
        }));
    }

    /// Hands each worker of `model` its new pipeline and waits for the old one. Returns the old pipelines and
    /// their scores at the moment they were replaced.
    fn swap_all(&mut self, model: usize, serving: Vec<Serving>) -> (Vec<Serving>, Vec<ScoreSnapshot>) {
        let mut replaced = Vec::new();
        let mut baselines = Vec::new();
        for (worker, new) in self.models[model].workers.iter_mut().zip(serving) {
            let (reply, old) = sync_channel(1);
            let score = new.score.clone();
            let provider = new.pipeline.provider().active.name().to_owned();
            if worker.control.send(Swap { serving: new, replaced: reply }).is_err() {
                continue; // The worker has ended (shutdown): nothing serves there any more.
            }
            match old.recv_timeout(SWAP_TIMEOUT) {
                Ok(old) => {
                    baselines.push(old.score.snapshot());
                    replaced.push(old);
                }
                Err(_) => log::error!(source = worker.source.as_str(); "Worker did not take the new model in time."),
            }
            worker.score = score;
            worker.provider = provider;
        }
        (replaced, baselines)
    }

    fn judge_probation(&mut self) {
        let Phase::Probation(trial) = &self.phase else { return };
        let limits = &self.config.probation;
        let mut failure = None;
        for (baseline, score) in trial.baselines.iter().zip(&trial.candidate_scores) {
            if let Verdict::Unhealthy(reason) = judge(limits, baseline, &score.snapshot()) {
                failure = Some(reason);
                break;
            }
        }
        if let Some(reason) = failure {
            let Phase::Probation(trial) = std::mem::replace(&mut self.phase, Phase::Idle) else { return };
            return self.roll_back_trial(*trial, format!("probation failed: {reason}"), true);
        }
        if trial.started.elapsed() < limits.window() {
            return;
        }
        let Phase::Probation(trial) = std::mem::replace(&mut self.phase, Phase::Idle) else { return };
        let judged: u64 = trial.candidate_scores.iter().map(|score| score.snapshot().frames).sum();
        let reason = (judged < limits.min_frames)
            .then(|| format!("committed after the probation window with only {judged} inputs to judge"));
        let mut status = self.status_for(trial.model, UpdateState::Committed, Some(trial.update_id.clone()), trial.version.clone(), reason);
        if let Err(e) = self.models[trial.model].store.commit() {
            status.state = UpdateState::Failed;
            status.reason = Some(format!("recording the commit: {e}; the next start rolls back"));
        }
        log::info!(version = trial.version.as_str(); "Update committed.");
        self.publish(status, false);
    }

    /// Gives the workers back the pipelines the trial replaced.
    fn roll_back_trial(&mut self, trial: Trial, reason: String, final_for_package: bool) {
        let Trial { model, update_id, version, replaced, previous_identity, .. } = trial;
        let scores: Vec<Arc<ModelScore>> = replaced.iter().map(|serving| serving.score.clone()).collect();
        self.swap_all(model, replaced);
        for (worker, score) in self.models[model].workers.iter_mut().zip(scores) {
            worker.score = score;
        }
        self.models[model].running = previous_identity;
        self.finish_rollback(model, Some(update_id), version, reason, final_for_package);
    }

    fn finish_rollback(&mut self, model: usize, update_id: Option<String>, version: String, reason: String, final_for_package: bool) {
        let mut status = self.status_for(model, UpdateState::RolledBack, update_id, version, Some(reason));
        if let Err(e) = self.models[model].store.roll_back() {
            status.state = UpdateState::Failed;
            status.reason = Some(format!("{}; recording the rollback failed: {e}", status.reason.unwrap_or_default()));
        }
        log::warn!(model = self.models[model].name.as_str(); "Rolled back: {}.", status.reason.as_deref().unwrap_or_default());
        self.publish(status, final_for_package);
    }

    fn on_command(&mut self, payload: &[u8]) {
        let command: UpdateCommand = match serde_json::from_slice(payload) {
            Ok(command) => command,
            Err(e) => return self.report_error("command", "malformed", &format!("invalid command: {e}")),
        };
        let UpdateCommand::Rollback { model: name } = command;
        let model = match &name {
            Some(name) => self.models.iter().position(|m| &m.name == name),
            None if self.models.len() == 1 => Some(0),
            None => None,
        };
        let Some(model) = model else {
            let names: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
            let asked = name.as_deref().unwrap_or("(no model named, and this device serves several)");
            return self.report_error("command", "unknown_model", &format!("rollback of {asked}: this device serves {names:?}"));
        };
        if let Phase::Probation(trial) = &self.phase
            && trial.model == model
        {
            let Phase::Probation(trial) = std::mem::replace(&mut self.phase, Phase::Idle) else { return };
            return self.roll_back_trial(*trial, "rollback requested".into(), true);
        }
        if let Err(reason) = self.roll_back_committed(model) {
            let version = self.models[model].running.version.clone();
            let status = self.status_for(model, UpdateState::Rejected, None, version, Some(format!("rollback refused: {reason}")));
            self.send_status(&status);
        }
    }

    /// Returns a committed model to the previous slot: its pipelines are built and swapped in like an update's.
    fn roll_back_committed(&mut self, model: usize) -> Result<(), String> {
        let served = &self.models[model];
        let previous = served.store.previous_dir().ok_or("there is no previous model")?;
        let bundle = Bundle::load(&previous).map_err(|e| e.to_string())?;
        let mut serving = Vec::new();
        for _ in &served.workers {
            serving.push(Serving::new(Pipeline::new(&self.ort, &bundle, &self.options).map_err(|e| e.to_string())?));
        }
        let from = served.running.version.clone();
        self.swap_all(model, serving);
        self.models[model].running = bundle.identity();
        let update_id = self.models[model].store.update_id().map(str::to_owned);
        self.finish_rollback(model, update_id, from, "rollback requested".into(), true);
        Ok(())
    }

    fn refuse_announcement(&mut self, announcement: &Announcement, refusal: Refusal) {
        log::warn!(update = announcement.id.as_str(); "Update refused: {}.", refusal.reason);
        let model = self.models.iter().position(|m| m.name == announcement.name);
        let running_version = model.map(|m| self.models[m].running.version.clone()).unwrap_or_default();
        let status = UpdateStatus {
            device: self.device.clone(),
            state: refusal.state,
            update_id: Some(announcement.id.clone()),
            model: announcement.name.clone(),
            version: announcement.version.clone(),
            running_version,
            bytes: 0,
            size: announcement.size,
            percent: 0.0,
            resumed_bytes: 0,
            reason: Some(refusal.reason),
            at_ms: unix_time_ms(),
        };
        // Refusals of the announcement alone (too big, no space) may pass another time: not final.
        self.publish(status, false);
    }

    fn status_for(
        &self,
        model: usize,
        state: UpdateState,
        update_id: Option<String>,
        version: String,
        reason: Option<String>,
    ) -> UpdateStatus {
        let served = &self.models[model];
        UpdateStatus {
            device: self.device.clone(),
            state,
            update_id,
            model: served.name.clone(),
            version,
            running_version: served.running.version.clone(),
            bytes: 0,
            size: 0,
            percent: 0.0,
            resumed_bytes: 0,
            reason,
            at_ms: unix_time_ms(),
        }
    }

    /// Publishes a status and, when it is an outcome, keeps it on disk.
    /// The file is written first, so that what subscribers see is never ahead of what a restart repeats.
    fn publish(&mut self, status: UpdateStatus, final_for_package: bool) {
        if status.state.is_final() || status.state == UpdateState::Probation {
            let last = LastStatus { status, final_for_package };
            match serde_json::to_vec(&last) {
                Ok(bytes) => {
                    if let Err(e) = write_atomic(&self.state_dir.join(LAST_STATUS_FILE), &bytes) {
                        log::warn!("Saving the update status failed: {e}.");
                    }
                }
                Err(e) => log::warn!("Encoding the update status failed: {e}."),
            }
            self.last = Some(last.clone());
            self.send_status(&last.status);
        } else {
            self.send_status(&status);
        }
    }

    fn send_status(&self, status: &UpdateStatus) {
        match serde_json::to_vec(status) {
            Ok(payload) => {
                if let Err(e) = self.link.try_publish(self.own.status(), self.qos.status, true, payload) {
                    log::warn!("Update status not published: {e}.");
                }
            }
            Err(e) => log::warn!("Encoding the update status failed: {e}."),
        }
    }

    /// A malformed announcement or command: an error event on `<prefix>/errors/update`.
    fn report_error(&mut self, stage: &str, kind: &str, message: &str) {
        log::warn!(stage, kind; "Update message rejected: {message}.");
        self.error_seq += 1;
        let event = ErrorEvent {
            device: self.device.clone(),
            source: "update".into(),
            seq: self.error_seq,
            at_ms: unix_time_ms(),
            stage: stage.into(),
            kind: kind.into(),
            message: message.into(),
            input: None,
        };
        if let Ok(payload) = wire::encode(self.format, &event) {
            let _ = self.link.try_publish(self.errors_topic.clone(), self.qos.errors, false, payload);
        }
    }
}

/// A version must be strictly greater than the running one, unless the push is an explicit rollback (which
/// must then be lower).
fn check_version(running: &str, offered: &str, rollback: bool) -> Result<(), Refusal> {
    let offered_version = semver::Version::parse(offered).map_err(|e| Refusal::rejected(format!("version {offered:?}: {e}")))?;
    let Ok(running_version) = semver::Version::parse(running) else { return Ok(()) };
    match (rollback, offered_version.cmp(&running_version)) {
        (false, std::cmp::Ordering::Greater) | (true, std::cmp::Ordering::Less) => Ok(()),
        (false, _) => Err(Refusal::rejected(format!(
            "version {offered} is not greater than the running {running} (push with --rollback to go back)"
        ))),
        (true, _) => Err(Refusal::rejected(format!("a rollback must bring a version lower than the running {running}"))),
    }
}

/// Half-open ranges covering sorted `indices`.
fn ranges(indices: &[u32]) -> Vec<[u32; 2]> {
    let mut ranges: Vec<[u32; 2]> = Vec::new();
    for &index in indices {
        match ranges.last_mut() {
            Some(last) if last[1] == index => last[1] += 1,
            _ => ranges.push([index, index + 1]),
        }
    }
    ranges
}

fn percent(bytes: u64, size: u64) -> f32 {
    if size == 0 { 0.0 } else { (bytes as f64 * 100.0 / size as f64) as f32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_neighbours() {
        assert_eq!(ranges(&[0, 1, 2, 5, 6, 9]), vec![[0, 3], [5, 7], [9, 10]]);
        assert!(ranges(&[]).is_empty());
    }

    #[test]
    fn versions_must_rise_unless_rolling_back() {
        assert!(check_version("1.0.0", "1.1.0", false).is_ok());
        assert!(check_version("1.1.0", "1.1.0", false).is_err());
        assert!(check_version("1.1.0", "1.0.0", false).is_err());
        assert!(check_version("1.1.0", "1.0.0", true).is_ok());
        assert!(check_version("1.0.0", "1.1.0", true).is_err());
        assert!(check_version("1.0.0", "one", false).is_err());
    }
}
