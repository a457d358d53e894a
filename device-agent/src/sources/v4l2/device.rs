//! What the source asks of a V4L2 device, as a trait: the real one ([`super::linux`]) answers with ioctls, the
//! tests' fake with recorded answers of real cameras. Negotiation and buffer handling only see this.

use std::fmt;
use std::io;
use std::time::Duration;

/// A V4L2 pixel format code (`MJPG`, `YUYV`, `NV12`...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fourcc(pub [u8; 4]);

impl Fourcc {
    pub const MJPEG: Fourcc = Fourcc(*b"MJPG");
    pub const YUYV: Fourcc = Fourcc(*b"YUYV");
    pub const NV12: Fourcc = Fourcc(*b"NV12");
}

impl fmt::Display for Fourcc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(String::from_utf8_lossy(&self.0).trim_end())
    }
}

/// A frame size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

/// The frame sizes a device offers for one format.
#[derive(Debug, Clone, PartialEq, Eq)]
// Built only by the real device, which 32-bit targets lack (see `unsupported`), and by the tests' fake.
#[cfg_attr(not(target_pointer_width = "64"), allow(dead_code))]
pub enum FrameSizes {
    Discrete(Vec<Size>),
    /// Every size from `min` to `max` in steps of `step` (continuous: steps of 1).
    Stepwise {
        min: Size,
        max: Size,
        step: Size,
    },
}

/// Seconds per frame as V4L2 gives it: `numerator / denominator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub numerator: u32,
    pub denominator: u32,
}

impl Interval {
    /// Frames per second; 0 for a degenerate interval.
    pub fn fps(self) -> f64 {
        if self.numerator == 0 { 0.0 } else { f64::from(self.denominator) / f64::from(self.numerator) }
    }
}

/// The frame intervals a device offers for one format and size.
#[derive(Debug, Clone, PartialEq, Eq)]
// Built only by the real device, which 32-bit targets lack (see `unsupported`), and by the tests' fake.
#[cfg_attr(not(target_pointer_width = "64"), allow(dead_code))]
pub enum FrameIntervals {
    Discrete(Vec<Interval>),
    /// Any interval from `min` (the fastest rate) to `max` (the slowest).
    Stepwise {
        min: Interval,
        max: Interval,
    },
    /// The driver does not list its rates (VIDIOC_ENUM_FRAMEINTERVALS is not implemented).
    Unlisted,
}

/// The format the driver set (it may adjust what was asked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveFormat {
    pub fourcc: Fourcc,
    pub size: Size,
    /// Bytes per row of a raw format's (first) plane, padding included; 0 for compressed formats.
    pub bytes_per_line: u32,
}

/// What a dequeued buffer held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// Built only by the real device, which 32-bit targets lack (see `unsupported`), and by the tests' fake.
#[cfg_attr(not(target_pointer_width = "64"), allow(dead_code))]
pub enum BufferState {
    /// Data, copied out.
    Filled,
    /// `bytesused` was 0.
    Empty,
    /// The driver set the buffer's error flag (the data may be corrupt).
    Flagged,
}

/// A video capture device, opened but not streaming: enumeration and negotiation.
pub trait VideoDevice {
    type Stream: FrameStream;

    /// The capture formats the device offers, in its order.
    fn formats(&mut self) -> io::Result<Vec<Fourcc>>;
    fn frame_sizes(&mut self, fourcc: Fourcc) -> io::Result<FrameSizes>;
    fn frame_intervals(&mut self, fourcc: Fourcc, size: Size) -> io::Result<FrameIntervals>;
    /// Sets the capture format (S_FMT); returns what the driver chose.
    fn set_format(&mut self, fourcc: Fourcc, size: Size) -> io::Result<ActiveFormat>;
    /// Sets the frame interval (S_PARM); returns what the driver chose.
    fn set_frame_interval(&mut self, interval: Interval) -> io::Result<Interval>;
    /// Maps the buffers, queues them all and starts streaming.
    fn start_streaming(self) -> io::Result<Self::Stream>;
}

/// A streaming device's ring of buffers.
pub trait FrameStream {
    /// Waits up to `timeout` for a filled buffer; false when none came.
    fn wait(&mut self, timeout: Duration) -> io::Result<bool>;
    /// Dequeues the oldest filled buffer, copies its used bytes into `into` (replacing what it held) and queues
    /// the buffer again at once, so that the driver never runs out of buffers to fill.
    fn dequeue(&mut self, into: &mut Vec<u8>) -> io::Result<BufferState>;
    /// Whether another filled buffer is already waiting (the one just dequeued is stale then).
    fn more_ready(&mut self) -> io::Result<bool>;
}
