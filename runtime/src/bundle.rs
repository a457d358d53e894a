//! A model bundle on disk: a directory with `manifest.toml`, the ONNX file, optional labels, optional
//! golden self-test vectors and an optional reference profile for monitoring. The model is hashed when the bundle
//! loads, and read and hashed again when a session is built from it ([`Bundle::read_model`]), so the bytes that
//! run are exactly the bytes that were checked, and no copy of them stays in memory beside ONNX Runtime's own;
//! every other file listed in `[checksums]` is hashed too.

use crate::error::{Error, Result};
use crate::labels;
use crate::manifest::Manifest;
use crate::monitor::{FeatureExtractor, Profile};
use protocol::ModelIdentity;
use ring::digest::{SHA256, digest};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The file name of the manifest inside a bundle directory.
pub const MANIFEST_FILE: &str = "manifest.toml";
/// The file name of the manifest's signature inside a package (and a bundle unpacked from one).
pub const SIGNATURE_FILE: &str = "manifest.sig";

/// A loaded bundle whose model matches the manifest's sha256 and whose other files match `[checksums]`. Not
/// yet checked against the graph: that needs ONNX Runtime and happens when an [`crate::Engine`] is built.
#[derive(Debug, Clone)]
pub struct Bundle {
    dir: PathBuf,
    manifest: Manifest,
    labels: Vec<String>,
    profile: Option<Arc<Profile>>,
}

impl Bundle {
    /// Reads and checks the bundle in `dir`: the model against `sha256`, the other files against `[checksums]`
    /// (which must list the profile), and the profile against the model's monitoring features.
    pub fn load(dir: impl AsRef<Path>) -> Result<Bundle> {
        let dir = dir.as_ref().to_owned();
        let manifest_path = dir.join(MANIFEST_FILE);
        let text = read_to_string(&manifest_path)?;
        let manifest =
            Manifest::parse(&text).map_err(|message| Error::Manifest { path: manifest_path.clone(), message })?;
        let cascade =
            manifest.cascade.iter().map(|cascade| ("cascade.bundle".to_owned(), cascade.bundle.as_str(), true));
        let files = manifest.named_files().into_iter().map(|(key, file)| (key, file, false));
        for (key, path, directory) in files.chain(cascade) {
            check_inside(&dir, &key, path, directory)
                .map_err(|message| Error::Manifest { path: manifest_path.clone(), message })?;
        }
        read_checked_model(&dir.join(&manifest.model), &manifest.sha256)?;
        for (file, expected) in &manifest.checksums {
            let path = dir.join(file);
            let bytes = std::fs::read(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
            let actual = hex_sha256(&bytes);
            if actual != *expected {
                return Err(Error::ChecksumMismatch { what: "file", path, expected: expected.clone(), actual });
            }
        }
        let labels = match &manifest.labels_file {
            Some(file) => labels::from_lines(&read_to_string(&dir.join(file))?, manifest.labels_verbatim),
            None => manifest.labels.clone(),
        };
        let profile = match &manifest.profile {
            Some(file) => {
                let specs = FeatureExtractor::new(&manifest, &labels).specs().to_vec();
                Some(Arc::new(Profile::read(&dir.join(file), &specs)?))
            }
            None => None,
        };
        Ok(Bundle { dir, manifest, labels, profile })
    }

    /// The bundle directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of the ONNX file, for messages.
    pub fn model_path(&self) -> PathBuf {
        self.dir.join(&self.manifest.model)
    }

    /// The parsed manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Class labels in output order (possibly empty), from `labels` or `labels_file`; labels in the model's metadata
    /// (`labels_metadata`) are read with the session: see [`crate::Engine::labels`].
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The reference profile, checked against the model's monitoring features; `None` when the bundle has none.
    pub fn profile(&self) -> Option<&Arc<Profile>> {
        self.profile.as_ref()
    }

    /// Reads the model again and checks it against the manifest's sha256: the bytes to build a session from,
    /// dropped once it is built (the bundle keeps no copy: ONNX Runtime holds the weights).
    pub fn read_model(&self) -> Result<Vec<u8>> {
        read_checked_model(&self.model_path(), &self.manifest.sha256)
    }

    /// Name, version and sha256.
    pub fn identity(&self) -> ModelIdentity {
        ModelIdentity {
            name: self.manifest.name.clone(),
            version: self.manifest.version.to_string(),
            sha256: self.manifest.sha256.clone(),
        }
    }
}

/// The model file's bytes, refused unless their sha256 is `expected`.
fn read_checked_model(path: &Path, expected: &str) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
    let actual = hex_sha256(&bytes);
    if actual != expected {
        let expected = expected.to_owned();
        return Err(Error::ChecksumMismatch { what: "model", path: path.to_owned(), expected, actual });
    }
    Ok(bytes)
}

