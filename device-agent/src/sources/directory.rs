//! Directories of frames: listing them, and watching one for new files.
//!
//! A watched directory is told about new files by inotify where the kernel offers it: a file counts when it
//! is closed after writing or moved in, never half-written. Where inotify cannot be used (it cannot be set
//! up, or its events were lost), the directory is listed every [`WATCH_POLL`] instead, and a file counts once
//! its size has stayed the same over two listings. Either way each file name counts once, and the files
//! there when the watch starts never do.

use std::collections::{HashMap, HashSet};
use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::clock::Clock;
use crate::shutdown::Shutdown;

/// How often a directory is listed when it cannot be watched by events.
pub const WATCH_POLL: Duration = Duration::from_millis(200);

/// Regular files of `dir` in name order, skipping hidden and in-progress (`.part`, `.tmp`) files.
pub fn list(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if counts(&entry.file_name().to_string_lossy()) && entry.file_type()?.is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Whether a file of this name is a frame rather than hidden or still being written.
fn counts(name: &str) -> bool {
    !(name.starts_with('.') || name.ends_with(".part") || name.ends_with(".tmp"))
}

/// A directory watched from the moment [`WatchedDir::start`] was called.
#[derive(Debug)]
pub struct WatchedDir {
    dir: PathBuf,
    /// What was there at the start, or why the directory could not be read.
    started: io::Result<Started>,
}

#[derive(Debug)]
struct Started {
    /// Files that have counted, or were there before the watch.
    done: HashSet<PathBuf>,
    /// `None`: the directory is polled.
    events: Option<events::Events>,
}

impl WatchedDir {
    /// Starts watching `dir`: files completed from now on are new. Called before the agent announces itself
    /// online, so that a file written after `online` is always new.
    pub fn start(dir: PathBuf) -> WatchedDir {
        let since = SystemTime::now();
        let events = events::Events::watch(&dir)
            .map_err(|error| {
                log::warn!("Listing {} every {WATCH_POLL:?}: inotify is unavailable ({error}).", dir.display());
            })
            .ok();
        // Listed after the watch is set, so that no file falls between the two.
        let older = |file: &PathBuf| std::fs::metadata(file).and_then(|m| m.modified()).is_ok_and(|t| t < since);
        let started = list(&dir).map(|files| Started { done: files.into_iter().filter(older).collect(), events });
        WatchedDir { dir, started }
    }

    /// The directory watched.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Calls `new_file` with each new file until shutdown is triggered or `new_file` breaks. A directory that
    /// cannot be read is reported to `error` (once per run of failures).
    pub fn run(
        self,
        clock: &dyn Clock,
        shutdown: &Shutdown,
        mut new_file: impl FnMut(&Path) -> ControlFlow<()>,
        mut error: impl FnMut(&io::Error),
    ) {
        let mut started = match self.started {
            Ok(started) => started,
            Err(e) => return error(&e),
        };
        if let Some(events) = started.events.take() {
            match events.run(&self.dir, &mut started.done, shutdown, &mut new_file) {
                Ok(()) => return,
                Err(reason) => {
                    log::warn!("Listing {} every {WATCH_POLL:?} from now on: {reason}.", self.dir.display());
                }
            }
        }
        poll(&self.dir, &mut started.done, clock, shutdown, &mut new_file, &mut error);
    }
}

/// Lists `dir` every [`WATCH_POLL`]; a file counts once its size has stayed the same over two listings.
fn poll(
    dir: &Path,
    done: &mut HashSet<PathBuf>,
    clock: &dyn Clock,
    shutdown: &Shutdown,
    new_file: &mut impl FnMut(&Path) -> ControlFlow<()>,
    error: &mut impl FnMut(&io::Error),
) {
    let mut sizes: HashMap<PathBuf, u64> = HashMap::new();
    let mut reported_error = false;
    while !clock.wait_until(clock.now() + WATCH_POLL, shutdown) {
        let files = match list(dir) {
            Ok(files) => files,
            Err(e) => {
                if !reported_error {
                    error(&e);
                }
                reported_error = true;
                continue;
            }
        };
        reported_error = false;
        for file in files {
            if done.contains(&file) {
                continue;
            }
            let Ok(size) = std::fs::metadata(&file).map(|m| m.len()) else { continue };
            if sizes.get(&file) != Some(&size) {
                sizes.insert(file, size);
                continue;
            }
            sizes.remove(&file);
            let flow = new_file(&file);
            done.insert(file);
            if flow.is_break() {
                return;
            }
        }
    }
}

#[cfg(target_os = "linux")]
mod events {
    use super::counts;
    use crate::shutdown::Shutdown;
    use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
    use rustix::io::Errno;
    use std::collections::HashSet;
    use std::ffi::OsStr;
    use std::mem::MaybeUninit;
    use std::ops::ControlFlow;
    use std::os::fd::OwnedFd;
    use std::os::unix::ffi::OsStrExt;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    /// An inotify watch on one directory.
    #[derive(Debug)]
    pub struct Events {
        fd: Arc<OwnedFd>,
        watch: i32,
    }

    impl Events {
        /// Watches `dir` for files closed after writing or moved in.
        pub fn watch(dir: &Path) -> std::io::Result<Events> {
            let fd = inotify::init(CreateFlags::CLOEXEC)?;
            let flags = WatchFlags::CLOSE_WRITE | WatchFlags::MOVED_TO | WatchFlags::ONLYDIR;
            let watch = inotify::add_watch(&fd, dir, flags)?;
            Ok(Events { fd: Arc::new(fd), watch })
        }

        /// Reads events until shutdown is triggered (`Ok`) or they cannot be relied on any more (`Err`, why).
        pub fn run(
            self,
            dir: &Path,
            done: &mut HashSet<PathBuf>,
            shutdown: &Shutdown,
            new_file: &mut impl FnMut(&Path) -> ControlFlow<()>,
        ) -> Result<(), String> {
            // The read below blocks; removing the watch on shutdown ends it with an `IGNORED` event.
            let (fd, watch) = (self.fd.clone(), self.watch);
            shutdown.on_trigger(move || {
                let _ = inotify::remove_watch(&*fd, watch);
            });
            let mut buffer = [MaybeUninit::uninit(); 4096];
            let mut events = inotify::Reader::new(&*self.fd, &mut buffer);
            while !shutdown.is_triggered() {
                let event = match events.next() {
                    Ok(event) => event,
                    Err(Errno::INTR) => continue,
                    Err(e) => return Err(format!("reading its events failed ({e})")),
                };
                let flags = event.events();
                if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                    return Err("events were lost (too many at once)".to_owned());
                }
                if flags.contains(ReadFlags::IGNORED) {
                    if shutdown.is_triggered() {
                        return Ok(());
                    }
                    return Err("the directory is no longer watched (removed or unmounted)".to_owned());
                }
                let Some(name) = event.file_name().map(|name| OsStr::from_bytes(name.to_bytes())) else { continue };
                if flags.contains(ReadFlags::ISDIR) || !counts(&name.to_string_lossy()) {
                    continue;
                }
                let file = dir.join(name);
                if done.insert(file.clone()) && new_file(&file).is_break() {
                    return Ok(());
                }
            }
            Ok(())
        }
    }
}

