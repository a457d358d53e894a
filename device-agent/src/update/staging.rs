//! The download in progress, kept on disk so that it resumes after a broker outage or a crash of the agent.
//!
//! ```text
//! <state_dir>/staging/<update id>/
//!     package.part   the package at its full size; each chunk is written at its offset
//!     progress.bin   one bit per chunk (chunk i: bit i % 8 of byte i / 8), replaced atomically
//!     announce.json  the Announcement, written last when a download starts: if it is there, so is the rest
//! ```
//! `package.part` is fdatasynced before `progress.bin` is replaced, so the bitmap never claims bytes that are
//! not on disk. A damaged bitmap or announcement costs a fresh start, never a wrong package: a bit that lies is
//! caught by the sha256 check at the end. One download at a time: starting one removes any other.

use super::fsutil::{fsync_dir, remove_dir_all_if_exists, write_atomic};
use packaging::HashingReader;
use protocol::update::{Announcement, UPDATE_ID_LEN, update_id};
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const STAGING_DIR: &str = "staging";
const ANNOUNCE_FILE: &str = "announce.json";
const PACKAGE_FILE: &str = "package.part";
const PROGRESS_FILE: &str = "progress.bin";

/// Why a chunk or the finished package was refused.
#[derive(Debug)]
pub enum StagingError {
    /// A chunk index at or past the number of chunks.
    OutOfRange { index: u32, chunks: u32 },
    /// A chunk whose length is not the announced one (`chunk_size`, or the remainder for the last chunk).
    WrongLength { index: u32, expected: u64, actual: usize },
    /// The package was checked before every chunk had arrived.
    Incomplete { missing: u32 },
    /// The assembled package does not hash to the announced sha256.
    Sha256Mismatch { expected: String, actual: String },
    Io(io::Error),
}

impl fmt::Display for StagingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StagingError::OutOfRange { index, chunks } => {
                write!(f, "chunk {index} is out of range: the package has {chunks}")
            }
            StagingError::WrongLength { index, expected, actual } => {
                write!(f, "chunk {index} has {actual} bytes, expected {expected}")
            }
            StagingError::Incomplete { missing } => write!(f, "{missing} chunks are still missing"),
            StagingError::Sha256Mismatch { expected, actual } => {
                write!(f, "package sha256 is {actual}, but the announcement says {expected}")
            }
            StagingError::Io(error) => write!(f, "staging the package: {error}"),
        }
    }
}

impl std::error::Error for StagingError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StagingError::Io(error) => Some(error),
            _ => None,
        }
    }
}

impl From<io::Error> for StagingError {
    fn from(error: io::Error) -> Self {
        StagingError::Io(error)
    }
}

/// A package being downloaded into `<state_dir>/staging/<id>/`.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    announcement: Announcement,
    package_path: PathBuf,
    package: File,
    /// One bit per chunk, as in `progress.bin`.
    received: Vec<u8>,
    chunks_received: u32,
    bytes_received: u64,
    resumed_bytes: u64,
    /// Chunks were written since the last [`Staging::persist`].
    unsaved: bool,
}

impl Staging {
    /// Resumes the download of `announcement` if it is staged, else removes any other download and starts
    /// this one. The staged announcement counts as the same when only `chunks_topic` and `signature` differ (a
    /// device push and a group push of one package). An announcement that cannot be staged (an id that is not
    /// the first 16 hex digits of the sha256, no chunks, more than `u32::MAX` chunks) is `InvalidInput`.
    pub fn open(state_dir: &Path, announcement: &Announcement) -> io::Result<Staging> {
        check_announcement(announcement)?;
        let root = state_dir.join(STAGING_DIR);
        let dir = root.join(&announcement.id);
        match Staging::resume(&dir, announcement) {
            Ok(Some(staging)) => return Ok(staging),
            Ok(None) => {}
            Err(reason) => {
                log::warn!(update = announcement.id.as_str(); "Staged download unusable ({reason}); starting again.");
            }
        }
        Staging::start(state_dir, &dir, announcement)
    }

    /// The announcement of a download left in `state_dir`, if any: the agent learns at start what it was
    /// fetching.
    pub fn staged(state_dir: &Path) -> Option<Announcement> {
        fs::read_dir(state_dir.join(STAGING_DIR)).ok()?.flatten().find_map(|entry| {
            let announcement = read_announcement(&entry.path()).ok()?;
            (entry.file_name().to_str() == Some(announcement.id.as_str())).then_some(announcement)
        })
    }

