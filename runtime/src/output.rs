//! What comes out of a pipeline: the decoded result of one inference. Serialised as it is into the agent's
//! prediction payloads (JSON and postcard), so fields are only ever added at the end and never renamed.

use serde::{Deserialize, Serialize};

/// The decoded result of one inference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    /// The best classes, best first.
    Classification { classes: Vec<ClassScore> },
    /// Objects found, best first, in source-image pixels.
    Detection { detections: Vec<Detection> },
    /// An anomaly score and the verdict against the manifest's threshold.
    Anomaly { score: f32, threshold: f32, anomalous: bool },
    /// Output tensors as they are.
    Raw { tensors: Vec<RawTensor> },
}

/// One class and its probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassScore {
    pub index: u32,
    pub label: String,
    pub score: f32,
}

/// One detected object. Coordinates are pixels of the source image (letterbox and resize undone).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub class_index: u32,
    pub label: String,
    pub score: f32,
    pub bbox: BoundingBox,
    /// Keypoints the model gives (CenterFace: eyes, nose, mouth corners); empty otherwise.
    pub landmarks: Vec<Point>,
}

/// An axis-aligned box, corners in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoundingBox {
    pub x_min: f32,
    pub y_min: f32,
    pub x_max: f32,
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
    pub x: f32,
    pub y: f32,
}

/// One output tensor, flattened, with its shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawTensor {
    pub name: String,
    pub shape: Vec<i64>,
    pub data: Vec<f32>,
}
