//! The optimised-model cache: ONNX Runtime writes the graph it optimised, in its own ORT format, while it builds a
//! session from the bundle's model; later sessions load that file instead, skipping parsing and optimisation, and
//! run on its bytes directly (no second copy of the weights).
//!
//! An entry is named by the model's sha256 and a digest of what the optimised graph depends on: the optimisation
//! level, the ONNX Runtime build and the CPU (level `all` bakes the CPU's vector width into the layout). A
//! `.sha256` file beside it guards against a torn or rotten file. The cache only ever speeds a start up: any entry
//! that is missing, unreadable, corrupt or refused by ONNX Runtime is removed and the session is built from the
//! bundle, which writes it again. It guards against storage faults, not against someone who can write the
//! state directory.

use crate::bundle::hex_sha256;
use crate::session_settings::GraphOptimization;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The file name suffix of a cached model.
const MODEL_SUFFIX: &str = ".ort";
/// The suffix of its sha256 beside it.
const DIGEST_SUFFIX: &str = ".ort.sha256";

/// Distinguishes the staging files of sessions built at the same time.
static STAGING_SERIAL: AtomicU64 = AtomicU64::new(0);

/// One model's entry in the cache directory.
#[derive(Debug)]
pub(crate) struct CacheEntry {
    dir: PathBuf,
    /// `<model sha256, 16 hex>-`: every entry of this model starts with it.
    model_prefix: String,
    path: PathBuf,
    digest_path: PathBuf,
}

impl CacheEntry {
    /// The entry of the model with `model_sha256` optimised at `optimization`, in `dir`.
    pub(crate) fn new(dir: &Path, model_sha256: &str, optimization: GraphOptimization) -> CacheEntry {
        let key = format!(
            "{model_sha256}\n{}\n{}\n{}\n{}",
            optimization.name(),
            std::env::consts::ARCH,
            ort::info(),
            cpu_signature()
        );
        let model_prefix = format!("{}-", &model_sha256[..16.min(model_sha256.len())]);
        let name = format!("{model_prefix}{}", &hex_sha256(key.as_bytes())[..16]);
        CacheEntry {
            dir: dir.to_owned(),
            path: dir.join(format!("{name}{MODEL_SUFFIX}")),
            digest_path: dir.join(format!("{name}{DIGEST_SUFFIX}")),
            model_prefix,
        }
    }

    /// The cached model, when there is one whose bytes match its digest; an entry that does not is removed.
    pub(crate) fn read(&self) -> Option<Vec<u8>> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return None,
            Err(error) => {
                log::warn!("Optimised model {} unreadable, rebuilding it: {error}", self.path.display());
                self.remove();
                return None;
            }
        };
        let recorded = std::fs::read_to_string(&self.digest_path).unwrap_or_default();
        if recorded.trim() != hex_sha256(&bytes) {
            log::warn!("Optimised model {} does not match its sha256, rebuilding it", self.path.display());
            self.remove();
            return None;
        }
        Some(bytes)
    }

    /// Where ONNX Runtime writes the entry while it builds the session; [`CacheEntry::store`] moves it in place.
    pub(crate) fn staging_path(&self) -> io::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)?;
        let serial = STAGING_SERIAL.fetch_add(1, Ordering::Relaxed);
        Ok(self.path.with_extension(format!("{}-{serial}.tmp", std::process::id())))
    }

    /// Makes the file ONNX Runtime wrote at `staged` this entry, and removes the model's other files (entries of
    /// another level or an older ONNX Runtime, staging files a crash left). Renames are atomic, so a crash leaves either no entry or a whole one; the
    /// digest is written first, so a model file never stands without the digest it needs.
    pub(crate) fn store(&self, staged: &Path) -> io::Result<()> {
        let digest = hex_sha256(&std::fs::read(staged)?);
        let staged_digest = staged.with_extension("sha256.tmp");
        std::fs::write(&staged_digest, format!("{digest}\n"))?;
        std::fs::rename(&staged_digest, &self.digest_path)?;
        std::fs::rename(staged, &self.path)?;
        self.remove_other_entries()
    }

    /// Removes the entry (both files); what cannot be removed is left to be overwritten.
    pub(crate) fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_file(&self.digest_path);
    }

    fn remove_other_entries(&self) -> io::Result<()> {
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
            if name.starts_with(&self.model_prefix) && path != self.path && path != self.digest_path {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(())
    }

    /// The cached model's path, for messages.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// What identifies this CPU's instruction set: the first processor's model and feature flags in `/proc/cpuinfo`
/// (empty where there is none). Clock speeds are left out, so it does not change from one boot to the next.
fn cpu_signature() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let first = cpuinfo.split("\n\n").next().unwrap_or_default();
    first
        .lines()
        .filter(|line| {
            ["model name", "flags", "Features", "CPU implementer", "CPU part"].iter().any(|key| line.starts_with(key))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "9225e1cf5b293066e7b530c73e15fe5a35b3bea4d6b9b3d87f3080f93e1dc1a9";

    fn stored(dir: &Path, optimization: GraphOptimization, content: &[u8]) -> CacheEntry {
        let entry = CacheEntry::new(dir, SHA, optimization);
        let staged = entry.staging_path().expect("staging path");
        std::fs::write(&staged, content).expect("staged");
        entry.store(&staged).expect("stored");
        entry
    }

    #[test]
    fn a_stored_entry_reads_back_and_leaves_no_staging_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let entry = stored(dir.path(), GraphOptimization::All, b"optimised");
        assert_eq!(entry.read().as_deref(), Some(&b"optimised"[..]));
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names[0].starts_with("9225e1cf5b293066-") && names[0].ends_with(".ort"), "{names:?}");
        assert_eq!(names[1], format!("{}.sha256", names[0]));
    }

    #[test]
    fn a_corrupt_or_undigested_entry_is_a_miss_and_is_removed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let entry = stored(dir.path(), GraphOptimization::All, b"optimised");
        std::fs::write(entry.path(), b"optimisee").expect("flipped");
        assert_eq!(entry.read(), None);
        assert!(!entry.path().exists());

        let entry = stored(dir.path(), GraphOptimization::All, b"optimised");
        std::fs::remove_file(&entry.digest_path).expect("digest removed");
        assert_eq!(entry.read(), None);
        assert!(!entry.path().exists());
    }

    #[test]
    fn another_level_is_another_entry_and_replaces_the_model_s_old_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let all = stored(dir.path(), GraphOptimization::All, b"all");
        let other_model = CacheEntry::new(dir.path(), &SHA.replace('9', "8"), GraphOptimization::All);
        let staged = other_model.staging_path().expect("staging path");
        std::fs::write(&staged, b"other").expect("staged");
        other_model.store(&staged).expect("stored");
        let basic = stored(dir.path(), GraphOptimization::Basic, b"basic");
        assert_ne!(all.path(), basic.path());
        assert_eq!(all.read(), None, "the model's entry at another level is gone");
        assert_eq!(basic.read().as_deref(), Some(&b"basic"[..]));
        assert_eq!(other_model.read().as_deref(), Some(&b"other"[..]), "other models' entries stay");
    }
}
