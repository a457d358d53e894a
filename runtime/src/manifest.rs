//! The model manifest (`manifest.toml` in a bundle): what the model is, what it takes, how to read what it gives.
//! `docs/bundle-format.md` documents every key; keep the two in step.

use crate::provider::ProviderKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The parsed `manifest.toml` of a model bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Model name, as published with every prediction.
    pub name: String,
    /// Semantic version; updates must raise it.
    pub version: semver::Version,
    /// What the model does; must agree with `output.decoder`.
    pub task: Task,
    /// The ONNX file, relative to the bundle directory.
    #[serde(default = "default_model_file")]
    pub model: String,
    /// Lower-case hex sha256 of the ONNX file.
    pub sha256: String,
    /// SPDX licence of the weights.
    #[serde(default)]
    pub license: Option<String>,
    /// Where the weights come from and how they were made.
    #[serde(default)]
    pub provenance: Option<String>,
    /// Class labels, in output order. Either inline here or in `labels_file`.
    #[serde(default)]
    pub labels: Vec<String>,
    /// A text file in the bundle with one label per line.
    #[serde(default)]
    pub labels_file: Option<String>,
    /// The golden self-test vectors in the bundle (conventionally `selftest.json`), run before an update serves.
    #[serde(default)]
    pub self_test: Option<String>,
    /// The reference profile in the bundle (conventionally `profile.json`) that the monitor compares inputs and
    /// outputs with; it must be listed in `[checksums]`, so that the signature covers it.
    #[serde(default)]
    pub profile: Option<String>,
    /// The model's input.
    pub input: InputSpec,
    /// How to read the model's outputs.
    pub output: OutputSpec,
    /// Execution-provider preferences; the agent's config may override them.
    #[serde(default)]
    pub execution: ExecutionSpec,
    /// Lower-case hex sha256 of every other file of the bundle but the model and the manifest, by path.
    /// `model pack` fills it in; [`crate::Bundle::load`] checks every entry.
    #[serde(default)]
    pub checksums: BTreeMap<String, String>,
}

fn default_model_file() -> String {
    "model.onnx".to_owned()
}

/// Whether `path` may name a file of a package (and of `[checksums]`): relative, `/`-separated, at most two
/// components, each of `[A-Za-z0-9._-]+` and neither `.` nor `..`. Such a path cannot leave the bundle.
pub fn is_package_path(path: &str) -> bool {
    let components: Vec<&str> = path.split('/').collect();
    components.len() <= 2
        && components.iter().all(|component| {
            !component.is_empty()
                && *component != "."
                && *component != ".."
                && component.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        })
}

fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The model's task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Class scores.
    Classification,
    /// Boxes of objects.
    Detection,
    /// An anomaly score.
    Anomaly,
    /// Tensors as they are.
    Raw,
    /// A class per pixel, published as masks.
    Segmentation,
}

/// The input tensor and how a frame or window becomes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InputSpec {
    /// A camera frame.
    Image(ImageInputSpec),
    /// A window of sensor samples.
    Sensor(SensorInputSpec),
}

impl InputSpec {
    /// The name of the graph input this spec feeds.
    pub fn tensor(&self) -> &str {
        match self {
            InputSpec::Image(spec) => &spec.tensor,
            InputSpec::Sensor(spec) => &spec.tensor,
        }
    }
}

/// The most pixels a model's image input may have (16 MP; real models take well under 1 MP).
pub const MAX_INPUT_PIXELS: u64 = 1 << 24;

/// An image input: `pixel' = (pixel * scale - mean[c]) / std[c]`, written in `layout` at `width` x `height`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageInputSpec {
    /// The graph input's name.
    pub tensor: String,
    /// Tensor layout.
    #[serde(default)]
    pub layout: ImageLayout,
    /// Input width in pixels.
    pub width: u32,
    /// Input height in pixels.
    pub height: u32,
    /// Channel order.
    #[serde(default)]
    pub color: ColorOrder,
    /// Element type.
    #[serde(default)]
    pub dtype: InputDtype,
    /// How frames of other sizes are fitted.
    #[serde(default)]
    pub resize: ResizeMode,
    /// For `center_crop`: the share of the short side kept (0.875 is ImageNet's resize-256-crop-224).
    #[serde(default = "default_crop_fraction")]
    pub crop_fraction: f32,
    /// Multiplies the 0..=255 pixel value first (1/255 maps to 0..=1).
    #[serde(default = "default_scale")]
    pub scale: f32,
    /// Subtracted after scaling, per channel (one value applies to all).
    #[serde(default = "default_mean")]
    pub mean: Vec<f32>,
    /// Divides after the mean, per channel (one value applies to all).
    #[serde(default = "default_std")]
    pub std: Vec<f32>,
    /// Fill of the letterbox border, as a 0..=255 pixel value before normalisation.
    #[serde(default = "default_pad_value")]
    pub pad_value: u8,
}

