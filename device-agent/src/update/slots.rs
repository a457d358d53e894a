//! The bundles one model name can boot from: the factory bundle (the directory the config names, never
//! written) and two slots the updates take turns in.
//!
//! ```text
//! <state_dir>/models/<model name>/
//!     slot-a/  slot-b/   unpacked bundles; a candidate is unpacked into slot-X.tmp/ and renamed when complete
//!     state.json         {"active": "factory"|"a"|"b", "previous": null|"factory"|"a"|"b",
//!                         "phase": "committed"|"probation", "update_id": null|"..", "version": null|".."}
//! ```
//!
//! Invariant: at every instant (a power cut may fall between any two syscalls) `state.json` names as `active`,
//! and as `previous` when set, only directories that are complete and fsynced. It holds because:
//! - `state.json` is only ever replaced with [`write_atomic`], so it is always the old or the new state;
//! - a slot is written only as `slot-X.tmp/`, fsynced file by file, renamed to `slot-X/` and its parent
//!   fsynced before `state.json` may name it;
//! - the candidate slot is never the active one, and `state.json` durably stops naming it as `previous`
//!   before it is removed.
//!
//! An agent that stops while an update is on probation comes back on the previous bundle: a model that may
//! have killed the agent gets no second chance.

use super::fsutil::{fsync_dir, fsync_tree, remove_dir_all_if_exists, tmp_path, write_atomic};
pub(super) use device_update::machine::Recovery;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

const MODELS_DIR: &str = "models";
const STATE_FILE: &str = "state.json";

/// Where a bundle lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Slot {
    Factory,
    A,
    B,
}

/// Whether the active bundle is proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Phase {
    Committed,
    /// The active bundle came with update `update_id` and is being judged against the previous one.
    Probation,
}

/// `state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlotState {
    active: Slot,
    previous: Option<Slot>,
    phase: Phase,
    /// The last update activated (on probation, committed or rolled back); `None` before the first.
    update_id: Option<String>,
    /// That update's version.
    version: Option<String>,
}

impl Default for SlotState {
    fn default() -> Self {
        SlotState { active: Slot::Factory, previous: None, phase: Phase::Committed, update_id: None, version: None }
    }
}

/// The candidate slot between [`SlotStore::begin_candidate`] and [`SlotStore::activate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Candidate {
    Unpacking(Slot),
    Installed(Slot),
}

/// The slots of one model name.
#[derive(Debug)]
pub struct SlotStore {
    /// `<state_dir>/models/<model name>`.
    dir: PathBuf,
    factory: PathBuf,
    state: SlotState,
    candidate: Option<Candidate>,
}

impl SlotStore {
    /// Opens the slots of `model_name`, removes half-written leftovers and, when the agent stopped during a
    /// probation, rolls back. No `state.json` means the factory bundle, committed.
    pub fn open(state_dir: &Path, model_name: &str, factory_dir: &Path) -> io::Result<(SlotStore, Recovery)> {
        if model_name.is_empty() || model_name == "." || model_name == ".." || model_name.contains(['/', '\0']) {
            let message = format!("model name {model_name:?} cannot name a directory");
            return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
        }
        let dir = state_dir.join(MODELS_DIR).join(model_name);
        fs::create_dir_all(&dir)?;
        remove_tmp_entries(&dir)?;
        let (state, recovery) = match fs::read(dir.join(STATE_FILE)) {
            Ok(bytes) => match serde_json::from_slice::<SlotState>(&bytes) {
                Ok(state) if state.phase == Phase::Probation => {
                    let recovery = Recovery::RolledBack {
                        update_id: state.update_id.clone().unwrap_or_default(),
                        version: state.version.clone().unwrap_or_default(),
                    };
                    let rolled_back = SlotState {
                        active: state.previous.unwrap_or(Slot::Factory),
                        previous: None,
                        phase: Phase::Committed,
                        ..state
                    };
                    (rolled_back, recovery)
                }
                Ok(state) => (state, Recovery::None),
                Err(error) => (SlotState::default(), Recovery::Reset(format!("{STATE_FILE}: {error}"))),
            },
            Err(error) if error.kind() == io::ErrorKind::NotFound => (SlotState::default(), Recovery::None),
            Err(error) => return Err(error),
        };
        let mut store = SlotStore { dir, factory: factory_dir.to_owned(), state, candidate: None };
        if recovery != Recovery::None {
            // The repair is written at once, so that it is reported once.
            store.update(|_| {})?;
        }
        Ok((store, recovery))
    }

