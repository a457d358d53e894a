//! Bad input is refused with an error that says what and where, and the pipeline keeps serving afterwards.

use integration_tests::fixtures::{edited_bundle, png_header, truncated_jpeg};
use integration_tests::{models_dir, onnx_runtime};
use runtime::{Bundle, EngineOptions, Error, Input, Output, Pipeline, SensorWindow};
use std::path::Path;

fn pipeline(bundle: &str) -> Pipeline {
    let bundle = Bundle::load(models_dir().join(bundle)).expect("bundle loads");
    Pipeline::new(&onnx_runtime(), &bundle, &EngineOptions::default()).expect("pipeline builds")
}

fn frame(name: &str) -> Vec<u8> {
    std::fs::read(models_dir().join("frames").join(name)).expect("frame")
}

fn assert_still_serves(pipeline: &mut Pipeline) {
    let (output, _) = pipeline.infer(&Input::Image(frame("coffee.jpg"))).expect("a good frame after a bad one");
    let Output::Classification { classes } = output else { panic!("classification expected") };
    assert_eq!(classes[0].label, "espresso");
}

#[test]
fn bad_frames_are_refused_and_the_pipeline_keeps_serving() {
    let mut pipeline = pipeline("image-classifier");

    let err = pipeline.infer(&Input::Image(Vec::new())).unwrap_err();
    assert!(matches!(err, Error::EmptyInput), "{err}");
    assert_eq!((err.kind().as_str(), err.stage().as_str()), ("empty_input", "decode"));
    assert_still_serves(&mut pipeline);

    let err = pipeline.infer(&Input::Image(truncated_jpeg())).unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err}");
    assert!(err.to_string().contains("decode"), "{err}");
    assert_still_serves(&mut pipeline);

    let started = std::time::Instant::now();
    let err = pipeline.infer(&Input::Image(png_header(40_000, 40_000))).unwrap_err();
    assert!(matches!(err, Error::ImageTooLarge { width: 40_000, height: 40_000, .. }), "{err}");
    assert!(err.to_string().contains("40000x40000"), "{err}");
    assert!(started.elapsed().as_secs() < 2, "refused from the header, before allocating");
    assert_still_serves(&mut pipeline);

    let err = pipeline.infer(&Input::Image(b"not an image at all".to_vec())).unwrap_err();
    assert_eq!(err.kind().as_str(), "decode", "{err}");

    let err = pipeline.infer(&Input::Sensor(SensorWindow { channels: 6, values: vec![0.0; 600] })).unwrap_err();
    assert!(matches!(err, Error::WrongInputKind { expected: "image", got: "sensor" }), "{err}");
    assert_still_serves(&mut pipeline);
}

#[test]
fn bad_sensor_windows_are_refused_with_their_position() {
    let mut pipeline = pipeline("activity-classifier");
    let good = SensorWindow { channels: 6, values: vec![0.1; 600] };
    pipeline.infer(&Input::Sensor(good.clone())).expect("a good window");

    let short = SensorWindow { channels: 6, values: vec![0.1; 594] };
    let err = pipeline.infer(&Input::Sensor(short)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::SensorShape { expected_samples: 100, got_samples: 99, expected_channels: 6, got_channels: 6 }
        ),
        "{err}"
    );
    assert_eq!(err.stage().as_str(), "preprocess");

    let narrow = SensorWindow { channels: 5, values: vec![0.1; 500] };
    assert!(matches!(pipeline.infer(&Input::Sensor(narrow)).unwrap_err(), Error::SensorShape { got_channels: 5, .. }));

    let mut with_nan = good.clone();
    with_nan.values[6 * 42 + 3] = f32::NAN;
    let err = pipeline.infer(&Input::Sensor(with_nan)).unwrap_err();
    assert!(matches!(err, Error::NonFinite { sample: 42, channel: 3, .. }), "{err}");
    assert!(err.to_string().contains("sample 42, channel 3"), "{err}");

    let mut with_inf = good.clone();
    with_inf.values[0] = f32::INFINITY;
    assert!(matches!(
        pipeline.infer(&Input::Sensor(with_inf)).unwrap_err(),
        Error::NonFinite { sample: 0, channel: 0, .. }
    ));

    pipeline.infer(&Input::Sensor(good)).expect("still serving");
}

