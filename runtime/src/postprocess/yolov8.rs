//! YOLOv8 detection head: `[1, 4 + classes, anchors]`, rows 0..4 the box centre and size in input pixels, the
//! remaining rows per-class scores (sigmoid already applied in the graph).

use super::nms::{Candidate, Suppression, non_max_suppression};
use super::shape::{self, output_error};
use super::{class_index, label_for};
use crate::error::Result;
use crate::manifest::Yolov8Spec;
use crate::preprocess::Geometry;
use crate::tensor::Outputs;
use protocol::{BoundingBox, Detection, Output};

/// Rows of box geometry before the class scores.
const BOX_ROWS: usize = 4;

const EXPECTED: &str = "[1, 4 + classes, anchors] with at least one class";

/// Decodes a YOLOv8 head with reusable buffers.
#[derive(Debug)]
pub(super) struct Yolov8Decoder {
    spec: Yolov8Spec,
    /// Per anchor: the best class score and its class.
    best_scores: Vec<f32>,
    best_classes: Vec<u32>,
    candidates: Vec<Candidate>,
    kept: Vec<usize>,
}

impl Yolov8Decoder {
    pub(super) fn new(spec: &Yolov8Spec) -> Self {
        Yolov8Decoder {
            spec: spec.clone(),
            best_scores: Vec::new(),
            best_classes: Vec::new(),
            candidates: Vec::new(),
            kept: Vec::new(),
        }
    }

    /// The name of the tensor errors about the whole decoder refer to.
    pub(super) fn tensor(&self) -> &str {
        &self.spec.tensor
    }