fn default_crop_fraction() -> f32 {
    1.0
}
fn default_scale() -> f32 {
    1.0 / 255.0
}
fn default_mean() -> Vec<f32> {
    vec![0.0]
}
fn default_std() -> Vec<f32> {
    vec![1.0]
}
fn default_pad_value() -> u8 {
    114
}

impl ImageInputSpec {
    /// Number of colour channels the tensor holds.
    pub fn channels(&self) -> usize {
        match self.color {
            ColorOrder::Gray => 1,
            ColorOrder::Rgb | ColorOrder::Bgr => 3,
        }
    }

    /// The tensor shape, batch of one.
    pub fn shape(&self) -> [usize; 4] {
        let (c, h, w) = (self.channels(), self.height as usize, self.width as usize);
        match self.layout {
            ImageLayout::Nchw => [1, c, h, w],
            ImageLayout::Nhwc => [1, h, w, c],
        }
    }
}

/// Tensor layout of an image input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageLayout {
    /// `[1, C, H, W]`.
    #[default]
    Nchw,
    /// `[1, H, W, C]`.
    Nhwc,
}

/// Channel order the model was trained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColorOrder {
    /// Red, green, blue.
    #[default]
    Rgb,
    /// Blue, green, red (OpenCV-trained models).
    Bgr,
    /// One luma channel.
    Gray,
}

/// Element type of the input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputDtype {
    /// 32-bit floats, normalised.
    #[default]
    F32,
    /// Raw 0..=255 pixels; `scale`, `mean` and `std` are ignored.
    U8,
}

/// How a frame of any size becomes `width` x `height`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    /// Scale each axis independently to fill the input (aspect ratio not kept).
    #[default]
    Stretch,
    /// Scale to fit inside, keeping the aspect ratio, centre it and pad the border with `pad_value`.
    Letterbox,
    /// Scale so the image covers the input divided by `crop_fraction` (for a square input: the short side to
    /// `width / crop_fraction`), then cut the centre `width` x `height`.
    CenterCrop,
}

/// A window of multi-channel sensor samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorInputSpec {
    /// The graph input's name.
    pub tensor: String,
    /// Number of channels (axes) per sample.
    pub channels: usize,
    /// Samples per window.
    pub window: usize,
    /// Tensor layout.
    #[serde(default)]
    pub layout: SensorLayout,
    /// Channel names, in column order (the CSV header a source must match).
    #[serde(default)]
    pub channel_names: Vec<String>,
    /// Per-channel mean subtracted before inference (empty: none).
    #[serde(default)]
    pub mean: Vec<f32>,
    /// Per-channel standard deviation divided by (empty: none).
    #[serde(default)]
    pub std: Vec<f32>,
}

impl SensorInputSpec {
    /// The tensor shape, batch of one.
    pub fn shape(&self) -> [usize; 3] {
        match self.layout {
            SensorLayout::ChannelsFirst => [1, self.channels, self.window],
            SensorLayout::ChannelsLast => [1, self.window, self.channels],
        }
    }

    /// The mean subtracted from each channel: 0 where `mean` is empty.
    pub fn channel_means(&self) -> Vec<f32> {
        self.per_channel(&self.mean, 0.0)
    }

    /// The standard deviation each channel is divided by: 1 where `std` is empty.
    pub fn channel_stds(&self) -> Vec<f32> {
        self.per_channel(&self.std, 1.0)
    }

    fn per_channel(&self, values: &[f32], default: f32) -> Vec<f32> {
        (0..self.channels).map(|channel| values.get(channel).copied().unwrap_or(default)).collect()
    }
}

