//! JPEG and PNG bytes to an RGB8 buffer that is reused from frame to frame.
//!
//! The image size is read from the header by hand and checked against the pixel limit before any decoder is
//! built, so a decompression bomb (a small file announcing a huge image) costs a few byte reads, not an
//! allocation. Gray is replicated to three channels, alpha is dropped (not composited, as PIL's
//! `convert("RGB")` does) and 16-bit samples keep their high byte (as PIL's PNG decoder does). PNGs decode
//! exactly as PIL decodes them; JPEGs (zune-jpeg here, libjpeg-turbo in PIL) differ by a few levels on some
//! pixels, mostly from the colour conversion.

use std::io::{self, Cursor};

use image::codecs::jpeg::JpegDecoder;
use image::codecs::png::PngDecoder;
use image::{ColorType, ImageDecoder, ImageError, Limits};

use crate::error::{Error, Result};

/// Default for the largest image, in pixels, a decoder accepts: 40 megapixels.
pub const DEFAULT_MAX_PIXELS: u64 = 40_000_000;

/// Bytes per pixel of the widest decoder output (16-bit RGBA); the decoders' own allocations are capped at
/// this times the pixel limit, plus headroom for metadata chunks.
const WIDEST_PIXEL_BYTES: u64 = 8;
const METADATA_HEADROOM_BYTES: u64 = 16 << 20;

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
const JPEG_SIGNATURE: [u8; 3] = [0xff, 0xd8, 0xff];
const JPEG_END_OF_IMAGE: [u8; 2] = [0xff, 0xd9];

/// The encodings the decoder understands, told apart by their magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Jpeg,
    Png,
}

impl Format {
    fn sniff(bytes: &[u8]) -> Result<Format> {
        if bytes.starts_with(&PNG_SIGNATURE) {
            Ok(Format::Png)
        } else if bytes.starts_with(&JPEG_SIGNATURE) {
            Ok(Format::Jpeg)
        } else {
            let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
            Err(decode_error(format!("not a JPEG or PNG (starts with {})", head.join(" "))))
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "JPEG",
            Format::Png => "PNG",
        }
    }
}

/// Decodes JPEG and PNG frames into one RGB8 buffer (`width * height * 3` bytes, rows top to bottom) kept
/// across calls.
#[derive(Debug)]
pub struct RgbDecoder {
    max_pixels: u64,
    /// The decoder's own output when it is not already RGB8 (gray, alpha, 16-bit).
    native: Vec<u8>,
    rgb: Vec<u8>,
    width: u32,
    height: u32,
}

impl Default for RgbDecoder {
    fn default() -> Self {
        RgbDecoder::new(DEFAULT_MAX_PIXELS)
    }
}

impl RgbDecoder {
    /// A decoder refusing images of more than `max_pixels` pixels.
    pub fn new(max_pixels: u64) -> Self {
        RgbDecoder { max_pixels, native: Vec::new(), rgb: Vec::new(), width: 0, height: 0 }
    }

    /// The largest image, in pixels, this decoder accepts.
    pub fn max_pixels(&self) -> u64 {
        self.max_pixels
    }

