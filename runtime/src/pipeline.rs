//! The pipeline: decode, preprocess, run, postprocess, each timed. One pipeline per worker thread.

mod batch;

use crate::bundle::Bundle;
use crate::engine::{Engine, EngineOptions};
use crate::error::{Error, Result};
use crate::input::Input;
use crate::manifest::InputSpec;
use crate::monitor::{FeatureExtractor, FeatureSpec, Profile};
use crate::onnx_runtime::OnnxRuntime;
use crate::postprocess::Decoder;
use crate::preprocess::{ImageLimits, ImagePreprocessor, SensorPreprocessor};
use crate::provider::ActiveProvider;
use crate::{ModelOrigin, SessionSettings};
use protocol::Output;
use protocol::{ModelIdentity, StageTimings};
use std::sync::Arc;
use std::time::Instant;

pub use batch::{BatchBuffers, MAX_BATCH};

enum Preprocessor {
    Image(Box<ImagePreprocessor>),
    Sensor(SensorPreprocessor),
}

/// A bundle made runnable: preprocessor, engine and decoder with their buffers.
pub struct Pipeline {
    preprocessor: Preprocessor,
    engine: Engine,
    decoder: Decoder,
    identity: ModelIdentity,
    features: FeatureExtractor,
    /// The features of the last input that inferred; `None` while monitoring is off, empty before the first.
    monitored: Option<Vec<f32>>,
    profile: Option<Arc<Profile>>,
}

impl Pipeline {
    /// Builds the engine for `bundle` (checking the manifest against the graph) and the stages around it.
    pub fn new(ort: &OnnxRuntime, bundle: &Bundle, options: &EngineOptions) -> Result<Pipeline> {
        let engine = Engine::new(ort, bundle, options)?;
        let manifest = bundle.manifest();
        let preprocessor = match &manifest.input {
            InputSpec::Image(spec) => Preprocessor::Image(Box::new(ImagePreprocessor::new(spec))),
            InputSpec::Sensor(spec) => Preprocessor::Sensor(SensorPreprocessor::new(spec)),
        };
        let decoder = Decoder::new(&manifest.output, bundle.labels().to_vec());
        Ok(Pipeline {
            preprocessor,
            engine,
            decoder,
            identity: bundle.identity(),
            features: FeatureExtractor::new(manifest, bundle.labels()),
            monitored: None,
            profile: bundle.profile().cloned(),
        })
    }

    /// Runs one input through every stage. An error names its stage through [`Error::stage`]. With monitoring
    /// on, the features are computed after decoding and counted in `postprocess_us`.
    pub fn infer(&mut self, input: &Input) -> Result<(Output, StageTimings)> {
        let mut timings = StageTimings::default();
        let started = Instant::now();
        let (tensor, geometry) = match (&mut self.preprocessor, input) {
            (Preprocessor::Image(pre), Input::Image(bytes)) => {
                pre.decode(bytes)?;
                let decoded = Instant::now();
                timings.decode_us = micros(started, decoded);
                let prepared = pre.prepare();
                // The frame is in the tensor now: an outsized one need not hold its memory until the next.
                pre.release_outsized();
                let geometry = prepared?;
                timings.preprocess_us = micros(decoded, Instant::now());
                (pre.tensor(), Some(geometry))
            }
            (Preprocessor::Image(pre), Input::Frame(frame)) => {
                // Nothing to decode: the colour conversion is part of the resize, so it counts as preprocessing.
                let geometry = pre.prepare_frame(frame);
                pre.release_outsized();
                let geometry = geometry?;
                timings.preprocess_us = micros(started, Instant::now());
                (pre.tensor(), Some(geometry))
            }
            (Preprocessor::Sensor(pre), Input::Sensor(window)) => {
                pre.prepare(window)?;
                timings.preprocess_us = micros(started, Instant::now());
                (crate::tensor::InputTensor::F32(pre.tensor()), None)
            }
            (Preprocessor::Image(_), other) => {
                return Err(Error::WrongInputKind { expected: "image", got: other.kind() });
            }
            (Preprocessor::Sensor(_), other) => {
                return Err(Error::WrongInputKind { expected: "sensor", got: other.kind() });
            }
        };
        let run_started = Instant::now();
        let outputs = self.engine.run(tensor)?;
        let ran = Instant::now();
        timings.inference_us = micros(run_started, ran);
        let output = self.decoder.decode(outputs, geometry.as_ref())?;
        if let Some(features) = &mut self.monitored {
            self.features.extract(tensor, &output, features);
        }
        timings.postprocess_us = micros(ran, Instant::now());
        Ok((output, timings))
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
    /// [`ImagePreprocessor::set_reduced_jpeg_decode`]; on by default); a sensor model takes no images.
    pub fn set_reduced_jpeg_decode(&mut self, enabled: bool) {
        if let Preprocessor::Image(pre) = &mut self.preprocessor {
            pre.set_reduced_jpeg_decode(enabled);
        }
    }

    /// The model that runs.
    pub fn identity(&self) -> &ModelIdentity {
        &self.identity
    }

    /// The requested and active execution providers.
    pub fn provider(&self) -> &ActiveProvider {
        self.engine.provider()
    }

    /// The session's settings and where its model came from (`bench` prints them).
    pub fn session(&self) -> (&SessionSettings, ModelOrigin) {
        (self.engine.settings(), self.engine.origin())
    }

    /// The model's class labels in output order (possibly empty).
    pub fn labels(&self) -> &[String] {
        self.decoder.labels()
    }

    /// Computes the monitoring features (see [`crate::monitor`]) of every input that infers from now on.
    pub fn enable_monitoring(&mut self) {
        if self.monitored.is_none() {
            self.monitored = Some(Vec::with_capacity(self.features.specs().len()));
        }
    }

    /// The features of the last input that inferred, in [`Pipeline::feature_specs`] order; `None` while
    /// monitoring is off or before the first inference.
    pub fn features(&self) -> Option<&[f32]> {
        self.monitored.as_deref().filter(|features| !features.is_empty())
    }

    /// The features monitoring computes for this model.
    pub fn feature_specs(&self) -> &[FeatureSpec] {
        self.features.specs()
    }

    /// The bundle's reference profile, checked against [`Pipeline::feature_specs`]; `None` when it has none.
    pub fn profile(&self) -> Option<&Arc<Profile>> {
        self.profile.as_ref()
    }
}

fn micros(from: Instant, to: Instant) -> u32 {
    u32::try_from(to.duration_since(from).as_micros()).unwrap_or(u32::MAX)
}
