//! `device-agent model profile`: profiles temporary copies of the shipped bundles from the shipped recording and
//! frames, and the profiled bundles load and infer; too few inputs, an input that does not infer and a
//! tampered profile are refused with messages that name them.

use integration_tests::agent::agent_binary;
use integration_tests::{models_dir, ort_library};
use runtime::monitor::PROFILE_FILE;
use runtime::{Bundle, Manifest};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary copy of the shipped bundle `name`; the bundle is `<dir>/<name>`.
fn copy_of(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let target = dir.path().join(name);
    std::fs::create_dir(&target).expect("bundle dir");
    for entry in std::fs::read_dir(models_dir().join(name)).expect("shipped bundle") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, target.join(path.file_name().expect("name"))).expect("copied");
    }
    dir
}

fn agent(args: &[&str], paths: &[&Path]) -> Output {
    Command::new(agent_binary())
        .args(args)
        .args(paths)
        .env("ORT_DYLIB_PATH", ort_library())
        .env("RUST_LOG", "warn")
        .output()
        .expect("the agent runs")
}

fn profile(bundle: &Path, inputs: &[PathBuf], extra: &[&str]) -> Output {
    let mut paths = vec![bundle];
    paths.extend(inputs.iter().map(PathBuf::as_path));
    Command::new(agent_binary())
        .args(["model", "profile"])
        .args(&paths)
        .args(extra)
        .env("ORT_DYLIB_PATH", ort_library())
        .env("RUST_LOG", "warn")
        .output()
        .expect("the agent runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The bundle's manifest lists the profile with the sha256 of its bytes, it loads with the profile, and
/// `infer` runs it on `inputs`.
fn assert_profiled(bundle: &Path, features: usize, inputs: &[PathBuf]) {
    let manifest = Manifest::parse(&std::fs::read_to_string(bundle.join("manifest.toml")).expect("manifest"))
        .expect("manifest parses");
    assert_eq!(manifest.profile.as_deref(), Some(PROFILE_FILE));
    let bytes = std::fs::read(bundle.join(PROFILE_FILE)).expect("profile written");
    assert_eq!(manifest.checksums.get(PROFILE_FILE), Some(&packaging::hex_sha256(&bytes)));
    let loaded = Bundle::load(bundle).expect("the profiled bundle loads");
    assert_eq!(loaded.profile().expect("profile").features.len(), features);
    assert!(bytes.len() < 32 * 1024, "{} bytes", bytes.len());
    let infer = agent(
        &["infer", "-m", &bundle.display().to_string()],
        &inputs.iter().map(PathBuf::as_path).collect::<Vec<_>>(),
    );
    assert!(infer.status.success(), "infer: {}", text(&infer.stderr));
    assert!(!infer.stdout.is_empty());
}

fn activity_recording() -> PathBuf {
    models_dir().join("recordings/activity.csv")
}

#[test]
fn profiles_a_sensor_model_from_its_recording() {
    let dir = copy_of("activity-classifier");
    let bundle = dir.path().join("activity-classifier");
    let output = profile(&bundle, &[activity_recording()], &["--stride", "10"]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(stdout.contains("20 features from 71 inputs"), "{stdout}");
    assert!(stdout.contains("acc_x.roughness"), "{stdout}");
    assert!(stdout.contains("edgectl model pack"), "{stdout}");
    assert_profiled(&bundle, 20, &[activity_recording()]);
}

/// 21 images from the 7 shipped frames: each as it is, mirrored, and its centre.
fn frames_and_variants(into: &Path) -> Vec<PathBuf> {
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

#[test]
fn profiles_an_image_model_from_frames() {
    let dir = copy_of("image-classifier");
    let bundle = dir.path().join("image-classifier");
    let frames = frames_and_variants(dir.path());
    assert_eq!(frames.len(), 21);
    let output = profile(&bundle, &frames, &[]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(stdout.contains("8 features from 21 inputs"), "{stdout}");
    assert!(stdout.contains("1000 categories"), "{stdout}");
    assert_profiled(&bundle, 8, &frames[..2]);
}

#[test]
fn too_few_inputs_are_refused_and_the_bundle_left_as_it_was() {
    let dir = copy_of("activity-classifier");
    let bundle = dir.path().join("activity-classifier");
    let manifest = std::fs::read(bundle.join("manifest.toml")).expect("manifest");
    // The default stride is the window: 8 windows of 100 samples.
    let output = profile(&bundle, &[activity_recording()], &[]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("8 inputs; a profile needs at least 20"), "{stderr}");
    assert_eq!(std::fs::read(bundle.join("manifest.toml")).expect("manifest"), manifest);
    assert!(!bundle.join(PROFILE_FILE).exists());
}

#[test]
fn an_input_that_does_not_infer_is_refused_by_name() {
    let dir = copy_of("image-classifier");
    let bundle = dir.path().join("image-classifier");
    let mut frames = frames_and_variants(dir.path());
    let broken = dir.path().join("broken.jpg");
    std::fs::write(&broken, b"not a JPEG").expect("written");
    frames.insert(3, broken);
    let output = profile(&bundle, &frames, &[]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("broken.jpg does not infer"), "{stderr}");
    assert!(!bundle.join(PROFILE_FILE).exists());
}

#[test]
fn a_tampered_profile_is_refused_naming_it() {
    let dir = copy_of("activity-classifier");
    let bundle = dir.path().join("activity-classifier");
    let output = profile(&bundle, &[activity_recording()], &["--stride", "10"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let path = bundle.join(PROFILE_FILE);
    let json = std::fs::read_to_string(&path).expect("profile");
    std::fs::write(&path, json.replacen("\"size\":71", "\"size\":72", 1)).expect("tampered");
    let infer = agent(&["infer", "-m", &bundle.display().to_string()], &[&activity_recording()]);
    assert!(!infer.status.success());
    let stderr = text(&infer.stderr);
    assert!(stderr.contains(&format!("file {}: sha256 is", path.display())), "{stderr}");
}
