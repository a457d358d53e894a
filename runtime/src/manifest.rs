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
    /// A key of the ONNX model's metadata (`metadata_props`) holding the labels: a JSON list, a Python dict of
    /// index to name, or one label per line. Read when the engine is built.
    #[serde(default)]
    pub labels_metadata: Option<String>,
    /// Labels read from lines (`labels_file`, `labels_metadata`) are kept verbatim, but for the line ending:
    /// not trimmed, blank lines kept (a line holding one space is the label " ").
    #[serde(default)]
    pub labels_verbatim: bool,
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
    /// A second-stage bundle run on each detection's crop (`[cascade]`); `None`: the detections as they are.
    #[serde(default)]
    pub cascade: Option<CascadeSpec>,
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
    /// Fill of the letterbox border, in pixel units (0..=255, before normalisation; 114 when neither this nor
    /// `pad_value_normalized` is given). See [`ImageInputSpec::padding`].
    #[serde(default)]
    pub pad_value: Option<f32>,
    /// Resampling filter.
    #[serde(default)]
    pub filter: ResizeFilter,
    /// Where a letterbox puts its padding.
    #[serde(default)]
    pub pad_side: PadSide,
    /// Fill of the letterbox border in the tensor's own units (after normalisation), for float tensors.
    #[serde(default)]
    pub pad_value_normalized: Option<f32>,
    /// Whether the graph's input has a batch axis (`[1, C, H, W]`) or not (`[C, H, W]`); unset, the graph's
    /// rank says (see [`crate::Engine`]).
    #[serde(default)]
    pub batch_axis: Option<bool>,
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
/// The letterbox fill when the manifest gives none (Ultralytics' grey).
pub const DEFAULT_PAD_VALUE: f32 = 114.0;

impl ImageInputSpec {
    /// Number of colour channels the tensor holds.
    pub fn channels(&self) -> usize {
        match self.color {
            ColorOrder::Gray => 1,
            ColorOrder::Rgb | ColorOrder::Bgr => 3,
        }
    }

    /// The letterbox fill.
    pub fn padding(&self) -> Padding {
        match (self.pad_value, self.pad_value_normalized) {
            (_, Some(normalized)) => Padding::Normalized(normalized),
            (pixel, None) => Padding::Pixel(pixel.unwrap_or(DEFAULT_PAD_VALUE)),
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
    /// 16-bit floats, normalised as `f32` is, then rounded to the nearest half.
    F16,
    /// Pixels minus 128 (-128..=127), the zero point of full-integer quantised models; `scale`, `mean` and `std`
    /// are ignored.
    I8,
    /// Raw 0..=255 pixels as 32-bit integers; `scale`, `mean` and `std` are ignored.
    I32,
    /// Raw 0..=255 pixels as 64-bit integers; `scale`, `mean` and `std` are ignored.
    I64,
}

impl InputDtype {
    /// Its name in manifests and messages.
    pub fn name(self) -> &'static str {
        match self {
            InputDtype::F32 => "f32",
            InputDtype::U8 => "u8",
            InputDtype::F16 => "f16",
            InputDtype::I8 => "i8",
            InputDtype::I32 => "i32",
            InputDtype::I64 => "i64",
        }
    }

    /// Whether the tensor holds normalised floats (`scale`, `mean` and `std` apply) rather than whole pixel values.
    pub fn is_float(self) -> bool {
        matches!(self, InputDtype::F32 | InputDtype::F16)
    }
}

/// The resampling filter of a resize. The antialiasing ones widen their kernel by the scale factor when
/// downscaling, so that every source pixel counts (PIL, and OpenCV's `INTER_AREA`); the others sample the source
/// at the output pixels' centres whatever the scale (OpenCV's `INTER_NEAREST_EXACT` and `INTER_LINEAR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeFilter {
    /// The nearest source pixel.
    Nearest,
    /// Bilinear without antialiasing (OpenCV's `INTER_LINEAR`).
    Bilinear,
    /// Bilinear with antialiasing (PIL's `BILINEAR`).
    #[default]
    BilinearAntialias,
    /// The mean of the source pixels each output pixel covers (OpenCV's `INTER_AREA`, PIL's `BOX`).
    Area,
    /// Catmull-Rom bicubic with antialiasing (PIL's `BICUBIC`).
    Bicubic,
    /// Lanczos with three lobes and antialiasing (PIL's `LANCZOS`).
    Lanczos,
}

