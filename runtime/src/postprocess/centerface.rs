//! CenterFace: a face-centre heat map at 1/4 of the input resolution, with per-cell box size (log scale), centre
//! offset and five landmarks relative to the box corner.

use super::nms::{Candidate, Suppression, non_max_suppression};
use super::shape::{self, output_error};
use crate::error::Result;
use crate::manifest::CenterFaceSpec;
use crate::preprocess::Geometry;
use crate::tensor::{OutputTensor, Outputs};
use protocol::{BoundingBox, Detection, Output, Point};

/// Input pixels per heat-map cell.
const STRIDE: f32 = 4.0;

/// Eyes, nose, mouth corners.
const LANDMARKS: usize = 5;

/// The label when the bundle gives none.
const FACE: &str = "face";

/// Decodes CenterFace outputs with reusable buffers.
#[derive(Debug)]
pub(super) struct CenterFaceDecoder {
    spec: CenterFaceSpec,
    candidates: Vec<Candidate>,
    /// Landmarks of `candidates[i]`, in input pixels.
    landmarks: Vec<[Point; LANDMARKS]>,
    kept: Vec<usize>,
}

/// The four outputs of one run, shape-checked.
struct Maps<'a> {
    heat: &'a [f32],
    scale: &'a [f32],
    offset: &'a [f32],
    landmarks: &'a [f32],
    height: usize,
    width: usize,
}

impl CenterFaceDecoder {
    pub(super) fn new(spec: &CenterFaceSpec) -> Self {
        CenterFaceDecoder { spec: spec.clone(), candidates: Vec::new(), landmarks: Vec::new(), kept: Vec::new() }
    }

    /// The name of the tensor errors about the whole decoder refer to.
    pub(super) fn tensor(&self) -> &str {
        &self.spec.heatmap
    }

    pub(super) fn decode(&mut self, outputs: &Outputs, labels: &[String], geometry: &Geometry) -> Result<Output> {
        let maps = self.maps(outputs)?;
        self.collect_candidates(&maps);
        non_max_suppression(
            &self.candidates,
            self.spec.iou_threshold,
            self.spec.max_detections,
            Suppression::AnyClass,
            &mut self.kept,
        );
        let label = labels.first().map_or(FACE, String::as_str);
        let detections = self
            .kept
            .iter()
            .map(|&i| Detection {
                class_index: 0,
                label: label.to_owned(),
                score: self.candidates[i].score,
                bbox: geometry.to_source_box(self.candidates[i].bbox),
                landmarks: self.landmarks[i].iter().map(|&p| geometry.to_source(p)).collect(),
                polygon: Vec::new(),
                keypoints: Vec::new(),
                mask: None,
                stages: Vec::new(),
            })
            .collect();
        Ok(Output::Detection { detections })
    }

    /// Looks the four outputs up and checks they share one `h` x `w` grid.
    fn maps<'a>(&self, outputs: &'a Outputs) -> Result<Maps<'a>> {
        let heat = outputs.get(&self.spec.heatmap)?;
        let [height, width] = match shape::dims::<4>(heat, "[1, 1, h, w]")? {
            [1, 1, height, width] => [height, width],
            _ => return Err(shape::shape_error(heat, "[1, 1, h, w]")),
        };
        let scale = grid_tensor(outputs, &self.spec.scale, 2, height, width)?;
        let offset = grid_tensor(outputs, &self.spec.offset, 2, height, width)?;
        let landmarks = grid_tensor(outputs, &self.spec.landmarks, 2 * LANDMARKS, height, width)?;
        if height == 0 || width == 0 {
            return Err(output_error(heat.name(), format!("the heat map is empty ({:?})", heat.shape())));
        }
        Ok(Maps {
            heat: heat.data(),
            scale: scale.data(),
            offset: offset.data(),
            landmarks: landmarks.data(),
            height,
            width,
        })
    }

    /// Every cell hotter than the threshold becomes a candidate box in input pixels.
    fn collect_candidates(&mut self, maps: &Maps<'_>) {
        self.candidates.clear();
        self.landmarks.clear();
        let plane = maps.height * maps.width;
        let input_width = maps.width as f32 * STRIDE;
        let input_height = maps.height as f32 * STRIDE;
        let threshold = self.spec.score_threshold;
        // `>` is false for NaN, so NaN heat never passes.
        for (cell, &heat) in maps.heat.iter().enumerate().filter(|&(_, &heat)| heat > threshold) {
            let row = (cell / maps.width) as f32;
            let column = (cell % maps.width) as f32;
            let box_height = maps.scale[cell].exp() * STRIDE;
            let box_width = maps.scale[plane + cell].exp() * STRIDE;
            let offset_y = maps.offset[cell];
            let offset_x = maps.offset[plane + cell];
            let x_min = ((column + offset_x + 0.5) * STRIDE - box_width / 2.0).max(0.0).min(input_width);
            let y_min = ((row + offset_y + 0.5) * STRIDE - box_height / 2.0).max(0.0).min(input_height);
            let bbox = BoundingBox {
                x_min,
                y_min,
                x_max: (x_min + box_width).min(input_width),
                y_max: (y_min + box_height).min(input_height),
            };
            // Channel 2k holds landmark k's y, 2k + 1 its x, both as a share of the box size from its corner.
            let landmarks = std::array::from_fn(|k| Point {
                x: maps.landmarks[(2 * k + 1) * plane + cell] * box_width + x_min,
                y: maps.landmarks[2 * k * plane + cell] * box_height + y_min,
            });
            self.candidates.push(Candidate { bbox, score: heat, class_index: 0 });
            self.landmarks.push(landmarks);
        }
    }
}

