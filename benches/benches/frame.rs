//! One whole frame, for the classifier and the face detector: [`Pipeline::infer`] (decode, preprocess, run,
//! postprocess) against [`Engine::run`] and bare `ort` `Session::run` on the same preprocessed tensor, with the
//! settings the engine uses (1 intra-op thread, 1 inter-op thread, the model family's session defaults). The gap
//! between `engine-run` and `bare-session-run` is the engine's input view and output copy; the gap between
//! `pipeline-infer` and `engine-run` is decode, preprocess and postprocess.

use benches::{CLASSIFIER, FACE_DETECTOR, OwnedTensor, bundle, frame, onnx_runtime, preprocessed, slow};
use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use ort::session::Session;
use ort::value::{Shape, TensorRef};
use runtime::{Bundle, Engine, EngineOptions, Input, ModelFamily, OnnxRuntime, Pipeline};
use std::hint::black_box;

/// Bare ONNX Runtime session with the engine's settings for `EngineOptions::default()`.
fn bare_session(ort: &OnnxRuntime, bundle: &Bundle, threads: usize) -> Session {
    let settings = EngineOptions::default().session.resolve(ModelFamily::of(bundle.manifest()));
    runtime::cpu_session(ort, bundle, threads, &settings).expect("session commits")
}

fn one_frame(c: &mut Criterion, model: &str, frame_name: &str) {
    let ort = onnx_runtime();
    let bundle = bundle(model);
    let frame = frame(frame_name);
    let options = EngineOptions::default();
    let (tensor, shape, _) = preprocessed(&bundle, &frame);

    let mut group = c.benchmark_group(format!("frame/{model}/{frame_name}"));
    group.sampling_mode(SamplingMode::Flat);

    let mut pipeline = Pipeline::new(&ort, &bundle, &options).expect("pipeline builds");
    let input = Input::Image(frame.bytes.clone());
    group
        .bench_function("pipeline-infer", |b| b.iter(|| black_box(pipeline.infer(black_box(&input)).expect("infers"))));
    drop(pipeline);

    let mut engine = Engine::new(&ort, &bundle, &options).expect("engine builds");
    group.bench_function("engine-run", |b| {
        b.iter(|| black_box(engine.run(black_box(tensor.view())).expect("runs").tensors.len()))
    });
    drop(engine);

    let mut session = bare_session(&ort, &bundle, options.intra_threads);
    let name = bundle.manifest().input.tensor().to_owned();
    group.bench_function("bare-session-run", |b| {
        b.iter(|| {
            let shape = Shape::new(shape.iter().map(|d| *d as i64));
            let value = match &tensor {
                OwnedTensor::F32(data) => {
                    TensorRef::from_array_view((shape, data.as_slice())).expect("view").into_dyn()
                }
                OwnedTensor::U8(data) => TensorRef::from_array_view((shape, data.as_slice())).expect("view").into_dyn(),
            };
            let outputs = session.run(ort::inputs![name.as_str() => value]).expect("runs");
            black_box(outputs.len())
        });
    });
    group.finish();
}

fn classifier(c: &mut Criterion) {
    one_frame(c, CLASSIFIER, "cat.jpg");
}

fn face_detector(c: &mut Criterion) {
    one_frame(c, FACE_DETECTOR, "people.jpg");
}

criterion_group! {
    name = benches;
    config = slow();
    targets = classifier, face_detector
}
criterion_main!(benches);