impl ResizeFilter {
    /// Whether the kernel widens with the downscaling factor.
    pub fn antialiases(self) -> bool {
        !matches!(self, ResizeFilter::Nearest | ResizeFilter::Bilinear)
    }
}

/// Where a letterbox puts its padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PadSide {
    /// Split between both sides, the image centred.
    #[default]
    Center,
    /// All on the right and bottom, the image at the top-left corner (YOLOX, PaddleOCR).
    BottomRight,
}

/// The letterbox fill, in the units it was given in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Padding {
    /// A 0..=255 pixel value, normalised as the image is.
    Pixel(f32),
    /// The value the tensor holds.
    Normalized(f32),
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
            OutputSpec::Centerface(_) | OutputSpec::Yolov8(_) | OutputSpec::Ssd(_) => Task::Detection,
            OutputSpec::Anomaly(_) => Task::Anomaly,
            OutputSpec::Raw(_) => Task::Raw,
            OutputSpec::Segmentation(_) => Task::Segmentation,
            OutputSpec::Dbnet(_) => Task::Detection,
            OutputSpec::Ctc(_) => Task::Text,
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
            OutputSpec::Anomaly(s) => std::iter::once(&s.tensor).chain(&s.label_tensor).map(String::as_str).collect(),
            OutputSpec::Raw(s) => s.tensors.iter().map(String::as_str).collect(),
            OutputSpec::Ssd(s) => [Some(&s.boxes), Some(&s.scores), s.classes.as_ref(), s.count.as_ref()]
                .into_iter()
                .flatten()
                .map(String::as_str)
                .collect(),
            OutputSpec::Segmentation(s) => vec![&s.tensor],
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

/// One anomaly score compared with a threshold (by default, a score above it is anomalous), and optionally the
/// model's own label output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalySpec {
    /// The output holding the score.
    pub tensor: String,
    /// Scores beyond it, on the side `direction` says, are anomalous.
    pub threshold: f32,
    /// Which side of the threshold is anomalous.
    #[serde(default)]
    pub direction: AnomalyDirection,
    /// An integer output holding the model's own label (scikit-learn's outlier detectors: 1 inlier, -1 outlier).
    #[serde(default)]
    pub label_tensor: Option<String>,
    /// The value of `label_tensor` that means anomalous; -1 (scikit-learn's convention) when not given.
    #[serde(default)]
    pub anomalous_label: Option<i64>,
}

impl AnomalySpec {
    /// Whether `score` is anomalous: beyond the threshold, on the side `direction` says.
    pub fn is_anomalous(&self, score: f32) -> bool {
        match self.direction {
            AnomalyDirection::Higher => score > self.threshold,
            AnomalyDirection::Lower => score < self.threshold,
        }
    }

    /// The label value that means anomalous.
    pub fn anomalous_label(&self) -> i64 {
        self.anomalous_label.unwrap_or(-1)
    }
}

/// Which side of an anomaly threshold is anomalous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyDirection {
    /// Scores above the threshold (a reconstruction error, a distance).
    #[default]
    Higher,
    /// Scores below the threshold (scikit-learn's `decision_function`: negative means outlier).
    Lower,
}

/// Output tensors published as they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpec {
    /// Outputs to publish (empty: all).
    #[serde(default)]
    pub tensors: Vec<String>,
}

