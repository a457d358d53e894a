//! JPEG and PNG bytes to an RGB8 buffer that is reused from frame to frame, up to a size.
//!
//! The image size is read from the header by hand and checked against the pixel limit before any decoder is
//! built, so a decompression bomb (a small file announcing a huge image) costs a few byte reads, not an
//! allocation. Then the decoder's header gives the decoded size (see [`ImageLimits`]), checked before the
//! frame buffer is allocated. The only whole-image buffer is the RGB8 frame: PNG rows are converted one at
//! a time ([`super::png_rows`]), and a gray JPEG is decoded into the frame and replicated in place. Gray is
//! replicated to three channels, alpha is dropped (not composited, as PIL's `convert("RGB")` does) and 16-bit
//! samples keep their high byte (as PIL's PNG decoder does). PNGs decode exactly as PIL decodes them; JPEGs
//! (zune-jpeg here, libjpeg-turbo in PIL) differ by a few levels on some pixels, mostly from the colour
//! conversion.
//!
//! A JPEG that is to be shrunk a lot may be decoded at 1/2, 1/4 or 1/8 scale instead (see [`DecodeTarget`]):
//! jpeg-decoder scales in its IDCT, so the full-size image is never made, and each decoded pixel is the mean of
//! the 2x2, 4x4 or 8x8 source pixels it covers. Where no reduction applies the full decode above is used.
//!
//! A frame buffer larger than [`RETAINED_FRAME_BYTES`] is given back after use
//! ([`RgbDecoder::release_outsized`]), so that one outsized frame does not hold its memory until the next.

use std::io::{self, Cursor};

use image::codecs::jpeg::JpegDecoder;
use image::{ImageDecoder, ImageError};

use super::limits::{DecodedSize, ImageLimits};
use super::png_rows::PngRows;
use crate::error::{Error, Result};

/// The largest frame buffer kept from one frame to the next: a 5-megapixel RGB8 frame. Larger ones are
/// allocated per frame and freed after it; glibc serves allocations of this size with `mmap` (at least until
/// its dynamic threshold has risen to them), so freeing them returns the memory to the system.
pub const RETAINED_FRAME_BYTES: usize = 16 << 20;

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
}

/// What the caller does with a decoded image, which the decoder needs before it decodes.
pub(crate) trait DecodeTarget {
    /// Bytes the caller needs for a `source` (width, height) image decoded at `1 / reduction`, besides the
    /// decoder (the resizer's intermediate), counted against the decoded-size limit.
    fn other_bytes(&self, source: (u32, u32), reduction: u32) -> u64;

    /// The largest reduction (2, 4 or 8; 1 for none) the caller takes for a JPEG of `source` (width, height).
    fn max_reduction(&self, source: (u32, u32)) -> u32;
}

/// A caller that needs nothing besides the image and takes it full size.
struct FullSize;

impl DecodeTarget for FullSize {
    fn other_bytes(&self, _: (u32, u32), _: u32) -> u64 {
        0
    }

    fn max_reduction(&self, _: (u32, u32)) -> u32 {
        1
    }
}

/// Decodes JPEG and PNG frames into one RGB8 buffer (`width * height * 3` bytes, rows top to bottom) kept
/// across calls while it is at most [`RETAINED_FRAME_BYTES`].
#[derive(Debug)]
pub struct RgbDecoder {
    limits: ImageLimits,
    rgb: Vec<u8>,
    width: u32,
    height: u32,
    /// The decoded image is the source reduced by this much (1: full size).
    reduction: u32,
    source: (u32, u32),
}

impl Default for RgbDecoder {
    fn default() -> Self {
        RgbDecoder::new(ImageLimits::default())
    }
}

impl RgbDecoder {
    /// A decoder refusing images over `limits`.
    pub fn new(limits: ImageLimits) -> Self {
        RgbDecoder { limits, rgb: Vec::new(), width: 0, height: 0, reduction: 1, source: (0, 0) }
    }

