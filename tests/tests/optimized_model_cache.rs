//! The optimised-model cache: the first session writes the entry, the next one runs from it and predicts exactly
//! what a session from the bundle predicts; a corrupt, refused or unwritable cache never stops a session.

use integration_tests::{models_dir, onnx_runtime};
use runtime::{Bundle, EngineOptions, Input, ModelOrigin, Output, Pipeline};
use std::path::{Path, PathBuf};

fn options(cache: Option<&Path>) -> EngineOptions {
    EngineOptions { optimized_model_cache: cache.map(Path::to_owned), ..EngineOptions::default() }
}

/// Where the session's model came from, and its prediction for `people.jpg`.
fn predict(bundle: &Bundle, cache: Option<&Path>) -> (ModelOrigin, Output) {
    let mut pipeline = Pipeline::new(&onnx_runtime(), bundle, &options(cache)).expect("pipeline builds");
    let frame = std::fs::read(models_dir().join("frames/people.jpg")).expect("frame");
    let output = pipeline.infer(&Input::Image(frame)).expect("infers").0;
    (pipeline.session().1, output)
}

/// The cache's model files (not their digests).
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("cache dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "ort"))
        .collect();
    files.sort();
    files
}

#[test]
fn the_second_session_runs_from_the_cache_and_predicts_the_same() {
    for model in ["image-classifier", "face-detector"] {
        let bundle = Bundle::load(models_dir().join(model)).expect("bundle");
        let cache = tempfile::tempdir().expect("temp dir");
        let (origin, uncached) = predict(&bundle, None);
        assert_eq!(origin, ModelOrigin::Bundle);
        let (origin, first) = predict(&bundle, Some(cache.path()));
        assert_eq!(origin, ModelOrigin::BundleCached, "{model}");
        assert_eq!(entries(cache.path()).len(), 1, "{model}");
        let (origin, cached) = predict(&bundle, Some(cache.path()));
        assert_eq!(origin, ModelOrigin::Cache, "{model}");
        assert_eq!(first, uncached, "{model}");
        assert_eq!(cached, uncached, "{model}");
    }
}

#[test]
fn a_corrupt_or_refused_entry_is_rebuilt_and_the_session_still_runs() {
    let bundle = Bundle::load(models_dir().join("image-classifier")).expect("bundle");
    let cache = tempfile::tempdir().expect("temp dir");
    let (_, expected) = predict(&bundle, Some(cache.path()));
    let entry = entries(cache.path()).remove(0);
    let digest = PathBuf::from(format!("{}.sha256", entry.display()));

    // A flipped byte: the digest no longer matches.
    let mut bytes = std::fs::read(&entry).expect("entry");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&entry, &bytes).expect("corrupted");
    assert_eq!(predict(&bundle, Some(cache.path())), (ModelOrigin::BundleCached, expected.clone()));

    // A file ONNX Runtime refuses, under a digest that matches it (as if the digest had been rewritten too).
    let garbage = b"not an ORT-format model".to_vec();
    std::fs::write(&entry, &garbage).expect("replaced");
    let sha256 = std::process::Command::new("sha256sum").arg(&entry).output().expect("sha256sum");
    std::fs::write(&digest, &sha256.stdout[..64]).expect("digest");
    assert_eq!(predict(&bundle, Some(cache.path())), (ModelOrigin::BundleCached, expected.clone()));
    assert_eq!(predict(&bundle, Some(cache.path())), (ModelOrigin::Cache, expected));
}

#[test]
fn an_unwritable_cache_leaves_the_session_to_the_bundle() {
    let bundle = Bundle::load(models_dir().join("activity-classifier")).expect("bundle");
    let dir = tempfile::tempdir().expect("temp dir");
    let not_a_dir = dir.path().join("cache");
    std::fs::write(&not_a_dir, b"a file where the cache directory should be").expect("file");
    let mut pipeline = Pipeline::new(&onnx_runtime(), &bundle, &options(Some(&not_a_dir))).expect("pipeline builds");
    assert_eq!(pipeline.session().1, ModelOrigin::Bundle);
    let recording = std::fs::read_to_string(models_dir().join("recordings/activity.csv")).expect("recording");
    let values: Vec<f32> = recording
        .lines()
        .skip(1)
        .take(100)
        .flat_map(|line| line.split(',').map(|v| v.trim().parse::<f32>().expect("number")).collect::<Vec<_>>())
        .collect();
    let window = runtime::SensorWindow { channels: 6, values };
    assert!(pipeline.infer(&Input::Sensor(window)).is_ok());
}
