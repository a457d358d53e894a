//! The updater's decisions, without IO: idle, opening a download, downloading (one package at a time),
//! installing the complete package, or a candidate on probation. [`Machine::on`] takes an [`Event`] and the
//! time, and returns the [`Action`]s for the shell to carry out; [`Machine::next_deadline`] says when it next
//! needs a [`Event::Tick`].
//!
//! Every outcome is published, retained, on `<prefix>/update/status`, and the last one is kept in
//! `<state_dir>/last-status.json`: a device that restarts says the same thing, and does not retry an update it
//! refused or rolled back (a package is identified by its sha256, so a fixed package is a new update).
//! Statuses leave here with `at_ms` 0: the shell stamps them with the wall clock when it publishes.

use super::effects::{Action, Candidate, Disk, Event, LastStatus, Loaded, Refusal};
use super::probation::{ScoreSnapshot, Verdict, judge};
use super::progress::Progress;
use super::slots::Recovery;
use crate::config::UpdateConfig;
use protocol::update::{Announcement, ChunkRequest, UpdateCommand, UpdateState, UpdateStatus, UpdateTopics, update_id};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Progress is published at most this often while downloading.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// Staged chunks are made durable at least this often, and every [`PERSIST_CHUNKS`] chunks or request window,
/// whichever is smaller: a crash then loses at most two windows (one unsaved, one in flight).
const PERSIST_INTERVAL: Duration = Duration::from_millis(500);
const PERSIST_CHUNKS: u32 = 32;
/// How often a candidate on probation is compared with the model it replaced.
const JUDGE_INTERVAL: Duration = Duration::from_millis(100);
/// Bounds the progress bitmap (and the requests) of one download: 2^20 chunks is 128 KiB of bitmap.
const MAX_CHUNKS: u32 = 1 << 20;

/// A worker serving one source of a model, as the machine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerView {
    pub source: String,
    /// The execution provider its pipeline runs on.
    pub provider: String,
    /// Whether the source feeds images (a candidate must take the same kind of input).
    pub takes_images: bool,
}

/// A model (by manifest name) that one or more sources serve, as the machine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelView {
    pub name: String,
    pub running_version: String,
    /// The last update its slots activated (on probation, committed or rolled back) and that update's version.
    pub slot_update: Option<(String, String)>,
    /// What opening its slots repaired.
    pub recovery: Recovery,
    pub workers: Vec<WorkerView>,
}

/// Fixed for the life of the machine.
#[derive(Debug, Clone)]
pub struct Settings {
    pub device: String,
    pub config: UpdateConfig,
    /// The largest chunk an MQTT packet carries.
    pub max_chunk: usize,
}

/// The updater's state; see the [module docs](self).
pub struct Machine {
    settings: Settings,
    models: Vec<ModelView>,
    phase: Phase,
    last: Option<LastStatus>,
    /// A commit or rollback whose recording in the slots is awaited, with the status it ends in.
    recording: Option<Recording>,
}

enum Phase {
    Idle,
    Opening(Box<Opening>),
    Downloading(Box<Download>),
    Installing(Box<Install>),
    Probation(Box<Trial>),
}

struct Opening {
    model: usize,
    announcement: Announcement,
    /// Resuming what a previous run left: a refusal is logged, not published.
    at_start: bool,
}

struct Download {
    model: usize,
    announcement: Announcement,
    progress: Progress,
    in_flight: BTreeSet<u32>,
    last_chunk_at: Instant,
    last_persist_at: Instant,
    unpersisted: u32,
    last_progress_at: Instant,
}

struct Install {
    model: usize,
    announcement: Announcement,
    /// `verifying`, then `self_testing`; a refusal reports in it.
    status: UpdateStatus,
    candidate: Option<Candidate>,
    /// The execution provider of each candidate pipeline built so far, one per worker.
    providers: Vec<String>,
}

struct Trial {
    model: usize,
    update_id: String,
    version: String,
    started: Instant,
    next_judgement: Instant,
    baselines: Vec<ScoreSnapshot>,
    previous_version: String,
    previous_providers: Vec<String>,
}

struct Recording {
    status: UpdateStatus,
    final_for_package: bool,
    kind: RecordingKind,
}

enum RecordingKind {
    Commit,
    Rollback,
}

