//! The updater's decisions, without IO: idle, opening a download, downloading (one package at a time),
//! installing the complete package, or a candidate on probation. [`Machine::on`] takes an [`Event`] and the
//! time, and returns the [`Action`]s for the shell to carry out; [`Machine::next_deadline`] says when it next
//! needs a [`Event::Tick`].
//!
//! Every outcome is published, retained, on `<prefix>/update/status`, and the last one is kept in
//! the shell's store (the agent's `<state_dir>/last-status.json`): a device that restarts says the same thing, and does not retry an update it
//! refused on its merits or judged on probation (a package is identified by its sha256, so a fixed package is
//! a new update). Statuses leave here with `at_ms` 0: the shell stamps them with the wall clock when it
//! publishes.
//!
//! Announcements and commands are signed orders ([`orders`]): one that is unsigned, untrusted, replayed,
//! expired or for someone else is refused with an error event and changes nothing. A version is installed only
//! if it is not below the model's floor (the [`Guard`]), unless a signed announcement authorises that very
//! version as a downgrade.

use crate::effects::{Action, Candidate, Disk, Event, Guard, LastStatus, Refusal};
use crate::judge::ScoreSnapshot;
use crate::progress::Progress;
use crate::settings::UpdateSettings;
use download::{PERSIST_INTERVAL, PROGRESS_INTERVAL, persist};
use orders::{Offer, Pending};
use packaging::PublicKey;
use protocol::error::{ErrorKind, ErrorStage};
use protocol::update::{Announcement, Instruction, UpdateState, UpdateStatus, UpdateTopics, update_id};
use std::collections::BTreeSet;
use std::time::Instant;

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

/// What opening a model's slots repaired, as the shell found them at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    None,
    /// The device stopped while update `update_id` was on probation; the bundle before it is active again.
    RolledBack {
        update_id: String,
        version: String,
    },
    /// The slots' state could not be read (the reason); the factory bundle is active.
    Reset(String),
}

/// Fixed for the life of the machine.
#[derive(Debug, Clone)]
pub struct Settings {
    pub device: String,
    pub config: UpdateSettings,
    /// The largest chunk an MQTT packet carries.
    pub max_chunk: usize,
    /// The trusted keys, parsed: the keys that sign packages and orders.
    pub trusted: Vec<PublicKey>,
}

/// The updater's state; see the [module docs](self).
pub struct Machine {
    settings: Settings,
    models: Vec<ModelView>,
    phase: Phase,
    last: Option<LastStatus>,
    /// A commit or rollback whose recording in the slots is awaited, with the status it ends in.
    recording: Option<Recording>,
    guard: Guard,
    /// An order taken, waiting for its counter to be on disk, with the guard that records it.
    pending: Option<(Guard, Pending)>,
    /// The counter of the rollback command whose previous model is being loaded.
    commanded: Option<u64>,
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
    /// The counter of the order the download answers; none when resuming what a previous run left (a refusal
    /// is then logged, not published).
    order: Option<u64>,
}

struct Download {
    model: usize,
    announcement: Announcement,
    /// The counter of the order the download answers: the last announcement of this package taken.
    order: Option<u64>,
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
    /// `verifying`, then `self_testing`; a refusal reports in it. Its `order` is the order answered.
    status: UpdateStatus,
    candidate: Option<Candidate>,
    /// The execution provider of each candidate pipeline built so far, one per worker.
    providers: Vec<String>,
}

struct Trial {
    model: usize,
    update_id: String,
    version: String,
    order: Option<u64>,
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
    /// The model's version floor once the slots are written: the committed version, or the version a rollback
    /// command returned to.
    floor: Option<(String, String)>,
}

enum RecordingKind {
    Commit,
    Rollback,
}

