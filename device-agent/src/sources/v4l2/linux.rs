//! The real device, through `linuxvideo` (its ioctls and mmap are its own unsafe code; the workspace forbids
//! ours). What the crate does not expose shapes two things: it maps 2 buffers (the driver may allocate more),
//! and a buffer's kernel timestamp and sequence number are not read, so a frame's capture time is the wall
//! clock when it is dequeued. Only single-planar capture devices (`VIDEO_CAPTURE`: UVC, libcamera's V4L2
//! compatibility layer, bcm2835-unicam) are supported; multi-planar ones are refused when opened.

use super::device::{
    ActiveFormat, BufferState, Fourcc, FrameIntervals, FrameSizes, FrameStream, Interval, Size, VideoDevice,
};
use linuxvideo::format::{self, PixFormat, PixelFormat};
use linuxvideo::stream::ReadStream;
use linuxvideo::{BufType, BufTypes, Device, Fract, VideoCaptureDevice};
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::io::Errno;
use std::io;
use std::path::Path;
use std::time::Duration;

/// An opened device, before and after its format is set (`linuxvideo` turns one into the other).
pub enum LinuxDevice {
    Open(Device),
    Capturing(VideoCaptureDevice),
    /// Only while switching, or after a failed switch.
    Gone,
}

impl LinuxDevice {
    /// Opens `path`, which must be a single-planar video capture device.
    pub fn open(path: &Path) -> io::Result<LinuxDevice> {
        let device = Device::open(path)?;
        if !device.supported_buf_types().contains(BufTypes::VIDEO_CAPTURE) {
            return Err(io::Error::other(
                "not a single-planar video capture device (multi-planar devices are not supported)",
            ));
        }
        Ok(LinuxDevice::Open(device))
    }

    fn device(&self) -> io::Result<&Device> {
        match self {
            LinuxDevice::Open(device) => Ok(device),
            LinuxDevice::Capturing(_) | LinuxDevice::Gone => Err(out_of_order("enumeration after S_FMT")),
        }
    }
}

fn out_of_order(what: &str) -> io::Error {
    io::Error::other(format!("{what}: calls out of order"))
}

fn pixel_format(fourcc: Fourcc) -> PixelFormat {
    PixelFormat::from_fourcc(fourcc.0)
}

fn interval(fract: &Fract) -> Interval {
    Interval { numerator: fract.numerator(), denominator: fract.denominator() }
}

impl VideoDevice for LinuxDevice {
    type Stream = LinuxStream;

    fn formats(&mut self) -> io::Result<Vec<Fourcc>> {
        self.device()?
            .formats(BufType::VIDEO_CAPTURE)
            .map(|desc| desc.map(|desc| Fourcc(desc.pixel_format().as_fourcc())))
            .collect()
    }

    fn frame_sizes(&mut self, fourcc: Fourcc) -> io::Result<FrameSizes> {
        let size = |width, height| Size { width, height };
        Ok(match self.device()?.frame_sizes(pixel_format(fourcc))? {
            format::FrameSizes::Discrete(sizes) => {
                FrameSizes::Discrete(sizes.iter().map(|s| size(s.width(), s.height())).collect())
            }
            format::FrameSizes::Stepwise(s) => FrameSizes::Stepwise {
                min: size(s.min_width(), s.min_height()),
                max: size(s.max_width(), s.max_height()),
                step: size(s.step_width(), s.step_height()),
            },
            format::FrameSizes::Continuous(s) => FrameSizes::Stepwise {
                min: size(s.min_width(), s.min_height()),
                max: size(s.max_width(), s.max_height()),
                step: size(1, 1),
            },
        })
    }

    fn frame_intervals(&mut self, fourcc: Fourcc, size: Size) -> io::Result<FrameIntervals> {
        let intervals = match self.device()?.frame_intervals(pixel_format(fourcc), size.width, size.height) {
            Ok(intervals) => intervals,
            // Negotiation asks only about listed sizes: refusing means the driver does not list its rates.
            Err(e)
                if [Errno::INVAL, Errno::NOTTY].iter().any(|errno| e.raw_os_error() == Some(errno.raw_os_error())) =>
            {
                return Ok(FrameIntervals::Unlisted);
            }
            Err(e) => return Err(e),
        };
        Ok(match intervals {
            format::FrameIntervals::Discrete(list) => {
                FrameIntervals::Discrete(list.iter().map(|i| interval(i.fract())).collect())
            }
            format::FrameIntervals::Stepwise(range) | format::FrameIntervals::Continuous(range) => {
                FrameIntervals::Stepwise { min: interval(range.min()), max: interval(range.max()) }
            }
        })
    }

    fn set_format(&mut self, fourcc: Fourcc, size: Size) -> io::Result<ActiveFormat> {
        let LinuxDevice::Open(device) = std::mem::replace(self, LinuxDevice::Gone) else {
            return Err(out_of_order("S_FMT twice"));
        };
        let capturing = device.video_capture(PixFormat::new(size.width, size.height, pixel_format(fourcc)))?;
        let set = capturing.format();
        let active = ActiveFormat {
            fourcc: Fourcc(set.pixel_format().as_fourcc()),
            size: Size { width: set.width(), height: set.height() },
            bytes_per_line: set.bytes_per_line(),
        };
        *self = LinuxDevice::Capturing(capturing);
        Ok(active)
    }

    fn set_frame_interval(&mut self, wanted: Interval) -> io::Result<Interval> {
        let LinuxDevice::Capturing(device) = self else { return Err(out_of_order("S_PARM before S_FMT")) };
        // `Fract::new` panics on a zero denominator; negotiation never yields one, this keeps it so.
        let fract = Fract::new(wanted.numerator, wanted.denominator.max(1));
        Ok(interval(&device.set_frame_interval(fract)?))
    }

    fn start_streaming(self) -> io::Result<LinuxStream> {
        let LinuxDevice::Capturing(device) = self else { return Err(out_of_order("streaming before S_FMT")) };
        Ok(LinuxStream(device.into_stream()?))
    }
}

/// A streaming device: `linuxvideo`'s dequeue hands out one buffer and queues it again when done.
pub struct LinuxStream(ReadStream);

impl FrameStream for LinuxStream {
    fn wait(&mut self, timeout: Duration) -> io::Result<bool> {
        let timeout = Timespec::try_from(timeout).map_err(io::Error::other)?;
        let mut fds = [PollFd::new(&self.0, PollFlags::IN)];
        Ok(poll(&mut fds, Some(&timeout))? > 0)
    }

    fn dequeue(&mut self, into: &mut Vec<u8>) -> io::Result<BufferState> {
        self.0.dequeue(|buffer| {
            if buffer.is_error() {
                return Ok(BufferState::Flagged);
            }
            if buffer.is_empty() {
                return Ok(BufferState::Empty);
            }
            into.clear();
            into.extend_from_slice(&buffer);
            Ok(BufferState::Filled)
        })
    }

    fn more_ready(&mut self) -> io::Result<bool> {
        Ok(!self.0.will_block()?)
    }
}