/// Tensor layout of a sensor input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SensorLayout {
    /// `[1, channels, window]`.
    #[default]
    ChannelsFirst,
    /// `[1, window, channels]`.
    ChannelsLast,
}

/// How the outputs are decoded into a result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decoder", rename_all = "snake_case")]
pub enum OutputSpec {
    /// Softmax, then top-k.
    Classification(ClassificationSpec),
    /// CenterFace face detection.
    Centerface(CenterFaceSpec),
    /// YOLOv8 / YOLO11 object detection, with keypoints (pose) or instance masks (seg) when the head has them.
    #[serde(alias = "yolo")]
    Yolov8(Yolov8Spec),
    /// Anomaly score against a threshold.
    Anomaly(AnomalySpec),
    /// Output tensors as they are.
    Raw(RawSpec),
    /// SSD-style boxes and class scores (decoded boxes, before or after the model's own NMS).
    Ssd(SsdSpec),
    /// Semantic segmentation: per-pixel class scores or one probability map, published as masks.
    Segmentation(SegmentationSpec),
}

impl OutputSpec {
    /// The task this decoder serves.
    pub fn task(&self) -> Task {
        match self {
            OutputSpec::Classification(_) => Task::Classification,
            OutputSpec::Centerface(_) | OutputSpec::Yolov8(_) | OutputSpec::Ssd(_) => Task::Detection,
            OutputSpec::Anomaly(_) => Task::Anomaly,
            OutputSpec::Raw(_) => Task::Raw,
            OutputSpec::Segmentation(_) => Task::Segmentation,
        }
    }

    /// The graph outputs this decoder reads (empty for `raw` with no list: all of them).
    pub fn tensors(&self) -> Vec<&str> {
        match self {
            OutputSpec::Classification(s) => vec![&s.tensor],
            OutputSpec::Centerface(s) => vec![&s.heatmap, &s.scale, &s.offset, &s.landmarks],
            OutputSpec::Yolov8(s) => {
                [Some(&s.tensor), s.protos.as_ref()].into_iter().flatten().map(String::as_str).collect()
            }
            OutputSpec::Anomaly(s) => vec![&s.tensor],
            OutputSpec::Raw(s) => s.tensors.iter().map(String::as_str).collect(),
            OutputSpec::Ssd(s) => [Some(&s.boxes), Some(&s.scores), s.classes.as_ref(), s.count.as_ref()]
                .into_iter()
                .flatten()
                .map(String::as_str)
                .collect(),
            OutputSpec::Segmentation(s) => vec![&s.tensor],
        }
    }
}

/// Class scores: softmax if needed, then the `top_k` best with their labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassificationSpec {
    /// The output holding the class scores.
    pub tensor: String,
    /// Whether to apply a softmax.
    #[serde(default)]
    pub softmax: SoftmaxMode,
    /// How many classes to report.
    #[serde(default = "default_top_k")]
    pub top_k: usize,
}

fn default_top_k() -> usize {
    5
}

/// Whether class scores go through a softmax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SoftmaxMode {
    /// Apply it unless the scores already form a distribution (all in 0..=1, summing to 1).
    #[default]
    Auto,
    /// Apply it always.
    Always,
    /// Never apply it.
    Never,
}

/// CenterFace: heat map, box scale, centre offset and five landmarks, at 1/4 of the input resolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CenterFaceSpec {
    /// The heat map output `[1, 1, h, w]`.
    pub heatmap: String,
    /// The box scale output `[1, 2, h, w]`.
    pub scale: String,
    /// The centre offset output `[1, 2, h, w]`.
    pub offset: String,
    /// The landmarks output `[1, 10, h, w]`.
    pub landmarks: String,
    /// Minimum heat for a face.
    #[serde(default = "default_face_threshold")]
    pub score_threshold: f32,
    /// Overlap above which the weaker of two faces is dropped.
    #[serde(default = "default_face_iou")]
    pub iou_threshold: f32,
    /// At most this many faces.
    #[serde(default = "default_max_detections")]
    pub max_detections: usize,
}

fn default_face_threshold() -> f32 {
    0.5
}
fn default_face_iou() -> f32 {
    0.3
}
fn default_max_detections() -> usize {
    100
}

