//! What every prediction says about the model that made it and the time each stage took.

use serde::{Deserialize, Serialize};

/// Who a prediction came from: published with every prediction and in health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelIdentity {
    /// The manifest's `name`.
    pub name: String,
    /// The manifest's semantic version.
    pub version: String,
    /// Lower-case hex sha256 of the ONNX file.
    pub sha256: String,
}

/// Microseconds spent in each stage of one inference. `decode` is zero for sensor windows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageTimings {
    /// JPEG/PNG decoding.
    pub decode_us: u32,
    /// Resize, normalisation and layout (or window checks).
    pub preprocess_us: u32,
    /// `Session::run`, with the input view and the output copy.
    pub inference_us: u32,
    /// Decoding the outputs into a result.
    pub postprocess_us: u32,
}

impl StageTimings {
    /// Sum of the stages.
    pub fn total_us(&self) -> u32 {
        self.decode_us
            .saturating_add(self.preprocess_us)
            .saturating_add(self.inference_us)
            .saturating_add(self.postprocess_us)
    }
}
