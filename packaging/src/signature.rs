//! Ed25519 signatures over a package's manifest. The manifest holds the sha256 of every other file, so one
//! signature over its exact bytes covers the whole bundle.
//!
//! Formats, one line each: a private key file is `ed25519-private <seed, 64 hex>`, a public key file is the
//! key's 64 hex, and `manifest.sig` is `ed25519 <public key, 64 hex> <signature, 128 hex>`.

use crate::error::{Error, Result};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use zeroize::Zeroizing;

const PRIVATE_KEY_TAG: &str = "ed25519-private";
const SIGNATURE_TAG: &str = "ed25519";
/// Hex digits of a key shown in messages: enough to tell keys apart, short enough to read.
const KEY_PREFIX_LEN: usize = 16;
/// Room for a private key file (81 bytes): read into a buffer this large, it is never reallocated, so no copy
/// of the key is left behind unwiped. A longer file is cut here and refused as malformed.
const KEY_FILE_ROOM: usize = 128;

/// An Ed25519 private key (its 32-byte seed), wiped from memory when dropped. `Debug` shows only the public key.
#[derive(Clone)]
pub struct SigningKey {
    seed: Zeroizing<[u8; 32]>,
}

/// An Ed25519 public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

/// The content of `manifest.sig`: who signed, and the signature over the manifest's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureLine {
    key: PublicKey,
    signature: [u8; 64],
}

impl SigningKey {
    /// A new key from the system's secure random source.
    pub fn generate() -> Result<SigningKey> {
        let mut seed = Zeroizing::new([0u8; 32]);
        SystemRandom::new().fill(seed.as_mut()).map_err(|_| Error::Io {
            path: "(the system's random source)".into(),
            source: std::io::Error::other("cannot get random bytes for a key"),
        })?;
        Ok(SigningKey { seed })
    }

    /// Reads a private key file (`ed25519-private <seed hex>`).
    pub fn read(path: &Path) -> Result<SigningKey> {
        let mut text = Zeroizing::new(String::with_capacity(KEY_FILE_ROOM));
        File::open(path)
            .and_then(|file| file.take(KEY_FILE_ROOM as u64).read_to_string(&mut text))
            .map_err(|source| Error::Io { path: path.to_owned(), source })?;
        let malformed = |message: String| Error::MalformedSignature {
            what: "private key file",
            message: format!("{}: {message}", path.display()),
        };
        let seed_hex = text
            .trim_end_matches('\n')
            .strip_prefix(PRIVATE_KEY_TAG)
            .and_then(|rest| rest.strip_prefix(' '))
            .ok_or_else(|| malformed(format!("expected one line `{PRIVATE_KEY_TAG} <64 hex digits>`")))?;
        let mut seed = Zeroizing::new([0u8; 32]);
        // Not through `decode_hex`, whose messages quote the digits: a message must not carry the key.
        hex::decode_to_slice(seed_hex, seed.as_mut())
            .map_err(|e| malformed(format!("expected one line `{PRIVATE_KEY_TAG} <64 hex digits>`: {e}")))?;
        Ok(SigningKey { seed })
    }

    /// Writes the private key file with mode 0600. Refuses to replace an existing file.
    pub fn write(&self, path: &Path) -> Result<()> {
        let io = |source| Error::Io { path: path.to_owned(), source };
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io)?;
        let mut seed_hex = Zeroizing::new([0; 64]);
        hex::encode_to_slice(self.seed.as_ref(), seed_hex.as_mut()).expect("32 bytes are 64 hex digits");
        let line = Zeroizing::new([PRIVATE_KEY_TAG.as_bytes(), b" ", seed_hex.as_ref(), b"\n"].concat());
        file.write_all(&line).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        let public = self.key_pair().public_key().as_ref().try_into().expect("Ed25519 public keys are 32 bytes");
        PublicKey(public)
    }

    /// Signs `bytes` (the exact bytes of a package's `manifest.toml` entry, or of a signed order).
    pub fn sign(&self, bytes: &[u8]) -> SignatureLine {
        let signature = self.key_pair().sign(bytes).as_ref().try_into().expect("Ed25519 signatures are 64 bytes");
        SignatureLine { key: self.public_key(), signature }
    }

    fn key_pair(&self) -> Ed25519KeyPair {
        Ed25519KeyPair::from_seed_unchecked(self.seed.as_ref()).expect("any 32-byte seed is an Ed25519 key")
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("public_key", &self.public_key()).finish_non_exhaustive()
    }
}

impl PublicKey {
    /// Parses 64 hex digits (either case).
    pub fn from_hex(hex: &str) -> Result<PublicKey> {
        let mut key = [0; 32];
        decode_hex(hex.trim(), &mut key)
            .map_err(|message| Error::MalformedSignature { what: "public key", message })?;
        Ok(PublicKey(key))
    }

