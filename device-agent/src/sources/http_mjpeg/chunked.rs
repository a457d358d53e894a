//! HTTP/1.1 chunked transfer coding, undone as a pure state machine (bytes in, body bytes out): the ESP32's
//! web server sends its MJPEG stream chunked.

/// A chunk-size line (hex digits and extensions) or a trailer line longer than this is not one.
const MAX_LINE: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("malformed chunk size line")]
    BadSize,
    #[error("a chunk is not followed by CRLF")]
    MissingCrlf,
    #[error("a chunk size or trailer line over {MAX_LINE} bytes")]
    LineTooLong,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a chunk-size line; `read` bytes of it so far.
    Size {
        read: usize,
    },
    Data {
        remaining: u64,
    },
    /// The CRLF after a chunk's data.
    DataEnd {
        seen_cr: bool,
    },
    /// After the last (empty) chunk: trailer lines up to a blank one; `read` bytes of the current line.
    Trailer {
        read: usize,
    },
    Done,
}

#[derive(Debug)]
pub struct Dechunker {
    state: State,
    /// The current size line's bytes.
    line: Vec<u8>,
}

impl Default for Dechunker {
    fn default() -> Self {
        Dechunker { state: State::Size { read: 0 }, line: Vec::new() }
    }
}

impl Dechunker {
    /// Appends the body bytes `input` carries to `out`.
    pub fn decode(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), ChunkError> {
        while let Some((&byte, rest)) = input.split_first() {
            match self.state {
                State::Size { read } => {
                    input = rest;
                    if byte == b'\n' {
                        self.state = self.chunk_start()?;
                    } else if read >= MAX_LINE {
                        return Err(ChunkError::LineTooLong);
                    } else {
                        self.line.push(byte);
                        self.state = State::Size { read: read + 1 };
                    }
                }
                State::Data { remaining } => {
                    let taken = remaining.min(input.len() as u64);
                    // At most the input's length, so it fits a usize.
                    let (data, rest) = input.split_at(taken as usize);
                    out.extend_from_slice(data);
                    input = rest;
                    self.state = if taken == remaining {
                        State::DataEnd { seen_cr: false }
                    } else {
                        State::Data { remaining: remaining - taken }
                    };
                }
                State::DataEnd { seen_cr } => {
                    input = rest;
                    self.state = match (byte, seen_cr) {
                        (b'\r', false) => State::DataEnd { seen_cr: true },
                        (b'\n', _) => State::Size { read: 0 },
                        _ => return Err(ChunkError::MissingCrlf),
                    };
                }
                State::Trailer { read } => {
                    input = rest;
                    self.state = match byte {
                        b'\n' if read == 0 => State::Done,
                        b'\n' => State::Trailer { read: 0 },
                        // A blank line may be CRLF: the CR does not make a line.
                        b'\r' if read == 0 => State::Trailer { read: 0 },
                        _ if read >= MAX_LINE => return Err(ChunkError::LineTooLong),
                        _ => State::Trailer { read: read + 1 },
                    };
                }
                State::Done => return Ok(()),
            }
        }
        Ok(())
    }

    /// The last chunk and its trailer went by: the body is complete.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The state after a complete size line: its chunk's data, or the trailer after the last chunk.
    fn chunk_start(&mut self) -> Result<State, ChunkError> {
        let line = std::mem::take(&mut self.line);
        let digits = line.split(|&b| b == b';').next().unwrap_or_default().trim_ascii();
        let size = std::str::from_utf8(digits)
            .ok()
            .filter(|digits| !digits.is_empty())
            .and_then(|digits| u64::from_str_radix(digits, 16).ok())
            .ok_or(ChunkError::BadSize)?;
        Ok(if size == 0 { State::Trailer { read: 0 } } else { State::Data { remaining: size } })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(encoded: &[u8], piece: usize) -> Result<(Vec<u8>, bool), ChunkError> {
        let mut dechunker = Dechunker::default();
        let mut out = Vec::new();
        for bytes in encoded.chunks(piece) {
            dechunker.decode(bytes, &mut out)?;
        }
        Ok((out, dechunker.is_done()))
    }

    #[test]
    fn chunks_are_joined_whatever_the_reads() {
        let encoded = b"5\r\nhello\r\n1A;name=value\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: 1\r\n\r\n";
        for piece in [1, 2, 3, 7, encoded.len()] {
            let (body, done) = decode_in_pieces(encoded, piece).unwrap();
            assert_eq!(body, b"helloabcdefghijklmnopqrstuvwxyz", "pieces of {piece}");
            assert!(done);
        }
        let (body, done) = decode_in_pieces(b"3\nabc\n", 4).unwrap();
        assert_eq!((body.as_slice(), done), (&b"abc"[..], false), "bare LF is tolerated; the stream goes on");
    }

    #[test]
    fn broken_framing_is_an_error() {
        assert_eq!(decode_in_pieces(b"zz\r\n", 4), Err(ChunkError::BadSize));
        assert_eq!(decode_in_pieces(b"\r\n", 4), Err(ChunkError::BadSize));
        assert_eq!(decode_in_pieces(b"2\r\nabc\r\n", 4), Err(ChunkError::MissingCrlf));
        assert_eq!(decode_in_pieces(&[b'1'; 2000], 100), Err(ChunkError::LineTooLong));
    }
}
