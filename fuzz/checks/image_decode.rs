//! An encoded frame through the image preprocessor the pipeline runs for every `images`, `directory` and
//! `mqtt_frames` input: decode (JPEG/PNG sniffing, header checks, the decoders), then resize and normalise for
//! a real bundle, center crop (image-classifier) or letterbox (face-detector) by the input's length.

use runtime::Manifest;
use runtime::manifest::InputSpec;
use runtime::preprocess::{ImageLimits, ImagePreprocessor};
use std::cell::RefCell;

/// Frames over this are refused from the header, as the agent refuses frames over `max_pixels` (40 MP by
/// default); kept small here so that one input cannot spend the fuzzer's memory and seconds on one image.
const MAX_PIXELS: u64 = 1 << 20;

thread_local! {
    static PREPROCESSORS: RefCell<[ImagePreprocessor; 2]> = RefCell::new([
        preprocessor(include_str!("../../models/image-classifier/manifest.toml")),
        preprocessor(include_str!("../../models/face-detector/manifest.toml")),
    ]);
}

fn preprocessor(manifest: &str) -> ImagePreprocessor {
    let manifest = Manifest::parse(manifest).unwrap();
    let InputSpec::Image(spec) = &manifest.input else { panic!("an image bundle") };
    ImagePreprocessor::with_limits(spec, ImageLimits { max_pixels: MAX_PIXELS, ..ImageLimits::default() })
}

/// Panics where the product breaks a rule on `data`.
pub fn check(data: &[u8]) {
    PREPROCESSORS.with_borrow_mut(|preprocessors| {
        // Reused across inputs, as a worker reuses its preprocessor from frame to frame.
        let preprocessor = &mut preprocessors[data.len() % 2];
        let Ok((width, height)) = preprocessor.decode(data) else {
            assert!(preprocessor.decoded_rgb().is_empty(), "a failed decode leaves no image");
            return;
        };
        assert!(u64::from(width) * u64::from(height) <= MAX_PIXELS);
        assert_eq!(preprocessor.decoded_rgb().len(), width as usize * height as usize * 3);
        let _ = preprocessor.prepare();
    });
}
