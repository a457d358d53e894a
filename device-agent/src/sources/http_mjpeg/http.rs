//! Just enough HTTP/1.1 for a camera: one GET over a plain `TcpStream`, the response head parsed by
//! `httparse`, the body undone from its framing (length, chunked, or up to the close). Every read has a short
//! timeout, so that the caller can run its watchdog and notice shutdown while a camera is silent: HTTP clients
//! that hand out a blocking body reader cannot be stopped on a stalled stream.

use super::chunked::{ChunkError, Dechunker};
use crate::shutdown::Shutdown;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, Instant};

/// How often a blocked read wakes up to look at the watchdog and shutdown.
const READ_SLICE: Duration = Duration::from_millis(200);
/// A response head longer than this is not a camera's.
const MAX_HEAD_BYTES: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;
const READ_BUFFER: usize = 64 * 1024;

/// An `http://` URL, split for the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub host: String,
    pub port: u16,
    /// The path and query, `/` at least.
    pub target: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("must start with http:// (https is not supported: TLS to cameras would need a CA per camera)")]
    NotHttp,
    #[error("has no host")]
    NoHost,
    #[error("must not carry credentials (they would be logged and published with the input): use credentials_file")]
    Credentials,
    #[error("has an invalid port")]
    BadPort,
    #[error("must not contain whitespace or control characters")]
    BadCharacters,
}

impl HttpUrl {
    pub fn parse(url: &str) -> Result<HttpUrl, UrlError> {
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(UrlError::BadCharacters);
        }
        let rest = url
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("http://"))
            .map(|_| &url[7..])
            .ok_or(UrlError::NotHttp)?;
        let (authority, target) = match rest.find(['/', '?']) {
            Some(at) if rest[at..].starts_with('?') => (&rest[..at], format!("/{}", &rest[at..])),
            Some(at) => (&rest[..at], rest[at..].to_owned()),
            None => (rest, "/".to_owned()),
        };
        // A fragment is the client's own business, never sent.
        let target = target.split('#').next().unwrap_or("/").to_owned();
        if authority.contains('@') {
            return Err(UrlError::Credentials);
        }
        let (host, port) = match authority.rsplit_once(':') {
            // An IPv6 literal without a port: its colons are not a port separator.
            Some((host, port)) if !port.contains(']') => {
                (host, port.parse::<u16>().ok().filter(|&port| port > 0).ok_or(UrlError::BadPort)?)
            }
            _ => (authority, 80),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(UrlError::NoHost);
        }
        Ok(HttpUrl { host: host.to_owned(), port, target })
    }

    /// The `Host` header's value.
    fn host_header(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        if self.port == 80 { host } else { format!("{host}:{}", self.port) }
    }
}

/// The `Authorization` header's value for HTTP basic authentication. Its `Debug` shows nothing of it.
pub struct BasicAuth(String);

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BasicAuth(..)")
    }
}

impl BasicAuth {
    /// Reads `user:password` from the first line of `path`. The error names the file, never its content.
    pub fn read(path: &Path) -> Result<BasicAuth, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read credentials_file {}: {e}", path.display()))?;
        let line = text.lines().next().unwrap_or_default();
        if !line.contains(':') {
            return Err(format!("credentials_file {} must hold user:password on its first line", path.display()));
        }
        Ok(BasicAuth(format!("Basic {}", base64(line.as_bytes()))))
    }
}

/// Why a request got no usable response.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot connect to {address}: {source}")]
    Connect { address: String, source: io::Error },
    #[error("connection lost: {0}")]
    Io(#[from] io::Error),
    #[error("the camera answered {status} {reason}{hint}", hint = status_hint(*.status))]
    Status { status: u16, reason: String },
    #[error("malformed HTTP response: {0}")]
    Malformed(String),
    #[error("malformed chunked body: {0}")]
    Chunked(#[from] ChunkError),
    #[error("no response within {0:?}")]
    TimedOut(Duration),
    #[error("shutting down")]
    Stopped,
}

fn status_hint(status: u16) -> &'static str {
    match status {
        401 | 403 => " (check credentials_file)",
        _ => "",
    }
}

