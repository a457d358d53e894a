//! The features watched for drift, computed per inference: from the model's input tensor (images: brightness,
//! contrast, per-channel means, sharpness; sensors: each channel's mean, spread and roughness over the window)
//! and from its decoded output (predicted class, top-1 confidence, anomaly score, detections per frame, box
//! size). The list is a function of the manifest alone, so a profile and a device always agree on it.

use crate::manifest::Manifest;
use crate::tensor::InputTensor;
use protocol::Output;
use protocol::wire::FeatureSide;

/// How a feature's values are compared with the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureKind {
    /// Real values: PSI over the reference's quantile bins and two-sample KS.
    Continuous,
    /// A category index `0..categories` (the predicted class): PSI and Jensen-Shannon over the categories.
    Categorical { categories: u32 },
}

/// One watched feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureSpec {
    /// Stable name, as in the profile and on the wire (`brightness`, `acc_x.mean`, `top1_confidence`...).
    pub name: String,
    pub kind: FeatureKind,
    pub side: FeatureSide,
}

/// Computes a model's features, reusing its buffers from call to call.
#[derive(Debug, Clone)]
pub struct FeatureExtractor {
    specs: Vec<FeatureSpec>,
}

impl FeatureExtractor {
    /// The extractor for the model `manifest` describes; `labels` sizes the predicted-class feature.
    pub fn new(manifest: &Manifest, labels: &[String]) -> FeatureExtractor {
        let _ = (manifest, labels);
        todo!("branch stats")
    }

    /// The features, in the order [`FeatureExtractor::extract`] writes them.
    pub fn specs(&self) -> &[FeatureSpec] {
        &self.specs
    }

    /// Writes one value per spec into `out` (cleared first): the input features from `input` (the tensor the
    /// preprocessor wrote), then the output features from `output`.
    pub fn extract(&mut self, input: InputTensor<'_>, output: &Output, out: &mut Vec<f32>) {
        let _ = (input, output, out);
        todo!("branch stats")
    }
}
