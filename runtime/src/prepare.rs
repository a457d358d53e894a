//! The preparing half of a pipeline: decode and preprocess one input into a [`Prepared`], which
//! [`crate::Pipeline::run`] takes. The two halves may run on different threads, the preparer a frame ahead.
//!
//! A [`Prepared`] owns its input tensor, allocated once at its final size and written in place, so
//! preparing a stream of inputs into recycled [`Prepared`]s allocates nothing of its own (the JPEG and PNG
//! decoders make their own working buffers); an input sized per frame (`input.dynamic_size`) is reallocated
//! when a frame's size differs from the last one's. It remembers the input spec it was prepared for: a pipeline
//! refuses one made for another spec (after a model update) rather than run it.

use crate::error::{Error, Result};
use crate::frame::{Frame, PixelFormat};
use crate::input::Input;
use crate::manifest::InputSpec;
use crate::preprocess::{Geometry, ImageLimits, ImagePreprocessor, SensorPreprocessor};
use crate::tensor::{InputBuffer, InputTensor, InputTensorMut, describe_input};
use protocol::StageTimings;
use std::sync::Arc;
use std::time::Instant;

/// One input decoded and preprocessed: the tensor, the geometry back to the source image, and the decode
/// and preprocess timings. Recycle it: the tensor is allocated by its first preparation only.
#[derive(Debug, Default)]
pub struct Prepared {
    tensor: Option<InputBuffer>,
    /// The spec the tensor was written for; `None` before a preparation succeeds and after one fails.
    spec: Option<Arc<InputSpec>>,
    geometry: Option<Geometry>,
    timings: StageTimings,
    /// The source frame in RGB8 at full size, kept for a cascade to crop from; `None` unless the preparer keeps
    /// sources ([`Preparer::set_keep_source`]) and the last preparation succeeded.
    source: Option<Frame>,
}

impl Prepared {
    /// An empty one, which no pipeline runs until a [`Preparer`] has written it.
    pub fn new() -> Prepared {
        Prepared::default()
    }

    /// The tensor, if the last preparation succeeded.
    pub fn tensor(&self) -> Option<InputTensor<'_>> {
        self.spec.as_ref().and(self.tensor.as_ref()).map(InputBuffer::view)
    }

    /// How long decoding and preprocessing took (the other stages are zero).
    pub fn timings(&self) -> StageTimings {
        self.timings
    }

    /// The source frame in RGB8, full size, when the preparer keeps sources.
    pub(crate) fn source(&self) -> Option<&Frame> {
        self.spec.as_ref().and(self.source.as_ref())
    }

    /// The tensor and geometry, if the last preparation succeeded and was for `spec`; otherwise
    /// [`Error::TensorMismatch`].
    pub(crate) fn for_spec(&self, spec: &Arc<InputSpec>) -> Result<(&InputBuffer, Option<&Geometry>)> {
        match (&self.spec, &self.tensor) {
            (Some(prepared), Some(tensor)) if Arc::ptr_eq(prepared, spec) || **prepared == **spec => {
                Ok((tensor, self.geometry.as_ref()))
            }
            (Some(prepared), _) => Err(Error::TensorMismatch {
                expected: describe_input(spec),
                got: format!("{} (prepared for another model's input)", describe_input(prepared)),
            }),
            (None, _) => Err(Error::TensorMismatch {
                expected: describe_input(spec),
                got: "not prepared (its preparation failed or never ran)".to_owned(),
            }),
        }
    }
}

/// The preprocessor for one input spec.
enum Preprocessor {
    Image(Box<ImagePreprocessor>),
    Sensor(SensorPreprocessor),
}

/// Decodes and preprocesses inputs for one input spec into [`Prepared`]s. Obtained from
/// [`crate::Pipeline::preparer`], with the pipeline's frame limits and decode settings.
pub struct Preparer {
    spec: Arc<InputSpec>,
    preprocessor: Preprocessor,
    /// Whether each image is kept whole in the [`Prepared`] (a cascade crops it).
    keep_source: bool,
}

impl Preparer {
    /// A preparer for `spec`, with the default [`ImageLimits`].
    pub(crate) fn new(spec: Arc<InputSpec>) -> Preparer {
        let preprocessor = match &*spec {
            InputSpec::Image(image) => Preprocessor::Image(Box::new(ImagePreprocessor::new(image))),
            InputSpec::Sensor(sensor) => Preprocessor::Sensor(SensorPreprocessor::new(sensor)),
        };
        Preparer { spec, preprocessor, keep_source: false }
    }

    /// A new preparer for the same spec, with the same limits and settings.
    pub(crate) fn like(&self) -> Preparer {
        let mut preparer = Preparer::new(self.spec.clone());
        if let (Preprocessor::Image(new), Preprocessor::Image(this)) = (&mut preparer.preprocessor, &self.preprocessor)
        {
            new.set_limits(this.limits());
            new.set_reduced_jpeg_decode(this.reduced_jpeg_decode());
        }
        preparer.keep_source = self.keep_source;
        preparer
    }

    /// The input spec it prepares for.
    pub fn spec(&self) -> &Arc<InputSpec> {
        &self.spec
    }

