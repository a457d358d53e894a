//! The model-sized RGB8 frame to the input tensor: channel order, `(pixel * scale - mean[c]) / std[c]`, layout.
//!
//! A pixel has only 256 values, so each channel's formula is evaluated once per value when the normaliser is
//! built and the per-frame loop is a table lookup. `f32` tables give exactly what the formula gives in `f32`
//! (numpy's float32 arithmetic), `f16` ones that rounded to the nearest half; integer tensors use tables of
//! the pixel values (less 128 for `i8`), so all go through the same loop.
//!
//! A letterbox's fill that is a whole pixel value is in the resized canvas already; any other (127.5, or a
//! value in normalised units) is written into the tensor's border here, after the lookup.

use crate::error::{Error, Result};
use crate::manifest::{ColorOrder, ImageInputSpec, ImageLayout, InputDtype, Padding};
use crate::tensor::{InputTensor, InputTensorMut};
use half::f16;

/// One lookup table per tensor channel, indexed by the 8-bit source value.
type Tables<T> = [[T; 256]; 3];

/// The tables of the tensor's element type.
#[derive(Debug)]
enum ElementTables {
    F32(Box<Tables<f32>>),
    U8(Box<Tables<u8>>),
    F16(Box<Tables<f16>>),
    I8(Box<Tables<i8>>),
    I32(Box<Tables<i32>>),
    I64(Box<Tables<i64>>),
}

/// Tables whose entry for a channel and 8-bit value is `entry(channel, value)`.
fn tables<T: Copy>(entry: impl Fn(usize, u8) -> T) -> Box<Tables<T>> {
    Box::new(std::array::from_fn(|channel| std::array::from_fn(|value| entry(channel, value as u8))))
}

/// A letterbox rectangle of the tensor: left, top, width and height.
pub(crate) type Inset = (u32, u32, u32, u32);

/// Writes the input tensor from RGB8 frames of the model's size, into a buffer the caller keeps.
#[derive(Debug)]
pub(crate) struct Normalizer {
    color: ColorOrder,
    layout: ImageLayout,
    /// The model's width: a letterbox's (whose input size is fixed).
    width: usize,
    channels: usize,
    dtype: InputDtype,
    tables: ElementTables,
    /// Each tensor channel's letterbox fill, where the canvas cannot hold it (see the module's notes).
    pad: Option<[f32; 3]>,
}

impl Normalizer {
    /// A normaliser for `spec`. Mean and std hold one value for all channels or one per channel, in the
    /// tensor's channel order (for `bgr`, index 0 is blue); manifest validation checks that.
    pub fn new(spec: &ImageInputSpec) -> Normalizer {
        let normalised = |channel: usize, value: f32| {
            let mean = per_channel(&spec.mean, channel, 0.0);
            let std = per_channel(&spec.std, channel, 1.0);
            (value * spec.scale - mean) / std
        };
        let tables = match spec.dtype {
            InputDtype::F32 => ElementTables::F32(tables(|channel, value| normalised(channel, f32::from(value)))),
            InputDtype::F16 => {
                ElementTables::F16(tables(|channel, value| f16::from_f32(normalised(channel, f32::from(value)))))
            }
            InputDtype::U8 => ElementTables::U8(tables(|_, value| value)),
            InputDtype::I8 => ElementTables::I8(tables(|_, value| (i16::from(value) - 128) as i8)),
            InputDtype::I32 => ElementTables::I32(tables(|_, value| i32::from(value))),
            InputDtype::I64 => ElementTables::I64(tables(|_, value| i64::from(value))),
        };
        // Integer tensors only take whole pixel values (manifest validation), which the canvas holds.
        let pad = match spec.padding() {
            Padding::Pixel(value) if value.fract() == 0.0 => None,
            Padding::Pixel(value) => Some(std::array::from_fn(|channel| normalised(channel, value))),
            Padding::Normalized(value) => Some([value; 3]),
        };
        let channels = spec.channels();
        Normalizer {
            color: spec.color,
            layout: spec.layout,
            width: spec.width as usize,
            channels,
            dtype: spec.dtype,
            tables,
            pad: pad.filter(|_| spec.dtype.is_float()),
        }
    }