fn build(dir: &Path) -> Result<Pipeline, Error> {
    let bundle = Bundle::load(dir)?;
    Pipeline::new(&onnx_runtime(), &bundle, &EngineOptions::default())
}

#[test]
fn manifests_that_mismatch_their_graph_are_refused_naming_both_sides() {
    // (bundle, manifest edit, fragments the error must contain)
    type Case = (&'static str, fn(&str) -> String, &'static [&'static str]);
    let cases: [Case; 5] = [
        (
            "activity-classifier",
            |t| t.replace("tensor = \"window\"", "tensor = \"samples\""),
            &["input tensor name", "\"samples\"", "[\"window\"]"],
        ),
        (
            "activity-classifier",
            |t| t.replace("window = 100", "window = 128"),
            &["input \"window\" shape", "[1, 6, 128]", "[1, 6, 100]"],
        ),
        (
            "image-classifier",
            |t| t.replace("width = 224", "width = 256"),
            &["input \"images\" shape", "[1, 3, 224, 256]", "[1, 3, 224, 224]"],
        ),
        (
            "face-detector",
            |t| t.replace("landmarks = \"landmarks\"", "landmarks = \"points\""),
            &["output tensor name", "\"points\"", "heatmap"],
        ),
        ("image-classifier", |t| t.replace("dtype = \"f32\"", "dtype = \"u8\""), &["element type", "Uint8", "Float32"]),
    ];
    for (bundle, edit, fragments) in cases {
        let dir = edited_bundle(bundle, edit);
        let err = build(dir.path()).err().expect("a mismatching manifest is refused");
        assert!(matches!(err, Error::ManifestMismatch { .. }), "{bundle}: {err}");
        let message = err.to_string();
        assert!(message.contains("model.onnx"), "names the model: {message}");
        for fragment in fragments {
            assert!(message.contains(fragment), "{bundle}: {message:?} lacks {fragment:?}");
        }
    }
}

#[test]
fn a_model_that_is_not_the_one_in_the_manifest_is_refused() {
    let dir = edited_bundle("activity-classifier", str::to_owned);
    let model = dir.path().join("model.onnx");
    let mut bytes = std::fs::read(&model).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&model, bytes).unwrap();
    let err = build(dir.path()).err().expect("refused");
    assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err}");
    assert!(err.to_string().contains("sha256"), "{err}");
}

#[test]
fn invalid_manifests_are_refused_with_their_keys() {
    let dir = edited_bundle("activity-classifier", |t| {
        t.replace("version = \"1.0.0\"", "version = \"one\"").replace("channels = 6", "channels = 0")
    });
    let err = build(dir.path()).err().expect("refused");
    assert!(matches!(err, Error::Manifest { .. }), "{err}");
    assert!(err.to_string().contains("manifest.toml"), "{err}");
}

#[test]
fn requiring_an_unavailable_accelerator_refuses_to_fall_back_to_cpu() {
    let bundle = Bundle::load(models_dir().join("activity-classifier")).unwrap();
    let providers = vec![runtime::ProviderKind::Cuda, runtime::ProviderKind::Xnnpack];
    let required = EngineOptions { providers: Some(providers.clone()), require: true, ..EngineOptions::default() };
    let err = Pipeline::new(&onnx_runtime(), &bundle, &required).err().expect("refused");
    assert!(matches!(err, Error::ProviderRequired { .. }), "{err}");
    assert!(err.to_string().contains("cuda, xnnpack"), "{err}");

    let fallback = EngineOptions { providers: Some(providers), require: false, ..EngineOptions::default() };
    let pipeline = Pipeline::new(&onnx_runtime(), &bundle, &fallback).expect("falls back");
    let provider = pipeline.provider();
    assert_eq!(provider.active, runtime::ProviderKind::Cpu);
    assert!(provider.fell_back_to_cpu());
    assert_eq!(provider.refused.len(), 2, "both accelerators were tried: {:?}", provider.refused);
}
