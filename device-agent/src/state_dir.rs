//! `update.state_dir` at start, and while it is unusable. A read-only (what ext4 does to a failing SD card),
//! missing, full or failing state directory does not stop the agent: the sources serve their factory bundles,
//! the condition is raised, and the directory is tried again every `supervision.retry_secs`; updates start once
//! it works. Only a directory held by another agent is fatal: that is a configuration mistake.

use crate::conditions::{AGENT, Condition, Conditions};
use crate::shutdown::Shutdown;
use crate::update::ModelSlots;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// The state directory as the agent found it.
pub enum StateDir {
    Usable(ModelSlots),
    /// Not usable yet: why, and how to try again.
    Unusable {
        opener: SlotsOpener,
        error: io::Error,
    },
}

impl StateDir {
    /// Opens the slots of every factory bundle's model in `dir`. `Err` only when another agent holds it.
    pub fn open(dir: PathBuf, factories: Vec<PathBuf>) -> io::Result<StateDir> {
        let mut opener = SlotsOpener { dir, factories, locked: None };
        match opener.open() {
            Ok(slots) => Ok(StateDir::Usable(slots)),
            Err(error) if error.kind() == io::ErrorKind::ResourceBusy => Err(error),
            Err(error) => Ok(StateDir::Unusable { opener, error }),
        }
    }

    pub fn slots_mut(&mut self) -> Option<&mut ModelSlots> {
        match self {
            StateDir::Usable(slots) => Some(slots),
            StateDir::Unusable { .. } => None,
        }
    }

    /// The slots, at once or once the directory works (raising its condition meanwhile, clearing it then);
    /// `None` when `shutdown` comes first.
    pub fn wait_usable(self, conditions: &Conditions, retry: Duration, shutdown: &Shutdown) -> Option<ModelSlots> {
        let (mut opener, error) = match self {
            StateDir::Usable(slots) => return Some(slots),
            StateDir::Unusable { opener, error } => (opener, error),
        };
        let mut raised = opener.report(&error, conditions, None);
        loop {
            if shutdown.wait(retry) {
                return None;
            }
            match opener.open() {
                Ok(slots) => {
                    conditions.clear(raised, AGENT);
                    log::info!("{} works again: updates resume.", opener.dir.display());
                    return Some(slots);
                }
                Err(error) => raised = opener.report(&error, conditions, Some(raised)),
            }
        }
    }
}

/// Opens the model slots in the state directory, again and again until it works.
pub struct SlotsOpener {
    dir: PathBuf,
    factories: Vec<PathBuf>,
    /// The directory's lock, once taken: kept across attempts, since the same process cannot take it twice.
    locked: Option<ModelSlots>,
}

impl SlotsOpener {
    fn open(&mut self) -> io::Result<ModelSlots> {
        let mut slots = match self.locked.take() {
            Some(slots) => slots,
            None => ModelSlots::open(&self.dir)?,
        };
        for factory in &self.factories {
            if let Err(error) = slots.candidates(factory) {
                self.locked = Some(slots);
                return Err(error);
            }
        }
        Ok(slots)
    }

    /// Raises the condition `error` means (clearing the `previous` one when it is another); returns it.
    fn report(&self, error: &io::Error, conditions: &Conditions, previous: Option<Condition>) -> Condition {
        let condition = condition_of(error);
        if let Some(previous) = previous.filter(|&previous| previous != condition) {
            conditions.clear(previous, AGENT);
        }
        let detail =
            format!("update.state_dir {}: {error}; serving the factory bundles, updates wait", self.dir.display());
        conditions.raise(condition, AGENT, &detail);
        condition
    }
}

/// The condition an error of the state directory is reported as.
fn condition_of(error: &io::Error) -> Condition {
    match error.kind() {
        io::ErrorKind::ReadOnlyFilesystem | io::ErrorKind::PermissionDenied => Condition::StateDirReadOnly,
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => Condition::StateDirMissing,
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Condition::DiskFull,
        _ => Condition::StateDirFailing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::conditions::tests::recorded;
    use protocol::error::ErrorKind;
    use std::sync::Arc;

    fn factory(root: &std::path::Path) -> PathBuf {
        let bundle = root.join("factory");
        std::fs::create_dir_all(&bundle).expect("bundle dir");
        bundle
    }

    #[test]
    fn errors_name_their_condition() {
        let of = |errno: i32| condition_of(&io::Error::from_raw_os_error(errno));
        assert_eq!(of(30), Condition::StateDirReadOnly, "EROFS");
        assert_eq!(of(13), Condition::StateDirReadOnly, "EACCES");
        assert_eq!(of(20), Condition::StateDirMissing, "ENOTDIR");
        assert_eq!(of(2), Condition::StateDirMissing, "ENOENT");
        assert_eq!(of(28), Condition::DiskFull, "ENOSPC");
        assert_eq!(of(5), Condition::StateDirFailing, "EIO");
    }

    #[test]
    fn a_state_dir_under_a_file_is_unusable_until_the_path_works() {
        let root = tempfile::tempdir().expect("temp dir");
        let blocker = root.path().join("blocker");
        std::fs::write(&blocker, b"a file, not a directory").expect("write");
        let dir = blocker.join("state");
        let state = StateDir::open(dir.clone(), vec![factory(root.path())]).expect("not held by another agent");
        assert!(matches!(state, StateDir::Unusable { .. }));

        let (conditions, recorder) = recorded(Arc::new(SystemClock));
        let shutdown = Arc::new(Shutdown::default());
        let repair = {
            let shutdown = shutdown.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                std::fs::remove_file(&blocker).expect("remove the blocker");
                std::fs::create_dir(&blocker).expect("a directory now");
                // Give up if the waiter never sees it.
                shutdown.wait(Duration::from_secs(10));
            })
        };
        let slots = state.wait_usable(&conditions, Duration::from_millis(50), &shutdown);
        shutdown.trigger();
        repair.join().expect("repair thread");
        assert!(slots.is_some(), "usable once the path works");
        assert!(dir.join("lock").exists());
        let events = recorder.events();
        assert_eq!(events.len(), 1, "reported once, however many attempts failed");
        assert_eq!(events[0].1.kind, ErrorKind::StateDirMissing);
        assert!(conditions.snapshot().is_empty(), "cleared");
    }

    #[test]
    fn a_state_dir_held_by_another_agent_is_fatal() {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join("state");
        let first = StateDir::open(dir.clone(), vec![factory(root.path())]).expect("first");
        assert!(matches!(first, StateDir::Usable(_)));
        let second = StateDir::open(dir, vec![factory(root.path())]);
        assert_eq!(second.err().map(|e| e.kind()), Some(io::ErrorKind::ResourceBusy));
    }

    #[test]
    fn shutdown_ends_the_wait() {
        let root = tempfile::tempdir().expect("temp dir");
        let blocker = root.path().join("blocker");
        std::fs::write(&blocker, b"").expect("write");
        let state = StateDir::open(blocker.join("state"), Vec::new()).expect("not held");
        let (conditions, _recorder) = recorded(Arc::new(SystemClock));
        let shutdown = Shutdown::default();
        shutdown.trigger();
        assert!(state.wait_usable(&conditions, Duration::from_secs(3600), &shutdown).is_none());
        let listed = conditions.snapshot();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].kind, listed[0].source.as_str()), (ErrorKind::StateDirMissing, AGENT), "raised");
    }
}
