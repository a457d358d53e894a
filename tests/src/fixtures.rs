//! Bad inputs made on the spot.

/// The first half of a real JPEG: a truncated upload.
pub fn truncated_jpeg() -> Vec<u8> {
    let jpeg = std::fs::read(crate::models_dir().join("frames/cat.jpg")).expect("frame");
    jpeg[..jpeg.len() / 2].to_vec()
}

/// A PNG signature and IHDR chunk announcing `width` x `height` RGB, with no image data: a decompression bomb
/// as far as a decoder that trusts headers is concerned.
pub fn png_header(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    png
}

/// A copy of the shipped bundle `name` in a temporary directory, with `edit` applied to its manifest text.
pub fn edited_bundle(name: &str, edit: impl Fn(&str) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(crate::models_dir().join(name)).expect("bundle directory") {
        let entry = entry.expect("bundle entry");
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy bundle file");
    }
    let manifest = dir.path().join("manifest.toml");
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    std::fs::write(&manifest, edit(&text)).expect("write manifest");
    dir
}

/// CRC-32 (IEEE) as PNG chunks use it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}
