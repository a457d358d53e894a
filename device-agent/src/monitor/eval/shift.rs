//! The changes of the world the evaluation applies to raw inputs (recording values, image pixels) before the
//! pipeline sees them: what a drifting sensor or a dirty camera would deliver.

use image::RgbImage;
use image::imageops;
use runtime::SensorWindow;

/// Per-channel statistics of the reference samples, which size the sensor shifts.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelStats {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl ChannelStats {
    /// The mean and standard deviation (population) of each channel over every sample of `windows`.
    pub fn of(windows: &[SensorWindow], channels: usize) -> ChannelStats {
        let mut sum = vec![0.0f64; channels];
        let mut squares = vec![0.0f64; channels];
        let mut count = 0.0f64;
        for sample in windows.iter().flat_map(|window| window.values.chunks_exact(channels)) {
            for (channel, &value) in sample.iter().enumerate() {
                sum[channel] += f64::from(value);
                squares[channel] += f64::from(value) * f64::from(value);
            }
            count += 1.0;
        }
        let mean: Vec<f64> = sum.iter().map(|sum| sum / count).collect();
        let std = squares.iter().zip(&mean).map(|(squares, mean)| (squares / count - mean * mean).max(0.0).sqrt());
        ChannelStats { mean: mean.iter().map(|&mean| mean as f32).collect(), std: std.map(|std| std as f32).collect() }
    }
}

/// A change of a sensor's signal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SensorShift {
    /// One channel's values multiplied (a miscalibrated amplifier).
    Gain { channel: usize, factor: f32 },
    /// One channel raised by this many of its reference standard deviations (a bias after a knock).
    Offset { channel: usize, stds: f32 },
    /// Gaussian noise on every channel, this many of the channel's reference standard deviations (a loose cable).
    Noise { stds: f32 },
    /// One channel held at its reference mean (a dead sensor).
    Stuck { channel: usize },
}

impl SensorShift {
    /// What the shift does, naming the channel.
    pub fn describe(&self, channel_names: &[String]) -> String {
        let name = |channel: &usize| channel_names.get(*channel).cloned().unwrap_or_else(|| format!("ch{channel}"));
        match self {
            SensorShift::Gain { channel, factor } => format!("gain x{factor} on {}", name(channel)),
            SensorShift::Offset { channel, stds } => format!("offset +{stds} std on {}", name(channel)),
            SensorShift::Noise { stds } => format!("noise {stds} std on every channel"),
            SensorShift::Stuck { channel } => format!("{} stuck at its mean", name(channel)),
        }
    }

    /// Shifts `window` in place; `random` draws the noise.
    pub fn apply(&self, window: &mut SensorWindow, reference: &ChannelStats, random: &mut fastrand::Rng) {
        let channels = window.channels;
        for sample in window.values.chunks_exact_mut(channels) {
            match *self {
                SensorShift::Gain { channel, factor } => sample[channel] *= factor,
                SensorShift::Offset { channel, stds } => sample[channel] += stds * reference.std[channel],
                SensorShift::Noise { stds } => {
                    for (value, std) in sample.iter_mut().zip(&reference.std) {
                        *value += stds * std * normal(random);
                    }
                }
                SensorShift::Stuck { channel } => sample[channel] = reference.mean[channel],
            }
        }
    }
}

/// A change of a camera's picture.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FrameShift {
    /// Every pixel value raised by this much, saturating (more light, a changed exposure).
    Brightness(u8),
    /// Gaussian blur with a sigma of this fraction of the frame's shorter side (a lens out of focus or fogged),
    /// so that it blurs a crop as much as the whole picture once the model's resize is done.
    Blur(f32),
    /// Gaussian noise of this standard deviation on every pixel value (a sensor at high gain in the dark).
    Noise(f32),
}

impl FrameShift {
    pub fn describe(&self) -> String {
        match self {
            FrameShift::Brightness(by) => format!("brightness +{by}"),
            FrameShift::Blur(fraction) => format!("blur, sigma {fraction} of the shorter side"),
            FrameShift::Noise(std) => format!("noise, std {std}"),
        }
    }

    /// The shifted frame; `random` draws the noise.
    pub fn apply(&self, frame: RgbImage, random: &mut fastrand::Rng) -> RgbImage {
        match *self {
            FrameShift::Brightness(by) => {
                let mut frame = frame;
                frame.iter_mut().for_each(|value| *value = value.saturating_add(by));
                frame
            }
            FrameShift::Blur(fraction) => {
                let sigma = fraction * frame.width().min(frame.height()) as f32;
                imageops::blur(&frame, sigma)
            }
            FrameShift::Noise(std) => {
                let mut frame = frame;
                for value in frame.iter_mut() {
                    *value = (f32::from(*value) + std * normal(random)).round().clamp(0.0, 255.0) as u8;
                }
                frame
            }
        }
    }
}

/// A standard normal draw (Box-Muller).
fn normal(random: &mut fastrand::Rng) -> f32 {
    let (u, v) = (1.0 - random.f32(), random.f32());
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f32::consts::PI * v).cos()
}
