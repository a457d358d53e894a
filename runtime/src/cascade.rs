//! Cascades: a second-stage model run on the crop of each detection of a first-stage detector (face then
//! identity, vehicle then plate), its results nested in the detection (`Detection::stages`), so that one
//! prediction per frame carries both stages.
//!
//! The crop rule ([`crop_rect`]): the box in source pixels grows by `margin` times its width on the left and on
//! the right and by `margin` times its height at the top and the bottom; with `square`, its shorter side then
//! grows by half the difference at each end, to the longer one's length; its edges are rounded outwards to whole
//! pixels and it is clipped to the frame. The crop is cut from the source frame at full resolution (RGB8) and
//! goes through the second bundle's own preprocessing, as a frame of that size would. A second graph that takes
//! batches runs the frame's crops in one run. No threads: the cascade runs inside [`crate::Pipeline::run`].

use crate::error::{Error, Result};
use crate::frame::{Frame, PixelFormat};
use crate::input::Input;
use crate::manifest::{CascadeSpec, InputSpec, Manifest, Task};
use crate::pipeline::{BatchBuffers, Pipeline};
use crate::prepare::micros;
use protocol::{BoundingBox, Detection, Output, StageOutput, StageResult, StageTimings};
use std::time::Instant;

/// A rectangle of whole pixels of the source frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropRect {
    /// Left column.
    pub x: u32,
    /// Top row.
    pub y: u32,
    /// Columns.
    pub width: u32,
    /// Rows.
    pub height: u32,
}

/// The crop of `bbox` (source pixels) in a `frame` (width, height) under the crop rule of the module docs;
/// `None` when nothing of it lies inside the frame.
pub fn crop_rect(bbox: &BoundingBox, margin: f32, square: bool, frame: (u32, u32)) -> Option<CropRect> {
    let (width, height) = (bbox.x_max - bbox.x_min, bbox.y_max - bbox.y_min);
    let (mut left, mut right) = (bbox.x_min - margin * width, bbox.x_max + margin * width);
    let (mut top, mut bottom) = (bbox.y_min - margin * height, bbox.y_max + margin * height);
    if square {
        let grow = ((bottom - top) - (right - left)) / 2.0;
        if grow > 0.0 {
            (left, right) = (left - grow, right + grow);
        } else {
            (top, bottom) = (top + grow, bottom - grow);
        }
    }
    let clip = |value: f32, size: u32| value.clamp(0.0, size as f32) as u32;
    let (left, right) = (clip(left.floor(), frame.0), clip(right.ceil(), frame.0));
    let (top, bottom) = (clip(top.floor(), frame.1), clip(bottom.ceil(), frame.1));
    (right > left && bottom > top).then_some(CropRect { x: left, y: top, width: right - left, height: bottom - top })
}

/// Copies `rect` of an RGB8 `frame` into a frame of its own, reusing `buffer`.
pub fn crop_frame(frame: &Frame, rect: CropRect, buffer: Vec<u8>) -> Result<Frame> {
    let mut rgb = buffer;
    rgb.clear();
    let stride = frame.strides()[0];
    let (x, width) = (rect.x as usize * 3, rect.width as usize * 3);
    for row in rect.y..rect.y + rect.height {
        let start = row as usize * stride + x;
        let pixels = frame.data().get(start..start + width).ok_or_else(|| Error::Decode {
            reason: format!("crop {rect:?} is outside the {}x{} frame", frame.width(), frame.height()),
        })?;
        rgb.extend_from_slice(pixels);
    }
    Frame::packed(PixelFormat::Rgb8, rect.width, rect.height, rgb)
}

