//! Negotiation and buffer handling against recorded answers of real cameras (the fake device), and the source
//! loop through a camera feed: what the worker's queue receives, the error events, the camera's counters.

use super::capture::{self, Next};
use super::device::{ActiveFormat, Fourcc, Interval};
use super::fake::{Buffer, FakeDevice, PI_CAMERA_LIBCAMERA, Step, UVC_C920, UVC_USB2_CAMERA, size};
use super::negotiate::{Negotiated, NegotiationError, Request, negotiate};
use super::{V4l2Spec, run};
use crate::clock::{Clock, ManualClock};
use crate::health::SourceStats;
use crate::mqtt::QoS;
use crate::outbox::{Outbox, OutboxQos, OutboxSettings, PayloadLimit, Publish};
use crate::queue::Next as QueueNext;
use crate::shutdown::Shutdown;
use crate::sources::Feed;
use crate::sources::camera::{CameraStats, StreamInfo};
use crate::spool::Class;
use protocol::wire::{ErrorEvent, Format, Topics};
use runtime::{Input, PixelFormat};
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DEVICE: &str = "/dev/video0";

fn device(listing: &str) -> FakeDevice {
    FakeDevice::new(listing, Vec::new(), Arc::new(ManualClock::new(0)), Arc::new(Shutdown::default()))
}

fn request(formats: &[Fourcc], width: u32, height: u32, fps: Option<f64>) -> Request {
    Request { formats: formats.to_vec(), size: size(width, height), fps }
}

const AUTO: [Fourcc; 3] = [Fourcc::NV12, Fourcc::YUYV, Fourcc::MJPEG];

fn fps(negotiated: &Negotiated) -> f64 {
    negotiated.interval.expect("a rate was set").fps()
}

#[test]
fn a_uvc_webcam_gives_mjpeg_at_1080p30_and_yuyv_where_its_bandwidth_allows() {
    let mjpeg = negotiate(&mut device(UVC_C920), DEVICE, &request(&[Fourcc::MJPEG], 1920, 1080, Some(30.0))).unwrap();
    assert_eq!(mjpeg.format, ActiveFormat { fourcc: Fourcc::MJPEG, size: size(1920, 1080), bytes_per_line: 0 });
    assert_eq!(fps(&mjpeg), 30.0);

    // Auto prefers raw frames when the camera offers them at the size and rate...
    let vga = negotiate(&mut device(UVC_C920), DEVICE, &request(&AUTO, 640, 480, Some(30.0))).unwrap();
    assert_eq!(vga.format, ActiveFormat { fourcc: Fourcc::YUYV, size: size(640, 480), bytes_per_line: 1280 });
    // ...and falls back to MJPEG where USB 2.0 cannot carry raw 1080p at 30 fps (YUYV offers 5 there).
    let full_hd = negotiate(&mut device(UVC_C920), DEVICE, &request(&AUTO, 1920, 1080, Some(30.0))).unwrap();
    assert_eq!((full_hd.format.fourcc, fps(&full_hd)), (Fourcc::MJPEG, 30.0));
    // Without a rate, the fastest wins: MJPEG at 30 rather than YUYV at 5.
    let fastest = negotiate(&mut device(UVC_C920), DEVICE, &request(&AUTO, 1920, 1080, None)).unwrap();
    assert_eq!((fastest.format.fourcc, fps(&fastest)), (Fourcc::MJPEG, 30.0));
    // A rate the camera lists is taken as listed (7.5 fps).
    let slow = negotiate(&mut device(UVC_C920), DEVICE, &request(&[Fourcc::YUYV], 1280, 720, Some(7.5))).unwrap();
    assert_eq!(slow.interval, Some(Interval { numerator: 1000, denominator: 7500 }));
}

