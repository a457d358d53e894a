//! SSD-style heads: one decoded box per row (`[1, boxes, 4]`) with either a score per class (`[1, boxes,
//! classes]`, e.g. Ultra-Light-Fast-Generic-Face-Detector) or, in post-NMS layouts (TensorFlow's detection API),
//! one class and one score per row and a count of valid rows. Both go through NMS here, which a post-NMS layout
//! passes unchanged unless the bundle's threshold is stricter than the model's.

use super::nms::{Candidate, Suppression, non_max_suppression};
use super::shape::{self, output_error};
use super::{InputSize, class_index, label_for};
use crate::error::Result;
use crate::manifest::{BoxFormat, SsdSpec};
use crate::preprocess::Geometry;
use crate::tensor::{OutputTensor, Outputs};
use protocol::{BoundingBox, Detection, Output};

/// Decodes an SSD-style head with reusable buffers.
#[derive(Debug)]
pub(super) struct SsdDecoder {
    spec: SsdSpec,
    candidates: Vec<Candidate>,
    kept: Vec<usize>,
}

impl SsdDecoder {
    pub(super) fn new(spec: &SsdSpec) -> Self {
        SsdDecoder { spec: spec.clone(), candidates: Vec::new(), kept: Vec::new() }
    }

    /// The name of the tensor errors about the whole decoder refer to.
    pub(super) fn tensor(&self) -> &str {
        &self.spec.boxes
    }

