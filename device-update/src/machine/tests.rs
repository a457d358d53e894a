//! Every transition of the update machine, without a broker, a disk or a real clock: a [`Device`] feeds it
//! events at an instant the test moves, answers its effects the way a working shell would (or as a test
//! says), and records every action in order. The rows of the failure table in `docs/troubleshooting.md` are marked `README:`.

use super::*;
use crate::effects::Loaded;
use crate::settings::ProbationLimits;
use packaging::{SigningKey, hex_sha256};
use protocol::update::{Order, Target};
use std::time::Duration;

const SHA256: &str = "5eadf0fc608a3f8a2ad9b89b0dae37324456261dbb4acfc16e433518e9d43f21";
/// 1000 bytes in 10 chunks of 100.
const SIZE: u64 = 1000;
const CHUNK: u32 = 100;
const WINDOW: u32 = 4;

fn own() -> UpdateTopics {
    UpdateTopics::device("devices/d1")
}

fn config() -> UpdateSettings {
    UpdateSettings {
        max_package_bytes: 10_000,
        reserve_bytes: 100,
        request_window: WINDOW,
        request_timeout_secs: 5.0,
        probation: ProbationLimits { window_secs: 10.0, min_frames: 3, ..ProbationLimits::default() },
        ..UpdateSettings::default()
    }
}

fn model(name: &str) -> ModelView {
    ModelView {
        name: name.into(),
        running_version: "1.0.0".into(),
        slot_update: None,
        recovery: Recovery::None,
        workers: vec![WorkerView { source: "wrist".into(), provider: "cpu".into(), takes_images: false }],
    }
}

/// Version 1.1.0 of model `demo`, on the device's own base.
fn offer() -> Announcement {
    Announcement {
        id: update_id(SHA256),
        name: "demo".into(),
        version: "1.1.0".into(),
        size: SIZE,
        sha256: SHA256.into(),
        signature: None,
        chunk_size: CHUNK,
        chunk_sha256: vec![hex_sha256(&chunk_bytes()); 10],
        chunks_topic: own().chunks(&update_id(SHA256)),
        rollback: false,
    }
}

/// What every chunk the tests deliver holds.
fn chunk_bytes() -> Vec<u8> {
    vec![7; CHUNK as usize]
}

/// Another package of the same model.
fn other_offer() -> Announcement {
    let sha256 = "ff".repeat(32);
    Announcement { id: update_id(&sha256), chunks_topic: own().chunks(&update_id(&sha256)), sha256, ..offer() }
}

fn snapshot(frames: u64, errors: u64) -> ScoreSnapshot {
    ScoreSnapshot {
        frames,
        errors,
        p95_inference_us: Some(100),
        mean_confidence: Some(0.9),
        output_psi: None,
        accuracy: None,
    }
}

/// How the fake shell answers each effect; the default is a shell where everything works.
#[derive(Clone)]
struct Answers {
    disk: Disk,
    staging: Result<Option<Progress>, String>,
    write: Result<(), String>,
    checked: Result<String, Refusal>,
    unpacked: Result<Candidate, Refusal>,
    built: Result<String, Refusal>,
    self_test: Result<(), Refusal>,
    activated: Result<(), String>,
    baselines: Vec<ScoreSnapshot>,
    scores: Vec<ScoreSnapshot>,
    slots: Result<(), String>,
    previous: Result<Loaded, String>,
    guard: Result<(), String>,
}

impl Default for Answers {
    fn default() -> Self {
        Answers {
            disk: Disk { free_space: Ok(1 << 30), staged: None },
            staging: Ok(None),
            write: Ok(()),
            checked: Ok("1.1.0".into()),
            unpacked: Ok(Candidate {
                name: "demo".into(),
                version: "1.1.0".into(),
                takes_images: false,
                has_self_test: true,
            }),
            built: Ok("cpu".into()),
            self_test: Ok(()),
            activated: Ok(()),
            baselines: vec![snapshot(100, 0)],
            scores: vec![snapshot(5, 0)],
            slots: Ok(()),
            previous: Ok(Loaded { version: "1.0.0".into(), providers: vec!["cpu".into()] }),
            guard: Ok(()),
        }
    }
}

/// The machine, a clock the test moves, a fake shell, and the operator's key that signs its orders.
struct Device {
    machine: Machine,
    now: Instant,
    /// Unix time (ms) as the shell stamps orders with.
    wall_ms: u64,
    answers: Answers,
    key: SigningKey,
    /// The counter of the last order signed.
    counter: u64,
}

/// How long the orders the tests sign are valid.
const ORDER_LIFE_MS: u64 = 60_000;

impl Device {
    fn new() -> Device {
        Device::with(vec![model("demo")], None)
    }

    fn with(models: Vec<ModelView>, last: Option<LastStatus>) -> Device {
        Device::with_guard(models, last, Guard::default())
    }

    fn with_guard(models: Vec<ModelView>, last: Option<LastStatus>, guard: Guard) -> Device {
        let key = SigningKey::generate().unwrap();
        let settings = settings(&key, config());
        Device {
            machine: Machine::new(settings, models, last, guard),
            now: Instant::now(),
            wall_ms: 1_000_000,
            answers: Answers::default(),
            key,
            counter: 0,
        }
    }

    /// The machine again, with `config`, as a restart would make it.
    fn reconfigure(&mut self, config: UpdateSettings) {
        let machine = &self.machine;
        let (models, last, guard) = (machine.models.clone(), machine.last.clone(), machine.guard.clone());
        self.machine = Machine::new(settings(&self.key, config), models, last, guard);
    }

    /// The next order to `target`, signed with the device's trusted key.
    fn sign(&mut self, target: Target, instruction: Instruction) -> Order {
        self.counter += 1;
        Order { target, counter: self.counter, expires_at_ms: self.wall_ms + ORDER_LIFE_MS, instruction }
    }

    /// `order`, signed with `key`, as it travels.
    fn sealed(order: &Order, key: &SigningKey) -> Vec<u8> {
        serde_json::to_vec(&packaging::order::seal(order, key)).unwrap()
    }

    /// Feeds `event` and, like the shell, each outcome at once; returns every action in order.
    fn on(&mut self, event: Event) -> Vec<Action> {
        let mut log = Vec::new();
        self.apply(event, &mut log);
        log
    }

    fn apply(&mut self, event: Event, log: &mut Vec<Action>) {
        for action in self.machine.on(event, self.now) {
            let outcome = self.answer(&action);
            log.push(action);
            if let Some(outcome) = outcome {
                self.apply(outcome, log);
            }
        }
    }

    fn answer(&self, action: &Action) -> Option<Event> {
        let answers = self.answers.clone();
        Some(match action {
            Action::OpenStaging(announcement) => Event::StagingOpened(
                answers.staging.map(|progress| progress.unwrap_or_else(|| Progress::empty(announcement))),
            ),
            Action::WriteChunk { index, .. } => Event::ChunkWritten { index: *index, result: answers.write },
            Action::CheckPackage => Event::PackageChecked(answers.checked),
            Action::Unpack { .. } => Event::Unpacked(answers.unpacked),
            Action::BuildPipeline { .. } => Event::PipelineBuilt(answers.built),
            Action::SelfTest => Event::SelfTested(answers.self_test),
            Action::Activate { .. } => Event::Activated(answers.activated),
            Action::SwapIn { .. } => Event::SwappedIn { baselines: answers.baselines },
            Action::SampleScores => Event::Scores(answers.scores),
            Action::Commit { .. } | Action::RecordRollback { .. } => Event::SlotsWritten(answers.slots),
            Action::LoadPrevious { model } => Event::PreviousLoaded { model: *model, result: answers.previous },
            Action::SaveGuard(_) => Event::GuardSaved(answers.guard),
            _ => return None,
        })
    }

