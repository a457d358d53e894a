//! Raw frames to RGB8, a strip of rows at a time, so that a resizer can take a frame in cache-sized pieces.
//!
//! YUV is read as BT.601 limited range ("TV range", Y 16..235, chroma 16..240), the default matrix of ffmpeg's
//! libswscale and of OpenCV's `COLOR_YUV2RGB_*`, in OpenCV's 20-bit fixed point, each chroma sample covering
//! its 2x1 (YUYV) or 2x2 (NV12, I420) pixels, as OpenCV has it (no chroma interpolation). Luma under 16 is
//! taken as it is, as libswscale does (OpenCV raises it to 16 first, which differs on very dark saturated
//! pixels only). Against swscale without chroma filtering, every value is within one level.

use super::{Frame, PixelFormat};

/// Fixed-point BT.601 coefficients, scaled by 2^20: 255/219 for luma, then the chroma terms (255/224 times
/// 1.402, 0.714136, 0.344136 and 1.772), as OpenCV's `ITUR_BT_601_*`.
const SHIFT: u32 = 20;
const Y_SCALE: i32 = 1_220_542;
const V_TO_RED: i32 = 1_673_527;
const V_TO_GREEN: i32 = -852_492;
const U_TO_GREEN: i32 = -409_993;
const U_TO_BLUE: i32 = 2_116_026;
const HALF: i32 = 1 << (SHIFT - 1);

/// One chroma sample's contribution to red, green and blue, rounding included.
#[derive(Clone, Copy)]
struct Chroma {
    red: i32,
    green: i32,
    blue: i32,
}

impl Chroma {
    fn new(u: u8, v: u8) -> Chroma {
        let (u, v) = (i32::from(u) - 128, i32::from(v) - 128);
        Chroma { red: HALF + V_TO_RED * v, green: HALF + V_TO_GREEN * v + U_TO_GREEN * u, blue: HALF + U_TO_BLUE * u }
    }

    /// The RGB8 pixel of luma `y` under this chroma.
    fn pixel(self, y: u8) -> [u8; 3] {
        let luma = (i32::from(y) - 16) * Y_SCALE;
        let channel = |term: i32| ((luma + term) >> SHIFT).clamp(0, 255) as u8;
        [channel(self.red), channel(self.green), channel(self.blue)]
    }

    /// The two RGB8 pixels of lumas `y` under this chroma.
    fn pair(self, y: [u8; 2]) -> [u8; 6] {
        let ([r0, g0, b0], [r1, g1, b1]) = (self.pixel(y[0]), self.pixel(y[1]));
        [r0, g0, b0, r1, g1, b1]
    }
}

impl Frame {
    /// The whole frame as RGB8, `width * 3` bytes a row, rows top to bottom, converted as the module says.
    pub fn to_rgb8(&self) -> Vec<u8> {
        let mut rgb = vec![0; self.width as usize * self.height as usize * 3];
        self.write_rgb8_rows(0, &mut rgb);
        rgb
    }

    /// Writes rows `first_row..` as tight RGB8 into `out`, as many rows as `out` holds (whole rows; they must
    /// lie inside the frame).
    pub(crate) fn write_rgb8_rows(&self, first_row: u32, out: &mut [u8]) {
        let width = self.width as usize;
        let row_bytes = width * 3;
        let planes = [self.plane(0), self.plane(1), self.plane(2)];
        let row_of = |plane: usize, row: usize| {
            let len = self.format.plane_size(plane, self.width, self.height).0;
            &planes[plane][row * self.strides[plane]..][..len]
        };
        for (index, out_row) in out.chunks_exact_mut(row_bytes).enumerate() {
            let row = first_row as usize + index;
            match self.format {
                PixelFormat::Rgb8 => out_row.copy_from_slice(row_of(0, row)),
                PixelFormat::Bgr8 => {
                    for (rgb, bgr) in out_row.chunks_exact_mut(3).zip(row_of(0, row).chunks_exact(3)) {
                        rgb.copy_from_slice(&[bgr[2], bgr[1], bgr[0]]);
                    }
                }
                PixelFormat::Gray8 => {
                    for (rgb, &gray) in out_row.chunks_exact_mut(3).zip(row_of(0, row)) {
                        rgb.fill(gray);
                    }
                }
                PixelFormat::Yuyv => {
                    // Y0 U Y1 V: two pixels sharing one chroma sample.
                    let (yuyv, _) = row_of(0, row).as_chunks::<4>();
                    let (pairs, last) = out_row.as_chunks_mut::<6>();
                    for (pair, yuyv) in pairs.iter_mut().zip(yuyv) {
                        *pair = Chroma::new(yuyv[1], yuyv[3]).pair([yuyv[0], yuyv[2]]);
                    }
                    if let (false, Some(yuyv)) = (last.is_empty(), yuyv.get(pairs.len())) {
                        last.copy_from_slice(&Chroma::new(yuyv[1], yuyv[3]).pixel(yuyv[0]));
                    }
                }
                PixelFormat::Nv12 => {
                    let luma = row_of(0, row);
                    let chroma = row_of(1, row / 2).chunks_exact(2).map(|uv| Chroma::new(uv[0], uv[1]));
                    write_planar_row(out_row, luma, chroma);
                }
                PixelFormat::I420 => {
                    let luma = row_of(0, row);
                    let (u, v) = (row_of(1, row / 2), row_of(2, row / 2));
                    write_planar_row(out_row, luma, u.iter().zip(v).map(|(&u, &v)| Chroma::new(u, v)));
                }
            }
        }
    }
}

