//! The package being pushed: what its announcement says, and its chunks, read from the file as devices ask.

use anyhow::{Context, Result, bail};
use packaging::PackageInfo;
use protocol::update::{Announcement, UpdateTopics, update_id};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

pub struct Package {
    path: PathBuf,
    info: PackageInfo,
    file: File,
    chunk_size: u32,
    /// The sha256 of each chunk, which the (signed) announcement carries.
    chunk_sha256: Vec<String>,
    rollback: bool,
}

impl Package {
    /// Reads the package's manifest and digest and hashes its chunks; `chunk_size` and `rollback` go into its
    /// announcements.
    pub fn open(path: &Path, chunk_size: u32, rollback: bool) -> Result<Package> {
        let info =
            packaging::package::inspect(path).with_context(|| format!("reading the package {}", path.display()))?;
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut package = Package { path: path.to_owned(), info, file, chunk_size, chunk_sha256: Vec::new(), rollback };
        let chunks = u32::try_from(package.info.size.div_ceil(u64::from(chunk_size)))
            .context("the package has more than 2^32 chunks: push with a larger --chunk-size")?;
        package.chunk_sha256 =
            (0..chunks).map(|index| Ok(packaging::hex_sha256(&package.read_chunk(index)?))).collect::<Result<_>>()?;
        Ok(package)
    }

    pub fn is_signed(&self) -> bool {
        self.info.signature.is_some()
    }

    /// The announcement of this package under `topics`.
    pub fn announcement(&self, topics: &UpdateTopics) -> Announcement {
        let id = update_id(&self.info.sha256);
        Announcement {
            chunks_topic: topics.chunks(&id),
            id,
            name: self.info.manifest.name.clone(),
            version: self.info.manifest.version.to_string(),
            size: self.info.size,
            sha256: self.info.sha256.clone(),
            signature: self.info.signature.clone(),
            chunk_size: self.chunk_size,
            chunk_sha256: self.chunk_sha256.clone(),
            rollback: self.rollback,
        }
    }

    /// Chunk `index`: `chunk_size` bytes from `index * chunk_size`, fewer for the last.
    pub fn read_chunk(&mut self, index: u32) -> Result<Vec<u8>> {
        let offset = u64::from(index) * u64::from(self.chunk_size);
        if offset >= self.info.size {
            bail!("chunk {index} lies past the end of {}", self.path.display());
        }
        let len = (self.info.size - offset).min(u64::from(self.chunk_size));
        let mut chunk = vec![0; usize::try_from(len)?];
        self.file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.file.read_exact(&mut chunk))
            .with_context(|| format!("reading chunk {index} of {} (has the file changed?)", self.path.display()))?;
        Ok(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcement_and_chunks_come_from_the_package() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("activity-classifier.bundle");
        let bundle = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/activity-classifier");
        let packed = packaging::package::pack(&bundle, &path, None).expect("pack");
        let chunk_size = 999;
        let mut package = Package::open(&path, chunk_size, true).expect("open");
        assert!(!package.is_signed());

        let announcement = package.announcement(&UpdateTopics::group("lab"));
        let id = packed.sha256[..16].to_owned();
        let bytes = std::fs::read(&path).expect("read");
        let chunk_sha256: Vec<String> = bytes.chunks(chunk_size as usize).map(packaging::hex_sha256).collect();
        assert_eq!(
            announcement,
            Announcement {
                chunks_topic: format!("groups/lab/update/chunk/{id}"),
                id,
                name: "activity-classifier".into(),
                version: packed.manifest.version.to_string(),
                size: packed.size,
                sha256: packed.sha256.clone(),
                signature: None,
                chunk_size,
                chunk_sha256,
                rollback: true,
            }
        );
        let on_device = package.announcement(&UpdateTopics::device("devices/cam-01"));
        assert_eq!(on_device.chunks_topic, format!("devices/cam-01/update/chunk/{}", announcement.id));

        // The chunks, in any order, are the file; the last holds the remainder.
        let count = announcement.chunk_count();
        assert!(!bytes.len().is_multiple_of(chunk_size as usize), "the test wants a short last chunk");
        let mut reassembled = vec![0; bytes.len()];
        for index in (0..count).rev() {
            let chunk = package.read_chunk(index).expect("chunk");
            let start = index as usize * chunk_size as usize;
            reassembled[start..start + chunk.len()].copy_from_slice(&chunk);
        }
        assert_eq!(reassembled, bytes);
        assert!(package.read_chunk(count).is_err());
    }
}
