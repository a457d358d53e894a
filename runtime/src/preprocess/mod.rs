//! Inputs to tensors: an encoded or raw frame through [`ImagePreprocessor`] (decode or convert, resize,
//! normalise), a sensor window through [`SensorPreprocessor`] (check, standardise).
//!
//! Both keep every buffer from call to call, so a stream of same-sized frames allocates nothing of its own
//! after the first (the JPEG and PNG decoders still make their own working buffers). They write the tensor
//! into a buffer the caller keeps ([`ImagePreprocessor::prepare_into`], [`SensorPreprocessor::prepare_into`]:
//! the pipeline's [`crate::Prepared`]), or into one of their own ([`ImagePreprocessor::prepare`]); frames over
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
mod dynamic;
#[cfg(test)]
mod frame_tests;
mod limits;
mod normalize;
mod png_rows;
mod resize;
mod sensor;
#[cfg(test)]
mod tests;

use decode::DecodeTarget;
pub use decode::{RETAINED_FRAME_BYTES, RgbDecoder};
pub use limits::{DEFAULT_MAX_DECODED_BYTES, DEFAULT_MAX_PIXELS, ImageLimits};
pub use resize::Geometry;
pub use sensor::SensorPreprocessor;

use crate::error::{Error, Result};
use crate::frame::Frame;
use crate::manifest::{DynamicSize, ImageInputSpec, ImageLayout};
use crate::tensor::{InputTensor, InputTensorMut};
use dynamic::FrameSize;
use limits::DecodedSize;
use normalize::{Normalizer, OwnedTensor};
use resize::{Fit, FrameResizer};

/// Turns encoded JPEG or PNG frames, and raw frames, into the model's input tensor.
#[derive(Debug)]
pub struct ImagePreprocessor {
    decoder: RgbDecoder,
    resizer: FrameResizer,
    normalizer: Normalizer,
    shape: [usize; 4],
    /// The input size chosen per frame, with `input.height`; `None`: always `shape`.
    dynamic: Option<(DynamicSize, u32)>,
    layout: (ImageLayout, usize),
    reduced_jpeg_decode: bool,
    /// The tensor [`ImagePreprocessor::prepare`] writes, allocated by the first.
    tensor: Option<OwnedTensor>,
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
            resizer: FrameResizer::new(Fit::of(spec), spec.width, spec.height),
            normalizer: Normalizer::new(spec),
            shape: spec.shape(),
            dynamic: spec.dynamic_size.clone().map(|dynamic| (dynamic, spec.height)),
            layout: (spec.layout, spec.channels()),
            reduced_jpeg_decode: true,
            tensor: None,
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

    /// Whether JPEGs are decoded at reduced scale where the model input is much smaller (on by default).
    pub fn reduced_jpeg_decode(&self) -> bool {
        self.reduced_jpeg_decode
    }

    /// Decodes the next JPEGs at 1/4 or 1/8 scale in the IDCT, the largest reduction that leaves at least as
    /// many pixels as the resize writes (nothing is upscaled after), where one applies ([`MIN_JPEG_REDUCTION`]).
    /// On by default: a 1080p frame into a 224 input takes 1.1x to 1.6x less decode and preprocess time, and
    /// the tensor differs from a full decode and resize by about a level on average (the reduction averages
    /// blocks where the resize filter weighs pixels; docs/bundle-format.md has the figures and the tolerance
    /// the tests hold). `false` keeps the reference pipeline's tensors exactly. Geometry maps to the source's
    /// pixels either way.
    pub fn set_reduced_jpeg_decode(&mut self, enabled: bool) {
        self.reduced_jpeg_decode = enabled;
    }