    /// The limits frames are held to.
    pub fn limits(&self) -> ImageLimits {
        self.limits
    }

    /// Holds the next frames to `limits`.
    pub fn set_limits(&mut self, limits: ImageLimits) {
        self.limits = limits;
    }

    /// Decodes `bytes` (JPEG or PNG, told by the magic bytes) and returns the image's width and height.
    /// Errors: [`Error::EmptyInput`], [`Error::ImageTooLarge`], [`Error::DecodedTooLarge`], [`Error::Decode`].
    /// On error the previous image is forgotten: [`RgbDecoder::dimensions`] is `(0, 0)`.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<(u32, u32)> {
        self.decode_for(bytes, &FullSize)
    }

    /// As [`RgbDecoder::decode`], for `target`: what it needs is counted against the decoded-size limit,
    /// and a JPEG is decoded at the largest reduction it takes. Returns the source's width and height.
    pub(crate) fn decode_for(&mut self, bytes: &[u8], target: &impl DecodeTarget) -> Result<(u32, u32)> {
        // Forget the last image without touching the buffer, which keeps its length so that the next frame of
        // the same size neither reallocates nor re-zeroes it.
        self.width = 0;
        self.height = 0;
        self.reduction = 1;
        self.source = (0, 0);
        match self.decode_frame(bytes, target) {
            Ok(decoded) => {
                (self.width, self.height) = decoded.size;
                self.reduction = decoded.reduction;
                self.source = decoded.source;
                Ok(decoded.source)
            }
            Err(error) => {
                // A frame that failed half-way may have grown the buffer.
                self.release_outsized();
                Err(error)
            }
        }
    }

    /// Width and height of the last decoded image (reduced, if it was); `(0, 0)` when there is none.
    pub fn dimensions(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Width and height of the last decoded image's source, and how much the decoder reduced it (1: not).
    pub fn source(&self) -> ((u32, u32), u32) {
        (self.source, self.reduction)
    }

    /// The last decoded image, RGB8, `width * height * 3` bytes; empty when there is none.
    pub fn rgb(&self) -> &[u8] {
        self.rgb.get(..self.width as usize * self.height as usize * 3).unwrap_or_default()
    }

    /// Frees the frame buffer if it is over [`RETAINED_FRAME_BYTES`], forgetting the image it holds; a
    /// smaller buffer is kept for the next frame.
    pub fn release_outsized(&mut self) {
        if self.rgb.capacity() > RETAINED_FRAME_BYTES {
            self.rgb = Vec::new();
            self.width = 0;
            self.height = 0;
        }
    }

    fn decode_frame(&mut self, bytes: &[u8], target: &impl DecodeTarget) -> Result<Decoded> {
        if bytes.is_empty() {
            return Err(Error::EmptyInput);
        }
        match Format::sniff(bytes)? {
            Format::Png => {
                let (width, height) = png_dimensions(bytes)?;
                self.limits.check_pixels(width, height)?;
                let png = PngRows::open(bytes)?;
                let (width, height) = self.checked_dimensions(png.dimensions(), "PNG")?;
                self.limits.check_decoded(&png.decoded_size(target.other_bytes((width, height), 1)))?;
                png.read_into(self.frame_buffer(width, height, 3))?;
                Ok(Decoded::full_size(width, height))
            }
            Format::Jpeg => {
                let frame = jpeg_frame(bytes)?;
                self.limits.check_pixels(frame.width, frame.height)?;
                // zune-jpeg (behind `image`) fills a cut-off scan with grey instead of failing; PIL refuses
                // such files, so refuse them too unless the end-of-image marker is there.
                if !has_end_of_image(&bytes[frame.end..]) {
                    return Err(decode_error("truncated JPEG: no end-of-image marker".to_owned()));
                }
                let coefficients = frame.coefficient_bytes(bytes)?;
                let reduction = target.max_reduction((frame.width, frame.height));
                if reduction > 1
                    && let Some(decoded) = self.read_reduced_jpeg(bytes, &frame, reduction, coefficients, target)?
                {
                    return Ok(decoded);
                }
                let decoder = JpegDecoder::new(Cursor::new(bytes)).map_err(jpeg_error)?;
                let (width, height) = self.checked_dimensions(decoder.dimensions(), "JPEG")?;
                let channels = decoder.color_type().bytes_per_pixel();
                let size = DecodedSize {
                    width,
                    height,
                    pixel_format: frame.pixel_format(),
                    // The decoder's copy of the input, the coefficients it keeps and the samples beyond three.
                    decoder_bytes: bytes.len() as u64
                        + coefficients
                        + u64::from(width) * u64::from(height) * u64::from(channels.saturating_sub(3)),
                    other_bytes: target.other_bytes((width, height), 1),
                };
                self.limits.check_decoded(&size)?;
                self.read_jpeg(decoder, width, height, usize::from(channels))?;
                Ok(Decoded::full_size(width, height))
            }
        }
    }

    /// The decoder's own reading of the size, held to the same limit in case it disagrees with the header.
    fn checked_dimensions(&self, (width, height): (u32, u32), format: &str) -> Result<(u32, u32)> {
        self.limits.check_pixels(width, height)?;
        if width == 0 || height == 0 {
            return Err(decode_error(format!("corrupt {format}: the image is {width}x{height}")));
        }
        Ok((width, height))
    }

    /// The frame buffer, sized for `width` x `height` pixels of `channels` bytes.
    fn frame_buffer(&mut self, width: u32, height: u32, channels: usize) -> &mut [u8] {
        self.rgb.resize(width as usize * height as usize * channels, 0);
        &mut self.rgb
    }

    /// Decodes into the frame buffer, then makes RGB8 of the decoder's samples where it gave other than three.
    fn read_jpeg(
        &mut self,
        decoder: JpegDecoder<Cursor<&[u8]>>,
        width: u32,
        height: u32,
        channels: usize,
    ) -> Result<()> {
        let pixels = width as usize * height as usize;
        let buffer = self.frame_buffer(width, height, channels.max(3));
        decoder.read_image(&mut buffer[..pixels * channels]).map_err(jpeg_error)?;
        to_rgb_in_place(buffer, channels, pixels);
        self.rgb.truncate(pixels * 3);
        Ok(())
    }
}

