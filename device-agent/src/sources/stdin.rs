//! Line-delimited sensor samples on standard input, windowed like a recording.

use super::Feed;
use crate::shutdown::Shutdown;
use protocol::error::ErrorKind;
use runtime::recording::{WindowAssembler, parse_sample};
use std::io::BufRead;

/// Reads samples until end of input or shutdown. A line that is not a sample is reported and skipped.
pub fn run(channels: usize, window: usize, stride: usize, feed: &Feed, shutdown: &Shutdown) {
    let mut assembler = WindowAssembler::new(channels, window, stride);
    let mut sample = Vec::with_capacity(channels);
    for (line_number, line) in std::io::stdin().lock().lines().enumerate() {
        if shutdown.is_triggered() {
            return;
        }
        let line = match line {
            Ok(line) => line,
            Err(e) => return feed.error("stdin", ErrorKind::Io, &e.to_string()),
        };
        if line.trim().is_empty() {
            continue;
        }
        if let Err(message) = parse_sample(&line, channels, &mut sample) {
            feed.error(
                &format!("stdin line {}", line_number + 1),
                ErrorKind::Parse,
                &format!("line skipped: {message}"),
            );
            continue;
        }
        if let Some((first, window)) = assembler.push(&sample) {
            feed.window(format!("stdin samples {}-{}", first + 1, first + window.samples() as u64), window);
        }
    }
}
