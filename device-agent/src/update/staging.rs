//! The download in progress, kept on disk so that it resumes after a broker outage or a crash of the agent.
//!
//! ```text
//! <state_dir>/staging/<update id>/
//!     package.part   the package at its full size; each chunk is written at its offset
//!     progress.bin   the chunks received (see [`Progress`]), replaced atomically
//!     announce.json  the Announcement, written last when a download starts: if it is there, so is the rest
//! ```
//! `package.part` is fdatasynced before `progress.bin` is replaced, so the bitmap never claims bytes that are
//! not on disk. A damaged bitmap or announcement costs a fresh start, never a wrong package: a bit that lies is
//! caught by the sha256 check at the end. One download at a time: starting one removes any other.

use super::fsutil::{fsync_dir, remove_dir_all_if_exists, write_atomic};
use super::progress::Progress;
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

/// Why the finished package was refused.
#[derive(Debug)]
pub enum StagingError {
    /// The assembled package does not hash to the announced sha256.
    Sha256Mismatch {
        expected: String,
        actual: String,
    },
    Io(io::Error),
}

impl fmt::Display for StagingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
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
            StagingError::Sha256Mismatch { .. } => None,
        }
    }
}

impl From<io::Error> for StagingError {
    fn from(error: io::Error) -> Self {
        StagingError::Io(error)
    }
}

/// The files of a package being downloaded into `<state_dir>/staging/<id>/`.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    sha256: String,
    package_path: PathBuf,
    package: File,
}