    pub(super) fn decode(
        &mut self,
        outputs: &Outputs,
        labels: &[String],
        geometry: &Geometry,
        input: Option<InputSize>,
    ) -> Result<Output> {
        let boxes = outputs.get(&self.spec.boxes)?;
        let rows = rows_of(boxes, 4, "[1, boxes, 4]")?;
        let scale = match (self.spec.normalized, input) {
            (false, _) => (1.0, 1.0),
            (true, Some(input)) => (input.width as f32, input.height as f32),
            (true, None) => return Err(output_error(boxes.name(), "normalized boxes need the model's input size")),
        };
        let scores = outputs.get(&self.spec.scores)?;
        self.candidates.clear();
        match &self.spec.classes {
            Some(classes) => {
                let classes = outputs.get(classes)?;
                let valid = self.valid_rows(outputs, rows)?;
                check_rows(scores, rows_of(scores, 1, "[1, boxes]")?, rows)?;
                check_rows(classes, rows_of(classes, 1, "[1, boxes]")?, rows)?;
                for row in 0..valid {
                    let class = self.class(classes, classes.data()[row])?;
                    self.push(boxes.data(), row, scale, scores.data()[row], class);
                }
            }
            None => {
                let columns = scores.shape().last().copied().unwrap_or(0).max(0) as usize;
                let expected = "[1, boxes, classes]";
                let score_rows = rows_of(scores, columns.max(1), expected)?;
                check_rows(scores, score_rows, rows)?;
                for (row, row_scores) in scores.data().chunks_exact(columns.max(1)).enumerate() {
                    if let Some((column, score)) = self.best_column(row_scores) {
                        let class = self.class(scores, column as f32)?;
                        self.push(boxes.data(), row, scale, score, class);
                    }
                }
            }
        }
        let suppression = if self.spec.agnostic_nms { Suppression::AnyClass } else { Suppression::SameClass };
        non_max_suppression(
            &self.candidates,
            self.spec.iou_threshold,
            self.spec.max_detections,
            suppression,
            &mut self.kept,
        );
        let detections = self
            .kept
            .iter()
            .map(|&i| {
                let candidate = &self.candidates[i];
                let class = candidate.class_index as usize;
                Ok(Detection {
                    class_index: class_index(boxes.name(), class)?,
                    label: label_for(labels, class),
                    score: candidate.score,
                    bbox: geometry.to_source_box(candidate.bbox),
                    landmarks: Vec::new(),
                    polygon: Vec::new(),
                    keypoints: Vec::new(),
                    mask: None,
                    stages: Vec::new(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Output::Detection { detections })
    }

    /// Rows the `count` output says are valid (all of them without one).
    fn valid_rows(&self, outputs: &Outputs, rows: usize) -> Result<usize> {
        let Some(name) = &self.spec.count else { return Ok(rows) };
        let count = outputs.get(name)?;
        match count.data() {
            // A count is a small non-negative whole number; the cast saturates anything else into range.
            [value] => Ok((*value as usize).min(rows)),
            _ => Err(shape::shape_error(count, "one value")),
        }
    }

    /// The best scoring column of a row that is not the background, if it clears the threshold. Strictly
    /// greater wins, so ties go to the lower column and NaN never passes.
    fn best_column(&self, scores: &[f32]) -> Option<(usize, f32)> {
        let background = self.spec.background_class.map(|class| class as usize);
        let mut best: Option<(usize, f32)> = None;
        for (column, &score) in scores.iter().enumerate() {
            if Some(column) != background && best.is_none_or(|(_, best_score)| score > best_score) {
                best = Some((column, score));
            }
        }
        best.filter(|&(_, score)| score > self.spec.score_threshold)
    }

    /// The class index of a column or class value after `class_offset`, refused when negative or fractional.
    fn class(&self, tensor: &OutputTensor, value: f32) -> Result<u32> {
        let class = f64::from(value) + f64::from(self.spec.class_offset);
        if class < 0.0 || class.fract() != 0.0 || class > f64::from(u32::MAX) {
            return Err(output_error(tensor.name(), format!("class {value} with class_offset gives no class index")));
        }
        Ok(class as u32)
    }

    /// A candidate from row `row` of `boxes` if its score clears the threshold.
    fn push(&mut self, boxes: &[f32], row: usize, (scale_x, scale_y): (f32, f32), score: f32, class_index: u32) {
        // `>` is false for NaN, so a NaN score never passes.
        if score <= self.spec.score_threshold || score.is_nan() {
            return;
        }
        let [a, b, c, d] = [boxes[4 * row], boxes[4 * row + 1], boxes[4 * row + 2], boxes[4 * row + 3]];
        let (x_min, y_min, x_max, y_max) = match self.spec.box_format {
            BoxFormat::Corners => (a, b, c, d),
            BoxFormat::CornersYx => (b, a, d, c),
            BoxFormat::Centre => (a - c / 2.0, b - d / 2.0, a + c / 2.0, b + d / 2.0),
        };
        let bbox = BoundingBox {
            x_min: x_min * scale_x,
            y_min: y_min * scale_y,
            x_max: x_max * scale_x,
            y_max: y_max * scale_y,
        };
        self.candidates.push(Candidate { bbox, score, class_index });
    }
}

/// The rows of a `[1, rows, width]` or `[rows, width]` tensor (also `[1, rows]` or `[rows]` when `width` is 1).
fn rows_of(tensor: &OutputTensor, width: usize, expected: &str) -> Result<usize> {
    let count = shape::element_count(tensor)?;
    let fits = match (tensor.shape(), width) {
        ([1, _, last] | [_, last], _) if *last as usize == width => true,
        ([1, _] | [_], 1) => true,
        _ => false,
    };
    if !fits {
        return Err(shape::shape_error(tensor, expected));
    }
    Ok(count / width)
}

/// `tensor` must have a row per box.
fn check_rows(tensor: &OutputTensor, rows: usize, boxes: usize) -> Result<()> {
    if rows == boxes { Ok(()) } else { Err(output_error(tensor.name(), format!("has {rows} rows for {boxes} boxes"))) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postprocess::test_support::{assert_box_near, geometry};

    fn spec() -> SsdSpec {
        SsdSpec {
            boxes: "boxes".to_owned(),
            scores: "scores".to_owned(),
            classes: None,
            count: None,
            box_format: BoxFormat::Corners,
            normalized: true,
            background_class: Some(0),
            class_offset: 0,
            score_threshold: 0.5,
            iou_threshold: 0.3,
            max_detections: 10,
            agnostic_nms: false,
        }
    }

    fn tensor(name: &str, shape: &[i64], data: Vec<f32>) -> OutputTensor {
        OutputTensor::new(name.to_owned(), shape.to_vec(), data)
    }

    fn detections(output: Output) -> Vec<Detection> {
        let Output::Detection { detections } = output else { panic!("detection expected, got {output:?}") };
        detections
    }

    const INPUT: Option<InputSize> = Some(InputSize { width: 320, height: 240 });

    #[test]
    fn decodes_normalized_corner_boxes_with_a_background_column() {
        // Ultra-Light-Fast-Generic-Face-Detector's layout: scores [1, N, 2] (background, face), boxes [1, N, 4].
        let boxes = vec![
            0.1, 0.1, 0.3, 0.5, // face 0.9
            0.11, 0.1, 0.31, 0.5, // the same face at 0.8: suppressed
            0.5, 0.5, 0.6, 0.6, // background wins: no face
            0.7, 0.2, 0.9, 0.4, // face 0.6
        ];
        let scores = vec![0.1, 0.9, 0.2, 0.8, 0.95, 0.05, 0.4, 0.6];
        let outputs =
            Outputs { tensors: vec![tensor("boxes", &[1, 4, 4], boxes), tensor("scores", &[1, 4, 2], scores)] };
        let labels = vec!["background".to_owned(), "face".to_owned()];
        // A 640 x 480 frame stretched to 320 x 240: scale 0.5.
        let found = detections(
            SsdDecoder::new(&spec()).decode(&outputs, &labels, &geometry(640, 480, 0.5, 0.0, 0.0), INPUT).unwrap(),
        );
        let summary: Vec<_> = found.iter().map(|d| (d.class_index, d.label.as_str(), d.score)).collect();
        assert_eq!(summary, vec![(1, "face", 0.9), (1, "face", 0.6)]);
        assert_box_near(&found[0].bbox, [64.0, 48.0, 192.0, 240.0]);
        assert_box_near(&found[1].bbox, [448.0, 96.0, 576.0, 192.0]);
    }

    #[test]
    fn decodes_the_post_nms_layout_with_a_count_and_class_offset() {
        // TensorFlow's detection API: boxes as y_min, x_min, y_max, x_max, classes counting from 1, a count.
        let spec = SsdSpec {
            classes: Some("classes".to_owned()),
            count: Some("count".to_owned()),
            box_format: BoxFormat::CornersYx,
            background_class: None,
            class_offset: -1,
            ..spec()
        };
        let outputs = Outputs {
            tensors: vec![
                tensor("boxes", &[1, 3, 4], vec![0.1, 0.2, 0.5, 0.6, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]),
                tensor("scores", &[1, 3], vec![0.9, 0.7, 0.99]),
                tensor("classes", &[1, 3], vec![1.0, 3.0, 1.0]),
                tensor("count", &[1], vec![2.0]),
            ],
        };
        let identity = geometry(320, 240, 1.0, 0.0, 0.0);
        let found = detections(SsdDecoder::new(&spec).decode(&outputs, &[], &identity, INPUT).unwrap());
        // The third row is past the count and ignored, however good its score.
        let summary: Vec<_> = found.iter().map(|d| (d.class_index, d.score)).collect();
        assert_eq!(summary, vec![(0, 0.9), (2, 0.7)]);
        assert_box_near(&found[0].bbox, [64.0, 24.0, 192.0, 120.0]);
        assert_box_near(&found[1].bbox, [0.0, 0.0, 320.0, 240.0]);
    }

    #[test]
    fn pixel_centre_boxes_and_agnostic_suppression() {
        let spec = SsdSpec {
            box_format: BoxFormat::Centre,
            normalized: false,
            background_class: None,
            agnostic_nms: true,
            ..spec()
        };
        let outputs = Outputs {
            tensors: vec![
                tensor("boxes", &[2, 4], vec![50.0, 50.0, 20.0, 20.0, 51.0, 50.0, 20.0, 20.0]),
                tensor("scores", &[2, 2], vec![0.9, 0.1, 0.1, 0.8]),
            ],
        };
        let identity = geometry(320, 240, 1.0, 0.0, 0.0);
        let found = detections(SsdDecoder::new(&spec).decode(&outputs, &[], &identity, None).unwrap());
        // Different classes, but agnostic NMS lets the better box suppress the other.
        assert_eq!(found.len(), 1);
        assert_box_near(&found[0].bbox, [40.0, 40.0, 60.0, 60.0]);
    }

    #[test]
    fn refuses_mismatched_rows_missing_input_size_and_bad_classes() {
        let identity = geometry(320, 240, 1.0, 0.0, 0.0);
        let outputs = Outputs {
            tensors: vec![tensor("boxes", &[1, 2, 4], vec![0.0; 8]), tensor("scores", &[1, 3, 2], vec![0.0; 6])],
        };
        let err = SsdDecoder::new(&spec()).decode(&outputs, &[], &identity, INPUT).unwrap_err().to_string();
        assert!(err.contains("scores: has 3 rows for 2 boxes"), "{err}");
        let err = SsdDecoder::new(&spec()).decode(&outputs, &[], &identity, None).unwrap_err().to_string();
        assert!(err.contains("input size"), "{err}");
        let bad_boxes = Outputs { tensors: vec![tensor("boxes", &[1, 2, 3], vec![0.0; 6])] };
        let err = SsdDecoder::new(&spec()).decode(&bad_boxes, &[], &identity, INPUT).unwrap_err().to_string();
        assert!(err.contains("expected shape [1, boxes, 4]"), "{err}");
        let spec = SsdSpec { classes: Some("classes".to_owned()), class_offset: -1, ..spec() };
        let outputs = Outputs {
            tensors: vec![
                tensor("boxes", &[1, 1, 4], vec![0.0; 4]),
                tensor("scores", &[1, 1], vec![0.9]),
                tensor("classes", &[1, 1], vec![0.0]),
            ],
        };
        let err = SsdDecoder::new(&spec).decode(&outputs, &[], &identity, INPUT).unwrap_err().to_string();
        assert!(err.contains("class 0 with class_offset"), "{err}");
    }
}