    /// Writes `out` from `rgb`, an RGB8 frame of the tensor's width x height (the model's, or the frame's own
    /// where the input size is chosen per frame) whose letterbox `inset` (if any) holds the image.
    /// [`Error::TensorMismatch`] when `out` is not a tensor of the spec's element type and that size.
    pub fn write(&self, rgb: &[u8], inset: Option<Inset>, out: InputTensorMut<'_>) -> Result<()> {
        let len = rgb.len() / 3 * self.channels;
        let mismatch = |out: &InputTensorMut<'_>| Error::TensorMismatch {
            expected: format!("{len} {}", self.dtype.name()),
            got: format!("{} {}", out.len(), out.dtype().name()),
        };
        if out.len() != len {
            return Err(mismatch(&out));
        }
        let border = self.pad.zip(inset);
        match (&self.tables, out) {
            (ElementTables::F32(tables), InputTensorMut::F32(data)) => self.write_as(tables, rgb, border, data),
            (ElementTables::F16(tables), InputTensorMut::F16(data)) => {
                let border = border.map(|(pad, inset)| (pad.map(f16::from_f32), inset));
                self.write_as(tables, rgb, border, data)
            }
            (ElementTables::U8(tables), InputTensorMut::U8(data)) => self.write_as(tables, rgb, None, data),
            (ElementTables::I8(tables), InputTensorMut::I8(data)) => self.write_as(tables, rgb, None, data),
            (ElementTables::I32(tables), InputTensorMut::I32(data)) => self.write_as(tables, rgb, None, data),
            (ElementTables::I64(tables), InputTensorMut::I64(data)) => self.write_as(tables, rgb, None, data),
            (_, out) => return Err(mismatch(&out)),
        }
        Ok(())
    }

    /// The lookup into `out`, then the letterbox `border`'s fill (per channel, and the inset) where one is due.
    fn write_as<T: Copy>(&self, tables: &Tables<T>, rgb: &[u8], border: Option<([T; 3], Inset)>, out: &mut [T]) {
        write(self.color, self.layout, tables, rgb, out);
        if let Some((pad, inset)) = border {
            fill_border(self.layout, self.width, self.channels, inset, pad, out);
        }
    }

    /// A zeroed tensor of `len` elements to write, of the spec's element type.
    pub fn new_tensor(&self, len: usize) -> OwnedTensor {
        match self.tables {
            ElementTables::F32(_) => OwnedTensor::F32(vec![0.0; len]),
            ElementTables::U8(_) => OwnedTensor::U8(vec![0; len]),
            ElementTables::F16(_) => OwnedTensor::F16(vec![f16::ZERO; len]),
            ElementTables::I8(_) => OwnedTensor::I8(vec![0; len]),
            ElementTables::I32(_) => OwnedTensor::I32(vec![0; len]),
            ElementTables::I64(_) => OwnedTensor::I64(vec![0; len]),
        }
    }
}

/// A tensor in a plain buffer, for callers of [`super::ImagePreprocessor::prepare`].
#[derive(Debug)]
pub(crate) enum OwnedTensor {
    F32(Vec<f32>),
    U8(Vec<u8>),
    F16(Vec<f16>),
    I8(Vec<i8>),
    I32(Vec<i32>),
    I64(Vec<i64>),
}

impl OwnedTensor {
    pub fn len(&self) -> usize {
        match self {
            OwnedTensor::F32(data) => data.len(),
            OwnedTensor::U8(data) => data.len(),
            OwnedTensor::F16(data) => data.len(),
            OwnedTensor::I8(data) => data.len(),
            OwnedTensor::I32(data) => data.len(),
            OwnedTensor::I64(data) => data.len(),
        }
    }

    pub fn view(&self) -> InputTensor<'_> {
        match self {
            OwnedTensor::F32(data) => InputTensor::F32(data),
            OwnedTensor::U8(data) => InputTensor::U8(data),
            OwnedTensor::F16(data) => InputTensor::F16(data),
            OwnedTensor::I8(data) => InputTensor::I8(data),
            OwnedTensor::I32(data) => InputTensor::I32(data),
            OwnedTensor::I64(data) => InputTensor::I64(data),
        }
    }

    pub fn view_mut(&mut self) -> InputTensorMut<'_> {
        match self {
            OwnedTensor::F32(data) => InputTensorMut::F32(data),
            OwnedTensor::U8(data) => InputTensorMut::U8(data),
            OwnedTensor::F16(data) => InputTensorMut::F16(data),
            OwnedTensor::I8(data) => InputTensorMut::I8(data),
            OwnedTensor::I32(data) => InputTensorMut::I32(data),
            OwnedTensor::I64(data) => InputTensorMut::I64(data),
        }
    }
}

/// Sets every element of the pixels outside `inset` to its channel's `pad`, in a `width`-wide tensor of
/// `channels` channels laid out as `layout`.
fn fill_border<T: Copy>(layout: ImageLayout, width: usize, channels: usize, inset: Inset, pad: [T; 3], out: &mut [T]) {
    let (left, top, inset_width, inset_height) = inset;
    let (left, right) = (left as usize, (left + inset_width) as usize);
    let (top, bottom) = (top as usize, (top + inset_height) as usize);
    let plane = out.len() / channels;
    let height = plane / width.max(1);
    for y in 0..height {
        let inside_rows = (top..bottom).contains(&y);
        for x in (0..width).filter(|x| !inside_rows || !(left..right).contains(x)) {
            let pixel = y * width + x;
            for (channel, value) in pad.iter().enumerate().take(channels) {
                let index = match layout {
                    ImageLayout::Nchw => channel * plane + pixel,
                    ImageLayout::Nhwc => pixel * channels + channel,
                };
                out[index] = *value;
            }
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