impl Machine {
    /// `last` is the status a previous run kept, if any.
    pub fn new(settings: Settings, models: Vec<ModelView>, last: Option<LastStatus>) -> Machine {
        Machine { settings, models, phase: Phase::Idle, last, recording: None }
    }

    /// When the machine needs a [`Event::Tick`]: `None` while nothing is timed.
    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Downloading(download) => {
                let progress = download.last_progress_at + PROGRESS_INTERVAL;
                let request = download.last_chunk_at + self.settings.config.request_timeout();
                let persist = (download.unpersisted > 0).then(|| download.last_persist_at + PERSIST_INTERVAL);
                Some(persist.map_or(progress.min(request), |persist| progress.min(request).min(persist)))
            }
            Phase::Probation(trial) => Some(trial.next_judgement),
            Phase::Idle | Phase::Opening(_) | Phase::Installing(_) => None,
        }
    }

    /// Takes `event`, which happens at `now`; returns what the shell must do, in order.
    pub fn on(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        let out = &mut actions;
        match event {
            Event::Start { disk } => self.on_start(disk, out),
            Event::Announce { base, payload, disk } => self.on_announce(&base, &payload, disk, out),
            Event::Chunk { id, index, payload } => self.on_chunk(&id, index, payload, out),
            Event::Command(payload) => self.on_command(&payload, out),
            Event::Tick => self.on_tick(now, out),
            Event::Stop => {
                if let Phase::Downloading(download) = &mut self.phase {
                    persist(download, now, out);
                }
            }
            Event::StagingOpened(result) => self.on_staging_opened(result, now, out),
            Event::ChunkWritten { index, result } => self.on_chunk_written(index, result, now, out),
            Event::PackageChecked(result) => self.on_package_checked(result, out),
            Event::Unpacked(result) => self.on_unpacked(result, out),
            Event::PipelineBuilt(result) => self.on_pipeline_built(result, out),
            Event::SelfTested(result) => self.on_self_tested(result, out),
            Event::Activated(result) => self.on_activated(result, out),
            Event::SwappedIn { baselines } => self.on_swapped_in(baselines, now, out),
            Event::Scores(scores) => self.on_scores(&scores, now, out),
            Event::PreviousLoaded { model, result } => self.on_previous_loaded(model, result, out),
            Event::SlotsWritten(result) => self.on_slots_written(result, out),
        }
        actions
    }

    /// Publishes the state the device starts in (a rollback done at start, else the last status, else idle),
    /// then resumes a download a previous run left: the pusher, if it is still there, answers, and the
    /// transfer goes on where it stopped.
    fn on_start(&mut self, disk: Disk, out: &mut Vec<Action>) {
        self.report_start(out);
        let Some(announcement) = disk.staged.clone() else { return };
        let Some(model) = self.model_named(&announcement.name) else { return };
        if let Err(refusal) = self.start_download(model, announcement, &disk, true, out) {
            log::warn!("The staged download cannot resume: {}.", refusal.reason);
        }
    }

    fn report_start(&mut self, out: &mut Vec<Action>) {
        let mut rolled_back = Vec::new();
        for (index, model) in self.models.iter().enumerate() {
            match &model.recovery {
                Recovery::RolledBack { update_id, version } => {
                    log::warn!(model = model.name.as_str(), version = version.as_str(); "The agent stopped during probation; rolled back.");
                    rolled_back.push((index, update_id.clone(), version.clone()));
                }
                Recovery::None => {}
                Recovery::Reset(reason) => log::warn!(model = model.name.as_str(); "Update state was reset: {reason}."),
            }
        }
        if !rolled_back.is_empty() {
            for (model, update_id, version) in rolled_back {
                let reason = "the agent stopped during probation; the previous model serves";
                let status =
                    self.status_for(model, UpdateState::RolledBack, Some(update_id), version, Some(reason.into()));
                // Not final for the package: the model was not judged, so a new push may try it again.
                self.publish(status, false, out);
            }
            return;
        }
        match self.last.clone() {
            // The outcome reached the slots but not last-status.json: the slots are the truth.
            Some(last) if last.status.state == UpdateState::Probation => {
                let Some(model) = self.model_named(&last.status.model) else { return };
                let id = last.status.update_id.clone();
                let (state, reason) = if id.as_deref().is_some_and(|id| self.runs_update(model, id)) {
                    (UpdateState::Committed, None)
                } else {
                    let reason = "the agent stopped before the outcome was recorded; the previous model serves";
                    (UpdateState::RolledBack, Some(reason.into()))
                };
                let status = self.status_for(model, state, id, last.status.version.clone(), reason);
                self.publish(status, false, out);
            }
            Some(last) => out.push(Action::PublishStatus(last.status)),
            None if !self.models.is_empty() => {
                let version = self.models[0].running_version.clone();
                out.push(Action::PublishStatus(self.status_for(0, UpdateState::Idle, None, version, None)));
            }
            None => {}
        }
    }

    fn on_announce(&mut self, base: &UpdateTopics, payload: &[u8], disk: Disk, out: &mut Vec<Action>) {
        let announcement: Announcement = match serde_json::from_slice(payload) {
            Ok(announcement) => announcement,
            Err(e) => return report_error(out, "announce", "malformed", format!("invalid announcement: {e}")),
        };
        match &mut self.phase {
            Phase::Downloading(download) if download.announcement.id == announcement.id => {
                // Repeated while we download: the pusher may have lost our requests; ask again.
                download.in_flight.clear();
                return self.request_more(out);
            }
            Phase::Probation(trial) => {
                if trial.update_id != announcement.id {
                    log::info!(update = announcement.id.as_str(); "Announcement ignored: another update is on probation.");
                }
                return;
            }
            Phase::Opening(_) | Phase::Installing(_) => return,
            Phase::Idle | Phase::Downloading(_) => {}
        }
        let Some(model) = self.model_named(&announcement.name) else {
            let refusal = Refusal::rejected(format!("no source serves a model named {:?}", announcement.name));
            return self.refuse_announcement(&announcement, refusal, out);
        };
        if self.runs_update(model, &announcement.id) {
            let version = self.models[model].running_version.clone();
            let status = self.status_for(model, UpdateState::Committed, Some(announcement.id.clone()), version, None);
            return out.push(Action::PublishStatus(status));
        }
        if let Some(last) = &self.last
            && last.final_for_package
            && last.status.update_id.as_deref() == Some(&announcement.id)
        {
            return out.push(Action::PublishStatus(last.status.clone()));
        }
        if let Err(refusal) = self.check_announcement(model, base, &announcement) {
            return self.refuse_announcement(&announcement, refusal, out);
        }
        if let Phase::Downloading(current) = &self.phase {
            log::warn!(replaced = current.announcement.id.as_str(), by = announcement.id.as_str(); "A newer announcement replaces the download in progress.");
        }
        if let Err(refusal) = self.start_download(model, announcement.clone(), &disk, false, out) {
            self.refuse_announcement(&announcement, refusal, out);
        }
    }

    /// Whether update `id` is what serves `model` now (the slots remember the last update even after a rollback).
    fn runs_update(&self, model: usize, id: &str) -> bool {
        let served = &self.models[model];
        served.slot_update.as_ref().is_some_and(|(update, version)| update == id && *version == served.running_version)
    }

    fn check_announcement(
        &self,
        model: usize,
        base: &UpdateTopics,
        announcement: &Announcement,
    ) -> Result<(), Refusal> {
        let config = &self.settings.config;
        if announcement.id != update_id(&announcement.sha256) || announcement.sha256.len() != 64 {
            return Err(Refusal::rejected("the announcement's id is not the start of its sha256"));
        }
        if announcement.chunks_topic != base.chunks(&announcement.id) {
            return Err(Refusal::rejected(format!("chunks must come on {}", base.chunks(&announcement.id))));
        }
        if announcement.chunk_size == 0 || announcement.chunk_size as usize > self.settings.max_chunk {
            return Err(Refusal::rejected(format!(
                "chunk size {} is not between 1 and {} (mqtt.max_packet_bytes less 1 KiB)",
                announcement.chunk_size, self.settings.max_chunk
            )));
        }
        if announcement.chunk_count() > MAX_CHUNKS {
            return Err(Refusal::rejected(format!(
                "{} chunks are more than {MAX_CHUNKS}: push with a larger chunk size",
                announcement.chunk_count()
            )));
        }
        if announcement.size == 0 || announcement.size > config.max_package_bytes {
            return Err(Refusal::rejected(format!(
                "package of {} bytes is larger than update.max_package_bytes ({})",
                announcement.size, config.max_package_bytes
            )));
        }
        check_version(&self.models[model].running_version, &announcement.version, announcement.rollback)
    }

    /// Checks the free space and asks for the staging to be opened.
    fn start_download(
        &mut self,
        model: usize,
        announcement: Announcement,
        disk: &Disk,
        at_start: bool,
        out: &mut Vec<Action>,
    ) -> Result<(), Refusal> {
        let resuming = disk.staged.as_ref().is_some_and(|staged| staged.id == announcement.id);
        // Staging and the unpacked slot each hold the package once; a resumed download has its file already.
        let needed = announcement.size * if resuming { 1 } else { 2 } + self.settings.config.reserve_bytes;
        let available = disk.free_space.clone().map_err(|e| Refusal::failed(format!("checking free space: {e}")))?;
        if needed > available {
            return Err(Refusal::rejected(format!(
                "not enough free space: the package needs {needed} bytes (twice its {} bytes plus update.reserve_bytes), {available} are free",
                announcement.size
            )));
        }
        out.push(Action::OpenStaging(announcement.clone()));
        self.phase = Phase::Opening(Box::new(Opening { model, announcement, at_start }));
        Ok(())
    }

    fn on_staging_opened(&mut self, result: Result<Progress, String>, now: Instant, out: &mut Vec<Action>) {
        let Phase::Opening(opening) = std::mem::replace(&mut self.phase, Phase::Idle) else { return };
        let Opening { model, announcement, at_start } = *opening;
        let progress = match result {
            Ok(progress) => progress,
            Err(e) => {
                let refusal = Refusal::failed(format!("staging the download: {e}"));
                if at_start {
                    return log::warn!("The staged download cannot resume: {}.", refusal.reason);
                }
                return self.refuse_announcement(&announcement, refusal, out);
            }
        };
        log::info!(update = announcement.id.as_str(), version = announcement.version.as_str(), resumed_bytes = progress.resumed_bytes(); "Downloading update.");
        self.phase = Phase::Downloading(Box::new(Download {
            model,
            announcement,
            progress,
            in_flight: BTreeSet::new(),
            last_chunk_at: now,
            last_persist_at: now,
            unpersisted: 0,
            last_progress_at: now,
        }));
        self.publish_progress(now, out);
        self.request_more(out);
        self.complete_if_done(now, out);
    }

    fn on_chunk(&mut self, id: &str, index: u32, payload: Vec<u8>, out: &mut Vec<Action>) {
        let Phase::Downloading(download) = &mut self.phase else { return };
        if download.announcement.id != id {
            return;
        }
        download.in_flight.remove(&index);
        match download.progress.check(index, payload.len()) {
            // The outcome, Event::ChunkWritten, goes on.
            Ok(true) => out.push(Action::WriteChunk { index, offset: download.progress.offset(index), bytes: payload }),
            Ok(false) => self.after_chunk(out),
            Err(e) => log::warn!(update = id, chunk = index; "Chunk refused: {e}."),
        }
    }

    fn on_chunk_written(&mut self, index: u32, result: Result<(), String>, now: Instant, out: &mut Vec<Action>) {
        let Phase::Downloading(download) = &mut self.phase else { return };
        if let Err(e) = result {
            return log::warn!(update = download.announcement.id.as_str(), chunk = index; "Chunk not staged: {e}.");
        }
        download.progress.mark(index);
        download.last_chunk_at = now;
        download.unpersisted += 1;
        if download.unpersisted >= PERSIST_CHUNKS.min(self.settings.config.request_window) {
            persist(download, now, out);
        }
        self.after_chunk(out);
        self.complete_if_done(now, out);
    }

    /// Asks for more once half the requested chunks are in.
    fn after_chunk(&mut self, out: &mut Vec<Action>) {
        let Phase::Downloading(download) = &self.phase else { return };
        if download.in_flight.len() <= self.settings.config.request_window as usize / 2 {
            self.request_more(out);
        }
    }

    /// Asks for missing chunks not yet asked for, up to the request window.
    fn request_more(&mut self, out: &mut Vec<Action>) {
        let Phase::Downloading(download) = &mut self.phase else { return };
        let window = self.settings.config.request_window as usize;
        let wanted = window.saturating_sub(download.in_flight.len());
        if wanted == 0 {
            return;
        }
        let mut fresh = Vec::new();
        for [start, end] in download.progress.missing(window + download.in_flight.len()) {
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
        let id = download.announcement.id.clone();
        out.push(Action::RequestChunks(ChunkRequest {
            id,
            device: self.settings.device.clone(),
            ranges: ranges(&fresh),
        }));
    }

    fn on_tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        match &mut self.phase {
            Phase::Downloading(download) => {
                if download.unpersisted > 0
                    && now.saturating_duration_since(download.last_persist_at) >= PERSIST_INTERVAL
                {
                    persist(download, now, out);
                }
                if now.saturating_duration_since(download.last_chunk_at) >= self.settings.config.request_timeout() {
                    // Requests or chunks were lost (broker restart, pusher restart): ask again for what is missing.
                    download.in_flight.clear();
                    download.last_chunk_at = now;
                    self.request_more(out);
                }
                if let Phase::Downloading(download) = &self.phase
                    && now.saturating_duration_since(download.last_progress_at) >= PROGRESS_INTERVAL
                {
                    self.publish_progress(now, out);
                }
            }
            Phase::Probation(trial) if now >= trial.next_judgement => {
                trial.next_judgement = now + JUDGE_INTERVAL;
                out.push(Action::SampleScores);
            }
            Phase::Idle | Phase::Opening(_) | Phase::Installing(_) | Phase::Probation(_) => {}
        }
    }

    fn publish_progress(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Phase::Downloading(download) = &mut self.phase else { return };
        download.last_progress_at = now;
        let announcement = &download.announcement;
        let bytes = download.progress.bytes_received();
        out.push(Action::PublishStatus(UpdateStatus {
            device: self.settings.device.clone(),
            state: UpdateState::Downloading,
            update_id: Some(announcement.id.clone()),
            model: announcement.name.clone(),
            version: announcement.version.clone(),
            running_version: self.models[download.model].running_version.clone(),
            bytes,
            size: announcement.size,
            percent: percent(bytes, announcement.size),
            resumed_bytes: download.progress.resumed_bytes(),
            reason: None,
            at_ms: 0,
        }));
    }

    /// A complete download goes on to verification: the package is checked, unpacked into the candidate slot,
    /// built for each worker and self-tested while the workers keep serving the old model.
    fn complete_if_done(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Phase::Downloading(download) = &mut self.phase else { return };
        if !download.progress.is_complete() {
            return;
        }
        persist(download, now, out);
        let Phase::Downloading(download) = std::mem::replace(&mut self.phase, Phase::Idle) else { return };
        let Download { model, announcement, .. } = *download;
        let id = Some(announcement.id.clone());
        let mut status = self.status_for(model, UpdateState::Verifying, id, announcement.version.clone(), None);
        status.bytes = announcement.size;
        status.size = announcement.size;
        status.percent = 100.0;
        out.push(Action::PublishStatus(status.clone()));
        out.push(Action::CheckPackage);
        let install = Install { model, announcement, status, candidate: None, providers: Vec::new() };
        self.phase = Phase::Installing(Box::new(install));
    }

    fn on_package_checked(&mut self, result: Result<String, Refusal>, out: &mut Vec<Action>) {
        let Phase::Installing(install) = &self.phase else { return };
        // Signature and version first: an unsigned or older package must not cost the candidate slot (which may
        // hold the rollback target).
        let running = &self.models[install.model].running_version;
        match result.and_then(|version| check_version(running, &version, install.announcement.rollback)) {
            Ok(()) => out.push(Action::Unpack { model: install.model }),
            Err(refusal) => self.refuse_install(refusal, out),
        }
    }

    fn on_unpacked(&mut self, result: Result<Candidate, Refusal>, out: &mut Vec<Action>) {
        let Phase::Installing(install) = &mut self.phase else { return };
        let announcement = &install.announcement;
        let running = &self.models[install.model].running_version;
        let checked = result.and_then(|candidate| {
            if candidate.name != announcement.name || candidate.version != announcement.version {
                return Err(Refusal::rejected(format!(
                    "the announcement says {} {}, the package holds {} {}",
                    announcement.name, announcement.version, candidate.name, candidate.version
                )));
            }
            check_version(running, &announcement.version, announcement.rollback)?;
            Ok(candidate)
        });
        match checked {
            Ok(candidate) => {
                install.candidate = Some(candidate);
                self.build_next(out);
            }
            Err(refusal) => self.refuse_install(refusal, out),
        }
    }

    /// Asks for the next worker's pipeline; once every worker has one, for the self-test.
    fn build_next(&mut self, out: &mut Vec<Action>) {
        let Phase::Installing(install) = &mut self.phase else { return };
        let Some(candidate) = &install.candidate else { return };
        let workers = &self.models[install.model].workers;
        if let Some(worker) = workers.get(install.providers.len()) {
            if worker.takes_images != candidate.takes_images {
                let reason = format!("source {} cannot feed this model's kind of input", worker.source);
                return self.refuse_install(Refusal::rejected(reason), out);
            }
            return out.push(Action::BuildPipeline { model: install.model });
        }
        if !candidate.has_self_test {
            let reason = "the package has no golden self-test vectors (pack it with `model pack --self-test`)";
            return self.refuse_install(Refusal::rejected(reason), out);
        }
        install.status.state = UpdateState::SelfTesting;
        out.push(Action::PublishStatus(install.status.clone()));
        out.push(Action::SelfTest);
    }

    fn on_pipeline_built(&mut self, result: Result<String, Refusal>, out: &mut Vec<Action>) {
        let Phase::Installing(install) = &mut self.phase else { return };
        let Some(worker) = self.models[install.model].workers.get(install.providers.len()) else { return };
        let require_same = self.settings.config.probation.require_same_provider;
        let checked = result.and_then(|provider| {
            if require_same && provider != worker.provider {
                return Err(Refusal::rejected(format!(
                    "the candidate would run on {provider}, the running model runs on {} (update.probation.require_same_provider)",
                    worker.provider
                )));
            }
            Ok(provider)
        });
        match checked {
            Ok(provider) => {
                install.providers.push(provider);
                self.build_next(out);
            }
            Err(refusal) => self.refuse_install(refusal, out),
        }
    }

    fn on_self_tested(&mut self, result: Result<(), Refusal>, out: &mut Vec<Action>) {
        let Phase::Installing(install) = &self.phase else { return };
        if let Err(refusal) = result {
            return self.refuse_install(refusal, out);
        }
        let announcement = &install.announcement;
        out.push(Action::DiscardStaging);
        let (update_id, version) = (announcement.id.clone(), announcement.version.clone());
        out.push(Action::Activate { model: install.model, update_id, version });
    }

    /// Any refusal of a complete package leaves the running model serving.
    fn refuse_install(&mut self, refusal: Refusal, out: &mut Vec<Action>) {
        let Phase::Installing(install) = std::mem::replace(&mut self.phase, Phase::Idle) else { return };
        let mut status = install.status;
        out.push(Action::DiscardStaging);
        out.push(Action::DropCandidate);
        log::warn!(update = install.announcement.id.as_str(); "Update refused: {}.", refusal.reason);
        // A refusal on the package's merits is final for it; a failure of this device (disk, I/O) is not.
        let final_for_package = refusal.state == UpdateState::Rejected;
        status.state = refusal.state;
        status.reason = Some(refusal.reason);
        self.publish(status, final_for_package, out);
    }

    fn on_activated(&mut self, result: Result<(), String>, out: &mut Vec<Action>) {
        let Phase::Installing(install) = &self.phase else { return };
        let (model, id, version) =
            (install.model, install.announcement.id.clone(), install.announcement.version.clone());
        if let Err(e) = result {
            self.phase = Phase::Idle;
            out.push(Action::DropCandidate);
            let reason = Some(format!("recording the candidate as active: {e}"));
            let status = self.status_for(model, UpdateState::Failed, Some(id), version, reason);
            return self.publish(status, false, out);
        }
        self.models[model].slot_update = Some((id, version));
        out.push(Action::SwapIn { model });
    }

    fn on_swapped_in(&mut self, baselines: Vec<ScoreSnapshot>, now: Instant, out: &mut Vec<Action>) {
        let Phase::Installing(install) = std::mem::replace(&mut self.phase, Phase::Idle) else { return };
        let Install { model, announcement, providers, .. } = *install;
        let served = &mut self.models[model];
        let previous_version = std::mem::replace(&mut served.running_version, announcement.version.clone());
        let mut previous_providers = Vec::new();
        for (worker, provider) in served.workers.iter_mut().zip(providers) {
            previous_providers.push(std::mem::replace(&mut worker.provider, provider));
        }
        log::info!(model = announcement.name.as_str(), version = announcement.version.as_str(); "Update active, on probation.");
        let (id, version) = (Some(announcement.id.clone()), announcement.version.clone());
        let status = self.status_for(model, UpdateState::Probation, id, version, None);
        self.publish(status, false, out);
        self.phase = Phase::Probation(Box::new(Trial {
            model,
            update_id: announcement.id,
            version: announcement.version,
            started: now,
            next_judgement: now + JUDGE_INTERVAL,
            baselines,
            previous_version,
            previous_providers,
        }));
    }

    /// Judges the candidate on probation: the first broken limit rolls it back; the end of the window commits it.
    fn on_scores(&mut self, scores: &[ScoreSnapshot], now: Instant, out: &mut Vec<Action>) {
        let Phase::Probation(trial) = &self.phase else { return };
        let limits = &self.settings.config.probation;
        let failure =
            trial.baselines.iter().zip(scores).find_map(|(baseline, score)| match judge(limits, baseline, score) {
                Verdict::Unhealthy(reason) => Some(reason),
                Verdict::TooEarly | Verdict::Healthy => None,
            });
        if let Some(reason) = failure {
            return self.roll_back_trial(format!("probation failed: {reason}"), out);
        }
        if now.saturating_duration_since(trial.started) < limits.window() {
            return;
        }
        let judged: u64 = scores.iter().map(|score| score.frames).sum();
        let reason = (judged < limits.min_frames)
            .then(|| format!("committed after the probation window with only {judged} inputs to judge"));
        let Phase::Probation(trial) = std::mem::replace(&mut self.phase, Phase::Idle) else { return };
        let status = self.status_for(trial.model, UpdateState::Committed, Some(trial.update_id), trial.version, reason);
        out.push(Action::Commit { model: trial.model });
        self.recording = Some(Recording { status, final_for_package: false, kind: RecordingKind::Commit });
    }

    /// Gives the workers back the pipelines the trial replaced.
    fn roll_back_trial(&mut self, reason: String, out: &mut Vec<Action>) {
        let Phase::Probation(trial) = std::mem::replace(&mut self.phase, Phase::Idle) else { return };
        let Trial { model, update_id, version, previous_version, previous_providers, .. } = *trial;
        out.push(Action::SwapBack { model });
        let served = &mut self.models[model];
        served.running_version = previous_version;
        for (worker, provider) in served.workers.iter_mut().zip(previous_providers) {
            worker.provider = provider;
        }
        self.record_rollback(model, Some(update_id), version, reason, out);
    }

    fn record_rollback(
        &mut self,
        model: usize,
        update_id: Option<String>,
        version: String,
        reason: String,
        out: &mut Vec<Action>,
    ) {
        let status = self.status_for(model, UpdateState::RolledBack, update_id, version, Some(reason));
        out.push(Action::RecordRollback { model });
        self.recording = Some(Recording { status, final_for_package: true, kind: RecordingKind::Rollback });
    }

    fn on_slots_written(&mut self, result: Result<(), String>, out: &mut Vec<Action>) {
        let Some(Recording { mut status, final_for_package, kind }) = self.recording.take() else { return };
        match (kind, result) {
            (RecordingKind::Commit, result) => {
                if let Err(e) = result {
                    status.state = UpdateState::Failed;
                    status.reason = Some(format!("recording the commit: {e}; the next start rolls back"));
                }
                log::info!(version = status.version.as_str(); "Update committed.");
            }
            (RecordingKind::Rollback, result) => {
                if let Err(e) = result {
                    status.state = UpdateState::Failed;
                    let reason = status.reason.take().unwrap_or_default();
                    status.reason = Some(format!("{reason}; recording the rollback failed: {e}"));
                }
                log::warn!(model = status.model.as_str(); "Rolled back: {}.", status.reason.as_deref().unwrap_or_default());
            }
        }
        self.publish(status, final_for_package, out);
    }

    fn on_command(&mut self, payload: &[u8], out: &mut Vec<Action>) {
        let command: UpdateCommand = match serde_json::from_slice(payload) {
            Ok(command) => command,
            Err(e) => return report_error(out, "command", "malformed", format!("invalid command: {e}")),
        };
        let UpdateCommand::Rollback { model: name } = command;
        let model = match &name {
            Some(name) => self.model_named(name),
            None if self.models.len() == 1 => Some(0),
            None => None,
        };
        let Some(model) = model else {
            let names: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
            let asked = name.as_deref().unwrap_or("(no model named, and this device serves several)");
            let message = format!("rollback of {asked}: this device serves {names:?}");
            return report_error(out, "command", "unknown_model", message);
        };
        match &self.phase {
            Phase::Probation(trial) if trial.model == model => self.roll_back_trial("rollback requested".into(), out),
            // A committed model goes back to its previous slot: its pipelines are built and swapped in like an
            // update's, without self-test or probation.
            _ => out.push(Action::LoadPrevious { model }),
        }
    }

    fn on_previous_loaded(&mut self, model: usize, result: Result<Loaded, String>, out: &mut Vec<Action>) {
        let Some(served) = self.models.get_mut(model) else { return };
        let loaded = match result {
            Ok(loaded) => loaded,
            Err(reason) => {
                let version = served.running_version.clone();
                let reason = Some(format!("rollback refused: {reason}"));
                let status = self.status_for(model, UpdateState::Rejected, None, version, reason);
                return out.push(Action::PublishStatus(status));
            }
        };
        let from = std::mem::replace(&mut served.running_version, loaded.version);
        for (worker, provider) in served.workers.iter_mut().zip(loaded.providers) {
            worker.provider = provider;
        }
        let update_id = served.slot_update.as_ref().map(|(id, _)| id.clone());
        self.record_rollback(model, update_id, from, "rollback requested".into(), out);
    }

    fn refuse_announcement(&mut self, announcement: &Announcement, refusal: Refusal, out: &mut Vec<Action>) {
        log::warn!(update = announcement.id.as_str(); "Update refused: {}.", refusal.reason);
        let running_version =
            self.model_named(&announcement.name).map(|m| self.models[m].running_version.clone()).unwrap_or_default();
        let status = UpdateStatus {
            device: self.settings.device.clone(),
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
            at_ms: 0,
        };
        // Refusals of the announcement alone (too big, no space) may pass another time: not final.
        self.publish(status, false, out);
    }

    fn model_named(&self, name: &str) -> Option<usize> {
        self.models.iter().position(|model| model.name == name)
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
            device: self.settings.device.clone(),
            state,
            update_id,
            model: served.name.clone(),
            version,
            running_version: served.running_version.clone(),
            bytes: 0,
            size: 0,
            percent: 0.0,
            resumed_bytes: 0,
            reason,
            at_ms: 0,
        }
    }

    /// Publishes a status; an outcome (or the start of probation) is also kept for the next start.
    fn publish(&mut self, status: UpdateStatus, final_for_package: bool, out: &mut Vec<Action>) {
        if status.state.is_final() || status.state == UpdateState::Probation {
            let last = LastStatus { status, final_for_package };
            self.last = Some(last.clone());
            out.push(Action::RecordStatus(last));
        } else {
            out.push(Action::PublishStatus(status));
        }
    }
}

