//! A fake V4L2 device for tests. It answers enumeration from `v4l2-ctl --list-formats-ext` output (the fixtures
//! are modelled on outputs published for these cameras, not recorded here: no camera was at hand), sets formats
//! as a driver would (padding rows to its alignment), and streams a script of buffers on a [`ManualClock`].

use super::device::{
    ActiveFormat, BufferState, Fourcc, FrameIntervals, FrameSizes, FrameStream, Interval, Size, VideoDevice,
};
use crate::clock::ManualClock;
use crate::shutdown::Shutdown;
use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// A Logitech C920-class UVC webcam: YUYV (full rate at 640x480 only), MJPEG and H.264 up to 1920x1080@30.
pub const UVC_C920: &str = include_str!("fixtures/uvc-c920.txt");
/// A cheap UVC "USB 2.0 Camera": MJPEG up to 1280x720@30, YUYV 1280x720 at 10 fps at most.
pub const UVC_USB2_CAMERA: &str = include_str!("fixtures/uvc-usb2-camera.txt");
/// A Raspberry Pi camera (IMX219) through libcamera's V4L2 compatibility layer: stepwise sizes, no rates listed.
pub const PI_CAMERA_LIBCAMERA: &str = include_str!("fixtures/pi-camera-libcamera.txt");

/// One format's answers.
#[derive(Debug, Clone)]
struct FormatAnswers {
    fourcc: Fourcc,
    sizes: FrameSizes,
    /// Per discrete size; for stepwise sizes, one entry that holds for every size.
    intervals: Vec<(Option<Size>, FrameIntervals)>,
}

/// What a streaming fake does at each wait.
#[derive(Debug, Clone)]
pub enum Step {
    /// These buffers are filled, oldest first.
    Ready(Vec<Buffer>),
    /// Nothing arrives for this long: waits time out (the clock moves by each timeout), then the script goes on.
    Silence(Duration),
    /// The wait fails, as for an unplugged camera (ENODEV).
    Unplugged,
}

/// A filled buffer.
#[derive(Debug, Clone)]
pub enum Buffer {
    Data(Vec<u8>),
    /// `bytesused` 0.
    Empty,
    /// The error flag set.
    Flagged,
}

/// A device answering from a fixture.
pub struct FakeDevice {
    formats: Vec<FormatAnswers>,
    row_alignment: usize,
    snaps_to: Option<Size>,
    set: Option<ActiveFormat>,
    script: VecDeque<Step>,
    clock: Arc<ManualClock>,
    shutdown: Arc<Shutdown>,
}

impl FakeDevice {
    /// A device answering as `listing` (v4l2-ctl's output) says, streaming `script`, then triggering
    /// `shutdown` once the script is played.
    pub fn new(listing: &str, script: Vec<Step>, clock: Arc<ManualClock>, shutdown: Arc<Shutdown>) -> FakeDevice {
        FakeDevice {
            formats: parse_listing(listing),
            row_alignment: 1,
            snaps_to: None,
            set: None,
            script: script.into(),
            clock,
            shutdown,
        }
    }

    /// Pads raw rows to a multiple of `bytes`, as ISPs do.
    pub fn with_row_alignment(mut self, bytes: usize) -> FakeDevice {
        self.row_alignment = bytes;
        self
    }

    /// S_FMT sets this size whatever is asked, as a driver that lists a size it cannot deliver.
    pub fn snapping_to(mut self, size: Size) -> FakeDevice {
        self.snaps_to = Some(size);
        self
    }

    fn answers(&self, fourcc: Fourcc) -> io::Result<&FormatAnswers> {
        self.formats.iter().find(|f| f.fourcc == fourcc).ok_or_else(|| io::Error::from_raw_os_error(22))
    }
}

impl VideoDevice for FakeDevice {
    type Stream = FakeStream;

    fn formats(&mut self) -> io::Result<Vec<Fourcc>> {
        Ok(self.formats.iter().map(|f| f.fourcc).collect())
    }

