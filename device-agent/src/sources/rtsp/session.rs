//! One RTSP session: DESCRIBE, SETUP of the video stream, PLAY, then frames until the stream fails, stalls or
//! shutdown comes. Every wait is bounded and wakes for shutdown.

use super::RtspCamera;
use super::credentials::Credentials;
use super::decoder::H264Decoder;
use super::stream_clock::StreamClock;
use crate::config::RtspTransport;
use crate::shutdown::Shutdown;
use crate::sources::Feed;
use crate::sources::camera::{CameraStats, StreamInfo};
use futures_core::Stream;
use protocol::error::ErrorKind;
use retina::client::{
    PlayOptions, Session, SessionGroup, SessionOptions, SetupOptions, TcpTransportOptions, Transport,
    UdpTransportOptions,
};
use retina::codec::{CodecItem, FrameFormat, ParametersRef};
use runtime::Input;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How often a wait looks at the shutdown latch.
const SHUTDOWN_POLL: Duration = Duration::from_millis(100);

/// How a session ended.
pub enum Ended {
    Shutdown,
    /// `delivered`: the session handed on frames (the backoff starts over).
    Failed {
        kind: ErrorKind,
        message: String,
        delivered: bool,
    },
}

/// Why a bounded wait returned without its result.
pub enum Interrupted {
    Shutdown,
    TimedOut,
}

/// `future`'s output, unless `limit` passes or shutdown is triggered first.
pub async fn bounded<F: Future>(shutdown: &Shutdown, limit: Duration, future: F) -> Result<F::Output, Interrupted> {
    let mut future = std::pin::pin!(future);
    let deadline = Instant::now() + limit;
    loop {
        if shutdown.is_triggered() {
            return Err(Interrupted::Shutdown);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Interrupted::TimedOut);
        }
        if let Ok(output) = tokio::time::timeout(left.min(SHUTDOWN_POLL), future.as_mut()).await {
            return Ok(output);
        }
    }
}

/// The camera's state across sessions.
pub struct Camera<'a> {
    config: &'a RtspCamera,
    origin: String,
    decoder: H264Decoder,
    group: Arc<SessionGroup>,
    feed: &'a Feed,
    stats: &'a CameraStats,
    shutdown: &'a Shutdown,
    /// A session has played before: the next one to play is a reconnect.
    played_before: bool,
}

