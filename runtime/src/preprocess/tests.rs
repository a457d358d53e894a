//! Tests of decoding, resizing, normalising and sensor windows, each against a naive reference or a
//! hand-worked value.

use std::time::{Duration, Instant};

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};
use proptest::prelude::*;

use super::normalize::{Normalizer, OwnedTensor};
use super::resize::{Fit, FrameResizer, Placement, ResizePlan};
use super::*;
use crate::input::SensorWindow;
use crate::manifest::{
    ColorOrder, ImageLayout, InputDtype, PadSide, ResizeFilter, ResizeMode, SensorInputSpec, SensorLayout,
};
use protocol::{BoundingBox, Point};

// ---------------------------------------------------------------------------------------------------------
// Helpers

pub(super) fn image_spec(width: u32, height: u32) -> ImageInputSpec {
    ImageInputSpec {
        tensor: "images".to_owned(),
        layout: ImageLayout::Nchw,
        width,
        height,
        color: ColorOrder::Rgb,
        dtype: InputDtype::F32,
        resize: ResizeMode::Stretch,
        crop_fraction: 1.0,
        scale: 1.0 / 255.0,
        mean: vec![0.0],
        std: vec![1.0],
        pad_value: None,
        filter: ResizeFilter::BilinearAntialias,
        pad_side: PadSide::Center,
        pad_value_normalized: None,
        batch_axis: None,
        dynamic_size: None,
    }
}

/// The default fit of `mode` (centred letterbox, bilinear with antialiasing).
pub(super) fn fit(mode: ResizeMode, crop_fraction: f32, pad_value: u8) -> Fit {
    Fit { mode, crop_fraction, pad_side: PadSide::Center, filter: ResizeFilter::BilinearAntialias, pad_value }
}

fn encode_png(width: u32, height: u32, color: ExtendedColorType, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PngEncoder::new(&mut out).write_image(data, width, height, color).unwrap();
    out
}

fn encode_jpeg(width: u32, height: u32, color: ExtendedColorType, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 95).encode(data, width, height, color).unwrap();
    out
}

/// An RGB8 image with no two neighbouring pixels alike, to catch swapped rows, columns or channels.
pub(super) fn pattern(width: u32, height: u32) -> Vec<u8> {
    let mut rgb = Vec::new();
    for y in 0..height {
        for x in 0..width {
            rgb.extend([(x * 37 + y * 11) as u8, (x * 5 + y * 71 + 3) as u8, (x * y + 200) as u8]);
        }
    }
    rgb
}

/// An RGB8 image varying slowly, which JPEG keeps well.
fn smooth(width: u32, height: u32) -> Vec<u8> {
    let mut rgb = Vec::new();
    for y in 0..height {
        for x in 0..width {
            rgb.extend([(x * 4) as u8, (y * 4) as u8, 128]);
        }
    }
    rgb
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A PNG signature and a well-formed IHDR (8-bit RGB) announcing `width` x `height`, and nothing else.
fn png_header(width: u32, height: u32) -> Vec<u8> {
    let mut chunk = b"IHDR".to_vec();
    chunk.extend(width.to_be_bytes());
    chunk.extend(height.to_be_bytes());
    chunk.extend([8, 2, 0, 0, 0]);
    let mut bytes = vec![0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
    bytes.extend(13u32.to_be_bytes());
    bytes.extend(&chunk);
    bytes.extend(crc32(&chunk).to_be_bytes());
    bytes
}

fn pixel_limit(max_pixels: u64) -> ImageLimits {
    ImageLimits { max_pixels, ..ImageLimits::default() }
}

fn assert_decode_error(result: Result<(u32, u32)>, expected: &str) {
    match result {
        Err(Error::Decode { reason }) => assert!(reason.contains(expected), "reason {reason:?} lacks {expected:?}"),
        other => panic!("expected a decode error containing {expected:?}, got {other:?}"),
    }
}

pub(super) fn max_difference(a: &[u8], b: &[u8]) -> u8 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------------------
// Decoding

#[test]
fn png_round_trips_sizes_and_pixels() {
    let rgb = pattern(7, 5);
    let mut decoder = RgbDecoder::default();
    assert_eq!(decoder.decode(&encode_png(7, 5, ExtendedColorType::Rgb8, &rgb)).unwrap(), (7, 5));
    assert_eq!(decoder.dimensions(), (7, 5));
    assert_eq!(decoder.rgb(), &rgb[..]);
}

#[test]
fn jpeg_round_trips_sizes_and_pixels_approximately() {
    let rgb = smooth(48, 32);
    let mut decoder = RgbDecoder::default();
    assert_eq!(decoder.decode(&encode_jpeg(48, 32, ExtendedColorType::Rgb8, &rgb)).unwrap(), (48, 32));
    let mean_error =
        decoder.rgb().iter().zip(&rgb).map(|(a, b)| f64::from(a.abs_diff(*b))).sum::<f64>() / rgb.len() as f64;
    assert!(mean_error < 2.0, "mean error {mean_error}");
    assert!(max_difference(decoder.rgb(), &rgb) < 16);
}

#[test]
fn gray_png_and_jpeg_are_replicated_to_three_channels() {
    let gray: Vec<u8> = (0..6 * 4).map(|i| (i * 10) as u8).collect();
    let replicated: Vec<u8> = gray.iter().flat_map(|&g| [g, g, g]).collect();
    let mut decoder = RgbDecoder::default();
    decoder.decode(&encode_png(6, 4, ExtendedColorType::L8, &gray)).unwrap();
    assert_eq!(decoder.rgb(), &replicated[..]);

    let flat_gray = vec![90u8; 16 * 16];
    decoder.decode(&encode_jpeg(16, 16, ExtendedColorType::L8, &flat_gray)).unwrap();
    assert_eq!(decoder.rgb().len(), 16 * 16 * 3);
    assert!(decoder.rgb().chunks_exact(3).all(|p| p[0] == p[1] && p[1] == p[2]), "gray JPEG not replicated");
    assert!(max_difference(decoder.rgb(), &[90; 16 * 16 * 3]) <= 2);
}

#[test]
fn alpha_is_dropped() {
    let rgb = pattern(5, 3);
    let rgba: Vec<u8> = rgb.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 17]).collect();
    let mut decoder = RgbDecoder::default();
    decoder.decode(&encode_png(5, 3, ExtendedColorType::Rgba8, &rgba)).unwrap();
    assert_eq!(decoder.rgb(), &rgb[..]);

    let gray_alpha = [10, 255, 20, 0, 30, 128];
    decoder.decode(&encode_png(3, 1, ExtendedColorType::La8, &gray_alpha)).unwrap();
    assert_eq!(decoder.rgb(), &[10, 10, 10, 20, 20, 20, 30, 30, 30]);
}

