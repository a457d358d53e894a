//! The feature vectors the simulation draws from, computed once with the real pipeline (monitoring on) from the
//! shipped recordings and frames: the inputs are split by interleaving into a reference half, which the profile
//! is built from, and a stream half, which is also run through the pipeline once per shift, shifted.

use super::shift::{ChannelStats, FrameShift, SensorShift};
use crate::monitor::MonitoredModel;
use crate::update::probation::ModelScore;
use image::{RgbImage, imageops};
use runtime::manifest::InputSpec;
use runtime::monitor::ProfileBuilder;
use runtime::recording::{WindowShape, read_windows};
use runtime::{Bundle, EngineOptions, Frame, Input, OnnxRuntime, Pipeline, PixelFormat, SensorWindow};
use std::path::PathBuf;
use std::sync::Arc;

/// One model's material: its profile (in `model`), the stream half's features and, per shift, the same inputs'
/// features shifted.
pub struct Pool {
    pub bundle: &'static str,
    pub model: Arc<MonitoredModel>,
    /// Distinct inputs in the reference half.
    pub reference_inputs: usize,
    pub stream: Vec<Vec<f32>>,
    pub shifted: Vec<Shifted>,
}

/// The stream half's features under one shift, index for index with [`Pool::stream`].
pub struct Shifted {
    pub name: String,
    pub features: Vec<Vec<f32>>,
}

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// A pipeline of the shipped `bundle` computing the monitoring features, and the bundle.
fn pipeline(ort: &OnnxRuntime, bundle: &str) -> (Pipeline, Bundle) {
    let bundle = Bundle::load(models_dir().join(bundle)).expect("shipped bundle loads");
    let mut pipeline = Pipeline::new(ort, &bundle, &EngineOptions::default()).expect("pipeline builds");
    pipeline.enable_monitoring();
    (pipeline, bundle)
}

/// The features `pipeline` computes for `input`.
fn features(pipeline: &mut Pipeline, input: &Input) -> Vec<f32> {
    pipeline.infer(input).expect("the pipeline takes the input");
    pipeline.features().expect("monitoring is on").to_vec()
}

/// Even items for the reference, odd ones for the stream: both halves span the whole recording or frame set.
fn halves<T>(items: Vec<T>) -> (Vec<T>, Vec<T>) {
    let (mut reference, mut stream) = (Vec::new(), Vec::new());
    for (index, item) in items.into_iter().enumerate() {
        if index % 2 == 0 { reference.push(item) } else { stream.push(item) }
    }
    (reference, stream)
}

/// The pipeline's model with the profile of `reference` (features) instead of its bundle's.
fn profiled(pipeline: &Pipeline, reference: &[Vec<f32>]) -> Arc<MonitoredModel> {
    let mut builder = ProfileBuilder::new(pipeline.feature_specs());
    reference.iter().for_each(|features| builder.add(features));
    Arc::new(MonitoredModel {
        identity: pipeline.identity().clone(),
        specs: pipeline.feature_specs().to_vec(),
        profile: Some(Arc::new(builder.build().expect("a reference profile"))),
        labels: pipeline.labels().to_vec(),
        score: ModelScore::new(),
    })
}