impl Machine {
    /// `last` is the status a previous run kept, if any; `guard` what protects it from replays and old versions.
    pub fn new(settings: Settings, models: Vec<ModelView>, last: Option<LastStatus>, guard: Guard) -> Machine {
        Machine { settings, models, phase: Phase::Idle, last, recording: None, guard, pending: None, commanded: None }
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
            Phase::Probation(trial) => {
                Some(trial.next_judgement.min(trial.started + self.settings.config.probation.window()))
            }
            Phase::Idle | Phase::Opening(_) | Phase::Installing(_) => None,
        }
    }

    /// Takes `event`, which happens at `now`; returns what the shell must do, in order.
    pub fn on(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        let out = &mut actions;
        match event {
            Event::Start { disk } => self.on_start(disk, out),
            Event::Announce { base, payload, disk, wall_ms } => self.on_announce(base, &payload, disk, wall_ms, out),
            Event::Chunk { id, index, payload } => self.on_chunk(&id, index, payload, out),
            Event::Command { payload, wall_ms } => self.on_command(&payload, wall_ms, out),
            Event::Tick => {
                self.tick_download(now, out);
                self.tick_trial(now, out);
            }
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
            Event::GuardSaved(result) => self.on_guard_saved(result, out),
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
        if let Err(refusal) = self.start_download(model, announcement, &disk, None, out) {
            log::warn!("The staged download cannot resume: {}.", refusal.reason);
        }
    }

    fn report_start(&mut self, out: &mut Vec<Action>) {
        let mut rolled_back = Vec::new();
        for (index, model) in self.models.iter().enumerate() {
            match &model.recovery {
                Recovery::RolledBack { update_id, version } => {
                    let (name, stopped) = (model.name.as_str(), version.as_str());
                    log::warn!(model = name, version = stopped; "The agent stopped during probation; rolled back.");
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

    fn on_announce(&mut self, base: UpdateTopics, payload: &[u8], disk: Disk, wall_ms: u64, out: &mut Vec<Action>) {
        let Some((order, renewed)) = self.admit(ErrorStage::Announce, payload, wall_ms, out) else { return };
        let Instruction::Announce(announcement) = order.instruction else { return };
        let offer = Offer { base, announcement, disk, order: order.counter };
        self.carry_out(renewed, Pending::Announce(Box::new(offer)), out);
    }

    /// Takes a signed announcement that the device may carry out.
    fn take_announcement(
        &mut self,
        base: &UpdateTopics,
        announcement: Announcement,
        disk: Disk,
        order: u64,
        out: &mut Vec<Action>,
    ) {
        match &mut self.phase {
            Phase::Downloading(download) if download.announcement.id == announcement.id => {
                if download.order == Some(order) {
                    // Repeated while we download: the pusher may have lost our requests; ask again.
                    download.in_flight.clear();
                    return self.request_more(out);
                }
                // Another push of this package, or the pusher's first word after a restart: answer it from now.
                download.order = Some(order);
                if let Phase::Downloading(download) = &self.phase {
                    out.push(Action::PublishStatus(self.progress_status(download)));
                }
                return;
            }
            Phase::Probation(trial) => {
                if trial.update_id != announcement.id {
                    let update = announcement.id.as_str();
                    return log::info!(update; "Announcement ignored: another update is on probation.");
                }
                // Another push of the candidate: it gets the outcome too.
                trial.order = Some(order);
                let (model, id, version) = (trial.model, Some(trial.update_id.clone()), trial.version.clone());
                let mut status = self.status_for(model, UpdateState::Probation, id, version, None);
                status.order = Some(order);
                return out.push(Action::PublishStatus(status));
            }
            Phase::Installing(install) if install.announcement.id == announcement.id => {
                install.status.order = Some(order);
                return;
            }
            Phase::Opening(_) | Phase::Installing(_) => return,
            Phase::Idle | Phase::Downloading(_) => {}
        }
        let Some(model) = self.model_named(&announcement.name) else {
            let refusal = Refusal::rejected(format!("no source serves a model named {:?}", announcement.name));
            return self.refuse_announcement(&announcement, refusal, Some(order), out);
        };
        if self.runs_update(model, &announcement.id) {
            let version = self.models[model].running_version.clone();
            let mut status =
                self.status_for(model, UpdateState::Committed, Some(announcement.id.clone()), version, None);
            status.order = Some(order);
            return out.push(Action::PublishStatus(status));
        }
        if let Some(last) = &self.last
            && last.final_for_package
            && last.status.update_id.as_deref() == Some(&announcement.id)
        {
            let status = UpdateStatus { order: Some(order), ..last.status.clone() };
            return out.push(Action::PublishStatus(status));
        }
        if let Err(refusal) = self.check_announcement(model, base, &announcement) {
            return self.refuse_announcement(&announcement, refusal, Some(order), out);
        }
        if let Phase::Downloading(current) = &self.phase {
            let (replaced, by) = (current.announcement.id.as_str(), announcement.id.as_str());
            log::warn!(replaced, by; "A newer announcement replaces the download in progress.");
        }
        if let Err(refusal) = self.start_download(model, announcement.clone(), &disk, Some(order), out) {
            self.refuse_announcement(&announcement, refusal, Some(order), out);
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
        if announcement.chunk_sha256.len() != announcement.chunk_count() as usize
            || !announcement.chunk_sha256.iter().all(|sha256| is_sha256(sha256))
        {
            return Err(Refusal::rejected(format!(
                "the announcement must hold the sha256 of each of its {} chunks",
                announcement.chunk_count()
            )));
        }
        self.check_version(model, &announcement.version, announcement.rollback)
    }

    /// A version must be strictly greater than the running one and not below the model's floor, unless the
    /// signed announcement authorises a downgrade to it (which must then be lower than the running one).
    fn check_version(&self, model: usize, offered: &str, rollback: bool) -> Result<(), Refusal> {
        let served = &self.models[model];
        let floor = self.guard.floors.get(&served.name).map(String::as_str);
        check_version(&served.running_version, floor, offered, rollback)
    }

    fn on_command(&mut self, payload: &[u8], wall_ms: u64, out: &mut Vec<Action>) {
        let Some((order, renewed)) = self.admit(ErrorStage::Command, payload, wall_ms, out) else { return };
        match order.instruction {
            Instruction::Rollback { model } => {
                self.carry_out(renewed, Pending::Rollback { model, order: order.counter }, out);
            }
            Instruction::FetchEvidence { candidate } => {
                self.carry_out(renewed, Pending::FetchEvidence { candidate, order: order.counter }, out);
            }
            Instruction::Announce(_) => {}
        }
    }

    /// Carries out a signed rollback command.
    fn roll_back(&mut self, name: Option<String>, order: u64, out: &mut Vec<Action>) {
        let model = match &name {
            Some(name) => self.model_named(name),
            None if self.models.len() == 1 => Some(0),
            None => None,
        };
        let Some(model) = model else {
            let names: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
            let asked = name.as_deref().unwrap_or("(no model named, and this device serves several)");
            let message = format!("rollback of {asked}: this device serves {names:?}");
            return report_error(out, ErrorStage::Command, ErrorKind::UnknownModel, message);
        };
        match &self.phase {
            Phase::Probation(trial) if trial.model == model => {
                // The operator's choice, not a verdict on the package: it may be pushed again.
                self.roll_back_trial("rollback requested".into(), Some(order), false, out);
            }
            // A committed model goes back to its previous slot: its pipelines are built and swapped in like an
            // update's, without self-test or probation.
            _ => {
                self.commanded = Some(order);
                out.push(Action::LoadPrevious { model });
            }
        }
    }

    fn refuse_announcement(
        &mut self,
        announcement: &Announcement,
        refusal: Refusal,
        order: Option<u64>,
        out: &mut Vec<Action>,
    ) {
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
            order,
            messages_dropped: 0,
            errors_unpublished: 0,
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
            order: None,
            messages_dropped: 0,
            errors_unpublished: 0,
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

/// A malformed announcement or command, or a rollback of a model this device does not run.
fn report_error(out: &mut Vec<Action>, stage: ErrorStage, kind: ErrorKind, message: String) {
    log::warn!(stage = stage.as_str(), kind = kind.as_str(); "Update message rejected: {message}.");
    out.push(Action::ReportError { stage, kind, message });
}

/// See [`Machine::check_version`]; `floor` is the model's version floor, if it has one.
fn check_version(running: &str, floor: Option<&str>, offered: &str, rollback: bool) -> Result<(), Refusal> {
    let offered_version =
        semver::Version::parse(offered).map_err(|e| Refusal::rejected(format!("version {offered:?}: {e}")))?;
    if !rollback
        && let Some(floor) = floor
        && semver::Version::parse(floor).is_ok_and(|floor| offered_version < floor)
    {
        return Err(Refusal::rejected(format!(
            "version {offered} is below this device's version floor {floor} (a signed downgrade, `model push \
             --rollback`, may go lower)"
        )));
    }
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

/// 64 lower-case hex digits.
fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

mod download;
mod install;
mod orders;
#[cfg(test)]
mod tests;
mod trial;
