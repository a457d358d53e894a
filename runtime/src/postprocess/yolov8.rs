//! YOLOv8 / YOLO11 detection head (the two share it): `[1, 4 + classes + extra, anchors]`, rows 0..4 the box
//! centre and size in input pixels, then per-class scores (sigmoid already applied in the graph), then the extra
//! rows of pose heads (x, y, score per keypoint, in input pixels) or segmentation heads (mask coefficients for
//! the prototype masks of a second output).

use super::mask::{self, PixelRect};
use super::nms::{Candidate, Suppression, non_max_suppression};
use super::shape::{self, output_error};
use super::{InputSize, class_index, label_for};
use crate::error::Result;
use crate::manifest::Yolov8Spec;
use crate::preprocess::Geometry;
use crate::tensor::{OutputTensor, Outputs};
use protocol::{BoundingBox, Detection, Keypoint, Mask, Output, Point};

/// Rows of box geometry before the class scores.
const BOX_ROWS: usize = 4;

const EXPECTED: &str = "[1, 4 + classes + extra rows, anchors] with at least one class";

const PROTOS_EXPECTED: &str = "[1, coefficients, h, w]";

/// Decodes a YOLOv8 head with reusable buffers.
#[derive(Debug)]
pub(super) struct Yolov8Decoder {
    spec: Yolov8Spec,
    /// Per anchor: the best class score and its class.
    best_scores: Vec<f32>,
    best_classes: Vec<u32>,
    candidates: Vec<Candidate>,
    /// The anchor of each candidate, for its keypoints and mask coefficients.
    candidate_anchors: Vec<usize>,
    kept: Vec<usize>,
    /// One instance's mask logits over the prototype cells of its box.
    instance_logits: Vec<f32>,
}

impl Yolov8Decoder {
    pub(super) fn new(spec: &Yolov8Spec) -> Self {
        Yolov8Decoder {
            spec: spec.clone(),
            best_scores: Vec::new(),
            best_classes: Vec::new(),
            candidates: Vec::new(),
            candidate_anchors: Vec::new(),
            kept: Vec::new(),
            instance_logits: Vec::new(),
        }
    }

    /// The name of the tensor errors about the whole decoder refer to.
    pub(super) fn tensor(&self) -> &str {
        &self.spec.tensor
    }

    pub(super) fn decode(
        &mut self,
        outputs: &Outputs,
        labels: &[String],
        geometry: &Geometry,
        input: Option<InputSize>,
    ) -> Result<Output> {
        let tensor = outputs.get(&self.spec.tensor)?;
        let protos = match &self.spec.protos {
            Some(name) => Some(Protos::new(outputs.get(name)?, input)?),
            None => None,
        };
        let extra_rows = 3 * self.spec.keypoints + protos.as_ref().map_or(0, |p| p.coefficients);
        let (classes, anchors) = match shape::dims::<3>(tensor, EXPECTED)? {
            [1, rows, anchors] if rows > BOX_ROWS + extra_rows => (rows - BOX_ROWS - extra_rows, anchors),
            _ => return Err(shape::shape_error(tensor, EXPECTED)),
        };
        if u32::try_from(classes).is_err() {
            return Err(output_error(tensor.name(), format!("{classes} classes do not fit a u32 class index")));
        }
        if anchors == 0 {
            return Ok(Output::Detection { detections: Vec::new() });
        }
        let (boxes, rest) = tensor.data().split_at(BOX_ROWS * anchors);
        let (scores, extra) = rest.split_at(classes * anchors);
        self.best_class_per_anchor(scores, anchors);
        self.collect_candidates(boxes, anchors);
        let suppression = if self.spec.agnostic_nms { Suppression::AnyClass } else { Suppression::SameClass };
        non_max_suppression(
            &self.candidates,
            self.spec.iou_threshold,
            self.spec.max_detections,
            suppression,
            &mut self.kept,
        );
        let mut detections = Vec::with_capacity(self.kept.len());
        for rank in 0..self.kept.len() {
            let i = self.kept[rank];
            let (candidate, anchor) = (self.candidates[i], self.candidate_anchors[i]);
            let class = candidate.class_index as usize;
            let bbox = geometry.to_source_box(candidate.bbox);
            let keypoints = self.keypoints(extra, anchors, anchor, geometry);
            let mask =
                protos.as_ref().map(|protos| self.instance_mask(protos, extra, anchors, anchor, &bbox, geometry));
            detections.push(Detection {
                class_index: class_index(tensor.name(), class)?,
                label: label_for(labels, class),
                score: candidate.score,
                bbox,
                landmarks: Vec::new(),
                polygon: Vec::new(),
                keypoints,
                mask,
                stages: Vec::new(),
            });
        }
        Ok(Output::Detection { detections })
    }

