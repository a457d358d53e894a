//! Sensor input features, per channel over the window, in the recording's units (the manifest's
//! standardisation undone): the mean, the standard deviation (population) and the roughness, the mean
//! absolute difference between successive samples.

use crate::manifest::{SensorInputSpec, SensorLayout};
use crate::tensor::InputTensor;

/// Extracts the sensor features of one model's input tensors.
#[derive(Debug, Clone)]
pub(super) struct SensorFeatures {
    channels: usize,
    samples: usize,
    layout: SensorLayout,
    /// Per channel: `value = tensor * std + mean` undoes the standardisation.
    mean: Vec<f32>,
    std: Vec<f32>,
}

impl SensorFeatures {
    pub(super) fn new(spec: &SensorInputSpec) -> SensorFeatures {
        SensorFeatures {
            channels: spec.channels,
            samples: spec.window,
            layout: spec.layout,
            mean: spec.channel_means(),
            std: spec.channel_stds(),
        }
    }

    /// The feature names, `<channel>.mean`, `<channel>.std`, `<channel>.roughness` per channel, channels named
    /// as in the manifest (`ch0`, `ch1`... without names).
    pub(super) fn names(spec: &SensorInputSpec) -> Vec<String> {
        (0..spec.channels)
            .flat_map(|channel| {
                let name = spec.channel_names.get(channel).cloned().unwrap_or_else(|| format!("ch{channel}"));
                ["mean", "std", "roughness"].map(|statistic| format!("{name}.{statistic}"))
            })
            .collect()
    }

    /// Appends each channel's mean, standard deviation and roughness to `out`.
    pub(super) fn extract(&self, tensor: InputTensor<'_>, out: &mut Vec<f32>) {
        let data = match tensor {
            InputTensor::F32(data) if data.len() >= self.channels * self.samples => data,
            // Not this model's tensor (a bug upstream): fixed-length zeros rather than a panic.
            _ => {
                out.extend(std::iter::repeat_n(0.0, 3 * self.channels));
                return;
            }
        };
        for channel in 0..self.channels {
            let value = |sample: usize| {
                let index = match self.layout {
                    SensorLayout::ChannelsFirst => channel * self.samples + sample,
                    SensorLayout::ChannelsLast => sample * self.channels + channel,
                };
                f64::from(data[index]) * f64::from(self.std[channel]) + f64::from(self.mean[channel])
            };
            let count = self.samples.max(1) as f64;
            let mean = (0..self.samples).map(value).sum::<f64>() / count;
            let variance = (0..self.samples).map(|t| (value(t) - mean).powi(2)).sum::<f64>() / count;
            let roughness = (1..self.samples).map(|t| (value(t) - value(t - 1)).abs()).sum::<f64>()
                / (self.samples.saturating_sub(1).max(1)) as f64;
            out.extend([mean, variance.sqrt(), roughness].map(finite_f32));
        }
    }
}

/// `value` as an `f32`, held to the finite range (a sensor reading near `f32::MAX` would otherwise overflow).
fn finite_f32(value: f64) -> f32 {
    value.clamp(f64::from(f32::MIN), f64::from(f32::MAX)) as f32
}