impl<'a> Camera<'a> {
    pub fn new(
        config: &'a RtspCamera,
        decoder: H264Decoder,
        group: Arc<SessionGroup>,
        feed: &'a Feed,
        stats: &'a CameraStats,
        shutdown: &'a Shutdown,
    ) -> Camera<'a> {
        Camera { origin: config.origin(), config, decoder, group, feed, stats, shutdown, played_before: false }
    }

    /// Opens a session and hands its frames on until it ends.
    pub async fn play(&mut self) -> Ended {
        let failed = |kind, message| Ended::Failed { kind, message, delivered: false };
        let credentials = match &self.config.credentials_file {
            Some(path) => match Credentials::read(path) {
                Ok(credentials) => Some(credentials),
                Err(message) => return failed(ErrorKind::Io, message),
            },
            None => None,
        };
        let options = SessionOptions::default()
            .creds(credentials.map(|c| retina::client::Credentials { username: c.user, password: c.password }))
            .session_group(self.group.clone())
            .user_agent(format!("edge-device-agent/{}", env!("CARGO_PKG_VERSION")));
        let mut session = match self.step("DESCRIBE", Session::describe(self.config.url.clone(), options)).await {
            Ok(session) => session,
            Err(ended) => return ended,
        };
        let Some(index) = session.streams().iter().position(|s| s.media() == "video") else {
            return failed(ErrorKind::StreamLost, "the camera's description has no video stream".into());
        };
        let codec = session.streams()[index].encoding_name().to_owned();
        if codec != "h264" {
            let message = format!("the video stream is {codec}; only H.264 is decoded here (OpenH264)");
            return failed(ErrorKind::UnsupportedCodec, message);
        }
        let transport = match self.config.transport {
            RtspTransport::Tcp => Transport::Tcp(TcpTransportOptions::default()),
            RtspTransport::Udp => Transport::Udp(UdpTransportOptions::default()),
        };
        // Annex B with SPS/PPS before every key frame: what OpenH264 takes, and a decoder can start at any key frame.
        let setup = SetupOptions::default().transport(transport).frame_format(FrameFormat::SIMPLE);
        if let Err(ended) = self.step("SETUP", session.setup(index, setup)).await {
            return ended;
        }
        let playing = match self.step("PLAY", session.play(PlayOptions::default())).await {
            Ok(playing) => playing,
            Err(ended) => return ended,
        };
        let mut frames = match playing.demuxed() {
            Ok(frames) => frames,
            Err(e) => return failed(ErrorKind::StreamLost, first_line(&e)),
        };
        if self.played_before {
            self.stats.reconnected();
        }
        self.played_before = true;
        log::info!(source = self.config.source.as_str(); "{}: playing ({codec}).", self.origin);
        let mut delivered = false;
        match self.stream(&mut frames, index, &codec, &mut delivered).await {
            Some((kind, message)) => Ended::Failed { kind, message, delivered },
            None => Ended::Shutdown,
        }
    }

    /// An RTSP request, bounded by the watchdog's time; its failure classified.
    async fn step<T>(&self, name: &str, request: impl Future<Output = Result<T, retina::Error>>) -> Result<T, Ended> {
        let failed = |kind, message| Ended::Failed { kind, message, delivered: false };
        match bounded(self.shutdown, self.config.watchdog, request).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                let (kind, message) = self.classify(&e);
                Err(failed(kind, message))
            }
            Err(Interrupted::Shutdown) => Err(Ended::Shutdown),
            Err(Interrupted::TimedOut) => Err(failed(
                ErrorKind::StreamStalled,
                format!("no answer to {name} within watchdog_secs ({}s)", self.config.watchdog.as_secs()),
            )),
        }
    }

    /// Decodes and hands on frames until the stream fails or stalls (`Some(why)`) or shutdown comes (`None`);
    /// `delivered` is set once a frame went to the worker.
    async fn stream(
        &mut self,
        frames: &mut retina::client::Demuxed,
        index: usize,
        codec: &str,
        delivered: &mut bool,
    ) -> Option<(ErrorKind, String)> {
        if let Err(e) = self.decoder.reset() {
            return Some((ErrorKind::Decode, e.to_string()));
        }
        let mut stream_clock = StreamClock::default();
        let mut last_frame = Instant::now();
        let mut stream = StreamInfo::default();
        // Until the first key frame, and after a decode error up to the next one, access units are skipped: they
        // refer to a picture the decoder does not have.
        let mut skip_to_key_frame = true;
        loop {
            let left = self.config.watchdog.saturating_sub(last_frame.elapsed());
            let next = std::future::poll_fn(|cx| Pin::new(&mut *frames).poll_next(cx));
            let item = match bounded(self.shutdown, left, next).await {
                Ok(Some(Ok(item))) => item,
                Ok(Some(Err(e))) => return Some(self.classify(&e)),
                Ok(None) => return Some((ErrorKind::StreamLost, "the camera ended the stream".into())),
                Err(Interrupted::Shutdown) => return None,
                Err(Interrupted::TimedOut) => {
                    let secs = self.config.watchdog.as_secs();
                    return Some((ErrorKind::StreamStalled, format!("no frame for watchdog_secs ({secs}s)")));
                }
            };
            let CodecItem::VideoFrame(frame) = item else { continue };
            if frame.stream_id() != index {
                continue;
            }
            let arrived_ms = self.feed.clock().unix_time_ms();
            self.stats.received(arrived_ms);
            last_frame = Instant::now();
            if skip_to_key_frame && !frame.is_random_access_point() {
                continue;
            }
            skip_to_key_frame = false;
            if let Some(ParametersRef::Video(parameters)) = frames.streams()[index].parameters() {
                let (width, height) = parameters.pixel_dimensions();
                if (width, height) != (stream.width, stream.height) {
                    stream = StreamInfo { width, height, codec: codec.to_owned(), decoder: self.decoder.name().into() };
                    self.stats.set_stream(stream.clone());
                }
            }
            let timestamp = frame.timestamp();
            let captured_ms = stream_clock.capture_ms(timestamp.elapsed(), timestamp.clock_rate().get(), arrived_ms);
            match self.decoder.decode(frame.data()) {
                Ok(Some(picture)) => {
                    self.stats.decoded();
                    let bytes = picture.data().len() as u64;
                    if bytes > self.config.max_decoded_bytes {
                        let (w, h, max) = (picture.width(), picture.height(), self.config.max_decoded_bytes);
                        let message = format!("{w}x{h} frames take {bytes} bytes, over max_decoded_bytes ({max})");
                        return Some((ErrorKind::ImageTooLarge, message));
                    }
                    if self.feed.camera_frame(self.origin.clone(), Input::Frame(picture), captured_ms) {
                        self.stats.replaced();
                    }
                    *delivered = true;
                }
                Ok(None) => {}
                Err(e) => {
                    self.stats.decode_error();
                    let message = match frame.loss() {
                        0 => e.to_string(),
                        lost => format!("{e} ({lost} RTP packets lost before this frame)"),
                    };
                    self.feed.error(&self.origin, ErrorKind::Decode, &message);
                    skip_to_key_frame = true;
                }
            }
        }
    }

    /// The kind and a one-line message of a retina error; a 401 or 403 is about the credentials (named by
    /// their file, never shown).
    fn classify(&self, error: &retina::Error) -> (ErrorKind, String) {
        match (error.status_code(), &self.config.credentials_file) {
            (Some(status @ (401 | 403)), Some(path)) => (
                ErrorKind::AuthFailed,
                format!("{status} unauthorized: the camera refused the credentials of {}", path.display()),
            ),
            (Some(status @ (401 | 403)), None) => (
                ErrorKind::AuthFailed,
                format!("{status} unauthorized: the camera wants credentials (credentials_file)"),
            ),
            _ => (ErrorKind::StreamLost, first_line(error)),
        }
    }
}

/// The first line of an error: retina adds connection and packet context on further lines.
fn first_line(error: &retina::Error) -> String {
    error.to_string().lines().next().unwrap_or_default().to_owned()
}
