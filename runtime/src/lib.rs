//! The edge runtime: model bundles, execution providers, pre- and post-processing, and the inference pipeline.
//! Inference only: packages, signatures and golden self-tests, which only updates and the operator's tools
//! need, are the `packaging` crate's, built on this one.
//!
//! Data flows one way: an [`Input`] goes through a [`Pipeline`] (decode, preprocess, [`Engine`] run,
//! postprocess) and comes out as an [`Output`] with per-stage [`StageTimings`]. The library starts no threads
//! and installs no logger; one pipeline (one ONNX Runtime session) per worker thread.
//!
//! ```no_run
//! # fn main() -> runtime::Result<()> {
//! use runtime::{Bundle, EngineOptions, Input, OnnxRuntime, Pipeline};
//! let ort = OnnxRuntime::load("ort/x86_64/libonnxruntime.so.1.31.1")?;
//! let bundle = Bundle::load("models/face-detector")?;
//! let mut pipeline = Pipeline::new(&ort, &bundle, &EngineOptions::default())?;
//! let (output, timings) = pipeline.infer(&Input::Image(std::fs::read("models/frames/people.jpg").unwrap()))?;
//! println!("{output:?} in {} us", timings.total_us());
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod bundle;
pub mod cascade;
mod engine;
mod error;
mod frame;
mod input;
mod labels;
pub mod manifest;
mod model_cache;
pub mod monitor;
mod onnx_runtime;
mod pipeline;
pub mod postprocess;
mod prepare;
pub mod preprocess;
mod provider;
pub mod recording;
mod session_build;
mod session_settings;
mod tensor;

pub use bundle::{Bundle, MANIFEST_FILE, SIGNATURE_FILE};
pub use engine::{Engine, EngineOptions};
pub use error::{Error, Result};
pub use frame::{Frame, PixelFormat};
pub use input::{Input, SensorWindow};
pub use manifest::Manifest;
pub use onnx_runtime::OnnxRuntime;
// What a pipeline returns is the wire protocol's prediction payload.
pub use pipeline::{BatchBuffers, MAX_BATCH, Pipeline};
pub use prepare::{Prepared, Preparer};
pub use preprocess::ImageLimits;
pub use protocol::{
    BoundingBox, ClassScore, Detection, ModelIdentity, Output, Point, RawTensor, StageOutput, StageResult,
    StageTimings, TensorDtype,
};
pub use provider::{ActiveProvider, ProviderKind};
pub use session_build::{ModelOrigin, cpu_session};
pub use session_settings::{GraphOptimization, ModelFamily, SessionOverrides, SessionSettings};
pub use tensor::{InputTensor, InputTensorMut, OutputTensor, Outputs};
