//! Decode and preprocess of the shipped frames: decode alone, prepare (resize + normalise) alone, and both, for
//! the classifier (224x224 center crop) and the face detector (640x480 letterbox). Throughput is in source
//! pixels, so frames of different sizes compare. Then camera-sized frames: a 1920x1080 NV12 and I420 frame
//! prepared directly (conversion fused into the resize), and a 1080p JPEG decoded full size or at reduced scale,
//! then prepared; the 1080p frames are `people.jpg` stretched to 1920x1080.

use benches::{CLASSIFIER, FACE_DETECTOR, bundle, frame, frames, image_spec, quick};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use image::ExtendedColorType;
use image::codecs::jpeg::JpegEncoder;
use runtime::preprocess::ImagePreprocessor;
use runtime::{Frame, PixelFormat};
use std::hint::black_box;

const WIDTH_1080P: u32 = 1920;
const HEIGHT_1080P: u32 = 1080;

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

/// `people.jpg` stretched (nearest pixel) to 1920x1080, RGB8.
fn rgb_1080p() -> Vec<u8> {
    let people = frame("people.jpg");
    let mut pre = ImagePreprocessor::new(image_spec(&bundle(CLASSIFIER)));
    pre.decode(&people.bytes).expect("decodes");
    let source = pre.decoded_rgb();
    let mut rgb = Vec::with_capacity(WIDTH_1080P as usize * HEIGHT_1080P as usize * 3);
    for y in 0..HEIGHT_1080P {
        let source_y = (y * people.height / HEIGHT_1080P) as usize;
        for x in 0..WIDTH_1080P {
            let at = (source_y * people.width as usize + (x * people.width / WIDTH_1080P) as usize) * 3;
            rgb.extend_from_slice(&source[at..at + 3]);
        }
    }
    rgb
}

/// BT.601 limited-range Y, U and V of an RGB8 pixel.
fn yuv(pixel: &[u8]) -> [u8; 3] {
    let [r, g, b] = [pixel[0], pixel[1], pixel[2]].map(f32::from);
    let y = 16.0 + 0.256_79 * r + 0.504_13 * g + 0.097_91 * b;
    let u = 128.0 - 0.148_22 * r - 0.290_99 * g + 0.439_22 * b;
    let v = 128.0 + 0.439_22 * r - 0.367_79 * g - 0.071_43 * b;
    [y, u, v].map(|value| value.round() as u8)
}

/// A 1920x1080 RGB8 image as an NV12 or I420 frame, chroma from each 2x2 block's top-left pixel.
fn yuv_frame(rgb: &[u8], format: PixelFormat) -> Frame {
    let (width, height) = (WIDTH_1080P as usize, HEIGHT_1080P as usize);
    let luma = rgb.chunks_exact(3).map(|pixel| yuv(pixel)[0]);
    let chroma: Vec<[u8; 3]> = (0..height / 2)
        .flat_map(|y| (0..width / 2).map(move |x| (y * 2 * width + x * 2) * 3))
        .map(|at| yuv(&rgb[at..at + 3]))
        .collect();
    let mut data: Vec<u8> = luma.collect();
    match format {
        PixelFormat::Nv12 => data.extend(chroma.iter().flat_map(|&[_, u, v]| [u, v])),
        _ => {
            data.extend(chroma.iter().map(|c| c[1]));
            data.extend(chroma.iter().map(|c| c[2]));
        }
    }
    Frame::packed(format, WIDTH_1080P, HEIGHT_1080P, data).expect("a whole frame")
}

fn raw_frames(c: &mut Criterion) {
    let rgb = rgb_1080p();
    let frames =
        [("nv12-1080p", yuv_frame(&rgb, PixelFormat::Nv12)), ("i420-1080p", yuv_frame(&rgb, PixelFormat::I420))];
    for (model, label) in MODELS {
        let spec = image_spec(&bundle(model)).clone();
        let mut group = c.benchmark_group(format!("raw-frame/{label}"));
        group.throughput(Throughput::Elements(u64::from(WIDTH_1080P) * u64::from(HEIGHT_1080P)));
        for (name, frame) in &frames {
            let mut pre = ImagePreprocessor::new(&spec);
            group.bench_with_input(BenchmarkId::from_parameter(name), frame, |b, frame| {
                b.iter(|| black_box(pre.prepare_frame(black_box(frame)).expect("prepares")));
            });
        }
        group.finish();
    }
}

fn reduced_jpeg(c: &mut Criterion) {
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode(&rgb_1080p(), WIDTH_1080P, HEIGHT_1080P, ExtendedColorType::Rgb8)
        .expect("encodes");
    for (model, label) in MODELS {
        let spec = image_spec(&bundle(model)).clone();
        let mut group = c.benchmark_group(format!("jpeg-1080p/{label}"));
        group.throughput(Throughput::Elements(u64::from(WIDTH_1080P) * u64::from(HEIGHT_1080P)));
        for (name, reduced) in [("full-decode", false), ("reduced-decode", true)] {
            let mut pre = ImagePreprocessor::new(&spec);
            pre.set_reduced_jpeg_decode(reduced);
            group.bench_with_input(BenchmarkId::from_parameter(name), &jpeg, |b, jpeg| {
                b.iter(|| {
                    pre.decode(black_box(jpeg)).expect("decodes");
                    black_box(pre.prepare().expect("prepares"));
                });
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = quick();
    targets = decode, prepare, decode_prepare, raw_frames, reduced_jpeg
}
criterion_main!(benches);