    /// Decodes and preprocesses `input` into `prepared`, timing both stages. An error names its stage
    /// through [`Error::stage`] and leaves `prepared` unrunnable until the next preparation succeeds.
    pub fn prepare(&mut self, input: &Input, prepared: &mut Prepared) -> Result<()> {
        prepared.spec = None;
        prepared.geometry = None;
        prepared.timings = StageTimings::default();
        let slot = &mut prepared.tensor;
        let started = Instant::now();
        let timings = &mut prepared.timings;
        prepared.geometry = match (&mut self.preprocessor, input) {
            (Preprocessor::Image(pre), Input::Image(bytes)) => {
                let source = pre.decode(bytes)?;
                let decoded = Instant::now();
                timings.decode_us = micros(started, decoded);
                if self.keep_source {
                    // Decoded full size (keeping sources turns reduced decoding off), so the copy is the source.
                    let (width, height) = source;
                    keep_source(&mut prepared.source, width, height, |rgb| rgb.extend_from_slice(pre.decoded_rgb()))?;
                }
                let tensor = image_buffer(slot, &self.spec, pre.shape_for(source))?;
                let geometry = pre.prepare_into(tensor.view_mut());
                // The frame is in the tensor now: an outsized one need not hold its memory until the next.
                pre.release_outsized();
                timings.preprocess_us = micros(decoded, Instant::now());
                Some(geometry?)
            }
            (Preprocessor::Image(pre), Input::Frame(frame)) => {
                if self.keep_source {
                    let rgb = frame.to_rgb8();
                    keep_source(&mut prepared.source, frame.width(), frame.height(), |kept| *kept = rgb)?;
                }
                // Nothing to decode: the colour conversion is part of the resize, so it counts as preprocessing.
                let tensor = image_buffer(slot, &self.spec, pre.shape_for((frame.width(), frame.height())))?;
                let geometry = pre.prepare_frame_into(frame, tensor.view_mut());
                pre.release_outsized();
                timings.preprocess_us = micros(started, Instant::now());
                Some(geometry?)
            }
            (Preprocessor::Sensor(pre), Input::Sensor(window)) => {
                let tensor = match slot {
                    Some(tensor) if tensor.fits(&self.spec) => tensor,
                    other => other.insert(InputBuffer::new(&self.spec)?),
                };
                let InputTensorMut::F32(data) = tensor.view_mut() else {
                    return Err(Error::TensorMismatch { expected: "f32".to_owned(), got: "u8".to_owned() });
                };
                pre.prepare_into(window, data)?;
                timings.preprocess_us = micros(started, Instant::now());
                None
            }
            (Preprocessor::Image(_), other) => {
                return Err(Error::WrongInputKind { expected: "image", got: other.kind() });
            }
            (Preprocessor::Sensor(_), other) => {
                return Err(Error::WrongInputKind { expected: "sensor", got: other.kind() });
            }
        };
        prepared.spec = Some(self.spec.clone());
        Ok(())
    }

    /// The limits an image model holds frames to; `None` for a sensor model.
    pub fn image_limits(&self) -> Option<ImageLimits> {
        match &self.preprocessor {
            Preprocessor::Image(pre) => Some(pre.limits()),
            Preprocessor::Sensor(_) => None,
        }
    }

    /// Holds the frames of an image model to `limits`; a sensor model takes no frames, so it has none.
    pub fn set_image_limits(&mut self, limits: ImageLimits) {
        if let Preprocessor::Image(pre) = &mut self.preprocessor {
            pre.set_limits(limits);
        }
    }

    /// Decodes the JPEGs of an image model at reduced scale where its input is much smaller (see
    /// [`ImagePreprocessor::set_reduced_jpeg_decode`]; on by default, off while sources are kept); a sensor
    /// model takes no images.
    pub fn set_reduced_jpeg_decode(&mut self, enabled: bool) {
        if let Preprocessor::Image(pre) = &mut self.preprocessor {
            pre.set_reduced_jpeg_decode(enabled && !self.keep_source);
        }
    }

    /// Keeps each image whole, RGB8 at full size, in the [`Prepared`], for a cascade to crop: JPEGs are then
    /// decoded full size, so that crops are cut from the source's own pixels.
    pub(crate) fn set_keep_source(&mut self) {
        self.keep_source = true;
        self.set_reduced_jpeg_decode(false);
    }
}

/// Writes the source image into `kept` (its buffer reused), `fill` appending its RGB8 rows to the empty buffer.
fn keep_source(kept: &mut Option<Frame>, width: u32, height: u32, fill: impl FnOnce(&mut Vec<u8>)) -> Result<()> {
    let mut rgb = kept.take().map(Frame::into_data).unwrap_or_default();
    rgb.clear();
    fill(&mut rgb);
    *kept = Some(Frame::packed(PixelFormat::Rgb8, width, height, rgb)?);
    Ok(())
}

/// The buffer in `slot` for an image of `shape` (the spec's, or the frame's own where the input is sized per
/// frame), replaced when it has another shape.
fn image_buffer<'a>(
    slot: &'a mut Option<InputBuffer>,
    spec: &InputSpec,
    shape: [usize; 4],
) -> Result<&'a mut InputBuffer> {
    let InputSpec::Image(image) = spec else {
        return Err(Error::WrongInputKind { expected: "sensor", got: "image" });
    };
    let shape = shape.map(|d| d as i64);
    let tensor = match slot.take() {
        Some(tensor) if tensor.fits_shape(image.dtype, &shape) => tensor,
        _ => InputBuffer::with_shape(image.dtype, &shape)?,
    };
    Ok(slot.insert(tensor))
}

/// Microseconds from `from` to `to`, saturating.
pub(crate) fn micros(from: Instant, to: Instant) -> u32 {
    u32::try_from(to.duration_since(from).as_micros()).unwrap_or(u32::MAX)
}
