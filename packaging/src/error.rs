//! The packaging error type. [`Error::kind`] gives the same stable names the runtime's errors have, so that
//! counters and error events need not care which crate refused.

use protocol::error::ErrorKind;
use std::path::PathBuf;

/// Result with the packaging [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything packing, signing, unpacking and self-testing can refuse.
// The variant docs say what each error means; its fields are named for the data they carry.
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The runtime refused the bundle (a checksum, the manifest, the model).
    #[error(transparent)]
    Runtime(#[from] runtime::Error),

    /// A file of a package, a bundle or a key could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The bundle's golden-vector file cannot be read as one.
    #[error("self-test vectors {path}: {message}")]
    SelfTestFile { path: PathBuf, message: String },

    /// A golden vector failed: the pipeline refused its input or its output differs from the expected one.
    /// `message` starts with the JSON path of the first difference (`cases[0].classification...`).
    #[error("self-test failed: {message}")]
    SelfTest { case: usize, message: String },

    /// A package is not a well-formed single-file bundle; `message` names the entry.
    #[error("package {path}: {message}")]
    Package { path: PathBuf, message: String },

    /// The package has no `manifest.sig`, and signatures are required.
    #[error("the package is unsigned; a signature by a trusted key is required")]
    Unsigned,

    /// `manifest.sig`, a key file or a key is not in the expected format.
    #[error("malformed {what}: {message}")]
    MalformedSignature { what: &'static str, message: String },

    /// The signature is by a key that is not among the trusted ones; `key` is the start of its hex, `signed`
    /// what was signed ("the package", "the order").
    #[error("{signed} is signed by key {key}…, which is not trusted")]
    UntrustedKey { signed: &'static str, key: String },

    /// The signature does not match what it signs (edited after signing, or the signature is forged).
    #[error("the signature by key {key}… does not match {signed}")]
    BadSignature { signed: &'static str, key: String },

    /// A signed order is not an envelope around an order; `message` says what is wrong.
    #[error("malformed signed order: {message}")]
    MalformedOrder { message: String },
}

impl Error {
    /// A stable snake_case name for the error, used as the key of error counters and in error events.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Runtime(error) => error.kind(),
            Error::Io { .. } => ErrorKind::Io,
            Error::SelfTestFile { .. } => ErrorKind::SelfTestFile,
            Error::SelfTest { .. } => ErrorKind::SelfTest,
            Error::Package { .. } => ErrorKind::Package,
            Error::Unsigned => ErrorKind::Unsigned,
            Error::MalformedSignature { .. } => ErrorKind::MalformedSignature,
            Error::UntrustedKey { .. } => ErrorKind::UntrustedKey,
            Error::BadSignature { .. } => ErrorKind::BadSignature,
            Error::MalformedOrder { .. } => ErrorKind::Malformed,
        }
    }
}
