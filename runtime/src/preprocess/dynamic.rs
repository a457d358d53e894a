//! Input sizes chosen per frame ([`DynamicSize`]), for models whose graph input has a dynamic height and width,
//! computed as PaddleOCR's (and rapidocr's) preprocessing computes them, and the right padding of a
//! `fixed_height` tensor.

use crate::error::Result;
use crate::manifest::{DynamicSize, DynamicSizeMode, ImageLayout, SideLimit};
use crate::tensor::InputTensorMut;

use super::normalize::Normalizer;

/// The tensor size for one frame, and how much of it the frame fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameSize {
    /// Tensor width.
    pub width: u32,
    /// Tensor height.
    pub height: u32,
    /// Columns the resized frame fills, from the left; the rest is padding.
    pub content_width: u32,
}

impl FrameSize {
    /// The tensor size of a `source` (width, height) frame; `input_height` is the manifest's `input.height`.
    pub fn new(dynamic: &DynamicSize, input_height: u32, source: (u32, u32)) -> FrameSize {
        let (w, h) = (f64::from(source.0), f64::from(source.1));
        let (min_side, max_side) = (dynamic.min_side(), dynamic.max_side);
        let multiple = dynamic.multiple_of.max(1);
        match dynamic.mode {
            DynamicSizeMode::LimitSide => {
                let limit = f64::from(dynamic.limit_side.unwrap_or(max_side));
                let ratio = match dynamic.limit {
                    SideLimit::Max if w.max(h) > limit => limit / w.max(h),
                    SideLimit::Min if w.min(h) < limit => limit / w.min(h),
                    _ => 1.0,
                };
                // Past max_side, the whole frame is scaled down instead: the aspect ratio is kept.
                let ratio = ratio.min(f64::from(max_side) / w.max(h));
                // int(side * ratio), then Python's round() to the multiple (halves to even), as rapidocr.
                let side = |length: f64| {
                    let rounded = ((length * ratio).floor() / f64::from(multiple)).round_ties_even() as u32 * multiple;
                    rounded.clamp(min_side, max_side)
                };
                let (width, height) = (side(w), side(h));
                FrameSize { width, height, content_width: width }
            }
            DynamicSizeMode::FixedHeight => {
                let scaled = f64::from(input_height) * (w / h);
                let width = (scaled.floor() as u32).max(min_side).next_multiple_of(multiple).min(max_side);
                let content_width = (scaled.ceil() as u32).clamp(1, width);
                FrameSize { width, height: input_height, content_width }
            }
        }
    }

    /// The tensor shape for `channels` in `layout`, batch of one.
    pub fn shape(&self, layout: ImageLayout, channels: usize) -> [usize; 4] {
        let (h, w) = (self.height as usize, self.width as usize);
        match layout {
            ImageLayout::Nchw => [1, channels, h, w],
            ImageLayout::Nhwc => [1, h, w, channels],
        }
    }
}

/// Normalises `rgb` (the resized frame, `size.content_width` x `size.height`) into the left of `tensor` and
/// fills the columns right of it with `pad` (tensor units; rounded into 0..=255 for a u8 tensor).
pub(crate) fn write_padded(
    normalizer: &Normalizer,
    rgb: &[u8],
    tensor: InputTensorMut<'_>,
    size: FrameSize,
    (layout, channels): (ImageLayout, usize),
    pad: f32,
) -> Result<()> {
    let content = size.content_width as usize * size.height as usize * channels;
    // One stretch of `content_row` values per row of the content, `row` per row of the tensor.
    let (rows, content_row, row) = match layout {
        ImageLayout::Nchw => (channels * size.height as usize, size.content_width as usize, size.width as usize),
        ImageLayout::Nhwc => {
            (size.height as usize, size.content_width as usize * channels, size.width as usize * channels)
        }
    };
    // Integer tensors hold pixel values: the pad is rounded into their range (manifest validation keeps a
    // normalised pad for float tensors).
    let whole = pad.round();
    let shape = (content, rows, (content_row, row));
    match tensor {
        InputTensorMut::F32(data) => write_rows(normalizer, rgb, data, shape, |h| InputTensorMut::F32(h), pad)?,
        InputTensorMut::F16(data) => {
            write_rows(normalizer, rgb, data, shape, |h| InputTensorMut::F16(h), half::f16::from_f32(pad))?
        }
        InputTensorMut::U8(data) => {
            write_rows(normalizer, rgb, data, shape, |h| InputTensorMut::U8(h), whole.clamp(0.0, 255.0) as u8)?
        }
        InputTensorMut::I8(data) => {
            write_rows(normalizer, rgb, data, shape, |h| InputTensorMut::I8(h), whole.clamp(-128.0, 127.0) as i8)?
        }
        InputTensorMut::I32(data) => {
            write_rows(normalizer, rgb, data, shape, |h| InputTensorMut::I32(h), whole as i32)?
        }
        InputTensorMut::I64(data) => {
            write_rows(normalizer, rgb, data, shape, |h| InputTensorMut::I64(h), whole as i64)?
        }
    }
    Ok(())
}

