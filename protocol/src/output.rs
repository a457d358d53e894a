//! What comes out of a pipeline: the decoded result of one inference. Serialised as it is into the agent's
//! prediction payloads (JSON and postcard), so fields are only ever added at the end and never renamed.

use serde::{Deserialize, Serialize};

/// The decoded result of one inference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    /// The best classes, best first.
    #[allow(missing_docs)]
    Classification { classes: Vec<ClassScore> },
    /// Objects found, best first, in source-image pixels.
    #[allow(missing_docs)]
    Detection { detections: Vec<Detection> },
    /// An anomaly score and the verdict against the manifest's threshold.
    #[allow(missing_docs)]
    Anomaly { score: f32, threshold: f32, anomalous: bool },
    /// Output tensors as they are.
    #[allow(missing_docs)]
    Raw { tensors: Vec<RawTensor> },
    /// Text read by a recogniser (CTC): the characters, and the mean probability of the ones kept (0 when none).
    #[allow(missing_docs)]
    Text { text: String, score: f32 },
}

/// One class and its probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassScore {
    /// Position in the model's output.
    pub index: u32,
    /// The label at that position, or the index as text when the bundle has no labels.
    pub label: String,
    /// Probability, 0..=1.
    pub score: f32,
}

/// One detected object. Coordinates are pixels of the source image (letterbox and resize undone).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// Class position in the model's output.
    pub class_index: u32,
    /// Class label.
    pub label: String,
    /// Confidence, 0..=1.
    pub score: f32,
    /// The box in source-image pixels.
    pub bbox: BoundingBox,
    /// Keypoints the model gives (CenterFace: eyes, nose, mouth corners); empty otherwise.
    pub landmarks: Vec<Point>,
    /// A rotated box's 4 corners in source-image pixels, clockwise from the top left (text detectors); empty for
    /// axis-aligned detectors, whose box is `bbox`. Defaults to empty, so that predictions written before it read.
    #[serde(default)]
    pub polygon: Vec<Point>,
}

/// An axis-aligned box, corners in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoundingBox {
    /// Left edge.
    pub x_min: f32,
    /// Top edge.
    pub y_min: f32,
    /// Right edge.
    pub x_max: f32,
    /// Bottom edge.
    pub y_max: f32,
}

impl BoundingBox {
    /// Area, zero for an empty or inverted box.
    pub fn area(&self) -> f32 {
        (self.x_max - self.x_min).max(0.0) * (self.y_max - self.y_min).max(0.0)
    }

    /// Intersection over union with `other`, 0 when either is empty.
    pub fn iou(&self, other: &BoundingBox) -> f32 {
        let w = (self.x_max.min(other.x_max) - self.x_min.max(other.x_min)).max(0.0);
        let h = (self.y_max.min(other.y_max) - self.y_min.max(other.y_min)).max(0.0);
        let intersection = w * h;
        let union = self.area() + other.area() - intersection;
        if union <= 0.0 { 0.0 } else { intersection / union }
    }
}

/// A point in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Horizontal, from the left.
    pub x: f32,
    /// Vertical, from the top.
    pub y: f32,
}

/// One output tensor, flattened, with its shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawTensor {
    /// The graph output's name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<i64>,
    /// Its values, row-major, as f32.
    pub data: Vec<f32>,
}
