//! Semantic segmentation: a `[1, classes, h, w]` map over the model input becomes one run-length encoded mask
//! per class present, in source pixels. With several classes a map cell belongs to its best class; with one,
//! to that class when its value is above the threshold. A source pixel takes the class of the map cell under
//! its centre (nearest), through the preprocessing geometry.

use super::mask::{self, PixelRect};
use super::shape::{self, output_error};
use super::{InputSize, class_index, label_for};
use crate::error::Result;
use crate::manifest::SegmentationSpec;
use crate::preprocess::Geometry;
use crate::tensor::Outputs;
use protocol::{ClassMask, Output, Point};

const EXPECTED: &str = "[1, classes, h, w]";

/// A map cell that belongs to no published class.
const NO_CLASS: u32 = u32::MAX;

/// Decodes a segmentation map with a reusable class grid.
#[derive(Debug)]
pub(super) struct SegmentationDecoder {
    spec: SegmentationSpec,
    /// The class of each map cell, row-major; [`NO_CLASS`] for the background and below-threshold cells.
    cell_classes: Vec<u32>,
}

impl SegmentationDecoder {
    pub(super) fn new(spec: &SegmentationSpec) -> Self {
        SegmentationDecoder { spec: spec.clone(), cell_classes: Vec::new() }
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
        let [classes, height, width] = match shape::dims::<4>(tensor, EXPECTED)? {
            [1, c, h, w] if c > 0 && h > 0 && w > 0 => [c, h, w],
            _ => return Err(shape::shape_error(tensor, EXPECTED)),
        };
        let input = input.ok_or_else(|| output_error(tensor.name(), "masks need the model's input size"))?;
        if u32::try_from(classes).is_err() {
            return Err(output_error(tensor.name(), format!("{classes} classes do not fit a u32 class index")));
        }
        self.classify_cells(tensor.data(), classes, width * height);
        let mut present: Vec<u32> = self.cell_classes.iter().copied().filter(|&c| c != NO_CLASS).collect();
        present.sort_unstable();
        present.dedup();

        let (cells_per_input_x, cells_per_input_y) =
            (width as f32 / input.width as f32, height as f32 / input.height as f32);
        let image = PixelRect::image(geometry.source_width, geometry.source_height);
        let (source_width, source_height) = (geometry.source_width as f32, geometry.source_height as f32);
        let cell_classes = &self.cell_classes;
        let mut masks = Vec::with_capacity(present.len());
        for class in present {
            let mask = mask::encode(image, self.spec.max_mask_runs, |x, y| {
                let model = geometry.to_model(Point { x, y });
                let (cell_x, cell_y) = ((model.x * cells_per_input_x).floor(), (model.y * cells_per_input_y).floor());
                // Cells past the image's edge (at a stride above 1) and the parts a crop cut off have no class.
                let on_image = x < source_width && y < source_height;
                let on_map = cell_x >= 0.0 && cell_y >= 0.0 && cell_x < width as f32 && cell_y < height as f32;
                on_image && on_map && cell_classes[cell_y as usize * width + cell_x as usize] == class
            });
            let index = class as usize;
            masks.push(ClassMask {
                class_index: class_index(tensor.name(), index)?,
                label: label_for(labels, index),
                mask,
            });
        }
        Ok(Output::Segmentation { masks })
    }