    /// The pose keypoints of `anchor` in source pixels: rows of x, y, score per keypoint after the classes.
    fn keypoints(&self, extra: &[f32], anchors: usize, anchor: usize, geometry: &Geometry) -> Vec<Keypoint> {
        (0..self.spec.keypoints)
            .map(|k| {
                let row = |field: usize| extra[(3 * k + field) * anchors + anchor];
                let point = geometry.to_source(Point { x: row(0), y: row(1) });
                Keypoint { x: point.x, y: point.y, score: row(2) }
            })
            .collect()
    }

    /// The instance mask of `anchor` within its source box `bbox`: the coefficients (the head's last rows)
    /// combine the prototypes over the box's prototype cells, and a source pixel is inside where the bilinear
    /// logit is above 0 (sigmoid above 0.5), as ultralytics crops and upsamples.
    fn instance_mask(
        &mut self,
        protos: &Protos<'_>,
        extra: &[f32],
        anchors: usize,
        anchor: usize,
        bbox: &BoundingBox,
        geometry: &Geometry,
    ) -> Mask {
        let first_row = 3 * self.spec.keypoints;
        let coefficient = |p: usize| extra[(first_row + p) * anchors + anchor];
        let cells = protos.width * protos.height;
        self.instance_logits.clear();
        self.instance_logits.resize(cells, 0.0);
        for (p, prototype) in protos.data.chunks_exact(cells).enumerate() {
            let weight = coefficient(p);
            for (logit, value) in self.instance_logits.iter_mut().zip(prototype) {
                *logit += weight * value;
            }
        }
        let logits = &self.instance_logits;
        mask::encode(PixelRect::around(bbox), self.spec.max_mask_runs, |x, y| {
            // Cropped to the box, as ultralytics does (and cells past it at a stride above 1 stay outside).
            let in_box = x >= bbox.x_min && x < bbox.x_max && y >= bbox.y_min && y < bbox.y_max;
            let model = geometry.to_model(Point { x, y });
            let (cell_x, cell_y) = (model.x * protos.cells_per_input_x, model.y * protos.cells_per_input_y);
            in_box && mask::bilinear(logits, protos.width, protos.height, cell_x, cell_y) > 0.0
        })
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
        self.candidate_anchors.clear();
        for (anchor, &score) in self.best_scores.iter().enumerate().filter(|&(_, &score)| score > threshold) {
            let (half_width, half_height) = (width[anchor] / 2.0, height[anchor] / 2.0);
            let bbox = BoundingBox {
                x_min: centre_x[anchor] - half_width,
                y_min: centre_y[anchor] - half_height,
                x_max: centre_x[anchor] + half_width,
                y_max: centre_y[anchor] + half_height,
            };
            self.candidates.push(Candidate { bbox, score, class_index: self.best_classes[anchor] });
            self.candidate_anchors.push(anchor);
        }
    }
}