#[test]
fn a_request_the_camera_cannot_meet_names_the_device_and_lists_what_it_offers() {
    let error =
        negotiate(&mut device(UVC_USB2_CAMERA), DEVICE, &request(&[Fourcc::YUYV], 1280, 720, Some(30.0))).unwrap_err();
    assert!(matches!(error, NegotiationError::Unsupported { .. }), "{error:?}");
    let all = "30/25/20/15/10/5";
    assert_eq!(
        error.to_string(),
        format!(
            "/dev/video0 cannot deliver YUYV 1280x720 at 30 fps; it offers MJPG 1280x720@{all}, 640x480@{all}, \
             320x240@{all}; YUYV 640x480@{all}, 1280x720@10/5, 320x240@{all}"
        )
    );
    // A format the camera does not have at all (the Pi's stack offers no MJPEG).
    let error = negotiate(&mut device(PI_CAMERA_LIBCAMERA), DEVICE, &request(&[Fourcc::MJPEG], 1280, 720, None))
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("/dev/video0 cannot deliver MJPG 1280x720 at any rate; it offers YU12 16x16 to"),
        "{error}"
    );
    assert!(error.contains("; NV12 16x16 to 3280x2464 in steps of 1x1;"), "{error}");
    let auto = negotiate(&mut device(UVC_C920), DEVICE, &request(&AUTO, 800, 600, None)).unwrap_err().to_string();
    assert!(auto.starts_with("/dev/video0 cannot deliver NV12, YUYV or MJPG 800x600 at any rate; it offers YUYV"));
    assert!(auto.contains("; H264 640x480@30/24/20/15/10/7.5/5,"), "{auto}");
}

#[test]
fn a_pi_camera_through_libcamera_takes_any_size_and_pads_its_rows() {
    let mut pi = device(PI_CAMERA_LIBCAMERA).with_row_alignment(64);
    let negotiated = negotiate(&mut pi, DEVICE, &request(&AUTO, 1640, 1232, Some(15.0))).unwrap();
    assert_eq!(negotiated.format, ActiveFormat { fourcc: Fourcc::NV12, size: size(1640, 1232), bytes_per_line: 1664 });
    // It lists no rates: the requested one is set as asked.
    assert_eq!(negotiated.interval, Some(Interval { numerator: 1000, denominator: 15_000 }));
    // Nor is one set when none is requested: the driver's own rate stands.
    let own = negotiate(&mut device(PI_CAMERA_LIBCAMERA), DEVICE, &request(&[Fourcc::YUYV], 640, 480, None)).unwrap();
    assert_eq!((own.format.fourcc, own.interval), (Fourcc::YUYV, None));
    // The NV12 frame keeps the driver's stride for both planes.
    let (stride, rows) = (1664, 1232);
    let frame = match capture::to_input(&negotiated.format, vec![7; stride * rows * 3 / 2]).unwrap() {
        Input::Frame(frame) => frame,
        other => panic!("{other:?}"),
    };
    assert_eq!((frame.format(), frame.width(), frame.strides()), (PixelFormat::Nv12, 1640, [stride, stride, 0]));
    assert_eq!(frame.plane(1).len(), stride * rows / 2);
}

#[test]
fn a_driver_that_sets_another_size_than_it_listed_is_an_error() {
    let mut snapping = device(UVC_C920).snapping_to(size(640, 480));
    let error = negotiate(&mut snapping, DEVICE, &request(&[Fourcc::MJPEG], 1280, 720, Some(30.0))).unwrap_err();
    assert_eq!(error.to_string(), "/dev/video0: asked for MJPG 1280x720, the driver set MJPG 640x480");
}

#[test]
fn buffers_become_encoded_images_or_raw_frames_with_the_driver_stride() {
    let mjpeg = ActiveFormat { fourcc: Fourcc::MJPEG, size: size(1920, 1080), bytes_per_line: 0 };
    assert_eq!(capture::to_input(&mjpeg, vec![0xff, 0xd8]).unwrap(), Input::Image(vec![0xff, 0xd8]));
    let yuyv = ActiveFormat { fourcc: Fourcc::YUYV, size: size(4, 2), bytes_per_line: 16 };
    match capture::to_input(&yuyv, vec![1; 32]).unwrap() {
        Input::Frame(frame) => assert_eq!((frame.format(), frame.strides()), (PixelFormat::Yuyv, [16, 0, 0])),
        other => panic!("{other:?}"),
    }
    // A buffer shorter than its format is refused, not read past.
    assert!(capture::to_input(&yuyv, vec![1; 20]).is_err());
}

