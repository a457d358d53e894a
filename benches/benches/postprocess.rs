//! Postprocessing on real outputs: the engine runs once on a shipped frame, then [`Decoder::decode`] is timed on
//! what it returned. The classifier is softmax + top-5 of 1000 logits; CenterFace reads the 160x120 heat map,
//! builds candidates and suppresses overlaps (at the manifest's score threshold, and at 0.05 for a heavier NMS).
//! NMS alone runs on synthetic clusters of boxes.

use benches::{CLASSIFIER, FACE_DETECTOR, bundle, frame, onnx_runtime, preprocessed, quick};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use runtime::manifest::OutputSpec;
use runtime::postprocess::{Candidate, Decoder, Suppression, non_max_suppression};
use runtime::preprocess::Geometry;
use runtime::{BoundingBox, Engine, EngineOptions, Output, Outputs};
use std::hint::black_box;

/// The outputs of one run of `model` on `frame_name`, and the geometry of its preprocessing.
fn real_outputs(model: &str, frame_name: &str) -> (runtime::Bundle, Outputs, Geometry) {
    let ort = onnx_runtime();
    let bundle = bundle(model);
    let (tensor, _, geometry) = preprocessed(&bundle, &frame(frame_name));
    let mut engine = Engine::new(&ort, &bundle, &EngineOptions::default()).expect("engine builds");
    let outputs = engine.run(tensor.view()).expect("runs").clone();
    (bundle, outputs, geometry)
}

fn classifier(c: &mut Criterion) {
    let (bundle, outputs, _) = real_outputs(CLASSIFIER, "cat.jpg");
    let mut decoder = Decoder::new(&bundle.manifest().output, bundle.labels().to_vec());
    let mut group = c.benchmark_group("postprocess/classifier");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("softmax+top5-of-1000/cat.jpg", |b| {
        b.iter(|| black_box(decoder.decode(black_box(&outputs), None).expect("decodes")));
    });
    group.finish();
}

fn centerface(c: &mut Criterion) {
    let (bundle, outputs, geometry) = real_outputs(FACE_DETECTOR, "people.jpg");
    let OutputSpec::Centerface(spec) = &bundle.manifest().output else { panic!("face detector decodes centerface") };
    let mut group = c.benchmark_group("postprocess/centerface-160x120");
    group.throughput(Throughput::Elements(160 * 120));
    for threshold in [spec.score_threshold, 0.05] {
        let mut spec = spec.clone();
        spec.score_threshold = threshold;
        let mut decoder = Decoder::new(&OutputSpec::Centerface(spec), bundle.labels().to_vec());
        let Output::Detection { detections } = decoder.decode(&outputs, Some(&geometry)).expect("decodes") else {
            panic!("detections expected")
        };
        let id = format!("people.jpg/score-{threshold}/{}-faces", detections.len());
        group.bench_function(id, |b| {
            b.iter(|| black_box(decoder.decode(black_box(&outputs), Some(&geometry)).expect("decodes")));
        });
    }
    group.finish();
}

/// `count` candidates in clusters of ten jittered boxes around `count / 10` objects on a 640x480 image, from a
/// fixed linear congruential sequence.
fn synthetic_candidates(count: usize) -> Vec<Candidate> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let mut candidates = Vec::with_capacity(count);
    while candidates.len() < count {
        let (cx, cy, size) = (next() * 600.0 + 20.0, next() * 440.0 + 20.0, next() * 60.0 + 10.0);
        for _ in 0..10.min(count - candidates.len()) {
            let (x, y, s) = (cx + (next() - 0.5) * 6.0, cy + (next() - 0.5) * 6.0, size * (0.9 + next() * 0.2));
            let bbox = BoundingBox { x_min: x - s / 2.0, y_min: y - s / 2.0, x_max: x + s / 2.0, y_max: y + s / 2.0 };
            candidates.push(Candidate { bbox, score: next(), class_index: (next() * 3.0) as u32 });
        }
    }
    candidates
}

fn nms(c: &mut Criterion) {
    let mut group = c.benchmark_group("nms");
    let mut kept = Vec::new();
    for count in [100, 1_000, 10_000] {
        let candidates = synthetic_candidates(count);
        group.throughput(Throughput::Elements(count as u64));
        for (suppression, name) in [(Suppression::AnyClass, "any-class"), (Suppression::SameClass, "same-class")] {
            group.bench_with_input(BenchmarkId::new(format!("{name}/max100"), count), &candidates, |b, candidates| {
                b.iter(|| {
                    non_max_suppression(black_box(candidates), 0.3, 100, suppression, &mut kept);
                    black_box(kept.len())
                });
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = quick();
    targets = classifier, centerface, nms
}
criterion_main!(benches);