    /// Fills `cell_classes` from the map: the best class (strictly greater wins, so ties go to the lower class),
    /// or for a one-class map the class where the value is above the threshold.
    fn classify_cells(&mut self, map: &[f32], classes: usize, cells: usize) {
        let background = self.spec.background_class;
        self.cell_classes.clear();
        if classes == 1 {
            let threshold = self.spec.threshold;
            let class = if background == Some(0) { NO_CLASS } else { 0 };
            self.cell_classes.extend(map.iter().map(|&value| if value > threshold { class } else { NO_CLASS }));
            return;
        }
        let mut planes = map.chunks_exact(cells);
        let mut best_scores = planes.next().map(<[f32]>::to_vec).unwrap_or_default();
        self.cell_classes.resize(cells, 0);
        for (class, plane) in (1u32..).zip(planes) {
            for ((best, best_class), &score) in best_scores.iter_mut().zip(&mut self.cell_classes).zip(plane) {
                if score > *best {
                    *best = score;
                    *best_class = class;
                }
            }
        }
        if let Some(background) = background {
            for class in &mut self.cell_classes {
                if *class == background {
                    *class = NO_CLASS;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postprocess::mask::decode;
    use crate::postprocess::test_support::geometry;
    use crate::tensor::OutputTensor;

    fn spec(background_class: Option<u32>) -> SegmentationSpec {
        SegmentationSpec { tensor: "map".to_owned(), threshold: 0.5, background_class, max_mask_runs: 4096 }
    }

    fn masks(output: Output) -> Vec<ClassMask> {
        let Output::Segmentation { masks } = output else { panic!("segmentation expected, got {output:?}") };
        masks
    }

    #[test]
    fn publishes_one_mask_per_class_present_in_source_pixels() {
        // A 2 x 2 map of three classes over a 4 x 4 input, from a 8 x 8 source (scale 0.5): each map cell is a
        // 4 x 4 block of source pixels. Cells: class 1, class 2 / class 0 (background), class 1.
        let map = [
            [0.0, 0.1, 0.9, 0.2], // class 0
            [0.9, 0.0, 0.0, 0.8], // class 1
            [0.1, 0.9, 0.1, 0.0], // class 2
        ]
        .concat();
        let outputs = Outputs { tensors: vec![OutputTensor::new("map", vec![1, 3, 2, 2], map)] };
        let labels = vec!["background".to_owned(), "road".to_owned(), "car".to_owned()];
        let input = Some(InputSize { width: 4, height: 4 });
        let found = masks(
            SegmentationDecoder::new(&spec(Some(0)))
                .decode(&outputs, &labels, &geometry(8, 8, 0.5, 0.0, 0.0), input)
                .unwrap(),
        );
        assert_eq!(
            found.iter().map(|m| (m.class_index, m.label.as_str())).collect::<Vec<_>>(),
            [(1, "road"), (2, "car")]
        );
        let road = decode(&found[0].mask);
        assert_eq!((found[0].mask.width, found[0].mask.height, found[0].mask.stride), (8, 8, 1));
        let at = |cells: &[bool], x: usize, y: usize| cells[y * 8 + x];
        assert!(at(&road, 0, 0) && at(&road, 3, 3) && at(&road, 4, 4) && at(&road, 7, 7));
        assert!(!at(&road, 4, 0) && !at(&road, 0, 4));
        assert_eq!(road.iter().filter(|&&inside| inside).count(), 32);
        let car = decode(&found[1].mask);
        assert!(at(&car, 4, 0) && at(&car, 7, 3) && !at(&car, 3, 0));
        assert_eq!(car.iter().filter(|&&inside| inside).count(), 16);
    }

    #[test]
    fn thresholds_a_one_class_map_and_leaves_the_letterbox_border_out() {
        // A 4 x 2 source letterboxed into 4 x 4 (one row of padding above and below); the map says the class
        // everywhere, border included, but the border is no source pixel.
        let outputs = Outputs { tensors: vec![OutputTensor::new("map", vec![1, 1, 4, 4], vec![0.9; 16])] };
        let input = Some(InputSize { width: 4, height: 4 });
        let found = masks(
            SegmentationDecoder::new(&spec(None))
                .decode(&outputs, &["text".to_owned()], &geometry(4, 2, 1.0, 0.0, 1.0), input)
                .unwrap(),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].mask.counts, vec![0, 8]);
        let below = Outputs { tensors: vec![OutputTensor::new("map", vec![1, 1, 4, 4], vec![0.5; 16])] };
        let none =
            SegmentationDecoder::new(&spec(None)).decode(&below, &[], &geometry(4, 2, 1.0, 0.0, 1.0), input).unwrap();
        assert_eq!(masks(none), vec![]);
    }

    #[test]
    fn cells_past_the_image_edge_are_outside_at_a_coarser_stride() {
        // A 3 x 3 source letterboxed at the top left of a 4 x 4 input whose padding the map also calls text; one
        // cell of the source is not text, so full resolution needs more than 3 runs and stride 2 is used. Its
        // cell centred at (3, 1) lies past the image: outside, whatever the map says about the padding there.
        let mut map = vec![0.9; 16];
        map[1] = 0.0;
        let outputs = Outputs { tensors: vec![OutputTensor::new("map", vec![1, 1, 4, 4], map)] };
        let spec = SegmentationSpec { max_mask_runs: 3, ..spec(None) };
        let input = Some(InputSize { width: 4, height: 4 });
        let found = masks(
            SegmentationDecoder::new(&spec).decode(&outputs, &[], &geometry(3, 3, 1.0, 0.0, 0.0), input).unwrap(),
        );
        let mask = &found[0].mask;
        assert_eq!((mask.width, mask.height, mask.stride), (2, 2, 2));
        assert_eq!(mask.counts, vec![0, 1, 3]);
    }

    #[test]
    fn refuses_maps_of_the_wrong_rank_and_runs_without_the_input_size() {
        let identity = geometry(4, 4, 1.0, 0.0, 0.0);
        let flat = Outputs { tensors: vec![OutputTensor::new("map", vec![1, 16], vec![0.0; 16])] };
        let input = Some(InputSize { width: 4, height: 4 });
        let err = SegmentationDecoder::new(&spec(None)).decode(&flat, &[], &identity, input).unwrap_err();
        assert!(err.to_string().contains("expected shape [1, classes, h, w]"), "{err}");
        let map = Outputs { tensors: vec![OutputTensor::new("map", vec![1, 1, 4, 4], vec![0.0; 16])] };
        let err = SegmentationDecoder::new(&spec(None)).decode(&map, &[], &identity, None).unwrap_err();
        assert!(err.to_string().contains("input size"), "{err}");
    }
}
