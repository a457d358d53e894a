//! What turns a model bundle into an over-the-air update and back: single-file [`package`]s, Ed25519
//! [`signature`]s over their manifests and over operators' signed [`order`]s, and the golden [`selftest`]
//! vectors a device runs before a new model serves. Only the update path and the operator's tools need it; inference needs the `runtime` alone.
#![warn(missing_docs)]

mod error;
mod hashing;
pub mod order;
pub mod package;
pub mod selftest;
pub mod signature;

pub use error::{Error, Result};
pub use hashing::{HashingReader, hex_sha256};
pub use package::PackageInfo;
pub use selftest::{SelfTest, SelfTestCase, SelfTestInput};
pub use signature::{PublicKey, SignatureLine, SigningKey};