    fn start(&mut self) -> Vec<Action> {
        self.on(Event::Start { disk: self.answers.disk.clone() })
    }

    /// A signed announcement of `announcement` to this device.
    fn announce(&mut self, announcement: &Announcement) -> Vec<Action> {
        let order = self.sign(Target::Device("d1".into()), Instruction::Announce(announcement.clone()));
        self.announce_json(Device::sealed(&order, &self.key))
    }

    fn announce_json(&mut self, payload: Vec<u8>) -> Vec<Action> {
        self.on(Event::Announce { base: own(), payload, disk: self.answers.disk.clone(), wall_ms: self.wall_ms })
    }

    fn chunk(&mut self, index: u32) -> Vec<Action> {
        self.on(Event::Chunk { id: offer().id, index, payload: chunk_bytes() })
    }

    /// A signed rollback command to this device.
    fn rollback(&mut self, model: Option<&str>) -> Vec<Action> {
        let order = self.sign(Target::Device("d1".into()), Instruction::Rollback { model: model.map(str::to_owned) });
        self.command_json(Device::sealed(&order, &self.key))
    }

    fn command_json(&mut self, payload: Vec<u8>) -> Vec<Action> {
        self.on(Event::Command { payload, wall_ms: self.wall_ms })
    }

    /// Moves the clock on and delivers a tick.
    fn after(&mut self, elapsed: Duration) -> Vec<Action> {
        self.now += elapsed;
        self.on(Event::Tick)
    }

    /// Announces [`offer`] and delivers all its chunks: the package is verified and installed.
    fn push(&mut self) -> Vec<Action> {
        let mut log = self.announce(&offer());
        for index in 0..10 {
            log.extend(self.chunk(index));
        }
        log
    }

    /// [`Device::push`], then the probation window passes with a healthy candidate.
    fn push_and_commit(&mut self) -> Vec<Action> {
        let mut log = self.push();
        log.extend(self.after(Duration::from_secs(10)));
        log
    }

    fn running_version(&self) -> &str {
        &self.machine.models[0].running_version
    }
}

/// Every status published, recorded or not.
fn statuses(actions: &[Action]) -> Vec<&UpdateStatus> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::PublishStatus(status) => Some(status),
            Action::RecordStatus(last) => Some(&last.status),
            _ => None,
        })
        .collect()
}

fn states(actions: &[Action]) -> Vec<UpdateState> {
    statuses(actions).iter().map(|status| status.state).collect()
}

fn recorded(actions: &[Action]) -> Vec<&LastStatus> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::RecordStatus(last) => Some(last),
            _ => None,
        })
        .collect()
}

/// The one outcome recorded: its state, reason and whether the package is never tried again.
fn outcome(actions: &[Action]) -> (UpdateState, String, bool) {
    let recorded = recorded(actions);
    assert_eq!(recorded.len(), 1, "{actions:#?}");
    let last = recorded[0];
    (last.status.state, last.status.reason.clone().unwrap_or_default(), last.final_for_package)
}

fn requests(actions: &[Action]) -> Vec<Vec<[u32; 2]>> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::RequestChunks(request) => Some(request.ranges.clone()),
            _ => None,
        })
        .collect()
}

fn count(actions: &[Action], wanted: impl Fn(&Action) -> bool) -> usize {
    actions.iter().filter(|action| wanted(action)).count()
}

/// Settings of device `d1` that trust `key`.
fn settings(key: &SigningKey, config: UpdateSettings) -> Settings {
    Settings { device: "d1".into(), config, max_chunk: 4096, trusted: vec![key.public_key()] }
}