    /// The key as 64 lower-case hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Reads a public key file (one line of 64 hex digits).
    pub fn read(path: &Path) -> Result<PublicKey> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
        PublicKey::from_hex(&text).map_err(|error| match error {
            Error::MalformedSignature { message, .. } => {
                Error::MalformedSignature { what: "public key file", message: format!("{}: {message}", path.display()) }
            }
            other => other,
        })
    }

    /// Writes a public key file. Refuses to replace an existing file.
    pub fn write(&self, path: &Path) -> Result<()> {
        let io = |source| Error::Io { path: path.to_owned(), source };
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(io)?;
        file.write_all(format!("{}\n", self.to_hex()).as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// The first hex digits, to name the key in messages.
    pub fn short_hex(&self) -> String {
        self.to_hex()[..KEY_PREFIX_LEN].to_owned()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl SignatureLine {
    /// Parses the content of `manifest.sig` (one trailing newline allowed).
    pub fn parse(line: &str) -> Result<SignatureLine> {
        let malformed = |message: String| Error::MalformedSignature { what: "signature line", message };
        let line = line.strip_suffix('\n').unwrap_or(line);
        let fields: Vec<&str> = line.split(' ').collect();
        let [tag, key, signature] = fields[..] else {
            return Err(malformed(format!(
                "expected `{SIGNATURE_TAG} <public key, 64 hex> <signature, 128 hex>`, got {} fields",
                fields.len()
            )));
        };
        if tag != SIGNATURE_TAG {
            return Err(malformed(format!("unknown algorithm {tag:?}; expected {SIGNATURE_TAG:?}")));
        }
        let (mut key_bytes, mut signature_bytes) = ([0; 32], [0; 64]);
        decode_hex(key, &mut key_bytes).map_err(|message| malformed(format!("public key: {message}")))?;
        decode_hex(signature, &mut signature_bytes).map_err(|message| malformed(format!("signature: {message}")))?;
        Ok(SignatureLine { key: PublicKey(key_bytes), signature: signature_bytes })
    }

    /// The key that made the signature.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }
}

impl fmt::Display for SignatureLine {
    /// The line without its newline; `manifest.sig` holds it followed by `\n`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SIGNATURE_TAG} {} {}", self.key, hex::encode(self.signature))
    }
}

/// Checks `signature_line` (the content of `manifest.sig`, `None` when the package has none) against
/// `manifest_bytes` and returns the key that signed. The key must be in `trusted`.
pub fn verify(manifest_bytes: &[u8], signature_line: Option<&str>, trusted: &[PublicKey]) -> Result<PublicKey> {
    verify_line("the package", manifest_bytes, signature_line.ok_or(Error::Unsigned)?, trusted)
}

/// Checks `signature_line` against `bytes`, which are `signed` ("the package", "the order", for messages), and
/// returns the key that signed. The key must be in `trusted`.
pub(crate) fn verify_line(
    signed: &'static str,
    bytes: &[u8],
    signature_line: &str,
    trusted: &[PublicKey],
) -> Result<PublicKey> {
    let line = SignatureLine::parse(signature_line)?;
    if !trusted.contains(&line.key) {
        return Err(Error::UntrustedKey { signed, key: line.key.short_hex() });
    }
    UnparsedPublicKey::new(&ED25519, &line.key.0)
        .verify(bytes, &line.signature)
        .map_err(|_| Error::BadSignature { signed, key: line.key.short_hex() })?;
    Ok(line.key)
}

/// Fills `bytes` from `2 * bytes.len()` hex digits (either case); the message quotes the start of `digits`.
fn decode_hex(digits: &str, bytes: &mut [u8]) -> std::result::Result<(), String> {
    hex::decode_to_slice(digits, bytes)
        .map_err(|e| format!("expected {} hex digits, got {:?}: {e}", 2 * bytes.len(), truncate(digits)))
}

/// At most 20 characters of untrusted text, for messages.
fn truncate(text: &str) -> String {
    let mut short: String = text.chars().take(20).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &[u8] = b"name = \"demo\"\n";

    #[test]
    fn a_signature_verifies_against_its_trusted_key() {
        let key = SigningKey::generate().unwrap();
        let line = key.sign(MANIFEST).to_string();
        assert_eq!(line.len(), "ed25519 ".len() + 64 + 1 + 128);
        let signer = verify(MANIFEST, Some(&format!("{line}\n")), &[key.public_key()]).unwrap();
        assert_eq!(signer, key.public_key());
    }

    #[test]
    fn refusals_have_distinct_kinds() {
        let key = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let line = key.sign(MANIFEST).to_string();
        let trusted = [key.public_key()];
        assert_eq!(verify(MANIFEST, None, &trusted).unwrap_err().kind().as_str(), "unsigned");
        assert_eq!(verify(MANIFEST, Some("ed25519 abc"), &trusted).unwrap_err().kind().as_str(), "malformed_signature");
        assert_eq!(
            verify(MANIFEST, Some(&line.replace("ed25519", "rsa")), &trusted).unwrap_err().kind().as_str(),
            "malformed_signature"
        );
        let untrusted = verify(MANIFEST, Some(&line), &[other.public_key()]).unwrap_err();
        assert_eq!(untrusted.kind().as_str(), "untrusted_key");
        assert!(untrusted.to_string().contains(&key.public_key().to_hex()[..16]), "{untrusted}");
        let edited = verify(b"name = \"demo2\"\n", Some(&line), &trusted).unwrap_err();
        assert_eq!(edited.kind().as_str(), "bad_signature");
    }

    #[test]
    fn key_files_round_trip_and_the_private_one_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate().unwrap();
        let (private, public) = (dir.path().join("k.key"), dir.path().join("k.pub"));
        key.write(&private).unwrap();
        key.public_key().write(&public).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&private).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(SigningKey::read(&private).unwrap().public_key(), key.public_key());
        assert_eq!(PublicKey::read(&public).unwrap(), key.public_key());
        assert!(std::fs::read_to_string(&private).unwrap().starts_with("ed25519-private "));
        assert_eq!(key.write(&private).unwrap_err().kind().as_str(), "io", "an existing key is not replaced");
        let hex = key.public_key().to_hex();
        assert_eq!(PublicKey::from_hex(&hex.to_uppercase()).unwrap(), key.public_key());
        assert_eq!(PublicKey::from_hex(&hex[1..]).unwrap_err().kind().as_str(), "malformed_signature");
    }
}
