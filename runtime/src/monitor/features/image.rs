//! Image input features, from the tensor the preprocessor wrote (the frame as the model sees it, resized,
//! cropped or letterboxed), in pixel units 0..=255: brightness (mean luma), contrast (luma's standard
//! deviation), each channel's mean and sharpness (mean absolute 4-neighbour Laplacian of luma).
//!
//! Every feature is taken over evenly spaced rows, as many as keep the luma computed per frame under
//! [`LUMA_BUDGET`] values (every row of a model input up to about 128 x 128). Each sampled row is read whole
//! with its neighbours above and below, at full resolution, so the Laplacian sees the finest detail, and the
//! loops run along contiguous rows, which the compiler vectorises.

use crate::manifest::{ColorOrder, ImageInputSpec, ImageLayout, InputDtype};
use crate::tensor::{AsF32, InputTensor};

/// The most luma values computed per frame: three rows for each sampled row.
const LUMA_BUDGET: usize = 3 * 128 * 128;

/// ITU-R 601 luma weights of red, green and blue.
const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

/// Extracts the image features of one model's input tensors.
#[derive(Debug, Clone)]
pub(super) struct ImageFeatures {
    width: usize,
    height: usize,
    channels: usize,
    layout: ImageLayout,
    /// Per tensor channel: `pixel = value * gain + offset` undoes the normalisation.
    gain: [f32; 3],
    offset: [f32; 3],
    /// Luma from the tensor's values: `sum(weight[c] * value[c]) + luma_offset`.
    weight: [f32; 3],
    luma_offset: f32,
    /// Rows between sampled rows.
    step: usize,
    /// Luma of the rows above, at and below the sampled row, and the Laplacian along it.
    rows: [Vec<f32>; 4],
}

