//! A window of sensor samples to the input tensor: shape and finiteness checked, standardised per channel,
//! written channels-first or channels-last.

use crate::error::{Error, Result};
use crate::input::SensorWindow;
use crate::manifest::{SensorInputSpec, SensorLayout};

/// Turns [`SensorWindow`]s into the model's input tensor: its own, kept across calls, or the caller's.
#[derive(Debug, Clone)]
pub struct SensorPreprocessor {
    channels: usize,
    samples: usize,
    layout: SensorLayout,
    /// Per channel; zero when the manifest gives no mean.
    mean: Vec<f32>,
    /// Per channel; one when the manifest gives no std.
    std: Vec<f32>,
    /// The tensor [`SensorPreprocessor::prepare`] writes, allocated by the first.
    tensor: Vec<f32>,
}

impl SensorPreprocessor {
    /// A preprocessor for `spec`. An empty mean or std means none; otherwise they hold one value per channel
    /// (manifest validation checks that).
    pub fn new(spec: &SensorInputSpec) -> Self {
        SensorPreprocessor {
            channels: spec.channels,
            samples: spec.window,
            layout: spec.layout,
            mean: spec.channel_means(),
            std: spec.channel_stds(),
            tensor: Vec::new(),
        }
    }

    /// Checks `window` and writes the tensor from it. The window must have exactly the model's channels and
    /// samples ([`Error::SensorShape`]) and only finite values ([`Error::NonFinite`], naming the first bad
    /// one). On error the tensor is left as it was.
    pub fn prepare(&mut self, window: &SensorWindow) -> Result<()> {
        let mut tensor = std::mem::take(&mut self.tensor);
        tensor.resize(self.channels * self.samples, 0.0);
        let prepared = self.prepare_into(window, &mut tensor);
        self.tensor = tensor;
        prepared
    }

    /// As [`SensorPreprocessor::prepare`], into `tensor`, which must hold channels x samples values
    /// ([`Error::TensorMismatch`]).
    pub fn prepare_into(&self, window: &SensorWindow, tensor: &mut [f32]) -> Result<()> {
        let expected_len = self.channels * self.samples;
        if window.channels != self.channels || window.values.len() != expected_len {
            // A ragged tail (values not a multiple of channels) counts as one more, partial, sample.
            return Err(Error::SensorShape {
                expected_channels: self.channels,
                expected_samples: self.samples,
                got_channels: window.channels,
                got_samples: window.samples(),
            });
        }
        // Checked before writing anything, so that a bad window leaves the last good tensor as it was.
        if let Some(index) = window.values.iter().position(|value| !value.is_finite()) {
            return Err(Error::NonFinite {
                sample: index / self.channels,
                channel: index % self.channels,
                value: window.values[index],
            });
        }
        if tensor.len() != expected_len {
            return Err(Error::TensorMismatch {
                expected: format!("{expected_len} f32"),
                got: format!("{} f32", tensor.len()),
            });
        }
        if self.channels == 0 {
            return Ok(());
        }
        for (sample, row) in window.values.chunks_exact(self.channels).enumerate() {
            for (channel, ((&value, &mean), &std)) in row.iter().zip(&self.mean).zip(&self.std).enumerate() {
                let index = match self.layout {
                    SensorLayout::ChannelsFirst => channel * self.samples + sample,
                    SensorLayout::ChannelsLast => sample * self.channels + channel,
                };
                tensor[index] = (value - mean) / std;
            }
        }
        Ok(())
    }

    /// The tensor as the last successful [`SensorPreprocessor::prepare`] wrote it; empty before the first.
    pub fn tensor(&self) -> &[f32] {
        &self.tensor
    }

    /// The tensor shape, batch of one: `[1, channels, window]` or `[1, window, channels]`.
    pub fn shape(&self) -> [usize; 3] {
        match self.layout {
            SensorLayout::ChannelsFirst => [1, self.channels, self.samples],
            SensorLayout::ChannelsLast => [1, self.samples, self.channels],
        }
    }
}
