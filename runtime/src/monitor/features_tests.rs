use super::*;
use crate::frame::{Frame, PixelFormat};
use crate::input::SensorWindow;
use crate::manifest::{ColorOrder, ImageInputSpec, ImageLayout, InputDtype};
use crate::monitor::profile::ProfileBuilder;
use crate::monitor::test_support::{BUNDLES, models_dir, shipped};
use crate::monitor::window::DriftWindow;
use crate::preprocess::{ImagePreprocessor, SensorPreprocessor};
use crate::recording::{WindowShape, read_windows};
use protocol::{BoundingBox, ClassScore, Detection};

fn names(extractor: &FeatureExtractor) -> Vec<&str> {
    extractor.specs().iter().map(|spec| spec.name.as_str()).collect()
}

fn image_spec(manifest: &Manifest) -> ImageInputSpec {
    match &manifest.input {
        InputSpec::Image(spec) => spec.clone(),
        InputSpec::Sensor(_) => panic!("an image model expected"),
    }
}

fn classification(index: u32, score: f32) -> Output {
    Output::Classification { classes: vec![ClassScore { index, label: index.to_string(), score }] }
}

/// The features of an RGB8 frame for the image spec.
fn image_features(spec: &ImageInputSpec, width: u32, height: u32, rgb: Vec<u8>) -> Vec<f32> {
    let mut preprocessor = ImagePreprocessor::new(spec);
    let frame = Frame::new(PixelFormat::Rgb8, width, height, [width as usize * 3, 0, 0], rgb).expect("frame");
    preprocessor.prepare_frame(&frame).expect("prepared");
    let mut manifest = shipped("image-classifier").0;
    manifest.input = InputSpec::Image(spec.clone());
    let mut extractor = FeatureExtractor::new(&manifest, &[]);
    let mut out = Vec::new();
    extractor.extract(preprocessor.tensor(), &classification(0, 1.0), &mut out);
    out
}

fn shipped_frame(name: &str) -> ::image::RgbImage {
    ::image::open(models_dir().join("frames").join(name)).expect("frame decodes").to_rgb8()
}

#[test]
fn the_feature_list_follows_the_manifest() {
    let expected: [&[&str]; 4] = [
        &[
            "acc_x.mean",
            "acc_x.std",
            "acc_x.roughness",
            "acc_y.mean",
            "acc_y.std",
            "acc_y.roughness",
            "acc_z.mean",
            "acc_z.std",
            "acc_z.roughness",
            "gyro_x.mean",
            "gyro_x.std",
            "gyro_x.roughness",
            "gyro_y.mean",
            "gyro_y.std",
            "gyro_y.roughness",
            "gyro_z.mean",
            "gyro_z.std",
            "gyro_z.roughness",
            "predicted_class",
            "top1_confidence",
        ],
        &["brightness", "contrast", "mean_r", "mean_g", "mean_b", "sharpness", "predicted_class", "top1_confidence"],
        &[
            "brightness",
            "contrast",
            "mean_r",
            "mean_g",
            "mean_b",
            "sharpness",
            "detections",
            "mean_confidence",
            "box_size",
        ],
        &[
            "acc_x.mean",
            "acc_x.std",
            "acc_x.roughness",
            "acc_y.mean",
            "acc_y.std",
            "acc_y.roughness",
            "acc_z.mean",
            "acc_z.std",
            "acc_z.roughness",
            "anomaly_score",
        ],
    ];
    for ((bundle, expected), outputs) in BUNDLES.iter().zip(expected).zip([2, 2, 3, 1]) {
        let (manifest, labels) = shipped(bundle);
        let extractor = FeatureExtractor::new(&manifest, &labels);
        assert_eq!(names(&extractor), expected, "{bundle}");
        let sides: Vec<FeatureSide> = extractor.specs().iter().map(|spec| spec.side).collect();
        let inputs = expected.len() - outputs;
        assert!(sides[..inputs].iter().all(|side| *side == FeatureSide::Input), "{bundle}: {sides:?}");
        assert!(sides[inputs..].iter().all(|side| *side == FeatureSide::Output), "{bundle}: {sides:?}");
    }
    let (manifest, labels) = shipped("image-classifier");
    let extractor = FeatureExtractor::new(&manifest, &labels);
    assert_eq!(extractor.specs()[6].kind, FeatureKind::Categorical { categories: 1000 });
    // Without labels the class count is unknown: only the confidence is watched.
    assert_eq!(names(&FeatureExtractor::new(&manifest, &[]))[6..], ["top1_confidence"]);
}

#[test]
fn channel_names_follow_the_colour_order() {
    let (mut manifest, _) = shipped("face-detector");
    let InputSpec::Image(spec) = &mut manifest.input else { panic!("image") };
    spec.color = ColorOrder::Bgr;
    assert_eq!(names(&FeatureExtractor::new(&manifest, &[]))[2..5], ["mean_b", "mean_g", "mean_r"]);
    let InputSpec::Image(spec) = &mut manifest.input else { panic!("image") };
    spec.color = ColorOrder::Gray;
    assert_eq!(names(&FeatureExtractor::new(&manifest, &[]))[..3], ["brightness", "contrast", "sharpness"]);
}

