//! No Rust heap allocation per input in steady state, counted by a global allocator (dhat's, in testing mode;
//! its own binary, since a global allocator is per binary).
//!
//! What holds, for inputs of one size after the first few:
//! - preparing sensor windows allocates nothing; preparing raw frames allocates only inside `fast_image_resize`,
//!   which computes its coefficient tables on every call (a block per row and column of the resized image);
//! - preparing JPEGs and PNGs allocates that, and inside the decoder crates (`jpeg-decoder` makes its per-frame
//!   working buffers, `png` its row buffers), a bounded number of blocks per frame, measured below;
//! - a run (engine and postprocessing, monitoring on) allocates exactly the returned `Output` (its `Vec`s and
//!   label `String`s: as many blocks as cloning it takes): the input is read in place, the outputs are written
//!   in place into tensors allocated once, and the decoders keep their scratch buffers.
//!
//! ONNX Runtime's own allocations are C++ and outside the Rust allocator: this test does not see them.

use runtime::{
    Bundle, EngineOptions, Frame, Input, OnnxRuntime, Output, Pipeline, PixelFormat, Prepared, SensorWindow,
};
use std::path::PathBuf;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Inputs run before counting, so that every buffer has reached its size.
const WARM_UP: usize = 4;
/// Inputs counted.
const COUNTED: usize = 8;

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

fn onnx_runtime() -> OnnxRuntime {
    let library = std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../third_party/onnxruntime/x86_64/libonnxruntime.so.1.31.1")
    });
    OnnxRuntime::load(library).expect("ONNX Runtime loads; run scripts/setup.sh first")
}

fn pipeline(ort: &OnnxRuntime, bundle: &str) -> Pipeline {
    let bundle = Bundle::load(models_dir().join(bundle)).expect("shipped bundle loads");
    let mut pipeline = Pipeline::new(ort, &bundle, &EngineOptions::default()).expect("pipeline builds");
    pipeline.enable_monitoring();
    pipeline
}

/// Heap blocks allocated while `f` runs.
fn blocks_allocated(f: impl FnOnce()) -> u64 {
    let before = dhat::HeapStats::get().total_blocks;
    f();
    dhat::HeapStats::get().total_blocks - before
}

/// Blocks allocated per input by preparing `inputs` in turn (after a warm-up), into two recycled buffers.
fn prepare_blocks_per_input(pipeline: &Pipeline, inputs: &[Input]) -> u64 {
    let mut preparer = pipeline.preparer();
    let mut buffers = [Prepared::new(), Prepared::new()];
    let mut prepare = |count: usize| {
        for index in 0..count {
            let input = &inputs[index % inputs.len()];
            preparer.prepare(input, &mut buffers[index % 2]).expect("prepares");
        }
    };
    prepare(WARM_UP);
    blocks_allocated(|| prepare(COUNTED)) / COUNTED as u64
}

/// Checks that running prepared inputs allocates exactly the returned outputs, and returns them.
fn assert_run_allocates_only_the_output(pipeline: &mut Pipeline, input: &Input) -> Output {
    let mut preparer = pipeline.preparer();
    let mut prepared = Prepared::new();
    preparer.prepare(input, &mut prepared).expect("prepares");
    for _ in 0..WARM_UP {
        pipeline.run(&prepared).expect("runs");
    }
    let mut output = None;
    let run = blocks_allocated(|| output = Some(pipeline.run(&prepared).expect("runs").0));
    let output = output.expect("ran");
    let cloned = blocks_allocated(|| drop(output.clone()));
    assert_eq!(run, cloned, "a run allocated {run} blocks; its output takes {cloned}: {output:?}");
    output
}

fn frame(name: &str) -> Vec<u8> {
    std::fs::read(models_dir().join("frames").join(name)).expect("shipped frame")
}

fn rgb_frame(jpeg: &[u8]) -> Frame {
    let rgb = image::load_from_memory(jpeg).expect("decodes").to_rgb8();
    let (width, height) = rgb.dimensions();
    Frame::packed(PixelFormat::Rgb8, width, height, rgb.into_raw()).expect("valid frame")
}

fn png_of(jpeg: &[u8]) -> Vec<u8> {
    let mut png = Vec::new();
    image::load_from_memory(jpeg)
        .expect("decodes")
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .expect("encodes");
    png
}

/// The model input's width and height.
fn input_size(bundle: &str) -> u64 {
    let bundle = Bundle::load(models_dir().join(bundle)).expect("shipped bundle loads");
    let runtime::manifest::InputSpec::Image(spec) = &bundle.manifest().input else { panic!("an image model") };
    u64::from(spec.width + spec.height)
}

/// Checks what preparing frames of one size allocates for an image model: raw frames only the resize's
/// coefficient tables, which `fast_image_resize` computes on every call (a block per row and column of the
/// resized image, and a few more); JPEGs and PNGs that much plus their decoders' working buffers.
fn assert_image_preparation_allocations(pipeline: &Pipeline, bundle: &str, jpeg: &[u8]) {
    let raw = prepare_blocks_per_input(pipeline, &[Input::Frame(rgb_frame(jpeg))]);
    let resize_bound = input_size(bundle) + RESIZE_EXTRA_BLOCKS;
    assert!(raw <= resize_bound, "{bundle}: {raw} blocks per raw frame, over the resize's {resize_bound}");
    for (format, input) in [("JPEG", Input::Image(jpeg.to_vec())), ("PNG", Input::Image(png_of(jpeg)))] {
        let decoder = prepare_blocks_per_input(pipeline, &[input]) - raw;
        println!("{bundle}: {raw} blocks per raw frame, {format} {decoder} more in the decoder");
        assert!(decoder <= DECODER_BLOCKS, "{bundle}: {format} decoder took {decoder} blocks per frame");
    }
}

/// The resize's blocks per call besides one per row and column (measured: 9).
const RESIZE_EXTRA_BLOCKS: u64 = 16;
/// The JPEG or PNG decoder's blocks per frame (measured: `jpeg-decoder` 19, `png` 7).
const DECODER_BLOCKS: u64 = 32;

#[test]
fn steady_state_inputs_allocate_nothing_but_the_decoders_buffers_and_the_output() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let ort = onnx_runtime();

    let mut activity = pipeline(&ort, "activity-classifier");
    let windows: Vec<Input> = (0..2)
        .map(|offset| {
            let values = (0..600).map(|index| ((index + offset) % 17) as f32 * 0.1).collect();
            Input::Sensor(SensorWindow { channels: 6, values })
        })
        .collect();
    assert_eq!(prepare_blocks_per_input(&activity, &windows), 0, "sensor windows");
    let output = assert_run_allocates_only_the_output(&mut activity, &windows[0]);
    assert!(matches!(&output, Output::Classification { classes } if !classes.is_empty()), "{output:?}");

    let mut classifier = pipeline(&ort, "image-classifier");
    let cat = frame("cat.jpg");
    assert_image_preparation_allocations(&classifier, "image-classifier", &cat);
    let output = assert_run_allocates_only_the_output(&mut classifier, &Input::Frame(rgb_frame(&cat)));
    assert!(matches!(&output, Output::Classification { classes } if classes.len() == 5), "{output:?}");

    let mut detector = pipeline(&ort, "face-detector");
    let people = frame("people.jpg");
    assert_image_preparation_allocations(&detector, "face-detector", &people);
    let output = assert_run_allocates_only_the_output(&mut detector, &Input::Frame(rgb_frame(&people)));
    assert!(matches!(&output, Output::Detection { detections } if !detections.is_empty()), "{output:?}");
}
