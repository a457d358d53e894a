//! Whether a V4L2 memory-to-memory H.264 decoder is usable at a device path: the device exists, is a V4L2
//! device (QUERYCAP), has memory-to-memory capability, and takes H.264 on its bitstream (OUTPUT) queue.

use std::os::unix::fs::FileTypeExt;
use std::path::Path;

/// The device's card name when it is an H.264 M2M decoder, else why not (naming the path).
pub fn h264_m2m_decoder(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let metadata = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{shown}: not found"),
        _ => format!("{shown}: {e}"),
    })?;
    if !metadata.file_type().is_char_device() {
        return Err(format!("{shown}: not a character device"));
    }
    query(path)
}

/// QUERYCAP and ENUM_FMT on the bitstream queue.
#[cfg(target_pointer_width = "64")]
fn query(path: &Path) -> Result<String, String> {
    use linuxvideo::format::PixelFormat;
    use linuxvideo::{BufType, CapabilityFlags, Device};
    let shown = path.display();
    let device = Device::open(path).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOTTY) | Some(libc::EINVAL) => format!("{shown}: not a V4L2 device"),
        _ => format!("{shown}: cannot open: {e}"),
    })?;
    let capabilities = device.capabilities().map_err(|e| format!("{shown}: QUERYCAP failed: {e}"))?;
    let card = capabilities.card().to_owned();
    let flags = capabilities.device_capabilities();
    let bitstream_queue = if flags.contains(CapabilityFlags::VIDEO_M2M_MPLANE) {
        BufType::VIDEO_OUTPUT_MPLANE
    } else if flags.contains(CapabilityFlags::VIDEO_M2M) {
        BufType::VIDEO_OUTPUT
    } else {
        return Err(format!("{shown} ({card}): not a memory-to-memory device"));
    };
    let h264 = PixelFormat::from_fourcc(*b"H264");
    let mut formats = Vec::new();
    for format in device.formats(bitstream_queue) {
        let format = format.map_err(|e| format!("{shown} ({card}): ENUM_FMT failed: {e}"))?;
        if format.pixel_format() == h264 {
            return Ok(card);
        }
        formats.push(format.pixel_format().to_string());
    }
    Err(format!("{shown} ({card}): does not decode H.264 (it takes {})", formats.join(", ")))
}

#[cfg(not(target_pointer_width = "64"))]
fn query(path: &Path) -> Result<String, String> {
    Err(format!("{}: 32-bit builds do not probe V4L2 decoders", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_path_a_file_and_a_non_v4l2_device_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("video10");
        assert_eq!(h264_m2m_decoder(&missing), Err(format!("{}: not found", missing.display())));
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        assert_eq!(h264_m2m_decoder(&file), Err(format!("{}: not a character device", file.display())));
        assert_eq!(h264_m2m_decoder(Path::new("/dev/null")), Err("/dev/null: not a V4L2 device".to_owned()));
    }
}
