//! `device-agent camera-bench`: what a camera frame costs before inference, on one thread. Decodes an H.264
//! Annex B file with the rtsp source's decoder (or JPEG files, as MJPEG parts) and preprocesses each frame
//! into the bundle's input tensor, timing the two stages per frame. Prints one JSON line with the fields
//! benches/python/camera_pipeline.py prints, so scripts/bench-camera.sh can set them side by side.

use crate::config::DecoderChoice;
use crate::health::nearest_rank;
use crate::sources::rtsp::H264Decoder;
use anyhow::{Context, bail};
use runtime::Bundle;
use runtime::manifest::InputSpec;
use runtime::preprocess::ImagePreprocessor;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// `camera-bench`'s arguments.
#[derive(clap::Args)]
pub struct CameraBenchArgs {
    /// The model bundle directory: its input spec says how frames are resized and normalised.
    #[arg(long, short)]
    model: PathBuf,
    /// An H.264 Annex B file, decoded with OpenH264 as the rtsp source decodes.
    #[arg(long, required_unless_present = "jpeg", conflicts_with = "jpeg")]
    h264: Option<PathBuf>,
    /// JPEG files, cycled as the parts of an MJPEG stream.
    #[arg(long, num_args = 1..)]
    jpeg: Vec<PathBuf>,
    /// Frames to measure (an H.264 file stops earlier at its end).
    #[arg(long, default_value_t = 300)]
    frames: usize,
    /// Decode JPEGs at full size, without the reduced-scale decoding the runtime takes by default where the model
    /// input is much smaller.
    #[arg(long, requires = "jpeg")]
    full_jpeg: bool,
}

/// Per-frame stage times, microseconds.
#[derive(Default)]
struct Samples {
    decode_us: Vec<u32>,
    preprocess_us: Vec<u32>,
}

impl Samples {
    fn push(&mut self, decode: Duration, preprocess: Duration) {
        let micros = |d: Duration| u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        self.decode_us.push(micros(decode));
        self.preprocess_us.push(micros(preprocess));
    }

    fn len(&self) -> usize {
        self.decode_us.len()
    }
}

pub fn main(args: CameraBenchArgs) -> anyhow::Result<ExitCode> {
    let bundle = Bundle::load(&args.model).with_context(|| format!("loading bundle {}", args.model.display()))?;
    let InputSpec::Image(spec) = &bundle.manifest().input else {
        bail!("{} takes sensor windows, not camera frames", args.model.display());
    };
    let mut preprocessor = ImagePreprocessor::new(spec);
    preprocessor.set_reduced_jpeg_decode(!args.full_jpeg);
    let started = Instant::now();
    let samples = match &args.h264 {
        Some(path) => h264_frames(path, args.frames, &mut preprocessor)?,
        None => jpeg_frames(&args.jpeg, args.frames, &mut preprocessor)?,
    };
    let seconds = started.elapsed().as_secs_f64();
    if samples.len() == 0 {
        bail!("no frame decoded");
    }
    let summary = |mut values: Vec<u32>| {
        values.sort_unstable();
        serde_json::json!({
            "median": nearest_rank(&values, 50),
            "p10": nearest_rank(&values, 10),
            "p90": nearest_rank(&values, 90),
        })
    };
    let frames = samples.len();
    let line = serde_json::json!({
        "frames": frames,
        "seconds": seconds,
        "decode_us": summary(samples.decode_us),
        "preprocess_us": summary(samples.preprocess_us),
    });
    println!("{line}");
    Ok(ExitCode::SUCCESS)
}

/// Decodes the file NAL unit by NAL unit, as OpenH264 takes them; a frame's decode time is that of every unit
/// since the previous frame (parameter sets and SEI count towards the frame that follows them).
fn h264_frames(path: &Path, frames: usize, preprocessor: &mut ImagePreprocessor) -> anyhow::Result<Samples> {
    let stream = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut decoder = H264Decoder::select(DecoderChoice::Software, Path::new(""), "camera-bench")?;
    let mut samples = Samples::default();
    let mut decoding = Duration::ZERO;
    for nal_unit in openh264::nal_units(&stream) {
        if samples.len() == frames {
            break;
        }
        let started = Instant::now();
        let frame = decoder.decode(nal_unit)?;
        decoding += started.elapsed();
        let Some(frame) = frame else { continue };
        let started = Instant::now();
        preprocessor.prepare_frame(&frame)?;
        samples.push(decoding, started.elapsed());
        decoding = Duration::ZERO;
    }
    Ok(samples)
}

/// Decodes and prepares the JPEGs in turn until `frames` are done; each is read once, beforehand.
fn jpeg_frames(paths: &[PathBuf], frames: usize, preprocessor: &mut ImagePreprocessor) -> anyhow::Result<Samples> {
    let parts = paths
        .iter()
        .map(|path| std::fs::read(path).with_context(|| format!("reading {}", path.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut samples = Samples::default();
    for part in parts.iter().cycle().take(frames) {
        let started = Instant::now();
        preprocessor.decode(part)?;
        let decoded = Instant::now();
        preprocessor.prepare()?;
        samples.push(decoded - started, decoded.elapsed());
    }
    Ok(samples)
}
