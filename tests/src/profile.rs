//! Profiled bundles for the monitoring tests: temporary copies of the shipped bundles with a reference profile
//! written by `device-agent model profile`, and image inputs to profile with.

use crate::agent::agent_binary;
use crate::{models_dir, ort_library};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary copy of the shipped bundle `name`, at `<dir>/<name>` so that the test may put other files in
/// `<dir>`; returns both.
pub fn bundle_copy(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let bundle = dir.path().join(name);
    std::fs::create_dir(&bundle).expect("bundle dir");
    for entry in std::fs::read_dir(models_dir().join(name)).expect("shipped bundle") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, bundle.join(path.file_name().expect("name"))).expect("copied");
    }
    (dir, bundle)
}

/// Runs `device-agent model profile <bundle> <inputs...> <extra...>`.
pub fn run_profile(bundle: &Path, inputs: &[PathBuf], extra: &[&str]) -> Output {
    Command::new(agent_binary())
        .args(["model", "profile"])
        .arg(bundle)
        .args(inputs)
        .args(extra)
        .env("ORT_DYLIB_PATH", ort_library())
        .env("RUST_LOG", "warn")
        .output()
        .expect("device-agent model profile runs")
}

/// A copy of the shipped bundle `name` (as [`bundle_copy`] makes) profiled on `inputs`; panics with the
/// command's output if it fails.
pub fn profiled_copy(name: &str, inputs: &[PathBuf], extra: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let (dir, bundle) = bundle_copy(name);
    let output = run_profile(&bundle, inputs, extra);
    assert!(output.status.success(), "model profile failed: {}", String::from_utf8_lossy(&output.stderr));
    (dir, bundle)
}

/// 21 PNGs made in `into` from the 7 shipped frames: each as it is, mirrored, and its centre.
pub fn frames_and_variants(into: &Path) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(models_dir().join("frames")).expect("frames") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            continue;
        }
        let frame = image::open(&path).expect("frame decodes").to_rgb8();
        let (width, height) = frame.dimensions();
        let stem = path.file_stem().expect("name").to_string_lossy().into_owned();
        let centre = image::imageops::crop_imm(&frame, width / 8, height / 8, width * 3 / 4, height * 3 / 4).to_image();
        for (suffix, variant) in
            [("", frame.clone()), ("-mirrored", image::imageops::flip_horizontal(&frame)), ("-centre", centre)]
        {
            let target = into.join(format!("{stem}{suffix}.png"));
            variant.save(&target).expect("saved");
            paths.push(target);
        }
    }
    paths
}