/// What keeps `second` from running as the cascade of `first` (whose labels are `first_labels`) under `spec`,
/// each naming its key under `prefix` (`cascade` in a manifest, `sources[0].cascade` in the agent's config).
pub fn problems(
    first: &Manifest,
    first_labels: &[String],
    second: &Manifest,
    spec: &CascadeSpec,
    prefix: &str,
) -> Vec<String> {
    let mut problems: Vec<String> =
        spec.problems(prefix).into_iter().map(|(key, why)| format!("`{key}` {why}")).collect();
    if first.task != Task::Detection {
        problems.push(format!("`{prefix}` needs a detector to crop from; {} is a {:?} model", first.name, first.task));
    }
    if !matches!(second.input, InputSpec::Image(_)) {
        problems.push(format!(
            "`{prefix}.bundle`: {} takes sensor windows; a second stage must be an image model",
            second.name
        ));
    }
    if second.cascade.is_some() {
        problems.push(format!("`{prefix}.bundle`: {} has a cascade of its own; cascades do not nest", second.name));
    }
    if !first_labels.is_empty() {
        for label in spec.labels.iter().filter(|label| !first_labels.contains(label)) {
            problems.push(format!("`{prefix}.labels`: {} has no label {label:?}", first.name));
        }
    }
    problems
}

/// A second stage and its crop rule, with the buffers of its runs.
pub(crate) struct Cascade {
    spec: CascadeSpec,
    stage: Pipeline,
    buffers: BatchBuffers,
    /// The crops of the frame being run, as the second stage's inputs; their buffers are reused.
    crops: Vec<Input>,
    /// Each crop's detection.
    cropped: Vec<usize>,
    results: Vec<Result<(Output, StageTimings)>>,
}

impl Cascade {
    /// `stage` (built from the second bundle, checked by [`problems`]) run on crops under `spec`.
    pub(crate) fn new(spec: CascadeSpec, stage: Pipeline) -> Cascade {
        Cascade {
            spec,
            stage,
            buffers: BatchBuffers::default(),
            crops: Vec::new(),
            cropped: Vec::new(),
            results: Vec::new(),
        }
    }

    /// Runs the second stage on the crops of `detections` in `source` (RGB8, full size; `None` if the frame was
    /// not kept) and nests each result, or its error, in its detection; the detections over `max_crops` are
    /// marked skipped. The second stage's times are added to `timings`, stage by stage (cropping counts as
    /// preprocessing).
    pub(crate) fn run(&mut self, source: Option<&Frame>, detections: &mut [Detection], timings: &mut StageTimings) {
        let model = self.stage.identity().name.clone();
        let mut wanted: Vec<usize> = (0..detections.len())
            .filter(|&i| self.spec.labels.is_empty() || self.spec.labels.contains(&detections[i].label))
            .collect();
        // Stable: equal scores keep the decoder's order.
        wanted.sort_by(|&a, &b| detections[b].score.total_cmp(&detections[a].score));
        let skipped = wanted.split_off(wanted.len().min(self.spec.max_crops));
        for i in skipped {
            detections[i].stages.push(StageOutput { model: model.clone(), result: StageResult::Skipped });
        }
        let started = Instant::now();
        let mut buffers = self.crops.drain(..).filter_map(|input| match input {
            Input::Frame(frame) => Some(frame.into_data()),
            _ => None,
        });
        self.cropped.clear();
        let mut crops = Vec::with_capacity(wanted.len());
        for i in wanted {
            let crop = source
                .ok_or_else(|| Error::TensorMismatch {
                    expected: "the source frame".to_owned(),
                    got: "a preparation that did not keep it".to_owned(),
                })
                .and_then(|frame| {
                    let rect = crop_rect(
                        &detections[i].bbox,
                        self.spec.margin,
                        self.spec.square,
                        (frame.width(), frame.height()),
                    )
                    .ok_or(Error::EmptyInput)?;
                    crop_frame(frame, rect, buffers.next().unwrap_or_default())
                });
            match crop {
                Ok(frame) => {
                    crops.push(Input::Frame(frame));
                    self.cropped.push(i);
                }
                Err(error) => detections[i].stages.push(failed(&model, &error)),
            }
        }
        drop(buffers);
        self.crops = crops;
        timings.preprocess_us = timings.preprocess_us.saturating_add(micros(started, Instant::now()));
        let inputs: Vec<&Input> = self.crops.iter().collect();
        self.results.clear();
        let chunk = self.stage.crop_batch();
        self.stage.infer_in_chunks(&inputs, chunk, &mut self.buffers, &mut self.results);
        for (&i, result) in self.cropped.iter().zip(self.results.drain(..)) {
            let result = match result {
                Ok((output, stage)) => {
                    add(timings, &stage);
                    StageResult::Output(output)
                }
                Err(error) => failed(&model, &error).result,
            };
            detections[i].stages.push(StageOutput { model: model.clone(), result });
        }
    }
}

