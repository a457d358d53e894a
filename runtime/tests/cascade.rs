//! A bundle's own `[cascade]`: the face detector with the image classifier in a subdirectory, built by
//! [`Pipeline::new`]. Each face carries what the classifier gives by hand on its crop, through the preparer and
//! run split as the agent runs them too; a second stage that is not an image model is refused naming the key.

use runtime::cascade::{crop_frame, crop_rect};
use runtime::preprocess::{ImageLimits, RgbDecoder};
use runtime::{Bundle, EngineOptions, Error, Input, OnnxRuntime, Output, Pipeline, Prepared, StageResult};
use std::path::{Path, PathBuf};

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

fn onnx_runtime() -> OnnxRuntime {
    let library = std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../third_party/onnxruntime/x86_64/libonnxruntime.so.1.31.1")
    });
    OnnxRuntime::load(library).expect("ONNX Runtime loads; run scripts/setup.sh first")
}

fn copy_bundle(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

/// The face detector with `second` (a shipped bundle) in its subdirectory `stage`, under `cascade`'s keys.
fn detector_with(second: &str, cascade: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_bundle(&models_dir().join("face-detector"), dir.path());
    copy_bundle(&models_dir().join(second), &dir.path().join("stage"));
    let manifest = std::fs::read_to_string(dir.path().join("manifest.toml")).unwrap();
    std::fs::write(dir.path().join("manifest.toml"), format!("{manifest}\n[cascade]\nbundle = \"stage\"\n{cascade}"))
        .unwrap();
    dir
}

#[test]
fn a_bundle_cascade_gives_each_face_the_classifier_result_on_its_crop() {
    let ort = onnx_runtime();
    let dir = detector_with("image-classifier", "margin = 0.1\nsquare = true\n");
    let mut cascade = Pipeline::new(&ort, &Bundle::load(dir.path()).unwrap(), &EngineOptions::default()).unwrap();
    let classifier = Bundle::load(models_dir().join("image-classifier")).unwrap();
    let mut by_hand = Pipeline::new(&ort, &classifier, &EngineOptions::default()).unwrap();

    let jpeg = std::fs::read(models_dir().join("frames/people.jpg")).unwrap();
    let mut prepared = Prepared::new();
    cascade.preparer().prepare(&Input::Image(jpeg.clone()), &mut prepared).unwrap();
    let (output, timings) = cascade.run(&prepared).unwrap();
    let Output::Detection { detections } = output else { panic!("detections: {output:?}") };
    assert_eq!(detections.len(), 2, "people.jpg holds two faces");
    assert!(timings.inference_us > 0);

    let mut decoder = RgbDecoder::new(ImageLimits::default());
    let size = decoder.decode(&jpeg).unwrap();
    let source = runtime::Frame::packed(runtime::PixelFormat::Rgb8, size.0, size.1, decoder.rgb().to_vec()).unwrap();
    for face in &detections {
        let rect = crop_rect(&face.bbox, 0.1, true, size).expect("inside the frame");
        let (expected, _) = by_hand.infer(&Input::Frame(crop_frame(&source, rect, Vec::new()).unwrap())).unwrap();
        let [stage] = face.stages.as_slice() else { panic!("one stage: {face:?}") };
        assert_eq!(stage.model, "image-classifier");
        // The same crop through the same preprocessing and session settings: bit for bit.
        assert_eq!(stage.result, StageResult::Output(expected));
    }
}

#[test]
fn a_bundle_cascade_of_a_sensor_model_is_refused_naming_the_key() {
    let ort = onnx_runtime();
    let dir = detector_with("activity-classifier", "");
    let error =
        Pipeline::new(&ort, &Bundle::load(dir.path()).unwrap(), &EngineOptions::default()).err().expect("refused");
    assert!(matches!(error, Error::Cascade { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("`cascade.bundle`: activity-classifier takes sensor windows"), "{message}");
}
