//! The text detector and recogniser (PP-OCRv4 from rapidocr-onnxruntime 1.3.24) against rapidocr's own
//! pipeline (`models/references/text-*.json`, made by `models/scripts/make_text_models.py`): the input size chosen
//! per frame, the tensor, the DBNet boxes and the CTC text.
//!
//! rapidocr resizes with OpenCV's `INTER_LINEAR`; the runtime resizes with its bilinear convolution (PIL's
//! filter). Scaling up (the detector frame by 2.05, the 44-row crop by 1.09), the two filters sample the same
//! positions with the same triangle weights and differ only by their fixed-point rounding: measured within one
//! level. Scaling down (the 51- and 52-row crops into 48 rows), PIL's filter widens to cover every source pixel
//! and OpenCV's does not: measured up to 19 levels at stroke edges, 0.7 on average.

use integration_tests::{models_dir, onnx_runtime};
use runtime::manifest::InputSpec;
use runtime::preprocess::ImagePreprocessor;
use runtime::{Bundle, EngineOptions, Input, InputTensor, Output, Pipeline, Point};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    input: String,
    tensor_shape: Vec<usize>,
    tensor_sample_stride: usize,
    tensor_sample: Vec<f32>,
    #[serde(default)]
    boxes: Vec<[[f32; 2]; 4]>,
    #[serde(default)]
    scores: Vec<f32>,
    #[serde(default)]
    text: String,
    #[serde(default)]
    score: f32,
}

fn reference(bundle: &str) -> Reference {
    let path = models_dir().join(format!("references/{bundle}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("reference")).expect("reference parses")
}

fn pipeline(bundle: &Bundle) -> Pipeline {
    Pipeline::new(&onnx_runtime(), bundle, &EngineOptions::default()).expect("pipeline builds")
}

fn frame(case: &Case) -> Vec<u8> {
    std::fs::read(models_dir().join(&case.input)).expect("frame")
}

/// The tensor the runtime prepares for `case` has the reference's shape, and its sampled values are within
/// `max_levels` pixel levels of the reference's (`level`: one pixel level in tensor units), `mean_levels` on average.
fn check_tensor(bundle: &Bundle, case: &Case, level: f32, (max_levels, mean_levels): (f32, f32)) {
    let InputSpec::Image(spec) = &bundle.manifest().input else { panic!("image input expected") };
    let mut pre = ImagePreprocessor::new(spec);
    let source = pre.decode(&frame(case)).expect("decodes");
    assert_eq!(pre.shape_for(source).to_vec(), case.tensor_shape, "{}: tensor shape", case.input);
    pre.prepare().expect("prepares");
    let InputTensor::F32(data) = pre.tensor() else { panic!("f32 tensor expected") };
    assert_eq!(data.len(), case.tensor_shape.iter().product::<usize>(), "{}", case.input);
    let sampled: Vec<f32> = data.iter().step_by(case.tensor_sample_stride).copied().collect();
    assert_eq!(sampled.len(), case.tensor_sample.len(), "{}", case.input);
    let differences: Vec<f32> = sampled.iter().zip(&case.tensor_sample).map(|(a, b)| (a - b).abs() / level).collect();
    let worst = differences.iter().copied().fold(0.0, f32::max);
    let mean = differences.iter().sum::<f32>() / differences.len() as f32;
    assert!(worst <= max_levels && mean <= mean_levels, "{}: worst {worst} levels, mean {mean}", case.input);
    eprintln!("{}: tensor within {worst} levels of rapidocr's, {mean} on average", case.input);
}

#[test]
fn text_detector_finds_rapidocrs_boxes() {
    let bundle = Bundle::load(models_dir().join("text-detector")).expect("bundle loads");
    let mut pipeline = pipeline(&bundle);
    for case in reference("text-detector").cases {
        // One level is 1/255 over the smallest std (0.224); scaled up, so within the rounding (see the top).
        check_tensor(&bundle, &case, 1.0 / 255.0 / 0.224, (2.0, 0.1));
        let (output, _) = pipeline.infer(&Input::Image(frame(&case))).expect("infers");
        let Output::Detection { detections } = output else { panic!("detections expected") };
        assert_eq!(detections.len(), case.boxes.len(), "{}: {detections:?}", case.input);
        for (want, want_score) in case.boxes.iter().zip(&case.scores) {
            let corners = |d: &runtime::Detection| d.polygon.iter().map(|p| [p.x, p.y]).collect::<Vec<_>>();
            let distance = |d: &runtime::Detection| {
                corners(d).iter().zip(want).map(|(g, w)| (g[0] - w[0]).hypot(g[1] - w[1])).fold(0.0, f32::max)
            };
            let nearest = detections.iter().min_by(|a, b| distance(a).total_cmp(&distance(b))).expect("a detection");
            // rapidocr rounds corners to whole source pixels (0.5), pyclipper offsets on an integer grid (about a
            // map pixel, 0.5 source pixels here) and the resize differences above move region edges by a map
            // pixel where the probability crosses the threshold: 2 source pixels covers the three.
            assert!(distance(nearest) <= 2.0, "{}: {want:?} vs {:?}", case.input, nearest.polygon);
            // The box score is a mean over some 10^4 map pixels: the resize differences move it by little.
            assert!(
                (nearest.score - want_score).abs() < 0.02,
                "{}: score {} vs {want_score}",
                case.input,
                nearest.score
            );
            let Point { x, y } = nearest.polygon[0];
            assert!(x <= nearest.polygon[1].x && y <= nearest.polygon[3].y, "clockwise from the top left");
            assert!(nearest.bbox.x_min <= x && nearest.bbox.y_min <= y);
        }
    }
}

#[test]
fn text_recognizer_reads_rapidocrs_text() {
    let bundle = Bundle::load(models_dir().join("text-recognizer")).expect("bundle loads");
    assert_eq!(bundle.labels().len(), 6623, "the model's character list, U+3000 included");
    let mut pipeline = pipeline(&bundle);
    for case in reference("text-recognizer").cases {
        // One level is 1/255 / 0.5; two crops are scaled down, where the filters differ (see the top).
        check_tensor(&bundle, &case, 2.0 / 255.0, (24.0, 1.0));
        let (output, _) = pipeline.infer(&Input::Image(frame(&case))).expect("infers");
        let Output::Text { text, score } = output else { panic!("text expected") };
        assert_eq!(text, case.text, "{}", case.input);
        // The mean best probability over some 20 kept steps, each near 1: the resize differences above move it
        // by less than 1e-2.
        assert!((score - case.score).abs() < 1e-2, "{}: score {score} vs {}", case.input, case.score);
    }
}
