//! `kind = "v4l2"`: a USB or CSI camera through Video4Linux2. The source opens the device, negotiates a format,
//! size and rate ([`negotiate`]), streams from an mmap ring and hands the worker only the newest frame
//! ([`capture`]): MJPEG encoded (the worker decodes only the frames it takes), YUYV and NV12 as raw frames.
//! Any failure (no device, nothing it offers fits, unplugged, no frame within the watchdog) is an error event
//! naming the device; the source then opens it again after a backoff, and counts the reconnect once streaming.

mod capture;
pub mod device;
#[cfg(test)]
mod fake;
#[cfg(target_pointer_width = "64")]
mod linux;
mod negotiate;
#[cfg(test)]
mod tests;
#[cfg(not(target_pointer_width = "64"))]
mod unsupported;

use crate::config::{V4l2Format, V4l2Source};
use crate::shutdown::Shutdown;
use crate::sources::Feed;
use crate::sources::camera::{CameraStats, StreamInfo};
use capture::Next;
use device::{Fourcc, FrameStream, Size, VideoDevice};
use negotiate::{NegotiationError, Request};
use protocol::error::ErrorKind;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[cfg(target_pointer_width = "64")]
pub use linux::LinuxDevice;
#[cfg(not(target_pointer_width = "64"))]
pub use unsupported::LinuxDevice;

/// The first wait before opening the device again, doubled after each failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// A camera plugged in again is found within this; an absent one costs an error event this often.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the source opens and asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct V4l2Spec {
    pub device: PathBuf,
    pub request: Request,
    /// No good frame for this long: the device is reopened.
    pub watchdog: Duration,
}

impl V4l2Spec {
    pub fn new(config: &V4l2Source) -> V4l2Spec {
        let formats = match config.format {
            V4l2Format::Mjpeg => vec![Fourcc::MJPEG],
            V4l2Format::Yuyv => vec![Fourcc::YUYV],
            V4l2Format::Nv12 => vec![Fourcc::NV12],
            V4l2Format::Auto => vec![Fourcc::NV12, Fourcc::YUYV, Fourcc::MJPEG],
        };
        V4l2Spec {
            device: config.device.clone(),
            request: Request { formats, size: Size { width: config.width, height: config.height }, fps: config.fps },
            watchdog: Duration::from_secs(config.watchdog_secs),
        }
    }
}

/// Why a streaming session ended, other than shutdown.
struct Failure {
    kind: ErrorKind,
    message: String,
    /// At least one frame was handed on: the next attempt starts from the shortest backoff.
    streamed: bool,
}

impl Failure {
    fn io(message: String, streamed: bool) -> Failure {
        Failure { kind: ErrorKind::Io, message, streamed }
    }
}

/// Runs the source until shutdown: stream, and after any failure report it and open the device again.
pub fn run<D: VideoDevice>(
    spec: &V4l2Spec,
    open: impl Fn(&Path) -> io::Result<D>,
    feed: &Feed,
    stats: &CameraStats,
    shutdown: &Shutdown,
) {
    let origin = spec.device.display().to_string();
    let mut backoff = MIN_BACKOFF;
    let mut failed_before = false;
    loop {
        let failure = match session(spec, &origin, &open, feed, stats, shutdown, failed_before) {
            Ok(()) => return,
            Err(failure) => failure,
        };
        feed.error(&origin, failure.kind, &failure.message);
        failed_before = true;
        if failure.streamed {
            backoff = MIN_BACKOFF;
        }
        let clock = feed.clock();
        if clock.wait_until(clock.now() + backoff, shutdown) {
            return;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Opens, negotiates and streams until shutdown (`Ok`) or a failure.
fn session<D: VideoDevice>(
    spec: &V4l2Spec,
    origin: &str,
    open: impl Fn(&Path) -> io::Result<D>,
    feed: &Feed,
    stats: &CameraStats,
    shutdown: &Shutdown,
    failed_before: bool,
) -> Result<(), Failure> {
    let mut device = open(&spec.device).map_err(|e| Failure::io(format!("cannot open {origin}: {e}"), false))?;
    let negotiated = negotiate::negotiate(&mut device, origin, &spec.request).map_err(|error| {
        let kind = match error {
            NegotiationError::Unsupported { .. } | NegotiationError::Adjusted { .. } => ErrorKind::CameraFormat,
            NegotiationError::Io { .. } => ErrorKind::Io,
        };
        Failure { kind, message: error.to_string(), streamed: false }
    })?;
    let mut stream =
        device.start_streaming().map_err(|e| Failure::io(format!("{origin}: cannot start streaming: {e}"), false))?;
    let format = negotiated.format;
    let (codec, decoder) = capture::stream_names(format.fourcc);
    stats.set_stream(StreamInfo {
        width: format.size.width,
        height: format.size.height,
        codec: codec.to_owned(),
        decoder: decoder.to_owned(),
    });
    if failed_before {
        stats.reconnected();
    }
    let rate = negotiated.interval.map_or_else(|| "the driver's rate".to_owned(), |i| format!("{:.2} fps", i.fps()));
    log::info!(device = origin; "Streaming {} {} at {rate}.", format.fourcc, format.size);

    stream_frames(&mut stream, spec, origin, &format, feed, stats, shutdown)
}

/// Hands the newest frame on until shutdown or a failure. The first frame the runtime refuses (a buffer shorter
/// than its format) is reported; the rest are counted as decode errors.
fn stream_frames<S: FrameStream>(
    stream: &mut S,
    spec: &V4l2Spec,
    origin: &str,
    format: &device::ActiveFormat,
    feed: &Feed,
    stats: &CameraStats,
    shutdown: &Shutdown,
) -> Result<(), Failure> {
    let mut streamed = false;
    let mut refused_before = false;
    loop {
        let next = capture::next_frame(stream, spec.watchdog, stats, feed.clock(), shutdown)
            .map_err(|e| Failure::io(format!("{origin}: streaming failed: {e}; reopening"), streamed))?;
        let (bytes, captured_at_ms) = match next {
            Next::Frame { bytes, captured_at_ms } => (bytes, captured_at_ms),
            Next::Shutdown => return Ok(()),
            Next::Stalled => {
                let secs = spec.watchdog.as_secs();
                return Err(Failure::io(format!("{origin}: no frame for {secs} s; reopening"), streamed));
            }
        };
        match capture::to_input(format, bytes) {
            Ok(input) => {
                if feed.camera_frame(origin.to_owned(), input, captured_at_ms) {
                    stats.replaced();
                }
                streamed = true;
            }
            Err(error) => {
                stats.decode_error();
                if !refused_before {
                    feed.error(origin, ErrorKind::Decode, &format!("{origin}: {error}"));
                    refused_before = true;
                }
            }
        }
    }
}