#[test]
fn sixteen_bit_pngs_keep_the_high_byte_as_pil_does() {
    // Values PIL 13 was checked with: RGB16 [0, 51400, 2699, 2698, 65535, 300] -> [0, 200, 10, 10, 255, 1].
    let samples: [u16; 6] = [0, 257 * 200, 257 * 10 + 129, 257 * 10 + 128, 65535, 300];
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_ne_bytes()).collect();
    let mut decoder = RgbDecoder::default();
    decoder.decode(&encode_png(2, 1, ExtendedColorType::Rgb16, &bytes)).unwrap();
    assert_eq!(decoder.rgb(), &[0, 200, 10, 10, 255, 1]);

    decoder.decode(&encode_png(3, 2, ExtendedColorType::L16, &bytes)).unwrap();
    assert_eq!(&decoder.rgb()[..6], &[0, 0, 0, 200, 200, 200]);
    assert_eq!(&decoder.rgb()[15..], &[1, 1, 1]);

    let rgba16: Vec<u8> = [1000u16, 2000, 3000, 0].iter().flat_map(|s| s.to_ne_bytes()).collect();
    decoder.decode(&encode_png(1, 1, ExtendedColorType::Rgba16, &rgba16)).unwrap();
    assert_eq!(decoder.rgb(), &[3, 7, 11]);

    let gray_alpha16: Vec<u8> = [2699u16, 5, 65535, 9].iter().flat_map(|s| s.to_ne_bytes()).collect();
    decoder.decode(&encode_png(2, 1, ExtendedColorType::La16, &gray_alpha16)).unwrap();
    assert_eq!(decoder.rgb(), &[10, 10, 10, 255, 255, 255]);
}

#[test]
fn empty_input_is_its_own_error() {
    assert!(matches!(RgbDecoder::default().decode(&[]), Err(Error::EmptyInput)));
}

#[test]
fn truncated_jpegs_are_refused() {
    let jpeg = encode_jpeg(48, 32, ExtendedColorType::Rgb8, &smooth(48, 32));
    let mut decoder = RgbDecoder::default();
    for cut in [3, 10, jpeg.len() / 2, jpeg.len() - 2] {
        assert_decode_error(decoder.decode(&jpeg[..cut]), "truncated JPEG");
        assert_eq!(decoder.dimensions(), (0, 0));
    }
    // The whole file still decodes, and so does one with padding after the end-of-image marker.
    let mut padded = jpeg.clone();
    padded.extend([0; 10]);
    assert_eq!(decoder.decode(&padded).unwrap(), (48, 32));
}

#[test]
fn truncated_and_corrupt_pngs_are_refused() {
    let png = encode_png(40, 30, ExtendedColorType::Rgb8, &pattern(40, 30));
    let mut decoder = RgbDecoder::default();
    assert_decode_error(decoder.decode(&png[..20]), "truncated PNG");
    assert_decode_error(decoder.decode(&png[..png.len() / 2]), "truncated PNG");

    let mut corrupt = png.clone();
    let data_start = png.windows(4).position(|w| w == b"IDAT").unwrap() + 4;
    for byte in &mut corrupt[data_start..data_start + 32] {
        *byte ^= 0x5a;
    }
    assert_decode_error(decoder.decode(&corrupt), "PNG");

    let mut not_ihdr = png.clone();
    not_ihdr[12..16].copy_from_slice(b"IDAT");
    assert_decode_error(decoder.decode(&not_ihdr), "first chunk is not IHDR");
}

#[test]
fn bytes_of_another_format_are_refused() {
    assert_decode_error(RgbDecoder::default().decode(b"GIF89a........"), "not a JPEG or PNG (starts with 47 49 46");
}

#[test]
fn png_bomb_header_fails_fast_without_decoding() {
    let mut decoder = RgbDecoder::default();
    let start = Instant::now();
    let result = decoder.decode(&png_header(40_000, 40_000));
    assert!(start.elapsed() < Duration::from_millis(50), "took {:?}", start.elapsed());
    match result {
        Err(Error::ImageTooLarge { width: 40_000, height: 40_000, max_pixels }) => {
            assert_eq!(max_pixels, DEFAULT_MAX_PIXELS)
        }
        other => panic!("expected ImageTooLarge, got {other:?}"),
    }
    // The same header at a modest size passes the check and only then fails for lack of image data.
    assert_decode_error(decoder.decode(&png_header(64, 64)), "truncated PNG");
}