    /// Decodes `bytes` (JPEG or PNG, told by the magic bytes) and returns the image's width and height.
    /// On error the previous image is forgotten: [`RgbDecoder::dimensions`] is `(0, 0)`.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<(u32, u32)> {
        // Forget the last image without touching the buffer, which keeps its length so that the next frame of
        // the same size neither reallocates nor re-zeroes it.
        self.width = 0;
        self.height = 0;
        if bytes.is_empty() {
            return Err(Error::EmptyInput);
        }
        let format = Format::sniff(bytes)?;
        let (width, height, header_end) = match format {
            Format::Png => png_dimensions(bytes)?,
            Format::Jpeg => jpeg_dimensions(bytes)?,
        };
        self.check_size(width, height)?;
        match format {
            Format::Png => {
                let decoder =
                    PngDecoder::with_limits(Cursor::new(bytes), self.limits()).map_err(|e| image_error(format, e))?;
                self.read(format, decoder)?;
            }
            Format::Jpeg => {
                // zune-jpeg (behind `image`) fills a cut-off scan with grey instead of failing; PIL refuses
                // such files, so refuse them too unless the end-of-image marker is there.
                if !has_end_of_image(&bytes[header_end..]) {
                    return Err(decode_error("truncated JPEG: no end-of-image marker".to_owned()));
                }
                let mut decoder = JpegDecoder::new(Cursor::new(bytes)).map_err(|e| image_error(format, e))?;
                decoder.set_limits(self.limits()).map_err(|e| image_error(format, e))?;
                self.read(format, decoder)?;
            }
        }
        Ok((self.width, self.height))
    }

    /// Width and height of the last decoded image; `(0, 0)` when there is none.
    pub fn dimensions(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// The last decoded image, RGB8, `width * height * 3` bytes; empty when there is none.
    pub fn rgb(&self) -> &[u8] {
        self.rgb.get(..self.width as usize * self.height as usize * 3).unwrap_or_default()
    }

    fn check_size(&self, width: u32, height: u32) -> Result<()> {
        if u64::from(width) * u64::from(height) > self.max_pixels {
            return Err(Error::ImageTooLarge { width, height, max_pixels: self.max_pixels });
        }
        Ok(())
    }

    fn limits(&self) -> Limits {
        let mut limits = Limits::no_limits();
        limits.max_alloc =
            Some(self.max_pixels.saturating_mul(WIDEST_PIXEL_BYTES).saturating_add(METADATA_HEADROOM_BYTES));
        limits
    }

    fn read(&mut self, format: Format, decoder: impl ImageDecoder) -> Result<()> {
        let (width, height) = decoder.dimensions();
        // The decoder read the header itself; hold it to the same limit in case it disagrees with ours.
        self.check_size(width, height)?;
        if width == 0 || height == 0 {
            return Err(decode_error(format!("corrupt {}: the image is {width}x{height}", format.name())));
        }
        let color = decoder.color_type();
        let pixels = width as usize * height as usize;
        let native_len = usize::try_from(decoder.total_bytes()).map_err(|_| Error::ImageTooLarge {
            width,
            height,
            max_pixels: self.max_pixels,
        })?;
        if color == ColorType::Rgb8 {
            self.rgb.resize(native_len, 0);
            decoder.read_image(&mut self.rgb).map_err(|e| image_error(format, e))?;
        } else {
            self.native.resize(native_len, 0);
            decoder.read_image(&mut self.native).map_err(|e| image_error(format, e))?;
            self.rgb.resize(pixels * 3, 0);
            native_to_rgb8(color, &self.native, &mut self.rgb)
                .ok_or_else(|| decode_error(format!("unsupported {} colour type {color:?}", format.name())))?;
        }
        self.width = width;
        self.height = height;
        Ok(())
    }
}

/// Converts a decoder's output to RGB8; `None` for colour types neither JPEG nor PNG produce.
fn native_to_rgb8(color: ColorType, native: &[u8], rgb: &mut [u8]) -> Option<()> {
    match color {
        ColorType::L8 => expand_8bit::<1>(native, rgb),
        ColorType::La8 => expand_8bit::<2>(native, rgb),
        ColorType::Rgb8 => rgb.copy_from_slice(native),
        ColorType::Rgba8 => expand_8bit::<4>(native, rgb),
        ColorType::L16 => expand_16bit::<1>(native, rgb),
        ColorType::La16 => expand_16bit::<2>(native, rgb),
        ColorType::Rgb16 => expand_16bit::<3>(native, rgb),
        ColorType::Rgba16 => expand_16bit::<4>(native, rgb),
        _ => return None,
    }
    Some(())
}

/// `SAMPLES` 8-bit samples per pixel: gray (+ alpha) or RGB (+ alpha), to RGB.
fn expand_8bit<const SAMPLES: usize>(native: &[u8], rgb: &mut [u8]) {
    for (out, pixel) in rgb.chunks_exact_mut(3).zip(native.chunks_exact(SAMPLES)) {
        if SAMPLES < 3 {
            out.fill(pixel[0]);
        } else {
            out.copy_from_slice(&pixel[..3]);
        }
    }
}