/// The pool of a sensor model: the windows of `recording` (in `models/recordings/`) `stride` samples apart.
pub fn sensor_pool(
    ort: &OnnxRuntime,
    bundle: &'static str,
    recording: &str,
    stride: usize,
    shifts: &[SensorShift],
    seed: u64,
) -> Pool {
    let (mut pipeline, loaded) = pipeline(ort, bundle);
    let InputSpec::Sensor(spec) = &loaded.manifest().input else { panic!("{bundle} is not a sensor model") };
    let shape = WindowShape { channels: spec.channels, window: spec.window, channel_names: spec.channel_names.clone() };
    let path = models_dir().join("recordings").join(recording);
    let windows = read_windows(&path, &shape, stride, usize::MAX).expect("the recording reads");
    let (reference, stream) = halves(windows);
    let channels = ChannelStats::of(&reference, spec.channels);
    let reference_features: Vec<Vec<f32>> =
        reference.iter().map(|window| features(&mut pipeline, &Input::Sensor(window.clone()))).collect();
    let model = profiled(&pipeline, &reference_features);
    let mut run = |window: SensorWindow| features(&mut pipeline, &Input::Sensor(window));
    let stream_features = stream.iter().map(|window| run(window.clone())).collect();
    let mut random = fastrand::Rng::with_seed(seed);
    let shifted = shifts
        .iter()
        .map(|shift| Shifted {
            name: shift.describe(&spec.channel_names),
            features: stream
                .iter()
                .map(|window| {
                    let mut window = window.clone();
                    shift.apply(&mut window, &channels, &mut random);
                    run(window)
                })
                .collect(),
        })
        .collect();
    Pool { bundle, model, reference_inputs: reference.len(), stream: stream_features, shifted }
}

/// A random crop of one of the shipped frames, possibly mirrored: the variant is drawn once and rendered
/// whenever needed, so that hundreds of full-size crops are never held at once.
struct Crop {
    image: usize,
    x: u32,
    y: u32,
    width: u32,
    height: u32,
    mirrored: bool,
}

impl Crop {
    /// A crop of 60 to 100 % of each side of `images[image]`, anywhere in it, mirrored half the time.
    fn random(images: &[RgbImage], image: usize, random: &mut fastrand::Rng) -> Crop {
        let (full_width, full_height) = images[image].dimensions();
        let side = |full: u32, random: &mut fastrand::Rng| ((0.6 + 0.4 * random.f32()) * full as f32).round() as u32;
        let (width, height) = (side(full_width, random), side(full_height, random));
        let x = random.u32(0..=full_width - width);
        let y = random.u32(0..=full_height - height);
        Crop { image, x, y, width, height, mirrored: random.bool() }
    }

    fn render(&self, images: &[RgbImage]) -> RgbImage {
        let crop = imageops::crop_imm(&images[self.image], self.x, self.y, self.width, self.height).to_image();
        if self.mirrored { imageops::flip_horizontal(&crop) } else { crop }
    }
}

/// The frame the pipeline takes for `image`: raw RGB, as a camera source delivers it.
fn frame(image: RgbImage) -> Input {
    let (width, height) = image.dimensions();
    Input::Frame(Frame::packed(PixelFormat::Rgb8, width, height, image.into_raw()).expect("a packed RGB frame"))
}

/// The pool of the image classifier: `variants` random crops of the shipped frames (`models/frames/`).
pub fn frame_pool(ort: &OnnxRuntime, variants: usize, shifts: &[FrameShift], seed: u64) -> Pool {
    let bundle = "image-classifier";
    let (mut pipeline, _) = pipeline(ort, bundle);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(models_dir().join("frames"))
        .expect("the frames directory")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    paths.sort();
    let images: Vec<RgbImage> =
        paths.iter().map(|path| image::open(path).expect("a shipped frame decodes").to_rgb8()).collect();
    let mut random = fastrand::Rng::with_seed(seed);
    let crops: Vec<Crop> =
        (0..variants).map(|index| Crop::random(&images, index % images.len(), &mut random)).collect();
    let (reference, stream) = halves(crops);
    let mut run = |image: RgbImage| features(&mut pipeline, &frame(image));
    let reference_features: Vec<Vec<f32>> = reference.iter().map(|crop| run(crop.render(&images))).collect();
    let stream_features = stream.iter().map(|crop| run(crop.render(&images))).collect();
    let shifted = shifts
        .iter()
        .map(|shift| Shifted {
            name: shift.describe(),
            features: stream.iter().map(|crop| run(shift.apply(crop.render(&images), &mut random))).collect(),
        })
        .collect();
    Pool {
        bundle,
        model: profiled(&pipeline, &reference_features),
        reference_inputs: reference.len(),
        stream: stream_features,
        shifted,
    }
}
