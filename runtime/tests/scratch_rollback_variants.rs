//! Scratch check (not kept): the test-only activity-classifier variants through the real pipeline.
use runtime::{Bundle, EngineOptions, Input, OnnxRuntime, Output, Pipeline, SensorWindow};
use std::path::Path;
use std::time::Instant;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn windows(csv: &str) -> Vec<SensorWindow> {
    let text = std::fs::read_to_string(root().join(csv)).unwrap();
    let rows: Vec<Vec<f32>> =
        text.lines().skip(1).map(|l| l.split(',').map(|v| v.trim().parse().unwrap()).collect()).collect();
    rows.chunks(100).map(|c| SensorWindow { channels: 6, values: c.concat() }).collect()
}

#[test]
fn variants() {
    let ort = OnnxRuntime::load(root().join("third_party/onnxruntime/x86_64/libonnxruntime.so.1.31.1")).unwrap();
    let load = |b: &str| Pipeline::new(&ort, &Bundle::load(root().join(b)).unwrap(), &EngineOptions::default()).unwrap();
    let mut original = load("models/activity-classifier");
    let mut unstable = load("models/testing/activity-classifier-unstable");
    let mut slow = load("models/testing/activity-classifier-slow");
    for (i, w) in windows("models/recordings/activity.csv").into_iter().enumerate() {
        let input = Input::Sensor(w);
        let want = original.infer(&input).unwrap().0;
        match unstable.infer(&input) {
            Ok((got, _)) => {
                assert_eq!(got, want);
                println!("window {i}: unstable ok {:?}", top(&got));
            }
            Err(e) => println!("window {i}: unstable error kind={} stage={} {e}", e.kind(), e.stage()),
        }
        assert_eq!(slow.infer(&input).unwrap().0, want);
    }
    let calm = Input::Sensor(windows("models/testing/calm-window.csv").remove(0));
    let got = unstable.infer(&calm).unwrap().0;
    println!("calm window: {:?}", top(&got));
    for (name, p) in [("original", &mut original), ("slow", &mut slow)] {
        for _ in 0..50 { p.infer(&calm).unwrap(); }
        let mut t: Vec<u32> = (0..500).map(|_| p.infer(&calm).unwrap().1.inference_us).collect();
        t.sort();
        let started = Instant::now();
        for _ in 0..200 { p.infer(&calm).unwrap(); }
        println!("{name}: median inference_us {} , mean total {:.1} us", t[250], started.elapsed().as_secs_f64() * 1e6 / 200.0);
    }
}

fn top(o: &Output) -> String {
    let Output::Classification { classes } = o else { panic!() };
    format!("{} {:.3}", classes[0].label, classes[0].score)
}