/// The prototype masks of a segmentation head and how their grid relates to the model input.
struct Protos<'a> {
    data: &'a [f32],
    coefficients: usize,
    width: usize,
    height: usize,
    /// Prototype cells per input pixel (1/4 for YOLOv8-seg).
    cells_per_input_x: f32,
    cells_per_input_y: f32,
}

impl<'a> Protos<'a> {
    fn new(tensor: &'a OutputTensor, input: Option<InputSize>) -> Result<Protos<'a>> {
        let [coefficients, height, width] = match shape::dims::<4>(tensor, PROTOS_EXPECTED)? {
            [1, c, h, w] if c > 0 && h > 0 && w > 0 => [c, h, w],
            _ => return Err(shape::shape_error(tensor, PROTOS_EXPECTED)),
        };
        let input = input.ok_or_else(|| output_error(tensor.name(), "masks need the model's input size"))?;
        Ok(Protos {
            data: tensor.data(),
            coefficients,
            width,
            height,
            cells_per_input_x: width as f32 / input.width as f32,
            cells_per_input_y: height as f32 / input.height as f32,
        })
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
            keypoints: 0,
            protos: None,
            agnostic_nms: false,
            max_mask_runs: 4096,
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
        let found = detections(decoder(0.25, 100).decode(&outputs(&ANCHORS), &labels, &identity, None).unwrap());
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
        let found = detections(decoder(0.3, 100).decode(&outputs(&ANCHORS), &[], &identity, None).unwrap());
        assert_eq!(summary(&found), vec![(0, "0", 0.9), (1, "1", 0.85), (2, "2", 0.7)]);
        let found = detections(decoder(0.25, 2).decode(&outputs(&ANCHORS), &[], &identity, None).unwrap());
        assert_eq!(summary(&found), vec![(0, "0", 0.9), (1, "1", 0.85)]);
    }

    #[test]
    fn maps_letterboxed_boxes_to_the_source_image() {
        // A 640 x 480 frame letterboxed into 320 x 320: scale 0.5, 40 rows of padding on top.
        let letterbox = geometry(640, 480, 0.5, 0.0, 40.0);
        let found = detections(decoder(0.25, 100).decode(&outputs(&ANCHORS), &[], &letterbox, None).unwrap());
        assert_eq!(found.len(), 4);
        // source = (model - offset) / scale
        assert_box_near(&found[0].bbox, [80.0, 0.0, 120.0, 40.0]);
        assert_box_near(&found[1].bbox, [82.0, 0.0, 122.0, 40.0]);
        assert_box_near(&found[2].bbox, [260.0, 100.0, 340.0, 140.0]);
        assert_box_near(&found[3].bbox, [16.0, 36.0, 24.0, 44.0]);
    }

    /// One class, two anchors of a pose head with two keypoints: rows cx, cy, w, h, score, then x, y, score per
    /// keypoint.
    fn pose_outputs() -> Outputs {
        let anchors: [[f32; 11]; 2] = [
            [50.0, 50.0, 20.0, 40.0, 0.9, 45.0, 35.0, 0.8, 55.0, 65.0, 0.1],
            [150.0, 50.0, 20.0, 20.0, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        ];
        let data = (0..11).flat_map(|row| anchors.iter().map(move |anchor| anchor[row])).collect();
        Outputs { tensors: vec![OutputTensor::new("output0", vec![1, 11, 2], data)] }
    }

    #[test]
    fn pose_heads_give_keypoints_in_source_pixels() {
        let mut decoder = Yolov8Decoder::new(&Yolov8Spec { keypoints: 2, ..decoder(0.25, 10).spec });
        // Letterboxed: scale 0.5, 40 rows of padding on top.
        let found =
            detections(decoder.decode(&pose_outputs(), &[], &geometry(640, 480, 0.5, 0.0, 40.0), None).unwrap());
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].class_index, found[0].score), (0, 0.9));
        assert_box_near(&found[0].bbox, [80.0, 0.0, 120.0, 60.0]);
        let keypoints: Vec<[f32; 3]> = found[0].keypoints.iter().map(|k| [k.x, k.y, k.score]).collect();
        assert_eq!(keypoints, vec![[90.0, -10.0, 0.8], [110.0, 50.0, 0.1]], "not clamped: a joint may be outside");
        assert!(found[0].mask.is_none());
    }

    #[test]
    fn segmentation_heads_give_instance_masks_within_the_box() {
        // One class and one anchor with two mask coefficients; 2 prototypes on a 4 x 4 grid over an 8 x 8 input
        // (one prototype cell per 2 x 2 input pixels). Prototype 0 is 1 on the bottom-left quarter and -1
        // elsewhere, prototype 1 is 5 everywhere; coefficients (1, 0) leave prototype 0's sign.
        let head = vec![4.0, 4.0, 8.0, 8.0, 0.9, 1.0, 0.0]; // a box over the whole input
        let left: Vec<f32> = (0..16).map(|i| if i % 4 < 2 && i >= 8 { 1.0 } else { -1.0 }).collect();
        let top = vec![5.0; 16];
        let head = || OutputTensor::new("output0", vec![1, 7, 1], head.clone());
        let outputs =
            Outputs { tensors: vec![head(), OutputTensor::new("protos", vec![1, 2, 4, 4], [left, top].concat())] };
        let spec = Yolov8Spec { protos: Some("protos".to_owned()), ..decoder(0.25, 10).spec };
        let input = Some(InputSize { width: 8, height: 8 });
        // A 16 x 16 source stretched onto the 8 x 8 input.
        let found = detections(
            Yolov8Decoder::new(&spec).decode(&outputs, &[], &geometry(16, 16, 0.5, 0.0, 0.0), input).unwrap(),
        );
        assert_eq!(found.len(), 1);
        let mask = found[0].mask.as_ref().expect("a mask");
        assert_eq!((mask.x, mask.y, mask.width, mask.height, mask.stride), (0, 0, 16, 16, 1));
        let cells = crate::postprocess::mask::decode(mask);
        let inside = |x: usize, y: usize| cells[y * 16 + x];
        assert!(inside(0, 15) && inside(3, 12) && !inside(12, 12) && !inside(3, 3) && !inside(12, 3));
        // The bilinear zero crossing lies halfway between cell centres, between source pixels 7 and 8 on both axes,
        // and rounds off the quarter's inner corner: 63 of its 64 pixels.
        assert_eq!(cells.iter().filter(|&&c| c).count(), 63);
        assert!(!inside(7, 8) && inside(6, 8) && inside(7, 9));
        // Without the protos output the decoder names what it misses.
        let err = Yolov8Decoder::new(&spec)
            .decode(&Outputs { tensors: vec![head()] }, &[], &geometry(16, 16, 0.5, 0.0, 0.0), input)
            .unwrap_err();
        assert!(err.to_string().contains("protos"), "{err}");
    }

    #[test]
    fn refuses_heads_without_classes_or_batch_one() {
        let identity = geometry(640, 640, 1.0, 0.0, 0.0);
        let mut decoder = decoder(0.25, 100);
        for shape in [vec![1i64, 4, 5], vec![2, 7, 5], vec![7, 5]] {
            let len = shape.iter().product::<i64>() as usize;
            let bad = Outputs { tensors: vec![OutputTensor::new("output0".to_owned(), shape.clone(), vec![0.0; len])] };
            let err = decoder.decode(&bad, &[], &identity, None).unwrap_err().to_string();
            assert!(err.contains(&format!("output0: expected shape {EXPECTED}")), "{err}");
            assert!(err.contains(&format!("got {shape:?}")), "{err}");
        }
        let empty = Outputs { tensors: vec![OutputTensor::new("output0", vec![1, 7, 0], vec![])] };
        assert!(detections(decoder.decode(&empty, &[], &identity, None).unwrap()).is_empty());
    }
}