/// YOLOv8 / YOLO11 head: `[1, 4 + classes + 3 * keypoints + mask coefficients, anchors]`, boxes as centre x,
/// centre y, width, height in input pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Yolov8Spec {
    /// The head output.
    pub tensor: String,
    /// Minimum class score.
    #[serde(default = "default_yolo_threshold")]
    pub score_threshold: f32,
    /// Overlap above which the weaker box of a class is dropped.
    #[serde(default = "default_yolo_iou")]
    pub iou_threshold: f32,
    /// At most this many boxes.
    #[serde(default = "default_max_detections")]
    pub max_detections: usize,
    /// Pose heads: keypoints per box, each x, y (input pixels) and a score, after the class scores.
    #[serde(default)]
    pub keypoints: usize,
    /// Segmentation heads: the prototype masks output `[1, coefficients, h, w]`; the head's last rows are the
    /// per-box coefficients.
    #[serde(default)]
    pub protos: Option<String>,
    /// Overlapping boxes suppress each other whatever their class (`false`: only within a class).
    #[serde(default)]
    pub agnostic_nms: bool,
    /// The most runs one instance mask may have before it is published at a coarser stride.
    #[serde(default = "default_max_mask_runs")]
    pub max_mask_runs: usize,
}

fn default_max_mask_runs() -> usize {
    4096
}

fn default_yolo_threshold() -> f32 {
    0.25
}
fn default_yolo_iou() -> f32 {
    0.45
}

/// One anomaly score compared with a threshold (score above it: anomalous).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalySpec {
    /// The output holding the score.
    pub tensor: String,
    /// Scores above it are anomalous.
    pub threshold: f32,
}

/// Output tensors published as they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpec {
    /// Outputs to publish (empty: all).
    #[serde(default)]
    pub tensors: Vec<String>,
}

/// SSD-style outputs: one box per row and its class scores, or (post-NMS layouts) its class and score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsdSpec {
    /// The boxes output `[1, boxes, 4]` (or `[boxes, 4]`).
    pub boxes: String,
    /// The scores output: `[1, boxes, classes]`, or `[1, boxes]` when `classes` is given.
    pub scores: String,
    /// Post-NMS layouts: the class of each box `[1, boxes]` (a number per box).
    #[serde(default)]
    pub classes: Option<String>,
    /// Post-NMS layouts: how many leading rows are valid (`num_detections`, one value).
    #[serde(default)]
    pub count: Option<String>,
    /// The order of a box's four numbers.
    #[serde(default)]
    pub box_format: BoxFormat,
    /// Box coordinates are fractions of the input width and height (`false`: input pixels).
    #[serde(default = "default_true")]
    pub normalized: bool,
    /// A score column that is the background, never a detection (0 for most SSD heads with a background class).
    #[serde(default)]
    pub background_class: Option<u32>,
    /// Added to the class column to index the labels (TF's post-NMS classes count from 1: give -1).
    #[serde(default)]
    pub class_offset: i32,
    /// Minimum class score.
    #[serde(default = "default_face_threshold")]
    pub score_threshold: f32,
    /// Overlap above which the weaker box is dropped.
    #[serde(default = "default_yolo_iou")]
    pub iou_threshold: f32,
    /// At most this many boxes.
    #[serde(default = "default_max_detections")]
    pub max_detections: usize,
    /// Overlapping boxes suppress each other whatever their class (`false`: only within a class).
    #[serde(default)]
    pub agnostic_nms: bool,
}

fn default_true() -> bool {
    true
}

/// The order of a box's four numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoxFormat {
    /// `x_min, y_min, x_max, y_max`.
    #[default]
    Corners,
    /// `y_min, x_min, y_max, x_max` (TensorFlow's detection API).
    CornersYx,
    /// `centre x, centre y, width, height`.
    Centre,
}

/// Semantic segmentation: `[1, classes, h, w]` class scores (the best class per pixel), or `[1, 1, h, w]` one
/// class's probability against `threshold`; the map covers the model input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentationSpec {
    /// The map output.
    pub tensor: String,
    /// One-class maps: a pixel belongs to the class when its value is above it.
    #[serde(default = "default_face_threshold")]
    pub threshold: f32,
    /// A class never published (the background of most multi-class models).
    #[serde(default)]
    pub background_class: Option<u32>,
    /// The most runs one class mask may have before it is published at a coarser stride.
    #[serde(default = "default_max_mask_runs")]
    pub max_mask_runs: usize,
}

