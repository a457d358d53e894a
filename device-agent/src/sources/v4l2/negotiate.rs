//! Format, size and rate negotiation against what the device lists. A format qualifies when it offers exactly
//! the requested size, and the requested rate (within [`RATE_TOLERANCE`]); the first qualifying format of the
//! request's preference wins. With no rate requested, the fastest qualifying format wins (the preference breaks
//! ties), at its fastest rate. When nothing qualifies, the error names the device and lists everything it
//! offers, so the config can be fixed from the message alone.

use super::device::{ActiveFormat, Fourcc, FrameIntervals, FrameSizes, Interval, Size, VideoDevice};
use std::fmt::Write;
use std::io;

/// Offered and requested rates closer than this (relative) are the same rate: UVC cameras state 30 fps as
/// 333333/10000000 s, and NTSC-derived ones 29.97.
const RATE_TOLERANCE: f64 = 0.01;

/// What the config asks of the camera.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Acceptable formats, best first.
    pub formats: Vec<Fourcc>,
    pub size: Size,
    /// Unset: the fastest rate offered.
    pub fps: Option<f64>,
}

/// What was agreed with the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub format: ActiveFormat,
    /// The rate the driver set; `None` when it lists no rates and none was requested (its own rate stands).
    pub interval: Option<Interval>,
}

/// A format that qualifies, with the interval to set (`None`: leave the driver's).
#[derive(Debug, Clone, Copy)]
struct Candidate {
    fourcc: Fourcc,
    interval: Option<Interval>,
}

impl Candidate {
    /// Its rate for ranking; a rate the driver does not list ranks last.
    fn fps(&self) -> f64 {
        self.interval.map_or(0.0, Interval::fps)
    }
}

/// Why negotiation failed.
#[derive(Debug, thiserror::Error)]
pub enum NegotiationError {
    /// The device does not offer what was asked; the message lists what it does offer.
    #[error("{device} cannot deliver {asked}; it offers {offers}")]
    Unsupported { device: String, asked: String, offers: String },
    /// The driver accepted the request but set something else.
    #[error("{device}: asked for {asked}, the driver set {set}")]
    Adjusted { device: String, asked: String, set: String },
    #[error("{device}: {context}: {source}")]
    Io { device: String, context: &'static str, source: io::Error },
}

/// Chooses a format, size and rate the device offers, sets them and returns what the driver set.
pub fn negotiate<D: VideoDevice>(
    device: &mut D,
    name: &str,
    request: &Request,
) -> Result<Negotiated, NegotiationError> {
    let io = |context| move |source| NegotiationError::Io { device: name.to_owned(), context, source };
    let offered = device.formats().map_err(io("listing formats"))?;
    let mut choice: Option<Candidate> = None;
    for &fourcc in request.formats.iter().filter(|fourcc| offered.contains(fourcc)) {
        if !offers_size(&device.frame_sizes(fourcc).map_err(io("listing frame sizes"))?, request.size) {
            continue;
        }
        let intervals = device.frame_intervals(fourcc, request.size).map_err(io("listing frame intervals"))?;
        let Some(interval) = pick_interval(&intervals, request.fps) else { continue };
        let candidate = Candidate { fourcc, interval };
        if request.fps.is_some() {
            choice = Some(candidate);
            break;
        }
        if choice.is_none_or(|best| candidate.fps() > best.fps() && !same_rate(candidate.fps(), best.fps())) {
            choice = Some(candidate);
        }
    }
    let Some(Candidate { fourcc, interval }) = choice else {
        let offers = describe_offers(device, &offered).map_err(io("listing what it offers"))?;
        return Err(NegotiationError::Unsupported {
            device: name.to_owned(),
            asked: describe_request(request),
            offers,
        });
    };
    let format = device.set_format(fourcc, request.size).map_err(io("setting the format"))?;
    if format.fourcc != fourcc || format.size != request.size {
        return Err(NegotiationError::Adjusted {
            device: name.to_owned(),
            asked: format!("{fourcc} {}", request.size),
            set: format!("{} {}", format.fourcc, format.size),
        });
    }
    let Some(interval) = interval else { return Ok(Negotiated { format, interval: None }) };
    let set = device.set_frame_interval(interval).map_err(io("setting the frame rate"))?;
    if !same_rate(set.fps(), interval.fps()) {
        log::warn!(device = name; "Asked for {} fps, the driver set {} fps.", rate(interval.fps()), rate(set.fps()));
    }
    Ok(Negotiated { format, interval: Some(set) })
}

fn offers_size(sizes: &FrameSizes, size: Size) -> bool {
    match sizes {
        FrameSizes::Discrete(sizes) => sizes.contains(&size),
        FrameSizes::Stepwise { min, max, step } => {
            let fits = |value: u32, min: u32, max: u32, step: u32| {
                (min..=max).contains(&value) && (value - min).is_multiple_of(step.max(1))
            };
            fits(size.width, min.width, max.width, step.width) && fits(size.height, min.height, max.height, step.height)
        }
    }
}

/// The interval to set for `fps` (unset: the fastest offered), if the format offers it: `Some(None)` leaves the
/// driver's own rate (it lists none, and none was requested).
fn pick_interval(intervals: &FrameIntervals, fps: Option<f64>) -> Option<Option<Interval>> {
    match (intervals, fps) {
        (FrameIntervals::Discrete(list), None) => {
            list.iter().copied().max_by(|a, b| a.fps().total_cmp(&b.fps())).map(Some)
        }
        (FrameIntervals::Discrete(list), Some(fps)) => list.iter().copied().find(|i| same_rate(i.fps(), fps)).map(Some),
        (FrameIntervals::Stepwise { min, .. }, None) => Some(Some(*min)),
        (FrameIntervals::Stepwise { min, max }, Some(fps)) => {
            let in_range = max.fps() * (1.0 - RATE_TOLERANCE) <= fps && fps <= min.fps() * (1.0 + RATE_TOLERANCE);
            in_range.then(|| Some(interval_for(fps)))
        }
        (FrameIntervals::Unlisted, fps) => Some(fps.map(interval_for)),
    }
}

/// Milliframes per second keep rates such as 7.5 or 29.97 exact enough.
fn interval_for(fps: f64) -> Interval {
    Interval { numerator: 1000, denominator: ((fps * 1000.0).round() as u32).max(1) }
}

fn same_rate(a: f64, b: f64) -> bool {
    (a - b).abs() <= RATE_TOLERANCE * a.max(b)
}

/// `mjpeg 1920x1080 at 30 fps`, `nv12, yuyv or mjpeg 640x480 at the fastest rate`.
fn describe_request(request: &Request) -> String {
    let names: Vec<String> = request.formats.iter().map(|fourcc| fourcc.to_string()).collect();
    let formats = match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => "no format".to_owned(),
    };
    let fps = request.fps.map_or_else(|| "at any rate".to_owned(), |fps| format!("at {} fps", rate(fps)));
    format!("{formats} {} {fps}", request.size)
}