impl RgbDecoder {
    /// Decodes a JPEG at `1 / reduction` with jpeg-decoder's IDCT scaling. `None` (and nothing decoded)
    /// where jpeg-decoder cannot: CMYK and 16-bit images, features it lacks, a size it would round
    /// differently; the full decode takes those.
    fn read_reduced_jpeg(
        &mut self,
        bytes: &[u8],
        frame: &JpegFrame,
        reduction: u32,
        coefficients: u64,
        target: &impl DecodeTarget,
    ) -> Result<Option<Decoded>> {
        let mut decoder = jpeg_decoder::Decoder::new(bytes);
        match decoder.read_info() {
            Err(jpeg_decoder::Error::Unsupported(_)) => return Ok(None),
            other => other.map_err(reduced_jpeg_error)?,
        }
        let Some(info) = decoder.info() else { return Ok(None) };
        let gray = match info.pixel_format {
            jpeg_decoder::PixelFormat::RGB24 => false,
            jpeg_decoder::PixelFormat::L8 => true,
            jpeg_decoder::PixelFormat::L16 | jpeg_decoder::PixelFormat::CMYK32 => return Ok(None),
        };
        let source = (frame.width, frame.height);
        let (width, height) = (source.0.div_ceil(reduction), source.1.div_ceil(reduction));
        let (Ok(scaled_width), Ok(scaled_height)) = (u16::try_from(width), u16::try_from(height)) else {
            return Ok(None);
        };
        if decoder.scale(scaled_width, scaled_height).map_err(reduced_jpeg_error)? != (scaled_width, scaled_height) {
            return Ok(None);
        }
        let size = DecodedSize {
            width,
            height,
            pixel_format: format!("{} at 1/{reduction} scale", frame.pixel_format()),
            // The coefficients a progressive image keeps, and one plane per component at the reduced size.
            decoder_bytes: coefficients + u64::from(width) * u64::from(height) * frame.sampling.len() as u64,
            other_bytes: target.other_bytes(source, reduction),
        };
        self.limits.check_decoded(&size)?;
        decoder.set_max_decoding_buffer_size(usize::try_from(self.limits.max_decoded_bytes).unwrap_or(usize::MAX));
        let pixels = decoder.decode().map_err(reduced_jpeg_error)?;
        if gray {
            let buffer = self.frame_buffer(width, height, 3);
            for (rgb, &value) in buffer.chunks_exact_mut(3).zip(&pixels) {
                rgb.fill(value);
            }
        } else {
            // The decoder's own buffer becomes the frame: copying it would only add work.
            self.rgb = pixels;
        }
        Ok(Some(Decoded { size: (width, height), reduction, source }))
    }
}

