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
    /// Text read from an image.
    Text,
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
    /// The input size chosen per frame, for models with a dynamic height and width; `None`: `width` x `height`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_size: Option<DynamicSize>,
}

/// How a frame's input size is chosen, for models whose graph input has a dynamic height and width.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamicSize {
    /// How the size follows the frame.
    pub mode: DynamicSizeMode,
    /// For `limit_side`: the side length the frame is scaled towards (see `limit`).
    #[serde(default)]
    pub limit_side: Option<u32>,
    /// For `limit_side`: which side is held to `limit_side`.
    #[serde(default)]
    pub limit: SideLimit,
    /// Each side is rounded to a multiple of this (`limit_side`: nearest; `fixed_height`: the width, up).
    #[serde(default = "default_multiple_of")]
    pub multiple_of: u32,
    /// No side is shorter (`fixed_height`: the width, padded on the right up to it); default `multiple_of`.
    #[serde(default)]
    pub min_side: Option<u32>,
    /// No side is longer (the frame is scaled down to fit, keeping its aspect ratio).
    #[serde(default = "default_max_side")]
    pub max_side: u32,
    /// For `fixed_height`: the value of the tensor's padded elements, in tensor units (after normalisation).
    #[serde(default)]
    pub pad: f32,
}

fn default_multiple_of() -> u32 {
    1
}
fn default_max_side() -> u32 {
    2048
}

impl DynamicSize {
    /// The shortest side: `min_side`, or `multiple_of` when not given.
    pub fn min_side(&self) -> u32 {
        self.min_side.unwrap_or(self.multiple_of)
    }

    /// Every rule this breaks for an input of `height` rows, each naming its key.
    fn problems(&self, height: u32) -> Vec<String> {
        let mut problems = Vec::new();
        let key = |name: &str| format!("`input.dynamic_size.{name}`");
        if self.multiple_of == 0 {
            problems.push(format!("{} must be at least 1", key("multiple_of")));
            return problems;
        }
        let (min_side, max_side) = (self.min_side(), self.max_side);
        for (name, side) in [("min_side", min_side), ("max_side", max_side)] {
            if side == 0 || side % self.multiple_of != 0 {
                problems.push(format!(
                    "{} must be a positive multiple of `multiple_of` ({})",
                    key(name),
                    self.multiple_of
                ));
            }
        }
        if min_side > max_side {
            problems.push(format!("{} ({min_side}) is over `max_side` ({max_side})", key("min_side")));
        }
        // The largest tensor a frame can ask for is allocated per frame: hold it to what a fixed input may be.
        let largest_rows = match self.mode {
            DynamicSizeMode::LimitSide => max_side,
            DynamicSizeMode::FixedHeight => height,
        };
        if u64::from(max_side) * u64::from(largest_rows) > MAX_INPUT_PIXELS {
            problems.push(format!(
                "{} allows {max_side} x {largest_rows}, over {MAX_INPUT_PIXELS} pixels",
                key("max_side")
            ));
        }
        match (self.mode, self.limit_side) {
            (DynamicSizeMode::LimitSide, None | Some(0)) => {
                problems.push(format!("{} must be given and positive for mode `limit_side`", key("limit_side")))
            }
            (DynamicSizeMode::FixedHeight, Some(_)) => {
                problems.push(format!("{} applies to mode `limit_side` only", key("limit_side")))
            }
            _ => {}
        }
        if !self.pad.is_finite() || (self.mode == DynamicSizeMode::LimitSide && self.pad != 0.0) {
            problems.push(format!("{} must be finite, and applies to mode `fixed_height` only", key("pad")));
        }
        problems
    }
}

/// How a dynamic input size follows the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DynamicSizeMode {
    /// Keep the aspect ratio, scale as `limit` says, round each side to `multiple_of` (DBNet text detectors).
    LimitSide,
    /// Height `input.height`, width from the aspect ratio, content on the left, padded on the right to
    /// `min_side` (CTC text recognisers).
    FixedHeight,
}

/// Which side of the frame `limit_side` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SideLimit {
    /// The longer side is scaled down to `limit_side` when over it (smaller frames keep their size).
    #[default]
    Max,
    /// The shorter side is scaled up to `limit_side` when under it (larger frames keep their size).
    Min,
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
    /// YOLOv8 object detection.
    Yolov8(Yolov8Spec),
    /// Anomaly score against a threshold.
    Anomaly(AnomalySpec),
    /// Output tensors as they are.
    Raw(RawSpec),
    /// DBNet text detection: a probability map to rotated boxes.
    Dbnet(DbnetSpec),
    /// CTC text recognition: per-timestep class probabilities to text.
    Ctc(CtcSpec),
}

