//! Cascades (`[sources.cascade]`): the face detector with the image classifier run on each face's crop, one
//! prediction per frame carrying both stages. The nested results must be what the classifier gives when run by
//! hand on the crops that the documented crop rule cuts from the published boxes; the cap on crops is honoured,
//! and the faces over it are published as skipped. A cascade that cannot run is refused at load, naming its key.

use integration_tests::agent::{Agent, agent_binary};
use integration_tests::broker::Broker;
use integration_tests::subscriber::Subscriber;
use integration_tests::{models_dir, onnx_runtime};
use protocol::wire::{self, Format, Prediction};
use runtime::preprocess::{ImageLimits, RgbDecoder};
use runtime::{
    BoundingBox, Bundle, ClassScore, EngineOptions, Frame, Input, Output, Pipeline, PixelFormat, StageResult,
};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);
const MARGIN: f32 = 0.2;
/// Both faces of people.jpg go to the classifier in one run on the batched variant.
const FRAMES: [&str; 2] = ["people.jpg", "grace_hopper.jpg"];

fn model(name: &str) -> String {
    models_dir().join(name).display().to_string()
}

/// A source of frames published to MQTT, running the face detector with `classifier` on its faces' crops.
fn source(name: &str, classifier: &str, max_crops: usize) -> String {
    format!(
        "[[sources]]\nname = \"{name}\"\nkind = \"mqtt_frames\"\nmodel = \"{}\"\n[sources.cascade]\nbundle = \"{}\"\n\
         labels = [\"face\"]\nmax_crops = {max_crops}\nmargin = {MARGIN}\nsquare = true\n",
        model("face-detector"),
        model(classifier)
    )
}

fn config(port: u16, sources: &[String]) -> String {
    format!("device_id = \"cam\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = {port}\n{}", sources.concat())
}

/// The crop rule of docs/bundle-format.md ("Cascades"), step by step: the margin on each side, the shorter side
/// grown by half the difference at each end, the edges rounded outwards and clipped to the frame.
fn crop(rgb: &[u8], (width, height): (u32, u32), bbox: &BoundingBox) -> Frame {
    let (w, h) = (bbox.x_max - bbox.x_min, bbox.y_max - bbox.y_min);
    let (mut left, mut right) = (bbox.x_min - MARGIN * w, bbox.x_max + MARGIN * w);
    let (mut top, mut bottom) = (bbox.y_min - MARGIN * h, bbox.y_max + MARGIN * h);
    let grow = ((bottom - top) - (right - left)) / 2.0;
    if grow > 0.0 {
        (left, right) = (left - grow, right + grow);
    } else {
        (top, bottom) = (top + grow, bottom - grow);
    }
    let left = left.floor().clamp(0.0, width as f32) as usize;
    let right = right.ceil().clamp(0.0, width as f32) as usize;
    let top = top.floor().clamp(0.0, height as f32) as usize;
    let bottom = bottom.ceil().clamp(0.0, height as f32) as usize;
    let row = width as usize * 3;
    let pixels: Vec<u8> =
        (top..bottom).flat_map(|y| rgb[y * row + left * 3..y * row + right * 3].iter().copied()).collect();
    Frame::packed(PixelFormat::Rgb8, (right - left) as u32, (bottom - top) as u32, pixels).unwrap()
}

/// The classes the classifier gives by hand on each face's crop of `frame`, in the prediction's face order.
fn by_hand(classifier: &mut Pipeline, frame: &str, prediction: &Prediction) -> Vec<Vec<ClassScore>> {
    let mut decoder = RgbDecoder::new(ImageLimits::default());
    let size = decoder.decode(&std::fs::read(models_dir().join("frames").join(frame)).unwrap()).unwrap();
    faces(prediction)
        .iter()
        .map(|face| match classifier.infer(&Input::Frame(crop(decoder.rgb(), size, &face.bbox))).unwrap().0 {
            Output::Classification { classes } => classes,
            other => panic!("a classification: {other:?}"),
        })
        .collect()
}

fn faces(prediction: &Prediction) -> &[runtime::Detection] {
    match &prediction.output {
        Output::Detection { detections } => detections,
        other => panic!("detections: {other:?}"),
    }
}

/// Publishes each frame to `source` in turn and returns its prediction (one frame at a time: a camera source
/// keeps only the newest).
fn predictions(sub: &Subscriber, source: &str) -> Vec<Prediction> {
    FRAMES
        .iter()
        .map(|frame| {
            sub.publish(
                &format!("devices/cam/frames/{source}"),
                std::fs::read(models_dir().join("frames").join(frame)).unwrap(),
            );
            let message = sub.first_on(&format!("devices/cam/predictions/{source}"), WAIT);
            wire::decode::<Prediction>(Format::Json, &message.payload).expect("a prediction")
        })
        .collect()
}

