//! Decode and preprocess of the shipped frames: decode alone, prepare (resize + normalise) alone, and both, for
//! the classifier (224x224 center crop) and the face detector (640x480 letterbox). Throughput is in source
//! pixels, so frames of different sizes compare.

use benches::{CLASSIFIER, FACE_DETECTOR, bundle, frames, image_spec, quick};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use runtime::preprocess::ImagePreprocessor;
use std::hint::black_box;

/// The model bundles and how the bench ids name them.
const MODELS: [(&str, &str); 2] = [(CLASSIFIER, "classifier-224-crop"), (FACE_DETECTOR, "face-640x480-letterbox")];

fn decode(c: &mut Criterion) {
    let frames = frames();
    let spec = image_spec(&bundle(CLASSIFIER)).clone();
    let mut group = c.benchmark_group("decode");
    for frame in &frames {
        group.throughput(Throughput::Elements(frame.pixels()));
        // Decoding does not depend on the model; one preprocessor keeps its buffers as in the pipeline.
        let mut pre = ImagePreprocessor::new(&spec);
        group.bench_with_input(BenchmarkId::from_parameter(&frame.name), &frame.bytes, |b, bytes| {
            b.iter(|| pre.decode(black_box(bytes)).expect("decodes"));
        });
    }
    group.finish();
}

fn prepare(c: &mut Criterion) {
    let frames = frames();
    for (model, label) in MODELS {
        let spec = image_spec(&bundle(model)).clone();
        let mut group = c.benchmark_group(format!("prepare/{label}"));
        for frame in &frames {
            group.throughput(Throughput::Elements(frame.pixels()));
            let mut pre = ImagePreprocessor::new(&spec);
            pre.decode(&frame.bytes).expect("decodes");
            group.bench_function(BenchmarkId::from_parameter(&frame.name), |b| {
                b.iter(|| black_box(pre.prepare().expect("prepares")));
            });
        }
        group.finish();
    }
}

fn decode_prepare(c: &mut Criterion) {
    let frames = frames();
    for (model, label) in MODELS {
        let spec = image_spec(&bundle(model)).clone();
        let mut group = c.benchmark_group(format!("decode+prepare/{label}"));
        for frame in &frames {
            group.throughput(Throughput::Elements(frame.pixels()));
            let mut pre = ImagePreprocessor::new(&spec);
            group.bench_with_input(BenchmarkId::from_parameter(&frame.name), &frame.bytes, |b, bytes| {
                b.iter(|| {
                    pre.decode(black_box(bytes)).expect("decodes");
                    black_box(pre.prepare().expect("prepares"));
                    black_box(pre.tensor());
                });
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = quick();
    targets = decode, prepare, decode_prepare
}
criterion_main!(benches);