impl OutputSpec {
    /// The task this decoder serves.
    pub fn task(&self) -> Task {
        match self {
            OutputSpec::Classification(_) => Task::Classification,
            OutputSpec::Centerface(_) | OutputSpec::Yolov8(_) => Task::Detection,
            OutputSpec::Anomaly(_) => Task::Anomaly,
            OutputSpec::Raw(_) => Task::Raw,
            OutputSpec::Dbnet(_) => Task::Detection,
            OutputSpec::Ctc(_) => Task::Text,
        }
    }

    /// The graph outputs this decoder reads (empty for `raw` with no list: all of them).
    pub fn tensors(&self) -> Vec<&str> {
        match self {
            OutputSpec::Classification(s) => vec![&s.tensor],
            OutputSpec::Centerface(s) => vec![&s.heatmap, &s.scale, &s.offset, &s.landmarks],
            OutputSpec::Yolov8(s) => vec![&s.tensor],
            OutputSpec::Anomaly(s) => vec![&s.tensor],
            OutputSpec::Raw(s) => s.tensors.iter().map(String::as_str).collect(),
            OutputSpec::Dbnet(s) => vec![&s.tensor],
            OutputSpec::Ctc(s) => vec![&s.tensor],
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

/// YOLOv8 head: `[1, 4 + classes, anchors]`, boxes as centre x, centre y, width, height in input pixels.
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

/// DBNet head: `[1, 1, h, w]` text probabilities at the input's resolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbnetSpec {
    /// The probability map output.
    pub tensor: String,
    /// Probability above which a pixel is text.
    #[serde(default = "default_dbnet_threshold")]
    pub threshold: f32,
    /// Minimum mean probability inside a region's box.
    #[serde(default = "default_dbnet_box_threshold")]
    pub box_threshold: f32,
    /// How far a box is grown: by `area * unclip_ratio / perimeter` on every side.
    #[serde(default = "default_unclip_ratio")]
    pub unclip_ratio: f32,
    /// Dilate the text pixels by a 2x2 square first (PaddleOCR's `use_dilation`).
    #[serde(default)]
    pub dilate: bool,
    /// At most this many regions are considered.
    #[serde(default = "default_dbnet_candidates")]
    pub max_detections: usize,
}

fn default_dbnet_threshold() -> f32 {
    0.3
}
fn default_dbnet_box_threshold() -> f32 {
    0.5
}
fn default_unclip_ratio() -> f32 {
    1.6
}
fn default_dbnet_candidates() -> usize {
    1000
}

impl DbnetSpec {
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, value) in [("threshold", self.threshold), ("box_threshold", self.box_threshold)] {
            if !(0.0..=1.0).contains(&value) {
                problems.push(format!("`output.{key}` must be within 0..=1"));
            }
        }
        if !(self.unclip_ratio.is_finite() && self.unclip_ratio >= 0.0) {
            problems.push("`output.unclip_ratio` must be finite and not negative".to_owned());
        }
        if self.max_detections == 0 {
            problems.push("`output.max_detections` must be at least 1".to_owned());
        }
        problems
    }
}

