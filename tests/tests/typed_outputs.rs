//! Outputs beyond one float32 tensor, on real scikit-learn models and a graph of every other output type: the
//! IsolationForest's two outputs and the anomaly direction, labels from the model's metadata, and int64, bool, float16
//! and int32 outputs published by `raw`, each against the references of scikit-learn or Python onnxruntime.

use integration_tests::references::{self, Case};
use integration_tests::{models_dir, onnx_runtime};
use runtime::{BatchBuffers, Bundle, EngineOptions, Input, Output, Pipeline, SensorWindow};

fn pipeline(bundle: &str) -> (Bundle, Pipeline) {
    let bundle = Bundle::load(models_dir().join(bundle)).expect("bundle loads");
    let pipeline = Pipeline::new(&onnx_runtime(), &bundle, &EngineOptions::default()).expect("pipeline builds");
    (bundle, pipeline)
}

/// The case's window of its recording, `channels` x `window` samples.
fn window_of(case: &Case, channels: usize, window: usize) -> Input {
    let text = std::fs::read_to_string(models_dir().join(&case.input)).expect("recording");
    let start = case.start_row.expect("sensor cases name their first row");
    let values = text
        .lines()
        .skip(1 + start)
        .take(window)
        .flat_map(|line| line.split(',').map(|v| v.trim().parse::<f32>().expect("number")).collect::<Vec<_>>())
        .collect();
    Input::Sensor(SensorWindow { channels, values })
}

#[test]
fn isolation_forest_flags_equal_scikit_learn_predict_on_every_window() {
    let (_, mut pipeline) = pipeline("vibration-isolation-forest");
    let refs = references::load("vibration-isolation-forest");
    let mut anomalous = 0;
    for case in &refs.cases {
        let (output, _) = pipeline.infer(&window_of(case, 3, 50)).expect("inference");
        let Output::Anomaly { score, anomalous: flagged, label, label_anomalous, threshold } = output else {
            panic!("anomaly expected, got {output:?}")
        };
        let Output::Anomaly { score: want, anomalous: want_flag, label: want_label, .. } = case.output else {
            panic!("anomaly reference expected")
        };
        // The trees take the same paths (scikit-learn casts to float32 too); only averaging path lengths in float32
        // rather than float64 differs: about 1e-7 (the script prints the worst).
        assert!((score - want).abs() < 1e-5, "row {:?}: {score} vs scikit-learn {want}", case.start_row);
        assert_eq!(threshold, 0.0);
        // decision_function < 0 is predict's -1: both verdicts are scikit-learn's.
        assert_eq!((flagged, label, label_anomalous), (want_flag, want_label, Some(want_flag)), "{:?}", case.start_row);
        anomalous += usize::from(flagged);
    }
    assert!(anomalous > 0 && anomalous < refs.cases.len(), "the recording holds normal and anomalous windows");
}

/// The graph takes any batch: run in one batch, every window gets the prediction it gets alone, label included.
#[test]
fn isolation_forest_in_a_batch_gives_each_window_its_own_label() {
    let (_, mut pipeline) = pipeline("vibration-isolation-forest");
    let refs = references::load("vibration-isolation-forest");
    let inputs: Vec<Input> = refs.cases.iter().map(|case| window_of(case, 3, 50)).collect();
    let (mut buffers, mut results) = (BatchBuffers::default(), Vec::new());
    pipeline.infer_batch(&inputs.iter().collect::<Vec<_>>(), &mut buffers, &mut results);
    assert_eq!(results.len(), inputs.len());
    for (case, result) in refs.cases.iter().zip(results) {
        let (output, _) = result.expect("inference");
        let (Output::Anomaly { label, .. }, Output::Anomaly { label: want, .. }) = (&output, &case.output) else {
            panic!("anomaly expected, got {output:?}")
        };
        assert_eq!(label, want, "row {:?}", case.start_row);
    }
}

