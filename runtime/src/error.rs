//! The runtime's one error type. Callers match on the variant (fall back to another provider, count a bad
//! frame, refuse a bundle); [`Error::kind`] gives the stable name used for counters and error events.

use protocol::error::{ErrorKind, ErrorStage};
use std::path::PathBuf;

/// Result with the runtime's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How to get a library, for the machine this was built for.
#[cfg(not(target_arch = "arm"))]
const LIBRARY_HINT: &str = "Point `onnxruntime.library` (or ORT_DYLIB_PATH) at a libonnxruntime.so.1.x built for \
     this machine; `scripts/fetch-onnxruntime.sh` takes it from the `onnxruntime` wheel on PyPI";
#[cfg(target_arch = "arm")]
const LIBRARY_HINT: &str = "No registry ships ONNX Runtime for 32-bit ARM: build it from source (cross/README.md, \
     \"armv7\") and point `onnxruntime.library` (or ORT_DYLIB_PATH) at it";

/// Everything the runtime can refuse, with the data a caller needs to act on it.
// The variant docs say what each error means; its fields are named for the data they carry.
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `libonnxruntime` could not be loaded or initialised.
    #[error("cannot load ONNX Runtime from {path}: {reason}. {hint}", hint = LIBRARY_HINT)]
    RuntimeLibrary { path: PathBuf, reason: String },

    /// A file of a bundle could not be read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The manifest is not valid TOML or breaks a rule of the bundle format.
    #[error("manifest {path}: {message}")]
    Manifest { path: PathBuf, message: String },

    /// A file of the bundle is not the one the manifest was written for. `what` is `model` for the model
    /// (`sha256`) and `file` for the entries of `[checksums]`.
    #[error("{what} {path}: sha256 is {actual}, but the manifest says {expected}")]
    ChecksumMismatch { what: &'static str, path: PathBuf, expected: String, actual: String },

    /// The bundle's reference profile does not parse or does not fit the model's features (named in `message`).
    #[error("profile {path}: {message}")]
    Profile { path: PathBuf, message: String },

    /// A cascade's second stage does not fit its first (`problems` name their keys, joined by `; `).
    #[error("cascade: {problems}")]
    Cascade { problems: String },

    /// The manifest describes inputs or outputs the graph does not have.
    #[error("model {path}: {what}: the manifest says {manifest}, the graph has {graph}")]
    ManifestMismatch { path: PathBuf, what: String, manifest: String, graph: String },

    /// ONNX Runtime refused the model (not ONNX, unsupported operator, ...).
    #[error("model {path}: ONNX Runtime cannot load it: {reason}")]
    ModelLoad { path: PathBuf, reason: String },

    /// An execution provider could not be registered.
    #[error("execution provider {provider} is unavailable: {reason}")]
    Provider { provider: &'static str, reason: String },

    /// `require` was set and none of the preferred accelerators could be registered.
    #[error("none of the required execution providers [{requested}] is available; refusing to fall back to CPU")]
    ProviderRequired { requested: String },

    /// The input is empty.
    #[error("input is empty (0 bytes)")]
    EmptyInput,

    /// The bytes are not a decodable JPEG or PNG.
    #[error("cannot decode image: {reason}")]
    Decode { reason: String },

    /// The image header announces more pixels than the decoder is allowed to allocate.
    #[error("image is {width}x{height}, larger than the {max_pixels}-pixel limit (decompression bomb?)")]
    ImageTooLarge { width: u32, height: u32, max_pixels: u64 },

    /// Decoded, the frame would take more memory than the limit allows (many pixels, 16-bit samples, a
    /// progressive JPEG's coefficients, a resize intermediate); refused before the decoder allocates it.
    #[error("decoded size {bytes} bytes exceeds the limit of {limit} bytes ({width}x{height}, {pixel_format})")]
    DecodedTooLarge { bytes: u64, limit: u64, width: u32, height: u32, pixel_format: String },

    /// A sensor window does not have the shape the model expects.
    #[error(
        "sensor window is {got_samples} samples x {got_channels} channels, the model expects {expected_samples} x \
         {expected_channels}"
    )]
    SensorShape { expected_channels: usize, expected_samples: usize, got_channels: usize, got_samples: usize },

    /// A sensor window holds NaN or infinity.
    #[error("sensor window has a non-finite value ({value}) at sample {sample}, channel {channel}")]
    NonFinite { sample: usize, channel: usize, value: f32 },

    /// The input kind does not match the model (an image for a sensor model, or the reverse).
    #[error("this model takes {expected} input, got {got}")]
    WrongInputKind { expected: &'static str, got: &'static str },

    /// An input tensor is not the one the model takes: a buffer of another element type or size, or an
    /// input prepared for another input spec (the model was replaced since) or not prepared at all.
    #[error("the input tensor is {got}, the model takes {expected}")]
    TensorMismatch { expected: String, got: String },

    /// `Session::run` failed.
    #[error("inference failed: {reason}")]
    Inference { reason: String },

    /// An output tensor does not have the shape its decoder needs.
    #[error("output {tensor}: {reason}")]
    Output { tensor: String, reason: String },

    /// An output the decoder reads holds NaN or infinity (the model is broken for this input).
    #[error("output {tensor} has a non-finite value ({value}) at index {index}")]
    NonFiniteOutput { tensor: String, index: usize, value: f32 },
}

