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
    /// An anomaly score and the verdict against the manifest's threshold (in the manifest's direction); with a
    /// label output, also the model's own label and whether it is the manifest's anomalous label.
    #[allow(missing_docs)]
    Anomaly { score: f32, threshold: f32, anomalous: bool, label: Option<i64>, label_anomalous: Option<bool> },
    /// Output tensors as they are.
    #[allow(missing_docs)]
    Raw { tensors: Vec<RawTensor> },
    /// Semantic segmentation: one mask per class present in the frame, in class order.
    #[allow(missing_docs)]
    Segmentation { masks: Vec<ClassMask> },
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
    /// Pose keypoints with their confidence, in the model's keypoint order (COCO: nose, eyes, ears, ...);
    /// empty for models without a pose head.
    #[serde(default)]
    pub keypoints: Vec<Keypoint>,
    /// The instance mask (YOLOv8-seg), within the box; `None` for models without masks.
    #[serde(default)]
    pub mask: Option<Mask>,
    /// What the cascade's second-stage models gave on this detection's crop; empty without a cascade, and for a
    /// detection whose label the cascade does not crop. Defaults to empty when absent, so that JSON written before
    /// it (the shipped references, older agents' payloads) still reads.
    #[serde(default)]
    pub stages: Vec<StageOutput>,
}

/// One second-stage model's result on a detection's crop (see `docs/bundle-format.md`, "Cascades").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageOutput {
    /// The second-stage model's name (its manifest's `name`).
    pub model: String,
    /// What became of the crop.
    pub result: StageResult,
}

/// What a second-stage model gave on one crop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageResult {
    /// The second model's decoded result on the crop.
    Output(Output),
    /// Not run: the frame had more detections to crop than the cascade's `max_crops`, and this one scored lower.
    Skipped,
    /// The second stage failed on this crop; the detection itself stands. `kind` is an error event's kind.
    #[allow(missing_docs)]
    Failed { kind: String, message: String },
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
    /// Its values, row-major, as f32, for floating-point tensors (float16 and float64 converted); empty otherwise.
    pub data: Vec<f32>,
    /// The element type of the graph output.
    pub dtype: TensorDtype,
    /// Its values, row-major, for integer and bool tensors (bool as 0 or 1); empty otherwise.
    pub integers: Vec<i64>,
}

/// The element type of an output tensor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum TensorDtype {
    #[default]
    Float32,
    Float16,
    Float64,
    Int8,
    Int16,
    Int32,
    Int64,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Bool,
}

impl TensorDtype {
    /// True for the floating-point types, whose values a [`RawTensor`] carries in `data`.
    pub fn is_float(self) -> bool {
        matches!(self, TensorDtype::Float32 | TensorDtype::Float16 | TensorDtype::Float64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(stages: Vec<StageOutput>) -> Detection {
        let bbox = BoundingBox { x_min: 1.0, y_min: 2.0, x_max: 3.0, y_max: 4.0 };
        Detection {
            class_index: 0,
            label: "face".into(),
            score: 0.9,
            bbox,
            landmarks: Vec::new(),
            polygon: Vec::new(),
            keypoints: Vec::new(),
            mask: None,
            stages,
        }
    }

    #[test]
    fn nested_stages_round_trip_and_json_without_them_reads() {
        let stage = |result| StageOutput { model: "id".into(), result };
        let classes = Output::Classification { classes: vec![ClassScore { index: 3, label: "x".into(), score: 0.5 }] };
        let failed = StageResult::Failed { kind: "empty_input".into(), message: "input is empty".into() };
        let output = Output::Detection {
            detections: vec![face(vec![stage(StageResult::Output(classes))]), face(vec![stage(StageResult::Skipped)])],
        };
        let nested = Output::Detection { detections: vec![face(vec![stage(failed)])] };
        for output in [output, nested] {
            let json = serde_json::to_string(&output).unwrap();
            assert_eq!(serde_json::from_str::<Output>(&json).unwrap(), output, "{json}");
            let bytes = postcard::to_allocvec(&output).unwrap();
            assert_eq!(postcard::from_bytes::<Output>(&bytes).unwrap(), output);
        }
        let skipped = serde_json::to_value(stage(StageResult::Skipped)).unwrap();
        assert_eq!(skipped, serde_json::json!({"model": "id", "result": "skipped"}));
        let old = r#"{"detection":{"detections":[{"class_index":0,"label":"face","score":0.9,
            "bbox":{"x_min":1.0,"y_min":2.0,"x_max":3.0,"y_max":4.0},"landmarks":[]}]}}"#;
        assert_eq!(serde_json::from_str::<Output>(old).unwrap(), Output::Detection { detections: vec![face(vec![])] });
    }
}