/// `MJPG 1920x1080@30/15, 1280x720@30; YUYV 640x480@30`: each format with its sizes and their rates.
fn describe_offers<D: VideoDevice>(device: &mut D, offered: &[Fourcc]) -> io::Result<String> {
    if offered.is_empty() {
        return Ok("no capture format".to_owned());
    }
    let mut text = String::new();
    for (index, &fourcc) in offered.iter().enumerate() {
        if index > 0 {
            text.push_str("; ");
        }
        let _ = write!(text, "{fourcc} ");
        match device.frame_sizes(fourcc)? {
            FrameSizes::Discrete(sizes) => {
                for (index, size) in sizes.iter().enumerate() {
                    let separator = if index > 0 { ", " } else { "" };
                    let rates = describe_rates(&device.frame_intervals(fourcc, *size)?);
                    let _ = write!(text, "{separator}{size}{rates}");
                }
            }
            FrameSizes::Stepwise { min, max, step } => {
                let _ = write!(text, "{min} to {max} in steps of {step}");
            }
        }
    }
    Ok(text)
}

/// `@30/15`, `@1-30`, or nothing when the driver does not list its rates.
fn describe_rates(intervals: &FrameIntervals) -> String {
    match intervals {
        FrameIntervals::Discrete(list) => {
            format!("@{}", list.iter().map(|i| rate(i.fps())).collect::<Vec<_>>().join("/"))
        }
        FrameIntervals::Stepwise { min, max } => format!("@{}-{}", rate(max.fps()), rate(min.fps())),
        FrameIntervals::Unlisted => String::new(),
    }
}

/// A rate as people write it: `30`, `7.5`, `29.97`.
fn rate(fps: f64) -> String {
    let text = format!("{fps:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}
