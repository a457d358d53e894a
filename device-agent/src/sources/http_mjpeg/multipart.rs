//! `multipart/x-mixed-replace` framing as a pure state machine: bytes in, events out. Parts carry a
//! `Content-Length` (then exactly that many bytes are taken) or not (then the body runs to the next boundary).
//! Whatever does not fit the framing (bytes where a boundary should be, oversized headers, a part over the
//! limit) is an event, and the parser finds its feet again at the next boundary: a camera's glitch costs a part,
//! never the connection. Memory is bounded by the part limit plus one read.

use std::fmt;

/// Part headers longer than this are not headers.
const MAX_HEADER_BYTES: usize = 16 * 1024;
/// A boundary line is the delimiter plus `--` and a little transport padding; a longer line is not one.
const MAX_PADDING: usize = 64;

/// What the parser made of the bytes so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    Part(Part),
    Malformed(Malformed),
    /// The closing boundary: the camera ended the stream.
    End,
}

/// One part's body and its declared type.
#[derive(Debug, PartialEq, Eq)]
pub struct Part {
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// Bytes that do not frame a part; the parser resumes at the next boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Bytes where a boundary was expected: a wrong or garbled boundary, a body longer than its Content-Length.
    Junk { bytes: u64 },
    /// Part headers over [`MAX_HEADER_BYTES`] without their blank line.
    HeadersTooLong,
    /// A part over the limit: skipped, never held whole. `bytes` is its Content-Length, or what was read
    /// before giving up on it.
    TooLarge { bytes: u64 },
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::Junk { bytes } => {
                write!(f, "{bytes} bytes where a boundary was expected (a wrong boundary or a wrong Content-Length)")
            }
            Malformed::HeadersTooLong => write!(f, "part headers longer than {MAX_HEADER_BYTES} bytes"),
            Malformed::TooLarge { bytes } => {
                write!(f, "a part of at least {bytes} bytes, over max_part_bytes; skipped")
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading lines until a boundary line; `junk` bytes skipped so far, reported when `report`. `mid_line`:
    /// the buffer does not start at a line start (a long line was dropped in pieces).
    Seeking { junk: u64, report: bool, mid_line: bool },
    /// Reading a part's header lines; `read` bytes so far.
    Headers { read: usize },
    /// A body of a known length.
    Body { length: usize },
    /// A body without Content-Length: up to the next boundary.
    Unframed,
    /// Dropping the rest of an oversized part with a Content-Length.
    Skipping { remaining: u64 },
    /// After the closing boundary: the rest is epilogue.
    Ended,
}

/// The parser of one response body.
#[derive(Debug)]
pub struct Multipart {
    /// `--<boundary>`, and the boundary itself when it already starts with `--` (many cameras write it so).
    delimiters: Vec<Vec<u8>>,
    max_part_bytes: usize,
    state: State,
    buffer: Vec<u8>,
    content_type: Option<String>,
    content_length: Option<u64>,
    /// How far an unframed body was searched for its boundary.
    scanned: usize,
}

impl Multipart {
    /// A parser for parts delimited by `boundary` (the Content-Type's parameter), each at most `max_part_bytes`.
    pub fn new(boundary: &str, max_part_bytes: usize) -> Multipart {
        let mut delimiters = vec![format!("--{boundary}").into_bytes()];
        if boundary.starts_with("--") {
            delimiters.push(boundary.as_bytes().to_vec());
        }
        Multipart {
            delimiters,
            max_part_bytes,
            state: State::Seeking { junk: 0, report: false, mid_line: false },
            buffer: Vec::new(),
            content_type: None,
            content_length: None,
            scanned: 0,
        }
    }