/// Plays `script` through [`capture::next_frame`] until it yields something other than a frame.
fn frames(script: Vec<Step>, watchdog: Duration) -> (Vec<(Vec<u8>, u64)>, Next, CameraStats) {
    use super::device::VideoDevice;
    let clock = Arc::new(ManualClock::new(1_000));
    let shutdown = Arc::new(Shutdown::default());
    let mut fake = FakeDevice::new(UVC_C920, script, clock.clone(), shutdown.clone());
    fake.set_format(Fourcc::MJPEG, size(640, 480)).unwrap();
    let mut stream = fake.start_streaming().unwrap();
    let stats = CameraStats::default();
    let mut frames = Vec::new();
    loop {
        match capture::next_frame(&mut stream, watchdog, &stats, &*clock, &shutdown).unwrap() {
            Next::Frame { bytes, captured_at_ms } => frames.push((bytes, captured_at_ms)),
            end => return (frames, end, stats),
        }
    }
}

#[test]
fn only_the_newest_waiting_buffer_is_handed_on_and_bad_ones_are_counted() {
    let data = |byte: u8| Buffer::Data(vec![byte; 4]);
    let script = vec![
        Step::Ready(vec![data(1)]),
        // Three waiting: the two older ones are stale.
        Step::Ready(vec![data(2), data(3), data(4)]),
        // The newest is bad: the newest good one before it is taken.
        Step::Ready(vec![data(5), Buffer::Flagged]),
        Step::Ready(vec![Buffer::Empty]),
        Step::Silence(Duration::from_secs(1)),
        Step::Ready(vec![data(6)]),
    ];
    let (frames, end, stats) = frames(script, Duration::from_secs(5));
    let bytes: Vec<u8> = frames.iter().map(|(bytes, _)| bytes[0]).collect();
    assert_eq!(bytes, [1, 4, 5, 6]);
    // Each buffer is stamped when it is dequeued (the fake's clock moves 33 ms per buffer).
    assert_eq!(frames[0].1, 1_033);
    assert_eq!(frames[1].1, 1_033 + 3 * 33);
    assert_eq!(end, Next::Shutdown);
    assert_eq!((stats.received_total(), stats.decode_errors_total()), (8, 2));
}

#[test]
fn no_good_buffer_within_the_watchdog_is_a_stall() {
    let silence = Step::Silence(Duration::from_secs(1));
    let script = vec![Step::Ready(vec![Buffer::Data(vec![1])]), Step::Ready(vec![Buffer::Flagged]), silence];
    let (frames, end, stats) = frames(script, Duration::from_millis(150));
    assert_eq!((frames.len(), end), (1, Next::Stalled));
    assert_eq!(stats.decode_errors_total(), 1);
}

/// Every message the source's outbox publishes.
#[derive(Default)]
struct Published(Mutex<Vec<(String, Vec<u8>)>>);

impl Publish for Published {
    fn publish(&self, _class: Class, topic: String, _qos: QoS, payload: Vec<u8>) -> Result<(), String> {
        self.0.lock().unwrap().push((topic, payload));
        Ok(())
    }
}

impl Published {
    fn errors(&self) -> Vec<ErrorEvent> {
        let published = self.0.lock().unwrap();
        published
            .iter()
            .filter(|(topic, _)| topic == "devices/d/errors/cam")
            .map(|(_, payload)| serde_json::from_slice(payload).unwrap())
            .collect()
    }
}

fn camera_feed(clock: Arc<ManualClock>) -> (Arc<Published>, Arc<Feed>, crate::worker::JobQueue) {
    let published = Arc::new(Published::default());
    let settings = OutboxSettings {
        device: "d".into(),
        topics: Arc::new(Topics::new("devices/d".to_owned())),
        format: Format::Json,
        qos: OutboxQos { predictions: QoS::AtMostOnce, errors: QoS::AtMostOnce },
        link: published.clone(),
        payload_limit: Arc::new(|_| PayloadLimit::none()),
    };
    let outbox = Outbox::new(&settings, "cam", Arc::new(SourceStats::new("cam")));
    let (feed, queue) = Feed::camera(outbox, clock);
    (published, feed, queue)
}

fn spec(formats: &[Fourcc], width: u32, height: u32) -> V4l2Spec {
    V4l2Spec {
        device: DEVICE.into(),
        request: request(formats, width, height, Some(30.0)),
        watchdog: Duration::from_secs(5),
    }
}

