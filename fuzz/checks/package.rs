//! An untrusted single-file package as the device reads it: `inspect` (manifest and signature line, the sha256
//! of the whole file), then, re-signed with a key the fuzzer trusts so that the bytes get past the signature,
//! `unpack` into a fresh directory (entry names, order, sizes, every checksum).

use packaging::SigningKey;
use packaging::package::{inspect, sign_package, unpack};
use std::sync::LazyLock;

static KEY: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::generate().unwrap());

/// Panics where the product breaks a rule on `data`.
pub fn check(data: &[u8]) {
    // On tmpfs where there is one (scripts/fuzz.sh points TMPDIR there): unpack fsyncs every file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fuzzed.bundle");
    std::fs::write(&path, data).unwrap();
    let Ok(info) = inspect(&path) else { return };
    assert_eq!(info.size, data.len() as u64);
    if sign_package(&path, &KEY).is_ok() {
        let _ = unpack(&path, &dir.path().join("bundle"), &[KEY.public_key()]);
    }
}
