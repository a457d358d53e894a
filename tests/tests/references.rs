//! The runtime's predictions for the shipped frames and recordings match Python onnxruntime's references.
//! PNG frames decode identically everywhere, so their tolerances are tight; JPEG decoders may differ by a
//! level or two per pixel, so JPEG frames get a looser score tolerance (the top-1 class must still agree).

use integration_tests::references::{self, Case};
use integration_tests::{models_dir, onnx_runtime};
use runtime::manifest::InputSpec;
use runtime::preprocess::ImagePreprocessor;
use runtime::{BatchBuffers, Bundle, EngineOptions, Input, InputTensor, Output, Pipeline, SensorWindow};

fn pipeline(bundle: &str) -> (Bundle, Pipeline) {
    let bundle = Bundle::load(models_dir().join(bundle)).expect("bundle loads");
    let pipeline = Pipeline::new(&onnx_runtime(), &bundle, &EngineOptions::default()).expect("pipeline builds");
    (bundle, pipeline)
}

fn is_png(case: &Case) -> bool {
    case.input.ends_with(".png")
}

fn window_of(case: &Case, channels: usize, window: usize) -> SensorWindow {
    let text = std::fs::read_to_string(models_dir().join(&case.input)).expect("recording");
    let start = case.start_row.expect("sensor cases name their first row");
    let values = text
        .lines()
        .skip(1 + start)
        .take(window)
        .flat_map(|line| line.split(',').map(|v| v.trim().parse::<f32>().expect("number")).collect::<Vec<_>>())
        .collect();
    SensorWindow { channels, values }
}

fn input_of(bundle: &Bundle, case: &Case) -> Input {
    match &bundle.manifest().input {
        InputSpec::Image(_) => Input::Image(std::fs::read(models_dir().join(&case.input)).expect("frame")),
        InputSpec::Sensor(spec) => Input::Sensor(window_of(case, spec.channels, spec.window)),
    }
}

/// Mean and standard deviation of the preprocessed tensor, against the reference's.
fn check_image_input_stats(bundle: &Bundle, case: &Case) {
    let (InputSpec::Image(spec), Some(expected)) = (&bundle.manifest().input, &case.input_stats) else { return };
    let mut pre = ImagePreprocessor::new(spec);
    pre.decode(&std::fs::read(models_dir().join(&case.input)).unwrap()).unwrap();
    pre.prepare().unwrap();
    let InputTensor::F32(data) = pre.tensor() else { panic!("f32 input expected") };
    assert_eq!(data.len(), expected.len, "{}: tensor length", case.input);
    let mean = data.iter().map(|v| *v as f64).sum::<f64>() / data.len() as f64;
    let std = (data.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / data.len() as f64).sqrt();
    // A per-pixel tolerance of about 1% of the value range, averaged: far below what a wrong resize mode,
    // channel order or normalisation would move.
    let range = expected.std.max(1e-6);
    let tolerance = if is_png(case) { 0.002 } else { 0.01 };
    assert!((mean - expected.mean).abs() / range < tolerance, "{}: input mean {mean} vs {}", case.input, expected.mean);
    assert!((std - expected.std).abs() / range < tolerance, "{}: input std {std} vs {}", case.input, expected.std);
}

#[test]
fn classifier_matches_python_onnxruntime() {
    let (bundle, mut pipeline) = pipeline("image-classifier");
    let refs = references::load("image-classifier");
    assert!(refs.cases.len() >= 5, "every shipped frame has a reference");
    for case in &refs.cases {
        check_image_input_stats(&bundle, case);
        let (output, _) = pipeline.infer(&input_of(&bundle, case)).expect("inference");
        let (Output::Classification { classes: got }, Output::Classification { classes: want }) =
            (&output, &case.output)
        else {
            panic!("{}: classification expected, got {output:?}", case.input)
        };
        assert_eq!(got.len(), want.len(), "{}: top-k length", case.input);
        assert_eq!(got[0].index, want[0].index, "{}: top-1 {:?} vs {:?}", case.input, got[0], want[0]);
        assert_eq!(got[0].label, want[0].label);
        // PNG: resizers round the last bit of a pixel differently (fast_image_resize vs Pillow), worth ~0.005.
        // JPEG: zune-jpeg and libjpeg-turbo differ by up to 6 levels on ~15% of pixels (colour conversion),
        // worth up to ~0.035 on a low-confidence frame (people.jpg, top-1 0.34).
        let tolerance = if is_png(case) { 1e-2 } else { 5e-2 };
        assert!(
            (got[0].score - want[0].score).abs() < tolerance,
            "{}: top-1 score {} vs {}",
            case.input,
            got[0].score,
            want[0].score
        );
    }
}