#[test]
fn a_classifier_takes_its_class_names_from_the_model_metadata() {
    let (bundle, mut pipeline) = pipeline("testing/activity-logistic");
    assert!(bundle.labels().is_empty(), "the bundle itself names no class");
    assert_eq!(pipeline.labels(), ["Standing", "Running", "Walking", "Badminton"]);
    let refs = references::load("activity-logistic");
    for case in &refs.cases {
        let (output, _) = pipeline.infer(&window_of(case, 6, 100)).expect("inference");
        let (Output::Classification { classes: got }, Output::Classification { classes: want }) =
            (&output, &case.output)
        else {
            panic!("classification expected, got {output:?}")
        };
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert_eq!((g.index, &g.label), (w.index, &w.label), "row {:?}: {got:?} vs {want:?}", case.start_row);
            // One linear layer and a softmax in float32 against scikit-learn's float64: about 1e-7.
            assert!((g.score - w.score).abs() < 1e-5, "row {:?}: {} vs {}", case.start_row, g.score, w.score);
        }
    }
}

/// Every value equal: the same ONNX Runtime computes them, and float16 widens to float32 exactly.
#[test]
fn int64_bool_float16_and_int32_outputs_are_published_by_raw_as_onnxruntime_gives_them() {
    let (_, mut pipeline) = pipeline("testing/typed-outputs");
    let refs = references::load("typed-outputs");
    for case in &refs.cases {
        let (output, _) = pipeline.infer(&window_of(case, 3, 50)).expect("inference");
        assert_eq!(output, case.output, "row {:?}", case.start_row);
    }
    let Output::Raw { tensors } = &refs.cases[0].output else { panic!("raw reference expected") };
    let dtypes: Vec<_> = tensors.iter().map(|t| serde_json::to_string(&t.dtype).expect("dtype")).collect();
    assert_eq!(dtypes, ["\"int64\"", "\"bool\"", "\"float16\"", "\"int32\""]);
}

/// A copy of `bundle` (its model and manifest) with each `(from, to)` of `edits` replaced in its manifest.
fn edited(bundle: &str, edits: &[(&str, &str)]) -> tempfile::TempDir {
    let shipped = models_dir().join(bundle);
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(shipped.join("model.onnx"), dir.path().join("model.onnx")).expect("model copied");
    let mut manifest = std::fs::read_to_string(shipped.join("manifest.toml")).expect("manifest");
    for (from, to) in edits {
        assert!(manifest.contains(from), "{bundle}: {from:?}");
        manifest = manifest.replace(from, to);
    }
    std::fs::write(dir.path().join("manifest.toml"), manifest).expect("manifest written");
    dir
}

fn load_error(dir: &tempfile::TempDir) -> String {
    let bundle = Bundle::load(dir.path()).expect("the manifest parses");
    let Err(err) = Pipeline::new(&onnx_runtime(), &bundle, &EngineOptions::default()) else { panic!("refused") };
    assert_eq!(err.kind().as_str(), "manifest_mismatch", "{err}");
    err.to_string()
}

#[test]
fn outputs_of_a_type_the_decoder_cannot_read_and_missing_metadata_labels_are_refused_at_load() {
    let classify_integers = edited(
        "testing/typed-outputs",
        &[
            ("task = \"raw\"", "task = \"classification\""),
            ("decoder = \"raw\"", "decoder = \"classification\"\ntensor = \"argmax\""),
        ],
    );
    let err = load_error(&classify_integers);
    assert!(err.contains("output \"argmax\" element type: the manifest says a floating-point type"), "{err}");
    assert!(err.contains("Int64"), "{err}");

    let float_label = edited(
        "vibration-isolation-forest",
        &[("tensor = \"scores\"", "tensor = \"label\""), ("label_tensor = \"label\"", "label_tensor = \"scores\"")],
    );
    let err = load_error(&float_label);
    assert!(err.contains("output \"label\" element type: the manifest says a floating-point type"), "{err}");

    let missing_key =
        edited("testing/activity-logistic", &[("labels_metadata = \"classes\"", "labels_metadata = \"names\"")]);
    let err = load_error(&missing_key);
    assert!(err.contains("`labels_metadata` key \"names\""), "{err}");
    assert!(err.contains("no such metadata key (keys: [\"classes\"])"), "{err}");
}
