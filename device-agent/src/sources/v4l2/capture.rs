//! Buffer handling while streaming: the newest good buffer wins. Every filled buffer is copied out and queued
//! again at once (the driver never starves); when several are waiting, the older ones are stale and only the
//! newest is handed on; empty or error-flagged buffers are counted and skipped; no good buffer within the
//! watchdog is a stall.

use super::device::{ActiveFormat, BufferState, Fourcc, FrameStream};
use crate::clock::Clock;
use crate::shutdown::Shutdown;
use crate::sources::camera::CameraStats;
use runtime::{Frame, Input, PixelFormat};
use std::io;
use std::time::Duration;

/// How often a wait for the next buffer looks at the shutdown latch.
const SHUTDOWN_POLL: Duration = Duration::from_millis(200);

/// What waiting for a frame ended with.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// The newest good buffer's bytes, dequeued at `captured_at_ms`.
    Frame {
        bytes: Vec<u8>,
        captured_at_ms: u64,
    },
    /// Bad buffers at most, for the whole watchdog.
    Stalled,
    Shutdown,
}

/// Waits for the newest good buffer, for `watchdog` at most.
pub fn next_frame<S: FrameStream>(
    stream: &mut S,
    watchdog: Duration,
    stats: &CameraStats,
    clock: &dyn Clock,
    shutdown: &Shutdown,
) -> io::Result<Next> {
    let deadline = clock.now() + watchdog;
    let mut scratch = Vec::new();
    loop {
        if shutdown.is_triggered() {
            return Ok(Next::Shutdown);
        }
        let left = deadline.saturating_duration_since(clock.now());
        if left.is_zero() {
            return Ok(Next::Stalled);
        }
        if !stream.wait(left.min(SHUTDOWN_POLL))? {
            continue;
        }
        let mut newest: Option<(Vec<u8>, u64)> = None;
        loop {
            let state = stream.dequeue(&mut scratch)?;
            let now_ms = clock.unix_time_ms();
            stats.received(now_ms);
            match state {
                BufferState::Filled => {
                    // The stale buffer's allocation takes the next copy.
                    if let Some((stale, _)) = newest.replace((std::mem::take(&mut scratch), now_ms)) {
                        scratch = stale;
                    }
                }
                BufferState::Empty | BufferState::Flagged => {
                    stats.decode_error();
                }
            }
            if !stream.more_ready()? {
                break;
            }
        }
        if let Some((bytes, captured_at_ms)) = newest {
            return Ok(Next::Frame { bytes, captured_at_ms });
        }
    }
}

/// The worker's input for a buffer: MJPEG stays encoded (the worker decodes only the frames it takes), YUYV and
/// NV12 become raw frames with the driver's row stride (NV12's chroma plane follows its luma plane, same stride).
pub fn to_input(format: &ActiveFormat, bytes: Vec<u8>) -> runtime::Result<Input> {
    let stride = format.bytes_per_line as usize;
    let (pixels, strides) = match format.fourcc {
        Fourcc::YUYV => (PixelFormat::Yuyv, [stride, 0, 0]),
        Fourcc::NV12 => (PixelFormat::Nv12, [stride, stride, 0]),
        // Negotiation sets MJPEG, YUYV or NV12 only.
        _ => return Ok(Input::Image(bytes)),
    };
    Ok(Input::Frame(Frame::new(pixels, format.size.width, format.size.height, strides, bytes)?))
}

/// The codec and decoder names health shows for a format (MJPEG, YUYV or NV12).
pub fn stream_names(fourcc: Fourcc) -> (&'static str, &'static str) {
    match fourcc {
        Fourcc::YUYV => ("yuyv", "none"),
        Fourcc::NV12 => ("nv12", "none"),
        _ => ("mjpeg", "jpeg (worker)"),
    }
}