    /// Adds bytes from the body; take the events with [`Multipart::next_event`] before pushing more.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.state != State::Ended {
            self.buffer.extend_from_slice(bytes);
        }
    }

    /// The next event the pushed bytes complete, if any.
    pub fn next_event(&mut self) -> Option<Event> {
        loop {
            let (state, event) = match self.state {
                State::Seeking { junk, report, mid_line } => self.seek(junk, report, mid_line)?,
                State::Headers { read } => self.headers(read)?,
                State::Body { length } => self.body(length)?,
                State::Unframed => self.unframed()?,
                State::Skipping { remaining } => (self.skip(remaining)?, None),
                State::Ended => return None,
            };
            self.state = state;
            if event.is_some() {
                return event;
            }
        }
    }

    fn seek(&mut self, junk: u64, report: bool, mid_line: bool) -> Option<(State, Option<Event>)> {
        let Some(newline) = self.buffer.iter().position(|&b| b == b'\n') else {
            if self.buffer.len() <= self.longest_boundary_line() {
                return None;
            }
            // Too long to be a boundary line: drop it, to its end.
            let dropped = self.buffer.len() as u64;
            self.buffer.clear();
            return Some((State::Seeking { junk: junk + dropped, report, mid_line: true }, None));
        };
        let line: Vec<u8> = self.buffer.drain(..=newline).collect();
        let boundary = if mid_line { None } else { self.boundary_line(&line) };
        let junk_event = (report && junk > 0).then_some(Event::Malformed(Malformed::Junk { bytes: junk }));
        Some(match boundary {
            Some(Boundary::Next) => {
                (self.content_type, self.content_length) = (None, None);
                (State::Headers { read: 0 }, junk_event)
            }
            Some(Boundary::Close) => {
                self.buffer.clear();
                (State::Ended, junk_event.or(Some(Event::End)))
            }
            None => {
                // Blank lines between parts are the framing's own padding, not junk.
                let junk = if !mid_line && line.trim_ascii().is_empty() { junk } else { junk + line.len() as u64 };
                (State::Seeking { junk, report, mid_line: false }, None)
            }
        })
    }

    fn headers(&mut self, read: usize) -> Option<(State, Option<Event>)> {
        let Some(newline) = self.buffer.iter().position(|&b| b == b'\n') else {
            if read + self.buffer.len() <= MAX_HEADER_BYTES {
                return None;
            }
            return Some(self.headers_too_long());
        };
        let read = read + newline + 1;
        if read > MAX_HEADER_BYTES {
            return Some(self.headers_too_long());
        }
        let line: Vec<u8> = self.buffer.drain(..=newline).collect();
        let line = String::from_utf8_lossy(line.trim_ascii());
        if line.is_empty() {
            return Some(self.body_start());
        }
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            if name.trim().eq_ignore_ascii_case("content-type") {
                self.content_type = Some(value.to_owned());
            } else if name.trim().eq_ignore_ascii_case("content-length") {
                // A length that does not parse is no length: the body runs to the boundary.
                self.content_length = value.parse().ok();
            }
        }
        Some((State::Headers { read }, None))
    }

    /// After the headers' blank line: the body, framed by its length if it has one; a length over the limit
    /// is reported at once and its bytes skipped.
    fn body_start(&mut self) -> (State, Option<Event>) {
        match self.content_length {
            Some(length) if length > self.max_part_bytes as u64 => {
                (State::Skipping { remaining: length }, Some(Event::Malformed(Malformed::TooLarge { bytes: length })))
            }
            // Within max_part_bytes, so it fits a usize.
            Some(length) => (State::Body { length: length as usize }, None),
            None => {
                self.scanned = 0;
                (State::Unframed, None)
            }
        }
    }

    fn body(&mut self, length: usize) -> Option<(State, Option<Event>)> {
        if self.buffer.len() < length {
            return None;
        }
        let rest = self.buffer.split_off(length);
        let body = std::mem::replace(&mut self.buffer, rest);
        Some((self.seeking_after_part(), Some(self.part(body))))
    }

    fn unframed(&mut self) -> Option<(State, Option<Event>)> {
        match self.find_boundary(self.scanned) {
            Found::At(end) => {
                // The line break before the boundary belongs to the boundary.
                let body_end = if end > 0 && self.buffer[end - 1] == b'\r' { end - 1 } else { end };
                let rest = self.buffer.split_off(end + 1);
                self.buffer.truncate(body_end);
                let body = std::mem::replace(&mut self.buffer, rest);
                Some((self.seeking_after_part(), Some(self.part(body))))
            }
            Found::NotYet { scanned } => {
                self.scanned = scanned;
                if self.buffer.len() <= self.max_part_bytes + self.longest_boundary_line() {
                    return None;
                }
                // Over the limit: drop it, keeping the tail, where the boundary's line break may be.
                let dropped = self.buffer.len() - (self.longest_boundary_line() + 1);
                self.buffer.drain(..dropped);
                let state = State::Seeking { junk: 0, report: false, mid_line: true };
                Some((state, Some(Event::Malformed(Malformed::TooLarge { bytes: dropped as u64 }))))
            }
        }
    }

    fn skip(&mut self, remaining: u64) -> Option<State> {
        if self.buffer.is_empty() {
            return None;
        }
        let dropped = remaining.min(self.buffer.len() as u64);
        // At most the buffer's length, so it fits a usize.
        self.buffer.drain(..dropped as usize);
        Some(if dropped == remaining {
            self.seeking_after_part()
        } else {
            State::Skipping { remaining: remaining - dropped }
        })
    }

    /// Headers without end: reported, and the rest of the part is dropped up to the next boundary (the
    /// buffer is not cleared: it may hold that boundary already).
    fn headers_too_long(&self) -> (State, Option<Event>) {
        (State::Seeking { junk: 0, report: false, mid_line: true }, Some(Event::Malformed(Malformed::HeadersTooLong)))
    }

    fn seeking_after_part(&self) -> State {
        State::Seeking { junk: 0, report: true, mid_line: false }
    }

    fn part(&mut self, body: Vec<u8>) -> Event {
        Event::Part(Part { content_type: self.content_type.take(), body })
    }

    /// Where the next line break followed by a boundary line starts, searching from `from`.
    fn find_boundary(&self, from: usize) -> Found {
        let longest = self.longest_boundary_line();
        let mut at = from;
        while let Some(offset) = self.buffer[at..].iter().position(|&b| b == b'\n') {
            let newline = at + offset;
            let line = &self.buffer[newline + 1..];
            let line_end = line.iter().position(|&b| b == b'\n');
            match line_end {
                Some(end) if self.boundary_line(&line[..end]).is_some() => return Found::At(newline),
                // Too short to tell yet, and short enough to still be one.
                None if line.len() <= longest && self.could_become_boundary(line) => {
                    return Found::NotYet { scanned: newline };
                }
                _ => at = newline + 1,
            }
        }
        Found::NotYet { scanned: self.buffer.len() }
    }

    fn could_become_boundary(&self, start: &[u8]) -> bool {
        self.delimiters.iter().any(|d| d.starts_with(start) || start.starts_with(d))
    }

    /// `line` (line break included or not) as a boundary line, if it is one.
    fn boundary_line(&self, line: &[u8]) -> Option<Boundary> {
        let line = line.trim_ascii_end();
        self.delimiters.iter().find_map(|delimiter| {
            let rest = line.strip_prefix(delimiter.as_slice())?;
            match rest {
                b"" => Some(Boundary::Next),
                b"--" => Some(Boundary::Close),
                _ => None,
            }
        })
    }

    fn longest_boundary_line(&self) -> usize {
        self.delimiters.iter().map(Vec::len).max().unwrap_or(0) + 2 + MAX_PADDING
    }
}

