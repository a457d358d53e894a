//! How much memory one frame may take, checked before the decoder allocates anything of the frame's size.
//!
//! Two limits: pixels, read from the header alone (a decompression bomb costs a few byte reads), and decoded
//! bytes, which also count what the pixel format and the decoder make of those pixels (a 16-bit RGBA PNG,
//! the coefficients a progressive JPEG keeps for the whole image) and the resizer's intermediate.

use crate::error::{Error, Result};

/// Default for the largest image, in pixels, a decoder accepts: 40 megapixels.
pub const DEFAULT_MAX_PIXELS: u64 = 40_000_000;

/// Default for the most memory one decoded frame may take: 64 MiB, room for a frame of about 20 megapixels
/// with its resize intermediate (22 MP at the very most); small boards run several sources side by side.
pub const DEFAULT_MAX_DECODED_BYTES: u64 = 64 << 20;

/// The limits a frame is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// The most pixels (width x height) a frame may have, checked from the header.
    pub max_pixels: u64,
    /// The most bytes a frame may take once decoded: its RGB8 copy, the decoder's whole-image buffers and
    /// the resizer's intermediate (see [`DecodedSize`]).
    pub max_decoded_bytes: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        ImageLimits { max_pixels: DEFAULT_MAX_PIXELS, max_decoded_bytes: DEFAULT_MAX_DECODED_BYTES }
    }
}

impl ImageLimits {
    /// Refuses a `width` x `height` frame with more pixels than the limit.
    pub(crate) fn check_pixels(&self, width: u32, height: u32) -> Result<()> {
        if u64::from(width) * u64::from(height) > self.max_pixels {
            return Err(Error::ImageTooLarge { width, height, max_pixels: self.max_pixels });
        }
        Ok(())
    }

    /// Refuses a frame whose decoded size is over the limit.
    pub(crate) fn check_decoded(&self, size: &DecodedSize) -> Result<()> {
        let bytes = size.bytes();
        if bytes > self.max_decoded_bytes {
            return Err(Error::DecodedTooLarge {
                bytes,
                limit: self.max_decoded_bytes,
                width: size.width,
                height: size.height,
                pixel_format: size.pixel_format.clone(),
            });
        }
        Ok(())
    }
}

/// What a frame costs once decoded, worked out from its header before decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodedSize {
    pub width: u32,
    pub height: u32,
    /// The encoded pixel format in words ("16-bit RGBA PNG"), for the error.
    pub pixel_format: String,
    /// The decoder's own buffers beyond the RGB8 frame (rows, coefficients, a copy of the input).
    pub decoder_bytes: u64,
    /// What the caller needs for the frame on top (the resizer's intermediate).
    pub other_bytes: u64,
}

impl DecodedSize {
    /// The RGB8 frame, 3 bytes a pixel, which the decoder writes and the resizer reads.
    pub fn rgb_bytes(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height) * 3
    }

    /// Everything the frame holds at once.
    pub fn bytes(&self) -> u64 {
        self.rgb_bytes().saturating_add(self.decoder_bytes).saturating_add(self.other_bytes)
    }
}
