//! Raw frames through the whole pipeline: an RGB8 frame gives what its JPEG gives, a YUV frame what its RGB
//! conversion gives, with no decode stage.

use integration_tests::{models_dir, onnx_runtime};
use runtime::preprocess::ImagePreprocessor;
use runtime::{Bundle, EngineOptions, Error, Frame, Input, Output, Pipeline, PixelFormat};

fn pipeline(bundle: &str) -> Pipeline {
    let bundle = Bundle::load(models_dir().join(bundle)).expect("bundle loads");
    Pipeline::new(&onnx_runtime(), &bundle, &EngineOptions::default()).expect("pipeline builds")
}

fn read(path: &str) -> Vec<u8> {
    std::fs::read(models_dir().join(path)).expect("test data")
}

fn detections(output: &Output) -> &[runtime::Detection] {
    match output {
        Output::Detection { detections } => detections,
        other => panic!("expected detections, got {other:?}"),
    }
}

#[test]
fn an_rgb8_frame_gives_what_its_jpeg_gives() {
    let mut face = pipeline("face-detector");
    let jpeg = read("frames/people.jpg");
    let (from_jpeg, _) = face.infer(&Input::Image(jpeg.clone())).expect("infers the JPEG");
    let spec =
        runtime::Manifest::parse(&std::fs::read_to_string(models_dir().join("face-detector/manifest.toml")).unwrap())
            .unwrap();
    let runtime::manifest::InputSpec::Image(spec) = &spec.input else { panic!("an image model") };
    let mut decoder = ImagePreprocessor::new(spec);
    let (width, height) = decoder.decode(&jpeg).unwrap();
    let frame = Frame::packed(PixelFormat::Rgb8, width, height, decoder.decoded_rgb().to_vec()).unwrap();
    let (from_frame, timings) = face.infer(&Input::Frame(frame)).expect("infers the frame");
    assert_eq!(from_frame, from_jpeg);
    assert_eq!(detections(&from_frame).len(), 2, "people.jpg has two faces");
    assert_eq!(timings.decode_us, 0, "a raw frame is not decoded");
}

#[test]
fn nv12_yuyv_and_i420_frames_give_what_their_rgb_conversion_gives() {
    let mut face = pipeline("face-detector");
    for (name, format) in [("nv12", PixelFormat::Nv12), ("yuyv", PixelFormat::Yuyv), ("i420", PixelFormat::I420)] {
        let path = format!("frames/raw/astronaut-160x120.{name}");
        let frame = Frame::packed(format, 160, 120, read(&path)).unwrap();
        let reference = Frame::packed(PixelFormat::Rgb8, 160, 120, read(&format!("{path}.rgb"))).unwrap();
        let (got, timings) = face.infer(&Input::Frame(frame)).expect("infers the YUV frame");
        let (want, _) = face.infer(&Input::Frame(reference)).expect("infers ffmpeg's RGB");
        assert_eq!(timings.decode_us, 0);
        let (got, want) = (detections(&got), detections(&want));
        assert_eq!(got.len(), 1, "{name}: the astronaut's face");
        assert_eq!(got.len(), want.len(), "{name}");
        for (got, want) in got.iter().zip(want) {
            // Inputs within one level of each other: scores and boxes move by little.
            assert!((got.score - want.score).abs() < 0.02, "{name}: {} vs {}", got.score, want.score);
            assert!((got.bbox.x_min - want.bbox.x_min).abs() < 1.0, "{name}: {:?} vs {:?}", got.bbox, want.bbox);
            assert!((got.bbox.y_max - want.bbox.y_max).abs() < 1.0, "{name}: {:?} vs {:?}", got.bbox, want.bbox);
        }
    }
}

#[test]
fn a_sensor_model_refuses_frames() {
    let mut activity = pipeline("activity-classifier");
    let frame = Frame::packed(PixelFormat::Gray8, 2, 2, vec![0; 4]).unwrap();
    match activity.infer(&Input::Frame(frame)) {
        Err(Error::WrongInputKind { expected: "sensor", got: "frame" }) => {}
        other => panic!("expected WrongInputKind, got {other:?}"),
    }
}
