//! SHA-256 of what passes through a reader or a writer, so that a package is hashed in the same pass that
//! reads or writes it (a package may not fit in memory twice).

use ring::digest::{Context, SHA256, digest};
use std::io::{Read, Write};

/// Lower-case hex sha256 of `bytes`.
pub fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(digest(&SHA256, bytes))
}

/// Hashes and counts what is read through it: `io::copy` a file from it into `io::sink()` to hash the file.
pub struct HashingReader<R> {
    inner: R,
    hasher: Context,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    /// Hashes what is read from `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader { inner, hasher: Context::new(&SHA256), bytes: 0 }
    }

    /// The bytes read and their lower-case hex sha256.
    pub fn finish(self) -> (u64, String) {
        (self.bytes, hex::encode(self.hasher.finish()))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.hasher.update(&buf[..read]);
        self.bytes += read as u64;
        Ok(read)
    }
}

/// Hashes and counts what passes through it to `inner`.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Context,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Context::new(&SHA256), bytes: 0 }
    }

    /// The writer, the bytes written and their lower-case hex sha256.
    pub(crate) fn finish(self) -> (W, u64, String) {
        (self.inner, self.bytes, hex::encode(self.hasher.finish()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sha256 of `abc`, FIPS 180-2 appendix B.1.
    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn reader_writer_and_bytes_agree_on_a_known_digest() {
        assert_eq!(hex_sha256(b"abc"), ABC);
        let mut reader = HashingReader::new(&b"abc"[..]);
        std::io::copy(&mut reader, &mut std::io::sink()).unwrap();
        assert_eq!(reader.finish(), (3, ABC.to_owned()));
        let mut writer = HashingWriter::new(Vec::new());
        writer.write_all(b"abc").unwrap();
        assert_eq!(writer.finish(), (b"abc".to_vec(), 3, ABC.to_owned()));
    }
}