/// Opens devices from a list, one per attempt; an absent camera (ENOENT) where the list has `None`.
fn opener(devices: Vec<Option<FakeDevice>>) -> impl Fn(&Path) -> io::Result<FakeDevice> {
    let devices = Mutex::new(devices.into_iter());
    move |path| {
        assert_eq!(path, Path::new(DEVICE));
        let next = devices.lock().unwrap().next().expect("opened more often than the test planned");
        next.ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
}

#[test]
fn an_absent_camera_is_reported_and_retried_then_streams_into_the_worker_queue() {
    let clock = Arc::new(ManualClock::new(50_000));
    let shutdown = Arc::new(Shutdown::default());
    let (published, feed, queue) = camera_feed(clock.clone());
    let script = vec![
        Step::Ready(vec![Buffer::Data(vec![0xff, 0xd8, 1])]),
        Step::Ready(vec![Buffer::Data(vec![0xff, 0xd8, 2])]),
    ];
    let plugged = FakeDevice::new(UVC_C920, script, clock.clone(), shutdown.clone());
    let stats = CameraStats::default();
    run(&spec(&[Fourcc::MJPEG], 1920, 1080), opener(vec![None, None, Some(plugged)]), &feed, &stats, &shutdown);

    let errors = published.errors();
    assert_eq!(errors.len(), 2, "{errors:?}");
    for error in &errors {
        assert_eq!(error.kind.as_str(), "io");
        assert!(error.message.starts_with("cannot open /dev/video0: "), "{}", error.message);
        assert_eq!(error.input.as_deref(), Some(DEVICE));
    }
    // Two backoffs (1 s, then 2 s) on the manual clock before the camera was there.
    assert!(clock.unix_time_ms() >= 53_000);
    assert_eq!(stats.reconnects_total(), 1);
    let info = StreamInfo { width: 1920, height: 1080, codec: "mjpeg".into(), decoder: "jpeg (worker)".into() };
    assert_eq!(stats.stream(), info);
    // The worker was not taking frames: the second replaced the first, and only it is waiting.
    feed.close();
    let QueueNext::Job(job) = queue.next() else { panic!("no frame reached the queue") };
    assert_eq!((job.origin.as_str(), job.input), (DEVICE, Input::Image(vec![0xff, 0xd8, 2])));
    assert!(job.captured_at_ms > 53_000);
    assert!(!matches!(queue.next(), QueueNext::Job(_)));
}

#[test]
fn a_stall_an_unplugged_camera_and_an_unmet_request_are_error_events_and_reopen() {
    let clock = Arc::new(ManualClock::new(0));
    let shutdown = Arc::new(Shutdown::default());
    let (published, feed, _queue) = camera_feed(clock.clone());
    let frame = || Step::Ready(vec![Buffer::Data(vec![0; 640 * 480 * 2])]);
    let silence = Step::Silence(Duration::from_secs(10));
    let stalls = FakeDevice::new(UVC_C920, vec![frame(), silence], clock.clone(), shutdown.clone());
    let unplugged = FakeDevice::new(UVC_C920, vec![frame(), Step::Unplugged], clock.clone(), shutdown.clone());
    // Plugged back in: a camera whose driver lists 640x480 but sets another size.
    let other = FakeDevice::new(PI_CAMERA_LIBCAMERA, vec![], clock.clone(), shutdown.clone());
    let last = FakeDevice::new(UVC_C920, vec![frame()], clock.clone(), shutdown.clone());
    let stats = CameraStats::default();
    let devices = vec![Some(stalls), Some(unplugged), Some(other.snapping_to(size(320, 240))), Some(last)];
    run(&spec(&[Fourcc::YUYV], 640, 480), opener(devices), &feed, &stats, &shutdown);

    let errors: Vec<(String, String)> =
        published.errors().into_iter().map(|e| (e.kind.as_str().to_owned(), e.message)).collect();
    assert_eq!(
        errors,
        [
            ("io".to_owned(), "/dev/video0: no frame for 5 s; reopening".to_owned()),
            ("io".to_owned(), "/dev/video0: streaming failed: No such device (os error 19); reopening".to_owned()),
            ("camera_format".to_owned(), "/dev/video0: asked for YUYV 640x480, the driver set YUYV 320x240".to_owned()),
        ]
    );
    // Streaming started three times, twice after a failure.
    assert_eq!(stats.reconnects_total(), 2);
}
