//! `kind = "http_mjpeg"`: an HTTP camera, read as a `multipart/x-mixed-replace` stream (most IP cameras, the
//! ESP32-CAM) or as a snapshot URL polled at a rate.
//!
//! Each part is checked without being decoded (its JPEG markers walked, its size read from the frame header) and
//! handed to the worker still encoded: a frame replaced in the latest-frame slot before the worker took it is
//! never decoded at all. A malformed part (truncated, not a JPEG, a garbled boundary, over `max_part_bytes`) is
//! an error event and the stream goes on; only a lost connection, an HTTP error or the watchdog (no part for
//! `watchdog_secs`) reconnects, after a backoff with jitter.

mod chunked;
mod http;
mod jpeg;
mod multipart;

pub use http::HttpUrl;

use super::Feed;
use super::camera::{CameraStats, StreamInfo};
use crate::clock::Pacer;
use crate::shutdown::Shutdown;
use crate::sources::backoff::Backoff;
use http::{BasicAuth, BodyRead, HttpError};
use multipart::{Event, Malformed, Multipart, Part};
use protocol::error::ErrorKind;
use runtime::Input;
use std::path::PathBuf;
use std::time::Duration;

/// What the camera's stream says it is, for health.
const CODEC: &str = "mjpeg";
const DECODER: &str = "jpeg (worker)";
/// The first wait before reconnecting (or polling again after a failed snapshot), doubled up to [`LAST_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// A camera that stays down is asked about twice a minute.
const LAST_RETRY: Duration = Duration::from_secs(30);

/// One camera, as configured.
#[derive(Debug)]
pub struct MjpegCamera {
    /// The source's name, for the log.
    pub name: String,
    pub url: HttpUrl,
    /// The URL as configured (it holds no credentials): the origin of the camera's inputs and errors.
    pub origin: String,
    pub mode: Mode,
    pub credentials_file: Option<PathBuf>,
    /// Stream: the longest time without a part. Both modes: the longest wait for a response.
    pub watchdog: Duration,
    pub max_part_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Stream,
    Snapshot { rate_fps: f64 },
}

/// Runs the camera until shutdown.
pub fn run(camera: MjpegCamera, feed: &Feed, stats: &CameraStats, shutdown: &Shutdown) {
    let mut reader = Reader { camera, feed, stats, size: None };
    match reader.camera.mode {
        Mode::Stream => reader.stream(shutdown),
        Mode::Snapshot { rate_fps } => reader.poll(rate_fps, shutdown),
    }
}

/// Why a connection ended.
enum Lost {
    Stopped,
    Error(ErrorKind, String),
}

impl From<HttpError> for Lost {
    fn from(error: HttpError) -> Lost {
        let kind = match &error {
            HttpError::Stopped => return Lost::Stopped,
            HttpError::Status { .. } => ErrorKind::HttpStatus,
            HttpError::TimedOut(_) => ErrorKind::StreamStalled,
            HttpError::Malformed(_) | HttpError::Chunked(_) => ErrorKind::Malformed,
            HttpError::Connect { .. } | HttpError::Io(_) => ErrorKind::Io,
        };
        Lost::Error(kind, error.to_string())
    }
}

struct Reader<'a> {
    camera: MjpegCamera,
    feed: &'a Feed,
    stats: &'a CameraStats,
    /// The last frame size seen, to tell health when it changes.
    size: Option<(u32, u32)>,
}

