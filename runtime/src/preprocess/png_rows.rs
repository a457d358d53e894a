//! PNG bytes to RGB8 one row at a time, so that whatever the colour type and bit depth the only whole-image
//! buffer is the RGB8 frame: a 16-bit RGBA PNG never exists as 8 bytes a pixel. The png crate expands
//! palettes and low bit depths and keeps the high byte of 16-bit samples (as PIL's decoder does); alpha is
//! dropped here and gray replicated.

use std::io::{self, Cursor};

use png::{Decoder, DecodingError, InterlaceInfo, Reader, Transformations};

use super::limits::DecodedSize;
use crate::error::{Error, Result};

/// What the png crate may allocate for metadata chunks; text and ICC chunks, the big ones, are skipped.
const METADATA_BYTES: usize = 4 << 20;
/// Raw rows the png crate keeps while it unfilters (the current and previous row, and some read ahead).
const ROWS_IN_FLIGHT: u64 = 4;

/// A PNG whose header has been read, ready to decode into an RGB8 frame.
pub(super) struct PngRows<'a> {
    reader: Reader<Cursor<&'a [u8]>>,
}

impl<'a> PngRows<'a> {
    /// Reads the chunks up to the image data.
    pub fn open(bytes: &'a [u8]) -> Result<PngRows<'a>> {
        let mut decoder = Decoder::new_with_limits(Cursor::new(bytes), png::Limits { bytes: METADATA_BYTES });
        decoder.set_transformations(Transformations::normalize_to_color8());
        decoder.set_ignore_text_chunk(true);
        decoder.set_ignore_iccp_chunk(true);
        let reader = decoder.read_info().map_err(png_error)?;
        Ok(PngRows { reader })
    }

    /// Width and height, as the decoder read them.
    pub fn dimensions(&self) -> (u32, u32) {
        self.reader.info().size()
    }

    /// What decoding costs: the RGB8 frame and a few raw rows, plus `other_bytes`.
    pub fn decoded_size(&self, other_bytes: u64) -> DecodedSize {
        let info = self.reader.info();
        let (width, height) = info.size();
        let depth = info.bit_depth as u8;
        let color = match info.color_type {
            png::ColorType::Grayscale => "gray",
            png::ColorType::Rgb => "RGB",
            png::ColorType::Indexed => "palette",
            png::ColorType::GrayscaleAlpha => "gray+alpha",
            png::ColorType::Rgba => "RGBA",
        };
        let interlaced = if info.interlaced { " interlaced" } else { "" };
        let row_bytes = u64::try_from(info.raw_row_length()).unwrap_or(u64::MAX);
        DecodedSize {
            width,
            height,
            pixel_format: format!("{depth}-bit {color}{interlaced} PNG"),
            decoder_bytes: row_bytes.saturating_mul(ROWS_IN_FLIGHT),
            other_bytes,
        }
    }

    /// Decodes every row into `rgb`, `width * height * 3` bytes.
    pub fn read_into(mut self, rgb: &mut [u8]) -> Result<()> {
        let (width, _) = self.reader.info().size();
        let stride = width as usize * 3;
        let channels = self.reader.output_color_type().0.samples();
        // Interlaced passes are converted into this row, then spread over the frame; progressive rows
        // are converted in place.
        let mut pass_row = Vec::new();
        let mut y = 0;
        while let Some(row) = self.reader.next_interlaced_row().map_err(png_error)? {
            match row.interlace() {
                InterlaceInfo::Null(_) => {
                    let out = rgb.get_mut(y * stride..(y + 1) * stride).ok_or_else(too_many_rows)?;
                    pixels_to_rgb(channels, row.data(), out);
                    y += 1;
                }
                InterlaceInfo::Adam7(pass) => {
                    pass_row.resize(row.data().len() / channels * 3, 0);
                    pixels_to_rgb(channels, row.data(), &mut pass_row);
                    png::expand_interlaced_row(rgb, stride, &pass_row, pass, 24);
                }
            }
        }
        Ok(())
    }
}

/// 8-bit pixels of `channels` samples (gray, gray+alpha, RGB, RGBA) to RGB8.
fn pixels_to_rgb(channels: usize, pixels: &[u8], rgb: &mut [u8]) {
    for (out, pixel) in rgb.chunks_exact_mut(3).zip(pixels.chunks_exact(channels)) {
        if channels < 3 {
            out.fill(pixel[0]);
        } else {
            out.copy_from_slice(&pixel[..3]);
        }
    }
}

fn too_many_rows() -> Error {
    Error::Decode { reason: "corrupt PNG: more rows than the header says".to_owned() }
}

/// Says what went wrong in the words of the format: truncated, corrupt or over the metadata limit.
fn png_error(error: DecodingError) -> Error {
    let reason = match error {
        DecodingError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => format!("truncated PNG: {e}"),
        DecodingError::LimitsExceeded => "PNG needs more memory than its decoder may allocate".to_owned(),
        e => format!("corrupt PNG: {e}"),
    };
    Error::Decode { reason }
}