/// Normalises `rgb` into the first `content` values of `data` (as the tensor `wrap` makes of them), then spreads
/// them into `rows` rows of the tensor's width, padded with `pad`.
fn write_rows<T: Copy>(
    normalizer: &Normalizer,
    rgb: &[u8],
    data: &mut [T],
    (content, rows, widths): (usize, usize, (usize, usize)),
    wrap: impl for<'b> FnOnce(&'b mut [T]) -> InputTensorMut<'b>,
    pad: T,
) -> Result<()> {
    let (head, _) = data.split_at_mut(content.min(data.len()));
    normalizer.write(rgb, None, wrap(head))?;
    spread_rows(data, rows, widths, pad);
    Ok(())
}

/// Moves `rows` rows of `content_row` values, packed at the start of `data`, to rows of `row` values, and fills
/// the rest of each row with `pad`. Last row first, so that no row is overwritten before it moves.
fn spread_rows<T: Copy>(data: &mut [T], rows: usize, (content_row, row): (usize, usize), pad: T) {
    if content_row == row {
        return;
    }
    for r in (0..rows).rev() {
        data.copy_within(r * content_row..(r + 1) * content_row, r * row);
        data[r * row + content_row..(r + 1) * row].fill(pad);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit_side(limit: SideLimit) -> DynamicSize {
        DynamicSize {
            mode: DynamicSizeMode::LimitSide,
            limit_side: Some(736),
            limit,
            multiple_of: 32,
            min_side: None,
            max_side: 2048,
            pad: 0.0,
        }
    }

    fn fixed_height(min_side: u32) -> DynamicSize {
        DynamicSize {
            mode: DynamicSizeMode::FixedHeight,
            limit_side: None,
            limit: SideLimit::Max,
            multiple_of: 1,
            min_side: Some(min_side),
            max_side: 2048,
            pad: 0.0,
        }
    }

    #[test]
    fn limit_side_scales_rounds_to_the_multiple_and_clamps() {
        let size = |dynamic: &DynamicSize, source| {
            let size = FrameSize::new(dynamic, 0, source);
            (size.width, size.height)
        };
        // rapidocr's DetPreProcess: 640x360 with the short side to 736 is int(1308.4) -> 1308 -> 41 x 32.
        assert_eq!(size(&limit_side(SideLimit::Min), (640, 360)), (1312, 736));
        // A large frame keeps its size under `min`, rounded: 1000 / 32 = 31.25 -> 992; 800 / 32 = 25 -> 800.
        assert_eq!(size(&limit_side(SideLimit::Min), (1000, 800)), (992, 800));
        // `max` scales the long side down to 736: 1000x500 -> 736x368, and 368 / 32 = 11.5 rounds to even 12.
        assert_eq!(size(&limit_side(SideLimit::Max), (1000, 500)), (736, 384));
        // A sliver still gets min_side; a panorama is scaled to max_side on its long side.
        assert_eq!(size(&limit_side(SideLimit::Max), (300, 4)), (288, 32));
        assert_eq!(size(&limit_side(SideLimit::Min), (10000, 500)), (2048, 96));
    }

    #[test]
    fn fixed_height_takes_the_width_from_the_aspect_ratio_and_pads_to_min_side() {
        // rapidocr's resize_norm_img for one crop: int(48 * 400 / 41) = 468, ceil = 469 > 468 -> 468.
        assert_eq!(
            FrameSize::new(&fixed_height(1), 48, (400, 41)),
            FrameSize { width: 468, height: 48, content_width: 468 }
        );
        // A short crop is padded on the right up to 320 (PaddleOCR's default width).
        assert_eq!(
            FrameSize::new(&fixed_height(320), 48, (100, 48)),
            FrameSize { width: 320, height: 48, content_width: 100 }
        );
        // A very long one is squeezed into max_side.
        assert_eq!(FrameSize::new(&fixed_height(320), 48, (9000, 48)).width, 2048);
    }

    #[test]
    fn spreading_rows_keeps_the_content_on_the_left_and_pads_the_right() {
        // Two rows of two values in rows of four.
        let mut data = [1, 2, 3, 4, 9, 9, 9, 9];
        spread_rows(&mut data, 2, (2, 4), 0);
        assert_eq!(data, [1, 2, 0, 0, 3, 4, 0, 0]);
    }
}