impl Reader<'_> {
    /// Reads the stream, reconnecting after each loss until shutdown.
    fn stream(&mut self, shutdown: &Shutdown) {
        let mut backoff = Backoff::new(FIRST_RETRY, LAST_RETRY);
        let mut connections = 0u64;
        loop {
            let Lost::Error(kind, message) = self.stream_once(&mut connections, &mut backoff, shutdown) else {
                return;
            };
            self.lost(kind, &message);
            if self.wait(backoff.next_wait(), shutdown) {
                return;
            }
        }
    }

    /// One connection, read until it is lost.
    fn stream_once(&mut self, connections: &mut u64, backoff: &mut Backoff, shutdown: &Shutdown) -> Lost {
        let camera = &self.camera;
        let auth = match self.auth() {
            Ok(auth) => auth,
            Err(message) => return Lost::Error(ErrorKind::Io, message),
        };
        let accept = "multipart/x-mixed-replace, image/jpeg";
        let response = match http::get(&camera.url, auth.as_ref(), accept, camera.watchdog, shutdown) {
            Ok(response) => response,
            Err(error) => return error.into(),
        };
        let boundary = match boundary(response.content_type.as_deref()) {
            Ok(boundary) => boundary,
            Err(message) => return Lost::Error(ErrorKind::Malformed, message),
        };
        *connections += 1;
        if *connections > 1 {
            self.stats.reconnected();
            log::info!(source = camera.name.as_str(); "Camera stream connected again.");
        }
        let mut parser = Multipart::new(&boundary, camera.max_part_bytes);
        let mut body = response.body;
        let clock = self.feed.clock();
        let mut last_part = clock.now();
        let mut bytes = Vec::new();
        loop {
            bytes.clear();
            let read = match body.read(&mut bytes) {
                Ok(read) => read,
                Err(error) => return error.into(),
            };
            parser.push(&bytes);
            while let Some(event) = parser.next_event() {
                last_part = clock.now();
                match event {
                    Event::Part(part) => {
                        backoff.reset();
                        self.part(part);
                    }
                    Event::Malformed(malformed) => self.malformed(malformed),
                    Event::End => return Lost::Error(ErrorKind::Io, "the camera ended the stream".into()),
                }
            }
            if read == BodyRead::End {
                return Lost::Error(ErrorKind::Io, "the camera closed the stream".into());
            }
            if shutdown.is_triggered() {
                return Lost::Stopped;
            }
            if clock.now().saturating_duration_since(last_part) >= self.camera.watchdog {
                let message = format!("no part for {} s (watchdog_secs); reconnecting", self.camera.watchdog.as_secs());
                return Lost::Error(ErrorKind::StreamStalled, message);
            }
        }
    }

    /// Polls the snapshot URL at `rate_fps`; a failed request is reported and retried after a backoff.
    fn poll(&mut self, rate_fps: f64, shutdown: &Shutdown) {
        let mut pacer = Pacer::per_second(rate_fps);
        let mut backoff = Backoff::new(FIRST_RETRY, LAST_RETRY);
        let mut failing = false;
        while !pacer.wait(self.feed.clock(), shutdown) {
            match self.snapshot(shutdown) {
                Ok(Some(part)) => {
                    if failing {
                        self.stats.reconnected();
                        log::info!(source = self.camera.name.as_str(); "Camera snapshots work again.");
                    }
                    failing = false;
                    backoff.reset();
                    self.part(part);
                }
                Ok(None) => {}
                Err(Lost::Stopped) => return,
                Err(Lost::Error(kind, message)) => {
                    failing = true;
                    self.lost(kind, &message);
                    if self.wait(backoff.next_wait(), shutdown) {
                        return;
                    }
                }
            }
        }
    }

    /// One snapshot; `None` when it was over `max_part_bytes` (reported, not read whole).
    fn snapshot(&mut self, shutdown: &Shutdown) -> Result<Option<Part>, Lost> {
        let camera = &self.camera;
        let auth = self.auth().map_err(|message| Lost::Error(ErrorKind::Io, message))?;
        let response = http::get(&camera.url, auth.as_ref(), "image/jpeg", camera.watchdog, shutdown)?;
        let limit = camera.max_part_bytes;
        let too_large = |bytes: u64| Malformed::TooLarge { bytes };
        if let Some(length) = response.content_length.filter(|&length| length > limit as u64) {
            self.malformed(too_large(length));
            return Ok(None);
        }
        let clock = self.feed.clock();
        let deadline = clock.now() + camera.watchdog;
        let mut body = response.body;
        let mut bytes = Vec::new();
        loop {
            let read = body.read(&mut bytes)?;
            if bytes.len() > limit {
                self.malformed(too_large(bytes.len() as u64));
                return Ok(None);
            }
            if read == BodyRead::End {
                return Ok(Some(Part { content_type: response.content_type, body: bytes }));
            }
            if shutdown.is_triggered() {
                return Err(Lost::Stopped);
            }
            if clock.now() >= deadline {
                return Err(HttpError::TimedOut(camera.watchdog).into());
            }
        }
    }

    /// A complete part: to the worker if it is a whole JPEG, reported otherwise.
    fn part(&mut self, part: Part) {
        let now_ms = self.feed.clock().unix_time_ms();
        self.stats.received(now_ms);
        match jpeg::inspect(&part.body) {
            Ok(info) => {
                if self.size != Some((info.width, info.height)) {
                    self.size = Some((info.width, info.height));
                    let (codec, decoder) = (CODEC.to_owned(), DECODER.to_owned());
                    self.stats.set_stream(StreamInfo { width: info.width, height: info.height, codec, decoder });
                }
                if self.feed.camera_frame(self.camera.origin.clone(), Input::Image(part.body), now_ms) {
                    self.stats.replaced();
                }
            }
            Err(problem) => {
                self.stats.decode_error();
                let declared = part.content_type.map(|t| format!(" (Content-Type {t})")).unwrap_or_default();
                let number = self.stats.received_total();
                let message = format!("part {number}: {problem}{declared}; skipped");
                self.feed.error(&self.camera.origin, ErrorKind::MalformedPart, &message);
            }
        }
    }

    fn malformed(&self, malformed: Malformed) {
        let kind = match malformed {
            Malformed::TooLarge { .. } => {
                self.stats.received(self.feed.clock().unix_time_ms());
                ErrorKind::ImageTooLarge
            }
            Malformed::Junk { .. } | Malformed::HeadersTooLong => ErrorKind::MalformedPart,
        };
        self.stats.decode_error();
        self.feed.error(&self.camera.origin, kind, &malformed.to_string());
    }

    /// The credentials, read anew for each connection (so that a rotated file takes effect).
    fn auth(&self) -> Result<Option<BasicAuth>, String> {
        self.camera.credentials_file.as_deref().map(BasicAuth::read).transpose()
    }

    fn lost(&self, kind: ErrorKind, message: &str) {
        log::warn!(source = self.camera.name.as_str(), kind = kind.as_str(); "Camera: {message}; retrying.");
        self.feed.error(&self.camera.origin, kind, message);
    }

    /// Waits `delay`; true when shutdown came first.
    fn wait(&self, delay: Duration, shutdown: &Shutdown) -> bool {
        let clock = self.feed.clock();
        clock.wait_until(clock.now() + delay, shutdown)
    }
}

/// The boundary of a `multipart/x-mixed-replace` Content-Type; the error says what the URL serves instead.
fn boundary(content_type: Option<&str>) -> Result<String, String> {
    let content_type = content_type.unwrap_or_default();
    let mut fields = content_type.split(';');
    let media_type = fields.next().unwrap_or_default().trim();
    if !media_type.eq_ignore_ascii_case("multipart/x-mixed-replace") {
        let hint = if media_type.to_ascii_lowercase().starts_with("image/") {
            " (a snapshot URL: set mode = \"snapshot\")"
        } else {
            ""
        };
        return Err(format!("the URL serves {content_type:?}, not a multipart/x-mixed-replace stream{hint}"));
    }
    fields
        .filter_map(|field| field.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, value)| value.trim().trim_matches('"').to_owned())
        .filter(|boundary| !boundary.is_empty())
        .ok_or_else(|| format!("the Content-Type {content_type:?} names no boundary"))
}

#[cfg(test)]
mod tests;
