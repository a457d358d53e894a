//! Box outlines drawn straight onto an RGB8 frame: a few filled bands, no drawing crate.

use runtime::BoundingBox;

/// The outline colour: green, visible on most scenes.
const COLOUR: [u8; 3] = [0, 255, 0];

/// Draws the outline of each box, `thickness` pixels wide inside its edges, on `rgb` (`width` × `height`, rows
/// top to bottom, no padding). Boxes are clipped to the frame; one entirely outside it draws nothing.
pub fn draw_boxes(rgb: &mut [u8], width: u32, height: u32, boxes: &[BoundingBox], thickness: u32) {
    if width == 0 || height == 0 || thickness == 0 {
        return;
    }
    for bbox in boxes {
        let Some((x0, y0, x1, y1)) = clip(bbox, width, height) else { continue };
        let t = thickness - 1;
        fill(rgb, width, (x0, y0), (x1, (y0 + t).min(y1)));
        fill(rgb, width, (x0, y1.saturating_sub(t).max(y0)), (x1, y1));
        fill(rgb, width, (x0, y0), ((x0 + t).min(x1), y1));
        fill(rgb, width, (x1.saturating_sub(t).max(x0), y0), (x1, y1));
    }
}

/// A width for frames of this size: 2 pixels, more on large frames so that the box stays visible when scaled
/// down for viewing.
pub fn thickness_for(width: u32, height: u32) -> u32 {
    (width.min(height) / 240).max(2)
}

/// The box's pixel corners inside the frame (inclusive), `None` when it lies outside or is empty.
fn clip(bbox: &BoundingBox, width: u32, height: u32) -> Option<(u32, u32, u32, u32)> {
    let (right, bottom) = ((width - 1) as f32, (height - 1) as f32);
    if !(bbox.x_max >= 0.0 && bbox.y_max >= 0.0 && bbox.x_min <= right && bbox.y_min <= bottom) {
        return None;
    }
    if !(bbox.x_min <= bbox.x_max && bbox.y_min <= bbox.y_max) {
        return None;
    }
    // In range after the clamps: the casts neither truncate nor wrap.
    let x0 = bbox.x_min.max(0.0).floor() as u32;
    let y0 = bbox.y_min.max(0.0).floor() as u32;
    let x1 = bbox.x_max.min(right).floor() as u32;
    let y1 = bbox.y_max.min(bottom).floor() as u32;
    Some((x0, y0, x1, y1))
}

/// Paints the rectangle from `top_left` to `bottom_right` (inclusive, inside the frame).
fn fill(rgb: &mut [u8], width: u32, top_left: (u32, u32), bottom_right: (u32, u32)) {
    let row_bytes = width as usize * 3;
    for y in top_left.1..=bottom_right.1 {
        let row = y as usize * row_bytes;
        let span = row + top_left.0 as usize * 3..row + (bottom_right.0 as usize + 1) * 3;
        if let Some(pixels) = rgb.get_mut(span) {
            for pixel in pixels.chunks_exact_mut(3) {
                pixel.copy_from_slice(&COLOUR);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GREY: [u8; 3] = [90, 90, 90];

    fn frame(width: u32, height: u32) -> Vec<u8> {
        GREY.repeat((width * height) as usize)
    }

    fn pixel(rgb: &[u8], width: u32, x: u32, y: u32) -> [u8; 3] {
        let at = ((y * width + x) * 3) as usize;
        [rgb[at], rgb[at + 1], rgb[at + 2]]
    }

    #[test]
    fn the_edges_change_and_the_inside_and_outside_do_not() {
        let (width, height) = (40, 30);
        let mut rgb = frame(width, height);
        let bbox = BoundingBox { x_min: 10.0, y_min: 5.0, x_max: 29.6, y_max: 20.2 };
        draw_boxes(&mut rgb, width, height, &[bbox], 2);
        for y in 0..height {
            for x in 0..width {
                let inside_outer = (10..=29).contains(&x) && (5..=20).contains(&y);
                let inside_inner = (12..=27).contains(&x) && (7..=18).contains(&y);
                let expected = if inside_outer && !inside_inner { COLOUR } else { GREY };
                assert_eq!(pixel(&rgb, width, x, y), expected, "pixel ({x}, {y})");
            }
        }
    }

    #[test]
    fn boxes_are_clipped_to_the_frame() {
        let (width, height) = (20, 10);
        let mut rgb = frame(width, height);
        let overhanging = BoundingBox { x_min: -5.0, y_min: -5.0, x_max: 100.0, y_max: 100.0 };
        draw_boxes(&mut rgb, width, height, &[overhanging], 1);
        assert_eq!(pixel(&rgb, width, 0, 0), COLOUR);
        assert_eq!(pixel(&rgb, width, 19, 9), COLOUR);
        assert_eq!(pixel(&rgb, width, 10, 5), GREY);

        let mut untouched = frame(width, height);
        let outside = BoundingBox { x_min: 30.0, y_min: 0.0, x_max: 40.0, y_max: 5.0 };
        let inverted = BoundingBox { x_min: 8.0, y_min: 8.0, x_max: 2.0, y_max: 2.0 };
        let not_a_number = BoundingBox { x_min: f32::NAN, y_min: 0.0, x_max: 5.0, y_max: 5.0 };
        draw_boxes(&mut untouched, width, height, &[outside, inverted, not_a_number], 3);
        assert_eq!(untouched, frame(width, height));
    }

    #[test]
    fn a_box_thinner_than_the_outline_is_filled() {
        let (width, height) = (10, 10);
        let mut rgb = frame(width, height);
        draw_boxes(&mut rgb, width, height, &[BoundingBox { x_min: 4.0, y_min: 4.0, x_max: 5.0, y_max: 5.0 }], 4);
        assert_eq!(pixel(&rgb, width, 4, 4), COLOUR);
        assert_eq!(pixel(&rgb, width, 5, 5), COLOUR);
        assert_eq!(pixel(&rgb, width, 6, 6), GREY);
    }

    #[test]
    fn thicker_outlines_on_larger_frames() {
        assert_eq!(thickness_for(320, 240), 2);
        assert_eq!(thickness_for(1920, 1080), 4);
    }
}
