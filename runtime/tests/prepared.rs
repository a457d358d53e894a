//! The split pipeline: a [`Preparer`]'s output runs on the pipeline it was made for, gives what
//! [`Pipeline::infer`] gives, and is refused by a pipeline of another input spec or after a failed preparation.

use runtime::{Bundle, EngineOptions, Error, Input, OnnxRuntime, Pipeline, Prepared, SensorWindow};
use std::path::PathBuf;

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

fn pipeline(ort: &OnnxRuntime, bundle: &str) -> Pipeline {
    let bundle = Bundle::load(models_dir().join(bundle)).expect("shipped bundle loads");
    Pipeline::new(ort, &bundle, &EngineOptions::default()).expect("pipeline builds")
}

fn onnx_runtime() -> OnnxRuntime {
    let library = std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../third_party/onnxruntime/x86_64/libonnxruntime.so.1.31.1")
    });
    OnnxRuntime::load(library).expect("ONNX Runtime loads; run scripts/setup.sh first")
}

#[test]
fn prepared_inputs_run_as_infer_runs_them_and_only_on_their_own_input_spec() {
    let ort = onnx_runtime();
    let mut classifier = pipeline(&ort, "image-classifier");
    let mut activity = pipeline(&ort, "activity-classifier");
    let cat = Input::Image(std::fs::read(models_dir().join("frames/cat.jpg")).expect("shipped frame"));

    let mut preparer = classifier.preparer();
    let mut prepared = Prepared::new();
    assert!(prepared.tensor().is_none(), "nothing prepared yet");
    preparer.prepare(&cat, &mut prepared).expect("prepares");
    let timings = prepared.timings();
    assert!(timings.decode_us > 0 && timings.inference_us == 0, "{timings:?}");
    let (split, split_timings) = classifier.run(&prepared).expect("runs");
    assert_eq!((split_timings.decode_us, split_timings.preprocess_us), (timings.decode_us, timings.preprocess_us));
    let (whole, _) = classifier.infer(&cat).expect("infers");
    assert_eq!(split, whole);

    // Another model's input spec: refused, never run.
    let err = activity.run(&prepared).unwrap_err();
    assert!(matches!(&err, Error::TensorMismatch { got, .. } if got.contains("another model")), "{err}");
    assert_eq!(err.stage().as_str(), "preprocess");

    // A failed preparation leaves the buffer unrunnable until the next one succeeds.
    let bad = Input::Sensor(SensorWindow { channels: 6, values: vec![0.0; 600] });
    assert!(matches!(preparer.prepare(&bad, &mut prepared), Err(Error::WrongInputKind { .. })));
    assert!(prepared.tensor().is_none());
    let err = classifier.run(&prepared).unwrap_err();
    assert!(matches!(&err, Error::TensorMismatch { got, .. } if got.contains("not prepared")), "{err}");
    preparer.prepare(&cat, &mut prepared).expect("prepares again");
    assert_eq!(classifier.run(&prepared).expect("runs").0, whole);
}
