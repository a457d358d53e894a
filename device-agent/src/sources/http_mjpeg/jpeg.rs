//! What a part is, without decoding it: a walk over the JPEG's markers (segment lengths, then the entropy-coded
//! data up to the next marker) that finds the frame size and where the image ends. It tells a complete JPEG
//! from a truncated one or from something else, at memory speed: decoding is the worker's, and only for the
//! frame it takes.

use std::fmt;

/// A complete JPEG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JpegInfo {
    pub width: u32,
    pub height: u32,
    /// Just past the end-of-image marker.
    pub end: usize,
}

/// Why a part is not a complete JPEG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JpegProblem {
    /// It does not start with a JPEG's start-of-image marker.
    NotJpeg,
    /// It stops before the end-of-image marker.
    Truncated,
    /// Its structure is broken.
    Corrupt(&'static str),
    /// Bytes after the end-of-image marker that are not padding.
    TrailingData { bytes: usize },
}

impl fmt::Display for JpegProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JpegProblem::NotJpeg => f.write_str("not a JPEG (no start-of-image marker)"),
            JpegProblem::Truncated => f.write_str("a truncated JPEG (no end-of-image marker)"),
            JpegProblem::Corrupt(why) => write!(f, "a corrupt JPEG ({why})"),
            JpegProblem::TrailingData { bytes } => {
                write!(f, "{bytes} bytes after the JPEG's end-of-image marker (a garbled boundary?)")
            }
        }
    }
}

const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;

/// Checks that `bytes` are one complete JPEG, padding after it aside, and reads its frame size.
pub fn inspect(bytes: &[u8]) -> Result<JpegInfo, JpegProblem> {
    let info = walk(bytes)?;
    // CR, LF and NUL padding after the image is common and harmless.
    let trailing = bytes[info.end..].iter().filter(|b| !b.is_ascii_whitespace() && **b != 0).count();
    if trailing > 0 {
        return Err(JpegProblem::TrailingData { bytes: bytes.len() - info.end });
    }
    Ok(info)
}

fn walk(bytes: &[u8]) -> Result<JpegInfo, JpegProblem> {
    if !bytes.starts_with(&[0xFF, SOI]) {
        return Err(JpegProblem::NotJpeg);
    }
    let mut size = None;
    let mut at = 2;
    loop {
        if *bytes.get(at).ok_or(JpegProblem::Truncated)? != 0xFF {
            return Err(JpegProblem::Corrupt("a segment is not followed by a marker"));
        }
        // Any number of 0xFF fill bytes may precede a marker.
        while bytes.get(at) == Some(&0xFF) {
            at += 1;
        }
        let marker = *bytes.get(at).ok_or(JpegProblem::Truncated)?;
        at += 1;
        match marker {
            EOI => {
                let (width, height) = size.ok_or(JpegProblem::Corrupt("no frame header"))?;
                return Ok(JpegInfo { width, height, end: at });
            }
            SOI => return Err(JpegProblem::Corrupt("a second start-of-image marker")),
            // Markers without a segment: restart markers and TEM.
            0xD0..=0xD7 | 0x01 => {}
            _ => {
                let header = bytes.get(at..at + 2).ok_or(JpegProblem::Truncated)?;
                let length = usize::from(u16::from_be_bytes([header[0], header[1]]));
                if length < 2 {
                    return Err(JpegProblem::Corrupt("a segment length under 2"));
                }
                let segment = bytes.get(at + 2..at + length).ok_or(JpegProblem::Truncated)?;
                if is_frame_header(marker) {
                    size = Some(frame_size(segment)?);
                }
                at += length;
                if marker == SOS {
                    at = entropy_coded_end(bytes, at)?;
                }
            }
        }
    }
}

/// SOF0–SOF15, except DHT (C4), JPG (C8) and DAC (CC), which share the range.
fn is_frame_header(marker: u8) -> bool {
    (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC)
}

/// Precision (1 byte), height and width (2 bytes each, big-endian), then the components.
fn frame_size(segment: &[u8]) -> Result<(u32, u32), JpegProblem> {
    let [_, h1, h0, w1, w0, ..] = *segment else {
        return Err(JpegProblem::Corrupt("a short frame header"));
    };
    let (width, height) = (u16::from_be_bytes([w1, w0]), u16::from_be_bytes([h1, h0]));
    if width == 0 || height == 0 {
        return Err(JpegProblem::Corrupt("a frame of zero width or height"));
    }
    Ok((u32::from(width), u32::from(height)))
}

/// Where the marker after a scan's entropy-coded data starts: the first 0xFF that is neither a stuffed
/// 0xFF00 nor a restart marker.
fn entropy_coded_end(bytes: &[u8], from: usize) -> Result<usize, JpegProblem> {
    let mut at = from;
    loop {
        let offset = bytes[at..].iter().position(|&b| b == 0xFF).ok_or(JpegProblem::Truncated)?;
        at += offset;
        match *bytes.get(at + 1).ok_or(JpegProblem::Truncated)? {
            0x00 | 0xD0..=0xD7 => at += 2,
            // A fill byte: the marker follows it.
            0xFF => at += 1,
            _ => return Ok(at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/../models/frames/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn the_projects_frames_are_complete_with_their_sizes() {
        for (name, width, height) in [("cat.jpg", 451, 300), ("people.jpg", 1024, 600), ("rocket.jpg", 640, 427)] {
            let jpeg = frame(name);
            assert_eq!(inspect(&jpeg), Ok(JpegInfo { width, height, end: jpeg.len() }), "{name}");
        }
    }

    #[test]
    fn padding_after_the_image_is_fine_anything_else_is_not() {
        let mut jpeg = frame("cat.jpg");
        let end = jpeg.len();
        jpeg.extend_from_slice(b"\r\n\0\0");
        assert_eq!(inspect(&jpeg).map(|info| info.end), Ok(end));
        jpeg.extend_from_slice(b"--wrong\r\n");
        assert_eq!(inspect(&jpeg), Err(JpegProblem::TrailingData { bytes: 13 }));
    }

    #[test]
    fn truncated_corrupt_and_foreign_parts_are_told_apart() {
        let jpeg = frame("coffee.jpg");
        for cut in [1, 3, 20, jpeg.len() / 2, jpeg.len() - 1] {
            assert!(matches!(inspect(&jpeg[..cut]), Err(JpegProblem::Truncated | JpegProblem::NotJpeg)), "{cut}");
        }
        assert_eq!(inspect(&jpeg[..jpeg.len() / 2]), Err(JpegProblem::Truncated));
        assert_eq!(inspect(&frame("astronaut.png")), Err(JpegProblem::NotJpeg));
        assert_eq!(inspect(b""), Err(JpegProblem::NotJpeg));
        assert_eq!(inspect(&[0xFF, SOI, 0xFF, EOI]), Err(JpegProblem::Corrupt("no frame header")));
        assert_eq!(
            inspect(&[0xFF, SOI, 0x12, 0x34]),
            Err(JpegProblem::Corrupt("a segment is not followed by a marker"))
        );
        assert_eq!(
            inspect(&[0xFF, SOI, 0xFF, 0xE0, 0x00, 0x01]),
            Err(JpegProblem::Corrupt("a segment length under 2"))
        );
    }
}
