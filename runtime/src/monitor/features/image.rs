//! Image input features, from the tensor the preprocessor wrote (the frame as the model sees it, resized,
//! cropped or letterboxed), in pixel units 0..=255: brightness (mean luma), contrast (luma's standard
//! deviation), each channel's mean and sharpness (mean absolute 4-neighbour Laplacian of luma).
//!
//! A frame costs at most [`SAMPLES`] points of a regular grid (every pixel of a model input up to 128 x 128),
//! each read with its four neighbours at full resolution, so that the Laplacian still sees the finest detail.

use crate::manifest::{ColorOrder, ImageInputSpec, ImageLayout, InputDtype};
use crate::tensor::InputTensor;

/// The most grid points read per frame.
const SAMPLES: usize = 128 * 128;

/// ITU-R 601 luma weights of red, green and blue.
const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

/// Extracts the image features of one model's input tensors.
#[derive(Debug, Clone)]
pub(super) struct ImageFeatures {
    width: usize,
    height: usize,
    channels: usize,
    /// Index steps of the tensor, per channel, row and pixel.
    channel_stride: usize,
    row_stride: usize,
    pixel_stride: usize,
    /// Per tensor channel: `pixel = value * gain + offset` undoes the normalisation.
    gain: [f32; 3],
    offset: [f32; 3],
    /// Per tensor channel, its weight in luma.
    luma: [f32; 3],
    /// Pixels between grid points, along both axes.
    step: usize,
}

impl ImageFeatures {
    pub(super) fn new(spec: &ImageInputSpec) -> ImageFeatures {
        let (width, height, channels) = (spec.width as usize, spec.height as usize, spec.channels());
        let (channel_stride, row_stride, pixel_stride) = match spec.layout {
            ImageLayout::Nchw => (width * height, width, 1),
            ImageLayout::Nhwc => (1, width * channels, channels),
        };
        let mut gain = [1.0; 3];
        let mut offset = [0.0; 3];
        // `(pixel * scale - mean) / std` is undone as `value * std / scale + mean / scale`; a scale of 0 (or a u8
        // tensor, which is not normalised) leaves the tensor's own units.
        if spec.dtype == InputDtype::F32 && spec.scale.is_finite() && spec.scale != 0.0 {
            for channel in 0..channels {
                let per_channel =
                    |values: &[f32], default| values.get(channel).or(values.first()).copied().unwrap_or(default);
                gain[channel] = per_channel(&spec.std, 1.0) / spec.scale;
                offset[channel] = per_channel(&spec.mean, 0.0) / spec.scale;
            }
        }
        let luma = match spec.color {
            ColorOrder::Rgb => LUMA,
            ColorOrder::Bgr => [LUMA[2], LUMA[1], LUMA[0]],
            ColorOrder::Gray => [1.0, 0.0, 0.0],
        };
        let mut step = 1;
        while width.div_ceil(step) * height.div_ceil(step) > SAMPLES {
            step += 1;
        }
        ImageFeatures { width, height, channels, channel_stride, row_stride, pixel_stride, gain, offset, luma, step }
    }

    /// The feature names, in the order [`ImageFeatures::extract`] writes them.
    pub(super) fn names(spec: &ImageInputSpec) -> Vec<String> {
        let means: &[&str] = match spec.color {
            ColorOrder::Rgb => &["mean_r", "mean_g", "mean_b"],
            ColorOrder::Bgr => &["mean_b", "mean_g", "mean_r"],
            ColorOrder::Gray => &[],
        };
        let mut names = vec!["brightness".to_owned(), "contrast".to_owned()];
        names.extend(means.iter().map(|name| (*name).to_owned()));
        names.push("sharpness".to_owned());
        names
    }

    /// Appends brightness, contrast, the channel means (colour models) and sharpness to `out`.
    pub(super) fn extract(&self, tensor: InputTensor<'_>, out: &mut Vec<f32>) {
        match tensor {
            InputTensor::F32(data) => self.extract_from(data, out),
            InputTensor::U8(data) => self.extract_from(data, out),
        }
    }

    fn extract_from<T: Copy>(&self, data: &[T], out: &mut Vec<f32>)
    where
        f32: From<T>,
    {
        let features = 3 + if self.channels == 3 { 3 } else { 0 };
        if data.len() < self.width * self.height * self.channels {
            // Not this model's tensor (a bug upstream): fixed-length zeros rather than a panic.
            out.extend(std::iter::repeat_n(0.0, features));
            return;
        }
        let luma_at = |index: usize| -> f32 {
            (0..self.channels)
                .map(|c| {
                    self.luma[c] * (f32::from(data[index + c * self.channel_stride]) * self.gain[c] + self.offset[c])
                })
                .sum()
        };
        let (mut points, mut luma_sum, mut luma_squares) = (0usize, 0.0f64, 0.0f64);
        let mut channel_sums = [0.0f64; 3];
        let (mut laplacian_points, mut laplacian_sum) = (0usize, 0.0f64);
        let first_row = (self.step / 2).min(self.height - 1);
        let first_column = (self.step / 2).min(self.width - 1);
        for y in (first_row..self.height).step_by(self.step) {
            let interior_row = y > 0 && y + 1 < self.height;
            for x in (first_column..self.width).step_by(self.step) {
                let index = y * self.row_stride + x * self.pixel_stride;
                let mut luma = 0.0;
                for (c, sum) in channel_sums.iter_mut().enumerate().take(self.channels) {
                    let value = f32::from(data[index + c * self.channel_stride]) * self.gain[c] + self.offset[c];
                    *sum += f64::from(value);
                    luma += self.luma[c] * value;
                }
                points += 1;
                luma_sum += f64::from(luma);
                luma_squares += f64::from(luma) * f64::from(luma);
                if interior_row && x > 0 && x + 1 < self.width {
                    let neighbours = luma_at(index - self.row_stride)
                        + luma_at(index + self.row_stride)
                        + luma_at(index - self.pixel_stride)
                        + luma_at(index + self.pixel_stride);
                    laplacian_sum += f64::from((4.0 * luma - neighbours).abs());
                    laplacian_points += 1;
                }
            }
        }
        let mean = |sum: f64, count: usize| if count == 0 { 0.0 } else { sum / count as f64 };
        let brightness = mean(luma_sum, points);
        out.push(brightness as f32);
        out.push((mean(luma_squares, points) - brightness * brightness).max(0.0).sqrt() as f32);
        if self.channels == 3 {
            out.extend(channel_sums.iter().map(|&sum| mean(sum, points) as f32));
        }
        out.push(mean(laplacian_sum, laplacian_points) as f32);
    }
}