    /// The bundle directories to boot from, best first: active, previous, factory.
    pub fn boot_order(&self) -> Vec<PathBuf> {
        let mut order = vec![self.active_dir()];
        for dir in self.previous_dir().into_iter().chain([self.factory.clone()]) {
            if !order.contains(&dir) {
                order.push(dir);
            }
        }
        order
    }

    /// Empties the slot the next update goes to (never the active one; the previous one only when the other
    /// slot is active) and returns the directory to unpack the bundle into. Refused during a probation.
    pub fn begin_candidate(&mut self) -> io::Result<PathBuf> {
        if self.state.phase == Phase::Probation {
            return Err(io::Error::other("an update is on probation: commit or roll it back first"));
        }
        let (active, previous) = (self.state.active, self.state.previous);
        let slot = if active != Slot::A && previous != Some(Slot::A) {
            Slot::A
        } else if active != Slot::B {
            Slot::B
        } else {
            Slot::A
        };
        if previous == Some(slot) {
            self.update(|state| state.previous = None)?;
        }
        let dir = self.slot_dir(slot);
        let unpack_dir = tmp_path(&dir);
        remove_dir_all_if_exists(&dir)?;
        crash_point()?;
        remove_dir_all_if_exists(&unpack_dir)?;
        fs::create_dir(&unpack_dir)?;
        crash_point()?;
        self.candidate = Some(Candidate::Unpacking(slot));
        Ok(unpack_dir)
    }

    /// Makes the unpacked candidate durable and gives it its slot's name; returns that directory.
    pub fn install_candidate(&mut self) -> io::Result<PathBuf> {
        let Some(Candidate::Unpacking(slot)) = self.candidate else {
            return Err(io::Error::other("no candidate is being unpacked"));
        };
        let dir = self.slot_dir(slot);
        let unpack_dir = tmp_path(&dir);
        fsync_tree(&unpack_dir)?;
        crash_point()?;
        fs::rename(&unpack_dir, &dir)?;
        crash_point()?;
        fsync_dir(&self.dir)?;
        crash_point()?;
        self.candidate = Some(Candidate::Installed(slot));
        Ok(dir)
    }

    /// Makes the installed candidate active, on probation, with the active bundle as its previous one.
    pub fn activate(&mut self, update_id: &str, version: &str) -> io::Result<()> {
        let Some(Candidate::Installed(slot)) = self.candidate else {
            return Err(io::Error::other("no candidate is installed"));
        };
        self.update(|state| {
            state.previous = Some(state.active);
            state.active = slot;
            state.phase = Phase::Probation;
            state.update_id = Some(update_id.to_owned());
            state.version = Some(version.to_owned());
        })?;
        self.candidate = None;
        Ok(())
    }

    /// Ends the probation: the active bundle stays. The previous one is kept for an operator's rollback.
    pub fn commit(&mut self) -> io::Result<()> {
        self.update(|state| state.phase = Phase::Committed)
    }

    /// Makes the previous bundle active again and returns its directory; `None` when there is none.
    pub fn roll_back(&mut self) -> io::Result<Option<PathBuf>> {
        let Some(previous) = self.state.previous else {
            return Ok(None);
        };
        self.update(|state| {
            state.active = previous;
            state.previous = None;
            state.phase = Phase::Committed;
        })?;
        Ok(Some(self.slot_dir(previous)))
    }

    pub fn active_dir(&self) -> PathBuf {
        self.slot_dir(self.state.active)
    }

    pub fn previous_dir(&self) -> Option<PathBuf> {
        self.state.previous.map(|slot| self.slot_dir(slot))
    }

    /// The last update activated, whether on probation, committed or rolled back.
    pub fn update_id(&self) -> Option<&str> {
        self.state.update_id.as_deref()
    }

    /// The version of [`SlotStore::update_id`].
    pub fn version(&self) -> Option<&str> {
        self.state.version.as_deref()
    }

    fn slot_dir(&self, slot: Slot) -> PathBuf {
        match slot {
            Slot::Factory => self.factory.clone(),
            Slot::A => self.dir.join("slot-a"),
            Slot::B => self.dir.join("slot-b"),
        }
    }

    /// Writes the state `change` makes, then keeps it: memory never runs ahead of the disk.
    fn update(&mut self, change: impl FnOnce(&mut SlotState)) -> io::Result<()> {
        let mut state = self.state.clone();
        change(&mut state);
        let json = serde_json::to_vec_pretty(&state).map_err(io::Error::other)?;
        write_atomic(&self.dir.join(STATE_FILE), &json)?;
        self.state = state;
        crash_point()
    }
}

