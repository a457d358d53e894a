//! Image files: a directory or a list replayed at a fixed rate (optionally looping), or a directory watched
//! for new files. Each file is one frame, sent as its encoded bytes; the pipeline decodes it.

use super::Feed;
use crate::shutdown::Shutdown;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Where the frames come from and how fast.
#[derive(Debug, Clone)]
pub struct ImageFiles {
    /// A directory (all regular, non-hidden files, in name order) or a list of files.
    pub files: FileSet,
    pub rate_fps: f64,
    pub looping: bool,
}

/// A directory or an explicit list.
#[derive(Debug, Clone)]
pub enum FileSet {
    Directory(PathBuf),
    List(Vec<PathBuf>),
    /// A directory watched for files modified at or after `since` (the agent's start, taken before it announces
    /// itself online, so a file written after `online` is always new).
    Watch { dir: PathBuf, since: SystemTime },
}

/// How often a watched directory is listed.
const WATCH_POLL: Duration = Duration::from_millis(200);

/// Runs the source until it is exhausted or shutdown is triggered.
pub fn run(spec: &ImageFiles, feed: &Feed, shutdown: &Shutdown) {
    let period = Duration::from_secs_f64(1.0 / spec.rate_fps);
    match &spec.files {
        FileSet::Watch { dir, since } => watch(dir, *since, period, feed, shutdown),
        FileSet::Directory(dir) => replay(|| list(dir), &dir.display().to_string(), spec, period, feed, shutdown),
        FileSet::List(files) => replay(|| Ok(files.clone()), "", spec, period, feed, shutdown),
    }
}

/// Sends each file once per pass (every pass re-lists a directory), pausing `period` between frames.
fn replay(
    files: impl Fn() -> std::io::Result<Vec<PathBuf>>,
    origin: &str,
    spec: &ImageFiles,
    period: Duration,
    feed: &Feed,
    shutdown: &Shutdown,
) {
    loop {
        let files = match files() {
            Ok(files) => files,
            Err(e) => return feed.error(origin, "io", &e.to_string()),
        };
        for file in &files {
            send(file, feed);
            if shutdown.wait(period) {
                return;
            }
        }
        if !spec.looping || files.is_empty() {
            return;
        }
    }
}

fn send(file: &Path, feed: &Feed) {
    let origin = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match std::fs::read(file) {
        Ok(bytes) => feed.frame(origin, bytes),
        Err(e) => feed.error(&origin, "io", &format!("cannot read {}: {e}", file.display())),
    }
}

/// Regular files of `dir` in name order, skipping hidden and in-progress (`.part`, `.tmp`) files.
fn list(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.ends_with(".part") || name.ends_with(".tmp") {
            continue;
        }
        if entry.file_type()?.is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Sends files of `dir` modified since `since`, once each. A file is sent once its size has stayed the same
/// over two listings, so a frame still being written is not read half-way.
fn watch(dir: &Path, since: SystemTime, period: Duration, feed: &Feed, shutdown: &Shutdown) {
    let older = |file: &PathBuf| std::fs::metadata(file).and_then(|m| m.modified()).is_ok_and(|t| t < since);
    let mut seen: HashMap<PathBuf, Option<u64>> = match list(dir) {
        Ok(files) => files.into_iter().filter(older).map(|f| (f, None)).collect(),
        Err(e) => return feed.error(&dir.display().to_string(), "io", &e.to_string()),
    };
    let mut reported_error = false;
    while !shutdown.wait(WATCH_POLL) {
        let files = match list(dir) {
            Ok(files) => {
                reported_error = false;
                files
            }
            Err(e) => {
                if !reported_error {
                    feed.error(&dir.display().to_string(), "io", &e.to_string());
                    reported_error = true;
                }
                continue;
            }
        };
        for file in files {
            let size = std::fs::metadata(&file).map(|m| m.len()).ok();
            match seen.get(&file) {
                Some(None) => continue,
                Some(Some(previous)) if Some(*previous) == size => {
                    send(&file, feed);
                    seen.insert(file, None);
                    if shutdown.wait(period) {
                        return;
                    }
                }
                _ => {
                    seen.insert(file, size);
                }
            }
        }
    }
}