    fn frame_sizes(&mut self, fourcc: Fourcc) -> io::Result<FrameSizes> {
        Ok(self.answers(fourcc)?.sizes.clone())
    }

    fn frame_intervals(&mut self, fourcc: Fourcc, size: Size) -> io::Result<FrameIntervals> {
        let answers = self.answers(fourcc)?;
        let found = answers.intervals.iter().find(|(at, _)| at.is_none_or(|at| at == size));
        Ok(found.map_or(FrameIntervals::Unlisted, |(_, intervals)| intervals.clone()))
    }

    fn set_format(&mut self, fourcc: Fourcc, size: Size) -> io::Result<ActiveFormat> {
        let size = self.snaps_to.unwrap_or(size);
        let row = match fourcc {
            Fourcc::YUYV => size.width as usize * 2,
            Fourcc::NV12 => size.width as usize,
            _ => 0,
        };
        let bytes_per_line = row.next_multiple_of(self.row_alignment) as u32;
        let set = ActiveFormat { fourcc, size, bytes_per_line };
        self.set = Some(set);
        Ok(set)
    }

    fn set_frame_interval(&mut self, interval: Interval) -> io::Result<Interval> {
        Ok(interval)
    }

    fn start_streaming(self) -> io::Result<FakeStream> {
        assert!(self.set.is_some(), "streaming before S_FMT");
        Ok(FakeStream { script: self.script, filled: VecDeque::new(), clock: self.clock, shutdown: self.shutdown })
    }
}

/// The fake's stream: plays the script.
pub struct FakeStream {
    script: VecDeque<Step>,
    filled: VecDeque<Buffer>,
    clock: Arc<ManualClock>,
    shutdown: Arc<Shutdown>,
}

impl FrameStream for FakeStream {
    fn wait(&mut self, timeout: Duration) -> io::Result<bool> {
        if !self.filled.is_empty() {
            return Ok(true);
        }
        match self.script.pop_front() {
            Some(Step::Ready(buffers)) => {
                self.filled.extend(buffers);
                Ok(true)
            }
            Some(Step::Silence(left)) => {
                let waited = timeout.min(left);
                self.clock.advance(waited);
                if left > waited {
                    self.script.push_front(Step::Silence(left - waited));
                }
                Ok(false)
            }
            Some(Step::Unplugged) => Err(io::Error::from_raw_os_error(19)),
            None => {
                self.shutdown.trigger();
                Ok(false)
            }
        }
    }

    fn dequeue(&mut self, into: &mut Vec<u8>) -> io::Result<BufferState> {
        // A frame period passes per buffer, so that capture times differ.
        self.clock.advance(Duration::from_millis(33));
        match self.filled.pop_front() {
            Some(Buffer::Data(bytes)) => {
                *into = bytes;
                Ok(BufferState::Filled)
            }
            Some(Buffer::Empty) => Ok(BufferState::Empty),
            Some(Buffer::Flagged) => Ok(BufferState::Flagged),
            None => panic!("dequeue with no filled buffer: the source did not wait"),
        }
    }

    fn more_ready(&mut self) -> io::Result<bool> {
        Ok(!self.filled.is_empty())
    }
}

