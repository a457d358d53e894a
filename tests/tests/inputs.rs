//! The image input options against references made in Python (models/scripts/make_input_fixtures.py and
//! make_image_classifier_fp16.py): each resampling filter against the OpenCV or PIL resize it names, the shipped
//! classifier with Lanczos resizing against PIL's, the classifier in float16 (with a dynamic batch axis), integer
//! input tensors, and a graph without a batch axis letterboxed to the top-left with a fractional pad value. All
//! frames are PNGs, which decode the same everywhere: what differs is the resampling alone.

use std::path::Path;

use integration_tests::references;
use integration_tests::{models_dir, onnx_runtime};
use runtime::manifest::InputSpec;
use runtime::preprocess::ImagePreprocessor;
use runtime::{Bundle, Engine, EngineOptions, Input, InputTensor, Manifest, Output, Pipeline};
use serde::Deserialize;

const FILTERS: [&str; 6] = ["nearest", "bilinear", "bilinear_antialias", "area", "bicubic", "lanczos"];

fn read(path: impl AsRef<Path>) -> Vec<u8> {
    let path = models_dir().join(path);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn rgb_png(path: &str) -> (Vec<u8>, u32, u32) {
    let image = image::load_from_memory(&read(path)).expect("PNG decodes").into_rgb8();
    let (width, height) = image.dimensions();
    (image.into_raw(), width, height)
}

/// A copy of `bundle` (under `models/`) in a temporary directory, its manifest passed through `edit`.
fn edited_bundle(bundle: &str, edit: impl Fn(&str) -> String) -> (tempfile::TempDir, Bundle) {
    let dir = tempfile::tempdir().expect("temporary directory");
    for entry in std::fs::read_dir(models_dir().join(bundle)).expect("bundle directory") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.path().join(path.file_name().expect("file name"))).expect("copy");
    }
    let manifest = dir.path().join("manifest.toml");
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    let edited = edit(&text);
    assert_ne!(edited, text, "the edit changes the manifest");
    std::fs::write(&manifest, edited).expect("manifest written");
    let loaded = Bundle::load(dir.path()).expect("edited bundle loads");
    (dir, loaded)
}

fn pipeline(bundle: &Bundle) -> Pipeline {
    Pipeline::new(&onnx_runtime(), bundle, &EngineOptions::default()).expect("pipeline builds")
}

fn raw_values(pipeline: &mut Pipeline, frame: &str) -> (Vec<i64>, Vec<f32>) {
    let (output, _) = pipeline.infer(&Input::Image(read(frame))).expect("inference");
    let Output::Raw { tensors } = output else { panic!("raw output expected, got {output:?}") };
    let tensor = tensors.into_iter().next().expect("one output");
    (tensor.shape, tensor.data)
}

/// The largest difference and the share of values that differ by more than the references' rounding (6 decimals).
fn differences(got: &[f32], want: &[f32]) -> (f32, f64) {
    assert_eq!(got.len(), want.len(), "lengths");
    let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    let differ = got.iter().zip(want).filter(|(a, b)| (*a - *b).abs() > 1e-5).count();
    (worst, differ as f64 / got.len() as f64)
}

/// The most levels (of 255) a value may be off, and the largest share of values that may be off at all.
type Tolerance = (u8, f64);