/// What one decode made: the image's size, the source's, and the reduction between them.
struct Decoded {
    size: (u32, u32),
    reduction: u32,
    source: (u32, u32),
}

impl Decoded {
    fn full_size(width: u32, height: u32) -> Decoded {
        Decoded { size: (width, height), reduction: 1, source: (width, height) }
    }
}

/// Turns the first `pixels * channels` bytes of `buffer` (8-bit gray, gray+alpha, RGB or RGBA) into RGB8 in
/// the first `pixels * 3`. Fewer than three samples spread backwards, more are packed forwards, so that no
/// pixel is overwritten before it is read.
fn to_rgb_in_place(buffer: &mut [u8], channels: usize, pixels: usize) {
    if channels < 3 {
        for pixel in (0..pixels).rev() {
            let gray = buffer[pixel * channels];
            buffer[pixel * 3..pixel * 3 + 3].fill(gray);
        }
    } else if channels > 3 {
        for pixel in 0..pixels {
            buffer.copy_within(pixel * channels..pixel * channels + 3, pixel * 3);
        }
    }
}

/// Width and height from the PNG IHDR chunk, which the format puts first.
fn png_dimensions(bytes: &[u8]) -> Result<(u32, u32)> {
    // Signature (8), chunk length (4), chunk type (4), width (4), height (4).
    let Some(header) = bytes.get(8..24) else {
        return Err(decode_error("truncated PNG: the file ends inside the IHDR header".to_owned()));
    };
    if &header[4..8] != b"IHDR" {
        return Err(decode_error("corrupt PNG: the first chunk is not IHDR".to_owned()));
    }
    let width = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
    let height = u32::from_be_bytes([header[12], header[13], header[14], header[15]]);
    Ok((width, height))
}

/// What the JPEG frame header (SOFn) says.
#[derive(Debug)]
struct JpegFrame {
    width: u32,
    height: u32,
    progressive: bool,
    /// Horizontal and vertical sampling factors of each component.
    sampling: Vec<(u8, u8)>,
    /// Where the frame header ends.
    end: usize,
}

impl JpegFrame {
    fn pixel_format(&self) -> String {
        let kind = if self.progressive { "progressive" } else { "baseline" };
        format!("{}-component {kind} JPEG", self.sampling.len())
    }