#[test]
fn jpeg_bomb_header_fails_fast_without_decoding() {
    let mut jpeg = vec![0xff, 0xd8];
    // APP0 (JFIF), to walk past a segment, then a baseline frame header of 65000 x 65000, 3 components.
    jpeg.extend([0xff, 0xe0, 0, 16, b'J', b'F', b'I', b'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0]);
    jpeg.extend([0xff, 0xc0, 0, 17, 8, 0xfd, 0xe8, 0xfd, 0xe8, 3, 1, 0x11, 0, 2, 0x11, 1, 3, 0x11, 1]);
    match RgbDecoder::default().decode(&jpeg) {
        Err(Error::ImageTooLarge { width: 65_000, height: 65_000, .. }) => {}
        other => panic!("expected ImageTooLarge, got {other:?}"),
    }
}

#[test]
fn the_pixel_limit_is_configurable_and_read_from_real_headers() {
    let png = encode_png(30, 20, ExtendedColorType::Rgb8, &pattern(30, 20));
    let jpeg = encode_jpeg(30, 20, ExtendedColorType::Rgb8, &smooth(30, 20));
    for bytes in [&png, &jpeg] {
        match RgbDecoder::new(pixel_limit(599)).decode(bytes) {
            Err(Error::ImageTooLarge { width: 30, height: 20, max_pixels: 599 }) => {}
            other => panic!("expected ImageTooLarge, got {other:?}"),
        }
        assert_eq!(RgbDecoder::new(pixel_limit(600)).decode(bytes).unwrap(), (30, 20));
    }
}

#[test]
fn buffers_are_reused_across_frames_of_one_size() {
    let big = encode_png(64, 48, ExtendedColorType::Rgb8, &pattern(64, 48));
    let small = encode_png(8, 8, ExtendedColorType::Rgb8, &pattern(8, 8));
    let gray = encode_png(64, 48, ExtendedColorType::L8, &vec![7; 64 * 48]);
    let mut decoder = RgbDecoder::default();
    decoder.decode(&big).unwrap();
    let buffer = decoder.rgb().as_ptr();
    for bytes in [&small, &big, &gray, &big] {
        decoder.decode(bytes).unwrap();
        assert_eq!(decoder.rgb().as_ptr(), buffer, "the RGB buffer was reallocated");
    }
    assert_eq!(decoder.rgb(), &pattern(64, 48)[..]);
}

// ---------------------------------------------------------------------------------------------------------
// Memory limits and buffers

fn decoded_limit(max_decoded_bytes: u64) -> ImageLimits {
    ImageLimits { max_decoded_bytes, ..ImageLimits::default() }
}

fn sixteen_bit_rgba_png(width: u32, height: u32) -> Vec<u8> {
    let samples = vec![0x1234u16.to_ne_bytes(); width as usize * height as usize * 4].concat();
    encode_png(width, height, ExtendedColorType::Rgba16, &samples)
}

#[test]
fn a_sixteen_bit_rgba_png_costs_its_rgb_frame_and_a_few_rows_not_eight_bytes_a_pixel() {
    // 100 x 100: the RGB8 frame (30000) and four raw rows of 1 + 100 * 8 bytes (3204).
    let png = sixteen_bit_rgba_png(100, 100);
    let mut decoder = RgbDecoder::new(decoded_limit(33_203));
    match decoder.decode(&png) {
        Err(Error::DecodedTooLarge { bytes: 33_204, limit: 33_203, width: 100, height: 100, pixel_format }) => {
            assert_eq!(pixel_format, "16-bit RGBA PNG")
        }
        other => panic!("expected DecodedTooLarge, got {other:?}"),
    }
    let message = decoder.decode(&png).unwrap_err().to_string();
    assert_eq!(message, "decoded size 33204 bytes exceeds the limit of 33203 bytes (100x100, 16-bit RGBA PNG)",);
    assert_eq!(decoder.dimensions(), (0, 0));
    assert!(matches!(
        Error::DecodedTooLarge { bytes: 1, limit: 0, width: 1, height: 1, pixel_format: String::new() }.kind(),
        protocol::error::ErrorKind::ImageTooLarge
    ));

    decoder.set_limits(decoded_limit(33_204));
    assert_eq!(decoder.decode(&png).unwrap(), (100, 100));
    assert!(decoder.rgb().chunks_exact(3).all(|pixel| pixel == [0x12, 0x12, 0x12]));
}

#[test]
fn the_pixel_limit_is_checked_before_the_decoded_size() {
    let mut decoder = RgbDecoder::new(ImageLimits { max_pixels: 100, max_decoded_bytes: 10 });
    assert!(matches!(decoder.decode(&png_header(11, 10)), Err(Error::ImageTooLarge { .. })));
    let png = encode_png(10, 10, ExtendedColorType::Rgb8, &pattern(10, 10));
    assert!(matches!(decoder.decode(&png), Err(Error::DecodedTooLarge { .. })));
}

#[test]
fn the_preprocessor_counts_the_resize_intermediate_against_the_limit() {
    // 100 x 100 RGB8 stretched to 10 x 10: the frame (30000), four raw rows (4 x 301) and the frame resampled
    // along its rows, 10 x 100 pixels (3000).
    let png = encode_png(100, 100, ExtendedColorType::Rgb8, &pattern(100, 100));
    let spec = image_spec(10, 10);
    let mut pre = ImagePreprocessor::with_limits(&spec, decoded_limit(34_203));
    match pre.decode(&png) {
        Err(Error::DecodedTooLarge { bytes: 34_204, .. }) => {}
        other => panic!("expected DecodedTooLarge, got {other:?}"),
    }
    assert!(matches!(pre.prepare(), Err(Error::EmptyInput)), "a refused frame is not prepared");
    pre.set_limits(decoded_limit(34_204));
    assert_eq!(pre.decode(&png).unwrap(), (100, 100));
    pre.prepare().unwrap();
    // No intermediate when only one direction is resampled: 10 columns of 100 rows kept at full height.
    let mut narrow = ImagePreprocessor::with_limits(&image_spec(10, 100), decoded_limit(31_204));
    assert_eq!(narrow.decode(&png).unwrap(), (100, 100));
}

#[test]
fn outsized_frame_buffers_are_given_back_after_use_and_small_ones_kept() {
    let spec = image_spec(8, 8);
    let mut pre = ImagePreprocessor::new(&spec);
    pre.decode(&encode_png(64, 48, ExtendedColorType::Rgb8, &pattern(64, 48))).unwrap();
    pre.prepare().unwrap();
    pre.release_outsized();
    assert_eq!(pre.decoded_rgb(), &pattern(64, 48)[..], "a small frame stays");

    // 2400 x 2400 RGB8 is 17.3 MB, over the 16 MiB kept.
    let side = 2400;
    assert!(side * side * 3 > RETAINED_FRAME_BYTES);
    let big = encode_png(side as u32, side as u32, ExtendedColorType::L8, &vec![9; side * side]);
    pre.decode(&big).unwrap();
    pre.prepare().unwrap();
    pre.release_outsized();
    assert!(pre.decoded_rgb().is_empty(), "the outsized frame is forgotten with its buffer");
    assert!(matches!(pre.prepare(), Err(Error::EmptyInput)));
    pre.decode(&big).unwrap();
    assert_eq!(pre.decoded_rgb().len(), side * side * 3, "and decodes again");
}

/// A PNG of `rgb` (8-bit RGB) with Adam7 interlacing, stored uncompressed (no encoder at hand writes
/// interlaced PNGs).
fn interlaced_png(width: u32, height: u32, rgb: &[u8]) -> Vec<u8> {
    // (x start, y start, x step, y step) of the seven passes.
    const PASSES: [(u32, u32, u32, u32); 7] =
        [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)];
    let mut raw = Vec::new();
    for (x0, y0, dx, dy) in PASSES {
        if x0 >= width || y0 >= height {
            continue;
        }
        for y in (y0..height).step_by(dy as usize) {
            raw.push(0); // filter: none
            for x in (x0..width).step_by(dx as usize) {
                let at = (y * width + x) as usize * 3;
                raw.extend_from_slice(&rgb[at..at + 3]);
            }
        }
    }
    // zlib: one stored deflate block, then the Adler-32 of the data.
    let mut zlib = vec![0x78, 0x01, 0x01];
    let length = raw.len() as u16;
    zlib.extend(length.to_le_bytes());
    zlib.extend((!length).to_le_bytes());
    zlib.extend(&raw);
    let (a, b) = raw.iter().fold((1u32, 0u32), |(a, b), &byte| {
        let a = (a + u32::from(byte)) % 65521;
        (a, (b + a) % 65521)
    });
    zlib.extend(((b << 16) | a).to_be_bytes());

    let mut png = vec![0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 1]);
    for (kind, data) in [(b"IHDR", ihdr), (b"IDAT", zlib), (b"IEND", Vec::new())] {
        let mut chunk = kind.to_vec();
        chunk.extend(&data);
        png.extend((data.len() as u32).to_be_bytes());
        png.extend(&chunk);
        png.extend(crc32(&chunk).to_be_bytes());
    }
    png
}

#[test]
fn interlaced_pngs_are_spread_pass_by_pass_into_the_frame() {
    let rgb = pattern(13, 11);
    let png = interlaced_png(13, 11, &rgb);
    let mut decoder = RgbDecoder::default();
    assert_eq!(decoder.decode(&png).unwrap(), (13, 11));
    assert_eq!(decoder.rgb(), &rgb[..]);
    match RgbDecoder::new(decoded_limit(1)).decode(&png) {
        Err(Error::DecodedTooLarge { pixel_format, .. }) => assert_eq!(pixel_format, "8-bit RGB interlaced PNG"),
        other => panic!("expected DecodedTooLarge, got {other:?}"),
    }
}