/// `SAMPLES` native-endian 16-bit samples per pixel to RGB8, keeping the high byte as PIL does for RGB, RGBA
/// and gray+alpha. (PIL clips 16-bit gray at 255 instead, which whitens nearly every such image; that quirk is
/// not copied.)
fn expand_16bit<const SAMPLES: usize>(native: &[u8], rgb: &mut [u8]) {
    let high_byte = |sample: &[u8]| (u16::from_ne_bytes([sample[0], sample[1]]) >> 8) as u8;
    for (out, pixel) in rgb.chunks_exact_mut(3).zip(native.chunks_exact(SAMPLES * 2)) {
        if SAMPLES < 3 {
            out.fill(high_byte(&pixel[..2]));
        } else {
            for (channel, sample) in out.iter_mut().zip(pixel.chunks_exact(2)) {
                *channel = high_byte(sample);
            }
        }
    }
}

/// Width, height and where the header ends, from the PNG IHDR chunk, which the format puts first.
fn png_dimensions(bytes: &[u8]) -> Result<(u32, u32, usize)> {
    // Signature (8), chunk length (4), chunk type (4), width (4), height (4).
    let Some(header) = bytes.get(8..24) else {
        return Err(decode_error("truncated PNG: the file ends inside the IHDR header".to_owned()));
    };
    if &header[4..8] != b"IHDR" {
        return Err(decode_error("corrupt PNG: the first chunk is not IHDR".to_owned()));
    }
    let width = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
    let height = u32::from_be_bytes([header[12], header[13], header[14], header[15]]);
    Ok((width, height, 24))
}

/// Width, height and where the frame header ends, from the JPEG frame header (SOFn), walking the marker
/// segments before it.
fn jpeg_dimensions(bytes: &[u8]) -> Result<(u32, u32, usize)> {
    let truncated = || decode_error("truncated JPEG: the file ends before the frame header".to_owned());
    let mut pos = 2; // after SOI
    loop {
        match bytes.get(pos) {
            None => return Err(truncated()),
            Some(0xff) => {}
            Some(_) => return Err(decode_error(format!("corrupt JPEG: no marker at byte {pos}"))),
        }
        // Any number of 0xff fill bytes may precede the marker code.
        while bytes.get(pos) == Some(&0xff) {
            pos += 1;
        }
        let marker = *bytes.get(pos).ok_or_else(truncated)?;
        pos += 1;
        match marker {
            // Markers without a segment: TEM, RST0..7, a stray SOI.
            0x01 | 0xd0..=0xd8 => continue,
            0xd9 | 0xda => {
                return Err(decode_error("corrupt JPEG: no frame header before the image data".to_owned()));
            }
            _ => {}
        }
        let length_bytes = bytes.get(pos..pos + 2).ok_or_else(truncated)?;
        let length = usize::from(u16::from_be_bytes([length_bytes[0], length_bytes[1]]));
        // SOF0..15 except DHT (c4), JPG (c8) and DAC (cc): precision (1), height (2), width (2).
        if matches!(marker, 0xc0..=0xcf) && !matches!(marker, 0xc4 | 0xc8 | 0xcc) {
            let frame = bytes.get(pos + 2..pos + 7).ok_or_else(truncated)?;
            let height = u32::from(u16::from_be_bytes([frame[1], frame[2]]));
            let width = u32::from(u16::from_be_bytes([frame[3], frame[4]]));
            return Ok((width, height, pos + 7));
        }
        if length < 2 {
            return Err(decode_error(format!("corrupt JPEG: segment at byte {pos} has length {length}")));
        }
        pos += length;
    }
}

/// Whether the JPEG data after the frame header holds an end-of-image marker (an EXIF thumbnail's EOI
/// comes before the frame header). Searched from the back: for a whole file that is the last two bytes.
fn has_end_of_image(bytes: &[u8]) -> bool {
    bytes.windows(2).rev().any(|pair| pair == JPEG_END_OF_IMAGE)
}

fn decode_error(reason: String) -> Error {
    Error::Decode { reason }
}

/// Says what went wrong in the words of the format: truncated, corrupt or unsupported, with the decoder's
/// message.
fn image_error(format: Format, error: ImageError) -> Error {
    let name = format.name();
    // zune-jpeg's messages end in a newline.
    let message = |e: &dyn std::fmt::Display| e.to_string().trim_end().to_owned();
    match error {
        ImageError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            decode_error(format!("truncated {name}: {}", message(&e)))
        }
        ImageError::Limits(e) => {
            decode_error(format!("{name} needs more memory than the limit allows: {}", message(&e)))
        }
        ImageError::Unsupported(e) => decode_error(format!("unsupported {name}: {}", message(&e))),
        e => decode_error(format!("corrupt {name}: {}", message(&e))),
    }
}
