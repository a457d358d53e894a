//! Sensor recordings: a CSV file (a header of channel names, one sample per row) replayed as sliding windows.

use super::Feed;
use crate::clock::Pacer;
use crate::shutdown::Shutdown;
use protocol::error::ErrorKind;
use runtime::recording::{WindowAssembler, WindowShape, check_header, parse_sample};
use std::io::BufRead;
use std::path::PathBuf;

/// A recording and how to replay it.
#[derive(Debug, Clone)]
pub struct Recording {
    pub path: PathBuf,
    /// Samples per second; 0 replays as fast as the worker takes windows.
    pub rate_hz: f64,
    pub stride: usize,
    pub looping: bool,
}

/// Replays the recording until it ends (or forever when looping) or shutdown is triggered.
pub fn run(spec: &Recording, shape: &WindowShape, feed: &Feed, shutdown: &Shutdown) {
    let name = spec.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut pacer = Pacer::per_second(spec.rate_hz / spec.stride as f64);
    loop {
        let file = match std::fs::File::open(&spec.path) {
            Ok(file) => std::io::BufReader::new(file),
            Err(e) => return feed.error(&name, ErrorKind::Io, &format!("cannot open {}: {e}", spec.path.display())),
        };
        let mut lines = file.lines();
        let header = match lines.next() {
            Some(Ok(header)) => header,
            Some(Err(e)) => return feed.error(&name, ErrorKind::Io, &e.to_string()),
            None => {
                return feed.error(&name, ErrorKind::Schema, "the file is empty; expected a header of channel names");
            }
        };
        if let Err(message) = check_header(&header, shape) {
            return feed.error(&name, ErrorKind::Schema, &message);
        }
        let mut assembler = WindowAssembler::new(shape.channels, shape.window, spec.stride);
        let mut sample = Vec::with_capacity(shape.channels);
        for (row, line) in lines.enumerate() {
            let line = match line {
                Ok(line) => line,
                Err(e) => return feed.error(&name, ErrorKind::Io, &e.to_string()),
            };
            if line.trim().is_empty() {
                continue;
            }
            if let Err(message) = parse_sample(&line, shape.channels, &mut sample) {
                feed.error(&format!("{name} row {}", row + 1), ErrorKind::Parse, &format!("row skipped: {message}"));
                continue;
            }
            if let Some((first, window)) = assembler.push(&sample) {
                if pacer.wait(feed.clock(), shutdown) {
                    return;
                }
                let origin = format!("{name} rows {}-{}", first + 1, first + shape.window as u64);
                feed.window(origin, window);
            }
            if shutdown.is_triggered() {
                return;
            }
        }
        if !spec.looping {
            return;
        }
    }
}