/// Removes what a crash left half-written: `slot-X.tmp/` and `state.json.tmp`.
fn remove_tmp_entries(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().as_encoded_bytes().ends_with(b".tmp") {
            if entry.file_type()?.is_dir() {
                fs::remove_dir_all(entry.path())?;
            } else {
                fs::remove_file(entry.path())?;
            }
        }
    }
    Ok(())
}

/// The point between two durable steps of an operation; tests stop there to simulate a power cut.
fn crash_point() -> io::Result<()> {
    #[cfg(test)]
    tests::crash_point()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        /// Steps the current operation may still take before the simulated power cut; `None`: no cut.
        static STEPS_LEFT: Cell<Option<usize>> = const { Cell::new(None) };
    }

    pub(super) fn crash_point() -> io::Result<()> {
        STEPS_LEFT.with(|left| match left.get() {
            Some(0) => Err(io::Error::other("simulated power cut")),
            Some(n) => {
                left.set(Some(n - 1));
                Ok(())
            }
            None => Ok(()),
        })
    }

    const BUNDLE_FILES: [&str; 2] = ["manifest.toml", "model.onnx"];

    struct Fixture {
        _root: tempfile::TempDir,
        state_dir: PathBuf,
        factory: PathBuf,
    }

    impl Fixture {
        fn new() -> Fixture {
            let root = tempfile::tempdir().unwrap();
            let state_dir = root.path().join("state");
            let factory = root.path().join("factory");
            fs::create_dir(&factory).unwrap();
            for file in BUNDLE_FILES {
                fs::write(factory.join(file), "factory").unwrap();
            }
            Fixture { _root: root, state_dir, factory }
        }

        fn open(&self) -> (SlotStore, Recovery) {
            SlotStore::open(&self.state_dir, "demo", &self.factory).unwrap()
        }

        fn model_dir(&self) -> PathBuf {
            self.state_dir.join(MODELS_DIR).join("demo")
        }
    }

    /// Unpacks, installs and activates a fake bundle whose files all hold `id`; each file is one step.
    fn stage_update(store: &mut SlotStore, id: &str) -> io::Result<()> {
        let dir = store.begin_candidate()?;
        for file in BUNDLE_FILES {
            fs::write(dir.join(file), id)?;
            crash_point()?;
        }
        store.install_candidate()?;
        store.activate(id, &format!("v-{id}"))
    }

    /// The id every file of a complete bundle holds; panics on an incomplete bundle.
    fn bundle_id(dir: &Path) -> String {
        let contents: Vec<String> = BUNDLE_FILES
            .iter()
            .map(|file| fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{}: {e}", dir.display())))
            .collect();
        assert!(contents.iter().all(|c| *c == contents[0]), "{} is incomplete: {contents:?}", dir.display());
        contents[0].clone()
    }

    #[test]
    fn full_cycle_factory_a_commit_b_roll_back_a() {
        let fixture = Fixture::new();
        let (mut store, recovery) = fixture.open();
        assert_eq!(recovery, Recovery::None);
        assert_eq!(store.boot_order(), vec![fixture.factory.clone()]);
        assert_eq!(store.roll_back().unwrap(), None);

        stage_update(&mut store, "one").unwrap();
        assert_eq!(store.state.phase, Phase::Probation);
        assert_eq!(store.active_dir(), fixture.model_dir().join("slot-a"));
        assert_eq!(store.boot_order(), vec![fixture.model_dir().join("slot-a"), fixture.factory.clone()]);
        store.commit().unwrap();

        let (mut store, recovery) = fixture.open();
        assert_eq!(recovery, Recovery::None);
        assert_eq!(store.state.phase, Phase::Committed);
        assert_eq!((store.update_id(), store.version()), (Some("one"), Some("v-one")));
        stage_update(&mut store, "two").unwrap();
        assert_eq!(bundle_id(&store.active_dir()), "two");
        assert_eq!(store.active_dir(), fixture.model_dir().join("slot-b"));
        assert_eq!(store.previous_dir(), Some(fixture.model_dir().join("slot-a")));

        assert_eq!(store.roll_back().unwrap(), Some(fixture.model_dir().join("slot-a")));
        assert_eq!((store.state.phase, store.previous_dir()), (Phase::Committed, None));
        let (store, recovery) = fixture.open();
        assert_eq!(recovery, Recovery::None);
        assert_eq!(bundle_id(&store.active_dir()), "one");
        assert_eq!(store.boot_order(), vec![fixture.model_dir().join("slot-a"), fixture.factory.clone()]);
    }

    #[test]
    fn a_stop_during_probation_rolls_back_at_open() {
        let fixture = Fixture::new();
        let (mut store, _) = fixture.open();
        stage_update(&mut store, "one").unwrap();
        store.commit().unwrap();
        stage_update(&mut store, "two").unwrap();
        drop(store);

        let (store, recovery) = fixture.open();
        assert_eq!(recovery, Recovery::RolledBack { update_id: "two".into(), version: "v-two".into() });
        assert_eq!((store.state.phase, bundle_id(&store.active_dir())), (Phase::Committed, "one".to_owned()));
        assert_eq!(store.previous_dir(), None);
        let (_, recovery) = fixture.open();
        assert_eq!(recovery, Recovery::None, "the rollback is durable");
    }

    #[test]
    fn leftovers_are_removed_at_open() {
        let fixture = Fixture::new();
        let (mut store, _) = fixture.open();
        let unpack_dir = store.begin_candidate().unwrap();
        fs::write(unpack_dir.join("model.onnx"), "half").unwrap();
        let state_tmp = tmp_path(&fixture.model_dir().join(STATE_FILE));
        fs::write(&state_tmp, "{").unwrap();
        drop(store);

        let (store, recovery) = fixture.open();
        assert_eq!(recovery, Recovery::None);
        assert!(!unpack_dir.exists() && !state_tmp.exists());
        assert_eq!(store.boot_order(), vec![fixture.factory.clone()]);
    }

    #[test]
    fn the_candidate_is_never_the_active_slot() {
        let fixture = Fixture::new();
        let (mut store, _) = fixture.open();
        for round in 0..6 {
            let active = store.active_dir();
            let active_id = bundle_id(&active);
            let unpack_dir = store.begin_candidate().unwrap();
            assert_ne!(unpack_dir, tmp_path(&active));
            for file in BUNDLE_FILES {
                fs::write(unpack_dir.join(file), round.to_string()).unwrap();
            }
            assert_ne!(store.install_candidate().unwrap(), active);
            assert_eq!(bundle_id(&active), active_id, "round {round}: the active bundle was touched");
            store.activate(&round.to_string(), "v").unwrap();
            assert!(store.begin_candidate().is_err(), "refused during probation");
            if round % 3 == 2 {
                assert_eq!(store.roll_back().unwrap(), Some(active));
            } else {
                store.commit().unwrap();
            }
        }
    }

    #[test]
    fn a_corrupt_state_falls_back_to_factory() {
        let fixture = Fixture::new();
        let (mut store, _) = fixture.open();
        stage_update(&mut store, "one").unwrap();
        store.commit().unwrap();
        fs::write(fixture.model_dir().join(STATE_FILE), "{\"active\":").unwrap();

        let (mut store, recovery) = fixture.open();
        assert!(matches!(recovery, Recovery::Reset(_)), "{recovery:?}");
        assert_eq!(store.boot_order(), vec![fixture.factory.clone()]);
        stage_update(&mut store, "two").unwrap();
        assert_eq!(bundle_id(&store.active_dir()), "two");
        assert_eq!(fixture.open().1, Recovery::RolledBack { update_id: "two".into(), version: "v-two".into() });
    }

    /// Stops a third update (which must reuse the slot `previous` names) and the two before it after every
    /// step, reopens, and checks that every bundle the store would boot from is complete.
    #[test]
    fn a_power_cut_between_any_two_steps_leaves_complete_bundles() {
        for updates_before in 0..3 {
            for steps in 0.. {
                let fixture = Fixture::new();
                let (mut store, _) = fixture.open();
                for round in 0..updates_before {
                    stage_update(&mut store, &format!("old{round}")).unwrap();
                    store.commit().unwrap();
                }
                STEPS_LEFT.with(|left| left.set(Some(steps)));
                let outcome = stage_update(&mut store, "new").and_then(|()| store.commit());
                STEPS_LEFT.with(|left| left.set(None));
                drop(store);

                let (mut store, _) = fixture.open();
                for dir in store.boot_order() {
                    bundle_id(&dir);
                }
                let leftovers = fs::read_dir(fixture.model_dir()).unwrap().flatten();
                assert!(leftovers.into_iter().all(|e| !e.file_name().to_string_lossy().ends_with(".tmp")));
                if outcome.is_ok() {
                    assert_eq!(bundle_id(&store.active_dir()), "new");
                    break;
                }
                let expected = match updates_before {
                    0 => "factory".to_owned(),
                    n => format!("old{}", n - 1),
                };
                let active = bundle_id(&store.active_dir());
                assert!(active == expected || active == "new", "after {steps} steps: {active}");
                stage_update(&mut store, "retry").unwrap();
                store.commit().unwrap();
                assert_eq!(bundle_id(&fixture.open().0.active_dir()), "retry");
            }
        }
    }
}
