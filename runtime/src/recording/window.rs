//! Sliding windows over a stream of samples: `window` samples, a new window every `stride` samples.

use crate::SensorWindow;
use std::collections::VecDeque;

/// Turns samples into windows. With `stride < window` windows overlap; with `stride > window` samples
/// between windows are skipped.
pub struct WindowAssembler {
    channels: usize,
    window: usize,
    stride: usize,
    samples: VecDeque<f32>,
    /// Samples still to skip before the next window may start filling.
    skip: usize,
    /// Index (0-based) of the first sample held in `samples`.
    first_index: u64,
    seen: u64,
}

impl WindowAssembler {
    /// `window` and `stride` are in samples and must be positive.
    pub fn new(channels: usize, window: usize, stride: usize) -> WindowAssembler {
        WindowAssembler {
            channels,
            window,
            stride: stride.max(1),
            samples: VecDeque::with_capacity(channels * window),
            skip: 0,
            first_index: 0,
            seen: 0,
        }
    }

    /// Adds one sample of `channels` values; returns a window and the index of its first sample when one is
    /// complete.
    pub fn push(&mut self, sample: &[f32]) -> Option<(u64, SensorWindow)> {
        let index = self.seen;
        self.seen += 1;
        if self.skip > 0 {
            self.skip -= 1;
            return None;
        }
        if self.samples.is_empty() {
            self.first_index = index;
        }
        self.samples.extend(sample.iter().copied());
        if self.samples.len() < self.channels * self.window {
            return None;
        }
        let window = SensorWindow { channels: self.channels, values: self.samples.iter().copied().collect() };
        let first = self.first_index;
        let advance = self.stride.min(self.window);
        self.samples.drain(..advance * self.channels);
        self.first_index += advance as u64;
        self.skip = self.stride.saturating_sub(self.window);
        Some((first, window))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(assembler: &mut WindowAssembler, n: usize) -> Vec<(u64, Vec<f32>)> {
        (0..n).filter_map(|i| assembler.push(&[i as f32, -(i as f32)])).map(|(at, w)| (at, w.values)).collect()
    }

    #[test]
    fn non_overlapping_windows() {
        let windows = feed(&mut WindowAssembler::new(2, 3, 3), 7);
        assert_eq!(windows.len(), 2);
        assert_eq!(windows[0], (0, vec![0.0, -0.0, 1.0, -1.0, 2.0, -2.0]));
        assert_eq!(windows[1].0, 3);
        assert_eq!(windows[1].1[0], 3.0);
    }

    #[test]
    fn overlapping_windows_start_every_stride() {
        let windows = feed(&mut WindowAssembler::new(2, 4, 2), 10);
        let starts: Vec<u64> = windows.iter().map(|(at, _)| *at).collect();
        assert_eq!(starts, vec![0, 2, 4, 6]);
        assert!(windows.iter().all(|(at, values)| values[0] == *at as f32 && values.len() == 8));
    }

    #[test]
    fn stride_longer_than_window_skips_samples() {
        let windows = feed(&mut WindowAssembler::new(2, 2, 5), 12);
        let starts: Vec<u64> = windows.iter().map(|(at, _)| *at).collect();
        assert_eq!(starts, vec![0, 5, 10]);
        assert!(windows.iter().all(|(at, values)| values[0] == *at as f32));
    }
}
