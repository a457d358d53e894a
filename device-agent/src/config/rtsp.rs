//! `kind = "rtsp"`: an RTSP camera (H.264), its credentials, transport, watchdog, reconnect backoff and decoder.

use super::{DEFAULT_MAX_DECODED_BYTES, Problems, empty_as_none, validate_decoded_bytes};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `kind = "rtsp"`. Camera-like: the decoder keeps up with the stream, only the newest frame is inferred.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtspSource {
    pub name: String,
    pub model: PathBuf,
    /// `rtsp://host[:port]/path`, without credentials (they go in `credentials_file`). Required.
    pub url: String,
    /// A file holding `user:password` on one line, or the user and the password on two lines.
    #[serde(deserialize_with = "empty_as_none")]
    pub credentials_file: Option<PathBuf>,
    pub transport: RtspTransport,
    /// No frame for this long (from the connection attempt, or since the last frame) ends the session, which
    /// is then opened again; it also bounds each RTSP request.
    pub watchdog_secs: u64,
    /// The first wait before connecting again; doubled after each failure up to `reconnect_max_ms`, with jitter.
    pub reconnect_initial_ms: u64,
    pub reconnect_max_ms: u64,
    pub decoder: DecoderChoice,
    /// The V4L2 memory-to-memory decoder that `decoder = "v4l2m2m"` or `"auto"` probes.
    pub decoder_device: PathBuf,
    /// As for [`super::ImagesSource::max_decoded_bytes`]; a stream whose frames are larger is refused.
    pub max_decoded_bytes: u64,
    /// As for [`super::ImagesSource::cascade`].
    pub cascade: Option<runtime::manifest::CascadeSpec>,
}

impl Default for RtspSource {
    fn default() -> Self {
        RtspSource {
            name: String::new(),
            model: PathBuf::new(),
            url: String::new(),
            credentials_file: None,
            transport: RtspTransport::Tcp,
            watchdog_secs: 10,
            reconnect_initial_ms: 1000,
            reconnect_max_ms: 30_000,
            decoder: DecoderChoice::Software,
            decoder_device: PathBuf::from("/dev/video10"),
            max_decoded_bytes: DEFAULT_MAX_DECODED_BYTES,
            cascade: None,
        }
    }
}

impl RtspSource {
    pub fn watchdog(&self) -> Duration {
        Duration::from_secs(self.watchdog_secs)
    }

    pub(super) fn validate(&self, key: &str, problems: &mut Problems) {
        if let Err(why) = check_url(&self.url) {
            problems.push(format!("{key}.url"), why);
        }
        if !(1..=3600).contains(&self.watchdog_secs) {
            problems.push(format!("{key}.watchdog_secs"), "must be between 1 and 3600");
        }
        if !(10..=3_600_000).contains(&self.reconnect_initial_ms) {
            problems.push(format!("{key}.reconnect_initial_ms"), "must be between 10 and 3600000");
        }
        if !(self.reconnect_initial_ms..=3_600_000).contains(&self.reconnect_max_ms) {
            problems.push(format!("{key}.reconnect_max_ms"), "must be between reconnect_initial_ms and 3600000");
        }
        if self.decoder != DecoderChoice::Software && self.decoder_device.as_os_str().is_empty() {
            problems.push(format!("{key}.decoder_device"), "is required with decoder \"v4l2m2m\" or \"auto\"");
        }
        validate_decoded_bytes(key, self.max_decoded_bytes, problems);
    }
}

/// How RTP travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RtspTransport {
    /// Interleaved in the RTSP TCP connection: passes NAT and firewalls, no loss.
    #[default]
    Tcp,
    /// RTP and RTCP over UDP: for a LAN (no reordering).
    Udp,
}

/// What decodes H.264.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecoderChoice {
    /// OpenH264 on the CPU.
    #[default]
    Software,
    /// The V4L2 memory-to-memory decoder at `decoder_device` when the probe finds one, else software.
    Auto,
    /// Asks for the V4L2 memory-to-memory decoder; software, with the reason logged, when it is unusable.
    V4l2m2m,
}