    /// What zune-jpeg keeps of the whole image before it writes pixels: every component's coefficients
    /// (two bytes a sample, padded to whole MCUs) when the image is progressive or its first scan lacks a
    /// component; nothing otherwise, as it then decodes one row of MCUs at a time.
    fn coefficient_bytes(&self, bytes: &[u8]) -> Result<u64> {
        if !self.progressive && first_scan_components(bytes, self.end)? >= self.sampling.len() {
            return Ok(0);
        }
        let max_h = u64::from(self.sampling.iter().map(|s| s.0).max().unwrap_or(1).max(1));
        let max_v = u64::from(self.sampling.iter().map(|s| s.1).max().unwrap_or(1).max(1));
        let mcus_x = u64::from(self.width).div_ceil(8 * max_h);
        let mcus_y = u64::from(self.height).div_ceil(8 * max_v);
        let samples: u64 =
            self.sampling.iter().map(|&(h, v)| mcus_x * u64::from(h) * 8 * mcus_y * u64::from(v) * 8).sum();
        Ok(samples * 2)
    }
}

/// One marker segment: its marker, where its payload starts (after the length) and where it ends.
struct Segment {
    marker: u8,
    start: usize,
    end: usize,
}

/// The marker segment at `pos` (any 0xff fill bytes first); markers without a segment are skipped, and
/// end-of-image comes back as an empty segment.
fn next_segment(bytes: &[u8], mut pos: usize) -> Result<Segment> {
    let truncated = || decode_error("truncated JPEG: the file ends before the image data".to_owned());
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
            0xd9 => return Ok(Segment { marker, start: pos, end: pos }),
            _ => {}
        }
        let length_bytes = bytes.get(pos..pos + 2).ok_or_else(truncated)?;
        let length = usize::from(u16::from_be_bytes([length_bytes[0], length_bytes[1]]));
        if length < 2 {
            return Err(decode_error(format!("corrupt JPEG: segment at byte {pos} has length {length}")));
        }
        return Ok(Segment { marker, start: pos + 2, end: pos + length });
    }
}

/// The frame header (SOFn), walking the marker segments before it.
fn jpeg_frame(bytes: &[u8]) -> Result<JpegFrame> {
    let truncated = || decode_error("truncated JPEG: the file ends inside the frame header".to_owned());
    let mut pos = 2; // after SOI
    loop {
        let segment = next_segment(bytes, pos)?;
        match segment.marker {
            0xd9 | 0xda => {
                return Err(decode_error("corrupt JPEG: no frame header before the image data".to_owned()));
            }
            // SOF0..15 except DHT (c4), JPG (c8) and DAC (cc): precision (1), height (2), width (2),
            // components (1), then per component its id, sampling factors and table (1 each).
            marker @ 0xc0..=0xcf if !matches!(marker, 0xc4 | 0xc8 | 0xcc) => {
                let header = bytes.get(segment.start..segment.start + 6).ok_or_else(truncated)?;
                let components = usize::from(header[5]);
                let specs_end = segment.start + 6 + components * 3;
                let specs = bytes.get(segment.start + 6..specs_end).ok_or_else(truncated)?;
                return Ok(JpegFrame {
                    height: u32::from(u16::from_be_bytes([header[1], header[2]])),
                    width: u32::from(u16::from_be_bytes([header[3], header[4]])),
                    // SOF2, SOF6, SOF10 and SOF14 are the progressive processes.
                    progressive: matches!(marker, 0xc2 | 0xc6 | 0xca | 0xce),
                    sampling: specs.chunks_exact(3).map(|spec| (spec[1] >> 4, spec[1] & 0x0f)).collect(),
                    end: specs_end,
                });
            }
            _ => pos = segment.end,
        }
    }
}