#[test]
fn a_baseline_jpeg_costs_its_frame_and_its_input() {
    let jpeg = encode_jpeg(48, 32, ExtendedColorType::Rgb8, &smooth(48, 32));
    let exact = 48 * 32 * 3 + jpeg.len() as u64;
    match RgbDecoder::new(decoded_limit(exact - 1)).decode(&jpeg) {
        Err(Error::DecodedTooLarge { bytes, pixel_format, .. }) => {
            assert_eq!(bytes, exact);
            assert_eq!(pixel_format, "3-component baseline JPEG");
        }
        other => panic!("expected DecodedTooLarge, got {other:?}"),
    }
    assert_eq!(RgbDecoder::new(decoded_limit(exact)).decode(&jpeg).unwrap(), (48, 32));
}

// ---------------------------------------------------------------------------------------------------------
// Geometry

const MODES: [ResizeMode; 3] = [ResizeMode::Stretch, ResizeMode::Letterbox, ResizeMode::CenterCrop];

fn mode() -> impl Strategy<Value = ResizeMode> {
    prop_oneof![Just(ResizeMode::Stretch), Just(ResizeMode::Letterbox), Just(ResizeMode::CenterCrop)]
}

proptest! {
    #[test]
    fn geometry_maps_source_corners_and_centre_back_to_themselves(
        mode in mode(), source in (1u32..=6000, 1u32..=6000), model in (1u32..=1536, 1u32..=1536),
        crop_fraction in 0.5f32..=1.0,
    ) {
        let plan = ResizePlan::new(fit(mode, crop_fraction, 0), source, model);
        let (w, h) = (source.0 as f32, source.1 as f32);
        let corners_and_centre = [(0.0, 0.0), (w, h), (w, 0.0), (w / 2.0, h / 2.0)].map(|(x, y)| Point { x, y });
        for point in corners_and_centre {
            let back = plan.geometry.to_source(plan.geometry.to_model(point));
            let close = (back.x - point.x).abs() < 1e-3 && (back.y - point.y).abs() < 1e-3;
            prop_assert!(close, "{point:?} came back as {back:?}");
        }
    }

    #[test]
    fn letterbox_puts_the_whole_source_inside_with_symmetric_padding(
        source in (1u32..=6000, 1u32..=6000), model in (1u32..=1536, 1u32..=1536),
    ) {
        let plan = ResizePlan::new(fit(ResizeMode::Letterbox, 1.0, 0), source, model);
        let geometry = plan.geometry;
        let top_left = geometry.to_model(Point { x: 0.0, y: 0.0 });
        let bottom_right = geometry.to_model(Point { x: source.0 as f32, y: source.1 as f32 });
        prop_assert!(top_left.x >= 0.0 && top_left.y >= 0.0, "{top_left:?}");
        let inside = bottom_right.x <= model.0 as f32 + 1e-3 && bottom_right.y <= model.1 as f32 + 1e-3;
        prop_assert!(inside, "{bottom_right:?}");
        let (left, right) = (top_left.x, model.0 as f32 - bottom_right.x);
        let (top, bottom) = (top_left.y, model.1 as f32 - bottom_right.y);
        let symmetric = (left - right).abs() <= 1.0 + 1e-3 && (top - bottom).abs() <= 1.0 + 1e-3;
        prop_assert!(symmetric, "{left} {right} {top} {bottom}");
        // One side fills the model input (up to rounding to whole pixels).
        prop_assert!(left.min(top) == 0.0, "{left} {top}");
        let Placement::Inset { left: inset_left, top: inset_top, width, height } = plan.placement else {
            panic!("letterbox places an inset");
        };
        prop_assert!(inset_left + width <= model.0 && inset_top + height <= model.1);
        prop_assert!(width >= 1 && height >= 1);
    }

    #[test]
    fn center_crop_box_is_inside_the_source(
        source in (1u32..=6000, 1u32..=6000), model in (1u32..=1536, 1u32..=1536), crop_fraction in 0.3f32..=1.0,
    ) {
        let plan = ResizePlan::new(fit(ResizeMode::CenterCrop, crop_fraction, 0), source, model);
        let Placement::Crop { left, top, width, height } = plan.placement else { panic!("center crop crops") };
        let (w, h) = (f64::from(source.0), f64::from(source.1));
        prop_assert!(left >= 0.0 && top >= 0.0 && left + width <= w && top + height <= h);
        prop_assert!(width > 0.0 && height > 0.0);
        // Centred, and the kept share of the limiting side is crop_fraction.
        prop_assert!((left - (w - left - width)).abs() < 1e-6 * w && (top - (h - top - height)).abs() < 1e-6 * h);
        let kept = (width / w).max(height / h);
        prop_assert!((kept - f64::from(crop_fraction)).abs() < 1e-6, "kept {kept}");
        // The model input corners map inside the source.
        let corner = plan.geometry.to_source(Point { x: model.0 as f32, y: model.1 as f32 });
        let origin = plan.geometry.to_source(Point { x: 0.0, y: 0.0 });
        let tolerance = 1e-3 * (source.0.max(source.1) as f32 / 1000.0).max(1.0);
        prop_assert!(origin.x >= -tolerance && origin.y >= -tolerance, "{origin:?}");
        prop_assert!(corner.x <= source.0 as f32 + tolerance && corner.y <= source.1 as f32 + tolerance, "{corner:?}");
    }
}

#[test]
fn a_letterbox_padded_bottom_right_keeps_the_image_at_the_origin() {
    let bottom_right = Fit { pad_side: PadSide::BottomRight, ..fit(ResizeMode::Letterbox, 1.0, 0) };
    // 1920x1080 into 640x640: 640x360 at the top, all 280 rows of padding below.
    let plan = ResizePlan::new(bottom_right, (1920, 1080), (640, 640));
    assert_eq!(plan.placement, Placement::Inset { left: 0, top: 0, width: 640, height: 360 });
    assert_eq!((plan.geometry.offset_x, plan.geometry.offset_y), (0.0, 0.0));
    let bbox = BoundingBox { x_min: 320.0, y_min: 180.0, x_max: 640.0, y_max: 360.0 };
    let back = plan.geometry.to_source_box(bbox);
    assert_eq!(back, BoundingBox { x_min: 960.0, y_min: 540.0, x_max: 1920.0, y_max: 1080.0 });
    // A portrait frame: the padding on the right.
    let plan = ResizePlan::new(bottom_right, (300, 400), (640, 640));
    assert_eq!(plan.placement, Placement::Inset { left: 0, top: 0, width: 480, height: 640 });
}

