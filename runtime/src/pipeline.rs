//! The pipeline: decode, preprocess, run, postprocess, each timed. One pipeline per worker thread.
//!
//! Decoding and preprocessing may run apart from the rest: a [`Preparer`] (from [`Pipeline::preparer`])
//! writes a [`Prepared`] on one thread while [`Pipeline::run`] runs the previous one on another.
//! [`Pipeline::infer`] does both in turn.

mod batch;

use crate::bundle::Bundle;
use crate::cascade::{self, Cascade};
use crate::engine::{Engine, EngineOptions};
use crate::error::{Error, Result};
use crate::input::Input;
use crate::manifest::{CascadeSpec, InputSpec};
use crate::monitor::{FeatureExtractor, FeatureSpec, Profile};
use crate::onnx_runtime::OnnxRuntime;
use crate::postprocess::{Decoder, InputSize};
use crate::prepare::{Prepared, Preparer, micros};
use crate::preprocess::ImageLimits;
use crate::provider::ActiveProvider;
use crate::{ModelOrigin, SessionSettings};
use protocol::Output;
use protocol::{ModelIdentity, StageTimings};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

pub use batch::{BatchBuffers, MAX_BATCH};

/// A bundle made runnable: preparer, engine and decoder with their buffers.
pub struct Pipeline {
    input: Arc<InputSpec>,
    /// What [`Pipeline::infer`] prepares with and into.
    preparer: Preparer,
    prepared: Prepared,
    engine: Engine,
    decoder: Decoder,
    identity: ModelIdentity,
    features: FeatureExtractor,
    /// The features of the last input that inferred; `None` while monitoring is off, empty before the first.
    monitored: Option<Vec<f32>>,
    profile: Option<Arc<Profile>>,
    /// The second stage run on each detection's crop (boxed: it holds a pipeline of its own).
    cascade: Option<Box<Cascade>>,
}

impl Pipeline {
    /// Builds the engine for `bundle` (checking the manifest against the graph) and the stages around it,
    /// with the second stage of its `[cascade]` if it has one (loaded from its subdirectory and checked with
    /// [`cascade::problems`]).
    pub fn new(ort: &OnnxRuntime, bundle: &Bundle, options: &EngineOptions) -> Result<Pipeline> {
        let mut pipeline = Pipeline::first_stage(ort, bundle, options)?;
        if let Some(spec) = &bundle.manifest().cascade {
            pipeline.set_cascade(ort, bundle, &bundle.dir().join(&spec.bundle), spec.clone(), options, "cascade")?;
        }
        Ok(pipeline)
    }

    /// Runs `spec`'s second stage, the bundle in `second`, on the crops of this pipeline's detections from now
    /// on (replacing the bundle's own `[cascade]`). `first` is this pipeline's bundle; problems name their keys
    /// under `prefix` ([`Error::Cascade`]). Preparers obtained from now on keep each frame for the crops.
    pub fn set_cascade(
        &mut self,
        ort: &OnnxRuntime,
        first: &Bundle,
        second: &Path,
        spec: CascadeSpec,
        options: &EngineOptions,
        prefix: &str,
    ) -> Result<()> {
        let second = Bundle::load(second).map_err(|error| match error {
            Error::Manifest { path, message } => {
                Error::Cascade { problems: format!("`{prefix}.bundle`: manifest {}: {message}", path.display()) }
            }
            other => Error::Cascade { problems: format!("`{prefix}.bundle`: {other}") },
        })?;
        let problems = cascade::problems(first.manifest(), first.labels(), second.manifest(), &spec, prefix);
        if !problems.is_empty() {
            return Err(Error::Cascade { problems: problems.join("; ") });
        }
        let stage = Pipeline::first_stage(ort, &second, options)
            .map_err(|error| Error::Cascade { problems: format!("`{prefix}.bundle`: {error}") })?;
        self.cascade = Some(Box::new(Cascade::new(spec, stage)));
        self.preparer.set_keep_source();
        Ok(())
    }

    /// The pipeline of `bundle` alone, without its cascade.
    fn first_stage(ort: &OnnxRuntime, bundle: &Bundle, options: &EngineOptions) -> Result<Pipeline> {
        let engine = Engine::new(ort, bundle, options)?;
        let manifest = bundle.manifest();
        let input = Arc::new(manifest.input.clone());
        let mut decoder = Decoder::new(&manifest.output, engine.labels().to_vec());
        if let InputSpec::Image(image) = &manifest.input {
            decoder = decoder.with_input_size(InputSize { width: image.width, height: image.height });
        }
        let features = FeatureExtractor::new(manifest, engine.labels());
        Ok(Pipeline {
            preparer: Preparer::new(input.clone()),
            input,
            prepared: Prepared::new(),
            engine,
            decoder,
            identity: bundle.identity(),
            features,
            monitored: None,
            profile: bundle.profile().cloned(),
            cascade: None,
        })
    }

    /// Runs one input through every stage: [`Preparer::prepare`] then [`Pipeline::run`], on the pipeline's
    /// own preparer and buffer. An error names its stage through [`crate::Error::stage`].
    pub fn infer(&mut self, input: &Input) -> Result<(Output, StageTimings)> {
        self.preparer.prepare(input, &mut self.prepared)?;
        // Taken out for the run, which borrows the pipeline mutably; an empty `Prepared` allocates nothing.
        let prepared = std::mem::take(&mut self.prepared);
        let result = self.run(&prepared);
        self.prepared = prepared;
        result
    }

    /// A preparer for this model's input, with the pipeline's frame limits and decode settings, to prepare
    /// inputs on another thread for [`Pipeline::run`].
    pub fn preparer(&self) -> Preparer {
        self.preparer.like()
    }

    /// Runs the model on a prepared input and postprocesses it, with the decode and preprocess timings of
    /// its preparation. [`crate::Error::TensorMismatch`] for an input prepared for another input spec (the
    /// model was replaced since) or whose preparation failed. With monitoring on, the features are computed
    /// here and counted in `postprocess_us`.
    pub fn run(&mut self, prepared: &Prepared) -> Result<(Output, StageTimings)> {
        let (tensor, geometry) = prepared.for_spec(&self.input)?;
        let mut timings = prepared.timings();
        let run_started = Instant::now();
        let outputs = self.engine.run_prepared(tensor)?;
        let ran = Instant::now();
        timings.inference_us = micros(run_started, ran);
        let mut output = self.decoder.decode(outputs, geometry)?;
        if let Some(features) = &mut self.monitored {
            self.features.extract(tensor.view(), &output, features);
        }
        timings.postprocess_us = micros(ran, Instant::now());
        if let (Some(cascade), Output::Detection { detections }) = (&mut self.cascade, &mut output) {
            cascade.run(prepared.source(), detections, &mut timings);
        }
        Ok((output, timings))
    }

    /// The limits an image model holds frames to; `None` for a sensor model.
    pub fn image_limits(&self) -> Option<ImageLimits> {
        self.preparer.image_limits()
    }

    /// Holds the frames of an image model to `limits`; a sensor model takes no frames, so it has none.
    /// Preparers obtained from now on get them too.
    pub fn set_image_limits(&mut self, limits: ImageLimits) {
        self.preparer.set_image_limits(limits);
    }

    /// Decodes the JPEGs of an image model at reduced scale where its input is much smaller (see
    /// [`crate::preprocess::ImagePreprocessor::set_reduced_jpeg_decode`]; on by default); a sensor model
    /// takes no images. Preparers obtained from now on decode so too.
    pub fn set_reduced_jpeg_decode(&mut self, enabled: bool) {
        self.preparer.set_reduced_jpeg_decode(enabled);
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
