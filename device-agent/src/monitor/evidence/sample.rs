//! One input as the file it is kept in: the bytes as they arrived (JPEG, PNG, raw pixels), a sensor window as
//! CSV, and the name that says which.

use protocol::wire::FrameGeometry;
use runtime::{Frame, Input, SensorWindow};
use std::fmt::Write;

const JPEG_MAGIC: &[u8] = &[0xFF, 0xD8, 0xFF];
const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

/// An input kept in memory, ready to be written.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Sample {
    pub seq: u64,
    pub captured_ms: u64,
    /// The file's name: `<seq>.<extension>`.
    pub id: String,
    /// `jpeg`, `png`, `image`, `frame` or `window`.
    pub kind: &'static str,
    pub frame: Option<FrameGeometry>,
    pub bytes: Vec<u8>,
}

impl Sample {
    /// `input` as a file; `channel_names` head a sensor window's CSV (`ch0`, `ch1`... where there are none).
    pub fn of(seq: u64, captured_ms: u64, input: &Input, channel_names: &[String]) -> Sample {
        let (extension, kind, frame, bytes) = match input {
            Input::Image(bytes) if bytes.starts_with(JPEG_MAGIC) => ("jpg".to_owned(), "jpeg", None, bytes.clone()),
            Input::Image(bytes) if bytes.starts_with(PNG_MAGIC) => ("png".to_owned(), "png", None, bytes.clone()),
            Input::Image(bytes) => ("bin".to_owned(), "image", None, bytes.clone()),
            Input::Frame(frame) => {
                (format!("{}.raw", frame.format()), "frame", Some(geometry(frame)), frame.data().to_vec())
            }
            Input::Sensor(window) => ("csv".to_owned(), "window", None, csv(window, channel_names).into_bytes()),
        };
        Sample { seq, captured_ms, id: format!("{seq}.{extension}"), kind, frame, bytes }
    }
}

fn geometry(frame: &Frame) -> FrameGeometry {
    let planes = frame.format().planes();
    FrameGeometry {
        format: frame.format().name().to_owned(),
        width: frame.width(),
        height: frame.height(),
        // A stride is a row of at most 16 M pixels (the input limit) times 4 bytes.
        strides: frame.strides()[..planes].iter().map(|&stride| u32::try_from(stride).unwrap_or(u32::MAX)).collect(),
    }
}

/// A header of channel names, then one row per sample. Values are written shortest-exact: reading them back as
/// `f32` gives the values the model saw.
fn csv(window: &SensorWindow, channel_names: &[String]) -> String {
    let channels = window.channels.max(1);
    let header: Vec<String> = (0..channels)
        .map(|channel| channel_names.get(channel).cloned().unwrap_or_else(|| format!("ch{channel}")))
        .collect();
    let mut text = header.join(",");
    text.push('\n');
    for row in window.values.chunks(channels) {
        for (column, value) in row.iter().enumerate() {
            let separator = if column == 0 { "" } else { "," };
            // Writing to a String cannot fail.
            let _ = write!(text, "{separator}{value}");
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::PixelFormat;

    #[test]
    fn images_keep_their_bytes_and_say_what_they_are() {
        let jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3].to_vec();
        let sample = Sample::of(7, 100, &Input::Image(jpeg.clone()), &[]);
        assert_eq!((sample.id.as_str(), sample.kind, &sample.bytes), ("7.jpg", "jpeg", &jpeg));
        let png = [PNG_MAGIC, b"rest"].concat();
        assert_eq!(Sample::of(8, 0, &Input::Image(png), &[]).id, "8.png");
        let other = Sample::of(9, 0, &Input::Image(b"GIF89a".to_vec()), &[]);
        assert_eq!((other.id.as_str(), other.kind), ("9.bin", "image"));
    }

    #[test]
    fn raw_frames_keep_their_pixels_and_geometry() {
        let data: Vec<u8> = (0..=255).cycle().take(8 * 4 + 8 * 2).map(|b: u32| b as u8).collect();
        let frame = Frame::new(PixelFormat::Nv12, 6, 4, [8, 8, 0], data.clone()).expect("a frame");
        let sample = Sample::of(3, 0, &Input::Frame(frame), &[]);
        assert_eq!((sample.id.as_str(), sample.kind, &sample.bytes), ("3.nv12.raw", "frame", &data));
        let geometry = sample.frame.expect("geometry");
        assert_eq!((geometry.format.as_str(), geometry.width, geometry.height), ("nv12", 6, 4));
        assert_eq!(geometry.strides, [8, 8]);
    }

    #[test]
    fn sensor_windows_are_csv_with_a_header_and_exact_values() {
        let window = SensorWindow { channels: 2, values: vec![0.1, -2.5, 1e-7, 3.0] };
        let named = Sample::of(4, 0, &Input::Sensor(window.clone()), &["ax".to_owned(), "ay".to_owned()]);
        assert_eq!(named.id, "4.csv");
        assert_eq!(String::from_utf8(named.bytes).expect("UTF-8"), "ax,ay\n0.1,-2.5\n0.0000001,3\n");
        let text = String::from_utf8(Sample::of(4, 0, &Input::Sensor(window.clone()), &[]).bytes).expect("UTF-8");
        assert!(text.starts_with("ch0,ch1\n"));
        let read: Vec<f32> =
            text.lines().skip(1).flat_map(|line| line.split(',')).map(|v| v.parse().unwrap()).collect();
        assert_eq!(read, window.values, "the values round-trip exactly");
    }
}