/// Other systems have no inotify: their directories are polled.
#[cfg(not(target_os = "linux"))]
mod events {
    use crate::shutdown::Shutdown;
    use std::collections::HashSet;
    use std::ops::ControlFlow;
    use std::path::{Path, PathBuf};

    #[derive(Debug)]
    pub enum Events {}

    impl Events {
        pub fn watch(_dir: &Path) -> std::io::Result<Events> {
            Err(std::io::ErrorKind::Unsupported.into())
        }

        pub fn run(
            self,
            _dir: &Path,
            _done: &mut HashSet<PathBuf>,
            _shutdown: &Shutdown,
            _new_file: &mut impl FnMut(&Path) -> ControlFlow<()>,
        ) -> Result<(), String> {
            match self {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ManualClock, SystemClock};
    use std::sync::Arc;
    use std::sync::mpsc;

    /// Runs a watch of `dir` on a thread, sending each new file's name.
    fn watching(watched: WatchedDir, shutdown: Arc<Shutdown>) -> (mpsc::Receiver<String>, std::thread::JoinHandle<()>) {
        let (found, names) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let new_file = |file: &Path| {
                let _ = found.send(file.file_name().unwrap().to_string_lossy().into_owned());
                ControlFlow::Continue(())
            };
            watched.run(&SystemClock, &shutdown, new_file, |e| panic!("{e}"));
        });
        (names, thread)
    }

    #[test]
    fn listing_skips_hidden_partial_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.jpg", "a.jpg", ".hidden", "c.jpg.part", "d.tmp"] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let names: Vec<String> =
            list(dir.path()).unwrap().iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["a.jpg", "b.jpg"]);
    }

    #[test]
    fn polling_sends_a_file_once_its_size_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["old.jpg", "new.jpg", ".hidden"] {
            std::fs::write(dir.path().join(name), name).unwrap();
        }
        let done = HashSet::from([dir.path().join("old.jpg")]);
        let watched = WatchedDir { dir: dir.path().to_owned(), started: Ok(Started { done, events: None }) };
        let clock = ManualClock::new(0);
        let mut sent = Vec::new();
        let new_file = |file: &Path| {
            sent.push(file.file_name().unwrap().to_string_lossy().into_owned());
            ControlFlow::Break(())
        };
        watched.run(&clock, &Shutdown::default(), new_file, |e| panic!("{e}"));
        assert_eq!(sent, ["new.jpg"]);
        assert_eq!(clock.unix_time_ms(), 2 * WATCH_POLL.as_millis() as u64, "seen on two listings");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn events_report_files_written_or_moved_in_once_and_shutdown_ends_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("old.jpg"), b"old").unwrap();
        let watched = WatchedDir::start(dir.path().to_owned());
        assert!(watched.started.as_ref().unwrap().events.is_some(), "inotify is available on Linux");
        let shutdown = Arc::new(Shutdown::default());
        let (names, thread) = watching(watched, shutdown.clone());
        std::fs::write(dir.path().join("new.jpg.part"), b"new").unwrap();
        std::fs::rename(dir.path().join("new.jpg.part"), dir.path().join("new.jpg")).unwrap();
        std::fs::write(dir.path().join("written.jpg"), b"written").unwrap();
        std::fs::write(dir.path().join("new.jpg"), b"again").unwrap();
        std::fs::write(dir.path().join("old.jpg"), b"rewritten").unwrap();
        std::fs::write(dir.path().join("last.jpg"), b"last").unwrap();
        let wait = Duration::from_secs(30);
        let got: Vec<String> = (0..3).map(|_| names.recv_timeout(wait).expect("a new file")).collect();
        assert_eq!(got, ["new.jpg", "written.jpg", "last.jpg"]);
        shutdown.trigger();
        thread.join().unwrap();
        assert!(names.try_recv().is_err(), "each file once, old files never");
    }
}
