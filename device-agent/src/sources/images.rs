//! Image files: a directory or a list replayed at a fixed rate (optionally looping), or a directory watched
//! for new files. Each file is one frame, sent as its encoded bytes; the pipeline decodes it.

use super::Feed;
use super::directory::{self, WatchedDir};
use crate::clock::Pacer;
use crate::shutdown::Shutdown;
use protocol::error::ErrorKind;
use std::io::Read;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

/// Where the frames come from and how fast.
#[derive(Debug)]
pub struct ImageFiles {
    /// A directory (all regular, non-hidden files, in name order) or a list of files.
    pub files: FileSet,
    pub rate_fps: f64,
    pub looping: bool,
    /// Larger files are reported, not read: each is read into memory whole.
    pub max_file_bytes: u64,
}

/// A directory or an explicit list.
#[derive(Debug)]
pub enum FileSet {
    Directory(PathBuf),
    List(Vec<PathBuf>),
    /// A directory watched for new files.
    Watch(WatchedDir),
}

/// Runs the source until it is exhausted or shutdown is triggered.
pub fn run(spec: ImageFiles, feed: &Feed, shutdown: &Shutdown) {
    let pacer = Pacer::per_second(spec.rate_fps);
    let send = |file: &Path| send(file, spec.max_file_bytes, feed);
    match spec.files {
        FileSet::Watch(watched) => watch(watched, pacer, send, feed, shutdown),
        FileSet::Directory(dir) => {
            replay(|| directory::list(&dir), &dir.display().to_string(), spec.looping, pacer, send, feed, shutdown)
        }
        FileSet::List(files) => replay(|| Ok(files.clone()), "", spec.looping, pacer, send, feed, shutdown),
    }
}

/// Sends each file once per pass (every pass re-lists a directory), paced by `pacer`.
fn replay(
    files: impl Fn() -> std::io::Result<Vec<PathBuf>>,
    origin: &str,
    looping: bool,
    mut pacer: Pacer,
    send: impl Fn(&Path),
    feed: &Feed,
    shutdown: &Shutdown,
) {
    loop {
        let files = match files() {
            Ok(files) => files,
            Err(e) => return feed.error(origin, ErrorKind::Io, &e.to_string()),
        };
        for file in &files {
            if pacer.wait(feed.clock(), shutdown) {
                return;
            }
            send(file);
        }
        if !looping || files.is_empty() {
            return;
        }
    }
}

/// Sends the file as one frame, unless it cannot be read or is over `max_bytes`.
fn send(file: &Path, max_bytes: u64, feed: &Feed) {
    let origin = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match read_at_most(file, max_bytes) {
        Ok(Some(bytes)) => feed.frame(origin, bytes),
        Ok(None) => feed.error(
            &origin,
            ErrorKind::ImageTooLarge,
            &format!("{} is larger than max_file_bytes ({max_bytes} bytes); not read", file.display()),
        ),
        Err(e) => feed.error(&origin, ErrorKind::Io, &format!("cannot read {}: {e}", file.display())),
    }
}

/// The file's bytes, or `None` if there are more than `max_bytes` (never reading more than one beyond, in
/// case the file grows after its size was looked at).
pub fn read_at_most(file: &Path, max_bytes: u64) -> std::io::Result<Option<Vec<u8>>> {
    let file = std::fs::File::open(file)?;
    let size = file.metadata()?.len();
    if size > max_bytes {
        return Ok(None);
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(max_bytes.saturating_add(1)).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= max_bytes).then_some(bytes))
}

/// Sends each new file of the watched directory once, paced by `pacer`.
fn watch(watched: WatchedDir, mut pacer: Pacer, send: impl Fn(&Path), feed: &Feed, shutdown: &Shutdown) {
    let origin = watched.dir().display().to_string();
    let new_file = |file: &Path| {
        if pacer.wait(feed.clock(), shutdown) {
            return ControlFlow::Break(());
        }
        send(file);
        ControlFlow::Continue(())
    };
    watched.run(feed.clock(), shutdown, new_file, |e| feed.error(&origin, ErrorKind::Io, &e.to_string()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::health::SourceStats;
    use crate::mqtt::QoS;
    use crate::outbox::{Outbox, OutboxQos, OutboxSettings, PayloadLimit, Publish};
    use crate::queue::Next;
    use crate::spool::Class;
    use protocol::wire::{Format, Topics};
    use std::sync::Arc;

    struct Nowhere;

    impl Publish for Nowhere {
        fn publish(&self, _class: Class, _topic: String, _qos: QoS, _payload: Vec<u8>) -> Result<(), String> {
            Ok(())
        }
    }

    fn outbox() -> Outbox {
        let settings = OutboxSettings {
            device: "d".into(),
            topics: Arc::new(Topics::new("devices/d".to_owned())),
            format: Format::Json,
            qos: OutboxQos { predictions: QoS::AtMostOnce, errors: QoS::AtMostOnce },
            link: Arc::new(Nowhere),
            payload_limit: Arc::new(|_| PayloadLimit::none()),
        };
        Outbox::new(&settings, "s", Arc::new(SourceStats::new("s")))
    }

    #[test]
    fn a_looping_directory_replays_at_the_rate_by_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.jpg", "a.jpg"] {
            std::fs::write(dir.path().join(name), name).unwrap();
        }
        let clock = Arc::new(ManualClock::new(10_000));
        let (feed, queue) = Feed::fifo(outbox(), 8, clock.clone());
        let shutdown = Arc::new(Shutdown::default());
        let spec = ImageFiles {
            files: FileSet::Directory(dir.path().to_owned()),
            rate_fps: 4.0,
            looping: true,
            max_file_bytes: 1024,
        };
        let reader = {
            let (feed, shutdown) = (feed.clone(), shutdown.clone());
            std::thread::spawn(move || run(spec, &feed, &shutdown))
        };
        let mut frames = Vec::new();
        while frames.len() < 5 {
            match queue.next() {
                Next::Job(job) => frames.push((job.origin, job.captured_at_ms)),
                _ => panic!("the queue ended before five frames"),
            }
        }
        shutdown.trigger();
        feed.close();
        reader.join().unwrap();
        let expected: Vec<(String, u64)> = ["a.jpg", "b.jpg", "a.jpg", "b.jpg", "a.jpg"]
            .iter()
            .zip([10_000, 10_250, 10_500, 10_750, 11_000])
            .map(|(name, at)| (name.to_string(), at))
            .collect();
        assert_eq!(frames, expected);
        assert!(clock.unix_time_ms() >= 11_000);
    }

    #[test]
    fn files_over_the_limit_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let (small, big) = (dir.path().join("a.jpg"), dir.path().join("b.jpg"));
        std::fs::write(&small, [1; 1024]).unwrap();
        std::fs::write(&big, [2; 1025]).unwrap();
        assert_eq!(read_at_most(&small, 1024).unwrap(), Some(vec![1; 1024]));
        assert_eq!(read_at_most(&big, 1024).unwrap(), None);

        let (feed, queue) = Feed::fifo(outbox(), 8, Arc::new(ManualClock::new(0)));
        let spec = ImageFiles {
            files: FileSet::Directory(dir.path().to_owned()),
            rate_fps: 1000.0,
            looping: false,
            max_file_bytes: 1024,
        };
        run(spec, &feed, &Shutdown::default());
        feed.close();
        let mut origins = Vec::new();
        while let Next::Job(job) = queue.next() {
            origins.push(job.origin);
        }
        assert_eq!(origins, ["a.jpg"], "the big file is reported, not queued");
    }
}
