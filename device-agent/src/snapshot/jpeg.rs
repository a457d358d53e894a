//! JPEG encoding under a size cap, and the comment segment that carries a snapshot's metadata.

use image::codecs::jpeg::JpegEncoder;
use image::imageops::{self, FilterType};
use image::{ExtendedColorType, ImageError, RgbImage};

/// Qualities tried at each scale, after the configured one (those not below it are skipped).
const FALLBACK_QUALITIES: [u8; 3] = [70, 50, 30];
/// How many times the frame is halved when even the lowest quality is too large.
const MAX_HALVINGS: u32 = 2;

/// Whether `bytes` start as a JPEG does (SOI, then a marker).
pub fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8, 0xFF])
}

/// Encodes `frame` at `quality`, then at lower qualities, then at half and a quarter of its size, until the JPEG
/// is at most `max_bytes`; `None` when even the smallest is larger. A full-size attempt costs one encode, so the
/// usual case (it fits) is one encode.
pub fn encode_within(frame: &RgbImage, quality: u8, max_bytes: usize) -> Result<Option<Vec<u8>>, ImageError> {
    let qualities: Vec<u8> =
        std::iter::once(quality).chain(FALLBACK_QUALITIES.into_iter().filter(|&q| q < quality)).collect();
    let mut scaled = None;
    for halving in 0..=MAX_HALVINGS {
        if halving > 0 {
            let (width, height) = (frame.width() >> halving, frame.height() >> halving);
            if width == 0 || height == 0 {
                break;
            }
            scaled = Some(imageops::resize(frame, width, height, FilterType::Triangle));
        }
        let image = scaled.as_ref().unwrap_or(frame);
        for &quality in &qualities {
            let jpeg = encode(image, quality)?;
            if jpeg.len() <= max_bytes {
                return Ok(Some(jpeg));
            }
        }
    }
    Ok(None)
}

fn encode(image: &RgbImage, quality: u8) -> Result<Vec<u8>, ImageError> {
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, quality).encode(
        image.as_raw(),
        image.width(),
        image.height(),
        ExtendedColorType::Rgb8,
    )?;
    Ok(jpeg)
}

/// The bytes a comment of `text_len` bytes adds to a JPEG.
pub fn comment_overhead(text_len: usize) -> usize {
    4 + text_len
}

/// `jpeg` with a COM segment holding `text` right after its SOI marker: decoders skip it, and `exiftool`,
/// ImageMagick's `identify -verbose` and Pillow (`Image.info["comment"]`) show it. `None` when `jpeg` is not a
/// JPEG or `text` is over a segment's 65 533 bytes.
pub fn with_comment(jpeg: &[u8], text: &[u8]) -> Option<Vec<u8>> {
    let length = u16::try_from(text.len() + 2).ok()?;
    if !is_jpeg(jpeg) {
        return None;
    }
    let mut out = Vec::with_capacity(jpeg.len() + comment_overhead(text.len()));
    out.extend_from_slice(&jpeg[..2]);
    out.extend_from_slice(&[0xFF, 0xFE]);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(text);
    out.extend_from_slice(&jpeg[2..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame that compresses badly: every pixel differs from its neighbours.
    fn noise(width: u32, height: u32) -> RgbImage {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        RgbImage::from_fn(width, height, |_, _| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let [r, g, b, ..] = state.to_le_bytes();
            image::Rgb([r, g, b])
        })
    }

    fn dimensions(jpeg: &[u8]) -> (u32, u32) {
        let image = image::load_from_memory_with_format(jpeg, image::ImageFormat::Jpeg).expect("a JPEG");
        (image.width(), image.height())
    }

    #[test]
    fn a_frame_that_fits_is_encoded_once_at_full_size() {
        let frame = RgbImage::from_pixel(64, 48, image::Rgb([10, 200, 30]));
        let jpeg = encode_within(&frame, 85, 100_000).expect("encodes").expect("fits");
        assert_eq!(jpeg, encode(&frame, 85).expect("encodes"));
        assert_eq!(dimensions(&jpeg), (64, 48));
    }

    #[test]
    fn lower_quality_then_smaller_scale_until_it_fits() {
        let frame = noise(256, 192);
        let full = encode(&frame, 90).expect("encodes").len();
        let lowest = encode(&frame, 30).expect("encodes").len();
        // Between the lowest quality at full size and the configured one: a lower quality fits.
        let cap = (full + lowest) / 2;
        let jpeg = encode_within(&frame, 90, cap).expect("encodes").expect("fits");
        assert!(jpeg.len() <= cap);
        assert_eq!(dimensions(&jpeg), (256, 192));
        // Below any full-size quality: a scaled-down frame.
        let jpeg = encode_within(&frame, 90, lowest - 1).expect("encodes").expect("fits scaled");
        assert!(jpeg.len() < lowest);
        assert!(dimensions(&jpeg).0 < 256);
        // Below even a quarter at the lowest quality: nothing.
        assert_eq!(encode_within(&frame, 90, 100).expect("encodes"), None);
    }

    #[test]
    fn the_comment_rides_after_the_start_of_image() {
        let frame = RgbImage::from_pixel(16, 8, image::Rgb([1, 2, 3]));
        let jpeg = encode(&frame, 80).expect("encodes");
        let text = br#"{"seq":7}"#;
        let commented = with_comment(&jpeg, text).expect("a JPEG");
        assert_eq!(commented.len(), jpeg.len() + comment_overhead(text.len()));
        assert_eq!(&commented[..6], [0xFF, 0xD8, 0xFF, 0xFE, 0x00, 11]);
        assert_eq!(&commented[6..6 + text.len()], text);
        assert_eq!(dimensions(&commented), (16, 8));
        assert_eq!(with_comment(b"\x89PNG", text), None);
        assert_eq!(with_comment(&jpeg, &vec![b'x'; 70_000]), None);
    }
}