#[test]
fn a_fractional_or_normalised_pad_value_is_written_into_the_tensor_border() {
    // A 4x2 frame into 4x4 letterboxed bottom-right: rows 2 and 3 are padding.
    let rgb: Vec<u8> = (0..4 * 2).flat_map(|_| [255u8, 0, 51]).collect();
    let mut spec = image_spec(4, 4);
    (spec.resize, spec.pad_side, spec.mean, spec.std) =
        (ResizeMode::Letterbox, PadSide::BottomRight, vec![0.5], vec![0.5]);
    let inside = [1.0, -1.0, (51.0 / 255.0 - 0.5) / 0.5];
    for (pad_value, pad_value_normalized, pad) in [(Some(127.5), None, 0.0), (None, Some(-0.25), -0.25)] {
        for layout in [ImageLayout::Nchw, ImageLayout::Nhwc] {
            (spec.pad_value, spec.pad_value_normalized, spec.layout) = (pad_value, pad_value_normalized, layout);
            let mut preprocessor = ImagePreprocessor::new(&spec);
            preprocessor.decode(&encode_png(4, 2, ExtendedColorType::Rgb8, &rgb)).unwrap();
            preprocessor.prepare().unwrap();
            let InputTensor::F32(tensor) = preprocessor.tensor() else { panic!("f32 tensor expected") };
            for (index, value) in tensor.iter().enumerate() {
                let (channel, pixel) = match layout {
                    ImageLayout::Nchw => (index / 16, index % 16),
                    ImageLayout::Nhwc => (index % 3, index / 3),
                };
                let expected = if pixel / 4 < 2 { inside[channel] } else { pad };
                assert!((value - expected).abs() < 1e-6, "{layout:?} pad {pad}: [{index}] = {value}, not {expected}");
            }
        }
    }
    // In float16, the same values rounded to halves.
    (spec.pad_value, spec.pad_value_normalized, spec.dtype, spec.layout) =
        (Some(127.5), None, InputDtype::F16, ImageLayout::Nchw);
    let mut preprocessor = ImagePreprocessor::new(&spec);
    preprocessor.decode(&encode_png(4, 2, ExtendedColorType::Rgb8, &rgb)).unwrap();
    preprocessor.prepare().unwrap();
    let InputTensor::F16(tensor) = preprocessor.tensor() else { panic!("f16 tensor expected") };
    assert_eq!(tensor[..8].iter().map(|v| v.to_f32()).collect::<Vec<_>>(), [1.0; 8]);
    assert!(tensor[8..16].iter().all(|v| v.to_f32() == 0.0), "{tensor:?}");
}

#[test]
fn worked_examples_of_each_mode() {
    // 1920x1080 into 640x640: letterbox to 640x360 with 140 rows above and below.
    let plan = ResizePlan::new(fit(ResizeMode::Letterbox, 1.0, 0), (1920, 1080), (640, 640));
    assert_eq!(plan.placement, Placement::Inset { left: 0, top: 140, width: 640, height: 360 });
    assert_eq!((plan.geometry.scale_x, plan.geometry.offset_y), (1.0 / 3.0, 140.0));
    // Python's round(): 5 * 0.5 = 2.5 rounds to 2, so the inset is 2 wide and the padding (4 - 2) / 2 = 1.
    let plan = ResizePlan::new(fit(ResizeMode::Letterbox, 1.0, 0), (5, 8), (4, 4));
    assert_eq!(plan.placement, Placement::Inset { left: 1, top: 0, width: 2, height: 4 });
    // 256x256 crop 0.875 into 224x224: the centre 224x224 (0.875 of the side) at scale 1.
    let plan = ResizePlan::new(fit(ResizeMode::CenterCrop, 0.875, 0), (256, 256), (224, 224));
    assert_eq!(plan.placement, Placement::Crop { left: 16.0, top: 16.0, width: 224.0, height: 224.0 });
    assert_eq!((plan.geometry.scale_x, plan.geometry.offset_x), (1.0, -16.0));
    // 400x200 into 100x100 stretch: independent scales.
    let plan = ResizePlan::new(fit(ResizeMode::Stretch, 1.0, 0), (400, 200), (100, 100));
    assert_eq!((plan.geometry.scale_x, plan.geometry.scale_y), (0.25, 0.5));
}

#[test]
fn source_boxes_are_clamped_to_the_source_image() {
    let geometry = ResizePlan::new(fit(ResizeMode::Letterbox, 1.0, 0), (1920, 1080), (640, 640)).geometry;
    let bbox = geometry.to_source_box(BoundingBox { x_min: -10.0, y_min: 100.0, x_max: 320.0, y_max: 600.0 });
    assert_eq!(bbox, BoundingBox { x_min: 0.0, y_min: 0.0, x_max: 960.0, y_max: 1080.0 });
    let inside = geometry.to_source_box(BoundingBox { x_min: 64.0, y_min: 150.0, x_max: 128.0, y_max: 200.0 });
    let expected = BoundingBox { x_min: 192.0, y_min: 30.0, x_max: 384.0, y_max: 180.0 };
    for (got, want) in [
        (inside.x_min, expected.x_min),
        (inside.y_min, expected.y_min),
        (inside.x_max, expected.x_max),
        (inside.y_max, expected.y_max),
    ] {
        assert!((got - want).abs() < 1e-3, "{inside:?} vs {expected:?}");
    }
}

// ---------------------------------------------------------------------------------------------------------
// Resizing

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn a_constant_image_stays_constant_in_every_mode(
        mode in mode(), source in (1u32..=70, 1u32..=70), model in (1u32..=50, 1u32..=50),
        colour in any::<[u8; 3]>(), pad_value in any::<u8>(), crop_fraction in 0.5f32..=1.0,
    ) {
        let rgb: Vec<u8> = (0..source.0 * source.1).flat_map(|_| colour).collect();
        let mut resizer = FrameResizer::new(fit(mode, crop_fraction, pad_value), model.0, model.1);
        // Twice, so that a stale canvas from the first frame would show.
        for _ in 0..2 {
            resizer.resize(&rgb, source.0, source.1).unwrap();
        }
        let inset = match ResizePlan::new(fit(mode, crop_fraction, 0), source, model).placement {
            Placement::Inset { left, top, width, height } => (left, top, width, height),
            _ => (0, 0, model.0, model.1),
        };
        for (index, pixel) in resizer.canvas().chunks_exact(3).enumerate() {
            let (x, y) = (index as u32 % model.0, index as u32 / model.0);
            let inside = x >= inset.0 && x < inset.0 + inset.2 && y >= inset.1 && y < inset.1 + inset.3;
            let expected = if inside { colour } else { [pad_value; 3] };
            prop_assert_eq!(pixel, &expected[..], "pixel ({}, {}) inside {}", x, y, inside);
        }
    }
}

#[test]
fn halving_a_gradient_averages_two_by_two_blocks() {
    let (w, h) = (64u32, 48u32);
    let value = |x: u32, y: u32| [(3 * x) as u8, (5 * y) as u8, (x + 2 * y) as u8];
    let rgb: Vec<u8> = (0..h).flat_map(|y| (0..w).flat_map(move |x| value(x, y))).collect();
    let mut resizer = FrameResizer::new(fit(ResizeMode::Stretch, 1.0, 0), w / 2, h / 2);
    let geometry = resizer.resize(&rgb, w, h).unwrap();
    assert_eq!((geometry.scale_x, geometry.scale_y), (0.5, 0.5));
    for y in 0..h / 2 {
        for x in 0..w / 2 {
            let out = &resizer.canvas()[((y * w / 2 + x) * 3) as usize..][..3];
            for (channel, &got) in out.iter().enumerate() {
                let block =
                    [(0, 0), (1, 0), (0, 1), (1, 1)].map(|(dx, dy)| f64::from(value(2 * x + dx, 2 * y + dy)[channel]));
                let average = block.iter().sum::<f64>() / 4.0;
                // The kernel is cut at the border, which shifts the edge pixels a little.
                let edge = x == 0 || y == 0 || x == w / 2 - 1 || y == h / 2 - 1;
                let tolerance = if edge { 3.0 } else { 1.0 };
                let got = f64::from(got);
                assert!((got - average).abs() <= tolerance, "({x}, {y}) channel {channel}: {got} vs {average}");
            }
        }
    }
}

