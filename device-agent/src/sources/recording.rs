//! Sensor recordings: a CSV file (a header of channel names, one sample per row) replayed as sliding windows.

use super::Feed;
use super::samples::parse_sample;
use super::window::WindowAssembler;
use crate::clock::Pacer;
use crate::shutdown::Shutdown;
use runtime::SensorWindow;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// A recording and how to replay it.
#[derive(Debug, Clone)]
pub struct Recording {
    pub path: PathBuf,
    /// Samples per second; 0 replays as fast as the worker takes windows.
    pub rate_hz: f64,
    pub stride: usize,
    pub looping: bool,
}

/// What the model expects of a window.
#[derive(Debug, Clone)]
pub struct WindowShape {
    pub channels: usize,
    pub window: usize,
    /// The manifest's channel names; when given, the CSV header must match them in order.
    pub channel_names: Vec<String>,
}

/// Replays the recording until it ends (or forever when looping) or shutdown is triggered.
pub fn run(spec: &Recording, shape: &WindowShape, feed: &Feed, shutdown: &Shutdown) {
    let name = spec.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut pacer = Pacer::per_second(spec.rate_hz / spec.stride as f64);
    loop {
        let file = match std::fs::File::open(&spec.path) {
            Ok(file) => std::io::BufReader::new(file),
            Err(e) => return feed.error(&name, "io", &format!("cannot open {}: {e}", spec.path.display())),
        };
        let mut lines = file.lines();
        let header = match lines.next() {
            Some(Ok(header)) => header,
            Some(Err(e)) => return feed.error(&name, "io", &e.to_string()),
            None => return feed.error(&name, "schema", "the file is empty; expected a header of channel names"),
        };
        if let Err(message) = check_header(&header, shape) {
            return feed.error(&name, "schema", &message);
        }
        let mut assembler = WindowAssembler::new(shape.channels, shape.window, spec.stride);
        let mut sample = Vec::with_capacity(shape.channels);
        for (row, line) in lines.enumerate() {
            let line = match line {
                Ok(line) => line,
                Err(e) => return feed.error(&name, "io", &e.to_string()),
            };
            if line.trim().is_empty() {
                continue;
            }
            if let Err(message) = parse_sample(&line, shape.channels, &mut sample) {
                feed.error(&format!("{name} row {}", row + 1), "parse", &format!("row skipped: {message}"));
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

/// Reads up to `max` windows of the recording at `path`, `stride` samples apart, for golden vectors: unlike
/// [`run`], a row that does not parse is an error, not skipped.
pub fn read_windows(path: &Path, shape: &WindowShape, stride: usize, max: usize) -> Result<Vec<SensorWindow>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut lines = text.lines();
    check_header(lines.next().unwrap_or_default(), shape)?;
    let mut assembler = WindowAssembler::new(shape.channels, shape.window, stride);
    let mut sample = Vec::with_capacity(shape.channels);
    let mut windows = Vec::new();
    for (row, line) in lines.enumerate().filter(|(_, line)| !line.trim().is_empty()) {
        if windows.len() == max {
            break;
        }
        parse_sample(line, shape.channels, &mut sample).map_err(|message| format!("row {}: {message}", row + 1))?;
        windows.extend(assembler.push(&sample).map(|(_, window)| window));
    }
    Ok(windows)
}

fn check_header(header: &str, shape: &WindowShape) -> Result<(), String> {
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    if columns.len() != shape.channels {
        return Err(format!(
            "the header has {} columns {columns:?}; the model takes {} channels",
            columns.len(),
            shape.channels
        ));
    }
    if !shape.channel_names.is_empty() && columns != shape.channel_names {
        return Err(format!("the header {columns:?} does not match the model's channels {:?}", shape.channel_names));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_must_match_the_model_channels_in_order() {
        let shape = WindowShape { channels: 2, window: 4, channel_names: vec!["ax".into(), "ay".into()] };
        assert!(check_header("ax, ay", &shape).is_ok());
        assert!(check_header("ay,ax", &shape).unwrap_err().contains("does not match"));
        assert!(check_header("ax,ay,az", &shape).unwrap_err().contains("3 columns"));
    }

    #[test]
    fn read_windows_takes_the_first_windows_and_refuses_bad_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        std::fs::write(&path, "ax,ay\n0,0\n1,-1\n\n2,-2\n3,-3\n4,-4\nx,5\n").unwrap();
        let shape = WindowShape { channels: 2, window: 2, channel_names: vec![] };
        let first = read_windows(&path, &shape, 2, 1).unwrap();
        assert_eq!(first.iter().map(|w| w.values.clone()).collect::<Vec<_>>(), [vec![0.0, 0.0, 1.0, -1.0]]);
        assert_eq!(read_windows(&path, &shape, 2, 2).unwrap()[1].values, [2.0, -2.0, 3.0, -3.0]);
        assert_eq!(read_windows(&path, &shape, 2, usize::MAX).unwrap_err(), "row 7: column 1: \"x\" is not a number");
    }
}
