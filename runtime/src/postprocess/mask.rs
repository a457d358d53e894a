//! Run-length encoding of masks over source pixels, as [`protocol::Mask`] defines it, with the size bounded: a
//! mask that would need more runs than allowed is encoded again at twice the stride until it fits.

use protocol::{BoundingBox, Mask};

/// A rectangle of the source image in whole pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PixelRect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl PixelRect {
    /// The whole `width` x `height` image.
    pub(super) fn image(width: u32, height: u32) -> PixelRect {
        PixelRect { x: 0, y: 0, width, height }
    }

    /// The pixels `bbox` (source pixels, within the image) touches.
    pub(super) fn around(bbox: &BoundingBox) -> PixelRect {
        // Boxes are clamped to the image, so the casts cannot wrap.
        let (x, y) = (bbox.x_min.floor() as u32, bbox.y_min.floor() as u32);
        let (right, bottom) = (bbox.x_max.ceil() as u32, bbox.y_max.ceil() as u32);
        PixelRect { x, y, width: right.saturating_sub(x), height: bottom.saturating_sub(y) }
    }
}

/// Encodes the cells of `rect` for which `inside(x, y)` holds, `x, y` being the cell centre in source pixels.
/// Starts at one cell per pixel and doubles the stride while the runs exceed `max_runs` (at least 2, so that
/// the one-cell mask the doubling ends with always fits).
pub(super) fn encode(rect: PixelRect, max_runs: usize, mut inside: impl FnMut(f32, f32) -> bool) -> Mask {
    let mut stride = 1u32;
    loop {
        let (width, height) = (rect.width.div_ceil(stride), rect.height.div_ceil(stride));
        let last_try = width <= 1 && height <= 1;
        if let Some(counts) =
            runs(rect, stride, width, height, if last_try { usize::MAX } else { max_runs }, &mut inside)
        {
            return Mask { x: rect.x, y: rect.y, width, height, stride, counts };
        }
        stride *= 2;
    }
}

/// The run lengths at `stride`, or `None` as soon as they exceed `max_runs`.
fn runs(
    rect: PixelRect,
    stride: u32,
    width: u32,
    height: u32,
    max_runs: usize,
    inside: &mut impl FnMut(f32, f32) -> bool,
) -> Option<Vec<u32>> {
    let mut counts = vec![0u32];
    let mut current = false;
    let half = stride as f32 / 2.0;
    for row in 0..height {
        let y = (rect.y + row * stride) as f32 + half;
        for column in 0..width {
            let x = (rect.x + column * stride) as f32 + half;
            if inside(x, y) != current {
                current = !current;
                if counts.len() == max_runs {
                    return None;
                }
                counts.push(0);
            }
            // The last run exists: `counts` starts with one and only grows.
            if let Some(last) = counts.last_mut() {
                *last += 1;
            }
        }
    }
    Some(counts)
}

/// Bilinear sample of a row-major `width` x `height` map at `(x, y)` in map cells (cell centres at `i + 0.5`),
/// edges clamped.
pub(super) fn bilinear(map: &[f32], width: usize, height: usize, x: f32, y: f32) -> f32 {
    let clamp = |value: f32, size: usize| value.clamp(0.0, (size - 1) as f32);
    let (x, y) = (clamp(x - 0.5, width), clamp(y - 0.5, height));
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(width - 1), (y0 + 1).min(height - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let at = |column: usize, row: usize| map[row * width + column];
    let top = at(x0, y0) * (1.0 - fx) + at(x1, y0) * fx;
    let bottom = at(x0, y1) * (1.0 - fx) + at(x1, y1) * fx;
    top * (1.0 - fy) + bottom * fy
}

/// Expands a mask back into one `bool` per cell, row-major (the decoding the docs show).
#[cfg(test)]
pub(super) fn decode(mask: &Mask) -> Vec<bool> {
    let mut cells = Vec::new();
    for (i, &count) in mask.counts.iter().enumerate() {
        cells.extend(std::iter::repeat_n(i % 2 == 1, count as usize));
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_row_major_runs_starting_outside() {
        // A 4 x 3 image with the 2 x 2 square at (1, 1) inside.
        let square = |x: f32, y: f32| (1.0..3.0).contains(&x) && (1.0..3.0).contains(&y);
        let mask = encode(PixelRect::image(4, 3), 100, square);
        assert_eq!((mask.x, mask.y, mask.width, mask.height, mask.stride), (0, 0, 4, 3, 1));
        assert_eq!(mask.counts, vec![5, 2, 2, 2, 1]);
        let cells = decode(&mask);
        assert_eq!(cells.len(), 12);
        assert!(cells[5] && cells[6] && cells[9] && cells[10] && !cells[4] && !cells[7]);
        // A mask whose first cell is inside starts with an empty outside run.
        assert_eq!(encode(PixelRect::image(2, 1), 100, |x, _| x < 1.0).counts, vec![0, 1, 1]);
        assert_eq!(encode(PixelRect::image(2, 2), 100, |_, _| false).counts, vec![4]);
    }

    #[test]
    fn doubles_the_stride_until_the_runs_fit() {
        // A checkerboard of 2-pixel squares: over 100 runs at stride 1 (8 per row, fewer where rows join), one
        // cell per square at stride 2.
        let checker = |x: f32, y: f32| ((x as u32 / 2) + (y as u32 / 2)) % 2 == 1;
        let full = encode(PixelRect::image(16, 16), 1000, checker);
        assert_eq!(full.stride, 1);
        assert!(full.counts.len() > 100, "{}", full.counts.len());
        let coarse = encode(PixelRect::image(16, 16), 100, checker);
        assert_eq!((coarse.stride, coarse.width, coarse.height), (2, 8, 8));
        assert!(coarse.counts.len() <= 100);
        assert_eq!(coarse.counts.iter().sum::<u32>(), 64);
        // The cap is honoured even when only one cell is left.
        let tiny = encode(PixelRect { x: 3, y: 5, width: 7, height: 5 }, 2, |x, _| x > 6.0);
        assert_eq!((tiny.x, tiny.y, tiny.width, tiny.height, tiny.stride), (3, 5, 1, 1, 8));
        assert_eq!(tiny.counts, vec![0, 1]);
    }

    #[test]
    fn bilinear_interpolates_between_cell_centres_and_clamps() {
        let map = [0.0, 1.0, 2.0, 3.0]; // 2 x 2
        assert!((bilinear(&map, 2, 2, 0.5, 0.5) - 0.0).abs() < 1e-6);
        assert!((bilinear(&map, 2, 2, 1.0, 0.5) - 0.5).abs() < 1e-6);
        assert!((bilinear(&map, 2, 2, 1.0, 1.0) - 1.5).abs() < 1e-6);
        assert!((bilinear(&map, 2, 2, 9.0, 9.0) - 3.0).abs() < 1e-6);
    }

    #[test]
    fn the_rectangle_around_a_box_covers_its_pixels() {
        let bbox = BoundingBox { x_min: 1.5, y_min: 2.0, x_max: 4.2, y_max: 6.0 };
        assert_eq!(PixelRect::around(&bbox), PixelRect { x: 1, y: 2, width: 4, height: 4 });
    }
}
