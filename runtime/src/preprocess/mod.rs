//! Inputs to tensors: an encoded frame through [`ImagePreprocessor`] (decode, resize, normalise), a sensor
//! window through [`SensorPreprocessor`] (check, standardise).
//!
//! Both keep every buffer from call to call, so a stream of same-sized frames allocates nothing of its own
//! after the first (the JPEG and PNG decoders still make their own working buffers); frames over
//! [`RETAINED_FRAME_BYTES`] are the exception, their buffers given back by
//! [`ImagePreprocessor::release_outsized`]. Every frame is held to [`ImageLimits`] before anything of its
//! size is allocated. Decoding and preparing are separate calls because the pipeline times them as separate
//! stages. The [`Geometry`]
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
mod limits;
mod normalize;
mod png_rows;
mod resize;
mod sensor;
#[cfg(test)]
mod tests;

pub use decode::{RETAINED_FRAME_BYTES, RgbDecoder};
pub use limits::{DEFAULT_MAX_DECODED_BYTES, DEFAULT_MAX_PIXELS, ImageLimits};
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
    /// A preprocessor for `spec`, refusing frames over the default [`ImageLimits`].
    pub fn new(spec: &ImageInputSpec) -> Self {
        ImagePreprocessor::with_limits(spec, ImageLimits::default())
    }

    /// A preprocessor for `spec`, refusing frames over `limits` (checked from the headers, before anything
    /// of the frame's size is allocated).
    pub fn with_limits(spec: &ImageInputSpec, limits: ImageLimits) -> Self {
        ImagePreprocessor {
            decoder: RgbDecoder::new(limits),
            resizer: FrameResizer::new(spec.resize, spec.crop_fraction, spec.pad_value, spec.width, spec.height),
            normalizer: Normalizer::new(spec),
            shape: spec.shape(),
        }
    }

    /// The limits frames are held to.
    pub fn limits(&self) -> ImageLimits {
        self.decoder.limits()
    }

    /// Holds the next frames to `limits`.
    pub fn set_limits(&mut self, limits: ImageLimits) {
        self.decoder.set_limits(limits);
    }

    /// Decodes a JPEG or PNG frame and returns its width and height. Errors: [`Error::EmptyInput`],
    /// [`Error::ImageTooLarge`], [`Error::DecodedTooLarge`] (the decoded size counts the resize
    /// intermediate too), [`Error::Decode`]; after one, [`ImagePreprocessor::prepare`] refuses to run until a
    /// frame decodes.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<(u32, u32)> {
        let resizer = &self.resizer;
        self.decoder.decode_alongside(bytes, |width, height| resizer.intermediate_bytes(width, height))
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

    /// Frees the frame and resize buffers that are over [`RETAINED_FRAME_BYTES`], once the tensor is
    /// written; a frame whose buffer is freed is forgotten, as after a failed decode.
    pub fn release_outsized(&mut self) {
        self.decoder.release_outsized();
        self.resizer.release_outsized(RETAINED_FRAME_BYTES);
    }

    /// The last decoded frame, RGB8, rows top to bottom; empty if there is none.
    pub fn decoded_rgb(&self) -> &[u8] {
        self.decoder.rgb()
    }
}
