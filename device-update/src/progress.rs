//! Which chunks of a download have arrived: one bit per chunk (chunk i: bit i % 8 of byte i / 8), the layout
//! of `progress.bin`. Bookkeeping only: the update machine decides with it, the staging directory stores it.

use protocol::update::Announcement;
use std::fmt;

/// Why a chunk was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkError {
    /// A chunk index at or past the number of chunks.
    OutOfRange { index: u32, chunks: u32 },
    /// A chunk whose length is not the announced one (`chunk_size`, or the remainder for the last chunk).
    WrongLength { index: u32, expected: u64, actual: usize },
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkError::OutOfRange { index, chunks } => {
                write!(f, "chunk {index} is out of range: the package has {chunks}")
            }
            ChunkError::WrongLength { index, expected, actual } => {
                write!(f, "chunk {index} has {actual} bytes, expected {expected}")
            }
        }
    }
}

impl std::error::Error for ChunkError {}

/// The chunks of one package received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    size: u64,
    chunk_size: u32,
    chunks: u32,
    received: Vec<u8>,
    chunks_received: u32,
    bytes_received: u64,
    /// Bytes already received when this progress was loaded.
    resumed_bytes: u64,
}

impl Progress {
    /// Nothing received yet.
    pub fn empty(announcement: &Announcement) -> Progress {
        let chunks = announcement.chunk_count();
        Progress::counted(announcement, vec![0; bitmap_len(chunks)])
    }

    /// The progress `bitmap` records; `None` when it does not fit the announcement's number of chunks.
    pub fn from_bitmap(announcement: &Announcement, bitmap: Vec<u8>) -> Option<Progress> {
        let chunks = announcement.chunk_count();
        (bitmap.len() == bitmap_len(chunks) && spare_bits_clear(&bitmap, chunks))
            .then(|| Progress::counted(announcement, bitmap))
    }

    fn counted(announcement: &Announcement, received: Vec<u8>) -> Progress {
        let mut progress = Progress {
            size: announcement.size,
            chunk_size: announcement.chunk_size,
            chunks: announcement.chunk_count(),
            received,
            chunks_received: 0,
            bytes_received: 0,
            resumed_bytes: 0,
        };
        for index in 0..progress.chunks {
            if progress.has(index) {
                progress.chunks_received += 1;
                progress.bytes_received += progress.chunk_len(index);
            }
        }
        progress.resumed_bytes = progress.bytes_received;
        progress
    }

    /// The bitmap, as `progress.bin` stores it.
    pub fn bitmap(&self) -> &[u8] {
        &self.received
    }

    /// Bytes that were already received when this progress was loaded.
    pub fn resumed_bytes(&self) -> u64 {
        self.resumed_bytes
    }

    pub fn bytes_received(&self) -> u64 {
        self.bytes_received
    }

    pub fn is_complete(&self) -> bool {
        self.chunks_received == self.chunks
    }

    /// Half-open index ranges `[start, end)` covering the first `limit` missing chunks, lowest first.
    pub fn missing(&self, limit: usize) -> Vec<[u32; 2]> {
        let mut ranges: Vec<[u32; 2]> = Vec::new();
        let mut left = limit;
        let mut index = 0;
        while index < self.chunks && left > 0 {
            if index % 8 == 0 && self.received[(index / 8) as usize] == u8::MAX {
                index += 8;
                continue;
            }
            if !self.has(index) {
                match ranges.last_mut() {
                    Some(range) if range[1] == index => range[1] += 1,
                    _ => ranges.push([index, index + 1]),
                }
                left -= 1;
            }
            index += 1;
        }
        ranges
    }

    /// Checks that `length` bytes can be chunk `index`; `Ok(false)` when it was already received (a duplicate).
    pub fn check(&self, index: u32, length: usize) -> Result<bool, ChunkError> {
        if index >= self.chunks {
            return Err(ChunkError::OutOfRange { index, chunks: self.chunks });
        }
        let expected = self.chunk_len(index);
        if length as u64 != expected {
            return Err(ChunkError::WrongLength { index, expected, actual: length });
        }
        Ok(!self.has(index))
    }