/// CTC head: `[1, t, classes]` per-timestep probabilities; class 0 is the blank, class `i` the label `i - 1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CtcSpec {
    /// The probabilities output.
    pub tensor: String,
    /// The last class is a space, after the labels (PaddleOCR's `use_space_char`).
    #[serde(default)]
    pub use_space_char: bool,
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
                if let Some(dynamic) = &spec.dynamic_size {
                    if spec.resize != ResizeMode::Stretch {
                        problems
                            .push("`input.dynamic_size` fits the frame itself: leave `input.resize` unset".to_owned());
                    }
                    problems.extend(dynamic.problems(spec.height));
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
                if matches!(self.output, OutputSpec::Centerface(_) | OutputSpec::Yolov8(_) | OutputSpec::Dbnet(_)) {
                    problems.push("detection decoders need an image input".to_owned());
                }
                if matches!(self.output, OutputSpec::Ctc(_)) {
                    problems.push("the `ctc` decoder needs an image input".to_owned());
                }
            }
        }
        match &self.output {
            OutputSpec::Classification(spec) if spec.top_k == 0 => {
                problems.push("`output.top_k` must be at least 1".to_owned())
            }
            OutputSpec::Centerface(CenterFaceSpec { score_threshold, iou_threshold, .. })
            | OutputSpec::Yolov8(Yolov8Spec { score_threshold, iou_threshold, .. })
                if !(0.0..=1.0).contains(score_threshold) || !(0.0..=1.0).contains(iou_threshold) =>
            {
                problems.push("`output.score_threshold` and `output.iou_threshold` must be within 0..=1".to_owned())
            }
            OutputSpec::Anomaly(spec) if !spec.threshold.is_finite() => {
                problems.push("`output.threshold` must be finite".to_owned())
            }
            OutputSpec::Dbnet(spec) => problems.extend(spec.problems()),
            _ => {}
        }
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
        for bundle in ["activity-classifier", "image-classifier", "face-detector", "vibration-anomaly"] {
            let text = std::fs::read_to_string(models.join(bundle).join("manifest.toml")).unwrap();
            let mut manifest = Manifest::parse(&text).unwrap();
            manifest.self_test = Some("selftest.json".to_owned());
            manifest.checksums.insert("labels.txt".to_owned(), "0".repeat(64));
            let written = manifest.to_toml().unwrap();
            assert_eq!(Manifest::parse(&written), Ok(manifest), "{bundle}:\n{written}");
        }
    }

    #[test]
    fn the_text_bundles_parse_and_dynamic_sizes_and_text_decoders_are_checked_by_key() {
        let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        let read = |bundle: &str| std::fs::read_to_string(models.join(bundle).join("manifest.toml")).unwrap();
        let detector = Manifest::parse(&read("text-detector")).unwrap();
        let InputSpec::Image(input) = &detector.input else { panic!("image input expected") };
        let dynamic = input.dynamic_size.as_ref().expect("sized per frame");
        assert_eq!((dynamic.mode, dynamic.limit, dynamic.min_side()), (DynamicSizeMode::LimitSide, SideLimit::Min, 32));
        assert!(matches!(&detector.output, OutputSpec::Dbnet(spec) if spec.dilate && spec.unclip_ratio == 1.6));
        let recognizer = Manifest::parse(&read("text-recognizer")).unwrap();
        assert_eq!(recognizer.task, Task::Text);
        assert_eq!(recognizer.labels.len(), 6623);
        assert!(recognizer.labels.contains(&"\u{3000}".to_owned()), "the ideographic space is a label");
        for manifest in [&detector, &recognizer] {
            assert_eq!(Manifest::parse(&manifest.to_toml().unwrap()).as_ref(), Ok(manifest), "round trip");
        }

        let text = read("text-detector");
        let bad = text
            .replace("multiple_of = 32", "multiple_of = 32\npad = 1.0")
            .replace("min_side = 32", "min_side = 40")
            .replace("max_side = 2048", "max_side = 8192")
            .replace("threshold = 0.3", "threshold = 1.3")
            .replace("unclip_ratio = 1.6", "unclip_ratio = -1.0");
        let err = Manifest::parse(&bad).unwrap_err();
        for key in ["dynamic_size.min_side` must be a positive multiple", "dynamic_size.max_side` allows 8192 x 8192"] {
            assert!(err.contains(key), "{key}: {err}");
        }
        for key in ["dynamic_size.pad`", "`output.threshold`", "`output.unclip_ratio`"] {
            assert!(err.contains(key), "{key}: {err}");
        }
        let no_limit = text.replace("limit_side = 736\n", "");
        assert!(Manifest::parse(&no_limit).unwrap_err().contains("`input.dynamic_size.limit_side` must be given"));
        let letterboxed = text.replace("resize = \"stretch\"", "resize = \"letterbox\"");
        assert!(Manifest::parse(&letterboxed).unwrap_err().contains("leave `input.resize` unset"));
        let sensor_ctc = CLASSIFIER
            .replace("task = \"classification\"", "task = \"text\"")
            .replace("kind = \"image\"", "kind = \"sensor\"\nchannels = 3\nwindow = 10")
            .replace("width = 224\nheight = 224\nresize = \"center_crop\"\n", "")
            .replace("mean = [0.485, 0.456, 0.406]\nstd = [0.229, 0.224, 0.225]\n", "")
            .replace("decoder = \"classification\"", "decoder = \"ctc\"");
        assert!(Manifest::parse(&sensor_ctc).unwrap_err().contains("the `ctc` decoder needs an image input"));
    }

    #[test]
    fn rejects_unknown_keys_and_versions_that_are_not_semver() {
        assert!(Manifest::parse(&CLASSIFIER.replace("labels =", "lables =")).unwrap_err().contains("lables"));
        assert!(Manifest::parse(&CLASSIFIER.replace("1.2.3", "1.2")).is_err());
    }
}