    /// Removes the download in progress, if any.
    pub fn discard(state_dir: &Path) -> io::Result<()> {
        remove_dir_all_if_exists(&state_dir.join(STAGING_DIR))
    }

    /// `Ok(None)` when nothing of this package is staged; `Err` says why a staged download cannot be resumed.
    fn resume(dir: &Path, announcement: &Announcement) -> Result<Option<Staging>, String> {
        let staged = match read_announcement(dir) {
            Ok(staged) => staged,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(format!("{ANNOUNCE_FILE}: {error}")),
        };
        if !same_package(&staged, announcement) {
            return Ok(None);
        }
        let received = fs::read(dir.join(PROGRESS_FILE)).map_err(|e| format!("{PROGRESS_FILE}: {e}"))?;
        let chunks = announcement.chunk_count();
        if received.len() != bitmap_len(chunks) || !spare_bits_clear(&received, chunks) {
            return Err(format!("{PROGRESS_FILE} does not fit {chunks} chunks"));
        }
        let package = File::options()
            .read(true)
            .write(true)
            .open(dir.join(PACKAGE_FILE))
            .map_err(|e| format!("{PACKAGE_FILE}: {e}"))?;
        let length = package.metadata().map_err(|e| format!("{PACKAGE_FILE}: {e}"))?.len();
        if length != announcement.size {
            return Err(format!("{PACKAGE_FILE} has {length} bytes, expected {}", announcement.size));
        }
        if staged != *announcement {
            announcement_json(announcement)
                .and_then(|json| write_atomic(&dir.join(ANNOUNCE_FILE), &json))
                .map_err(|e| format!("{ANNOUNCE_FILE}: {e}"))?;
        }
        Ok(Some(Staging::with_progress(dir, announcement, package, received)))
    }

    fn start(state_dir: &Path, dir: &Path, announcement: &Announcement) -> io::Result<Staging> {
        let root = state_dir.join(STAGING_DIR);
        remove_dir_all_if_exists(&root)?;
        fs::create_dir_all(dir)?;
        let package = File::options().read(true).write(true).create_new(true).open(dir.join(PACKAGE_FILE))?;
        package.set_len(announcement.size)?;
        package.sync_all()?;
        let received = vec![0; bitmap_len(announcement.chunk_count())];
        write_atomic(&dir.join(PROGRESS_FILE), &received)?;
        write_atomic(&dir.join(ANNOUNCE_FILE), &announcement_json(announcement)?)?;
        fsync_dir(&root)?;
        fsync_dir(state_dir)?;
        Ok(Staging::with_progress(dir, announcement, package, received))
    }

    /// A staging whose bitmap is `received`, counting what it holds.
    fn with_progress(dir: &Path, announcement: &Announcement, package: File, received: Vec<u8>) -> Staging {
        let mut staging = Staging {
            dir: dir.to_owned(),
            announcement: announcement.clone(),
            package_path: dir.join(PACKAGE_FILE),
            package,
            received,
            chunks_received: 0,
            bytes_received: 0,
            resumed_bytes: 0,
            unsaved: false,
        };
        for index in 0..announcement.chunk_count() {
            if staging.has(index) {
                staging.chunks_received += 1;
                staging.bytes_received += staging.chunk_len(index);
            }
        }
        staging.resumed_bytes = staging.bytes_received;
        staging
    }

    /// Bytes that were already staged when this download was opened.
    pub fn resumed_bytes(&self) -> u64 {
        self.resumed_bytes
    }

    pub fn bytes_received(&self) -> u64 {
        self.bytes_received
    }

    pub fn is_complete(&self) -> bool {
        self.chunks_received == self.announcement.chunk_count()
    }