    /// Decodes a JPEG or PNG frame and returns its width and height. Errors: [`Error::EmptyInput`],
    /// [`Error::ImageTooLarge`], [`Error::DecodedTooLarge`] (the decoded size counts the resize
    /// intermediate too), [`Error::Decode`]; after one, [`ImagePreprocessor::prepare`] refuses to run until a
    /// frame decodes.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<(u32, u32)> {
        let target =
            ResizeTarget { resizer: &self.resizer, reduce: self.reduced_jpeg_decode, dynamic: self.dynamic.as_ref() };
        self.decoder.decode_for(bytes, &target)
    }

    /// Resizes and normalises the last decoded frame into the preprocessor's own tensor (see
    /// [`ImagePreprocessor::tensor`]), returning how model coordinates map back to it. [`Error::EmptyInput`]
    /// if no frame has been decoded (or the last decode failed).
    pub fn prepare(&mut self) -> Result<Geometry> {
        let mut tensor = self.own_tensor(self.decoder.source().0);
        let geometry = self.prepare_into(tensor.view_mut());
        self.tensor = Some(tensor);
        geometry
    }

    /// As [`ImagePreprocessor::prepare`], into `tensor`, which must have the spec's element type and the size
    /// [`ImagePreprocessor::shape_for`] gives for the frame ([`Error::TensorMismatch`]).
    pub fn prepare_into(&mut self, tensor: InputTensorMut<'_>) -> Result<Geometry> {
        let (width, height) = self.decoder.dimensions();
        if width == 0 || height == 0 {
            return Err(Error::EmptyInput);
        }
        let (source, reduction) = self.decoder.source();
        let size = self.fit_to(source);
        let geometry = self.resizer.resize_reduced(self.decoder.rgb(), (width, height), source, reduction)?;
        self.write_tensor(size, tensor)?;
        Ok(geometry)
    }

    /// The tensor shape for a `source` (width, height) frame: [`ImagePreprocessor::shape`], or the frame's own
    /// where the manifest has the input size chosen per frame (`input.dynamic_size`).
    pub fn shape_for(&self, source: (u32, u32)) -> [usize; 4] {
        match &self.dynamic {
            Some((dynamic, height)) => FrameSize::new(dynamic, *height, source).shape(self.layout.0, self.layout.1),
            None => self.shape,
        }
    }

    /// Sizes the resizer for a `source` frame where the input size is chosen per frame; that size.
    fn fit_to(&mut self, source: (u32, u32)) -> Option<FrameSize> {
        let (dynamic, height) = self.dynamic.as_ref()?;
        let size = FrameSize::new(dynamic, *height, source);
        self.resizer.set_size(size.content_width, size.height);
        Some(size)
    }

    /// Normalises the resized frame into `tensor`, padded on the right where the frame's size asks for it.
    fn write_tensor(&self, size: Option<FrameSize>, tensor: InputTensorMut<'_>) -> Result<()> {
        match (size, &self.dynamic) {
            (Some(size), Some((dynamic, _))) if size.content_width < size.width => {
                dynamic::write_padded(&self.normalizer, self.resizer.canvas(), tensor, size, self.layout, dynamic.pad)
            }
            _ => self.normalizer.write(self.resizer.canvas(), self.resizer.inset(), tensor),
        }
    }

    /// The preprocessor's own tensor, sized for a `source` frame (reused when it has that size already).
    fn own_tensor(&mut self, source: (u32, u32)) -> OwnedTensor {
        let len = self.shape_for(source).iter().product();
        match self.tensor.take() {
            Some(tensor) if tensor.len() == len => tensor,
            _ => self.normalizer.new_tensor(len),
        }
    }

    /// Converts, resizes and normalises a raw frame into the tensor, returning how model coordinates map
    /// back to it; the colour conversion is fused into the resize (see [`Frame::to_rgb8`] for how YUV is
    /// read). The frame is held to the same [`ImageLimits`] as a decoded image: its pixels, and its bytes
    /// counted as its own data, its RGB8 size and the resize intermediate. Errors: [`Error::ImageTooLarge`],
    /// [`Error::DecodedTooLarge`].
    pub fn prepare_frame(&mut self, frame: &Frame) -> Result<Geometry> {
        let mut tensor = self.own_tensor((frame.width(), frame.height()));
        let geometry = self.prepare_frame_into(frame, tensor.view_mut());
        self.tensor = Some(tensor);
        geometry
    }

    /// As [`ImagePreprocessor::prepare_frame`], into `tensor`, which must have the spec's element type and
    /// the size [`ImagePreprocessor::shape_for`] gives for the frame ([`Error::TensorMismatch`]).
    pub fn prepare_frame_into(&mut self, frame: &Frame, tensor: InputTensorMut<'_>) -> Result<Geometry> {
        let limits = self.decoder.limits();
        let (width, height) = (frame.width(), frame.height());
        limits.check_pixels(width, height)?;
        let size = self.fit_to((width, height));
        limits.check_decoded(&DecodedSize {
            width,
            height,
            pixel_format: format!("{} frame", frame.format()),
            decoder_bytes: frame.data().len() as u64,
            other_bytes: self.resizer.intermediate_bytes((width, height), 1),
        })?;
        let geometry = self.resizer.resize_frame(frame)?;
        self.write_tensor(size, tensor)?;
        Ok(geometry)
    }

    /// The tensor as the last [`ImagePreprocessor::prepare`] or [`ImagePreprocessor::prepare_frame`] wrote it;
    /// empty before the first.
    pub fn tensor(&self) -> InputTensor<'_> {
        self.tensor.as_ref().map_or(InputTensor::F32(&[]), OwnedTensor::view)
    }

    /// The tensor shape, batch of one (as [`ImageInputSpec::shape`]; see [`ImagePreprocessor::shape_for`] for
    /// inputs sized per frame).
    pub fn shape(&self) -> [usize; 4] {
        self.shape
    }

    /// Frees the frame and resize buffers that are over [`RETAINED_FRAME_BYTES`], once the tensor is
    /// written; a frame whose buffer is freed is forgotten, as after a failed decode.
    pub fn release_outsized(&mut self) {
        self.decoder.release_outsized();
        self.resizer.release_outsized(RETAINED_FRAME_BYTES);
    }

    /// The last decoded frame, RGB8, rows top to bottom (at the reduced size where a JPEG was decoded
    /// reduced); empty if there is none.
    pub fn decoded_rgb(&self) -> &[u8] {
        self.decoder.rgb()
    }
}