#[test]
fn face_detector_matches_python_onnxruntime() {
    let (bundle, mut pipeline) = pipeline("face-detector");
    let refs = references::load("face-detector");
    let mut faces = 0;
    for case in &refs.cases {
        check_image_input_stats(&bundle, case);
        let (output, _) = pipeline.infer(&input_of(&bundle, case)).expect("inference");
        let (Output::Detection { detections: got }, Output::Detection { detections: want }) = (&output, &case.output)
        else {
            panic!("{}: detection expected, got {output:?}", case.input)
        };
        assert_eq!(got.len(), want.len(), "{}: number of faces: {got:?} vs {want:?}", case.input);
        faces += want.len();
        for w in want {
            // Matched by position: the order of equal-scored faces is not part of the contract.
            let g = got.iter().min_by(|a, b| a.bbox.iou(&w.bbox).total_cmp(&b.bbox.iou(&w.bbox)).reverse()).unwrap();
            let corners = [
                (g.bbox.x_min, w.bbox.x_min),
                (g.bbox.y_min, w.bbox.y_min),
                (g.bbox.x_max, w.bbox.x_max),
                (g.bbox.y_max, w.bbox.y_max),
            ];
            for (a, b) in corners {
                assert!((a - b).abs() <= 2.0, "{}: box {:?} vs {:?}", case.input, g.bbox, w.bbox);
            }
            assert!((g.score - w.score).abs() < 0.03, "{}: score {} vs {}", case.input, g.score, w.score);
            assert_eq!(g.landmarks.len(), w.landmarks.len());
            for (a, b) in g.landmarks.iter().zip(&w.landmarks) {
                assert!(
                    (a.x - b.x).abs() <= 2.0 && (a.y - b.y).abs() <= 2.0,
                    "{}: landmark {a:?} vs {b:?}",
                    case.input
                );
            }
        }
    }
    assert!(faces >= 4, "the references hold faces to compare");
}

#[test]
fn activity_classifier_matches_python_onnxruntime() {
    let (bundle, mut pipeline) = pipeline("activity-classifier");
    let refs = references::load("activity-classifier");
    for case in &refs.cases {
        let (output, _) = pipeline.infer(&input_of(&bundle, case)).expect("inference");
        let (Output::Classification { classes: got }, Output::Classification { classes: want }) =
            (&output, &case.output)
        else {
            panic!("classification expected, got {output:?}")
        };
        for (g, w) in got.iter().zip(want) {
            assert_eq!(g.index, w.index, "row {:?}: {got:?} vs {want:?}", case.start_row);
            assert!((g.score - w.score).abs() < 1e-4, "row {:?}: {} vs {}", case.start_row, g.score, w.score);
        }
    }
}

/// The dynamic-batch variant of the activity classifier, run in batches, gives every window the prediction the
/// shipped classifier gives it alone; a bad window in a batch gets its own error and spoils nothing else.
#[test]
fn batched_activity_classifier_matches_the_classifier_run_window_by_window() {
    let (bundle, mut single) = pipeline("activity-classifier");
    let (_, mut batched) = pipeline("testing/activity-classifier-batched");
    assert_eq!((single.max_batch(), batched.max_batch()), (1, runtime::MAX_BATCH));
    let refs = references::load("activity-classifier");
    let mut inputs: Vec<Input> = refs.cases.iter().map(|case| input_of(&bundle, case)).collect();
    inputs.insert(3, Input::Sensor(SensorWindow { channels: 6, values: vec![0.0; 6] }));
    let (mut buffers, mut results) = (BatchBuffers::default(), Vec::new());
    let all: Vec<&Input> = inputs.iter().collect();
    batched.infer_batch(&all, &mut buffers, &mut results);
    assert_eq!(results.len(), inputs.len());
    for (index, (input, result)) in inputs.iter().zip(results).enumerate() {
        match (single.infer(input), result) {
            (Ok((want, _)), Ok((got, timings))) => {
                let (Output::Classification { classes: want }, Output::Classification { classes: got }) = (&want, &got)
                else {
                    panic!("classification expected, got {got:?}")
                };
                for (g, w) in got.iter().zip(want) {
                    assert_eq!(g.index, w.index, "window {index}: {got:?} vs {want:?}");
                    assert!((g.score - w.score).abs() < 1e-5, "window {index}: {got:?} vs {want:?}");
                }
                assert_eq!(timings.decode_us, 0);
            }
            (Err(want), Err(got)) => assert_eq!(got.kind(), want.kind(), "window {index}"),
            (want, got) => panic!("window {index}: {want:?} alone, {got:?} in a batch"),
        }
    }
}

#[test]
fn vibration_anomaly_matches_python_onnxruntime() {
    let (bundle, mut pipeline) = pipeline("vibration-anomaly");
    let refs = references::load("vibration-anomaly");
    let mut anomalous = 0;
    for case in &refs.cases {
        let (output, _) = pipeline.infer(&input_of(&bundle, case)).expect("inference");
        let (
            Output::Anomaly { score, anomalous: flagged, .. },
            Output::Anomaly { score: want, anomalous: want_flag, .. },
        ) = (&output, &case.output)
        else {
            panic!("anomaly expected, got {output:?}")
        };
        assert!((score - want).abs() <= 1e-4 * want.abs().max(1.0), "row {:?}: {score} vs {want}", case.start_row);
        assert_eq!(flagged, want_flag);
        anomalous += usize::from(*want_flag);
    }
    assert!(anomalous > 0 && anomalous < refs.cases.len(), "the recording holds normal and anomalous windows");
}