/// The one error event among `actions`: its stage, kind and message.
fn error_event(actions: &[Action]) -> (ErrorStage, ErrorKind, String) {
    let events: Vec<_> = actions
        .iter()
        .filter_map(|action| match action {
            Action::ReportError { stage, kind, message } => Some((*stage, *kind, message.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(events.len(), 1, "{actions:#?}");
    events[0].clone()
}

fn opens_staging(actions: &[Action]) -> bool {
    count(actions, |action| matches!(action, Action::OpenStaging(_))) == 1
}

// ---- start ----

#[test]
fn a_fresh_device_starts_idle_with_its_running_version() {
    let mut device = Device::new();
    let actions = device.start();
    assert_eq!(actions.len(), 1, "{actions:#?}");
    let status = statuses(&actions)[0];
    assert!(matches!(actions[0], Action::PublishStatus(_)), "not recorded");
    assert_eq!(
        (status.state, status.update_id.as_deref(), status.version.as_str()),
        (UpdateState::Idle, None, "1.0.0")
    );
    assert_eq!(
        (status.device.as_str(), status.model.as_str(), status.running_version.as_str()),
        ("d1", "demo", "1.0.0")
    );
}

#[test]
fn a_restarted_device_repeats_its_last_status() {
    let mut status = Device::new().machine.status_for(0, UpdateState::Rejected, Some("x".into()), "1.1.0".into(), None);
    status.reason = Some("self-test failed".into());
    let mut device =
        Device::with(vec![model("demo")], Some(LastStatus { status: status.clone(), final_for_package: true }));
    assert_eq!(device.start(), vec![Action::PublishStatus(status)]);
}

/// README: agent stops during probation -> `rolled_back` at the next start, which may be pushed again.
#[test]
fn a_stop_during_probation_is_reported_rolled_back_at_start() {
    let stopped = ModelView {
        recovery: Recovery::RolledBack { update_id: offer().id, version: "1.1.0".into() },
        ..model("demo")
    };
    let mut device = Device::with(vec![stopped], None);
    let actions = device.start();
    let (state, reason, final_for_package) = outcome(&actions);
    assert_eq!(state, UpdateState::RolledBack);
    assert_eq!(reason, "the agent stopped during probation; the previous model serves");
    assert!(!final_for_package, "the model was not judged");
    assert_eq!(statuses(&actions)[0].update_id, Some(offer().id));
    assert!(opens_staging(&device.announce(&offer())), "the same package may be pushed again");
}

/// A probation status on disk means the outcome reached the slots but not last-status.json.
#[test]
fn a_probation_left_in_last_status_is_settled_by_the_slots() {
    let probation = |device: &Device| LastStatus {
        status: device.machine.status_for(0, UpdateState::Probation, Some(offer().id), "1.1.0".into(), None),
        final_for_package: false,
    };
    let committed =
        ModelView { running_version: "1.1.0".into(), slot_update: Some((offer().id, "1.1.0".into())), ..model("demo") };
    let last = probation(&Device::new());
    let mut device = Device::with(vec![committed], Some(last.clone()));
    assert_eq!(outcome(&device.start()).0, UpdateState::Committed);

    let mut device = Device::with(vec![model("demo")], Some(last));
    let (state, reason, _) = outcome(&device.start());
    assert_eq!(state, UpdateState::RolledBack);
    assert!(reason.contains("stopped before the outcome was recorded"), "{reason}");
}

/// README: agent restart -> the download resumes where it stopped, with `resumed_bytes`.
#[test]
fn a_staged_download_resumes_at_start() {
    let mut device = Device::new();
    device.answers.disk.staged = Some(offer());
    device.answers.staging = Ok(Progress::from_bitmap(&offer(), vec![0b111, 0]));
    let actions = device.start();
    assert_eq!(states(&actions), [UpdateState::Idle, UpdateState::Downloading]);
    let downloading = statuses(&actions)[1];
    assert_eq!((downloading.bytes, downloading.resumed_bytes, downloading.percent), (300, 300, 30.0));
    assert_eq!(requests(&actions), [vec![[3, 7]]]);
}

#[test]
fn a_staged_download_that_cannot_resume_is_only_logged() {
    let mut device = Device::new();
    device.answers.disk.staged = Some(offer());
    device.answers.staging = Err("disk on fire".into());
    assert_eq!(states(&device.start()), [UpdateState::Idle]);

    let mut device = Device::new();
    device.answers.disk = Disk { free_space: Ok(10), staged: Some(offer()) };
    let actions = device.start();
    assert_eq!((states(&actions), opens_staging(&actions)), (vec![UpdateState::Idle], false));
}

// ---- announcements ----

/// README: announcement not JSON, not an envelope, or a signed text that is not an order -> error event, stage
/// `announce`, kind `malformed`.
#[test]
fn a_malformed_announcement_is_an_error_event() {
    let mut device = Device::new();
    let mut with_unknown_field = serde_json::to_value(offer()).unwrap();
    with_unknown_field["colour"] = "blue".into();
    let signed_text = serde_json::json!({"target": {"device": "d1"}, "counter": 1, "expires_at_ms": u64::MAX,
        "instruction": {"announce": with_unknown_field}})
    .to_string();
    let signature = device.key.sign(signed_text.as_bytes()).to_string();
    let signed_nonsense = serde_json::to_vec(&protocol::update::Envelope { signed: signed_text, signature }).unwrap();
    let unsigned = serde_json::to_vec(&offer()).unwrap();
    for payload in [b"{\"id\":".to_vec(), unsigned, signed_nonsense] {
        let actions = device.announce_json(payload);
        let [Action::ReportError { stage: ErrorStage::Announce, kind: ErrorKind::Malformed, message }] =
            actions.as_slice()
        else {
            panic!("{actions:#?}");
        };
        assert!(message.starts_with("order refused: malformed signed order: "), "{message}");
    }
}

/// README: refusals of the announcement alone -> `rejected` (or `failed`) with the reason, nothing downloaded,
/// not remembered: the same announcement is evaluated again.
#[test]
fn announcements_that_cannot_be_taken_are_refused_and_not_remembered() {
    let cases: Vec<(&str, Announcement, Answers, UpdateState, &str)> = vec![
        (
            "unknown model",
            Announcement { name: "other".into(), ..offer() },
            Answers::default(),
            UpdateState::Rejected,
            "no source serves a model named \"other\"",
        ),
        (
            "id",
            Announcement { id: "0123456789abcdef".into(), ..offer() },
            Answers::default(),
            UpdateState::Rejected,
            "the announcement's id is not the start of its sha256",
        ),
        (
            "chunks topic",
            Announcement { chunks_topic: UpdateTopics::group("lab").chunks(&offer().id), ..offer() },
            Answers::default(),
            UpdateState::Rejected,
            "chunks must come on devices/d1/update/chunk/5eadf0fc608a3f8a",
        ),
        (
            "chunk size 0",
            Announcement { chunk_size: 0, ..offer() },
            Answers::default(),
            UpdateState::Rejected,
            "chunk size 0 is not between 1 and 4096",
        ),
        (
            "chunk too big",
            Announcement { chunk_size: 4097, ..offer() },
            Answers::default(),
            UpdateState::Rejected,
            "chunk size 4097 is not between 1 and 4096",
        ),
        (
            "size 0",
            Announcement { size: 0, ..offer() },
            Answers::default(),
            UpdateState::Rejected,
            "package of 0 bytes",
        ),
        (
            "too large",
            Announcement { size: 10_001, ..offer() },
            Answers::default(),
            UpdateState::Rejected,
            "package of 10001 bytes is larger than update.max_package_bytes (10000)",
        ),
        (
            "not semver",
            Announcement { version: "one".into(), ..offer() },
            Answers::default(),
            UpdateState::Rejected,
            "version \"one\"",
        ),
        (
            "older",
            Announcement { version: "0.9.0".into(), ..offer() },
            Answers::default(),
            UpdateState::Rejected,
            "version 0.9.0 is not greater than the running 1.0.0",
        ),
        (
            "same",
            Announcement { version: "1.0.0".into(), ..offer() },
            Answers::default(),
            UpdateState::Rejected,
            "version 1.0.0 is not greater than the running 1.0.0",
        ),
        (
            "rollback upwards",
            Announcement { rollback: true, ..offer() },
            Answers::default(),
            UpdateState::Rejected,
            "a rollback must bring a version lower than the running 1.0.0",
        ),
        (
            "no space",
            offer(),
            Answers { disk: Disk { free_space: Ok(2_099), staged: None }, ..Answers::default() },
            UpdateState::Rejected,
            "not enough free space: the package needs 2100 bytes (twice its 1000 bytes plus update.reserve_bytes), \
             2099 are free",
        ),
        (
            "free space unknown",
            offer(),
            Answers { disk: Disk { free_space: Err("EIO".into()), staged: None }, ..Answers::default() },
            UpdateState::Failed,
            "checking free space: EIO",
        ),
        (
            "staging",
            offer(),
            Answers { staging: Err("read-only file system".into()), ..Answers::default() },
            UpdateState::Failed,
            "staging the download: read-only file system",
        ),
    ];
    for (what, announcement, answers, state, reason) in cases {
        let mut device = Device::new();
        device.answers = answers;
        let actions = device.announce(&announcement);
        let (refused, why, final_for_package) = outcome(&actions);
        assert_eq!(refused, state, "{what}");
        assert!(why.starts_with(reason), "{what}: {why}");
        assert!(!final_for_package, "{what}: an announcement refusal is not remembered");
        let status = statuses(&actions).last().copied().unwrap();
        assert_eq!((status.update_id.as_deref(), status.size), (Some(announcement.id.as_str()), announcement.size));
        assert_eq!(count(&actions, |a| matches!(a, Action::RequestChunks(_))), 0, "{what}: nothing downloaded");
        let again = device.announce(&announcement);
        assert!(!matches!(again.as_slice(), [Action::PublishStatus(_)]), "{what}: evaluated again, not repeated");
    }
}

#[test]
fn a_package_of_more_than_2_pow_20_chunks_is_refused() {
    let mut device = Device::new();
    device.reconfigure(UpdateSettings { max_package_bytes: u64::MAX, ..config() });
    let (state, reason, _) = outcome(&device.announce(&Announcement { size: (1 << 20) + 1, chunk_size: 1, ..offer() }));
    assert_eq!(
        (state, reason.as_str()),
        (UpdateState::Rejected, "1048577 chunks are more than 1048576: push with a larger chunk size")
    );
}

#[test]
fn an_announcement_starts_the_download_and_asks_for_a_window_of_chunks() {
    let mut device = Device::new();
    let actions = device.announce(&offer());
    assert!(
        matches!(&actions[..2], [Action::SaveGuard(_), Action::OpenStaging(announcement)] if *announcement == offer())
    );
    let status = statuses(&actions)[0];
    assert_eq!((status.state, status.bytes, status.size, status.percent), (UpdateState::Downloading, 0, SIZE, 0.0));
    assert_eq!(requests(&actions), [vec![[0, 4]]]);
    let Some(Action::RequestChunks(request)) = actions.last() else { panic!("{actions:#?}") };
    assert_eq!((request.id.as_str(), request.device.as_str()), (offer().id.as_str(), "d1"));
}

/// README: a rollback push may bring a lower version, and a resumed download needs space for the slot only.
#[test]
fn a_rollback_push_and_a_resumed_download_are_taken() {
    let mut device = Device::new();
    let rollback = Announcement { version: "0.9.0".into(), rollback: true, ..offer() };
    assert!(opens_staging(&device.announce(&rollback)));

    let mut device = Device::new();
    device.answers.disk = Disk { free_space: Ok(1_100), staged: Some(offer()) };
    assert!(opens_staging(&device.announce(&offer())), "once the package plus the reserve");
}

/// README: broker outage -> a repeated announcement of the download makes the device ask again at once; another
/// push of the package (or the pusher's first announcement after a restart) is answered with the progress.
#[test]
fn a_repeated_announcement_asks_again_for_the_chunks_in_flight() {
    let mut device = Device::new();
    let order = device.sign(Target::Device("d1".into()), Instruction::Announce(offer()));
    device.announce_json(Device::sealed(&order, &device.key));
    let actions = device.announce_json(Device::sealed(&order, &device.key));
    assert_eq!(requests(&actions), [vec![[0, 4]]]);
    assert!(!opens_staging(&actions));

    let actions = device.announce(&offer());
    assert!(requests(&actions).is_empty(), "the chunks in flight are not asked for twice");
    let status = statuses(&actions)[0];
    assert_eq!((status.state, status.order), (UpdateState::Downloading, Some(device.counter)));
}

/// README: announcement of another package during a download -> drops the download, starts the new one.
#[test]
fn another_package_replaces_the_download() {
    let mut device = Device::new();
    device.announce(&offer());
    let actions = device.announce(&other_offer());
    assert!(matches!(&actions[1], Action::OpenStaging(announcement) if *announcement == other_offer()));
    assert_eq!(statuses(&actions)[0].update_id, Some(other_offer().id));
    assert!(device.chunk(0).is_empty(), "chunks of the old download are ignored");
}

/// README: announcement while an update is on probation -> ignored (its counter is taken); one of the candidate
/// itself is answered with the probation status.
#[test]
fn announcements_during_probation_are_ignored() {
    let mut device = Device::new();
    device.push();
    assert!(matches!(device.announce(&other_offer()).as_slice(), [Action::SaveGuard(_)]));
    assert_eq!(states(&device.announce(&offer())), [UpdateState::Probation]);
}

// ---- download ----

#[test]
fn chunks_are_written_and_more_are_asked_for_when_half_have_come() {
    let mut device = Device::new();
    device.announce(&offer());
    let actions = device.chunk(0);
    assert_eq!(actions[0], Action::WriteChunk { index: 0, offset: 0, bytes: vec![7; 100] });
    assert!(requests(&actions).is_empty(), "3 of 4 still in flight");
    let actions = device.chunk(1);
    assert!(matches!(actions[0], Action::WriteChunk { index: 1, offset: 100, .. }));
    assert_eq!(requests(&actions), [vec![[4, 6]]], "half in: the window is filled again");
    assert_eq!(device.chunk(1), vec![], "a duplicate is neither written nor counted");
}

/// README: chunk of the wrong length or index -> dropped (logged), asked for again later.
#[test]
fn chunks_of_the_wrong_length_or_index_or_update_are_dropped() {
    let mut device = Device::new();
    device.announce(&offer());
    for (id, index, length) in [(offer().id, 0, 99), (offer().id, 10, 100), (other_offer().id, 0, 100)] {
        assert_eq!(device.on(Event::Chunk { id, index, payload: vec![0; length] }), vec![]);
    }
    let actions = device.after(Duration::from_secs(5));
    assert!(requests(&actions).contains(&vec![[0, 4]]), "asked for again after the request timeout");
}

/// README: I/O failure while staging a chunk -> the chunk is not counted and is written again when it comes.
#[test]
fn a_chunk_that_cannot_be_written_is_not_counted() {
    let mut device = Device::new();
    device.announce(&offer());
    device.answers.write = Err("EIO".into());
    device.chunk(0);
    device.answers.write = Ok(());
    let actions = device.chunk(0);
    assert!(matches!(actions[0], Action::WriteChunk { index: 0, .. }), "{actions:#?}");
}

/// Chunks are made durable every request window (here 4 < 32) and 500 ms after an unsaved one.
#[test]
fn chunks_are_persisted_every_window_and_every_half_second() {
    let persisted = |actions: &[Action]| count(actions, |a| matches!(a, Action::PersistStaging(_)));
    let mut device = Device::new();
    device.announce(&offer());
    let mut actions = Vec::new();
    for index in 0..4 {
        actions.extend(device.chunk(index));
    }
    assert_eq!(persisted(&actions), 1);
    assert_eq!(
        actions.iter().find(|a| matches!(a, Action::PersistStaging(_))),
        Some(&Action::PersistStaging(vec![0x0f, 0]))
    );
    device.chunk(4);
    assert_eq!(persisted(&device.after(Duration::from_millis(499))), 0);
    assert_eq!(persisted(&device.after(Duration::from_millis(1))), 1);
    assert_eq!(persisted(&device.after(Duration::from_millis(500))), 0, "nothing new to save");
}

/// README: progress is published at most once a second.
#[test]
fn progress_is_published_once_a_second() {
    let mut device = Device::new();
    device.announce(&offer());
    device.chunk(0);
    assert!(statuses(&device.after(Duration::from_millis(999))).is_empty());
    let actions = device.after(Duration::from_millis(1));
    let status = statuses(&actions)[0];
    assert_eq!((status.state, status.bytes, status.percent), (UpdateState::Downloading, 100, 10.0));
}

/// README: broker outage, lost requests or chunks -> after `request_timeout_secs` without a chunk the device asks
/// again for whatever is missing, and keeps asking: a download is never abandoned.
#[test]
fn missing_chunks_are_asked_for_again_after_the_request_timeout() {
    let mut device = Device::new();
    device.announce(&offer());
    device.chunk(0);
    assert!(requests(&device.after(Duration::from_millis(4_999))).is_empty());
    assert_eq!(requests(&device.after(Duration::from_millis(1))), [vec![[1, 5]]]);
    assert!(requests(&device.after(Duration::from_secs(1))).is_empty());
    assert_eq!(requests(&device.after(Duration::from_secs(4))), [vec![[1, 5]]], "and again");
}

#[test]
fn the_next_deadline_is_the_nearest_timer() {
    let mut device = Device::new();
    assert_eq!(device.machine.next_deadline(), None, "idle: nothing is timed");
    let start = device.now;
    device.announce(&offer());
    assert_eq!(device.machine.next_deadline(), Some(start + Duration::from_secs(1)), "progress");
    device.now += Duration::from_millis(200);
    device.chunk(0);
    assert_eq!(device.machine.next_deadline(), Some(start + Duration::from_millis(500)), "an unsaved chunk");
    device.after(Duration::from_millis(300));
    assert_eq!(device.machine.next_deadline(), Some(start + Duration::from_secs(1)));
    device.push();
    assert_eq!(device.machine.next_deadline(), Some(device.now + Duration::from_millis(100)), "probation");
}

#[test]
fn a_stop_makes_the_unsaved_chunks_durable() {
    let mut device = Device::new();
    device.announce(&offer());
    assert_eq!(device.on(Event::Stop), vec![]);
    device.chunk(0);
    assert_eq!(device.on(Event::Stop), vec![Action::PersistStaging(vec![1, 0])]);
}

// ---- verification, self-test, activation ----

#[test]
fn a_complete_package_is_verified_self_tested_and_swapped_in() {
    let mut device = Device::new();
    let actions = device.push();
    let kinds: Vec<String> =
        actions.iter().map(|a| format!("{a:?}").split([' ', '(', '{']).next().unwrap().to_owned()).collect();
    assert_eq!(
        kinds[kinds.len() - 11..],
        [
            "PersistStaging",
            "PublishStatus",
            "CheckPackage",
            "Unpack",
            "BuildPipeline",
            "PublishStatus",
            "SelfTest",
            "DiscardStaging",
            "Activate",
            "SwapIn",
            "RecordStatus"
        ]
    );
    let verifying = statuses(&actions).into_iter().find(|s| s.state == UpdateState::Verifying).unwrap();
    assert_eq!((verifying.bytes, verifying.size, verifying.percent), (SIZE, SIZE, 100.0));
    let (state, _, final_for_package) = outcome(&actions);
    assert_eq!((state, final_for_package), (UpdateState::Probation, false));
    assert_eq!(statuses(&actions).last().unwrap().running_version, "1.1.0");
    assert!(actions.contains(&Action::Activate { model: 0, update_id: offer().id, version: "1.1.0".into() }));
    assert_eq!(device.running_version(), "1.1.0");
}

/// README: the failure table's rows about a complete package. A refusal on the package's merits is remembered;
/// a failure of the device is not. Each discards the download and the candidate, and the old model serves.
#[test]
fn a_package_refused_after_download_reports_why_and_keeps_the_running_model() {
    let mut other_candidate = Answers::default().unpacked.unwrap();
    other_candidate.name = "demo-ng".into();
    let images = Candidate { takes_images: true, ..Answers::default().unpacked.unwrap() };
    let untested = Candidate { has_self_test: false, ..Answers::default().unpacked.unwrap() };
    let rows: Vec<(&str, Answers, UpdateState, &str)> = vec![
        (
            "sha256",
            Answers {
                checked: Err(Refusal::rejected("package sha256 is 00, but the announcement says 5e")),
                ..Answers::default()
            },
            UpdateState::Rejected,
            "package sha256 is 00",
        ),
        (
            "signature",
            Answers {
                checked: Err(Refusal::rejected("the package is unsigned; a signature by a trusted key is required")),
                ..Answers::default()
            },
            UpdateState::Rejected,
            "the package is unsigned",
        ),
        (
            "manifest version",
            Answers { checked: Ok("0.9.0".into()), ..Answers::default() },
            UpdateState::Rejected,
            "version 0.9.0 is not greater than the running 1.0.0",
        ),
        (
            "slot I/O",
            Answers { unpacked: Err(Refusal::failed("preparing the candidate slot: ENOSPC")), ..Answers::default() },
            UpdateState::Failed,
            "preparing the candidate slot: ENOSPC",
        ),
        (
            "malformed package",
            Answers { unpacked: Err(Refusal::rejected("file hash differs")), ..Answers::default() },
            UpdateState::Rejected,
            "file hash differs",
        ),
        (
            "name differs",
            Answers { unpacked: Ok(other_candidate), ..Answers::default() },
            UpdateState::Rejected,
            "the announcement says demo 1.1.0, the package holds demo-ng 1.1.0",
        ),
        (
            "kind of input",
            Answers { unpacked: Ok(images), ..Answers::default() },
            UpdateState::Rejected,
            "source wrist cannot feed this model's kind of input",
        ),
        (
            "graph",
            Answers { built: Err(Refusal::rejected("manifest does not match the graph")), ..Answers::default() },
            UpdateState::Rejected,
            "manifest does not match the graph",
        ),
        (
            "provider",
            Answers { built: Ok("cuda".into()), ..Answers::default() },
            UpdateState::Rejected,
            "the candidate would run on cuda, the running model runs on cpu",
        ),
        (
            "no golden vectors",
            Answers { unpacked: Ok(untested), ..Answers::default() },
            UpdateState::Rejected,
            "the package has no golden self-test vectors",
        ),
        (
            "self-test",
            Answers { self_test: Err(Refusal::rejected("self-test failed: cases[0]")), ..Answers::default() },
            UpdateState::Rejected,
            "self-test failed: cases[0]",
        ),
    ];
    for (what, answers, state, reason) in rows {
        let mut device = Device::new();
        device.answers = answers;
        let actions = device.push();
        let (refused, why, final_for_package) = outcome(&actions);
        assert_eq!(refused, state, "{what}");
        assert!(why.starts_with(reason), "{what}: {why}");
        assert_eq!(final_for_package, state == UpdateState::Rejected, "{what}");
        let status = statuses(&actions).last().copied().unwrap();
        assert_eq!((status.bytes, status.percent, status.running_version.as_str()), (SIZE, 100.0, "1.0.0"), "{what}");
        let tail = &actions[actions.len() - 3..];
        assert!(
            matches!(tail, [Action::DiscardStaging, Action::DropCandidate, Action::RecordStatus(_)]),
            "{what}: {tail:#?}"
        );
        assert_eq!(count(&actions, |a| matches!(a, Action::SwapIn { .. })), 0, "{what}: never served");
        assert_eq!(device.running_version(), "1.0.0");
        assert_eq!(device.machine.next_deadline(), None, "{what}: idle again");

        // Not tried again when refused on its merits; a failed one may pass another time.
        device.answers = Answers::default();
        let again = device.announce(&offer());
        assert_eq!(opens_staging(&again), state == UpdateState::Failed, "{what}");
        if state == UpdateState::Rejected {
            assert_eq!(states(&again), [UpdateState::Rejected], "{what}: the outcome is said again");
        }
    }
}

#[test]
fn a_candidate_on_another_provider_is_taken_unless_required_the_same() {
    let mut device = Device::new();
    device.reconfigure(UpdateSettings {
        probation: ProbationLimits { require_same_provider: false, ..config().probation },
        ..config()
    });
    device.answers.built = Ok("cuda".into());
    assert_eq!(outcome(&device.push()).0, UpdateState::Probation);
    assert_eq!(device.machine.models[0].workers[0].provider, "cuda");
}

#[test]
fn every_source_of_the_model_gets_a_pipeline() {
    let two = ModelView {
        workers: vec![
            model("demo").workers[0].clone(),
            WorkerView { source: "chest".into(), ..model("demo").workers[0].clone() },
        ],
        ..model("demo")
    };
    let mut device = Device::with(vec![two], None);
    let actions = device.push();
    assert_eq!(count(&actions, |a| matches!(a, Action::BuildPipeline { model: 0 })), 2);
    assert_eq!(outcome(&actions).0, UpdateState::Probation);
}

/// README: slot cannot be written -> `failed`, and the same package may be pushed again.
#[test]
fn a_candidate_that_cannot_be_recorded_active_fails() {
    let mut device = Device::new();
    device.answers.activated = Err("EIO".into());
    let actions = device.push();
    let (state, reason, final_for_package) = outcome(&actions);
    assert_eq!(
        (state, reason.as_str(), final_for_package),
        (UpdateState::Failed, "recording the candidate as active: EIO", false)
    );
    assert!(actions.contains(&Action::DropCandidate));
    assert_eq!(device.running_version(), "1.0.0");
    device.answers = Answers::default();
    assert!(opens_staging(&device.announce(&offer())));
}

// ---- probation ----

#[test]
fn the_candidate_is_judged_every_100_ms() {
    let mut device = Device::new();
    device.push();
    let sampled = |actions: &[Action]| actions.contains(&Action::SampleScores);
    assert!(!sampled(&device.after(Duration::from_millis(99))));
    assert!(sampled(&device.after(Duration::from_millis(1))));
    assert!(!sampled(&device.after(Duration::from_millis(50))));
    assert!(sampled(&device.after(Duration::from_millis(50))));
}

/// README: probation limit broken -> the previous model is swapped back, `rolled_back`, never tried again.
#[test]
fn a_candidate_that_breaks_a_limit_is_rolled_back() {
    let mut device = Device::new();
    device.push();
    device.answers.scores = vec![snapshot(4, 2)];
    let actions = device.after(Duration::from_millis(100));
    let (state, reason, final_for_package) = outcome(&actions);
    assert_eq!(state, UpdateState::RolledBack);
    assert_eq!(reason, "probation failed: error rate 50.0% against 0.0% before (limit +5.0 points)");
    assert!(final_for_package);
    assert!(
        matches!(&actions[1..3], [Action::SwapBack { model: 0 }, Action::RecordRollback { model: 0 }]),
        "{actions:#?}"
    );
    let status = statuses(&actions)[0];
    assert_eq!((status.version.as_str(), status.running_version.as_str()), ("1.1.0", "1.0.0"));
    assert_eq!(device.running_version(), "1.0.0");
    assert_eq!(device.machine.next_deadline(), None);
    assert_eq!(states(&device.announce(&offer())), [UpdateState::RolledBack], "not tried again");
}

#[test]
fn a_healthy_candidate_is_committed_at_the_end_of_the_window() {
    let mut device = Device::new();
    device.push();
    assert!(recorded(&device.after(Duration::from_millis(9_999))).is_empty());
    let actions = device.after(Duration::from_millis(1));
    assert!(actions.contains(&Action::Commit { model: 0 }));
    let (state, reason, final_for_package) = outcome(&actions);
    assert_eq!((state, reason.as_str(), final_for_package), (UpdateState::Committed, "", false));
    assert_eq!(statuses(&actions)[0].running_version, "1.1.0");
    assert_eq!(device.machine.next_deadline(), None);
    // README: a package already committed and running is answered `committed`.
    let again = device.announce(&offer());
    assert_eq!((states(&again), recorded(&again).len()), (vec![UpdateState::Committed], 0));
}

#[test]
fn a_commit_with_few_inputs_says_so() {
    let mut device = Device::new();
    device.push();
    device.answers.scores = vec![snapshot(2, 0)];
    let (_, reason, _) = outcome(&device.after(Duration::from_secs(10)));
    assert_eq!(reason, "committed after the probation window with only 2 inputs to judge");
}

/// README: commit cannot be written -> `failed`: the new model serves until the next start, which rolls back.
#[test]
fn a_commit_that_cannot_be_written_fails() {
    let mut device = Device::new();
    device.push();
    device.answers.slots = Err("EIO".into());
    let (state, reason, _) = outcome(&device.after(Duration::from_secs(10)));
    assert_eq!((state, reason.as_str()), (UpdateState::Failed, "recording the commit: EIO; the next start rolls back"));
}

#[test]
fn a_rollback_that_cannot_be_recorded_fails() {
    let mut device = Device::new();
    device.push();
    device.answers.slots = Err("EIO".into());
    let (state, reason, _) = outcome(&device.rollback(None));
    assert_eq!(
        (state, reason.as_str()),
        (UpdateState::Failed, "rollback requested; recording the rollback failed: EIO")
    );
}

// ---- commands ----

/// README: rollback command during probation -> the previous model is swapped back at once; the operator's
/// choice, not a verdict, so the package may be pushed again.
#[test]
fn a_rollback_command_during_probation_rolls_back_at_once() {
    let mut device = Device::new();
    device.push();
    let actions = device.rollback(Some("demo"));
    assert!(matches!(
        &actions[..3],
        [Action::SaveGuard(_), Action::SwapBack { model: 0 }, Action::RecordRollback { .. }]
    ));
    assert_eq!(outcome(&actions), (UpdateState::RolledBack, "rollback requested".into(), false));
    assert_eq!(statuses(&actions)[0].order, Some(device.counter), "the status answers the command");
    assert_eq!(device.running_version(), "1.0.0");
    assert!(opens_staging(&device.announce(&offer())), "pushed again, it is taken");
}

/// README: after a commit, the previous bundle is loaded and swapped in; one step back only. The floor comes
/// down to the version it returns to.
#[test]
fn a_rollback_command_after_a_commit_returns_to_the_previous_model() {
    let mut device = Device::new();
    device.push_and_commit();
    assert_eq!(device.machine.guard.floors.get("demo").map(String::as_str), Some("1.1.0"));
    let actions = device.rollback(None);
    assert!(matches!(
        &actions[..3],
        [Action::SaveGuard(_), Action::LoadPrevious { model: 0 }, Action::RecordRollback { .. }]
    ));
    assert_eq!(outcome(&actions), (UpdateState::RolledBack, "rollback requested".into(), false));
    let status = statuses(&actions)[0];
    assert_eq!((status.update_id.clone(), status.version.as_str()), (Some(offer().id), "1.1.0"));
    assert_eq!((status.running_version.as_str(), status.order), ("1.0.0", Some(device.counter)));
    assert_eq!(device.running_version(), "1.0.0");
    assert_eq!(device.machine.guard.floors.get("demo").map(String::as_str), Some("1.0.0"));
    assert!(matches!(actions.last(), Some(Action::RecordStatus(_))));
    let saved = actions.iter().rev().find_map(|a| if let Action::SaveGuard(g) = a { Some(g) } else { None });
    assert_eq!(saved.and_then(|guard| guard.floors.get("demo")).map(String::as_str), Some("1.0.0"));
}

/// README: rollback command with no previous model, or one that does not load -> `rejected`, not remembered.
#[test]
fn a_rollback_without_a_previous_model_is_refused() {
    let mut device = Device::new();
    device.answers.previous = Err("there is no previous model".into());
    let actions = device.rollback(None);
    assert_eq!(recorded(&actions).len(), 0);
    let status = statuses(&actions)[0];
    assert_eq!(status.state, UpdateState::Rejected);
    assert_eq!(
        (status.update_id.as_deref(), status.reason.as_deref()),
        (None, Some("rollback refused: there is no previous model"))
    );
    assert_eq!(status.order, Some(device.counter));
}

/// README: a rollback of a model the device does not run (or of no model with several) -> error event, kind
/// `unknown_model`.
#[test]
fn rollbacks_of_unknown_models_are_error_events() {
    let mut device = Device::new();
    assert_eq!(
        error_event(&device.rollback(Some("other"))),
        (ErrorStage::Command, ErrorKind::UnknownModel, "rollback of other: this device serves [\"demo\"]".into())
    );
    let mut device = Device::with(vec![model("demo"), model("gesture")], None);
    let (_, kind, message) = error_event(&device.rollback(None));
    assert_eq!(kind, ErrorKind::UnknownModel);
    assert!(message.starts_with("rollback of (no model named, and this device serves several)"), "{message}");
}

// ---- signed orders ----

/// Whether `actions` changed anything: only an error event, nothing saved, published or carried out.
fn refused(actions: &[Action], stage: ErrorStage, kind: ErrorKind) -> String {
    let (refused_stage, refused_kind, message) = error_event(actions);
    assert_eq!((refused_stage, refused_kind), (stage, kind), "{message}");
    assert_eq!(actions.len(), 1, "nothing but the error event: {actions:#?}");
    message
}

/// README: the unsigned command, a forged, an untrusted or an edited order -> error event, nothing done.
#[test]
fn unsigned_untrusted_and_edited_commands_are_refused() {
    let mut device = Device::new();
    device.push();
    let unsigned = device.command_json(br#"{"command":"rollback"}"#.to_vec());
    refused(&unsigned, ErrorStage::Command, ErrorKind::Malformed);

    let order = device.sign(Target::Device("d1".into()), Instruction::Rollback { model: None });
    let stranger = SigningKey::generate().unwrap();
    let untrusted = device.command_json(Device::sealed(&order, &stranger));
    let message = refused(&untrusted, ErrorStage::Command, ErrorKind::UntrustedKey);
    assert!(message.starts_with("order refused: the order is signed by key"), "{message}");

    let mut envelope = packaging::order::seal(&order, &device.key);
    envelope.signed = envelope.signed.replace("\"model\":null", "\"model\":\"demo\"");
    let edited = device.command_json(serde_json::to_vec(&envelope).unwrap());
    refused(&edited, ErrorStage::Command, ErrorKind::BadSignature);

    let announcement = device.sign(Target::Device("d1".into()), Instruction::Announce(offer()));
    let on_the_wrong_topic = device.command_json(Device::sealed(&announcement, &device.key));
    assert!(refused(&on_the_wrong_topic, ErrorStage::Command, ErrorKind::Malformed).contains("not a command"));
    assert_eq!(device.running_version(), "1.1.0", "still on probation");
}

/// README: a signed fetch of retraining evidence is carried out once, whatever the update is doing; unsigned,
/// replayed or misaddressed, it is refused like any order.
#[test]
fn evidence_fetches_are_signed_orders() {
    let mut device = Device::new();
    device.push();
    let fetch = |candidate: &str| Instruction::FetchEvidence { candidate: candidate.to_owned() };
    let order = device.sign(Target::Device("d1".into()), fetch("1700000000000-0"));
    let actions = device.command_json(Device::sealed(&order, &device.key));
    assert!(
        matches!(&actions[..], [Action::SaveGuard(_), Action::PublishEvidence { candidate, order: counter }]
            if candidate == "1700000000000-0" && *counter == order.counter),
        "{actions:#?}"
    );
    assert_eq!(device.running_version(), "1.1.0", "the candidate stays on probation");
    let replay = device.command_json(Device::sealed(&order, &device.key));
    refused(&replay, ErrorStage::Command, ErrorKind::Replayed);
    let unsigned = br#"{"fetch_evidence":{"candidate":"1700000000000-0"}}"#.to_vec();
    refused(&device.command_json(unsigned), ErrorStage::Command, ErrorKind::Malformed);
    let elsewhere = device.sign(Target::Device("d2".into()), fetch("1700000000000-0"));
    refused(
        &device.command_json(Device::sealed(&elsewhere, &device.key)),
        ErrorStage::Command,
        ErrorKind::Misaddressed,
    );
}

/// README: an order for another device, or a group the device is not in -> `misaddressed`; one for its group
/// is taken.
#[test]
fn orders_for_others_are_refused_and_orders_for_its_groups_taken() {
    let mut device = Device::new();
    device.reconfigure(UpdateSettings { groups: vec!["lab".into()], ..config() });
    for target in [Target::Device("d2".into()), Target::Group("field".into())] {
        let order = device.sign(target, Instruction::Rollback { model: None });
        let actions = device.command_json(Device::sealed(&order, &device.key));
        refused(&actions, ErrorStage::Command, ErrorKind::Misaddressed);
    }
    let order = device.sign(Target::Group("lab".into()), Instruction::Announce(offer()));
    assert!(opens_staging(&device.announce_json(Device::sealed(&order, &device.key))));
}

/// README: an order past its expiry -> `expired`.
#[test]
fn expired_orders_are_refused() {
    let mut device = Device::new();
    let order = device.sign(Target::Device("d1".into()), Instruction::Announce(offer()));
    device.wall_ms += ORDER_LIFE_MS + 1;
    let actions = device.announce_json(Device::sealed(&order, &device.key));
    refused(&actions, ErrorStage::Announce, ErrorKind::Expired);
}

/// README: a counter below the last one taken, or the last one on another order -> `replayed`; the same
/// announcement again (a pusher repeating it) is taken.
#[test]
fn replayed_orders_are_refused_and_repeats_taken() {
    let mut device = Device::new();
    let old = device.sign(Target::Device("d1".into()), Instruction::Announce(other_offer()));
    let current = device.sign(Target::Device("d1".into()), Instruction::Announce(offer()));
    let actions = device.announce_json(Device::sealed(&current, &device.key));
    assert!(matches!(&actions[0], Action::SaveGuard(guard) if guard.counter == current.counter), "{actions:#?}");
    assert!(opens_staging(&actions), "carried out once its counter is saved");

    let repeated = device.announce_json(Device::sealed(&current, &device.key));
    assert_eq!(requests(&repeated), [vec![[0, 4]]], "a repeat asks again, saves nothing");
    let replay = device.announce_json(Device::sealed(&old, &device.key));
    assert!(refused(&replay, ErrorStage::Announce, ErrorKind::Replayed).contains("is below the last taken"));
    let same_counter = Order { instruction: Instruction::Rollback { model: None }, ..current.clone() };
    let actions = device.command_json(Device::sealed(&same_counter, &device.key));
    refused(&actions, ErrorStage::Command, ErrorKind::Replayed);
}

/// README: the counter is on disk before the order is carried out, so a replay after a restart is refused; if
/// it cannot be saved, the order is not carried out.
#[test]
fn the_counter_is_saved_before_the_order_is_carried_out() {
    let mut device = Device::new();
    device.answers.guard = Err("read-only file system".into());
    let actions = device.announce(&offer());
    assert!(matches!(actions[0], Action::SaveGuard(_)));
    let (stage, kind, message) = error_event(&actions);
    assert_eq!((stage, kind), (ErrorStage::Announce, ErrorKind::Io));
    assert!(message.contains("recording its counter failed: read-only file system"), "{message}");
    assert!(!opens_staging(&actions));
    assert_eq!(device.machine.guard, Guard::default(), "nothing changed");

    device.answers.guard = Ok(());
    let order = device.sign(Target::Device("d1".into()), Instruction::Rollback { model: None });
    device.command_json(Device::sealed(&order, &device.key));
    let guard = device.machine.guard.clone();
    assert_eq!(guard.counter, order.counter);
    let mut restarted = Device::with_guard(vec![model("demo")], None, guard);
    restarted.key = device.key.clone();
    restarted.reconfigure(config());
    let replay = restarted.command_json(Device::sealed(&order, &device.key));
    assert!(refused(&replay, ErrorStage::Command, ErrorKind::Replayed).contains("carried out already"));
    let older = Order { counter: order.counter - 1, ..order };
    refused(&restarted.command_json(Device::sealed(&older, &device.key)), ErrorStage::Command, ErrorKind::Replayed);
}

// ---- version floor ----

/// README: a commit raises the floor; a device that lost its slots (state reset) still refuses a version below
/// it, and takes one at or above it.
#[test]
fn versions_below_the_floor_are_refused() {
    let mut device = Device::new();
    let actions = device.push_and_commit();
    let saved: Vec<&Guard> =
        actions.iter().filter_map(|a| if let Action::SaveGuard(g) = a { Some(g) } else { None }).collect();
    assert_eq!(saved.last().and_then(|guard| guard.floors.get("demo")).map(String::as_str), Some("1.1.0"));
    let guard = Guard { floors: [("demo".to_owned(), "1.2.0".to_owned())].into(), ..device.machine.guard.clone() };

    let mut reset = Device::with_guard(vec![model("demo")], None, guard);
    reset.key = device.key.clone();
    reset.counter = device.counter;
    reset.reconfigure(config());
    let (state, reason, final_for_package) = outcome(&reset.announce(&offer()));
    assert_eq!(state, UpdateState::Rejected);
    assert!(reason.starts_with("version 1.1.0 is below this device's version floor 1.2.0"), "{reason}");
    assert!(!final_for_package);
    assert!(opens_staging(&reset.announce(&Announcement { version: "1.2.0".into(), ..offer() })));
}

/// README: a signed downgrade names its version: it goes below the floor, and its commit brings the floor down.
#[test]
fn a_signed_downgrade_goes_below_the_floor() {
    let guard = Guard { floors: [("demo".to_owned(), "1.0.0".to_owned())].into(), ..Guard::default() };
    let mut device = Device::with_guard(vec![model("demo")], None, guard);
    device.answers.checked = Ok("0.9.0".into());
    device.answers.unpacked = Ok(Candidate { version: "0.9.0".into(), ..device.answers.unpacked.clone().unwrap() });
    let downgrade = Announcement { version: "0.9.0".into(), rollback: true, ..offer() };
    let mut actions = device.announce(&downgrade);
    for index in 0..10 {
        actions.extend(device.chunk(index));
    }
    actions.extend(device.after(Duration::from_secs(10)));
    assert_eq!(outcome(&actions[actions.len() - 3..]).0, UpdateState::Committed, "{actions:#?}");
    assert_eq!(device.machine.guard.floors.get("demo").map(String::as_str), Some("0.9.0"));
}

// ---- chunks and remembered outcomes ----

/// README: a chunk that does not match its signed sha256 -> refused on arrival, asked for again; the release
/// still installs.
#[test]
fn a_poisoned_chunk_is_refused_and_fetched_again() {
    let mut device = Device::new();
    device.announce(&offer());
    let poisoned = device.on(Event::Chunk { id: offer().id, index: 0, payload: vec![6; CHUNK as usize] });
    assert!(poisoned.is_empty(), "not written: {poisoned:#?}");
    let actions = device.chunk(1);
    assert_eq!(requests(&actions), [vec![[0, 1], [4, 5]]], "asked for again with the next window");
    let mut actions = Vec::new();
    for index in 0..10 {
        actions.extend(device.chunk(index));
    }
    assert_eq!(outcome(&actions).0, UpdateState::Probation);
}

/// README: a package that does not hash to its signed sha256 after all (the device's disk) -> `failed`, not
/// remembered: only the package's own refusals and probation verdicts are.
#[test]
fn only_verdicts_on_the_package_are_remembered() {
    let mut device = Device::new();
    device.answers.checked = Err(Refusal::failed("package sha256 is 00.., but the announcement says 5e.."));
    let (state, _, final_for_package) = outcome(&device.push());
    assert_eq!((state, final_for_package), (UpdateState::Failed, false));
    assert!(opens_staging(&device.announce(&offer())), "taken again");
}

/// Statuses answer the order that asked for them (`order` = its counter): a pusher takes no other.
#[test]
fn statuses_answer_the_order_that_asked() {
    let mut device = Device::new();
    assert_eq!(statuses(&device.start())[0].order, None, "nobody asked for the state at start");
    let actions = device.push();
    let first = device.counter;
    assert!(statuses(&actions).iter().all(|status| status.order == Some(first)), "{actions:#?}");
    // Another push of the candidate on probation is answered too, and gets the outcome.
    let again = device.announce(&offer());
    assert_eq!(states(&again), [UpdateState::Probation]);
    assert_eq!(statuses(&again)[0].order, Some(device.counter));
    let committed = device.after(Duration::from_secs(10));
    assert_eq!(statuses(&committed)[0].order, Some(device.counter));
    assert!(device.counter > first);
}

// ---- helpers ----

#[test]
fn ranges_merge_neighbours() {
    assert_eq!(download::ranges(&[0, 1, 2, 5, 6, 9]), vec![[0, 3], [5, 7], [9, 10]]);
    assert!(download::ranges(&[]).is_empty());
}

#[test]
fn versions_must_rise_unless_rolling_back() {
    assert!(check_version("1.0.0", None, "1.1.0", false).is_ok());
    assert!(check_version("1.1.0", None, "1.1.0", false).is_err());
    assert!(check_version("1.1.0", None, "1.0.0", false).is_err());
    assert!(check_version("1.1.0", None, "1.0.0", true).is_ok());
    assert!(check_version("1.0.0", None, "1.1.0", true).is_err());
    assert!(check_version("1.0.0", None, "one", false).is_err());
    assert!(check_version("not semver", None, "1.0.0", false).is_ok(), "a running version that is not semver");
    assert!(check_version("1.0.0", Some("1.2.0"), "1.1.0", false).is_err(), "below the floor");
    assert!(check_version("1.0.0", Some("1.2.0"), "1.2.0", false).is_ok(), "at the floor");
    assert!(check_version("1.2.0", Some("1.2.0"), "1.1.0", true).is_ok(), "a signed downgrade");
}