impl Error {
    /// A stable snake_case name for the error, used as the key of error counters and in error events.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::RuntimeLibrary { .. } => ErrorKind::RuntimeLibrary,
            Error::Io { .. } => ErrorKind::Io,
            Error::Manifest { .. } => ErrorKind::Manifest,
            Error::ChecksumMismatch { .. } => ErrorKind::ChecksumMismatch,
            // A bad profile makes a bad bundle, as a bad manifest does.
            Error::Profile { .. } => ErrorKind::Manifest,
            // A cascade is configured in a manifest or beside one: its mistakes are the configuration's.
            Error::Cascade { .. } => ErrorKind::Manifest,
            Error::ManifestMismatch { .. } => ErrorKind::ManifestMismatch,
            Error::ModelLoad { .. } => ErrorKind::ModelLoad,
            Error::Provider { .. } => ErrorKind::Provider,
            Error::ProviderRequired { .. } => ErrorKind::ProviderRequired,
            Error::EmptyInput => ErrorKind::EmptyInput,
            Error::Decode { .. } => ErrorKind::Decode,
            Error::ImageTooLarge { .. } | Error::DecodedTooLarge { .. } => ErrorKind::ImageTooLarge,
            Error::SensorShape { .. } => ErrorKind::SensorShape,
            Error::NonFinite { .. } => ErrorKind::NonFinite,
            Error::WrongInputKind { .. } | Error::TensorMismatch { .. } => ErrorKind::WrongInputKind,
            Error::Inference { .. } => ErrorKind::Inference,
            Error::Output { .. } => ErrorKind::Output,
            Error::NonFiniteOutput { .. } => ErrorKind::NonFiniteOutput,
        }
    }

    /// The pipeline stage an inference error comes from: `decode`, `preprocess`, `inference`, `postprocess`;
    /// `load` for errors of bundles, providers and the runtime library.
    pub fn stage(&self) -> ErrorStage {
        match self {
            Error::EmptyInput | Error::Decode { .. } | Error::ImageTooLarge { .. } | Error::DecodedTooLarge { .. } => {
                ErrorStage::Decode
            }
            Error::SensorShape { .. }
            | Error::NonFinite { .. }
            | Error::WrongInputKind { .. }
            | Error::TensorMismatch { .. } => ErrorStage::Preprocess,
            Error::Inference { .. } => ErrorStage::Inference,
            Error::Output { .. } => ErrorStage::Postprocess,
            Error::NonFiniteOutput { .. } => ErrorStage::Postprocess,
            _ => ErrorStage::Load,
        }
    }

    /// True when the error is about one input (the frame or window is bad), not about the model or the runtime.
    pub fn is_input_error(&self) -> bool {
        matches!(
            self,
            Error::EmptyInput
                | Error::Decode { .. }
                | Error::ImageTooLarge { .. }
                | Error::DecodedTooLarge { .. }
                | Error::SensorShape { .. }
                | Error::NonFinite { .. }
                | Error::WrongInputKind { .. }
        )
    }
}