/// `[cascade]`: a second-stage bundle run on the crop of each detection, its results nested in the detection.
/// The agent's config may give one per source instead (`[sources.cascade]`, the same keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CascadeSpec {
    /// The second stage's bundle directory: in a manifest, a subdirectory of the bundle (one plain component).
    pub bundle: String,
    /// The detection labels cropped (empty: all).
    #[serde(default)]
    pub labels: Vec<String>,
    /// At most this many crops per frame, the best-scoring first; the others are marked skipped.
    #[serde(default = "default_max_crops")]
    pub max_crops: usize,
    /// Added to each side of a box, as a fraction of the box's width (left, right) and height (top, bottom).
    #[serde(default)]
    pub margin: f32,
    /// Grow the shorter side of the crop, about its centre, to the longer one's length.
    #[serde(default)]
    pub square: bool,
}

/// The most crops a frame may ask for: more than a second stage runs in a frame's time on a device.
pub const MAX_CASCADE_CROPS: usize = 256;

fn default_max_crops() -> usize {
    8
}

impl CascadeSpec {
    /// Every rule the crop keys break: the key (under `prefix`: `cascade`, `sources[0].cascade`) and why.
    pub fn problems(&self, prefix: &str) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.bundle.trim().is_empty() {
            problems.push((format!("{prefix}.bundle"), "is empty".to_owned()));
        }
        if !(1..=MAX_CASCADE_CROPS).contains(&self.max_crops) {
            problems.push((format!("{prefix}.max_crops"), format!("must be within 1..={MAX_CASCADE_CROPS}")));
        }
        if !(0.0..=1.0).contains(&self.margin) {
            problems.push((format!("{prefix}.margin"), "must be within 0..=1 (a fraction of the box)".to_owned()));
        }
        if self.labels.iter().any(|label| label.trim().is_empty()) {
            problems.push((format!("{prefix}.labels"), "holds an empty label".to_owned()));
        }
        problems
    }
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
        let manifest: Manifest =
            toml::from_str(text).map_err(|e| tagged_table_error(text).unwrap_or_else(|| e.to_string()))?;
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

    /// Every file the manifest names, with the key that names it: the model, the labels file, the self-test
    /// vectors, the profile and each `[checksums]` entry.
    pub fn named_files(&self) -> Vec<(String, &str)> {
        let single = [
            ("model", Some(&self.model)),
            ("labels_file", self.labels_file.as_ref()),
            ("self_test", self.self_test.as_ref()),
            ("profile", self.profile.as_ref()),
        ];
        let single = single.into_iter().filter_map(|(key, path)| Some((key.to_owned(), path?.as_str())));
        let listed = self.checksums.keys().map(|path| (format!("checksums.{path:?}"), path.as_str()));
        single.chain(listed).collect()
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
        let label_sources = [!self.labels.is_empty(), self.labels_file.is_some(), self.labels_metadata.is_some()];
        if label_sources.iter().filter(|given| **given).count() > 1 {
            problems.push("give one of `labels`, `labels_file` and `labels_metadata`".to_owned());
        }
        if self.labels_metadata.as_ref().is_some_and(|key| key.is_empty()) {
            problems.push("`labels_metadata` is empty; name a key of the model's metadata".to_owned());
        }
        if self.labels_verbatim && self.labels_file.is_none() && self.labels_metadata.is_none() {
            problems.push("`labels_verbatim` applies only to `labels_file` or `labels_metadata`".to_owned());
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
                problems.extend(padding_problems(spec));
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
                if matches!(
                    self.output,
                    OutputSpec::Centerface(_)
                        | OutputSpec::Yolov8(_)
                        | OutputSpec::Ssd(_)
                        | OutputSpec::Segmentation(_)
                        | OutputSpec::Dbnet(_)
                ) {
                    problems.push("detection and segmentation decoders need an image input".to_owned());
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
            | OutputSpec::Ssd(SsdSpec { score_threshold, iou_threshold, .. })
                if !(0.0..=1.0).contains(score_threshold) || !(0.0..=1.0).contains(iou_threshold) =>
            {
                problems.push("`output.score_threshold` and `output.iou_threshold` must be within 0..=1".to_owned())
            }
            OutputSpec::Anomaly(spec) => {
                if !spec.threshold.is_finite() {
                    problems.push("`output.threshold` must be finite".to_owned())
                }
                if spec.label_tensor.as_ref() == Some(&spec.tensor) {
                    problems.push("`output.label_tensor` must be another output than `output.tensor`".to_owned())
                }
                if spec.anomalous_label.is_some() && spec.label_tensor.is_none() {
                    problems.push("`output.anomalous_label` needs `output.label_tensor`".to_owned())
                }
            }
            OutputSpec::Dbnet(spec) => problems.extend(spec.problems()),
            _ => {}
        }
        problems.extend(self.output.mask_problems());
        if self.execution.providers.is_empty() {
            problems.push("`execution.providers` is empty".to_owned());
        }
        for (key, path) in [("model", Some(&self.model)), ("labels_file", self.labels_file.as_ref())] {
            if let Some(path) = path
                && !is_package_path(path)
            {
                problems.push(format!("`{key}` {path:?} is not a plain relative path within the bundle"));
            }
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
        if let Some(cascade) = &self.cascade {
            problems.extend(cascade.problems("cascade").into_iter().map(|(key, why)| format!("`{key}` {why}")));
            // One component: the second bundle's files are then two-component package paths.
            if cascade.bundle.contains('/') || !is_package_path(&cascade.bundle) {
                problems.push(format!(
                    "`cascade.bundle` {:?} must name a subdirectory of the bundle (one plain path component)",
                    cascade.bundle
                ));
            }
            if self.task != Task::Detection {
                problems.push(format!("`cascade` needs a detector to crop from; this model's task is {:?}", self.task));
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

/// toml reports a type error inside `[input]` or `[output]` at the table's header, without the key: those tables
/// are tagged by `kind` and `decoder`, and serde buffers a tagged table before it picks the variant, losing the
/// spans. This reads the table again as its variant's own type, which names the key (`input.pad_value: ...`).
/// `None` when the text is not TOML, the tag is unknown, or the table reads without error.
fn tagged_table_error(text: &str) -> Option<String> {
    let document: toml::Table = text.parse().ok()?;
    ["input", "output"].into_iter().find_map(|section| {
        let mut table = document.get(section)?.as_table()?.clone();
        let tag = if section == "input" { "kind" } else { "decoder" };
        let variant = table.remove(tag)?.as_str()?.to_owned();
        let body = toml::Value::Table(table);
        let key = |path: String| format!("`{section}.{path}`");
        let located = match (section, variant.as_str()) {
            ("input", "image") => typed_error::<ImageInputSpec>(body),
            ("input", "sensor") => typed_error::<SensorInputSpec>(body),
            ("output", "classification") => typed_error::<ClassificationSpec>(body),
            ("output", "centerface") => typed_error::<CenterFaceSpec>(body),
            ("output", "yolov8" | "yolo") => typed_error::<Yolov8Spec>(body),
            ("output", "anomaly") => typed_error::<AnomalySpec>(body),
            ("output", "raw") => typed_error::<RawSpec>(body),
            ("output", "ssd") => typed_error::<SsdSpec>(body),
            ("output", "segmentation") => typed_error::<SegmentationSpec>(body),
            ("output", "dbnet") => typed_error::<DbnetSpec>(body),
            ("output", "ctc") => typed_error::<CtcSpec>(body),
            _ => None,
        };
        located.map(|(path, message)| format!("{}: {message}", key(path)))
    })
}

/// The path and message of the first error reading `body` as a `T`.
fn typed_error<T: serde::de::DeserializeOwned>(body: toml::Value) -> Option<(String, String)> {
    serde_path_to_error::deserialize::<_, T>(body)
        .err()
        .map(|error| (error.path().to_string(), error.inner().to_string()))
}

/// What is wrong with an image input's letterbox keys.
fn padding_problems(spec: &ImageInputSpec) -> Vec<String> {
    let mut problems = Vec::new();
    let letterbox = spec.resize == ResizeMode::Letterbox;
    if let Some(pixel) = spec.pad_value {
        if !(0.0..=255.0).contains(&pixel) {
            problems.push(format!("`input.pad_value` must be a pixel value within 0..=255, got {pixel}"));
        } else if !spec.dtype.is_float() && pixel.fract() != 0.0 {
            problems.push(format!(
                "`input.pad_value` {pixel} is not a whole pixel value, which a{} {} tensor needs",
                if spec.dtype == InputDtype::I8 { "n" } else { "" },
                spec.dtype.name()
            ));
        }
    }
    if let Some(normalized) = spec.pad_value_normalized {
        if spec.pad_value.is_some() {
            problems.push("give `input.pad_value` or `input.pad_value_normalized`, not both".to_owned());
        }
        if !normalized.is_finite() {
            problems.push(format!("`input.pad_value_normalized` must be finite, got {normalized}"));
        }
        if !spec.dtype.is_float() {
            problems.push(format!(
                "`input.pad_value_normalized` needs a float tensor (`input.dtype` f32 or f16), not {}; give \
                 `input.pad_value` in pixel units",
                spec.dtype.name()
            ));
        }
        if !letterbox {
            problems
                .push("`input.pad_value_normalized` has no effect unless `input.resize` is \"letterbox\"".to_owned());
        }
    }
    if spec.pad_side != PadSide::Center && !letterbox {
        problems.push("`input.pad_side` has no effect unless `input.resize` is \"letterbox\"".to_owned());
    }
    problems
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
    fn image_input_options_default_to_what_bundles_did_before() {
        let InputSpec::Image(input) = Manifest::parse(CLASSIFIER).unwrap().input else { panic!("image input") };
        assert_eq!(input.filter, ResizeFilter::BilinearAntialias);
        assert_eq!(input.pad_side, PadSide::Center);
        assert_eq!(input.padding(), Padding::Pixel(DEFAULT_PAD_VALUE));
        assert_eq!((input.dtype, input.batch_axis), (InputDtype::F32, None));
    }

    #[test]
    fn parses_the_image_input_options() {
        let options = "resize = \"letterbox\"\nfilter = \"lanczos\"\npad_side = \"bottom_right\"\n\
                       pad_value = 127.5\ndtype = \"f16\"\nbatch_axis = false";
        let InputSpec::Image(input) =
            Manifest::parse(&CLASSIFIER.replace("resize = \"center_crop\"", options)).unwrap().input
        else {
            panic!("image input")
        };
        assert_eq!((input.filter, input.pad_side), (ResizeFilter::Lanczos, PadSide::BottomRight));
        assert_eq!(
            (input.padding(), input.dtype, input.batch_axis),
            (Padding::Pixel(127.5), InputDtype::F16, Some(false))
        );
        for (dtype, expected) in [("i8", InputDtype::I8), ("i32", InputDtype::I32), ("i64", InputDtype::I64)] {
            let text = CLASSIFIER.replace("resize = \"center_crop\"", &format!("dtype = \"{dtype}\""));
            let InputSpec::Image(input) = Manifest::parse(&text).unwrap().input else { panic!("image input") };
            assert_eq!(input.dtype, expected);
        }
        let normalized =
            CLASSIFIER.replace("resize = \"center_crop\"", "resize = \"letterbox\"\npad_value_normalized = 0.0");
        let InputSpec::Image(input) = Manifest::parse(&normalized).unwrap().input else { panic!("image input") };
        assert_eq!(input.padding(), Padding::Normalized(0.0));
    }

    #[test]
    fn bad_image_input_options_are_named_by_key() {
        let with =
            |options: &str| Manifest::parse(&CLASSIFIER.replace("resize = \"center_crop\"", options)).unwrap_err();
        let cases = [
            (
                "resize = \"letterbox\"\npad_value = 300",
                "`input.pad_value` must be a pixel value within 0..=255, got 300",
            ),
            (
                "resize = \"letterbox\"\npad_value = 127.5\ndtype = \"u8\"",
                "`input.pad_value` 127.5 is not a whole pixel value, which a u8 tensor needs",
            ),
            (
                "resize = \"letterbox\"\npad_value = 127.5\ndtype = \"i8\"",
                "`input.pad_value` 127.5 is not a whole pixel value, which an i8 tensor needs",
            ),
            (
                "resize = \"letterbox\"\npad_value = 0\npad_value_normalized = 0.0",
                "give `input.pad_value` or `input.pad_value_normalized`, not both",
            ),
            ("resize = \"letterbox\"\npad_value_normalized = nan", "`input.pad_value_normalized` must be finite"),
            (
                "resize = \"letterbox\"\npad_value_normalized = 0.0\ndtype = \"i32\"",
                "`input.pad_value_normalized` needs a float tensor (`input.dtype` f32 or f16), not i32",
            ),
            (
                "pad_value_normalized = 0.0",
                "`input.pad_value_normalized` has no effect unless `input.resize` is \"letterbox\"",
            ),
            ("pad_side = \"bottom_right\"", "`input.pad_side` has no effect unless `input.resize` is \"letterbox\""),
            ("filter = \"cubic\"", "unknown variant `cubic`"),
            ("pad_side = \"left\"", "unknown variant `left`"),
            ("dtype = \"u16\"", "unknown variant `u16`"),
        ];
        for (options, expected) in cases {
            let err = with(options);
            assert!(err.contains(expected), "{options:?}: {err}");
        }
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
            "vibration-isolation-forest",
            "body-part-detector",
            "pose-detector",
            "pedestrian-detector",
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
    fn a_type_error_in_a_tagged_table_names_its_key() {
        let err = Manifest::parse(&CLASSIFIER.replace("width = 224", "width = 224\npad_value = \"grey\"")).unwrap_err();
        assert!(err.starts_with("`input.pad_value`: invalid type: string \"grey\""), "{err}");
        let err = Manifest::parse(&CLASSIFIER.replace("std = [0.229, 0.224, 0.225]", "std = [0.229, \"x\", 0.225]"))
            .unwrap_err();
        assert!(err.starts_with("`input.std[1]`: invalid type: string \"x\""), "{err}");
        let err = Manifest::parse(&format!("{CLASSIFIER}top_k = \"five\"\n")).unwrap_err();
        assert!(err.starts_with("`output.top_k`: invalid type: string \"five\""), "{err}");
        // Outside the tagged tables toml's own message already names the line and key.
        let err = Manifest::parse(&CLASSIFIER.replace("name = \"demo\"", "name = 3")).unwrap_err();
        assert!(err.contains("name = 3"), "{err}");
    }

    #[test]
    fn every_named_file_must_be_a_plain_relative_path() {
        let text =
            CLASSIFIER.replace("labels = [\"a\", \"b\"]", "model = \"../x.onnx\"\nlabels_file = \"/etc/labels\"");
        let err = Manifest::parse(&text).unwrap_err();
        assert!(err.contains("`model` \"../x.onnx\" is not a plain relative path"), "{err}");
        assert!(err.contains("`labels_file` \"/etc/labels\" is not a plain relative path"), "{err}");
    }

    #[test]
    fn label_sources_are_exclusive_and_named_in_errors() {
        let metadata = CLASSIFIER.replace("labels = [\"a\", \"b\"]", "labels_metadata = \"classes\"");
        let m = Manifest::parse(&metadata).unwrap();
        assert_eq!((m.labels_metadata.as_deref(), m.labels_verbatim), (Some("classes"), false));
        let verbatim = metadata.replace("labels_metadata", "labels_verbatim = true\nlabels_file");
        assert!(Manifest::parse(&verbatim).unwrap().labels_verbatim);
        let both = CLASSIFIER.replace("labels = ", "labels_metadata = \"classes\"\nlabels = ");
        let err = Manifest::parse(&both).unwrap_err();
        assert!(err.contains("give one of `labels`, `labels_file` and `labels_metadata`"), "{err}");
        let empty = CLASSIFIER.replace("labels = [\"a\", \"b\"]", "labels_metadata = \"\"");
        assert!(Manifest::parse(&empty).unwrap_err().contains("`labels_metadata` is empty"));
        let alone = CLASSIFIER.replace("labels = ", "labels_verbatim = true\nlabels = ");
        let err = Manifest::parse(&alone).unwrap_err();
        assert!(err.contains("`labels_verbatim` applies only to `labels_file` or `labels_metadata`"), "{err}");
    }

    #[test]
    fn anomaly_direction_and_label_keys_default_to_the_old_behaviour_and_are_checked() {
        let anomaly = CLASSIFIER.replace("task = \"classification\"", "task = \"anomaly\"").replace(
            "decoder = \"classification\"\ntensor = \"logits\"",
            "decoder = \"anomaly\"\ntensor = \"score\"\nthreshold = 0.0",
        );
        let OutputSpec::Anomaly(spec) = Manifest::parse(&anomaly).unwrap().output else { panic!("anomaly expected") };
        assert_eq!((spec.direction, &spec.label_tensor, spec.anomalous_label()), (AnomalyDirection::Higher, &None, -1));
        assert!(spec.is_anomalous(0.1) && !spec.is_anomalous(0.0) && !spec.is_anomalous(-0.1));
        let lower = format!("{anomaly}direction = \"lower\"\nlabel_tensor = \"label\"\nanomalous_label = 0\n");
        let OutputSpec::Anomaly(spec) = Manifest::parse(&lower).unwrap().output else { panic!("anomaly expected") };
        assert_eq!(
            (spec.direction, spec.label_tensor.as_deref(), spec.anomalous_label()),
            (AnomalyDirection::Lower, Some("label"), 0)
        );
        assert!(spec.is_anomalous(-0.1) && !spec.is_anomalous(0.0) && !spec.is_anomalous(0.1));
        assert!(Manifest::parse(&format!("{anomaly}direction = \"sideways\"\n")).unwrap_err().contains("sideways"));
        let same = Manifest::parse(&format!("{anomaly}label_tensor = \"score\"\n")).unwrap_err();
        assert!(same.contains("`output.label_tensor` must be another output than `output.tensor`"), "{same}");
        let orphan = Manifest::parse(&format!("{anomaly}anomalous_label = -1\n")).unwrap_err();
        assert!(orphan.contains("`output.anomalous_label` needs `output.label_tensor`"), "{orphan}");
    }

    #[test]
    fn a_cascade_names_a_subdirectory_and_each_bad_key() {
        let detector = CLASSIFIER
            .replace("task = \"classification\"", "task = \"detection\"")
            .replace("decoder = \"classification\"\ntensor = \"logits\"", "decoder = \"yolov8\"\ntensor = \"out\"");
        let good = format!("{detector}[cascade]\nbundle = \"classifier\"\nlabels = [\"a\"]\nsquare = true\n");
        let cascade = Manifest::parse(&good).unwrap().cascade.unwrap();
        assert_eq!((cascade.max_crops, cascade.margin, cascade.square), (8, 0.0, true));
        let bad = format!("{detector}[cascade]\nbundle = \"../x\"\nmax_crops = 0\nmargin = 2.0\n");
        let err = Manifest::parse(&bad).unwrap_err();
        assert!(err.contains("`cascade.bundle` \"../x\" must name a subdirectory of the bundle"), "{err}");
        assert!(err.contains("`cascade.max_crops` must be within 1..=256"), "{err}");
        assert!(err.contains("`cascade.margin` must be within 0..=1"), "{err}");
        let on_a_classifier = format!("{CLASSIFIER}[cascade]\nbundle = \"classifier\"\n");
        assert!(Manifest::parse(&on_a_classifier).unwrap_err().contains("`cascade` needs a detector"));
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
