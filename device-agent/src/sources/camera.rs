//! What live camera sources (RTSP, HTTP MJPEG, V4L2) report about their stream, beside the per-source
//! counters every source has: the health reporter reads it into the camera's part of the health message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// The stream as last negotiated or seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamInfo {
    pub width: u32,
    pub height: u32,
    /// `h264`, `h265`, `mjpeg`, `yuyv`, `nv12`...
    pub codec: String,
    /// What turns the stream into frames: `openh264`, `v4l2m2m:/dev/video10`, `jpeg` (decoded by the worker),
    /// `none` (raw frames).
    pub decoder: String,
}

/// A camera source's counters. All methods take `&self`; the source thread writes, the reporter reads.
#[derive(Debug, Default)]
pub struct CameraStats {
    received: AtomicU64,
    decoded: AtomicU64,
    decode_errors: AtomicU64,
    reconnects: AtomicU64,
    replaced: AtomicU64,
    last_frame_ms: AtomicU64,
    stream: Mutex<StreamInfo>,
}

impl CameraStats {
    /// A frame (an access unit, a multipart part, a device buffer) arrived from the camera at `unix_ms`.
    pub fn received(&self, unix_ms: u64) {
        self.received.fetch_add(1, Ordering::Relaxed);
        self.last_frame_ms.store(unix_ms, Ordering::Relaxed);
    }

    /// The source decoded a frame itself (video decoders; JPEG parts are decoded by the worker).
    pub fn decoded(&self) {
        self.decoded.fetch_add(1, Ordering::Relaxed);
    }

    /// A frame or packet could not be decoded or parsed.
    pub fn decode_error(&self) {
        self.decode_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The source connected again after losing the stream.
    pub fn reconnected(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// A frame handed to the worker replaced one it had not taken yet, which was thus never decoded.
    pub fn replaced(&self) {
        self.replaced.fetch_add(1, Ordering::Relaxed);
    }

    /// The stream's resolution, codec and decoder, when they become known or change.
    pub fn set_stream(&self, info: StreamInfo) {
        *self.stream.lock().unwrap_or_else(PoisonError::into_inner) = info;
    }

    pub fn received_total(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    pub fn decoded_total(&self) -> u64 {
        self.decoded.load(Ordering::Relaxed)
    }

    pub fn decode_errors_total(&self) -> u64 {
        self.decode_errors.load(Ordering::Relaxed)
    }

    pub fn reconnects_total(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    pub fn replaced_total(&self) -> u64 {
        self.replaced.load(Ordering::Relaxed)
    }

    /// When the last frame arrived, ms since the Unix epoch; 0 before the first.
    pub fn last_frame_ms(&self) -> u64 {
        self.last_frame_ms.load(Ordering::Relaxed)
    }

    pub fn stream(&self) -> StreamInfo {
        self.stream.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}
