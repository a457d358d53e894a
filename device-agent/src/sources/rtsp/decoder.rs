//! H.264 access units to raw frames. `software` is OpenH264 on the CPU; `v4l2m2m` and `auto` probe the
//! configured V4L2 memory-to-memory device and fall back to software with the reason, logged and in the
//! decoder's name (the camera's health shows it). This build has no V4L2 M2M decode loop: a device that passes
//! the probe is reported as found and software decodes (docs/operations.md, "Hardware decode per board").

use super::probe;
use crate::config::DecoderChoice;
use openh264::formats::YUVSource;
use runtime::{Frame, PixelFormat};
use std::path::Path;

/// The decoder in use and what it is called in health.
pub struct H264Decoder {
    openh264: openh264::decoder::Decoder,
    name: String,
}

/// Why an access unit produced no frame.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("H.264 decoding failed: {0}")]
    Bitstream(String),
    #[error("{0}")]
    Frame(#[from] runtime::Error),
}

impl H264Decoder {
    /// The decoder `choice` asks for, or software with the reason it could not be had.
    pub fn select(choice: DecoderChoice, device: &Path, source: &str) -> Result<H264Decoder, DecodeError> {
        let name = match choice {
            DecoderChoice::Software => "openh264".to_owned(),
            DecoderChoice::V4l2m2m | DecoderChoice::Auto => {
                let reason = match probe::h264_m2m_decoder(device) {
                    Ok(card) => format!("{} ({card}) found, but this build decodes in software only", device.display()),
                    Err(reason) => format!("unavailable: {reason}"),
                };
                if choice == DecoderChoice::V4l2m2m {
                    log::warn!(source; "Hardware decoding not used, OpenH264 decodes instead: v4l2m2m {reason}.");
                } else {
                    log::info!(source; "OpenH264 decodes: v4l2m2m {reason}.");
                }
                format!("openh264 (v4l2m2m {reason})")
            }
        };
        let openh264 = openh264::decoder::Decoder::new().map_err(|e| DecodeError::Bitstream(e.to_string()))?;
        Ok(H264Decoder { openh264, name })
    }

    /// Starts afresh for a new session: nothing of the previous stream is referred to again.
    pub fn reset(&mut self) -> Result<(), DecodeError> {
        self.openh264 = openh264::decoder::Decoder::new().map_err(|e| DecodeError::Bitstream(e.to_string()))?;
        Ok(())
    }

    /// What decodes, for [`crate::sources::camera::StreamInfo::decoder`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Decodes one access unit (Annex B, parameter sets inline before key frames): a frame, or `None` while
    /// the decoder needs more data. The frame is an I420 copy with the decoder's row strides.
    pub fn decode(&mut self, access_unit: &[u8]) -> Result<Option<Frame>, DecodeError> {
        let Some(picture) = self.openh264.decode(access_unit).map_err(|e| DecodeError::Bitstream(e.to_string()))?
        else {
            return Ok(None);
        };
        let (width, height) = picture.dimensions();
        let (y_stride, u_stride, v_stride) = picture.strides();
        let (width, height) = (u32::try_from(width).unwrap_or(0), u32::try_from(height).unwrap_or(0));
        let strides = [y_stride, u_stride, v_stride];
        let planes = [picture.y(), picture.u(), picture.v()];
        let total: usize = (0..3).map(|i| strides[i] * PixelFormat::I420.plane_size(i, width, height).1).sum();
        let mut data = Vec::with_capacity(total);
        for (index, plane) in planes.into_iter().enumerate() {
            let length = strides[index] * PixelFormat::I420.plane_size(index, width, height).1;
            // Odd heights round chroma rows up; OpenH264's planes may stop short of that last padded row.
            let copied = plane.len().min(length);
            data.extend_from_slice(&plane[..copied]);
            data.resize(data.len() + length - copied, 128);
        }
        Ok(Some(Frame::new(PixelFormat::I420, width, height, strides, data)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn software_is_software_and_an_unusable_device_falls_back_with_the_reason() {
        let software = H264Decoder::select(DecoderChoice::Software, Path::new("/dev/video10"), "cam").unwrap();
        assert_eq!(software.name(), "openh264");
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("video10");
        for choice in [DecoderChoice::V4l2m2m, DecoderChoice::Auto] {
            let decoder = H264Decoder::select(choice, &missing, "cam").unwrap();
            assert_eq!(decoder.name(), format!("openh264 (v4l2m2m unavailable: {}: not found)", missing.display()));
        }
        let decoder = H264Decoder::select(DecoderChoice::V4l2m2m, Path::new("/dev/null"), "cam").unwrap();
        assert_eq!(decoder.name(), "openh264 (v4l2m2m unavailable: /dev/null: not a V4L2 device)");
    }

    #[test]
    fn an_encoded_picture_comes_back_as_an_i420_frame_close_to_the_original() {
        use openh264::formats::YUVSlices;
        let (width, height) = (64, 48);
        // Luma a horizontal ramp, chroma flat: a picture the encoder keeps within a few levels.
        let luma: Vec<u8> = (0..width * height).map(|i| (16 + (i % width) * 3) as u8).collect();
        let chroma = vec![100u8; width * height / 4];
        let source = YUVSlices::new((&luma, &chroma, &chroma), (width, height), (width, width / 2, width / 2));
        let mut encoder = openh264::encoder::Encoder::new().unwrap();
        let access_unit = encoder.encode(&source).unwrap().to_vec();
        let mut decoder = H264Decoder::select(DecoderChoice::Software, Path::new(""), "cam").unwrap();
        let frame = decoder.decode(&access_unit).unwrap().expect("a key frame decodes at once");
        assert_eq!((frame.format(), frame.width(), frame.height()), (PixelFormat::I420, 64, 48));
        let [y_stride, u_stride, _] = frame.strides();
        assert!(y_stride >= 64 && u_stride >= 32, "{:?}", frame.strides());
        let row = &frame.plane(0)[y_stride * 20..y_stride * 20 + width];
        let worst = row.iter().zip(&luma[width * 20..width * 21]).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
        assert!(worst <= 8, "luma off by {worst}: {row:?}");
        assert!(frame.plane(1)[..32].iter().all(|&u| u.abs_diff(100) <= 4));
    }

    #[test]
    fn garbage_is_a_decode_error_or_no_frame_never_a_panic() {
        let mut decoder = H264Decoder::select(DecoderChoice::Software, Path::new(""), "cam").unwrap();
        let garbage: Vec<u8> = [0, 0, 0, 1, 0x65].into_iter().chain((0..4000).map(|i| (i * 7 % 251) as u8)).collect();
        assert!(!matches!(decoder.decode(&garbage), Ok(Some(_))));
    }
}