/// Makes the chunks written so far durable, if there are any.
fn persist(download: &mut Download, now: Instant, out: &mut Vec<Action>) {
    if download.unpersisted > 0 {
        out.push(Action::PersistStaging(download.progress.bitmap().to_vec()));
        download.unpersisted = 0;
        download.last_persist_at = now;
    }
}

/// A malformed announcement or command, or a rollback of a model this device does not run.
fn report_error(out: &mut Vec<Action>, stage: &'static str, kind: &'static str, message: String) {
    log::warn!(stage, kind; "Update message rejected: {message}.");
    out.push(Action::ReportError { stage, kind, message });
}

/// A version must be strictly greater than the running one, unless the push is an explicit rollback (which
/// must then be lower).
fn check_version(running: &str, offered: &str, rollback: bool) -> Result<(), Refusal> {
    let offered_version =
        semver::Version::parse(offered).map_err(|e| Refusal::rejected(format!("version {offered:?}: {e}")))?;
    let Ok(running_version) = semver::Version::parse(running) else { return Ok(()) };
    match (rollback, offered_version.cmp(&running_version)) {
        (false, std::cmp::Ordering::Greater) | (true, std::cmp::Ordering::Less) => Ok(()),
        (false, _) => Err(Refusal::rejected(format!(
            "version {offered} is not greater than the running {running} (push with --rollback to go back)"
        ))),
        (true, _) => {
            Err(Refusal::rejected(format!("a rollback must bring a version lower than the running {running}")))
        }
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
mod tests;