/// PIL 13's `Image.resize(..., BILINEAR)` of `pattern(23, 17)` (as `models/scripts/common.py` resizes): stretched
/// to 10x7, and centre-cropped (crop fraction 0.8) to 9x9. RGB, rows top to bottom.
const PIL_STRETCH_10X7: [u8; 210] = [
    41, 74, 201, 119, 85, 203, 179, 96, 205, 70, 104, 207, 118, 112, 209, 181, 124, 211, 74, 135, 213, 116, 147, 216,
    186, 158, 213, 77, 169, 213, 66, 139, 203, 144, 150, 209, 176, 161, 217, 81, 122, 224, 143, 86, 230, 156, 98, 214,
    69, 109, 165, 141, 121, 160, 164, 132, 98, 63, 143, 77, 92, 145, 205, 168, 125, 217, 137, 122, 229, 84, 134, 219,
    168, 145, 150, 146, 157, 67, 84, 168, 31, 166, 126, 37, 118, 102, 49, 76, 113, 62, 119, 140, 207, 182, 110, 224,
    84, 103, 218, 111, 115, 74, 186, 122, 29, 91, 120, 41, 111, 131, 60, 188, 132, 78, 91, 136, 96, 103, 147, 113, 146,
    115, 209, 164, 126, 229, 66, 137, 151, 138, 149, 29, 171, 139, 47, 70, 85, 71, 138, 94, 95, 177, 106, 119, 74, 117,
    143, 130, 128, 165, 172, 140, 211, 153, 151, 212, 83, 140, 62, 164, 119, 41, 121, 130, 71, 82, 142, 100, 164, 153,
    130, 130, 165, 159, 83, 145, 188, 156, 89, 206, 197, 116, 213, 102, 127, 176, 106, 115, 27, 189, 93, 58, 109, 104,
    92, 104, 116, 127, 176, 127, 162, 93, 139, 196, 103, 148, 197, 181, 154, 93,
];
const PIL_CENTER_CROP_9X9: [u8; 243] = [
    206, 167, 210, 140, 174, 213, 61, 145, 216, 117, 141, 218, 173, 149, 222, 203, 157, 225, 68, 164, 227, 85, 172,
    231, 140, 179, 233, 199, 152, 217, 94, 159, 222, 77, 65, 228, 133, 45, 233, 189, 53, 238, 118, 61, 242, 46, 68,
    151, 101, 76, 133, 156, 83, 138, 191, 126, 225, 43, 133, 232, 94, 141, 240, 150, 148, 223, 206, 156, 174, 132, 164,
    60, 62, 171, 24, 118, 178, 22, 173, 145, 29, 133, 107, 232, 57, 114, 242, 110, 122, 153, 166, 129, 74, 197, 137,
    17, 87, 145, 25, 78, 152, 35, 134, 157, 45, 189, 63, 54, 73, 84, 240, 71, 91, 155, 127, 99, 19, 183, 106, 20, 187,
    114, 32, 39, 122, 44, 95, 129, 56, 151, 137, 68, 206, 144, 80, 61, 189, 223, 88, 196, 74, 144, 204, 20, 200, 211,
    34, 126, 117, 49, 56, 99, 63, 112, 106, 77, 168, 114, 92, 194, 121, 106, 49, 92, 175, 104, 99, 19, 160, 107, 32,
    216, 114, 48, 68, 82, 65, 72, 80, 82, 128, 87, 98, 184, 95, 115, 182, 102, 131, 66, 150, 62, 121, 153, 25, 177,
    160, 44, 167, 167, 63, 58, 175, 82, 89, 183, 101, 145, 190, 120, 198, 198, 139, 119, 205, 157, 82, 171, 24, 137,
    59, 34, 193, 64, 56, 123, 71, 77, 49, 79, 98, 105, 87, 120, 161, 94, 140, 212, 102, 162, 64, 109, 183,
];

#[test]
fn resizing_matches_pil_to_within_a_level_on_a_few_values() {
    // fast_image_resize's 16-bit coefficients round a value here and there differently from PIL's 22-bit ones;
    // resampling columns before rows (its own order for 8-bit pixels) would change about one value in ten.
    let rgb = pattern(23, 17);
    for (mode, crop_fraction, (width, height), pil, at_most_off) in [
        (ResizeMode::Stretch, 1.0, (10, 7), &PIL_STRETCH_10X7[..], 2),
        (ResizeMode::CenterCrop, 0.8, (9, 9), &PIL_CENTER_CROP_9X9[..], 4),
    ] {
        let mut resizer = FrameResizer::new(fit(mode, crop_fraction, 0), width, height);
        resizer.resize(&rgb, 23, 17).unwrap();
        assert!(max_difference(resizer.canvas(), pil) <= 1, "{mode:?}");
        let off = resizer.canvas().iter().zip(pil).filter(|(a, b)| a != b).count();
        assert!(off <= at_most_off, "{mode:?}: {off} values differ from PIL's");
    }
}

// ---------------------------------------------------------------------------------------------------------
// Normalising

/// The formula, pixel by pixel, as the manifest documents it.
fn naive_tensor(spec: &ImageInputSpec, rgb: &[u8]) -> (Vec<f32>, Vec<u8>) {
    let (w, h, c) = (spec.width as usize, spec.height as usize, spec.channels());
    let (mut floats, mut bytes) = (vec![0.0; w * h * c], vec![0; w * h * c]);
    for y in 0..h {
        for x in 0..w {
            let pixel = &rgb[(y * w + x) * 3..][..3];
            for channel in 0..c {
                let value = match spec.color {
                    ColorOrder::Rgb => pixel[channel],
                    ColorOrder::Bgr => pixel[2 - channel],
                    // np.round(0.299 * r + 0.587 * g + 0.114 * b) on float64 arrays.
                    ColorOrder::Gray => {
                        let [r, g, b] = [pixel[0], pixel[1], pixel[2]].map(f64::from);
                        (0.299 * r + 0.587 * g + 0.114 * b).round_ties_even() as u8
                    }
                };
                let index = match spec.layout {
                    ImageLayout::Nchw => channel * h * w + y * w + x,
                    ImageLayout::Nhwc => (y * w + x) * c + channel,
                };
                let mean = if spec.mean.len() == 1 { spec.mean[0] } else { spec.mean[channel] };
                let std = if spec.std.len() == 1 { spec.std[0] } else { spec.std[channel] };
                floats[index] = (f32::from(value) * spec.scale - mean) / std;
                bytes[index] = value;
            }
        }
    }
    (floats, bytes)
}

