//! What the update [machine](super::machine) is told ([`Event`]) and what it asks its shell to do
//! ([`Action`]). An action that has an outcome is answered with the event its documentation names, at once,
//! before any other event: the machine never has two effects in flight.

use crate::judge::ScoreSnapshot;
use crate::progress::Progress;
use protocol::error::{ErrorKind, ErrorStage};
use protocol::update::{Announcement, ChunkRequest, UpdateState, UpdateStatus, UpdateTopics};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What arrives: messages, time, and the outcomes of actions.
#[derive(Debug)]
pub enum Event {
    /// The update thread starts.
    Start {
        disk: Disk,
    },
    /// A signed announcement that arrived on `base`'s announce topic at `wall_ms` (Unix ms, for its expiry).
    Announce {
        base: UpdateTopics,
        payload: Vec<u8>,
        disk: Disk,
        wall_ms: u64,
    },
    Chunk {
        id: String,
        index: u32,
        payload: Vec<u8>,
    },
    /// A signed command that arrived at `wall_ms`.
    Command {
        payload: Vec<u8>,
        wall_ms: u64,
    },
    /// [`Machine::next_deadline`](super::machine::Machine::next_deadline) has passed.
    Tick,
    /// The agent stops.
    Stop,
    /// Outcome of [`Action::OpenStaging`]: the chunks already staged.
    StagingOpened(Result<Progress, String>),
    /// Outcome of [`Action::WriteChunk`].
    ChunkWritten {
        index: u32,
        result: Result<(), String>,
    },
    /// Outcome of [`Action::CheckPackage`]: the version the package's manifest holds.
    PackageChecked(Result<String, Refusal>),
    /// Outcome of [`Action::Unpack`].
    Unpacked(Result<Candidate, Refusal>),
    /// Outcome of [`Action::BuildPipeline`]: the execution provider the new pipeline runs on.
    PipelineBuilt(Result<String, Refusal>),
    /// Outcome of [`Action::SelfTest`].
    SelfTested(Result<(), Refusal>),
    /// Outcome of [`Action::Activate`].
    Activated(Result<(), String>),
    /// Outcome of [`Action::SwapIn`]: the scores of the replaced pipelines at the moment they were replaced.
    SwappedIn {
        baselines: Vec<ScoreSnapshot>,
    },
    /// Outcome of [`Action::SampleScores`].
    Scores(Vec<ScoreSnapshot>),
    /// Outcome of [`Action::LoadPrevious`].
    PreviousLoaded {
        model: usize,
        result: Result<Loaded, String>,
    },
    /// Outcome of [`Action::Commit`] and [`Action::RecordRollback`].
    SlotsWritten(Result<(), String>),
    /// Outcome of [`Action::SaveGuard`].
    GuardSaved(Result<(), String>),
}

/// What the shell must do.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Publishes on the status topic, retained.
    PublishStatus(UpdateStatus),
    /// Publishes the samples of retraining candidate `candidate`, then the answer to order `order` (see
    /// the agent's `monitor::evidence::fetch`).
    PublishEvidence {
        candidate: String,
        order: u64,
    },
    /// Keeps an outcome in `last-status.json`, then publishes its status: what subscribers see is never ahead of
    /// what a restart repeats.
    RecordStatus(LastStatus),
    RequestChunks(ChunkRequest),
    /// An error event on `<prefix>/errors/update`.
    ReportError {
        stage: ErrorStage,
        kind: ErrorKind,
        message: String,
    },
    /// Opens (resumes, or starts afresh) the staging of this package; answered by [`Event::StagingOpened`].
    OpenStaging(Announcement),
    /// Writes a chunk into the staged package; answered by [`Event::ChunkWritten`].
    WriteChunk {
        index: u32,
        offset: u64,
        bytes: Vec<u8>,
    },
    /// Makes the chunks written so far durable, then this bitmap that claims them.
    PersistStaging(Vec<u8>),
    /// Removes the staged download.
    DiscardStaging,
    /// Checks the staged package's sha256 and signature; answered by [`Event::PackageChecked`].
    CheckPackage,
    /// Unpacks the staged package into the candidate slot of `model` and loads it; answered by
    /// [`Event::Unpacked`].
    Unpack {
        model: usize,
    },
    /// Builds one more pipeline of the candidate, for the next worker of `model`; answered by
    /// [`Event::PipelineBuilt`].
    BuildPipeline {
        model: usize,
    },
    /// Runs the golden vectors on every candidate pipeline; answered by [`Event::SelfTested`].
    SelfTest,
    /// Forgets the candidate bundle and its pipelines.
    DropCandidate,
    /// Records the installed candidate as active, on probation; answered by [`Event::Activated`].
    Activate {
        model: usize,
        update_id: String,
        version: String,
    },
    /// Hands the candidate pipelines to the workers of `model` and keeps the replaced ones; answered by
    /// [`Event::SwappedIn`].
    SwapIn {
        model: usize,
    },
    /// Snapshots the scores of the candidate pipelines; answered by [`Event::Scores`].
    SampleScores,
    /// Records the end of probation; answered by [`Event::SlotsWritten`].
    Commit {
        model: usize,
    },
    /// Gives the workers of `model` back the pipelines [`Action::SwapIn`] replaced.
    SwapBack {
        model: usize,
    },
    /// Loads the previous bundle of `model` and swaps it in; answered by [`Event::PreviousLoaded`].
    LoadPrevious {
        model: usize,
    },
    /// Makes the previous bundle of `model` active again; answered by [`Event::SlotsWritten`].
    RecordRollback {
        model: usize,
    },
    /// Keeps the guard in `guard.json`, durably; answered by [`Event::GuardSaved`].
    SaveGuard(Guard),
}

/// The state directory as an announcement finds it.
#[derive(Debug, Clone)]
pub struct Disk {
    /// Bytes free for the agent on its file system.
    pub free_space: Result<u64, String>,
    /// The download a previous run left, if any.
    pub staged: Option<Announcement>,
}

/// What an unpacked candidate bundle holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub version: String,
    pub takes_images: bool,
    pub has_self_test: bool,
}

/// A previous bundle loaded and swapped in by a rollback command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub version: String,
    /// The execution provider of each worker's new pipeline.
    pub providers: Vec<String>,
}

/// Why an update did not go through: the state to report and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub state: UpdateState,
    pub reason: String,
}

impl Refusal {
    /// Refused on the package's merits.
    pub fn rejected(reason: impl Into<String>) -> Refusal {
        Refusal { state: UpdateState::Rejected, reason: reason.into() }
    }

    /// This device could not carry it out (disk, I/O).
    pub fn failed(reason: impl Into<String>) -> Refusal {
        Refusal { state: UpdateState::Failed, reason: reason.into() }
    }
}

/// What protects the device from replayed orders and old versions, kept on disk (`guard.json`) so that it holds
/// across restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guard {
    /// The counter of the last signed order taken: an order with a lower one is a replay.
    pub counter: u64,
    /// sha256 of that order's signed text: the same order repeated is taken, another with its counter is not.
    pub digest: String,
    /// Per model name, the lowest version the device installs without a signed downgrade: the version of the
    /// last update committed, or the version a signed rollback returned to.
    pub floors: BTreeMap<String, String>,
}

/// The last status, kept on disk so that a restarted device repeats it and doesn't retry a refused update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastStatus {
    pub status: UpdateStatus,
    /// The update was refused or rolled back on its merits: the same package is not tried again.
    pub final_for_package: bool,
}