/// How many components the first scan (SOS) after `pos` carries.
fn first_scan_components(bytes: &[u8], mut pos: usize) -> Result<usize> {
    loop {
        let segment = next_segment(bytes, pos)?;
        match segment.marker {
            0xda => return Ok(bytes.get(segment.start).map_or(0, |&count| usize::from(count))),
            0xd9 => return Err(decode_error("corrupt JPEG: no image data".to_owned())),
            _ => pos = segment.end,
        }
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
fn jpeg_error(error: ImageError) -> Error {
    // zune-jpeg's messages end in a newline.
    let message = |e: &dyn std::fmt::Display| e.to_string().trim_end().to_owned();
    match error {
        ImageError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            decode_error(format!("truncated JPEG: {}", message(&e)))
        }
        ImageError::Limits(e) => decode_error(format!("JPEG needs more memory than the limit allows: {}", message(&e))),
        ImageError::Unsupported(e) => decode_error(format!("unsupported JPEG: {}", message(&e))),
        e => decode_error(format!("corrupt JPEG: {}", message(&e))),
    }
}

/// jpeg-decoder's errors in the words [`jpeg_error`] uses.
fn reduced_jpeg_error(error: jpeg_decoder::Error) -> Error {
    match error {
        jpeg_decoder::Error::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            decode_error(format!("truncated JPEG: {e}"))
        }
        jpeg_decoder::Error::Unsupported(feature) => decode_error(format!("unsupported JPEG: {feature:?}")),
        e => decode_error(format!("corrupt JPEG: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SOI, a `sof` frame header for 100 x 100 with one component per sampling factor (`0xHV`), a scan
    /// header carrying `scan_components`, EOI.
    fn jpeg_headers(sof: u8, sampling: &[u8], scan_components: u8) -> Vec<u8> {
        let mut jpeg = vec![0xff, 0xd8, 0xff, sof];
        jpeg.extend((8 + 3 * sampling.len() as u16).to_be_bytes());
        jpeg.extend([8, 0, 100, 0, 100, sampling.len() as u8]);
        for (id, factors) in sampling.iter().enumerate() {
            jpeg.extend([id as u8 + 1, *factors, 0]);
        }
        jpeg.extend([0xff, 0xda, 0, 6 + 2 * scan_components, scan_components]);
        jpeg.extend(vec![0; 2 * usize::from(scan_components) + 3]);
        jpeg.extend([0xff, 0xd9]);
        jpeg
    }

    fn coefficient_bytes(jpeg: &[u8]) -> u64 {
        jpeg_frame(jpeg).unwrap().coefficient_bytes(jpeg).unwrap()
    }

    #[test]
    fn coefficients_count_for_progressive_and_multi_scan_jpegs_only() {
        // 4:2:0 at 100 x 100: 7 x 7 MCUs of 16 x 16, so luma 112 x 112 and each chroma 56 x 56, two bytes each.
        let progressive = jpeg_headers(0xc2, &[0x22, 0x11, 0x11], 1);
        assert_eq!(jpeg_frame(&progressive).unwrap().pixel_format(), "3-component progressive JPEG");
        assert_eq!(coefficient_bytes(&progressive), (112 * 112 + 2 * 56 * 56) * 2);
        // A baseline scan of every component is decoded one row of MCUs at a time.
        assert_eq!(coefficient_bytes(&jpeg_headers(0xc0, &[0x22, 0x11, 0x11], 3)), 0);
        // A baseline first scan of one of three components: all kept. 4:4:4 is 13 x 13 MCUs of 8 x 8.
        assert_eq!(coefficient_bytes(&jpeg_headers(0xc0, &[0x11, 0x11, 0x11], 1)), 3 * 104 * 104 * 2);
    }

    #[test]
    fn gray_and_wide_samples_become_rgb_in_place() {
        let mut gray = vec![1, 2, 0, 0, 0, 0];
        to_rgb_in_place(&mut gray, 1, 2);
        assert_eq!(gray, [1, 1, 1, 2, 2, 2]);
        let mut gray_alpha = vec![5, 255, 6, 0, 0, 0];
        to_rgb_in_place(&mut gray_alpha, 2, 2);
        assert_eq!(gray_alpha, [5, 5, 5, 6, 6, 6]);
        let mut rgba = vec![1, 2, 3, 255, 4, 5, 6, 255];
        to_rgb_in_place(&mut rgba, 4, 2);
        assert_eq!(&rgba[..6], [1, 2, 3, 4, 5, 6]);
    }
}
