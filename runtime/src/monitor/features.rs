//! The features watched for drift, computed per inference: from the model's input tensor (images: brightness,
//! contrast, per-channel means, sharpness; sensors: each channel's mean, spread and roughness over the window)
//! and from its decoded output (predicted class, top-1 confidence, anomaly score, detections per frame, box
//! size). The list is a function of the manifest alone, so a profile and a device always agree on it.

mod image;
mod sensor;

use crate::manifest::{InputSpec, Manifest, OutputSpec};
use crate::tensor::InputTensor;
use image::ImageFeatures;
use protocol::Output;
use protocol::wire::FeatureSide;
use sensor::SensorFeatures;

/// How a feature's values are compared with the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureKind {
    /// Real values: PSI over the reference's quantile bins and two-sample KS.
    Continuous,
    /// A category index `0..categories` (the predicted class): PSI and Jensen-Shannon over the categories.
    Categorical {
        /// How many categories there are.
        categories: u32,
    },
}

/// One watched feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureSpec {
    /// Stable name, as in the profile and on the wire (`brightness`, `acc_x.mean`, `top1_confidence`...).
    pub name: String,
    /// How it is compared with the reference.
    pub kind: FeatureKind,
    /// Whether it describes the model's input or its output.
    pub side: FeatureSide,
}

/// Computes a model's features, reusing its buffers from call to call.
#[derive(Debug, Clone)]
pub struct FeatureExtractor {
    specs: Vec<FeatureSpec>,
    input: InputFeatures,
    output: OutputFeatures,
}

#[derive(Debug, Clone)]
enum InputFeatures {
    Image(Box<ImageFeatures>),
    Sensor(SensorFeatures),
}

/// What the output gives, by decoder.
#[derive(Debug, Clone, Copy, PartialEq)]
enum OutputFeatures {
    /// `predicted_class` (when the labels say how many classes there are) and `top1_confidence`.
    Classification { predicted_class: bool },
    /// `detections`, `mean_confidence`, `box_size`.
    Detection,
    /// `anomaly_score`.
    Anomaly,
    /// Nothing: raw tensors have no meaning the runtime knows, and recognised text no number to watch.
    Raw,
}

impl FeatureExtractor {
    /// The extractor for the model `manifest` describes; `labels` sizes the predicted-class feature. Without
    /// labels the class count is not in the manifest, so a classifier's predicted class is not watched.
    pub fn new(manifest: &Manifest, labels: &[String]) -> FeatureExtractor {
        let continuous =
            |side: FeatureSide| move |name: String| FeatureSpec { name, kind: FeatureKind::Continuous, side };
        let (input, names) = match &manifest.input {
            InputSpec::Image(spec) => {
                (InputFeatures::Image(Box::new(ImageFeatures::new(spec))), ImageFeatures::names(spec))
            }
            InputSpec::Sensor(spec) => (InputFeatures::Sensor(SensorFeatures::new(spec)), SensorFeatures::names(spec)),
        };
        let mut specs: Vec<FeatureSpec> = names.into_iter().map(continuous(FeatureSide::Input)).collect();
        let output = match &manifest.output {
            OutputSpec::Classification(_) => {
                let categories = u32::try_from(labels.len()).unwrap_or(u32::MAX);
                if categories > 0 {
                    let kind = FeatureKind::Categorical { categories };
                    specs.push(FeatureSpec { name: "predicted_class".to_owned(), kind, side: FeatureSide::Output });
                }
                OutputFeatures::Classification { predicted_class: categories > 0 }
            }
            OutputSpec::Centerface(_) | OutputSpec::Yolov8(_) | OutputSpec::Ssd(_) | OutputSpec::Dbnet(_) => {
                OutputFeatures::Detection
            }
            OutputSpec::Anomaly(_) => OutputFeatures::Anomaly,
            OutputSpec::Raw(_) | OutputSpec::Segmentation(_) | OutputSpec::Ctc(_) => OutputFeatures::Raw,
        };
        let output_names: &[&str] = match output {
            OutputFeatures::Classification { .. } => &["top1_confidence"],
            OutputFeatures::Detection => &["detections", "mean_confidence", "box_size"],
            OutputFeatures::Anomaly => &["anomaly_score"],
            OutputFeatures::Raw => &[],
        };
        specs.extend(output_names.iter().map(|name| (*name).to_owned()).map(continuous(FeatureSide::Output)));
        FeatureExtractor { specs, input, output }
    }

    /// The features, in the order [`FeatureExtractor::extract`] writes them.
    pub fn specs(&self) -> &[FeatureSpec] {
        &self.specs
    }

    /// Writes one value per spec into `out` (cleared first): the input features from `input` (the tensor the
    /// preprocessor wrote), then the output features from `output`. Every value is finite; the empty cases
    /// (no detections) have defined values.
    pub fn extract(&mut self, input: InputTensor<'_>, output: &Output, out: &mut Vec<f32>) {
        out.clear();
        match &mut self.input {
            InputFeatures::Image(features) => features.extract(input, out),
            InputFeatures::Sensor(features) => features.extract(input, out),
        }
        match (self.output, output) {
            (OutputFeatures::Classification { predicted_class }, Output::Classification { classes }) => {
                let best = classes.first();
                if predicted_class {
                    out.push(best.map_or(0.0, |class| class.index as f32));
                }
                out.push(best.map_or(0.0, |class| class.score));
            }
            (OutputFeatures::Detection, Output::Detection { detections }) => {
                let count = detections.len() as f32;
                let mean = |value: fn(&protocol::Detection) -> f32| {
                    if detections.is_empty() { 0.0 } else { detections.iter().map(value).sum::<f32>() / count }
                };
                out.extend([count, mean(|d| d.score), mean(|d| d.bbox.area().sqrt())]);
            }
            (OutputFeatures::Anomaly, Output::Anomaly { score, .. }) => out.push(*score),
            _ => {}
        }
        // A decoder that gave another kind of output than its spec (a bug upstream) leaves the vector short:
        // zeros keep it the length every window expects.
        out.resize(self.specs.len(), 0.0);
    }
}

#[cfg(test)]
#[path = "features_tests.rs"]
mod tests;
