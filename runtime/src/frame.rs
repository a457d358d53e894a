//! Raw frames as cameras and video decoders deliver them: a pixel format, a size and the rows of each plane
//! with their stride. An encoded JPEG or PNG ([`crate::Input::Image`]) is the other way a frame arrives.

mod rgb;

use crate::error::{Error, Result};

/// How a raw frame's pixels are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// One plane, 3 bytes per pixel: red, green, blue.
    Rgb8,
    /// One plane, 3 bytes per pixel: blue, green, red (OpenCV's order).
    Bgr8,
    /// One plane, 1 byte per pixel.
    Gray8,
    /// One plane, 4 bytes per 2 pixels: Y0 U Y1 V (packed 4:2:2, what USB cameras send uncompressed).
    Yuyv,
    /// Two planes: Y, then interleaved U V at half width and half height (4:2:0, what hardware decoders give).
    Nv12,
    /// Three planes: Y, U, V, chroma at half width and half height (4:2:0, what software H.264 decoders give).
    I420,
}

impl PixelFormat {
    /// The name used in configuration and messages: `rgb8`, `bgr8`, `gray8`, `yuyv`, `nv12`, `i420`.
    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::Rgb8 => "rgb8",
            PixelFormat::Bgr8 => "bgr8",
            PixelFormat::Gray8 => "gray8",
            PixelFormat::Yuyv => "yuyv",
            PixelFormat::Nv12 => "nv12",
            PixelFormat::I420 => "i420",
        }
    }

    /// Number of planes.
    pub fn planes(self) -> usize {
        match self {
            PixelFormat::Rgb8 | PixelFormat::Bgr8 | PixelFormat::Gray8 | PixelFormat::Yuyv => 1,
            PixelFormat::Nv12 => 2,
            PixelFormat::I420 => 3,
        }
    }

    /// Bytes of one row of plane `plane` without padding, and the number of rows, for a `width` x `height`
    /// frame. Chroma planes of 4:2:0 formats round odd sizes up.
    pub fn plane_size(self, plane: usize, width: u32, height: u32) -> (usize, usize) {
        let (w, h) = (width as usize, height as usize);
        let (half_w, half_h) = (w.div_ceil(2), h.div_ceil(2));
        match (self, plane) {
            (PixelFormat::Rgb8 | PixelFormat::Bgr8, _) => (w * 3, h),
            (PixelFormat::Gray8, _) => (w, h),
            (PixelFormat::Yuyv, _) => (half_w * 4, h),
            (PixelFormat::Nv12 | PixelFormat::I420, 0) => (w, h),
            (PixelFormat::Nv12, _) => (half_w * 2, half_h),
            (PixelFormat::I420, _) => (half_w, half_h),
        }
    }
}

impl std::fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One raw frame: planes stored one after another in `data`, plane `i` taking `strides[i]` bytes per row
/// (unused strides are 0). Built only through [`Frame::new`] or [`Frame::packed`], which check that every
/// row of every plane lies inside `data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    format: PixelFormat,
    width: u32,
    height: u32,
    strides: [usize; 3],
    data: Vec<u8>,
}

impl Frame {
    /// A frame whose planes follow each other in `data` with the given row strides. Errors with
    /// [`Error::Decode`] (naming the plane and sizes) when a size is zero, a stride is shorter than its row,
    /// or `data` is shorter than the planes.
    pub fn new(format: PixelFormat, width: u32, height: u32, strides: [usize; 3], data: Vec<u8>) -> Result<Frame> {
        if width == 0 || height == 0 {
            return Err(Error::Decode { reason: format!("a {format} frame of {width}x{height} pixels is empty") });
        }
        let mut needed = 0usize;
        for (plane, &stride) in strides.iter().enumerate().take(format.planes()) {
            let (row, rows) = format.plane_size(plane, width, height);
            if stride < row {
                return Err(Error::Decode {
                    reason: format!(
                        "{format} frame {width}x{height}: plane {plane} has a stride of {stride} bytes, under its \
                         {row}-byte rows"
                    ),
                });
            }
            needed = needed.saturating_add(stride.saturating_mul(rows - 1).saturating_add(row));
            if plane + 1 < format.planes() {
                needed = needed - row + stride;
            }
        }
        if data.len() < needed {
            return Err(Error::Decode {
                reason: format!("{format} frame {width}x{height}: {} bytes of data, {needed} needed", data.len()),
            });
        }
        Ok(Frame { format, width, height, strides, data })
    }

    /// A frame with no row padding.
    pub fn packed(format: PixelFormat, width: u32, height: u32, data: Vec<u8>) -> Result<Frame> {
        let mut strides = [0; 3];
        for (plane, stride) in strides.iter_mut().enumerate().take(format.planes()) {
            *stride = format.plane_size(plane, width, height).0;
        }
        Frame::new(format, width, height, strides, data)
    }

    /// The pixel format.
    pub fn format(&self) -> PixelFormat {
        self.format
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Bytes per row of each plane (0 for planes the format does not have).
    pub fn strides(&self) -> [usize; 3] {
        self.strides
    }

    /// Plane `plane` from its first byte: `strides[plane]` bytes per row, its rows as
    /// [`PixelFormat::plane_size`] says (the last row may stop at its pixels, without padding).
    pub fn plane(&self, plane: usize) -> &[u8] {
        let mut offset = 0;
        for earlier in 0..plane {
            offset += self.strides[earlier] * self.format.plane_size(earlier, self.width, self.height).1;
        }
        &self.data[offset.min(self.data.len())..]
    }

    /// All the bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Gives the buffer back, for reuse by the producer.
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }
}
