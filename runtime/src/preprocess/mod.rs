//! Inputs to tensors: an encoded frame through [`ImagePreprocessor`] (decode, resize, normalise), a sensor
//! window through [`SensorPreprocessor`] (check, standardise).
//!
//! Both keep every buffer from call to call, so a stream of same-sized frames allocates nothing of its own
//! after the first (the JPEG and PNG decoders inside `image` still make their own working buffers). Decoding
//! and preparing are separate calls because the pipeline times them as separate stages. The [`Geometry`]
//! that [`ImagePreprocessor::prepare`] returns takes detections back to source-image pixels.
//!
//! ```no_run
//! # fn main() -> runtime::Result<()> {
//! use runtime::manifest::{InputSpec, Manifest};
//! use runtime::preprocess::ImagePreprocessor;
//! let manifest = Manifest::parse(&std::fs::read_to_string("models/face-detector/manifest.toml").unwrap()).unwrap();
//! let InputSpec::Image(spec) = &manifest.input else { return Ok(()) };
//! let mut preprocessor = ImagePreprocessor::new(spec);
//! let (width, height) = preprocessor.decode(&std::fs::read("frame.jpg").unwrap())?;
//! let geometry = preprocessor.prepare()?; // geometry.to_source_box() takes boxes back to width x height
//! let tensor = preprocessor.tensor(); // for the engine
//! # let _ = (width, height, geometry, tensor);
//! # Ok(()) }
//! ```

mod decode;
mod normalize;
mod resize;
mod sensor;
#[cfg(test)]
mod tests;

pub use decode::{DEFAULT_MAX_PIXELS, RgbDecoder};
pub use resize::Geometry;
pub use sensor::SensorPreprocessor;

use crate::error::{Error, Result};
use crate::manifest::ImageInputSpec;
use crate::tensor::InputTensor;
use normalize::Normalizer;
use resize::FrameResizer;

/// Turns encoded JPEG or PNG frames into the model's input tensor.
#[derive(Debug)]
pub struct ImagePreprocessor {
    decoder: RgbDecoder,
    resizer: FrameResizer,
    normalizer: Normalizer,
    shape: [usize; 4],
}

impl ImagePreprocessor {
    /// A preprocessor for `spec`, refusing frames over [`DEFAULT_MAX_PIXELS`].
    pub fn new(spec: &ImageInputSpec) -> Self {
        ImagePreprocessor::with_max_pixels(spec, DEFAULT_MAX_PIXELS)
    }

    /// A preprocessor for `spec`, refusing frames of more than `max_pixels` pixels (checked from the header,
    /// before anything is allocated).
    pub fn with_max_pixels(spec: &ImageInputSpec, max_pixels: u64) -> Self {
        ImagePreprocessor {
            decoder: RgbDecoder::new(max_pixels),
            resizer: FrameResizer::new(spec.resize, spec.crop_fraction, spec.pad_value, spec.width, spec.height),
            normalizer: Normalizer::new(spec),
            shape: spec.shape(),
        }
    }

    /// Decodes a JPEG or PNG frame and returns its width and height. Errors: [`Error::EmptyInput`],
    /// [`Error::ImageTooLarge`], [`Error::Decode`]; after one, [`ImagePreprocessor::prepare`] refuses to run
    /// until a frame decodes.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<(u32, u32)> {
        self.decoder.decode(bytes)
    }

    /// Resizes and normalises the last decoded frame into the tensor, returning how model coordinates map
    /// back to it. [`Error::EmptyInput`] if no frame has been decoded (or the last decode failed).
    pub fn prepare(&mut self) -> Result<Geometry> {
        let (width, height) = self.decoder.dimensions();
        if width == 0 || height == 0 {
            return Err(Error::EmptyInput);
        }
        let geometry = self.resizer.resize(self.decoder.rgb(), width, height)?;
        self.normalizer.write(self.resizer.canvas());
        Ok(geometry)
    }

    /// The tensor as the last [`ImagePreprocessor::prepare`] wrote it.
    pub fn tensor(&self) -> InputTensor<'_> {
        self.normalizer.tensor()
    }

    /// The tensor shape, batch of one (as [`ImageInputSpec::shape`]).
    pub fn shape(&self) -> [usize; 4] {
        self.shape
    }

    /// The last decoded frame, RGB8, rows top to bottom; empty if there is none.
    pub fn decoded_rgb(&self) -> &[u8] {
        self.decoder.rgb()
    }
}