    /// Half-open index ranges `[start, end)` covering the first `limit` missing chunks, lowest first.
    pub fn missing(&self, limit: usize) -> Vec<[u32; 2]> {
        let chunks = self.announcement.chunk_count();
        let mut ranges: Vec<[u32; 2]> = Vec::new();
        let mut left = limit;
        let mut index = 0;
        while index < chunks && left > 0 {
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

    /// Stores chunk `index`; `Ok(false)` when it was already stored (a duplicate delivery). The chunk is on
    /// disk for good only after the next [`Staging::persist`].
    pub fn write_chunk(&mut self, index: u32, bytes: &[u8]) -> Result<bool, StagingError> {
        let chunks = self.announcement.chunk_count();
        if index >= chunks {
            return Err(StagingError::OutOfRange { index, chunks });
        }
        let expected = self.chunk_len(index);
        if bytes.len() as u64 != expected {
            return Err(StagingError::WrongLength { index, expected, actual: bytes.len() });
        }
        if self.has(index) {
            return Ok(false);
        }
        self.package.write_all_at(bytes, u64::from(index) * u64::from(self.announcement.chunk_size))?;
        self.received[(index / 8) as usize] |= 1 << (index % 8);
        self.chunks_received += 1;
        self.bytes_received += expected;
        self.unsaved = true;
        Ok(true)
    }

    /// Makes the chunks stored so far durable: the package data first, then the bitmap that claims them.
    pub fn persist(&mut self) -> io::Result<()> {
        if self.unsaved {
            self.package.sync_data()?;
            write_atomic(&self.dir.join(PROGRESS_FILE), &self.received)?;
            self.unsaved = false;
        }
        Ok(())
    }

    /// Where the package is assembled.
    pub fn package_path(&self) -> &Path {
        &self.package_path
    }

    /// Checks that every chunk arrived and that the package hashes to the announced sha256.
    pub fn finish_check(&self) -> Result<(), StagingError> {
        let missing = self.announcement.chunk_count() - self.chunks_received;
        if missing > 0 {
            return Err(StagingError::Incomplete { missing });
        }
        let actual = file_sha256(&self.package_path)?;
        if actual != self.announcement.sha256 {
            return Err(StagingError::Sha256Mismatch { expected: self.announcement.sha256.clone(), actual });
        }
        Ok(())
    }

    fn has(&self, index: u32) -> bool {
        self.received[(index / 8) as usize] & (1 << (index % 8)) != 0
    }

    /// Bytes of chunk `index`: `chunk_size`, except the last chunk, which holds the remainder.
    fn chunk_len(&self, index: u32) -> u64 {
        let chunk_size = u64::from(self.announcement.chunk_size);
        let start = u64::from(index) * chunk_size;
        chunk_size.min(self.announcement.size - start)
    }
}

/// Only an announcement whose id is the update id of its sha256 names a staging directory: the id comes from
/// the network and becomes a path.
fn check_announcement(announcement: &Announcement) -> io::Result<()> {
    let invalid = |what: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, format!("announcement {what}")));
    let is_hex = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if announcement.sha256.len() != 64 || !is_hex(&announcement.sha256) {
        return invalid("sha256 is not 64 lower-case hex digits");
    }
    if announcement.id.len() != UPDATE_ID_LEN || announcement.id != update_id(&announcement.sha256) {
        return invalid("id is not the start of its sha256");
    }
    if announcement.size == 0 || announcement.chunk_size == 0 {
        return invalid("has no bytes or no chunk size");
    }
    if announcement.size.div_ceil(u64::from(announcement.chunk_size)) > u64::from(u32::MAX) {
        return invalid("has too many chunks");
    }
    Ok(())
}

/// Whether `a` and `b` announce the same package staged the same way.
fn same_package(a: &Announcement, b: &Announcement) -> bool {
    let comparable = |x: &Announcement| Announcement { chunks_topic: String::new(), signature: None, ..x.clone() };
    comparable(a) == comparable(b)
}