/// Refuses a file (or, with `directory`, a directory: a cascade's second stage) named by manifest key `key` that
/// resolves (through symbolic links) outside the bundle directory `dir`, that is not a regular file (a FIFO would
/// block the reader forever) or directory, or that cannot be resolved at all (a symbolic-link loop). A path that
/// does not exist is left to the read that follows, which names it.
fn check_inside(dir: &Path, key: &str, file: &str, directory: bool) -> std::result::Result<(), String> {
    let resolve = |path: &Path| std::fs::canonicalize(path);
    let root = resolve(dir).map_err(|e| format!("the bundle directory {} cannot be resolved: {e}", dir.display()))?;
    let resolved = match resolve(&dir.join(file)) {
        Ok(resolved) => resolved,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("`{key}` {file:?} cannot be resolved: {e}")),
    };
    if !resolved.starts_with(&root) {
        return Err(format!(
            "`{key}` {file:?} resolves to {}, outside the bundle directory {}",
            resolved.display(),
            root.display()
        ));
    }
    match std::fs::metadata(&resolved) {
        Ok(metadata) if directory && metadata.is_dir() => Ok(()),
        Ok(metadata) if !directory && metadata.is_file() => Ok(()),
        Ok(_) if directory => Err(format!("`{key}` {file:?} is not a directory")),
        Ok(_) => Err(format!("`{key}` {file:?} is not a regular file")),
        Err(e) => Err(format!("`{key}` {file:?} cannot be read: {e}")),
    }
}

/// Lower-case hex sha256 of `bytes`.
pub(crate) fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(digest(&SHA256, bytes))
}

fn read_to_string(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::ProfileBuilder;

    /// A copy of the shipped activity classifier whose manifest lists `profile.json` (holding `profile`) with
    /// the checksum `listed` (`None`: not in `[checksums]`).
    fn bundle_with_profile(profile: &str, listed: Option<&str>) -> tempfile::TempDir {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/activity-classifier");
        let dir = tempfile::tempdir().expect("temp dir");
        for file in ["model.onnx", "labels.txt"] {
            std::fs::copy(shipped.join(file), dir.path().join(file)).expect("copied");
        }
        let mut manifest =
            format!("profile = \"profile.json\"\n{}", read_to_string(&shipped.join(MANIFEST_FILE)).unwrap());
        if let Some(sha256) = listed {
            manifest.push_str(&format!("\n[checksums]\n\"profile.json\" = \"{sha256}\"\n"));
        }
        std::fs::write(dir.path().join(MANIFEST_FILE), manifest).expect("manifest written");
        std::fs::write(dir.path().join("profile.json"), profile).expect("profile written");
        dir
    }

    /// A profile of the activity classifier's features.
    fn activity_profile() -> Profile {
        let shipped = Bundle::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/activity-classifier"))
            .expect("shipped bundle");
        let specs = FeatureExtractor::new(shipped.manifest(), shipped.labels()).specs().to_vec();
        let mut builder = ProfileBuilder::new(&specs);
        for i in 0..30 {
            let mut vector: Vec<f32> = (0..specs.len()).map(|feature| (i * feature) as f32).collect();
            vector[18] = (i % 4) as f32;
            builder.add(&vector);
        }
        builder.build().expect("profile")
    }

    #[test]
    fn a_model_changed_after_loading_is_refused_when_a_session_reads_it() {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/activity-classifier");
        let dir = tempfile::tempdir().expect("temp dir");
        for file in ["model.onnx", "labels.txt", MANIFEST_FILE] {
            std::fs::copy(shipped.join(file), dir.path().join(file)).expect("copied");
        }
        let bundle = Bundle::load(dir.path()).expect("loads");
        assert_eq!(bundle.read_model().expect("unchanged"), std::fs::read(shipped.join("model.onnx")).expect("model"));
        let mut model = std::fs::read(dir.path().join("model.onnx")).expect("model");
        model[0] ^= 1;
        std::fs::write(dir.path().join("model.onnx"), model).expect("changed");
        let err = bundle.read_model().expect_err("refused");
        assert!(matches!(err, Error::ChecksumMismatch { what: "model", .. }), "{err:?}");
    }

    #[test]
    fn a_listed_profile_loads_with_the_bundle() {
        let profile = activity_profile();
        let json = profile.to_json();
        let dir = bundle_with_profile(&json, Some(&hex_sha256(json.as_bytes())));
        let bundle = Bundle::load(dir.path()).expect("loads");
        assert_eq!(bundle.profile().map(|p| p.as_ref()), Some(&profile));
    }

    #[test]
    fn a_profile_outside_the_checksums_is_refused() {
        let dir = bundle_with_profile(&activity_profile().to_json(), None);
        let err = Bundle::load(dir.path()).expect_err("refused");
        assert!(matches!(err, Error::Manifest { .. }), "{err:?}");
        assert!(err.to_string().contains("`profile` \"profile.json\" is not listed in `[checksums]`"), "{err}");
    }

    #[test]
    fn a_tampered_profile_is_refused_naming_it() {
        let json = activity_profile().to_json();
        let dir =
            bundle_with_profile(&json.replacen("\"size\":30", "\"size\":31", 1), Some(&hex_sha256(json.as_bytes())));
        let err = Bundle::load(dir.path()).expect_err("refused");
        let Error::ChecksumMismatch { path, .. } = &err else { panic!("{err:?}") };
        assert_eq!(path, &dir.path().join("profile.json"));
    }

    #[test]
    fn a_profile_of_other_features_is_refused_naming_the_file_and_the_feature() {
        let mut profile = activity_profile();
        profile.features[0].name = "brightness".to_owned();
        let json = profile.to_json();
        let dir = bundle_with_profile(&json, Some(&hex_sha256(json.as_bytes())));
        let err = Bundle::load(dir.path()).expect_err("refused");
        let Error::Profile { path, message } = &err else { panic!("{err:?}") };
        assert_eq!(path, &dir.path().join("profile.json"));
        assert_eq!(message, "feature 0 is `brightness`, the model's is `acc_x.mean`");
        assert_eq!(err.kind(), protocol::error::ErrorKind::Manifest);
    }
}