#[test]
fn a_flat_frame_is_its_own_brightness_in_pixel_units() {
    let spec = image_spec(&shipped("image-classifier").0);
    let features = image_features(&spec, 64, 48, [200u8, 100, 50].repeat(64 * 48));
    let luma = 0.299 * 200.0 + 0.587 * 100.0 + 0.114 * 50.0;
    let expected = [luma, 0.0, 200.0, 100.0, 50.0, 0.0];
    for (name, (ours, expected)) in
        ["brightness", "contrast", "mean_r", "mean_g", "mean_b", "sharpness"].iter().zip(features.iter().zip(expected))
    {
        assert!((ours - expected).abs() < 1e-3, "{name}: {ours} vs {expected}");
    }
}

#[test]
fn layout_channel_order_and_dtype_do_not_change_the_features() {
    let frame = shipped_frame("astronaut.png");
    let (width, height) = frame.dimensions();
    let reference_spec = image_spec(&shipped("image-classifier").0);
    let reference = image_features(&reference_spec, width, height, frame.as_raw().clone());
    let variant = ImageInputSpec {
        layout: ImageLayout::Nhwc,
        color: ColorOrder::Bgr,
        dtype: InputDtype::U8,
        ..reference_spec.clone()
    };
    let mut features = image_features(&variant, width, height, frame.as_raw().clone());
    // BGR lists blue first.
    features.swap(2, 4);
    for (index, (a, b)) in reference.iter().zip(&features).enumerate() {
        // The f32 tensor holds normalised values; undone, they round to the pixel within f32 precision.
        assert!((a - b).abs() < 1e-2 * a.abs().max(1.0), "feature {index}: {a} vs {b}");
    }
    let gray = ImageInputSpec { color: ColorOrder::Gray, ..reference_spec };
    let gray_features = image_features(&gray, width, height, frame.as_raw().clone());
    // Brightness, contrast, sharpness and the confidence (no labels, so no predicted class).
    assert_eq!(gray_features.len(), 3 + 1);
    // Gray tensors hold the decoder's rounded luma.
    assert!((gray_features[0] - reference[0]).abs() < 0.6, "{gray_features:?} vs {reference:?}");
}

#[test]
fn brightening_and_blurring_move_the_right_features() {
    let spec = image_spec(&shipped("face-detector").0);
    let frame = shipped_frame("people.jpg");
    let (width, height) = frame.dimensions();
    let original = image_features(&spec, width, height, frame.as_raw().clone());
    let brighter = image_features(&spec, width, height, ::image::imageops::brighten(&frame, 40).into_raw());
    let blurred = image_features(&spec, width, height, ::image::imageops::blur(&frame, 2.0).into_raw());
    let [brightness, contrast, r, g, b, sharpness] = [0, 1, 2, 3, 4, 5];
    assert!(brighter[brightness] > original[brightness] + 20.0, "{brighter:?} vs {original:?}");
    for channel in [r, g, b] {
        assert!(brighter[channel] > original[channel] + 20.0, "{brighter:?} vs {original:?}");
    }
    assert!(blurred[sharpness] < original[sharpness] * 0.6, "{blurred:?} vs {original:?}");
    assert!(blurred[contrast] < original[contrast], "{blurred:?} vs {original:?}");
    assert!((blurred[brightness] - original[brightness]).abs() < 2.0, "{blurred:?} vs {original:?}");
}

#[test]
fn sensor_features_are_in_the_recording_units() {
    let (manifest, labels) = shipped("activity-classifier");
    let InputSpec::Sensor(spec) = &manifest.input else { panic!("sensor") };
    let mut preprocessor = SensorPreprocessor::new(spec);
    // Channel 0 alternates 1, 3; channel 1 ramps 0, 1, ..., 99; the others are constant 2.
    let values: Vec<f32> =
        (0..100).flat_map(|t| [if t % 2 == 0 { 1.0 } else { 3.0 }, t as f32, 2.0, 2.0, 2.0, 2.0]).collect();
    preprocessor.prepare(&SensorWindow { channels: 6, values }).expect("window");
    let mut extractor = FeatureExtractor::new(&manifest, &labels);
    let mut out = Vec::new();
    extractor.extract(InputTensor::F32(preprocessor.tensor()), &classification(2, 0.75), &mut out);
    let close = |index: usize, expected: f32| {
        assert!((out[index] - expected).abs() < 1e-3, "{}: {} vs {expected}", names(&extractor)[index], out[index])
    };
    close(0, 2.0);
    close(1, 1.0);
    close(2, 2.0);
    close(3, 49.5);
    close(4, (9999.0f32 / 12.0).sqrt());
    close(5, 1.0);
    for channel in 2..6 {
        close(3 * channel, 2.0);
        close(3 * channel + 1, 0.0);
        close(3 * channel + 2, 0.0);
    }
    assert_eq!(out[18..], [2.0, 0.75]);
}