/// One row of a 4:2:0 frame: each chroma sample covers two pixels (one for an odd width's last). Whole pairs
/// go through fixed-size arrays, which leaves the loop without bounds checks.
fn write_planar_row(out_row: &mut [u8], luma: &[u8], mut chroma: impl Iterator<Item = Chroma>) {
    let (luma_pairs, luma_last) = luma.as_chunks::<2>();
    let (pairs, last) = out_row.as_chunks_mut::<6>();
    for ((pair, &y), chroma) in pairs.iter_mut().zip(luma_pairs).zip(&mut chroma) {
        *pair = chroma.pair(y);
    }
    if let (false, Some(&y), Some(chroma)) = (last.is_empty(), luma_last.first(), chroma.next()) {
        last.copy_from_slice(&chroma.pixel(y));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limited_range_black_white_and_primaries() {
        // Y 16 is black and 235 white; (81, 90, 240), (145, 54, 34) and (41, 240, 110) are BT.601's red, green and
        // blue rounded to 8 bits (so red comes back as 254).
        let yuv = [[16, 128, 128], [235, 128, 128], [81, 90, 240], [145, 54, 34], [41, 240, 110], [0, 128, 128]];
        let rgb: Vec<[u8; 3]> = yuv.iter().map(|&[y, u, v]| Chroma::new(u, v).pixel(y)).collect();
        assert_eq!(rgb, [[0, 0, 0], [255, 255, 255], [254, 0, 0], [0, 255, 1], [0, 0, 255], [0, 0, 0]]);
    }

    #[test]
    fn every_format_gives_the_same_rgb_for_the_same_pixels() {
        // 3 x 2 pixels, odd width: luma 16..=235 spread out, one chroma sample per 2 x 2 block (per 2 x 1 in
        // YUYV, where both rows repeat the block's sample).
        let luma = [16, 100, 235, 60, 180, 20];
        let (u, v) = ([90, 200], [240, 30]);
        let i420 = [&luma[..], &u, &v].concat();
        let nv12 = [&luma[..], &[u[0], v[0], u[1], v[1]]].concat();
        let yuyv_row = |row: &[u8]| [row[0], u[0], row[1], v[0], row[2], u[1], 0, v[1]];
        let yuyv = [yuyv_row(&luma[..3]), yuyv_row(&luma[3..])].concat();
        let expected = Frame::packed(PixelFormat::I420, 3, 2, i420).unwrap().to_rgb8();
        assert_eq!(expected.len(), 3 * 2 * 3);
        assert_eq!(Frame::packed(PixelFormat::Nv12, 3, 2, nv12).unwrap().to_rgb8(), expected);
        assert_eq!(Frame::packed(PixelFormat::Yuyv, 3, 2, yuyv).unwrap().to_rgb8(), expected);
        let bgr: Vec<u8> = expected.chunks_exact(3).flat_map(|p| [p[2], p[1], p[0]]).collect();
        assert_eq!(Frame::packed(PixelFormat::Bgr8, 3, 2, bgr).unwrap().to_rgb8(), expected);
        assert_eq!(Frame::packed(PixelFormat::Rgb8, 3, 2, expected.clone()).unwrap().to_rgb8(), expected);
        let gray = Frame::packed(PixelFormat::Gray8, 3, 2, luma.to_vec()).unwrap().to_rgb8();
        assert_eq!(&gray[..6], [16, 16, 16, 100, 100, 100]);
    }

    #[test]
    fn padded_strides_are_skipped() {
        // NV12 3 x 3: luma rows of 3 in strides of 8 (the plane takes all its strides, as the chroma follows),
        // chroma rows of 4 in strides of 6, the last one unpadded.
        let luma_rows = [[30u8, 60, 90], [120, 150, 180], [210, 235, 16]];
        let chroma_rows = [[100u8, 150, 50, 200], [128, 128, 90, 240]];
        let mut padded = Vec::new();
        for row in &luma_rows {
            padded.extend(row);
            padded.extend([0xee; 5]);
        }
        for (i, row) in chroma_rows.iter().enumerate() {
            padded.extend(row);
            if i == 0 {
                padded.extend([0xee; 2]);
            }
        }
        let tight = [luma_rows.concat(), chroma_rows.concat()].concat();
        let expected = Frame::packed(PixelFormat::Nv12, 3, 3, tight).unwrap().to_rgb8();
        let frame = Frame::new(PixelFormat::Nv12, 3, 3, [8, 6, 0], padded).unwrap();
        assert_eq!(frame.to_rgb8(), expected);
    }
}
