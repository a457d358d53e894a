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
    /// Semantic segmentation: one mask per class present in the frame, in class order.
    #[allow(missing_docs)]
    Segmentation { masks: Vec<ClassMask> },
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
    /// Pose keypoints with their confidence, in the model's keypoint order (COCO: nose, eyes, ears, ...);
    /// empty for models without a pose head.
    pub keypoints: Vec<Keypoint>,
    /// The instance mask (YOLOv8-seg), within the box; `None` for models without masks.
    pub mask: Option<Mask>,
}

/// A pose keypoint in source-image pixels (not clamped: a hidden joint may lie outside the image).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Keypoint {
    /// Horizontal, from the left.
    pub x: f32,
    /// Vertical, from the top.
    pub y: f32,
    /// The model's confidence that the keypoint is present and visible, 0..=1.
    pub score: f32,
}

/// A binary mask over a rectangle of the source image, run-length encoded.
///
/// The rectangle `x, y, width * stride, height * stride` (source pixels, clipped to the image) is cut into
/// `width` x `height` square cells of `stride` pixels (1: one cell per pixel). `counts` are row-major run
/// lengths over the cells, alternating outside and inside the mask and starting with outside (so a mask whose
/// first cell is inside starts with 0); they add up to `width * height`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mask {
    /// Left edge of the rectangle, source pixels.
    pub x: u32,
    /// Top edge of the rectangle, source pixels.
    pub y: u32,
    /// Cells per row.
    pub width: u32,
    /// Rows of cells.
    pub height: u32,
    /// Source pixels per cell side: 1, or a power of two when the mask at full resolution would have more runs
    /// than the bundle allows.
    pub stride: u32,
    /// Run lengths, outside first.
    pub counts: Vec<u32>,
}

/// The mask of one class in a semantic segmentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMask {
    /// Class position in the model's output.
    pub class_index: u32,
    /// Class label.
    pub label: String,
    /// The pixels of this class.
    pub mask: Mask,
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