/// Each face's nested classes equal the classes by hand: the same labels in the same order, the same scores to
/// 1e-4. The agent's session may run on another number of threads, and the batched variant's convolutions sum a
/// batch in another order (its logits agree with the original's to 1e-4, models/README.md), so the last digits of
/// a float32 may differ; a different crop or preprocessing would move the scores by far more.
fn assert_nested_as_by_hand(prediction: &Prediction, expected: &[Vec<ClassScore>], stage_model: &str) {
    for (face, expected) in faces(prediction).iter().zip(expected) {
        let [stage] = face.stages.as_slice() else { panic!("one stage per face: {face:?}") };
        assert_eq!(stage.model, stage_model);
        let StageResult::Output(Output::Classification { classes }) = &stage.result else {
            panic!("classes for the face: {stage:?}")
        };
        let labels = |classes: &[ClassScore]| classes.iter().map(|c| c.label.clone()).collect::<Vec<_>>();
        assert_eq!(labels(classes), labels(expected));
        for (got, want) in classes.iter().zip(expected) {
            assert!((got.score - want.score).abs() <= 1e-4, "{}: {} vs {}", got.label, got.score, want.score);
        }
    }
}

#[test]
fn each_face_carries_the_classifier_result_on_its_crop() {
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port(), "devices/cam/#");
    let sources = [
        source("single", "image-classifier", 8),
        source("batched", "testing/image-classifier-batched", 8),
        source("capped", "image-classifier", 1),
    ];
    let agent = Agent::start(&config(broker.port(), &sources));
    sub.first_on("devices/cam/status", WAIT);
    let ort = onnx_runtime();
    let bundle = Bundle::load(models_dir().join("image-classifier")).unwrap();
    let mut classifier = Pipeline::new(&ort, &bundle, &EngineOptions::default()).unwrap();

    for (source, stage_model) in [("single", "image-classifier"), ("batched", "image-classifier-batched")] {
        for (frame, prediction) in FRAMES.iter().zip(predictions(&sub, source)) {
            assert_eq!(faces(&prediction).len(), if *frame == "people.jpg" { 2 } else { 1 }, "{frame}");
            let expected = by_hand(&mut classifier, frame, &prediction);
            assert_nested_as_by_hand(&prediction, &expected, stage_model);
            assert_eq!(prediction.total_us, prediction.latency_us.total_us(), "the second stage is in the stages");
        }
    }

    // people.jpg's two faces with one crop a frame: the better one is classified, the other skipped.
    let capped = predictions(&sub, "capped");
    let people = faces(&capped[0]);
    assert!(people[0].score >= people[1].score, "best first: {people:?}");
    let expected = by_hand(&mut classifier, "people.jpg", &capped[0]);
    assert_nested_as_by_hand(
        &Prediction { output: Output::Detection { detections: people[..1].to_vec() }, ..capped[0].clone() },
        &expected,
        "image-classifier",
    );
    assert_eq!(people[1].stages.len(), 1);
    assert_eq!(people[1].stages[0].result, StageResult::Skipped);
    let skipped =
        |p: &Prediction| faces(p).iter().flat_map(|f| &f.stages).filter(|s| s.result == StageResult::Skipped).count();
    assert_eq!((skipped(&capped[0]), skipped(&capped[1])), (1, 0), "grace_hopper.jpg has one face only");
    drop(agent);
}

/// `run --check` on `sources`: its exit status and standard error.
fn check(sources: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, config(1883, &[sources.to_owned()])).unwrap();
    let output = std::process::Command::new(agent_binary())
        .args(["run", "--check", "--config"])
        .arg(&path)
        .env("ORT_DYLIB_PATH", integration_tests::ort_library())
        .output()
        .unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn a_cascade_that_cannot_run_is_refused_naming_its_key() {
    // A sensor model as the second stage, and a label the detector does not have.
    let sensor = source("door", "activity-classifier", 8).replace("[\"face\"]", "[\"car\"]");
    let (status, stderr) = check(&sensor);
    assert_eq!(status, Some(64), "{stderr}");
    assert!(stderr.contains("`sources[0].cascade.bundle`: activity-classifier takes sensor windows"), "{stderr}");
    assert!(stderr.contains("`sources[0].cascade.labels`: face-detector has no label \"car\""), "{stderr}");

    // A classifier has no boxes to crop.
    let classifier = source("door", "image-classifier", 8).replace(&model("face-detector"), &model("image-classifier"));
    let (status, stderr) = check(&classifier);
    assert_eq!(status, Some(64), "{stderr}");
    assert!(stderr.contains("`sources[0].cascade` needs a detector to crop from"), "{stderr}");

    // Keys out of range are the configuration's own errors.
    let (status, stderr) = check(&source("door", "image-classifier", 0).replace("margin = 0.2", "margin = -1"));
    assert_eq!(status, Some(64), "{stderr}");
    assert!(stderr.contains("sources[0].cascade.max_crops"), "{stderr}");
    assert!(stderr.contains("sources[0].cascade.margin"), "{stderr}");
}