    /// Records chunk `index` (checked with [`Progress::check`]) as received.
    pub fn mark(&mut self, index: u32) {
        if index < self.chunks && !self.has(index) {
            self.received[(index / 8) as usize] |= 1 << (index % 8);
            self.chunks_received += 1;
            self.bytes_received += self.chunk_len(index);
        }
    }

    /// Where chunk `index` starts in the package.
    pub fn offset(&self, index: u32) -> u64 {
        u64::from(index) * u64::from(self.chunk_size)
    }

    fn has(&self, index: u32) -> bool {
        self.received[(index / 8) as usize] & (1 << (index % 8)) != 0
    }

    /// Bytes of chunk `index`: `chunk_size`, except the last chunk, which holds the remainder.
    fn chunk_len(&self, index: u32) -> u64 {
        u64::from(self.chunk_size).min(self.size - self.offset(index))
    }
}

fn bitmap_len(chunks: u32) -> usize {
    chunks.div_ceil(8) as usize
}

/// Whether the bits past the last chunk are clear, as a bitmap this module wrote has them.
fn spare_bits_clear(bitmap: &[u8], chunks: u32) -> bool {
    match (chunks % 8, bitmap.last()) {
        (0, _) | (_, None) => true,
        (used, Some(last)) => last >> used == 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1000 bytes in chunks of 64: 15 full chunks and a last one of 40.
    fn announcement() -> Announcement {
        Announcement {
            id: String::new(),
            name: String::new(),
            version: String::new(),
            size: 1000,
            sha256: String::new(),
            signature: None,
            chunk_size: 64,
            chunk_sha256: Vec::new(),
            chunks_topic: String::new(),
            rollback: false,
        }
    }

    #[test]
    fn chunks_are_counted_once_and_missing_ones_listed() {
        let mut progress = Progress::empty(&announcement());
        assert_eq!(progress.missing(100), vec![[0, 16]]);
        for index in [0, 1, 2, 5, 15] {
            assert_eq!(progress.check(index, if index == 15 { 40 } else { 64 }), Ok(true));
            progress.mark(index);
        }
        assert_eq!(progress.check(1, 64), Ok(false), "a duplicate");
        progress.mark(1);
        assert_eq!(progress.bytes_received(), 4 * 64 + 40);
        assert_eq!(progress.missing(100), vec![[3, 5], [6, 15]]);
        assert_eq!(progress.missing(3), vec![[3, 5], [6, 7]]);
        assert_eq!(progress.offset(3), 192);

        let reloaded = Progress::from_bitmap(&announcement(), progress.bitmap().to_vec()).unwrap();
        assert_eq!((reloaded.resumed_bytes(), reloaded.bytes_received()), (296, 296));
        assert!(!reloaded.is_complete());
    }

    #[test]
    fn chunks_of_the_wrong_length_or_index_are_refused() {
        let progress = Progress::empty(&announcement());
        assert_eq!(progress.check(0, 63), Err(ChunkError::WrongLength { index: 0, expected: 64, actual: 63 }));
        assert_eq!(progress.check(15, 64), Err(ChunkError::WrongLength { index: 15, expected: 40, actual: 64 }));
        assert_eq!(progress.check(16, 40), Err(ChunkError::OutOfRange { index: 16, chunks: 16 }));
        assert_eq!(progress.check(15, 40), Ok(true));
    }

    #[test]
    fn a_bitmap_that_does_not_fit_is_refused() {
        for bitmap in [vec![], vec![0], vec![0, 0, 0]] {
            assert_eq!(Progress::from_bitmap(&announcement(), bitmap.clone()), None, "{bitmap:?}");
        }
        let ten_chunks = Announcement { chunk_size: 100, ..announcement() };
        assert_eq!(Progress::from_bitmap(&ten_chunks, vec![0, 0b100]), None, "a bit for chunk 10");
        assert!(Progress::from_bitmap(&ten_chunks, vec![0, 0b10]).is_some());
        let full = Progress::from_bitmap(&announcement(), vec![0xff, 0xff]).unwrap();
        assert!(full.is_complete());
        assert_eq!(full.missing(10), Vec::<[u32; 2]>::new());
    }
}