/// Reads `v4l2-ctl --list-formats-ext` output: `[i]: 'FOURCC' (...)`, `Size: Discrete WxH`,
/// `Size: Stepwise WxH - WxH with step a/b`, `Interval: Discrete 0.033s (30.000 fps)` and
/// `Interval: Stepwise|Continuous ... (min-max fps)`.
fn parse_listing(listing: &str) -> Vec<FormatAnswers> {
    let mut formats: Vec<FormatAnswers> = Vec::new();
    for line in listing.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix('[') {
            let code = rest.split('\'').nth(1).expect("a fourcc in quotes");
            let fourcc = Fourcc(format!("{code:<4}").as_bytes()[..4].try_into().expect("four bytes"));
            formats.push(FormatAnswers { fourcc, sizes: FrameSizes::Discrete(Vec::new()), intervals: Vec::new() });
            continue;
        }
        let Some(format) = formats.last_mut() else { continue };
        if let Some(size) = line.strip_prefix("Size: Discrete ") {
            let size = parse_size(size);
            if let FrameSizes::Discrete(sizes) = &mut format.sizes {
                sizes.push(size);
            }
            format.intervals.push((Some(size), FrameIntervals::Discrete(Vec::new())));
        } else if let Some(range) = line.strip_prefix("Size: Stepwise ") {
            let (min, rest) = range.split_once(" - ").expect("min - max");
            let (max, step) = rest.split_once(" with step ").expect("with step");
            let (step_w, step_h) = step.split_once('/').expect("step w/h");
            let step = Size { width: step_w.parse().expect("step"), height: step_h.parse().expect("step") };
            format.sizes = FrameSizes::Stepwise { min: parse_size(min), max: parse_size(max), step };
        } else if let Some(interval) = line.strip_prefix("Interval: Discrete ") {
            let fps = interval.split('(').nth(1).and_then(|r| r.strip_suffix(" fps)")).expect("(N fps)");
            match format.intervals.last_mut() {
                Some((_, FrameIntervals::Discrete(list))) => list.push(interval_of(fps)),
                _ => panic!("a discrete interval outside a discrete size"),
            }
        } else if line.starts_with("Interval: Stepwise ") || line.starts_with("Interval: Continuous ") {
            let range = line.rsplit('(').next().and_then(|r| r.strip_suffix(" fps)")).expect("(a-b fps)");
            let (slowest, fastest) = range.split_once('-').expect("a-b");
            let stepwise = FrameIntervals::Stepwise { min: interval_of(fastest), max: interval_of(slowest) };
            match format.intervals.last_mut() {
                Some((Some(_), intervals)) => *intervals = stepwise,
                _ => format.intervals.push((None, stepwise)),
            }
        }
    }
    formats
}

fn parse_size(text: &str) -> Size {
    let (width, height) = text.split_once('x').expect("WxH");
    Size { width: width.parse().expect("width"), height: height.parse().expect("height") }
}

/// `30.000` fps as an interval of 1000/30000 s.
fn interval_of(fps: &str) -> Interval {
    let fps: f64 = fps.parse().expect("fps");
    Interval { numerator: 1000, denominator: (fps * 1000.0).round() as u32 }
}

pub fn size(width: u32, height: u32) -> Size {
    Size { width, height }
}

/// Sanity of the reader itself, on the C920's listing.
#[test]
fn the_listing_reader_reads_formats_sizes_and_rates() {
    let formats = parse_listing(UVC_C920);
    let fourccs: Vec<Fourcc> = formats.iter().map(|f| f.fourcc).collect();
    assert_eq!(fourccs, [Fourcc::YUYV, Fourcc::MJPEG, Fourcc(*b"H264")]);
    let yuyv = &formats[0];
    assert_eq!(yuyv.sizes, FrameSizes::Discrete(vec![size(640, 480), size(1280, 720), size(1920, 1080)]));
    let rates = |index: usize| match &yuyv.intervals[index].1 {
        FrameIntervals::Discrete(list) => list.iter().map(|i| i.fps()).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(rates(0), [30.0, 24.0, 20.0, 15.0, 10.0, 7.5, 5.0]);
    assert_eq!(rates(2), [5.0]);
    let pi = parse_listing(PI_CAMERA_LIBCAMERA);
    assert_eq!(pi.len(), 12);
    assert!(pi.iter().all(|f| f.intervals.is_empty()));
    assert_eq!(pi[6].sizes, FrameSizes::Stepwise { min: size(16, 16), max: size(3280, 2464), step: size(1, 1) });
}
