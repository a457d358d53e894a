//! The model-sized RGB8 frame to the input tensor: channel order, `(pixel * scale - mean[c]) / std[c]`, layout.
//!
//! A pixel has only 256 values, so each channel's formula is evaluated once per value when the normaliser is
//! built and the per-frame loop is a table lookup. `f32` tables give exactly what the formula gives in `f32`
//! (numpy's float32 arithmetic); `u8` tensors use identity tables, so both go through the same loop.

use crate::manifest::{ColorOrder, ImageInputSpec, ImageLayout, InputDtype};
use crate::tensor::InputTensor;

/// One lookup table per tensor channel, indexed by the 8-bit source value.
type Tables<T> = [[T; 256]; 3];

/// The tensor's storage, allocated once at its final size.
#[derive(Debug)]
enum TensorBuffer {
    F32 { tables: Box<Tables<f32>>, data: Vec<f32> },
    U8 { tables: Box<Tables<u8>>, data: Vec<u8> },
}

/// Writes the input tensor from RGB8 frames of the model's size, into one buffer kept across calls.
#[derive(Debug)]
pub(crate) struct Normalizer {
    color: ColorOrder,
    layout: ImageLayout,
    pixels: usize,
    buffer: TensorBuffer,
}

impl Normalizer {
    /// A normaliser for `spec`. Mean and std hold one value for all channels or one per channel, in the
    /// tensor's channel order (for `bgr`, index 0 is blue); manifest validation checks that.
    pub fn new(spec: &ImageInputSpec) -> Normalizer {
        let pixels = spec.width as usize * spec.height as usize;
        let len = pixels * spec.channels();
        let buffer = match spec.dtype {
            InputDtype::F32 => {
                let mut tables = Box::new([[0.0; 256]; 3]);
                for (channel, table) in tables.iter_mut().enumerate() {
                    let mean = per_channel(&spec.mean, channel, 0.0);
                    let std = per_channel(&spec.std, channel, 1.0);
                    for (value, entry) in table.iter_mut().enumerate() {
                        *entry = (value as f32 * spec.scale - mean) / std;
                    }
                }
                TensorBuffer::F32 { tables, data: vec![0.0; len] }
            }
            InputDtype::U8 => {
                let identity: [u8; 256] = std::array::from_fn(|value| value as u8);
                TensorBuffer::U8 { tables: Box::new([identity; 3]), data: vec![0; len] }
            }
        };
        Normalizer { color: spec.color, layout: spec.layout, pixels, buffer }
    }

    /// Writes the tensor from `rgb`, an RGB8 frame of the model's width x height.
    pub fn write(&mut self, rgb: &[u8]) {
        debug_assert_eq!(rgb.len(), self.pixels * 3);
        match &mut self.buffer {
            TensorBuffer::F32 { tables, data } => write(self.color, self.layout, tables, rgb, data),
            TensorBuffer::U8 { tables, data } => write(self.color, self.layout, tables, rgb, data),
        }
    }

    /// The tensor as last written.
    pub fn tensor(&self) -> InputTensor<'_> {
        match &self.buffer {
            TensorBuffer::F32 { data, .. } => InputTensor::F32(data),
            TensorBuffer::U8 { data, .. } => InputTensor::U8(data),
        }
    }
}

fn per_channel(values: &[f32], channel: usize, default: f32) -> f32 {
    values.get(channel).or(values.first()).copied().unwrap_or(default)
}

/// ITU-R 601 luma, `round(0.299 R + 0.587 G + 0.114 B)`, computed as the Python reference's numpy does
/// (float64, left to right, halves to even) so that it agrees to the bit, ties included.
fn luma(pixel: &[u8]) -> u8 {
    let [r, g, b] = [pixel[0], pixel[1], pixel[2]].map(f64::from);
    (0.299 * r + 0.587 * g + 0.114 * b).round_ties_even() as u8
}

fn write<T: Copy>(color: ColorOrder, layout: ImageLayout, tables: &Tables<T>, rgb: &[u8], out: &mut [T]) {
    let pixels = rgb.chunks_exact(3);
    // Which RGB sample feeds tensor channels 0 and 2; channel 1 is green either way.
    let (first, last) = match color {
        ColorOrder::Rgb => (0, 2),
        ColorOrder::Bgr => (2, 0),
        ColorOrder::Gray => {
            // One channel: NCHW and NHWC are the same order.
            for (value, pixel) in out.iter_mut().zip(pixels) {
                *value = tables[0][usize::from(luma(pixel))];
            }
            return;
        }
    };
    let [table_0, table_1, table_2] = tables;
    match layout {
        ImageLayout::Nhwc => {
            for (values, pixel) in out.chunks_exact_mut(3).zip(pixels) {
                values[0] = table_0[usize::from(pixel[first])];
                values[1] = table_1[usize::from(pixel[1])];
                values[2] = table_2[usize::from(pixel[last])];
            }
        }
        ImageLayout::Nchw => {
            let plane = out.len() / 3;
            let (plane_0, rest) = out.split_at_mut(plane);
            let (plane_1, plane_2) = rest.split_at_mut(plane);
            for (((value_0, value_1), value_2), pixel) in
                plane_0.iter_mut().zip(plane_1.iter_mut()).zip(plane_2.iter_mut()).zip(pixels)
            {
                *value_0 = table_0[usize::from(pixel[first])];
                *value_1 = table_1[usize::from(pixel[1])];
                *value_2 = table_2[usize::from(pixel[last])];
            }
        }
    }
}