/// Why an RTSP URL is unusable, if it is.
fn check_url(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("is required".to_owned());
    }
    let url = url::Url::parse(text).map_err(|e| format!("is not a URL: {e}"))?;
    if url.scheme() != "rtsp" {
        return Err(format!("must start with rtsp:// (not {}://)", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Never echo the URL: it holds a password.
        return Err("must not hold credentials (user:password@); put them in credentials_file".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{AgentConfig, SourceConfig};
    use super::*;

    fn parse(keys: &str) -> Result<RtspSource, Vec<String>> {
        let text = format!("device_id = \"d\"\n[[sources]]\nname = \"porch\"\nkind = \"rtsp\"\nmodel = \"m\"\n{keys}");
        match AgentConfig::parse(&text) {
            Ok(config) => match config.sources.into_iter().next() {
                Some(SourceConfig::Rtsp(rtsp)) => Ok(rtsp),
                other => panic!("not an rtsp source: {other:?}"),
            },
            Err(errors) => Err(errors.0.iter().map(ToString::to_string).collect()),
        }
    }

    #[test]
    fn defaults_and_every_key() {
        let rtsp = parse("url = \"rtsp://cam.local/stream1\"\n").unwrap();
        assert_eq!(
            rtsp,
            RtspSource {
                name: "porch".into(),
                model: "m".into(),
                url: "rtsp://cam.local/stream1".into(),
                ..RtspSource::default()
            }
        );
        assert_eq!(
            (rtsp.transport, rtsp.decoder, rtsp.watchdog()),
            (RtspTransport::Tcp, DecoderChoice::Software, Duration::from_secs(10))
        );
        let keys = "url = \"rtsp://10.0.0.5:8554/cam\"\ncredentials_file = \"cam.pw\"\ntransport = \"udp\"\n\
                    watchdog_secs = 3\nreconnect_initial_ms = 100\nreconnect_max_ms = 5000\ndecoder = \"v4l2m2m\"\n\
                    decoder_device = \"/dev/video11\"\nmax_decoded_bytes = 2097152\n";
        let rtsp = parse(keys).unwrap();
        assert_eq!(rtsp.credentials_file, Some(PathBuf::from("cam.pw")));
        assert_eq!((rtsp.transport, rtsp.decoder), (RtspTransport::Udp, DecoderChoice::V4l2m2m));
        assert_eq!((rtsp.reconnect_initial_ms, rtsp.reconnect_max_ms, rtsp.watchdog_secs), (100, 5000, 3));
        assert_eq!((rtsp.decoder_device.to_str(), rtsp.max_decoded_bytes), (Some("/dev/video11"), 2 << 20));
        assert_eq!(parse("url = \"rtsp://c/x\"\ndecoder = \"auto\"\n").unwrap().decoder, DecoderChoice::Auto);
    }

    #[test]
    fn a_url_with_credentials_is_refused_without_echoing_it() {
        let errors = parse("url = \"rtsp://admin:hunter2@cam.local/stream1\"\n").unwrap_err();
        assert_eq!(
            errors,
            ["sources[0].url: must not hold credentials (user:password@); put them in credentials_file"]
        );
        assert!(parse("url = \"rtsp://admin@cam.local/s\"\n").is_err(), "a user alone is a credential too");
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("", "sources[0].url: is required"),
            ("url = \"http://cam/x\"\n", "sources[0].url: must start with rtsp:// (not http://)"),
            ("url = \"not a url\"\n", "sources[0].url: is not a URL: relative URL without a base"),
            ("url = \"rtsp://c/x\"\nwatchdog_secs = 0\n", "sources[0].watchdog_secs: must be between 1 and 3600"),
            (
                "url = \"rtsp://c/x\"\nreconnect_initial_ms = 5\n",
                "sources[0].reconnect_initial_ms: must be between 10 and 3600000",
            ),
            (
                "url = \"rtsp://c/x\"\nreconnect_initial_ms = 2000\nreconnect_max_ms = 1000\n",
                "sources[0].reconnect_max_ms: must be between reconnect_initial_ms and 3600000",
            ),
            (
                "url = \"rtsp://c/x\"\ndecoder = \"auto\"\ndecoder_device = \"\"\n",
                "sources[0].decoder_device: is required with decoder \"v4l2m2m\" or \"auto\"",
            ),
            (
                "url = \"rtsp://c/x\"\nmax_decoded_bytes = 1\n",
                "sources[0].max_decoded_bytes: must be >= 1048576 (1 MiB)",
            ),
        ];
        for (keys, want) in cases {
            assert_eq!(parse(keys).unwrap_err(), [want], "{keys}");
        }
        assert!(parse("url = \"rtsp://c/x\"\ntransport = \"http\"\n").is_err());
        assert!(parse("url = \"rtsp://c/x\"\ndecoder = \"cuda\"\n").is_err());
    }
}