/// A stage's error as it is published in the detection.
fn failed(model: &str, error: &Error) -> StageOutput {
    StageOutput {
        model: model.to_owned(),
        result: StageResult::Failed { kind: error.kind().as_str().to_owned(), message: error.to_string() },
    }
}

/// Adds a crop's stage times to the frame's.
fn add(timings: &mut StageTimings, stage: &StageTimings) {
    timings.decode_us = timings.decode_us.saturating_add(stage.decode_us);
    timings.preprocess_us = timings.preprocess_us.saturating_add(stage.preprocess_us);
    timings.inference_us = timings.inference_us.saturating_add(stage.inference_us);
    timings.postprocess_us = timings.postprocess_us.saturating_add(stage.postprocess_us);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bbox(x_min: f32, y_min: f32, x_max: f32, y_max: f32) -> BoundingBox {
        BoundingBox { x_min, y_min, x_max, y_max }
    }

    fn rect(x: u32, y: u32, width: u32, height: u32) -> Option<CropRect> {
        Some(CropRect { x, y, width, height })
    }

    #[test]
    fn a_crop_rounds_the_box_outwards() {
        assert_eq!(crop_rect(&bbox(10.2, 20.7, 30.5, 40.0), 0.0, false, (100, 100)), rect(10, 20, 21, 20));
    }

    #[test]
    fn the_margin_is_a_fraction_of_each_side() {
        // 20 wide, 40 high: 0.25 of them is 5 left and right, 10 above and below.
        assert_eq!(crop_rect(&bbox(40.0, 40.0, 60.0, 80.0), 0.25, false, (200, 200)), rect(35, 30, 30, 60));
    }

    #[test]
    fn square_grows_the_shorter_side_about_the_centre() {
        assert_eq!(crop_rect(&bbox(40.0, 40.0, 60.0, 80.0), 0.0, true, (200, 200)), rect(30, 40, 40, 40));
        assert_eq!(crop_rect(&bbox(40.0, 40.0, 80.0, 50.0), 0.0, true, (200, 200)), rect(40, 25, 40, 40));
        // The margin applies first, each side by its own length; the square then evens them.
        assert_eq!(crop_rect(&bbox(40.0, 40.0, 60.0, 80.0), 0.5, true, (200, 200)), rect(10, 20, 80, 80));
    }

    #[test]
    fn a_crop_is_clipped_to_the_frame_and_none_outside_it() {
        assert_eq!(crop_rect(&bbox(-10.0, 90.0, 20.0, 130.0), 0.0, false, (100, 100)), rect(0, 90, 20, 10));
        assert_eq!(crop_rect(&bbox(-10.0, 90.0, 20.0, 130.0), 0.0, true, (100, 100)), rect(0, 90, 25, 10));
        assert_eq!(crop_rect(&bbox(120.0, 10.0, 140.0, 30.0), 0.1, false, (100, 100)), None);
        assert_eq!(crop_rect(&bbox(50.0, 50.0, 50.0, 50.0), 0.0, false, (100, 100)), None);
    }

    #[test]
    fn crop_frame_copies_the_rectangle_rows() {
        let (width, height) = (4u32, 3u32);
        let rgb: Vec<u8> = (0..width * height * 3).map(|byte| byte as u8).collect();
        let frame = Frame::packed(PixelFormat::Rgb8, width, height, rgb).unwrap();
        let crop = crop_frame(&frame, CropRect { x: 1, y: 1, width: 2, height: 2 }, Vec::new()).unwrap();
        assert_eq!((crop.width(), crop.height()), (2, 2));
        // Row 1 starts at byte 12, row 2 at 24; column 1 is 3 bytes in.
        assert_eq!(crop.data(), [15, 16, 17, 18, 19, 20, 27, 28, 29, 30, 31, 32]);
        let outside = crop_frame(&frame, CropRect { x: 3, y: 2, width: 2, height: 1 }, Vec::new());
        assert!(matches!(outside, Err(Error::Decode { .. })), "{outside:?}");
    }
}
