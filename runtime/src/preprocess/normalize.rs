//! The model-sized RGB8 frame to the input tensor: channel order, `(pixel * scale - mean[c]) / std[c]`, layout.
//!
//! A pixel has only 256 values, so each channel's formula is evaluated once per value when the normaliser is
//! built and the per-frame loop is a table lookup. `f32` tables give exactly what the formula gives in `f32`
//! (numpy's float32 arithmetic); `u8` tensors use identity tables, so both go through the same loop.

use crate::error::{Error, Result};
use crate::manifest::{ColorOrder, ImageInputSpec, ImageLayout, InputDtype};
use crate::tensor::InputTensorMut;

/// One lookup table per tensor channel, indexed by the 8-bit source value.
type Tables<T> = [[T; 256]; 3];

/// The tables of the tensor's element type.
#[derive(Debug)]
enum ElementTables {
    F32(Box<Tables<f32>>),
    U8(Box<Tables<u8>>),
}

/// Writes the input tensor from RGB8 frames of the model's size, into a buffer the caller keeps.
#[derive(Debug)]
pub(crate) struct Normalizer {
    color: ColorOrder,
    layout: ImageLayout,
    channels: usize,
    tables: ElementTables,
}

impl Normalizer {
    /// A normaliser for `spec`. Mean and std hold one value for all channels or one per channel, in the
    /// tensor's channel order (for `bgr`, index 0 is blue); manifest validation checks that.
    pub fn new(spec: &ImageInputSpec) -> Normalizer {
        let tables = match spec.dtype {
            InputDtype::F32 => {
                let mut tables = Box::new([[0.0; 256]; 3]);
                for (channel, table) in tables.iter_mut().enumerate() {
                    let mean = per_channel(&spec.mean, channel, 0.0);
                    let std = per_channel(&spec.std, channel, 1.0);
                    for (value, entry) in table.iter_mut().enumerate() {
                        *entry = (value as f32 * spec.scale - mean) / std;
                    }
                }
                ElementTables::F32(tables)
            }
            InputDtype::U8 => {
                let identity: [u8; 256] = std::array::from_fn(|value| value as u8);
                ElementTables::U8(Box::new([identity; 3]))
            }
        };
        Normalizer { color: spec.color, layout: spec.layout, channels: spec.channels(), tables }
    }

    /// Writes `out` from `rgb`, an RGB8 frame of the tensor's width x height (the model's, or the frame's own
    /// where the input size is chosen per frame). [`Error::TensorMismatch`] when `out` is not a tensor of the
    /// spec's element type and that size.
    pub fn write(&self, rgb: &[u8], out: InputTensorMut<'_>) -> Result<()> {
        let (expected, got) = (rgb.len() / 3 * self.channels, out.len());
        match (&self.tables, out) {
            (ElementTables::F32(tables), InputTensorMut::F32(data)) if got == expected => {
                write(self.color, self.layout, tables, rgb, data);
            }
            (ElementTables::U8(tables), InputTensorMut::U8(data)) if got == expected => {
                write(self.color, self.layout, tables, rgb, data);
            }
            (tables, out) => {
                let kind = |f32: bool| if f32 { "f32" } else { "u8" };
                return Err(Error::TensorMismatch {
                    expected: format!("{expected} {}", kind(matches!(tables, ElementTables::F32(_)))),
                    got: format!("{got} {}", kind(matches!(out, InputTensorMut::F32(_)))),
                });
            }
        }
        Ok(())
    }

    /// A zeroed tensor of `len` elements to write, of the spec's element type.
    pub fn new_tensor(&self, len: usize) -> OwnedTensor {
        match self.tables {
            ElementTables::F32(_) => OwnedTensor::F32(vec![0.0; len]),
            ElementTables::U8(_) => OwnedTensor::U8(vec![0; len]),
        }
    }
}

/// A tensor in a plain buffer, for callers of [`super::ImagePreprocessor::prepare`].
#[derive(Debug)]
pub(crate) enum OwnedTensor {
    F32(Vec<f32>),
    U8(Vec<u8>),
}

impl OwnedTensor {
    pub fn len(&self) -> usize {
        match self {
            OwnedTensor::F32(data) => data.len(),
            OwnedTensor::U8(data) => data.len(),
        }
    }

    pub fn view(&self) -> crate::tensor::InputTensor<'_> {
        match self {
            OwnedTensor::F32(data) => crate::tensor::InputTensor::F32(data),
            OwnedTensor::U8(data) => crate::tensor::InputTensor::U8(data),
        }
    }

    pub fn view_mut(&mut self) -> InputTensorMut<'_> {
        match self {
            OwnedTensor::F32(data) => InputTensorMut::F32(data),
            OwnedTensor::U8(data) => InputTensorMut::U8(data),
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