#[test]
fn output_features_have_values_for_the_empty_cases() {
    let mut extractor = FeatureExtractor::new(&shipped("face-detector").0, &[]);
    let tensor = vec![0.0f32; 3 * 480 * 640];
    let mut out = Vec::new();
    extractor.extract(InputTensor::F32(&tensor), &Output::Detection { detections: vec![] }, &mut out);
    assert_eq!(out, [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    let face = |score: f32, side: f32| Detection {
        class_index: 0,
        label: "face".into(),
        score,
        bbox: BoundingBox { x_min: 10.0, y_min: 10.0, x_max: 10.0 + side, y_max: 10.0 + side },
        landmarks: vec![],
        polygon: vec![],
        keypoints: vec![],
        mask: None,
        stages: vec![],
    };
    let two = Output::Detection { detections: vec![face(0.9, 20.0), face(0.7, 40.0)] };
    extractor.extract(InputTensor::F32(&tensor), &two, &mut out);
    assert_eq!(out[6], 2.0);
    assert!((out[7] - 0.8).abs() < 1e-6 && (out[8] - 30.0).abs() < 1e-4, "{out:?}");

    let mut anomaly = FeatureExtractor::new(&shipped("vibration-anomaly").0, &[]);
    let window = vec![0.0f32; 150];
    anomaly.extract(
        InputTensor::F32(&window),
        &Output::Anomaly { score: 1.5, threshold: 1.0, anomalous: true, label: None, label_anomalous: None },
        &mut out,
    );
    assert_eq!(out.len(), 10);
    assert_eq!(out[9], 1.5);

    let mut classifier = FeatureExtractor::new(&shipped("activity-classifier").0, &vec!["a".to_owned(); 4]);
    let window = vec![0.0f32; 600];
    classifier.extract(InputTensor::F32(&window), &Output::Classification { classes: vec![] }, &mut out);
    assert_eq!(out.len(), 20);
    assert_eq!(out[18..], [0.0, 0.0]);
    // An output of another kind than the decoder's (a bug upstream) still gives a full vector.
    classifier.extract(InputTensor::F32(&window), &Output::Raw { tensors: vec![] }, &mut out);
    assert_eq!(out.len(), 20);
    assert!(out.iter().all(|value| value.is_finite()));
}

/// The features of every fifth window of the activity recording from sample `first` on, `gain` times the
/// recorded values.
fn activity_windows(gain: f32, first: usize) -> Vec<Vec<f32>> {
    let (manifest, labels) = shipped("activity-classifier");
    let InputSpec::Sensor(spec) = &manifest.input else { panic!("sensor") };
    let shape = WindowShape { channels: spec.channels, window: spec.window, channel_names: spec.channel_names.clone() };
    let windows =
        read_windows(&models_dir().join("recordings/activity.csv"), &shape, 1, usize::MAX).expect("recording");
    let mut preprocessor = SensorPreprocessor::new(spec);
    let mut extractor = FeatureExtractor::new(&manifest, &labels);
    windows
        .into_iter()
        .skip(first)
        .step_by(5)
        .map(|mut window| {
            window.values.iter_mut().for_each(|value| *value *= gain);
            preprocessor.prepare(&window).expect("window");
            let mut out = Vec::new();
            extractor.extract(InputTensor::F32(preprocessor.tensor()), &classification(0, 0.9), &mut out);
            out
        })
        .collect()
}

#[test]
fn the_activity_recording_does_not_drift_from_itself_but_a_gain_change_does() {
    let (manifest, labels) = shipped("activity-classifier");
    let specs = FeatureExtractor::new(&manifest, &labels).specs().to_vec();
    let reference = activity_windows(1.0, 0);
    let mut builder = ProfileBuilder::new(&specs);
    reference.iter().for_each(|vector| builder.add(vector));
    let profile = builder.build().expect("profile");
    let psi_of = |vectors: &[Vec<f32>]| {
        let mut window = DriftWindow::new(specs.len(), vectors.len());
        vectors.iter().for_each(|vector| window.push(vector));
        window.evaluate(&profile).iter().map(|stats| stats.psi).collect::<Vec<f64>>()
    };
    let own = psi_of(&reference);
    assert!(own.iter().all(|psi| *psi < 1e-3), "{own:?}");
    // Other windows of the same recording (offset by 2 samples) look alike: with 141 windows against 141,
    // sampling alone gives a PSI of about (bins - 1) (1/n + 1/m) = 0.13 at most.
    let offset = psi_of(&activity_windows(1.0, 2));
    assert!(offset.iter().all(|psi| *psi < 0.2), "{offset:?}");
    assert!(offset.iter().sum::<f64>() / (offset.len() as f64) < 0.05, "{offset:?}");
    let gained = psi_of(&activity_windows(1.5, 0));
    let accelerometer_std = gained[1];
    assert!(accelerometer_std > 0.25, "acc_x.std PSI {accelerometer_std}: {gained:?}");
    assert!(gained.iter().filter(|psi| **psi > 0.25).count() >= 6, "{gained:?}");
}
