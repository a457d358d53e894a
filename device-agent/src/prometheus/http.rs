//! Just enough HTTP/1.1 for a scraper: one request per connection, `GET /metrics` only. The request head is
//! bounded in size and in time, so that a client can neither grow the thread's memory nor hold it.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// The largest request head read; a scraper's is a few hundred bytes.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Headers parsed at most (httparse needs the room up front).
const MAX_HEADERS: usize = 32;
/// How long a client has to send its whole request head, however it trickles.
const HEAD_DEADLINE: Duration = Duration::from_secs(3);
/// How long one write of the response may block on a client that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(3);
/// After answering a request whose head was not read to its end: what is read and thrown away at most, and for
/// how long, before closing (closing with unread data resets the connection, and the client may lose the answer).
const DRAIN_BYTES: usize = 64 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// What a request asks for, once its head is read.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// `GET /metrics` (any query string).
    Metrics,
    /// Another path: 404.
    NotFound,
    /// `/metrics` with another method: 405.
    MethodNotAllowed,
    /// Not HTTP/1.x: 400.
    Malformed,
    /// A head over [`MAX_HEAD_BYTES`]: 431.
    TooLarge,
}

/// Answers one connection: reads its request head, then writes what `metrics` renders or an error status.
/// A client too slow to send its head, or gone, is dropped without an answer.
pub fn serve(mut stream: TcpStream, metrics: impl FnOnce() -> Option<String>) -> io::Result<()> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let deadline = Instant::now() + HEAD_DEADLINE;
    let request = read_request(&mut stream, |stream, timeout| stream.set_read_timeout(Some(timeout)), deadline)?;
    let response = match &request {
        Request::Metrics => match metrics() {
            Some(body) => Response { status: "200 OK", content_type: CONTENT_TYPE, body, allow: false },
            None => Response::text("500 Internal Server Error", "the metrics could not be rendered\n"),
        },
        Request::NotFound => Response::text("404 Not Found", "only /metrics is served here\n"),
        Request::MethodNotAllowed => Response { allow: true, ..Response::text("405 Method Not Allowed", "GET only\n") },
        Request::Malformed => Response::text("400 Bad Request", "not an HTTP/1.1 request\n"),
        Request::TooLarge => Response::text("431 Request Header Fields Too Large", "request head too large\n"),
    };
    response.write(&mut stream)?;
    stream.flush()?;
    if matches!(request, Request::TooLarge | Request::Malformed) {
        stream.shutdown(Shutdown::Write)?;
        drain(&mut stream)?;
    }
    Ok(())
}

/// Reads and drops what the client still sends, within [`DRAIN_BYTES`] and [`DRAIN_TIME`].
fn drain(stream: &mut TcpStream) -> io::Result<()> {
    let deadline = Instant::now() + DRAIN_TIME;
    let mut chunk = [0u8; 4096];
    let mut drained = 0;
    while drained < DRAIN_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(read) => drained += read,
        }
    }
    Ok(())
}

/// The Prometheus text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

struct Response {
    status: &'static str,
    content_type: &'static str,
    body: String,
    /// Whether to name the allowed method (405).
    allow: bool,
}

impl Response {
    fn text(status: &'static str, body: &str) -> Response {
        Response { status, content_type: "text/plain; charset=utf-8", body: body.to_owned(), allow: false }
    }

    fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let allow = if self.allow { "Allow: GET\r\n" } else { "" };
        let head = format!(
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        out.write_all(head.as_bytes())?;
        out.write_all(self.body.as_bytes())
    }
}

/// Reads until the request head is complete, `deadline` passes (`TimedOut`) or the client leaves
/// (`UnexpectedEof`). `set_timeout` bounds each read by the time left.
fn read_request<S: Read>(
    stream: &mut S,
    set_timeout: impl Fn(&S, Duration) -> io::Result<()>,
    deadline: Instant,
) -> io::Result<Request> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        set_timeout(stream, left)?;
        let read = match stream.read(&mut chunk) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        let room = MAX_HEAD_BYTES - head.len();
        head.extend_from_slice(&chunk[..read.min(room)]);
        if let Some(request) = parse(&head) {
            return Ok(request);
        }
        if head.len() == MAX_HEAD_BYTES {
            return Ok(Request::TooLarge);
        }
    }
}

/// The request a head asks for; `None` while it is incomplete.
fn parse(head: &[u8]) -> Option<Request> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Partial) => None,
        Err(httparse::Error::TooManyHeaders) => Some(Request::TooLarge),
        Err(_) => Some(Request::Malformed),
        Ok(httparse::Status::Complete(_)) => {
            let path = request.path.unwrap_or_default();
            let path = path.split_once('?').map_or(path, |(path, _query)| path);
            Some(match (request.method, path) {
                (_, path) if path != "/metrics" => Request::NotFound,
                (Some("GET"), _) => Request::Metrics,
                _ => Request::MethodNotAllowed,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn read(head: &[u8]) -> io::Result<Request> {
        read_request(&mut Cursor::new(head.to_vec()), |_, _| Ok(()), Instant::now() + Duration::from_secs(1))
    }

    #[test]
    fn requests_are_routed_by_method_and_path() {
        let scrape = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\nAccept-Encoding: gzip\r\n\r\n";
        assert_eq!(read(scrape).expect("complete"), Request::Metrics);
        assert_eq!(read(b"GET /metrics?name[]=x HTTP/1.0\r\n\r\n").expect("complete"), Request::Metrics);
        assert_eq!(read(b"GET / HTTP/1.1\r\n\r\n").expect("complete"), Request::NotFound);
        assert_eq!(read(b"GET /metricsx HTTP/1.1\r\n\r\n").expect("complete"), Request::NotFound);
        assert_eq!(
            read(b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").expect("complete"),
            Request::MethodNotAllowed
        );
        assert_eq!(read(b"HEAD /metrics HTTP/1.1\r\n\r\n").expect("complete"), Request::MethodNotAllowed);
        assert_eq!(read(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03").expect("complete"), Request::Malformed);
    }

    #[test]
    fn an_incomplete_head_is_an_error_not_a_request() {
        let error = read(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").expect_err("the client left");
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn an_endless_head_stops_at_the_cap() {
        let mut endless = b"GET /metrics HTTP/1.1\r\n".to_vec();
        while endless.len() < 4 * MAX_HEAD_BYTES {
            endless
                .extend_from_slice(b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(read(&endless).expect("answered"), Request::TooLarge);
        let mut long_line = b"GET /".to_vec();
        long_line.resize(4 * MAX_HEAD_BYTES, b'a');
        assert_eq!(read(&long_line).expect("answered"), Request::TooLarge);
    }

    #[test]
    fn a_passed_deadline_ends_the_read() {
        let mut stream = Cursor::new(b"GET /metrics HTTP/1.1\r\n".to_vec());
        let error = read_request(&mut stream, |_, _| Ok(()), Instant::now()).expect_err("no time left");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn responses_are_framed_and_closed() {
        let mut out = Vec::new();
        Response { allow: true, ..Response::text("405 Method Not Allowed", "GET only\n") }
            .write(&mut out)
            .expect("written");
        let text = String::from_utf8(out).expect("ASCII");
        assert_eq!(
            text,
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 9\r\n\
             Allow: GET\r\nConnection: close\r\n\r\nGET only\n"
        );
    }
}