/// The resizer as the decoder sees it: the intermediate it needs, and the JPEG reductions it takes when
/// reduced decoding is on.
struct ResizeTarget<'a> {
    resizer: &'a FrameResizer,
    reduce: bool,
    /// The input size chosen per frame, with `input.height`.
    dynamic: Option<&'a (DynamicSize, u32)>,
}

/// The smallest JPEG reduction taken. At 1/2, jpeg-decoder's slower entropy decoding costs about what the
/// smaller IDCT and resize save (a 1080p JPEG into the face detector's 640x480: 0.86x as fast as a full decode
/// on an idle machine, 1.15x under load; frames under 1 MP into 224: 0.8x to 0.9x); at 1/4 and 1/8 it gains
/// (1080p into 224: 1.08x idle, 1.55x to 1.64x under load).
pub const MIN_JPEG_REDUCTION: u32 = 4;

impl DecodeTarget for ResizeTarget<'_> {
    fn other_bytes(&self, source: (u32, u32), reduction: u32) -> u64 {
        match self.dynamic {
            // The resizer is sized for the last frame: count the most this one's resize can need.
            Some((dynamic, height)) => {
                let size = FrameSize::new(dynamic, *height, source);
                u64::from(size.content_width) * u64::from(source.1.div_ceil(reduction)) * 3
            }
            None => self.resizer.intermediate_bytes(source, reduction),
        }
    }

    fn max_reduction(&self, source: (u32, u32)) -> u32 {
        // Frames sized per frame are decoded whole: text models read fine strokes, and most are scaled up.
        let reduction = if self.reduce && self.dynamic.is_none() { self.resizer.max_reduction(source) } else { 1 };
        if reduction >= MIN_JPEG_REDUCTION { reduction } else { 1 }
    }
}