#[test]
fn each_filter_matches_the_resize_it_names() {
    // Levels (of 255) and the share of values off, per filter, downscaling 512x512 to 96x72 then upscaling 40x30
    // to 96x72, a little over what was measured (docs/bundle-format.md, "Resampling filters", has the figures).
    // fast_image_resize computes with 16-bit fixed-point coefficients where PIL uses 22-bit ones and OpenCV
    // 11-bit ones, and rounds once per pass, so a level off here and there is to be expected; a wrong filter is
    // tens of levels off on most values (PIL's bilinear against OpenCV's differs by up to 127 downscaling).
    // `nearest` samples the source at the output pixels' centres in f64 where PIL and OpenCV use 16.16 fixed
    // point: at a ratio of 16/3 a third of the columns fall on a pixel edge, where each picks the other
    // neighbour, a whole pixel off; a wrong filter changes nearly every value.
    let tolerances: [(&str, Tolerance, Tolerance); 6] = [
        ("nearest", (u8::MAX, 0.25), (0, 0.0)),
        ("bilinear", (1, 0.30), (1, 0.30)),
        ("bilinear_antialias", (1, 0.01), (1, 0.01)),
        ("area", (1, 0.06), (1, 0.01)),
        ("bicubic", (1, 0.01), (1, 0.01)),
        ("lanczos", (1, 0.01), (1, 0.02)),
    ];
    let mut failures = Vec::new();
    for (filter, down, up) in tolerances {
        for (direction, source, (max_levels, max_share)) in
            [("down", "frames/astronaut.png", down), ("up", "testing/filters/small.png", up)]
        {
            let (want, width, height) = rgb_png(&format!("testing/filters/{filter}-{direction}.png"));
            let manifest = Manifest::parse(&format!(
                "name = \"f\"\nversion = \"1.0.0\"\ntask = \"raw\"\nsha256 = \"{}\"\n[input]\nkind = \"image\"\n\
                 tensor = \"x\"\nwidth = {width}\nheight = {height}\ndtype = \"u8\"\nlayout = \"nhwc\"\n\
                 filter = \"{filter}\"\n[output]\ndecoder = \"raw\"\n",
                "0".repeat(64)
            ))
            .expect("manifest parses");
            let InputSpec::Image(spec) = &manifest.input else { unreachable!("an image input") };
            let mut preprocessor = ImagePreprocessor::new(spec);
            preprocessor.decode(&read(source)).expect("decodes");
            preprocessor.prepare().expect("prepares");
            let InputTensor::U8(got) = preprocessor.tensor() else { panic!("u8 tensor expected") };
            let worst = got.iter().zip(&want).map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(0);
            let share = got.iter().zip(&want).filter(|(a, b)| a != b).count() as f64 / want.len() as f64;
            let measured = format!("{filter} {direction}: {worst} levels off, {:.2}% of values differ", share * 100.0);
            println!("{measured}");
            if worst > max_levels || share > max_share {
                failures.push(measured);
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(FILTERS.len(), tolerances.len(), "every filter is checked");
}

#[derive(Deserialize)]
struct LanczosCase {
    input: String,
    logits_top5: Vec<f32>,
    output: Output,
}

#[derive(Deserialize)]
struct LanczosReferences {
    cases: Vec<LanczosCase>,
}

#[test]
fn the_classifier_with_lanczos_matches_pil_lanczos() {
    let (_dir, bundle) = edited_bundle("image-classifier", |text| {
        text.replace("resize = \"center_crop\"", "resize = \"center_crop\"\nfilter = \"lanczos\"")
    });
    let path = models_dir().join("references/image-classifier-lanczos.json");
    let references: LanczosReferences = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let ort = onnx_runtime();
    let mut engine = Engine::new(&ort, &bundle, &EngineOptions::default()).expect("engine");
    let InputSpec::Image(spec) = &bundle.manifest().input else { unreachable!("an image input") };
    let mut preprocessor = ImagePreprocessor::new(spec);
    assert!(references.cases.len() >= 2);
    for case in &references.cases {
        preprocessor.decode(&read(&case.input)).expect("decodes");
        preprocessor.prepare().expect("prepares");
        let logits = engine.run(preprocessor.tensor()).expect("runs").get("logits").expect("logits").data().to_vec();
        let Output::Classification { classes } = &case.output else { panic!("classification reference") };
        let top5: Vec<f32> = classes.iter().map(|class| logits[class.index as usize]).collect();
        // A level off on under 1% of the pixels (Lanczos above) moved the top-5 logits by at most 0.010 here;
        // PIL's bilinear resize instead of its Lanczos moves them by 0.27 to 0.46 on these frames.
        let (worst, _) = differences(&top5, &case.logits_top5);
        println!("{}: top-5 logits at most {worst} from PIL Lanczos's", case.input);
        assert!(worst < 0.05, "{}: top-5 logits {top5:?} vs {:?}", case.input, case.logits_top5);
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|a, b| logits[*b].total_cmp(&logits[*a]));
        let want: Vec<usize> = classes.iter().map(|class| class.index as usize).collect();
        assert_eq!(order[..5], want[..], "{}: top-5 classes", case.input);
    }
}

#[test]
fn the_float16_classifier_matches_python_onnxruntime() {
    let bundle = Bundle::load(models_dir().join("testing/image-classifier-fp16")).expect("bundle loads");
    let ort = onnx_runtime();
    let engine = Engine::new(&ort, &bundle, &EngineOptions::default()).expect("engine");
    assert!(engine.takes_batches(), "the float16 model has a dynamic batch axis, run with batches of one");
    let mut pipeline = pipeline(&bundle);
    let references = references::load("image-classifier-fp16");
    for case in &references.cases {
        let (output, _) = pipeline.infer(&Input::Image(read(&case.input))).expect("inference");
        let (Output::Classification { classes: got }, Output::Classification { classes: want }) =
            (&output, &case.output)
        else {
            panic!("{}: classification expected, got {output:?}", case.input)
        };
        let indices = |classes: &[runtime::ClassScore]| classes.iter().map(|class| class.index).collect::<Vec<_>>();
        assert_eq!(indices(got), indices(want), "{}: top-5 classes", case.input);
        // The same float16 graph on both sides; only the resize differs (a level on under 1% of values, as for
        // the float32 classifier in references.rs), which float16's 3 significant digits do not hide.
        let worst = got.iter().zip(want).map(|(got, want)| (got.score - want.score).abs()).fold(0.0, f32::max);
        println!("{}: top-5 scores at most {worst} from Python onnxruntime's", case.input);
        for (got, want) in got.iter().zip(want) {
            assert!((got.score - want.score).abs() < 1e-2, "{}: {got:?} vs {want:?}", case.input);
        }
    }
}

#[derive(Deserialize)]
struct IdentityCase {
    input: String,
    shape: Vec<i64>,
    values: Vec<f32>,
}

#[derive(Deserialize)]
struct IdentityBundle {
    bundle: String,
    cases: Vec<IdentityCase>,
}

#[derive(Deserialize)]
struct IdentityReferences {
    bundles: Vec<IdentityBundle>,
}

fn identity_references(bundle: &str) -> IdentityBundle {
    let text = std::fs::read(models_dir().join("references/inputs.json")).expect("references");
    let references: IdentityReferences = serde_json::from_slice(&text).expect("references parse");
    references.bundles.into_iter().find(|b| b.bundle == format!("testing/{bundle}")).expect("bundle's references")
}

#[test]
fn integer_input_tensors_hold_the_pixel_values() {
    for bundle in ["image-identity-i8", "image-identity-i32", "image-identity-i64"] {
        let mut pipeline = pipeline(&Bundle::load(models_dir().join("testing").join(bundle)).expect("bundle loads"));
        let references = identity_references(bundle);
        for case in &references.cases {
            let (shape, values) = raw_values(&mut pipeline, &case.input);
            assert_eq!(shape, case.shape, "{bundle} {}", case.input);
            // The resize is a level off PIL's here and there (each_filter_matches_the_resize_it_names): measured
            // on up to 20% of the values for tall.png, stretched from 30 to 32 columns (upscaling, where PIL's 22-bit
            // and fast_image_resize's 16-bit weights round apart most often); never more than one level.
            let (worst, share) = differences(&values, &case.values);
            assert!(worst <= 1.0 && share < 0.25, "{bundle} {}: {worst} off, {share} differ", case.input);
            if bundle.ends_with("i8") {
                assert!(values.iter().any(|v| *v < 0.0), "{bundle}: i8 holds pixels less 128");
            }
        }
    }
}

#[test]
fn a_graph_without_a_batch_axis_takes_a_letterbox_padded_right_and_bottom() {
    let bundle = Bundle::load(models_dir().join("testing/image-identity-rank3")).expect("bundle loads");
    let mut pipeline = pipeline(&bundle);
    let references = identity_references("image-identity-rank3");
    let (_dir, normalized) = edited_bundle("testing/image-identity-rank3", |text| {
        text.replace("pad_value = 127.5", "pad_value_normalized = 0.0")
    });
    let mut normalized = self::pipeline(&normalized);
    for case in &references.cases {
        let (shape, values) = raw_values(&mut pipeline, &case.input);
        assert_eq!(shape, [3, 32, 32], "{}", case.input);
        // One level of the resize is 1/255/0.5 = 0.0078 once normalised; the padding is exact.
        let (worst, share) = differences(&values, &case.values);
        assert!(worst < 0.008 && share < 0.10, "{}: {worst} off, {share} differ", case.input);
        // 127.5 in pixel units is 0.0 after mean 0.5 and std 0.5: the same tensor.
        assert_eq!(raw_values(&mut normalized, &case.input), (shape, values), "{}", case.input);
    }
    // tall.png (30x40) into 32x32 is 24x32 at the left: the last 8 columns of every row are padding.
    let (_, tall) = raw_values(&mut pipeline, "testing/filters/tall.png");
    assert!(
        tall.chunks_exact(32).all(|row| row[24..].iter().all(|v| *v == 0.0) && row[..24].iter().any(|v| *v != 0.0))
    );
}

#[test]
fn a_manifest_that_claims_a_batch_axis_the_graph_lacks_is_refused() {
    let (_dir, bundle) =
        edited_bundle("testing/image-identity-rank3", |text| text.replace("batch_axis = false", "batch_axis = true"));
    let Err(error) = Engine::new(&onnx_runtime(), &bundle, &EngineOptions::default()) else {
        panic!("a rank-4 manifest for a rank-3 graph must be refused")
    };
    let message = error.to_string();
    assert!(message.contains("shape") && message.contains("[1, 3, 32, 32]"), "{message}");
}