impl Staging {
    /// Resumes the download of `announcement` if it is staged, else removes any other download and starts
    /// this one; returns the chunks already there. The staged announcement counts as the same when only
    /// `chunks_topic` and `signature` differ (a device push and a group push of one package). An announcement
    /// that cannot be staged (an id that is not the first 16 hex digits of the sha256, no chunks, more than
    /// `u32::MAX` chunks) is `InvalidInput`.
    pub fn open(state_dir: &Path, announcement: &Announcement) -> io::Result<(Staging, Progress)> {
        check_announcement(announcement)?;
        let dir = state_dir.join(STAGING_DIR).join(&announcement.id);
        match Staging::resume(&dir, announcement) {
            Ok(Some(resumed)) => return Ok(resumed),
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
    fn resume(dir: &Path, announcement: &Announcement) -> Result<Option<(Staging, Progress)>, String> {
        let staged = match read_announcement(dir) {
            Ok(staged) => staged,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(format!("{ANNOUNCE_FILE}: {error}")),
        };
        if !same_package(&staged, announcement) {
            return Ok(None);
        }
        let bitmap = fs::read(dir.join(PROGRESS_FILE)).map_err(|e| format!("{PROGRESS_FILE}: {e}"))?;
        let progress = Progress::from_bitmap(announcement, bitmap)
            .ok_or_else(|| format!("{PROGRESS_FILE} does not fit {} chunks", announcement.chunk_count()))?;
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
        Ok(Some((Staging::with_package(dir, announcement, package), progress)))
    }

    fn start(state_dir: &Path, dir: &Path, announcement: &Announcement) -> io::Result<(Staging, Progress)> {
        let root = state_dir.join(STAGING_DIR);
        remove_dir_all_if_exists(&root)?;
        fs::create_dir_all(dir)?;
        let package = File::options().read(true).write(true).create_new(true).open(dir.join(PACKAGE_FILE))?;
        package.set_len(announcement.size)?;
        package.sync_all()?;
        let progress = Progress::empty(announcement);
        write_atomic(&dir.join(PROGRESS_FILE), progress.bitmap())?;
        write_atomic(&dir.join(ANNOUNCE_FILE), &announcement_json(announcement)?)?;
        fsync_dir(&root)?;
        fsync_dir(state_dir)?;
        Ok((Staging::with_package(dir, announcement, package), progress))
    }

    fn with_package(dir: &Path, announcement: &Announcement, package: File) -> Staging {
        Staging {
            dir: dir.to_owned(),
            sha256: announcement.sha256.clone(),
            package_path: dir.join(PACKAGE_FILE),
            package,
        }
    }

    /// Writes a chunk at `offset` of the package. It is on disk for good only after the next
    /// [`Staging::persist`].
    pub fn write_chunk(&self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.package.write_all_at(bytes, offset)
    }

    /// Makes the chunks written so far durable: the package data first, then `bitmap` (a [`Progress`]'s),
    /// which claims them.
    pub fn persist(&self, bitmap: &[u8]) -> io::Result<()> {
        self.package.sync_data()?;
        write_atomic(&self.dir.join(PROGRESS_FILE), bitmap)
    }

    /// Where the package is assembled.
    pub fn package_path(&self) -> &Path {
        &self.package_path
    }

    /// Checks that the complete package hashes to the announced sha256.
    pub fn check_sha256(&self) -> Result<(), StagingError> {
        let actual = file_sha256(&self.package_path)?;
        if actual != self.sha256 {
            return Err(StagingError::Sha256Mismatch { expected: self.sha256.clone(), actual });
        }
        Ok(())
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
            chunk_sha256: Vec::new(),
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

    /// Writes chunk `index` and records it.
    fn store(staging: &Staging, progress: &mut Progress, index: u32, bytes: &[u8]) {
        assert_eq!(progress.check(index, bytes.len()), Ok(true));
        staging.write_chunk(progress.offset(index), bytes).unwrap();
        progress.mark(index);
    }

    #[test]
    fn a_download_resumes_where_it_stopped() {
        let state_dir = tempfile::tempdir().unwrap();
        let (staging, mut progress) = Staging::open(state_dir.path(), &announcement()).unwrap();
        assert_eq!(progress.missing(100), vec![[0, 16]]);
        for index in [0, 1, 2, 5, 15] {
            store(&staging, &mut progress, index, &chunk(index));
        }
        staging.persist(progress.bitmap()).unwrap();
        store(&staging, &mut progress, 7, &chunk(7));
        drop(staging);

        // The same package pushed to a group: another chunks topic and signature. Chunk 7 was never persisted.
        let group_push = Announcement {
            chunks_topic: "groups/lab/update/chunk/x".into(),
            signature: Some("ed25519 ..".into()),
            ..announcement()
        };
        assert_eq!(Staging::staged(state_dir.path()), Some(announcement()));
        let (staging, mut progress) = Staging::open(state_dir.path(), &group_push).unwrap();
        assert_eq!(progress.resumed_bytes(), 4 * 64 + 40);
        assert_eq!(progress.missing(100), vec![[3, 5], [6, 15]]);
        assert_eq!(Staging::staged(state_dir.path()), Some(group_push));

        for [start, end] in progress.missing(100) {
            for index in start..end {
                store(&staging, &mut progress, index, &chunk(index));
            }
        }
        assert!(progress.is_complete());
        staging.persist(progress.bitmap()).unwrap();
        staging.check_sha256().unwrap();
        assert_eq!(fs::read(staging.package_path()).unwrap(), package());

        Staging::discard(state_dir.path()).unwrap();
        assert_eq!(Staging::staged(state_dir.path()), None);
        assert!(!staging_dir(state_dir.path()).exists());
    }

    #[test]
    fn another_package_starts_fresh_and_removes_the_old_one() {
        let state_dir = tempfile::tempdir().unwrap();
        let (staging, mut progress) = Staging::open(state_dir.path(), &announcement()).unwrap();
        store(&staging, &mut progress, 0, &chunk(0));
        staging.persist(progress.bitmap()).unwrap();
        drop(staging);

        let sha256 = "ff".repeat(32);
        let other = Announcement { id: update_id(&sha256), sha256, ..announcement() };
        let (_, progress) = Staging::open(state_dir.path(), &other).unwrap();
        assert_eq!((progress.resumed_bytes(), progress.missing(100)), (0, vec![[0, 16]]));
        assert!(!staging_dir(state_dir.path()).exists());
        assert_eq!(Staging::staged(state_dir.path()), Some(other));

        // Same id, another chunk size: the bitmap would not fit, so start again.
        let rechunked = Announcement { chunk_size: 100, ..announcement() };
        let (staging, mut progress) = Staging::open(state_dir.path(), &announcement()).unwrap();
        store(&staging, &mut progress, 0, &chunk(0));
        staging.persist(progress.bitmap()).unwrap();
        drop(staging);
        let (_, progress) = Staging::open(state_dir.path(), &rechunked).unwrap();
        assert_eq!((progress.resumed_bytes(), progress.missing(100)), (0, vec![[0, 10]]));
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
            let (staging, mut progress) = Staging::open(state_dir.path(), &announcement()).unwrap();
            store(&staging, &mut progress, 0, &chunk(0));
            staging.persist(progress.bitmap()).unwrap();
            drop(staging);
            fs::write(dir.join(file), damaged).unwrap();
            let (_, progress) = Staging::open(state_dir.path(), &announcement()).unwrap();
            assert_eq!((progress.resumed_bytes(), progress.missing(100)), (0, vec![[0, 16]]), "{file} = {damaged:?}");
            assert_eq!(fs::read(dir.join(PROGRESS_FILE)).unwrap(), [0, 0]);
        }
        // A package file cut short (its chunks cannot be there).
        let (staging, mut progress) = Staging::open(state_dir.path(), &announcement()).unwrap();
        store(&staging, &mut progress, 0, &chunk(0));
        staging.persist(progress.bitmap()).unwrap();
        drop(staging);
        File::options().write(true).open(dir.join(PACKAGE_FILE)).unwrap().set_len(10).unwrap();
        assert_eq!(Staging::open(state_dir.path(), &announcement()).unwrap().1.resumed_bytes(), 0);
    }

    #[test]
    fn a_package_that_does_not_hash_to_the_announced_sha256_is_refused() {
        let state_dir = tempfile::tempdir().unwrap();
        let (staging, mut progress) = Staging::open(state_dir.path(), &announcement()).unwrap();
        for index in 0..16 {
            let mut bytes = chunk(index);
            if index == 9 {
                bytes[3] ^= 1;
            }
            store(&staging, &mut progress, index, &bytes);
        }
        let refused = staging.check_sha256();
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
