//! `kind = "rtsp"`: an H.264 camera over RTSP. The source thread drives a current-thread tokio runtime
//! (retina's client is async) and decodes every access unit itself (H.264 needs them all); the worker takes the
//! newest frame ([`Feed::camera_frame`]), stamped with the stream's own clock ([`stream_clock`]).
//!
//! A session ends when the connection fails or closes, when no frame arrives for `watchdog_secs` although the
//! connection stays open, or on an RTSP error; each end is an error event (`stream_lost`, `stream_stalled`,
//! `auth_failed`, `unsupported_codec`) and a new attempt follows after an exponential [`backoff`] with jitter.
//! Every session that plays again after the first counts as a reconnect in [`CameraStats`].

mod credentials;
mod decoder;
mod probe;
mod session;
mod stream_clock;

use super::Feed;
use super::camera::CameraStats;
use crate::config::{DecoderChoice, RtspSource, RtspTransport};
use crate::shutdown::Shutdown;
use crate::sources::backoff::Backoff;
pub use decoder::H264Decoder;
use protocol::error::ErrorKind;
use session::{Ended, Interrupted};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// One camera, as configured.
#[derive(Debug)]
pub struct RtspCamera {
    pub source: String,
    pub url: url::Url,
    pub credentials_file: Option<PathBuf>,
    pub transport: RtspTransport,
    pub watchdog: Duration,
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
    pub decoder: DecoderChoice,
    pub decoder_device: PathBuf,
    pub max_decoded_bytes: u64,
}

impl RtspCamera {
    /// The camera of a validated `[[sources]]` entry.
    pub fn new(config: &RtspSource) -> anyhow::Result<RtspCamera> {
        // Validation refused URLs with credentials, so the parse error cannot echo a password.
        let url = url::Url::parse(&config.url).map_err(|e| anyhow::anyhow!("sources.url: {e}"))?;
        Ok(RtspCamera {
            source: config.name.clone(),
            url,
            credentials_file: config.credentials_file.clone(),
            transport: config.transport,
            watchdog: config.watchdog(),
            reconnect_initial: Duration::from_millis(config.reconnect_initial_ms),
            reconnect_max: Duration::from_millis(config.reconnect_max_ms),
            decoder: config.decoder,
            decoder_device: config.decoder_device.clone(),
            max_decoded_bytes: config.max_decoded_bytes,
        })
    }

    /// The URL as frames and events name it: scheme, host, port and path (a query may hold a token).
    fn origin(&self) -> String {
        let mut shown = self.url.clone();
        shown.set_query(None);
        shown.set_fragment(None);
        shown.to_string()
    }
}

/// Runs the camera until shutdown: connects, decodes, reconnects.
pub fn run(camera: RtspCamera, feed: &Feed, stats: &CameraStats, shutdown: &Shutdown) {
    let source = camera.source.as_str();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build() {
        Ok(runtime) => runtime,
        Err(e) => return feed.error(&camera.origin(), ErrorKind::Io, &format!("cannot start the RTSP runtime: {e}")),
    };
    let decoder = match H264Decoder::select(camera.decoder, &camera.decoder_device, source) {
        Ok(decoder) => decoder,
        Err(e) => return feed.error(&camera.origin(), ErrorKind::Decode, &e.to_string()),
    };
    runtime.block_on(reconnect_loop(camera, decoder, feed, stats, shutdown));
}

async fn reconnect_loop(
    camera: RtspCamera,
    decoder: H264Decoder,
    feed: &Feed,
    stats: &CameraStats,
    shutdown: &Shutdown,
) {
    let origin = camera.origin();
    let mut backoff = Backoff::new(camera.reconnect_initial, camera.reconnect_max);
    let group = Arc::new(retina::client::SessionGroup::default());
    let mut session = session::Camera::new(&camera, decoder, group.clone(), feed, stats, shutdown);
    loop {
        let (kind, message) = match session.play().await {
            Ended::Shutdown => return,
            Ended::Failed { kind, message, delivered } => {
                if delivered {
                    backoff.reset();
                }
                (kind, message)
            }
        };
        // A codec or a frame size will not change on the next attempt soon: ask at the slowest rate.
        let wait = match kind {
            ErrorKind::UnsupportedCodec | ErrorKind::ImageTooLarge => backoff.longest(),
            _ => backoff.next_wait(),
        };
        // The error event is logged as a warning by the outbox; this adds when the next attempt comes.
        log::info!(source = camera.source.as_str(); "{origin}: reconnecting in {wait:?}.");
        feed.error(&origin, kind, &message);
        // Sessions a camera may still hold (live555's TCP bug) are torn down or waited out first, bounded.
        let stale = group.stale_sessions();
        if let Err(Interrupted::Shutdown) =
            session::bounded(shutdown, camera.reconnect_max, group.await_stale_sessions(&stale)).await
        {
            return;
        }
        if let Err(Interrupted::Shutdown) = session::bounded(shutdown, wait, std::future::pending::<()>()).await {
            return;
        }
    }
}