fn normalize_spec() -> impl Strategy<Value = ImageInputSpec> {
    (
        (1u32..=7, 1u32..=7),
        prop_oneof![Just(ColorOrder::Rgb), Just(ColorOrder::Bgr), Just(ColorOrder::Gray)],
        prop_oneof![Just(ImageLayout::Nchw), Just(ImageLayout::Nhwc)],
        prop_oneof![
            Just(InputDtype::F32),
            Just(InputDtype::U8),
            Just(InputDtype::F16),
            Just(InputDtype::I8),
            Just(InputDtype::I32),
            Just(InputDtype::I64)
        ],
        prop_oneof![Just(1.0f32 / 255.0), Just(1.0f32), 0.001f32..2.0],
        any::<bool>(),
        proptest::collection::vec(-2.0f32..2.0, 3),
        proptest::collection::vec(0.05f32..3.0, 3),
    )
        .prop_map(|((width, height), color, layout, dtype, scale, per_channel, mean, std)| {
            let mut spec = image_spec(width, height);
            (spec.color, spec.layout, spec.dtype, spec.scale) = (color, layout, dtype, scale);
            let channels = if per_channel { spec.channels() } else { 1 };
            (spec.mean, spec.std) = (mean[..channels].to_vec(), std[..channels].to_vec());
            spec
        })
}

proptest! {
    #[test]
    fn normalising_matches_the_per_pixel_formula(
        (spec, rgb) in normalize_spec().prop_flat_map(|spec| {
            let len = (spec.width * spec.height * 3) as usize;
            (Just(spec), proptest::collection::vec(any::<u8>(), len))
        })
    ) {
        let tensor = normalized(&spec, &rgb);
        let (floats, bytes) = naive_tensor(&spec, &rgb);
        match (spec.dtype, tensor.view()) {
            (InputDtype::F32, InputTensor::F32(tensor)) => prop_assert_eq!(tensor, &floats[..]),
            (InputDtype::U8, InputTensor::U8(tensor)) => prop_assert_eq!(tensor, &bytes[..]),
            (InputDtype::F16, InputTensor::F16(tensor)) => {
                prop_assert!(tensor.iter().zip(&floats).all(|(half, float)| *half == half::f16::from_f32(*float)));
            }
            (InputDtype::I8, InputTensor::I8(tensor)) => {
                prop_assert!(tensor.iter().zip(&bytes).all(|(value, byte)| i16::from(*value) == i16::from(*byte) - 128));
            }
            (InputDtype::I32, InputTensor::I32(tensor)) => {
                prop_assert!(tensor.iter().zip(&bytes).all(|(value, byte)| *value == i32::from(*byte)));
            }
            (InputDtype::I64, InputTensor::I64(tensor)) => {
                prop_assert!(tensor.iter().zip(&bytes).all(|(value, byte)| *value == i64::from(*byte)));
            }
            (dtype, _) => prop_assert!(false, "wrong tensor type for {:?}", dtype),
        }
    }
}

#[test]
fn gray_is_luma_rounded_as_numpy_rounds() {
    let mut spec = image_spec(5, 1);
    (spec.color, spec.dtype) = (ColorOrder::Gray, InputDtype::U8);
    // Values numpy gives: 76.245 -> 76, 64.4 -> 64, and the exact halves 28.5 -> 28 and 37.5 -> 38 (to even).
    let tensor = normalized(&spec, &[255, 0, 0, 0, 100, 50, 0, 0, 250, 0, 60, 20, 77, 77, 77]);
    assert!(matches!(tensor.view(), InputTensor::U8(t) if t == [76, 64, 28, 38, 77]), "{:?}", tensor.view());
    // A gray frame (replicated to RGB by the decoder) comes back unchanged, for every level.
    let mut spec = image_spec(256, 1);
    (spec.color, spec.dtype) = (ColorOrder::Gray, InputDtype::U8);
    let levels: Vec<u8> = (0..=255).collect();
    let tensor = normalized(&spec, &levels.iter().flat_map(|&v| [v, v, v]).collect::<Vec<_>>());
    assert!(matches!(tensor.view(), InputTensor::U8(t) if t == &levels[..]));
}

/// `rgb` normalised for `spec` into a new tensor.
fn normalized(spec: &ImageInputSpec, rgb: &[u8]) -> OwnedTensor {
    let normalizer = Normalizer::new(spec);
    let mut tensor = normalizer.new_tensor(spec.shape().iter().product());
    normalizer.write(rgb, None, tensor.view_mut()).expect("the tensor is made for the spec");
    tensor
}

#[test]
fn a_tensor_of_another_type_or_size_is_refused() {
    let spec = image_spec(2, 2);
    let normalizer = Normalizer::new(&spec);
    let rgb = [0u8; 12];
    let mut bytes = vec![0u8; 12];
    let err = normalizer.write(&rgb, None, InputTensorMut::U8(&mut bytes)).unwrap_err();
    assert!(matches!(&err, Error::TensorMismatch { expected, got } if expected == "12 f32" && got == "12 u8"), "{err}");
    let mut short = vec![0.0f32; 11];
    let err = normalizer.write(&rgb, None, InputTensorMut::F32(&mut short)).unwrap_err();
    assert!(matches!(&err, Error::TensorMismatch { got, .. } if got == "11 f32"), "{err}");
}

// ---------------------------------------------------------------------------------------------------------
// The image preprocessor end to end

#[test]
fn letterboxed_frame_becomes_padded_normalised_tensor() {
    let (colour, pad) = ([200u8, 100, 50], 114u8);
    let rgb: Vec<u8> = (0..40 * 20).flat_map(|_| colour).collect();
    let mut spec = image_spec(16, 16);
    (spec.resize, spec.pad_value, spec.mean, spec.std) =
        (ResizeMode::Letterbox, Some(f32::from(pad)), vec![0.5], vec![0.25]);
    let mut preprocessor = ImagePreprocessor::new(&spec);
    assert_eq!(preprocessor.decode(&encode_png(40, 20, ExtendedColorType::Rgb8, &rgb)).unwrap(), (40, 20));
    let geometry = preprocessor.prepare().unwrap();
    assert_eq!(
        geometry,
        Geometry { source_width: 40, source_height: 20, scale_x: 0.4, scale_y: 0.4, offset_x: 0.0, offset_y: 4.0 }
    );
    assert_eq!(preprocessor.shape(), [1, 3, 16, 16]);
    let normalised = |value: u8| (f32::from(value) * (1.0 / 255.0) - 0.5) / 0.25;
    let InputTensor::F32(tensor) = preprocessor.tensor() else { panic!("f32 tensor expected") };
    for (index, value) in tensor.iter().enumerate() {
        let (channel, y) = (index / 256, index % 256 / 16);
        let expected = if (4..12).contains(&y) { normalised(colour[channel]) } else { normalised(pad) };
        assert_eq!(*value, expected, "channel {channel} row {y}");
    }
}