fn read_announcement(dir: &Path) -> io::Result<Announcement> {
    let bytes = fs::read(dir.join(ANNOUNCE_FILE))?;
    serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn announcement_json(announcement: &Announcement) -> io::Result<Vec<u8>> {
    serde_json::to_vec_pretty(announcement).map_err(io::Error::other)
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

/// Lower-case hex sha256 of the file at `path`, read in pieces (a package may not fit in memory twice).
fn file_sha256(path: &Path) -> io::Result<String> {
    let mut reader = HashingReader::new(File::open(path)?);
    io::copy(&mut reader, &mut io::sink())?;
    Ok(reader.finish().1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sha256 of [`package`].
    const PACKAGE_SHA256: &str = "a9425c416f534025a4e2422bd14adba4ec3d4a68d10c3329be8df612964d2b6e";
    const CHUNK_SIZE: u32 = 64;

    /// 1000 bytes: 15 chunks of 64 and a last one of 40.
    fn package() -> Vec<u8> {
        (0..1000u32).map(|i| ((i * 7 + 3) % 251) as u8).collect()
    }

    fn announcement() -> Announcement {
        Announcement {
            id: update_id(PACKAGE_SHA256),
            name: "demo".into(),
            version: "1.1.0".into(),
            size: 1000,
            sha256: PACKAGE_SHA256.into(),
            signature: None,
            chunk_size: CHUNK_SIZE,
            chunks_topic: format!("devices/d1/update/chunk/{}", update_id(PACKAGE_SHA256)),
            rollback: false,
        }
    }

    fn chunk(index: u32) -> Vec<u8> {
        package().chunks(CHUNK_SIZE as usize).nth(index as usize).unwrap().to_vec()
    }

    fn staging_dir(state_dir: &Path) -> PathBuf {
        state_dir.join(STAGING_DIR).join(update_id(PACKAGE_SHA256))
    }

    #[test]
    fn a_download_resumes_where_it_stopped() {
        let state_dir = tempfile::tempdir().unwrap();
        let mut staging = Staging::open(state_dir.path(), &announcement()).unwrap();
        assert_eq!(staging.missing(100), vec![[0, 16]]);
        for index in [0, 1, 2, 5, 15] {
            assert!(staging.write_chunk(index, &chunk(index)).unwrap());
        }
        assert!(!staging.write_chunk(1, &chunk(1)).unwrap(), "a duplicate is not stored twice");
        staging.persist().unwrap();
        assert!(staging.write_chunk(7, &chunk(7)).unwrap(), "written but never persisted");
        drop(staging);

        // The same package pushed to a group: another chunks topic and signature.
        let group_push = Announcement {
            chunks_topic: "groups/lab/update/chunk/x".into(),
            signature: Some("ed25519 ..".into()),
            ..announcement()
        };
        assert_eq!(Staging::staged(state_dir.path()), Some(announcement()));
        let mut staging = Staging::open(state_dir.path(), &group_push).unwrap();
        assert_eq!(staging.resumed_bytes(), 4 * 64 + 40);
        assert_eq!(staging.bytes_received(), staging.resumed_bytes());
        assert_eq!(staging.missing(100), vec![[3, 5], [6, 15]]);
        assert_eq!(staging.missing(3), vec![[3, 5], [6, 7]]);
        assert_eq!(&staging.announcement, &group_push);
        assert_eq!(Staging::staged(state_dir.path()), Some(group_push));

        assert!(matches!(staging.finish_check(), Err(StagingError::Incomplete { missing: 11 })));
        for [start, end] in staging.missing(100) {
            for index in start..end {
                staging.write_chunk(index, &chunk(index)).unwrap();
            }
        }
        assert!(staging.is_complete());
        assert_eq!(staging.bytes_received(), 1000);
        staging.persist().unwrap();
        staging.finish_check().unwrap();
        assert_eq!(fs::read(staging.package_path()).unwrap(), package());

        Staging::discard(state_dir.path()).unwrap();
        assert_eq!(Staging::staged(state_dir.path()), None);
        assert!(!staging_dir(state_dir.path()).exists());
    }

    #[test]
    fn another_package_starts_fresh_and_removes_the_old_one() {
        let state_dir = tempfile::tempdir().unwrap();
        let mut staging = Staging::open(state_dir.path(), &announcement()).unwrap();
        staging.write_chunk(0, &chunk(0)).unwrap();
        staging.persist().unwrap();
        drop(staging);

        let sha256 = "ff".repeat(32);
        let other = Announcement { id: update_id(&sha256), sha256, ..announcement() };
        let staging = Staging::open(state_dir.path(), &other).unwrap();
        assert_eq!((staging.resumed_bytes(), staging.missing(100)), (0, vec![[0, 16]]));
        assert!(!staging_dir(state_dir.path()).exists());
        assert_eq!(Staging::staged(state_dir.path()), Some(other));

        // Same id, another chunk size: the bitmap would not fit, so start again.
        let rechunked = Announcement { chunk_size: 100, ..announcement() };
        let mut staging = Staging::open(state_dir.path(), &announcement()).unwrap();
        staging.write_chunk(0, &chunk(0)).unwrap();
        staging.persist().unwrap();
        drop(staging);
        let staging = Staging::open(state_dir.path(), &rechunked).unwrap();
        assert_eq!((staging.resumed_bytes(), staging.missing(100)), (0, vec![[0, 10]]));
    }

    #[test]
    fn chunks_of_the_wrong_length_or_index_are_refused() {
        let state_dir = tempfile::tempdir().unwrap();
        let mut staging = Staging::open(state_dir.path(), &announcement()).unwrap();
        let refused = staging.write_chunk(0, &chunk(0)[..63]);
        let short = matches!(refused, Err(StagingError::WrongLength { index: 0, expected: 64, actual: 63 }));
        assert!(short, "{refused:?}");
        let refused = staging.write_chunk(15, &chunk(0));
        let long = matches!(refused, Err(StagingError::WrongLength { index: 15, expected: 40, actual: 64 }));
        assert!(long, "{refused:?}");
        let refused = staging.write_chunk(16, &chunk(15));
        assert!(matches!(refused, Err(StagingError::OutOfRange { index: 16, chunks: 16 })), "{refused:?}");
        assert_eq!(staging.bytes_received(), 0);
        assert!(staging.write_chunk(15, &chunk(15)).unwrap());
    }

    #[test]
    fn damaged_progress_or_announcement_starts_fresh() {
        let state_dir = tempfile::tempdir().unwrap();
        let dir = staging_dir(state_dir.path());
        let damages: [(&str, &[u8]); 4] = [
            (PROGRESS_FILE, b"\x01"),
            (PROGRESS_FILE, b""),
            (PROGRESS_FILE, b"\x01\x00\x00"),
            (ANNOUNCE_FILE, b"{\"id\":"),
        ];
        for (file, damaged) in damages {
            let mut staging = Staging::open(state_dir.path(), &announcement()).unwrap();
            staging.write_chunk(0, &chunk(0)).unwrap();
            staging.persist().unwrap();
            drop(staging);
            fs::write(dir.join(file), damaged).unwrap();
            let staging = Staging::open(state_dir.path(), &announcement()).unwrap();
            assert_eq!((staging.resumed_bytes(), staging.missing(100)), (0, vec![[0, 16]]), "{file} = {damaged:?}");
            assert_eq!(fs::read(dir.join(PROGRESS_FILE)).unwrap(), [0, 0]);
        }
        // A package file cut short (its chunks cannot be there).
        let mut staging = Staging::open(state_dir.path(), &announcement()).unwrap();
        staging.write_chunk(0, &chunk(0)).unwrap();
        staging.persist().unwrap();
        drop(staging);
        File::options().write(true).open(dir.join(PACKAGE_FILE)).unwrap().set_len(10).unwrap();
        assert_eq!(Staging::open(state_dir.path(), &announcement()).unwrap().resumed_bytes(), 0);
    }

    #[test]
    fn a_package_that_does_not_hash_to_the_announced_sha256_is_refused() {
        let state_dir = tempfile::tempdir().unwrap();
        let mut staging = Staging::open(state_dir.path(), &announcement()).unwrap();
        for index in 0..16 {
            let mut bytes = chunk(index);
            if index == 9 {
                bytes[3] ^= 1;
            }
            staging.write_chunk(index, &bytes).unwrap();
        }
        let refused = staging.finish_check();
        let mismatch =
            matches!(&refused, Err(StagingError::Sha256Mismatch { expected, .. }) if expected == PACKAGE_SHA256);
        assert!(mismatch, "{refused:?}");
    }

    #[test]
    fn announcements_that_cannot_name_a_staging_dir_are_refused() {
        let state_dir = tempfile::tempdir().unwrap();
        let refused = [
            Announcement { id: "../../etc".into(), ..announcement() },
            Announcement { sha256: "AB".repeat(32), id: "ABABABABABABABAB".into(), ..announcement() },
            Announcement { chunk_size: 0, ..announcement() },
            Announcement { size: 0, ..announcement() },
            Announcement { size: u64::MAX, chunk_size: 1, ..announcement() },
        ];
        for announcement in refused {
            let error = Staging::open(state_dir.path(), &announcement).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{announcement:?}");
        }
        assert_eq!(Staging::staged(state_dir.path()), None);
    }
}