/// The output `name`, which must be `[1, channels, height, width]`.
fn grid_tensor<'a>(
    outputs: &'a Outputs,
    name: &str,
    channels: usize,
    height: usize,
    width: usize,
) -> Result<&'a OutputTensor> {
    let tensor = outputs.get(name)?;
    let wanted = [1, channels, height, width];
    let matches = tensor.shape().len() == wanted.len()
        && tensor.shape().iter().zip(wanted).all(|(&got, want)| usize::try_from(got) == Ok(want));
    if !matches {
        // Formatted only on failure: the check runs every frame.
        return Err(shape::shape_error(tensor, &format!("{wanted:?} (on the heat map's grid)")));
    }
    shape::element_count(tensor)?;
    Ok(tensor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postprocess::test_support::{assert_box_near, assert_point_near, geometry};

    /// A 320 x 320 input: an 80 x 80 grid.
    const GRID: usize = 80;
    const PLANE: usize = GRID * GRID;

    /// One hot cell and what its other maps hold there.
    struct Peak {
        row: usize,
        column: usize,
        heat: f32,
        /// Box height and width in input pixels (the maps hold their log over the stride).
        size: [f32; 2],
        /// Centre offset in cells, y then x.
        offset: [f32; 2],
        /// Every landmark's position as a share of the box, x then y (landmark k adds k/8 to the y share).
        landmark: [f32; 2],
    }

    fn outputs(peaks: &[Peak]) -> Outputs {
        let mut heat = vec![0.0; PLANE];
        let mut scale = vec![0.0; 2 * PLANE];
        let mut offset = vec![0.0; 2 * PLANE];
        let mut landmarks = vec![0.0; 10 * PLANE];
        // At the threshold, so not above it: must not come out.
        heat[50 * GRID + 50] = 0.5;
        heat[60 * GRID + 10] = 0.3;
        for peak in peaks {
            let cell = peak.row * GRID + peak.column;
            heat[cell] = peak.heat;
            scale[cell] = (peak.size[0] / 4.0).ln();
            scale[PLANE + cell] = (peak.size[1] / 4.0).ln();
            offset[cell] = peak.offset[0];
            offset[PLANE + cell] = peak.offset[1];
            for k in 0..5 {
                landmarks[2 * k * PLANE + cell] = peak.landmark[1] + k as f32 / 8.0;
                landmarks[(2 * k + 1) * PLANE + cell] = peak.landmark[0];
            }
        }
        let grid = GRID as i64;
        let tensor =
            |name: &str, channels: i64, data: Vec<f32>| OutputTensor::new(name, vec![1, channels, grid, grid], data);
        Outputs {
            tensors: vec![
                tensor("heat", 1, heat),
                tensor("scale", 2, scale),
                tensor("offset", 2, offset),
                tensor("lms", 10, landmarks),
            ],
        }
    }

    fn spec(max_detections: usize) -> CenterFaceSpec {
        CenterFaceSpec {
            heatmap: "heat".to_owned(),
            scale: "scale".to_owned(),
            offset: "offset".to_owned(),
            landmarks: "lms".to_owned(),
            score_threshold: 0.5,
            iou_threshold: 0.3,
            max_detections,
        }
    }

    /// Box (108, 67, 132, 99): x_min = (30 - 0.5 + 0.5) * 4 - 24 / 2, y_min = (20 + 0.25 + 0.5) * 4 - 32 / 2.
    /// Landmarks: x = 0.25 * 24 + 108 = 114, y = (k / 8) * 32 + 67 = 67 + 4k.
    const CENTRAL: Peak =
        Peak { row: 20, column: 30, heat: 0.9, size: [32.0, 24.0], offset: [0.25, -0.5], landmark: [0.25, 0.0] };

    /// Box (110, 67, 134, 99): IoU 704 / 832 with CENTRAL, so suppressed at 0.3.
    const OVERLAPPING: Peak =
        Peak { row: 20, column: 31, heat: 0.8, size: [32.0, 24.0], offset: [0.25, -1.0], landmark: [0.25, 0.0] };

    /// x_min = max(0, 0.5 * 4 - 16 / 2) = 0, y_min = 30.5 * 4 - 2 = 120: box (0, 120, 16, 124).
    /// Landmarks: x = 0.5 * 16 = 8, y = (1 + k / 8) * 4 + 120 = 124 + k / 2.
    const LEFT_EDGE: Peak =
        Peak { row: 30, column: 0, heat: 0.6, size: [4.0, 16.0], offset: [0.0, 0.0], landmark: [0.5, 1.0] };

    /// Centre (318 + 2, 318 + 2): box (318, 318, min(322, 320), min(322, 320)).
    const BOTTOM_RIGHT: Peak =
        Peak { row: 79, column: 79, heat: 0.7, size: [4.0, 4.0], offset: [0.5, 0.5], landmark: [0.0, 0.0] };

    fn detections(output: Output) -> Vec<Detection> {
        let Output::Detection { detections } = output else { panic!("detection expected, got {output:?}") };
        detections
    }

    #[test]
    fn decodes_peaks_to_boxes_and_landmarks_in_input_pixels() {
        let mut decoder = CenterFaceDecoder::new(&spec(10));
        let identity = geometry(320, 320, 1.0, 0.0, 0.0);
        let peaks = [LEFT_EDGE, OVERLAPPING, BOTTOM_RIGHT, CENTRAL];
        let found = detections(decoder.decode(&outputs(&peaks), &[], &identity).unwrap());

        let scores: Vec<f32> = found.iter().map(|d| d.score).collect();
        assert_eq!(scores, vec![0.9, 0.7, 0.6]);
        assert!(found.iter().all(|d| d.label == "face" && d.class_index == 0));

        assert_box_near(&found[0].bbox, [108.0, 67.0, 132.0, 99.0]);
        assert_eq!(found[0].landmarks.len(), 5);
        for (k, point) in found[0].landmarks.iter().enumerate() {
            assert_point_near(point, [114.0, 67.0 + 4.0 * k as f32]);
        }
        assert_box_near(&found[1].bbox, [318.0, 318.0, 320.0, 320.0]);
        assert_box_near(&found[2].bbox, [0.0, 120.0, 16.0, 124.0]);
        for (k, point) in found[2].landmarks.iter().enumerate() {
            assert_point_near(point, [8.0, 124.0 + k as f32 / 2.0]);
        }
    }

    #[test]
    fn maps_letterboxed_detections_to_the_source_image() {
        // A 640 x 480 frame letterboxed into 320 x 320: scale 0.5, 40 rows of padding on top.
        let letterbox = geometry(640, 480, 0.5, 0.0, 40.0);
        let mut decoder = CenterFaceDecoder::new(&spec(10));
        let labels = vec!["person-face".to_owned()];
        let found =
            detections(decoder.decode(&outputs(&[CENTRAL, OVERLAPPING, LEFT_EDGE]), &labels, &letterbox).unwrap());
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].label, "person-face");
        // source = (model - offset) / scale
        assert_box_near(&found[0].bbox, [216.0, 54.0, 264.0, 118.0]);
        for (k, point) in found[0].landmarks.iter().enumerate() {
            assert_point_near(point, [228.0, 54.0 + 8.0 * k as f32]);
        }
        assert_box_near(&found[1].bbox, [0.0, 160.0, 32.0, 168.0]);
        for (k, point) in found[1].landmarks.iter().enumerate() {
            assert_point_near(point, [16.0, 168.0 + k as f32]);
        }
    }

    #[test]
    fn caps_the_count_and_finds_nothing_in_a_cold_map() {
        let identity = geometry(320, 320, 1.0, 0.0, 0.0);
        let mut decoder = CenterFaceDecoder::new(&spec(1));
        let found = detections(decoder.decode(&outputs(&[LEFT_EDGE, CENTRAL]), &[], &identity).unwrap());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].score, 0.9);
        // The same decoder again, buffers reused, on a map with nothing above the threshold.
        assert!(detections(decoder.decode(&outputs(&[]), &[], &identity).unwrap()).is_empty());
    }

    #[test]
    fn refuses_maps_on_different_grids_naming_both_shapes() {
        let identity = geometry(320, 320, 1.0, 0.0, 0.0);
        let mut decoder = CenterFaceDecoder::new(&spec(10));
        let mut bad = outputs(&[]);
        bad.tensors[1] = OutputTensor::new("scale", vec![1, 2, 40, 40], vec![0.0; 3200]);
        let err = decoder.decode(&bad, &[], &identity).unwrap_err().to_string();
        assert!(err.contains("output scale: expected shape [1, 2, 80, 80]"), "{err}");
        assert!(err.contains("got [1, 2, 40, 40]"), "{err}");

        let mut bad = outputs(&[]);
        let heat = bad.tensors[0].data().to_vec();
        bad.tensors[0] = OutputTensor::new("heat", vec![1, 2, 80, 40], heat);
        let err = decoder.decode(&bad, &[], &identity).unwrap_err().to_string();
        assert!(err.contains("output heat: expected shape [1, 1, h, w], got [1, 2, 80, 40]"), "{err}");
    }
}