#[test]
fn same_size_frame_goes_through_unchanged_but_normalised() {
    let rgb = pattern(9, 6);
    let mut spec = image_spec(9, 6);
    (spec.layout, spec.color, spec.mean, spec.std) =
        (ImageLayout::Nhwc, ColorOrder::Bgr, vec![0.485, 0.456, 0.406], vec![0.229, 0.224, 0.225]);
    for mode in MODES {
        spec.resize = mode;
        let mut preprocessor = ImagePreprocessor::new(&spec);
        preprocessor.decode(&encode_png(9, 6, ExtendedColorType::Rgb8, &rgb)).unwrap();
        let geometry = preprocessor.prepare().unwrap();
        assert_eq!((geometry.scale_x, geometry.scale_y, geometry.offset_x, geometry.offset_y), (1.0, 1.0, 0.0, 0.0));
        let InputTensor::F32(tensor) = preprocessor.tensor() else { panic!("f32 tensor expected") };
        assert_eq!(tensor, &naive_tensor(&spec, &rgb).0[..], "{mode:?}");
    }
}

#[test]
fn prepare_needs_a_decoded_frame() {
    let mut preprocessor = ImagePreprocessor::new(&image_spec(8, 8));
    assert!(matches!(preprocessor.prepare(), Err(Error::EmptyInput)));
    preprocessor.decode(&encode_png(4, 4, ExtendedColorType::Rgb8, &pattern(4, 4))).unwrap();
    preprocessor.prepare().unwrap();
    // A bad frame must not leave the previous one to be inferred on again.
    assert!(preprocessor.decode(b"\x89PNG\r\n\x1a\n garbage").is_err());
    assert!(matches!(preprocessor.prepare(), Err(Error::EmptyInput)));
}

#[test]
fn huge_upscale_and_tiny_frames_do_not_fail() {
    for mode in MODES {
        let mut spec = image_spec(64, 48);
        spec.resize = mode;
        let mut preprocessor = ImagePreprocessor::new(&spec);
        for (w, h) in [(1, 1), (1, 500), (500, 1), (3, 2)] {
            preprocessor.decode(&encode_png(w, h, ExtendedColorType::Rgb8, &pattern(w, h))).unwrap();
            let geometry = preprocessor.prepare().unwrap();
            let back = geometry.to_source(geometry.to_model(Point { x: w as f32, y: h as f32 }));
            assert!((back.x - w as f32).abs() < 1e-3 && (back.y - h as f32).abs() < 1e-3, "{mode:?} {w}x{h}");
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Sensor windows

fn sensor_spec(channels: usize, window: usize, layout: SensorLayout) -> SensorInputSpec {
    SensorInputSpec {
        tensor: "window".to_owned(),
        channels,
        window,
        layout,
        channel_names: Vec::new(),
        mean: Vec::new(),
        std: Vec::new(),
    }
}

fn shape_error(preprocessor: &mut SensorPreprocessor, channels: usize, values: usize) -> (usize, usize, usize, usize) {
    let window = SensorWindow { channels, values: vec![0.5; values] };
    match preprocessor.prepare(&window) {
        Err(Error::SensorShape { expected_channels, expected_samples, got_channels, got_samples }) => {
            (expected_channels, expected_samples, got_channels, got_samples)
        }
        other => panic!("expected SensorShape for {channels} channels, {values} values, got {other:?}"),
    }
}

#[test]
fn sensor_windows_of_the_wrong_shape_are_refused() {
    let mut preprocessor = SensorPreprocessor::new(&sensor_spec(3, 4, SensorLayout::ChannelsFirst));
    assert_eq!(shape_error(&mut preprocessor, 2, 8), (3, 4, 2, 4), "wrong channels");
    assert_eq!(shape_error(&mut preprocessor, 3, 9), (3, 4, 3, 3), "too few samples");
    assert_eq!(shape_error(&mut preprocessor, 3, 15), (3, 4, 3, 5), "too many samples");
    assert_eq!(shape_error(&mut preprocessor, 3, 13), (3, 4, 3, 5), "ragged, one value over");
    // Ragged with the partial sample making up the count: still refused, though the counts look equal.
    assert_eq!(shape_error(&mut preprocessor, 3, 11), (3, 4, 3, 4), "ragged, one value short");
    assert_eq!(shape_error(&mut preprocessor, 0, 0), (3, 4, 0, 0), "no channels");
    assert!(preprocessor.prepare(&SensorWindow { channels: 3, values: vec![0.5; 12] }).is_ok());
}

#[test]
fn non_finite_values_are_refused_where_they_are() {
    let mut preprocessor = SensorPreprocessor::new(&sensor_spec(3, 4, SensorLayout::ChannelsLast));
    let good: Vec<f32> = (0..12).map(|i| i as f32).collect();
    preprocessor.prepare(&SensorWindow { channels: 3, values: good.clone() }).unwrap();
    let before = preprocessor.tensor().to_vec();
    for (index, bad, sample, channel) in [(7, f32::NAN, 2, 1), (11, f32::INFINITY, 3, 2), (0, f32::NEG_INFINITY, 0, 0)]
    {
        let mut values = good.clone();
        if index != 11 {
            values[11] = f32::NAN; // a later bad value, which must not be the one named
        }
        values[index] = bad;
        match preprocessor.prepare(&SensorWindow { channels: 3, values }) {
            Err(Error::NonFinite { sample: s, channel: c, value }) => {
                assert_eq!((s, c), (sample, channel));
                assert!(value.is_nan() == bad.is_nan() && (bad.is_nan() || value == bad), "{value} vs {bad}");
            }
            other => panic!("expected NonFinite, got {other:?}"),
        }
        assert_eq!(preprocessor.tensor(), &before[..], "a refused window changed the tensor");
    }
}

proptest! {
    #[test]
    fn sensor_tensor_matches_the_naive_layout_and_standardisation(
        (channels, window, values, mean, std, layout) in (1usize..=5, 1usize..=20).prop_flat_map(|(channels, window)| (
            Just(channels),
            Just(window),
            proptest::collection::vec(-1e3f32..1e3, channels * window),
            proptest::option::of(proptest::collection::vec(-10f32..10.0, channels)),
            proptest::option::of(proptest::collection::vec(0.1f32..10.0, channels)),
            prop_oneof![Just(SensorLayout::ChannelsFirst), Just(SensorLayout::ChannelsLast)],
        ))
    ) {
        let mut spec = sensor_spec(channels, window, layout);
        spec.mean = mean.clone().unwrap_or_default();
        spec.std = std.clone().unwrap_or_default();
        let mut preprocessor = SensorPreprocessor::new(&spec);
        preprocessor.prepare(&SensorWindow { channels, values: values.clone() }).unwrap();
        let mut expected = vec![0.0f32; channels * window];
        for t in 0..window {
            for c in 0..channels {
                let mut value = values[t * channels + c];
                if let Some(mean) = &mean { value -= mean[c]; }
                if let Some(std) = &std { value /= std[c]; }
                match layout {
                    SensorLayout::ChannelsFirst => expected[c * window + t] = value,
                    SensorLayout::ChannelsLast => expected[t * channels + c] = value,
                }
            }
        }
        prop_assert_eq!(preprocessor.tensor(), &expected[..]);
        prop_assert_eq!(preprocessor.shape(), spec.shape());
    }
}