impl ImageFeatures {
    pub(super) fn new(spec: &ImageInputSpec) -> ImageFeatures {
        let (width, height, channels) = (spec.width as usize, spec.height as usize, spec.channels());
        let mut gain = [1.0; 3];
        let mut offset = [0.0; 3];
        // `(pixel * scale - mean) / std` is undone as `value * std / scale + mean / scale`; a scale of 0 (or an
        // integer tensor, which is not normalised) leaves the tensor's own units, but for i8's offset of -128.
        if spec.dtype == InputDtype::I8 {
            offset = [128.0; 3];
        } else if spec.dtype.is_float() && spec.scale.is_finite() && spec.scale != 0.0 {
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
        let weight = std::array::from_fn(|c| luma[c] * gain[c]);
        let luma_offset = (0..3).map(|c| luma[c] * offset[c]).sum();
        let sampled_rows = (LUMA_BUDGET / (3 * width)).max(1);
        let step = height.div_ceil(sampled_rows).max(1);
        ImageFeatures {
            width,
            height,
            channels,
            layout: spec.layout,
            gain,
            offset,
            weight,
            luma_offset,
            step,
            rows: std::array::from_fn(|_| vec![0.0; width]),
        }
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
    pub(super) fn extract(&mut self, tensor: InputTensor<'_>, out: &mut Vec<f32>) {
        match tensor {
            InputTensor::F32(data) => self.extract_from(data, out),
            InputTensor::U8(data) => self.extract_from(data, out),
            InputTensor::F16(data) => self.extract_from(data, out),
            InputTensor::I8(data) => self.extract_from(data, out),
            InputTensor::I32(data) => self.extract_from(data, out),
            InputTensor::I64(data) => self.extract_from(data, out),
        }
    }

    fn extract_from<T: AsF32>(&mut self, data: &[T], out: &mut Vec<f32>) {
        let means = if self.channels == 3 { 3 } else { 0 };
        if data.len() < self.width * self.height * self.channels {
            // Not this model's tensor (a bug upstream): fixed-length zeros rather than a panic.
            out.extend(std::iter::repeat_n(0.0, 3 + means));
            return;
        }
        // Taken out for the loop, which reads `self` too; moving the vectors allocates nothing.
        let [mut above, mut row, mut below, mut laplacian] = std::mem::take(&mut self.rows);
        let (mut pixels, mut luma_sum, mut luma_squares) = (0usize, 0.0f64, 0.0f64);
        let mut channel_sums = [0.0f64; 3];
        let (mut laplacian_points, mut laplacian_sum) = (0usize, 0.0f64);
        for y in (self.step / 2..self.height).step_by(self.step) {
            self.luma_row(data, y, &mut row);
            luma_sum += f64::from(lane_sum(&row, |luma| luma));
            luma_squares += f64::from(lane_sum(&row, |luma| luma * luma));
            pixels += self.width;
            if means == 3 {
                for (sum, row_sum) in channel_sums.iter_mut().zip(self.channel_row_sums(data, y)) {
                    *sum += f64::from(row_sum);
                }
            }
            if y == 0 || y + 1 == self.height || self.width < 3 {
                continue;
            }
            self.luma_row(data, y - 1, &mut above);
            self.luma_row(data, y + 1, &mut below);
            let interior = self.width - 2;
            let centre = row[1..].iter().zip(&row[..interior]).zip(&row[2..]);
            let vertical = above[1..].iter().zip(&below[1..]);
            for ((value, (((&c, &left), &right), (&up, &down))), _) in
                laplacian.iter_mut().zip(centre.zip(vertical)).zip(0..interior)
            {
                *value = (4.0 * c - left - right - up - down).abs();
            }
            laplacian_sum += f64::from(lane_sum(&laplacian[..interior], |value| value));
            laplacian_points += interior;
        }
        self.rows = [above, row, below, laplacian];
        let mean = |sum: f64, count: usize| if count == 0 { 0.0 } else { sum / count as f64 };
        let brightness = mean(luma_sum, pixels);
        out.push(brightness as f32);
        out.push((mean(luma_squares, pixels) - brightness * brightness).max(0.0).sqrt() as f32);
        out.extend((0..means).map(|c| (mean(channel_sums[c], pixels) as f32) * self.gain[c] + self.offset[c]));
        out.push(mean(laplacian_sum, laplacian_points) as f32);
    }

    /// Writes the luma of row `y` into `out` (one value per column).
    fn luma_row<T: AsF32>(&self, data: &[T], y: usize, out: &mut [f32]) {
        let (width, [w0, w1, w2], offset) = (self.width, self.weight, self.luma_offset);
        match (self.layout, self.channels) {
            (_, 1) => {
                for (luma, &value) in out.iter_mut().zip(&data[y * width..(y + 1) * width]) {
                    *luma = w0 * value.as_f32() + offset;
                }
            }
            (ImageLayout::Nchw, _) => {
                let plane = width * self.height;
                let row = |channel: usize| &data[channel * plane + y * width..channel * plane + (y + 1) * width];
                for (((luma, &v0), &v1), &v2) in out.iter_mut().zip(row(0)).zip(row(1)).zip(row(2)) {
                    *luma = w0 * v0.as_f32() + w1 * v1.as_f32() + w2 * v2.as_f32() + offset;
                }
            }
            (ImageLayout::Nhwc, _) => {
                for (luma, pixel) in out.iter_mut().zip(data[y * width * 3..(y + 1) * width * 3].chunks_exact(3)) {
                    *luma = w0 * pixel[0].as_f32() + w1 * pixel[1].as_f32() + w2 * pixel[2].as_f32() + offset;
                }
            }
        }
    }

    /// The sums of row `y`'s tensor values per channel (of a three-channel tensor).
    fn channel_row_sums<T: AsF32>(&self, data: &[T], y: usize) -> [f32; 3] {
        let width = self.width;
        match self.layout {
            ImageLayout::Nchw => std::array::from_fn(|channel| {
                let start = channel * width * self.height + y * width;
                lane_sum(&data[start..start + width], T::as_f32)
            }),
            ImageLayout::Nhwc => data[y * width * 3..(y + 1) * width * 3]
                .chunks_exact(3)
                .fold([0.0; 3], |sums, pixel| std::array::from_fn(|channel| sums[channel] + pixel[channel].as_f32())),
        }
    }
}

/// The sum of `value(v)` over `values`, in eight lanes so that the compiler can vectorise it (a plain float
/// sum must keep its order, which forbids that).
fn lane_sum<T: Copy>(values: &[T], value: impl Fn(T) -> f32) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = values.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().map(|&v| value(v)).sum();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += value(v);
        }
    }
    lanes.iter().sum::<f32>() + tail
}
