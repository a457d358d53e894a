//! 32-bit targets (armv7): `linuxvideo` assumes a 64-bit `off_t` and does not build there, so a `v4l2` source
//! reports that at every attempt to open its device instead of capturing.

use super::device::{
    ActiveFormat, BufferState, Fourcc, FrameIntervals, FrameSizes, FrameStream, Interval, Size, VideoDevice,
};
use std::io;
use std::path::Path;
use std::time::Duration;

/// No device can be opened: the type has no values.
pub enum LinuxDevice {}

impl LinuxDevice {
    pub fn open(_path: &Path) -> io::Result<LinuxDevice> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "V4L2 capture is not built for 32-bit targets (the V4L2 library needs a 64-bit off_t)",
        ))
    }
}

impl VideoDevice for LinuxDevice {
    type Stream = LinuxDevice;

    fn formats(&mut self) -> io::Result<Vec<Fourcc>> {
        match *self {}
    }

    fn frame_sizes(&mut self, _fourcc: Fourcc) -> io::Result<FrameSizes> {
        match *self {}
    }

    fn frame_intervals(&mut self, _fourcc: Fourcc, _size: Size) -> io::Result<FrameIntervals> {
        match *self {}
    }

    fn set_format(&mut self, _fourcc: Fourcc, _size: Size) -> io::Result<ActiveFormat> {
        match *self {}
    }

    fn set_frame_interval(&mut self, _interval: Interval) -> io::Result<Interval> {
        match *self {}
    }

    fn start_streaming(self) -> io::Result<LinuxDevice> {
        match self {}
    }
}

impl FrameStream for LinuxDevice {
    fn wait(&mut self, _timeout: Duration) -> io::Result<bool> {
        match *self {}
    }

    fn dequeue(&mut self, _into: &mut Vec<u8>) -> io::Result<BufferState> {
        match *self {}
    }

    fn more_ready(&mut self) -> io::Result<bool> {
        match *self {}
    }
}