/// Execution-provider preferences of the bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionSpec {
    /// Providers to try, best first; CPU is always the last resort unless `require` is set.
    #[serde(default = "default_providers")]
    pub providers: Vec<ProviderKind>,
}

impl Default for ExecutionSpec {
    fn default() -> Self {
        ExecutionSpec { providers: default_providers() }
    }
}

fn default_providers() -> Vec<ProviderKind> {
    vec![ProviderKind::Cpu]
}

impl OutputSpec {
    /// The rules of the keypoint, mask and SSD keys, each naming its key.
    fn mask_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        // A mask of one cell has at most two runs, so the stride halving always ends.
        let max_mask_runs = match self {
            OutputSpec::Yolov8(spec) => Some(spec.max_mask_runs),
            OutputSpec::Segmentation(spec) => Some(spec.max_mask_runs),
            _ => None,
        };
        if max_mask_runs.is_some_and(|runs| runs < 2) {
            problems.push("`output.max_mask_runs` must be at least 2".to_owned());
        }
        match self {
            OutputSpec::Yolov8(spec) if spec.keypoints > 0 && spec.protos.is_some() => {
                problems.push("give `output.keypoints` or `output.protos`, not both".to_owned())
            }
            OutputSpec::Segmentation(spec) if !(spec.threshold.is_finite()) => {
                problems.push("`output.threshold` must be finite".to_owned())
            }
            OutputSpec::Ssd(spec) if spec.count.is_some() && spec.classes.is_none() => {
                problems.push("`output.count` needs `output.classes` (the post-NMS layout)".to_owned())
            }
            _ => {}
        }
        problems
    }
}