    pub(super) fn decode(&mut self, outputs: &Outputs, labels: &[String], geometry: &Geometry) -> Result<Output> {
        let tensor = outputs.get(&self.spec.tensor)?;
        let (classes, anchors) = match shape::dims::<3>(tensor, EXPECTED)? {
            [1, rows, anchors] if rows > BOX_ROWS => (rows - BOX_ROWS, anchors),
            _ => return Err(shape::shape_error(tensor, EXPECTED)),
        };
        if u32::try_from(classes).is_err() {
            return Err(output_error(tensor.name(), format!("{classes} classes do not fit a u32 class index")));
        }
        if anchors == 0 {
            return Ok(Output::Detection { detections: Vec::new() });
        }
        let (boxes, scores) = tensor.data().split_at(BOX_ROWS * anchors);
        self.best_class_per_anchor(scores, anchors);
        self.collect_candidates(boxes, anchors);
        non_max_suppression(
            &self.candidates,
            self.spec.iou_threshold,
            self.spec.max_detections,
            Suppression::SameClass,
            &mut self.kept,
        );
        let detections = self
            .kept
            .iter()
            .map(|&i| {
                let candidate = &self.candidates[i];
                let class = candidate.class_index as usize;
                Ok(Detection {
                    class_index: class_index(tensor.name(), class)?,
                    label: label_for(labels, class),
                    score: candidate.score,
                    bbox: geometry.to_source_box(candidate.bbox),
                    landmarks: Vec::new(),
                    polygon: Vec::new(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Output::Detection { detections })
    }

    /// Walks the score rows one at a time (contiguous memory, unlike per-anchor columns). Strictly greater wins,
    /// so ties go to the lower class and NaN never replaces a score.
    fn best_class_per_anchor(&mut self, scores: &[f32], anchors: usize) {
        let mut rows = scores.chunks_exact(anchors);
        self.best_scores.clear();
        self.best_classes.clear();
        self.best_classes.resize(anchors, 0);
        if let Some(first) = rows.next() {
            self.best_scores.extend_from_slice(first);
        }
        for (class, row) in (1u32..).zip(rows) {
            for ((best, best_class), &score) in self.best_scores.iter_mut().zip(&mut self.best_classes).zip(row) {
                if score > *best {
                    *best = score;
                    *best_class = class;
                }
            }
        }
    }

    /// Anchors whose best score clears the threshold become candidates with corner boxes in input pixels.
    fn collect_candidates(&mut self, boxes: &[f32], anchors: usize) {
        self.candidates.clear();
        let (centre_x, rest) = boxes.split_at(anchors);
        let (centre_y, rest) = rest.split_at(anchors);
        let (width, height) = rest.split_at(anchors);
        let threshold = self.spec.score_threshold;
        // `>` is false for NaN, so a NaN score never passes.
        for (anchor, &score) in self.best_scores.iter().enumerate().filter(|&(_, &score)| score > threshold) {
            let (half_width, half_height) = (width[anchor] / 2.0, height[anchor] / 2.0);
            let bbox = BoundingBox {
                x_min: centre_x[anchor] - half_width,
                y_min: centre_y[anchor] - half_height,
                x_max: centre_x[anchor] + half_width,
                y_max: centre_y[anchor] + half_height,
            };
            self.candidates.push(Candidate { bbox, score, class_index: self.best_classes[anchor] });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postprocess::test_support::{assert_box_near, geometry};
    use crate::tensor::OutputTensor;

    /// Five anchors, three classes; each anchor is centre x, centre y, width, height, then three class scores.
    const ANCHORS: [[f32; 7]; 5] = [
        // Box (40, 40, 60, 60), class 0 at 0.9.
        [50.0, 50.0, 20.0, 20.0, 0.9, 0.1, 0.0],
        // Box (42, 40, 62, 60), class 0 at 0.8: IoU 360 / 440 with anchor 0, same class, so suppressed.
        [52.0, 50.0, 20.0, 20.0, 0.8, 0.0, 0.0],
        // Box (41, 40, 61, 60), class 1 at 0.85: overlaps anchor 0 but is another class, so kept.
        [51.0, 50.0, 20.0, 20.0, 0.1, 0.85, 0.0],
        // Box (130, 90, 170, 110), class 2 at 0.7.
        [150.0, 100.0, 40.0, 20.0, 0.0, 0.3, 0.7],
        // Box (8, 58, 12, 62); classes 0 and 1 tie at 0.3: the lower class wins.
        [10.0, 60.0, 4.0, 4.0, 0.3, 0.3, 0.1],
    ];

    fn outputs(anchors: &[[f32; 7]]) -> Outputs {
        // Transpose to the head's [1, 7, anchors] layout: one row per field.
        let data = (0..7).flat_map(|row| anchors.iter().map(move |anchor| anchor[row])).collect();
        Outputs { tensors: vec![OutputTensor::new("output0", vec![1, 7, anchors.len() as i64], data)] }
    }

    fn decoder(score_threshold: f32, max_detections: usize) -> Yolov8Decoder {
        Yolov8Decoder::new(&Yolov8Spec {
            tensor: "output0".to_owned(),
            score_threshold,
            iou_threshold: 0.45,
            max_detections,
        })
    }

    fn detections(output: Output) -> Vec<Detection> {
        let Output::Detection { detections } = output else { panic!("detection expected, got {output:?}") };
        detections
    }

    fn summary(found: &[Detection]) -> Vec<(u32, &str, f32)> {
        found.iter().map(|d| (d.class_index, d.label.as_str(), d.score)).collect()
    }

    #[test]
    fn keeps_the_best_class_per_anchor_and_suppresses_within_a_class() {
        let labels = vec!["person".to_owned(), "bicycle".to_owned()];
        let identity = geometry(640, 640, 1.0, 0.0, 0.0);
        let found = detections(decoder(0.25, 100).decode(&outputs(&ANCHORS), &labels, &identity).unwrap());
        assert_eq!(summary(&found), vec![(0, "person", 0.9), (1, "bicycle", 0.85), (2, "2", 0.7), (0, "person", 0.3)]);
        assert_box_near(&found[0].bbox, [40.0, 40.0, 60.0, 60.0]);
        assert_box_near(&found[1].bbox, [41.0, 40.0, 61.0, 60.0]);
        assert_box_near(&found[2].bbox, [130.0, 90.0, 170.0, 110.0]);
        assert_box_near(&found[3].bbox, [8.0, 58.0, 12.0, 62.0]);
        assert!(found.iter().all(|d| d.landmarks.is_empty()));
    }

    #[test]
    fn applies_the_threshold_strictly_and_the_cap() {
        let identity = geometry(640, 640, 1.0, 0.0, 0.0);
        let found = detections(decoder(0.3, 100).decode(&outputs(&ANCHORS), &[], &identity).unwrap());
        assert_eq!(summary(&found), vec![(0, "0", 0.9), (1, "1", 0.85), (2, "2", 0.7)]);
        let found = detections(decoder(0.25, 2).decode(&outputs(&ANCHORS), &[], &identity).unwrap());
        assert_eq!(summary(&found), vec![(0, "0", 0.9), (1, "1", 0.85)]);
    }

    #[test]
    fn maps_letterboxed_boxes_to_the_source_image() {
        // A 640 x 480 frame letterboxed into 320 x 320: scale 0.5, 40 rows of padding on top.
        let letterbox = geometry(640, 480, 0.5, 0.0, 40.0);
        let found = detections(decoder(0.25, 100).decode(&outputs(&ANCHORS), &[], &letterbox).unwrap());
        assert_eq!(found.len(), 4);
        // source = (model - offset) / scale
        assert_box_near(&found[0].bbox, [80.0, 0.0, 120.0, 40.0]);
        assert_box_near(&found[1].bbox, [82.0, 0.0, 122.0, 40.0]);
        assert_box_near(&found[2].bbox, [260.0, 100.0, 340.0, 140.0]);
        assert_box_near(&found[3].bbox, [16.0, 36.0, 24.0, 44.0]);
    }

    #[test]
    fn refuses_heads_without_classes_or_batch_one() {
        let identity = geometry(640, 640, 1.0, 0.0, 0.0);
        let mut decoder = decoder(0.25, 100);
        for shape in [vec![1i64, 4, 5], vec![2, 7, 5], vec![7, 5]] {
            let len = shape.iter().product::<i64>() as usize;
            let bad = Outputs { tensors: vec![OutputTensor::new("output0".to_owned(), shape.clone(), vec![0.0; len])] };
            let err = decoder.decode(&bad, &[], &identity).unwrap_err().to_string();
            assert!(err.contains("output0: expected shape [1, 4 + classes, anchors]"), "{err}");
            assert!(err.contains(&format!("got {shape:?}")), "{err}");
        }
        let empty = Outputs { tensors: vec![OutputTensor::new("output0", vec![1, 7, 0], vec![])] };
        assert!(detections(decoder.decode(&empty, &[], &identity).unwrap()).is_empty());
    }
}