enum Boundary {
    Next,
    Close,
}

enum Found {
    /// The line break before a boundary line, at this offset.
    At(usize),
    /// Not before this offset.
    NotYet { scanned: usize },
}

#[cfg(test)]
mod tests {
    use super::*;

    const JPEG_A: &[u8] = b"\xFF\xD8first\xFF\xD9";
    const JPEG_B: &[u8] = b"\xFF\xD8second\r\n--frame in the data\xFF\xD9";

    /// Feeds `stream` in pieces of `piece` bytes, taking the events after each.
    fn events(parser: &mut Multipart, stream: &[u8], piece: usize) -> Vec<Event> {
        let mut events = Vec::new();
        for bytes in stream.chunks(piece) {
            parser.push(bytes);
            events.extend(std::iter::from_fn(|| parser.next_event()));
        }
        events
    }

    fn parse(stream: &[u8], piece: usize) -> Vec<Event> {
        events(&mut Multipart::new("frame", 1024), stream, piece)
    }

    fn part(body: &[u8]) -> Event {
        Event::Part(Part { content_type: Some("image/jpeg".into()), body: body.to_vec() })
    }

    fn with_length(body: &[u8]) -> Vec<u8> {
        let mut part =
            format!("--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        part.extend_from_slice(body);
        part.extend_from_slice(b"\r\n");
        part
    }

    fn without_length(body: &[u8]) -> Vec<u8> {
        let mut part = b"--frame\r\nContent-Type: image/jpeg\r\n\r\n".to_vec();
        part.extend_from_slice(body);
        part.extend_from_slice(b"\r\n");
        part
    }

    const PIECES: [usize; 5] = [1, 2, 5, 64, 100_000];

    #[test]
    fn parts_with_and_without_length_whatever_the_reads() {
        let stream = [b"\r\n".to_vec(), with_length(JPEG_A), without_length(JPEG_B), with_length(JPEG_A)].concat();
        for piece in PIECES {
            assert_eq!(parse(&stream, piece), [part(JPEG_A), part(JPEG_B), part(JPEG_A)], "pieces of {piece}");
        }
    }

    #[test]
    fn the_closing_boundary_ends_the_stream() {
        let stream = [without_length(JPEG_A), b"--frame--\r\nepilogue".to_vec()].concat();
        assert_eq!(parse(&stream, 3), [part(JPEG_A), Event::End]);
    }

    #[test]
    fn a_boundary_given_with_its_dashes_and_lf_only_lines_are_understood() {
        let stream = b"--myboundary\nContent-Length: 5\n\nhello\n--myboundary\n\nworld\n--myboundary\n";
        let bodies: Vec<Event> = events(&mut Multipart::new("--myboundary", 1024), stream, 4);
        let plain = |body: &[u8]| Event::Part(Part { content_type: None, body: body.to_vec() });
        assert_eq!(bodies, [plain(b"hello"), plain(b"world")]);
    }

    #[test]
    fn a_wrong_boundary_is_junk_and_the_next_part_is_read() {
        let garbled = [b"--garbled", &with_length(JPEG_B)[b"--frame".len()..]].concat();
        let stream = [with_length(JPEG_A), garbled, with_length(JPEG_A)].concat();
        for piece in PIECES {
            let got = parse(&stream, piece);
            assert_eq!(got.len(), 3, "{got:?}");
            assert_eq!((&got[0], &got[2]), (&part(JPEG_A), &part(JPEG_A)), "pieces of {piece}");
            assert!(matches!(got[1], Event::Malformed(Malformed::Junk { .. })), "{got:?}");
        }
    }

    #[test]
    fn a_body_longer_than_its_length_leaves_junk_before_the_next_boundary() {
        let mut lying = with_length(JPEG_A);
        lying.splice(lying.len() - 2..lying.len() - 2, b"EXTRA".iter().copied());
        let stream = [lying, with_length(JPEG_B)].concat();
        assert_eq!(parse(&stream, 7), [part(JPEG_A), Event::Malformed(Malformed::Junk { bytes: 7 }), part(JPEG_B)]);
    }

    #[test]
    fn oversized_parts_are_skipped_with_bounded_memory() {
        let big = vec![0xAB; 5000];
        let stream = [
            with_length(&big),
            with_length(JPEG_A),
            without_length(&big),
            without_length(JPEG_B),
            b"--frame--\r\n".to_vec(),
        ]
        .concat();
        let mut parser = Multipart::new("frame", 1024);
        let mut got = Vec::new();
        for bytes in stream.chunks(100) {
            parser.push(bytes);
            got.extend(std::iter::from_fn(|| parser.next_event()));
            assert!(parser.buffer.len() <= 1024 + 200, "the buffer holds {} bytes", parser.buffer.len());
        }
        assert_eq!(got.len(), 5, "{got:?}");
        assert_eq!(got[0], Event::Malformed(Malformed::TooLarge { bytes: 5000 }));
        assert_eq!(got[1], part(JPEG_A));
        assert!(matches!(got[2], Event::Malformed(Malformed::TooLarge { bytes }) if bytes > 1024));
        assert_eq!(got[3..], [part(JPEG_B), Event::End]);
    }

    #[test]
    fn endless_headers_are_given_up_on() {
        let mut stream = b"--frame\r\n".to_vec();
        stream.extend(std::iter::repeat_n(b"X-Padding: 0123456789\r\n".to_vec(), 1000).flatten());
        stream.extend_from_slice(b"\r\nbody\r\n");
        stream.extend(with_length(JPEG_A));
        assert_eq!(parse(&stream, 512), [Event::Malformed(Malformed::HeadersTooLong), part(JPEG_A)]);
    }

    #[test]
    fn an_unparseable_length_falls_back_to_the_boundary() {
        let stream = [b"--frame\r\nContent-Length: lots\r\n\r\n", JPEG_A, b"\r\n", &with_length(JPEG_B)].concat();
        let unframed = Event::Part(Part { content_type: None, body: JPEG_A.to_vec() });
        assert_eq!(parse(&stream, 3), [unframed, part(JPEG_B)]);
    }
}