/// A response with status 200, its body still to be read.
#[derive(Debug)]
pub struct Response {
    pub content_type: Option<String>,
    pub content_length: Option<u64>,
    pub body: Body,
}

/// Sends `GET url` and reads the response head, within `timeout`; statuses other than 200 are errors.
pub fn get(
    url: &HttpUrl,
    auth: Option<&BasicAuth>,
    accept: &str,
    timeout: Duration,
    shutdown: &Shutdown,
) -> Result<Response, HttpError> {
    let deadline = Instant::now() + timeout;
    let mut stream = connect(url, timeout)?;
    stream.set_read_timeout(Some(READ_SLICE))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    let mut request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: edge-device-agent\r\nAccept: {accept}\r\nConnection: close\r\n",
        url.target,
        url.host_header()
    );
    if let Some(BasicAuth(value)) = auth {
        request.push_str(&format!("Authorization: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;

    let mut head = Vec::new();
    let mut buffer = vec![0; READ_BUFFER];
    loop {
        match read_slice(&mut stream, &mut buffer)? {
            Some(0) => return Err(HttpError::Malformed("the connection closed before the response head".into())),
            Some(read) => head.extend_from_slice(&buffer[..read]),
            None if shutdown.is_triggered() => return Err(HttpError::Stopped),
            None if Instant::now() >= deadline => return Err(HttpError::TimedOut(timeout)),
            None => continue,
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&head) {
            Ok(httparse::Status::Complete(length)) => {
                let status = response.code.unwrap_or_default();
                if status != 200 {
                    let reason = response.reason.unwrap_or_default().to_owned();
                    return Err(HttpError::Status { status, reason });
                }
                let header = |name: &str| {
                    response
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
                };
                let chunked = header("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
                let content_length = header("content-length").and_then(|length| length.parse().ok());
                let framing = match (chunked, content_length) {
                    (true, _) => Framing::Chunked(Dechunker::default()),
                    (false, Some(length)) => Framing::Length(length),
                    (false, None) => Framing::UntilClose,
                };
                let pending = head[length..].to_vec();
                let body = Body { stream, pending, buffer, framing, ended: false };
                return Ok(Response { content_type: header("content-type"), content_length, body });
            }
            Ok(httparse::Status::Partial) if head.len() > MAX_HEAD_BYTES => {
                return Err(HttpError::Malformed(format!("a response head over {MAX_HEAD_BYTES} bytes")));
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(HttpError::Malformed(e.to_string())),
        }
    }
}

fn connect(url: &HttpUrl, timeout: Duration) -> Result<TcpStream, HttpError> {
    let address = url.host_header();
    let connect_error = |source| HttpError::Connect { address: address.clone(), source };
    let addresses: Vec<SocketAddr> = (url.host.as_str(), url.port).to_socket_addrs().map_err(connect_error)?.collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the host name resolves to no address");
    for socket in addresses {
        match TcpStream::connect_timeout(&socket, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(connect_error(last))
}

/// One read of at most [`READ_SLICE`]: `None` when nothing came in that time.
fn read_slice(stream: &mut TcpStream, buffer: &mut [u8]) -> io::Result<Option<usize>> {
    match stream.read(buffer) {
        Ok(read) => Ok(Some(read)),
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
        Err(e) => Err(e),
    }
}

#[derive(Debug)]
enum Framing {
    Length(u64),
    Chunked(Dechunker),
    UntilClose,
}

/// A response body, read in slices.
#[derive(Debug)]
pub struct Body {
    stream: TcpStream,
    /// Body bytes that came with the head.
    pending: Vec<u8>,
    buffer: Vec<u8>,
    framing: Framing,
    ended: bool,
}

/// What one read of the body gave.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyRead {
    /// Body bytes were appended (possibly none: framing only).
    Data,
    /// Nothing within the read slice.
    Idle,
    /// The body is complete (or the connection closed where the framing allows it).
    End,
}

impl Body {
    /// Appends the next body bytes to `out`, waiting at most [`READ_SLICE`].
    pub fn read(&mut self, out: &mut Vec<u8>) -> Result<BodyRead, HttpError> {
        if self.ended {
            return Ok(BodyRead::End);
        }
        let pending;
        let bytes = if self.pending.is_empty() {
            match read_slice(&mut self.stream, &mut self.buffer)? {
                None => return Ok(BodyRead::Idle),
                Some(0) => return self.closed(),
                Some(read) => &self.buffer[..read],
            }
        } else {
            pending = std::mem::take(&mut self.pending);
            &pending[..]
        };
        match &mut self.framing {
            Framing::Length(remaining) => {
                let taken = (*remaining).min(bytes.len() as u64);
                // At most the slice's length, so it fits a usize.
                out.extend_from_slice(&bytes[..taken as usize]);
                *remaining -= taken;
                self.ended = *remaining == 0;
            }
            Framing::Chunked(dechunker) => {
                dechunker.decode(bytes, out)?;
                self.ended = dechunker.is_done();
            }
            Framing::UntilClose => out.extend_from_slice(bytes),
        }
        Ok(if self.ended { BodyRead::End } else { BodyRead::Data })
    }

    fn closed(&mut self) -> Result<BodyRead, HttpError> {
        self.ended = true;
        match self.framing {
            Framing::UntilClose => Ok(BodyRead::End),
            _ => Err(HttpError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "the camera closed the connection"))),
        }
    }
}

/// Standard base64 with padding (RFC 4648), for the basic credentials.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut encoded = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let [a, b, c] = [group[0], group.get(1).copied().unwrap_or(0), group.get(2).copied().unwrap_or(0)];
        let bits = u32::from(a) << 16 | u32::from(b) << 8 | u32::from(c);
        for index in 0..4 {
            if index <= group.len() {
                encoded.push(char::from(ALPHABET[(bits >> (18 - 6 * index) & 63) as usize]));
            } else {
                encoded.push('=');
            }
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_port_and_target() {
        let url = |host: &str, port, target: &str| Ok(HttpUrl { host: host.into(), port, target: target.into() });
        assert_eq!(HttpUrl::parse("http://cam.local/mjpg/video.mjpg"), url("cam.local", 80, "/mjpg/video.mjpg"));
        assert_eq!(HttpUrl::parse("HTTP://10.0.0.5:8080"), url("10.0.0.5", 8080, "/"));
        assert_eq!(HttpUrl::parse("http://10.0.0.5:81?action=stream#x"), url("10.0.0.5", 81, "/?action=stream"));
        assert_eq!(HttpUrl::parse("http://[::1]:8554/s"), url("::1", 8554, "/s"));
        assert_eq!(HttpUrl::parse("http://[::1]/s"), url("::1", 80, "/s"));
        assert_eq!(HttpUrl::parse("http://[::1]:8554/s").unwrap().host_header(), "[::1]:8554");
    }

    #[test]
    fn urls_the_source_cannot_or_must_not_use_are_refused() {
        assert_eq!(HttpUrl::parse("https://cam/"), Err(UrlError::NotHttp));
        assert_eq!(HttpUrl::parse("rtsp://cam/"), Err(UrlError::NotHttp));
        assert_eq!(HttpUrl::parse("http://admin:pw@cam/"), Err(UrlError::Credentials));
        assert_eq!(HttpUrl::parse("http://cam:0/"), Err(UrlError::BadPort));
        assert_eq!(HttpUrl::parse("http://cam:http/"), Err(UrlError::BadPort));
        assert_eq!(HttpUrl::parse("http:///x"), Err(UrlError::NoHost));
        assert_eq!(HttpUrl::parse("http://cam/a b"), Err(UrlError::BadCharacters));
    }

    #[test]
    fn basic_credentials_are_base64_and_never_shown() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"Aladdin:open sesame"), "QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("camera");
        std::fs::write(&path, "admin:s3cret\n").unwrap();
        let auth = BasicAuth::read(&path).unwrap();
        assert_eq!(auth.0, format!("Basic {}", base64(b"admin:s3cret")));
        assert_eq!(format!("{auth:?}"), "BasicAuth(..)");
        std::fs::write(&path, "s3cret\n").unwrap();
        let error = BasicAuth::read(&path).unwrap_err();
        assert!(error.contains("user:password") && !error.contains("s3cret"), "{error}");
    }
}