impl Manifest {
    /// Parses `manifest.toml` text. `origin` names the file in errors.
    pub fn parse(text: &str) -> Result<Manifest, String> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| e.to_string())?;
        let problems = manifest.problems();
        if problems.is_empty() { Ok(manifest) } else { Err(problems.join("; ")) }
    }

    /// The manifest as `manifest.toml` text (without comments), checked to parse back to the same manifest.
    pub fn to_toml(&self) -> Result<String, String> {
        let text = toml::to_string(self).map_err(|e| e.to_string())?;
        match Manifest::parse(&text) {
            Ok(parsed) if parsed == *self => Ok(text),
            Ok(_) => Err(format!("the written manifest does not read back the same:\n{text}")),
            Err(message) => Err(format!("the written manifest does not read back: {message}\n{text}")),
        }
    }

    /// Every rule of the bundle format this manifest breaks, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.name.trim().is_empty() {
            problems.push("`name` is empty".to_owned());
        }
        if !is_sha256_hex(&self.sha256) {
            problems.push(format!("`sha256` must be 64 lower-case hex digits, got {:?}", self.sha256));
        }
        if self.output.task() != self.task {
            problems.push(format!("`task` is {:?} but `output.decoder` decodes {:?}", self.task, self.output.task()));
        }
        if !self.labels.is_empty() && self.labels_file.is_some() {
            problems.push("give `labels` or `labels_file`, not both".to_owned());
        }
        match &self.input {
            InputSpec::Image(spec) => {
                if spec.width == 0 || spec.height == 0 {
                    problems.push("`input.width` and `input.height` must be positive".to_owned());
                }
                // The preprocessor allocates the model's input at load: keep a hostile manifest from asking for
                // gigabytes (the largest shipped input is 640 x 640).
                if u64::from(spec.width) * u64::from(spec.height) > MAX_INPUT_PIXELS {
                    problems.push(format!(
                        "`input.width` x `input.height` is {} x {}, over {MAX_INPUT_PIXELS} pixels",
                        spec.width, spec.height
                    ));
                }
                for (key, values) in [("mean", &spec.mean), ("std", &spec.std)] {
                    if values.len() != 1 && values.len() != spec.channels() {
                        problems.push(format!(
                            "`input.{key}` has {} values; give 1 or one per channel ({})",
                            values.len(),
                            spec.channels()
                        ));
                    }
                }
                if spec.std.iter().any(|s| *s == 0.0 || !s.is_finite()) {
                    problems.push("`input.std` values must be finite and non-zero".to_owned());
                }
                if !(spec.crop_fraction > 0.0 && spec.crop_fraction <= 1.0) {
                    problems.push("`input.crop_fraction` must be within (0, 1]".to_owned());
                }
            }
            InputSpec::Sensor(spec) => {
                if spec.channels == 0 || spec.window == 0 {
                    problems.push("`input.channels` and `input.window` must be positive".to_owned());
                }
                if !spec.channel_names.is_empty() && spec.channel_names.len() != spec.channels {
                    problems.push(format!(
                        "`input.channel_names` has {} names for {} channels",
                        spec.channel_names.len(),
                        spec.channels
                    ));
                }
                for (key, values) in [("mean", &spec.mean), ("std", &spec.std)] {
                    if !values.is_empty() && values.len() != spec.channels {
                        problems.push(format!(
                            "`input.{key}` has {} values for {} channels",
                            values.len(),
                            spec.channels
                        ));
                    }
                }
                if spec.std.iter().any(|s| *s == 0.0 || !s.is_finite()) {
                    problems.push("`input.std` values must be finite and non-zero".to_owned());
                }
                if matches!(
                    self.output,
                    OutputSpec::Centerface(_)
                        | OutputSpec::Yolov8(_)
                        | OutputSpec::Ssd(_)
                        | OutputSpec::Segmentation(_)
                ) {
                    problems.push("detection and segmentation decoders need an image input".to_owned());
                }
            }
        }
        match &self.output {
            OutputSpec::Classification(spec) if spec.top_k == 0 => {
                problems.push("`output.top_k` must be at least 1".to_owned())
            }
            OutputSpec::Centerface(CenterFaceSpec { score_threshold, iou_threshold, .. })
            | OutputSpec::Yolov8(Yolov8Spec { score_threshold, iou_threshold, .. })
            | OutputSpec::Ssd(SsdSpec { score_threshold, iou_threshold, .. })
                if !(0.0..=1.0).contains(score_threshold) || !(0.0..=1.0).contains(iou_threshold) =>
            {
                problems.push("`output.score_threshold` and `output.iou_threshold` must be within 0..=1".to_owned())
            }
            OutputSpec::Anomaly(spec) if !spec.threshold.is_finite() => {
                problems.push("`output.threshold` must be finite".to_owned())
            }
            _ => {}
        }
        problems.extend(self.output.mask_problems());
        if self.execution.providers.is_empty() {
            problems.push("`execution.providers` is empty".to_owned());
        }
        if let Some(path) = &self.self_test
            && !is_package_path(path)
        {
            problems.push(format!("`self_test` {path:?} is not a plain relative path within the bundle"));
        }
        if let Some(path) = &self.profile {
            if !is_package_path(path) {
                problems.push(format!("`profile` {path:?} is not a plain relative path within the bundle"));
            } else if !self.checksums.contains_key(path) {
                problems
                    .push(format!("`profile` {path:?} is not listed in `[checksums]`, so no signature would cover it"));
            }
        }
        for (path, sha256) in &self.checksums {
            if !is_package_path(path) {
                problems.push(format!("`checksums` path {path:?} is not a plain relative path within the bundle"));
            } else if *path == self.model
                || path == crate::bundle::MANIFEST_FILE
                || path == crate::bundle::SIGNATURE_FILE
            {
                problems.push(format!(
                    "`checksums` lists {path:?}; the model, the manifest and its signature are checked otherwise"
                ));
            }
            if !is_sha256_hex(sha256) {
                problems.push(format!("`checksums.{path:?}` must be 64 lower-case hex digits, got {sha256:?}"));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLASSIFIER: &str = r#"
name = "demo"
version = "1.2.3"
task = "classification"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
labels = ["a", "b"]
[input]
kind = "image"
tensor = "images"
width = 224
height = 224
resize = "center_crop"
mean = [0.485, 0.456, 0.406]
std = [0.229, 0.224, 0.225]
[output]
decoder = "classification"
tensor = "logits"
"#;

    #[test]
    fn parses_a_classifier_with_defaults() {
        let m = Manifest::parse(CLASSIFIER).unwrap();
        assert_eq!(m.version, semver::Version::new(1, 2, 3));
        assert_eq!(m.model, "model.onnx");
        let InputSpec::Image(input) = &m.input else { panic!("image input expected") };
        assert_eq!(input.shape(), [1, 3, 224, 224]);
        assert_eq!(input.resize, ResizeMode::CenterCrop);
        assert!((input.scale - 1.0 / 255.0).abs() < 1e-9);
        let OutputSpec::Classification(out) = &m.output else { panic!("classification expected") };
        assert_eq!(out.top_k, 5);
        assert_eq!(out.softmax, SoftmaxMode::Auto);
        assert_eq!(m.execution.providers, vec![ProviderKind::Cpu]);
    }

    #[test]
    fn reports_every_problem_with_its_key() {
        let text = CLASSIFIER
            .replace("task = \"classification\"", "task = \"anomaly\"")
            .replace("std = [0.229, 0.224, 0.225]", "std = [0.2, 0.0]")
            .replace("0000000000000000000000000000000000000000000000000000000000000000", "xyz");
        let err = Manifest::parse(&text).unwrap_err();
        assert!(err.contains("`sha256`"), "{err}");
        assert!(err.contains("`task`"), "{err}");
        assert!(err.contains("`input.std` has 2 values"), "{err}");
        assert!(err.contains("non-zero"), "{err}");
    }

    #[test]
    fn refuses_an_image_input_too_large_to_allocate() {
        let huge = CLASSIFIER.replace("width = 224", "width = 100000").replace("height = 224", "height = 100000");
        let err = Manifest::parse(&huge).unwrap_err();
        assert!(err.contains("`input.width` x `input.height` is 100000 x 100000, over 16777216 pixels"), "{err}");
        let largest = CLASSIFIER.replace("width = 224", "width = 4096").replace("height = 224", "height = 4096");
        assert!(Manifest::parse(&largest).is_ok());
    }

    #[test]
    fn checksums_and_the_self_test_need_safe_paths_and_sha256s() {
        let sha = "ab".repeat(32);
        let text = format!(
            "self_test = \"selftest.json\"\n{CLASSIFIER}[checksums]\n\"selftest.json\" = \"{sha}\"\n\
             \"selftest/cat.jpg\" = \"{sha}\"\n"
        );
        let m = Manifest::parse(&text).unwrap();
        assert_eq!(m.self_test.as_deref(), Some("selftest.json"));
        assert_eq!(m.checksums.len(), 2);
        let bad = text
            .replace("\"selftest/cat.jpg\"", "\"../cat.jpg\"")
            .replace(&format!("\"selftest.json\" = \"{sha}\""), "\"model.onnx\" = \"AB\"")
            .replace("self_test = \"selftest.json\"", "self_test = \"/etc/passwd\"");
        let err = Manifest::parse(&bad).unwrap_err();
        assert!(err.contains("`self_test` \"/etc/passwd\""), "{err}");
        assert!(err.contains("\"../cat.jpg\" is not a plain relative path"), "{err}");
        assert!(err.contains("`checksums` lists \"model.onnx\""), "{err}");
        assert!(err.contains("`checksums.\"model.onnx\"` must be 64 lower-case hex digits"), "{err}");
    }

    #[test]
    fn package_paths_are_plain_and_shallow() {
        for good in ["model.onnx", "selftest/cat.jpg", "a-b_c.1", ".hidden"] {
            assert!(is_package_path(good), "{good}");
        }
        for bad in ["", ".", "..", "../x", "a/../b", "/abs", "a//b", "a/b/c", "a\\b", "sp ace", "é", "a/"] {
            assert!(!is_package_path(bad), "{bad}");
        }
    }

    #[test]
    fn shipped_manifests_round_trip_through_toml() {
        let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        for bundle in [
            "activity-classifier",
            "image-classifier",
            "face-detector",
            "vibration-anomaly",
            "body-part-detector",
            "testing/text-segmentation",
        ] {
            let text = std::fs::read_to_string(models.join(bundle).join("manifest.toml")).unwrap();
            let mut manifest = Manifest::parse(&text).unwrap();
            manifest.self_test = Some("selftest.json".to_owned());
            manifest.checksums.insert("labels.txt".to_owned(), "0".repeat(64));
            let written = manifest.to_toml().unwrap();
            assert_eq!(Manifest::parse(&written), Ok(manifest), "{bundle}:\n{written}");
        }
    }

    const DETECTOR: &str = r#"
name = "demo"
version = "1.0.0"
task = "detection"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
[input]
kind = "image"
tensor = "images"
width = 640
height = 640
[output]
decoder = "yolo"
tensor = "output0"
"#;

    #[test]
    fn yolo_is_yolov8_with_keypoints_or_masks() {
        let m = Manifest::parse(DETECTOR).unwrap();
        let OutputSpec::Yolov8(spec) = &m.output else { panic!("yolo expected") };
        assert_eq!(
            (spec.keypoints, spec.protos.as_deref(), spec.agnostic_nms, spec.max_mask_runs),
            (0, None, false, 4096)
        );
        // The old name still reads, and the written name stays the one older agents know.
        let old = Manifest::parse(&DETECTOR.replace("\"yolo\"", "\"yolov8\"")).unwrap();
        assert_eq!(old, m);
        assert!(m.to_toml().unwrap().contains("decoder = \"yolov8\""));

        let pose = Manifest::parse(&format!("{DETECTOR}keypoints = 17\n")).unwrap();
        assert_eq!(pose.output.tensors(), vec!["output0"]);
        let seg = Manifest::parse(&format!("{DETECTOR}protos = \"output1\"\nmax_mask_runs = 100\n")).unwrap();
        assert_eq!(seg.output.tensors(), vec!["output0", "output1"]);
        let both = Manifest::parse(&format!("{DETECTOR}keypoints = 17\nprotos = \"output1\"\nmax_mask_runs = 1\n"));
        let err = both.unwrap_err();
        assert!(err.contains("give `output.keypoints` or `output.protos`, not both"), "{err}");
        assert!(err.contains("`output.max_mask_runs` must be at least 2"), "{err}");
    }

    #[test]
    fn ssd_keys_have_defaults_and_checks() {
        let ssd = DETECTOR.replace(
            "decoder = \"yolo\"\ntensor = \"output0\"",
            "decoder = \"ssd\"\nboxes = \"boxes\"\nscores = \"scores\"",
        );
        let m = Manifest::parse(&ssd).unwrap();
        let OutputSpec::Ssd(spec) = &m.output else { panic!("ssd expected") };
        assert_eq!(
            (spec.box_format, spec.normalized, spec.background_class, spec.class_offset),
            (BoxFormat::Corners, true, None, 0)
        );
        assert_eq!(m.output.tensors(), vec!["boxes", "scores"]);
        let err = Manifest::parse(&format!("{ssd}count = \"num\"\nscore_threshold = 2.0\n")).unwrap_err();
        assert!(err.contains("`output.count` needs `output.classes`"), "{err}");
        assert!(err.contains("`output.score_threshold`"), "{err}");
        let post_nms =
            format!("{ssd}classes = \"classes\"\ncount = \"num\"\nbox_format = \"corners_yx\"\nclass_offset = -1\n");
        let m = Manifest::parse(&post_nms).unwrap();
        assert_eq!(m.output.tensors(), vec!["boxes", "scores", "classes", "num"]);
        assert!(Manifest::parse(&format!("{ssd}box_format = \"xywh\"\n")).unwrap_err().contains("xywh"));
    }

    #[test]
    fn segmentation_needs_its_task_and_an_image() {
        let seg = DETECTOR
            .replace("task = \"detection\"", "task = \"segmentation\"")
            .replace("decoder = \"yolo\"\ntensor = \"output0\"", "decoder = \"segmentation\"\ntensor = \"map\"");
        let m = Manifest::parse(&seg).unwrap();
        let OutputSpec::Segmentation(spec) = &m.output else { panic!("segmentation expected") };
        assert_eq!((spec.threshold, spec.background_class, spec.max_mask_runs), (0.5, None, 4096));
        let err = Manifest::parse(&seg.replace("task = \"segmentation\"", "task = \"detection\"")).unwrap_err();
        assert!(err.contains("`task`"), "{err}");
        let err = Manifest::parse(&format!("{seg}threshold = nan\nmax_mask_runs = 0\n")).unwrap_err();
        assert!(err.contains("`output.threshold` must be finite"), "{err}");
        assert!(err.contains("`output.max_mask_runs` must be at least 2"), "{err}");
    }

    #[test]
    fn rejects_unknown_keys_and_versions_that_are_not_semver() {
        assert!(Manifest::parse(&CLASSIFIER.replace("labels =", "lables =")).unwrap_err().contains("lables"));
        assert!(Manifest::parse(&CLASSIFIER.replace("1.2.3", "1.2")).is_err());
    }
}
