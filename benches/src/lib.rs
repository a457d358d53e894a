//! Shared setup of the criterion benches in `benches/benches/`: the repository's models and frames, ONNX Runtime,
//! and the criterion settings that keep `cargo bench -p benches` to a few minutes on a small machine.
//!
//! ```sh
//! ORT_DYLIB_PATH=$PWD/third_party/onnxruntime/x86_64/libonnxruntime.so.1.31.1 cargo bench -p benches
//! cargo bench -p benches --bench frame -- face   # one file, benches whose id contains "face"
//! ```
//!
//! The bench profile inherits the release profile (`opt-level = "s"`, LTO), so the figures are those of the
//! shipped agent's code.

use criterion::Criterion;
use runtime::manifest::{ImageInputSpec, InputSpec};
use runtime::preprocess::{Geometry, ImagePreprocessor};
use runtime::{Bundle, InputTensor, OnnxRuntime};
use std::path::PathBuf;
use std::time::Duration;

/// The classifier bundle (EfficientNet-Lite0, 224x224 center crop).
pub const CLASSIFIER: &str = "image-classifier";
/// The face detector bundle (CenterFace, 640x480 letterbox).
pub const FACE_DETECTOR: &str = "face-detector";

/// The repository root (this crate's parent directory).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The ONNX Runtime library the benches load: `ORT_DYLIB_PATH`, else the one under `third_party/`.
pub fn ort_library() -> PathBuf {
    std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("third_party/onnxruntime/x86_64/libonnxruntime.so.1.31.1"))
}

/// The process-wide ONNX Runtime.
pub fn onnx_runtime() -> OnnxRuntime {
    let path = ort_library();
    OnnxRuntime::load(&path)
        .unwrap_or_else(|e| panic!("loading ONNX Runtime from {} (set ORT_DYLIB_PATH): {e}", path.display()))
}

/// The bundle `models/<name>`.
pub fn bundle(name: &str) -> Bundle {
    let dir = repo_root().join("models").join(name);
    Bundle::load(&dir).unwrap_or_else(|e| panic!("loading bundle {}: {e}", dir.display()))
}

/// The image input spec of an image bundle.
pub fn image_spec(bundle: &Bundle) -> &ImageInputSpec {
    match &bundle.manifest().input {
        InputSpec::Image(spec) => spec,
        InputSpec::Sensor(_) => panic!("{} takes sensor windows, not images", bundle.dir().display()),
    }
}

/// One of the shipped sample frames, encoded.
#[derive(Debug, Clone)]
pub struct Frame {
    /// File name, e.g. `people.jpg`.
    pub name: String,
    /// The encoded bytes.
    pub bytes: Vec<u8>,
    /// Width of the decoded image.
    pub width: u32,
    /// Height of the decoded image.
    pub height: u32,
}

impl Frame {
    /// Pixels of the decoded image, the throughput unit of the image benches.
    pub fn pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }
}

/// Every `models/frames/*.jpg|png`, sorted by name, with their decoded sizes.
pub fn frames() -> Vec<Frame> {
    let dir = repo_root().join("models/frames");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "jpg" || ext == "jpeg" || ext == "png"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no frames under {}", dir.display());
    let probe_spec = image_spec(&bundle(CLASSIFIER)).clone();
    let mut probe = ImagePreprocessor::new(&probe_spec);
    paths
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            let (width, height) = probe.decode(&bytes).unwrap_or_else(|e| panic!("decoding {}: {e}", path.display()));
            let name = path.file_name().expect("file name").to_string_lossy().into_owned();
            Frame { name, bytes, width, height }
        })
        .collect()
}

/// The frame named `name` (e.g. `people.jpg`).
pub fn frame(name: &str) -> Frame {
    frames().into_iter().find(|f| f.name == name).unwrap_or_else(|| panic!("no frame {name} in models/frames"))
}

/// An input tensor owned, as a preprocessor wrote it.
#[derive(Debug, Clone)]
pub enum OwnedTensor {
    /// 32-bit floats.
    F32(Vec<f32>),
    /// Bytes.
    U8(Vec<u8>),
}

impl OwnedTensor {
    /// Borrowed, for [`runtime::Engine::run`].
    pub fn view(&self) -> InputTensor<'_> {
        match self {
            OwnedTensor::F32(data) => InputTensor::F32(data),
            OwnedTensor::U8(data) => InputTensor::U8(data),
        }
    }
}

/// `frame` decoded and preprocessed for `bundle`: the input tensor, its shape and the geometry back to the frame.
pub fn preprocessed(bundle: &Bundle, frame: &Frame) -> (OwnedTensor, [usize; 4], Geometry) {
    let spec = image_spec(bundle);
    let mut pre = ImagePreprocessor::new(spec);
    pre.decode(&frame.bytes).unwrap_or_else(|e| panic!("decoding {}: {e}", frame.name));
    let geometry = pre.prepare().unwrap_or_else(|e| panic!("preparing {}: {e}", frame.name));
    let tensor = match pre.tensor() {
        InputTensor::F32(data) => OwnedTensor::F32(data.to_vec()),
        InputTensor::U8(data) => OwnedTensor::U8(data.to_vec()),
        _ => panic!("the benches take f32 and u8 image inputs only, not {}", spec.dtype.name()),
    };
    (tensor, spec.shape(), geometry)
}

/// Criterion settings for stages of microseconds to a few milliseconds: 20 samples, short warm-up and
/// measurement.
pub fn quick() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args()
}

/// Criterion settings for whole frames (tens of milliseconds each): 20 samples over a few seconds. Groups of
/// slow benches also set [`criterion::SamplingMode::Flat`], so 20 samples need only 20 iterations.
pub fn slow() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args()
}
