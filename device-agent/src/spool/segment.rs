//! One segment file of a log: `<first seq, 20 digits>.seg`, records back to back, appended with one write each
//! and read back with one `pread`. Opening scans it and cuts a damaged tail off (see [`super::record`]).

use super::record::{self, Damage};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const EXTENSION: &str = "seg";

#[derive(Debug)]
pub struct Segment {
    /// The seq of its first record.
    first: u64,
    path: PathBuf,
    file: File,
    /// Where each record starts.
    offsets: Vec<u32>,
    len: u64,
}

/// What opening a segment found wrong, and cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    pub damage: Damage,
    /// The bytes removed from the end of the file.
    pub bytes: u64,
}

impl Segment {
    /// A new, empty segment whose first record will be `first`.
    pub fn create(dir: &Path, first: u64) -> io::Result<Segment> {
        let path = dir.join(file_name(first));
        let file = OpenOptions::new().read(true).append(true).create_new(true).open(&path)?;
        Ok(Segment { first, path, file, offsets: Vec::new(), len: 0 })
    }

    /// Opens `path` (named by [`file_name`] for `first`) and keeps its records up to the first that is torn,
    /// corrupt or out of sequence; the rest is cut off the file.
    pub fn open(path: PathBuf, first: u64) -> io::Result<(Segment, Option<Cut>)> {
        let file = OpenOptions::new().read(true).append(true).open(&path)?;
        let bytes = fs::read(&path)?;
        let mut offsets = Vec::new();
        let mut offset = 0;
        let mut damage = None;
        while offset < bytes.len() {
            match record::check(&bytes[offset..], first + offsets.len() as u64) {
                Ok(len) => {
                    offsets.push(u32::try_from(offset).map_err(|_| io::Error::other("segment over 4 GiB"))?);
                    offset += len;
                }
                Err(found) => {
                    damage = Some(found);
                    break;
                }
            }
        }
        let cut = damage.map(|damage| Cut { damage, bytes: (bytes.len() - offset) as u64 });
        if cut.is_some() {
            file.set_len(offset as u64)?;
            file.sync_all()?;
        }
        Ok((Segment { first, path, file, offsets, len: offset as u64 }, cut))
    }

    pub fn first(&self) -> u64 {
        self.first
    }

    /// The seq after its last record.
    pub fn end(&self) -> u64 {
        self.first + self.offsets.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Bytes on disk.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Appends record `self.end()`, encoded; on failure the file is cut back so that no partial record stays.
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let offset = u32::try_from(self.len).map_err(|_| io::Error::other("segment over 4 GiB"))?;
        if let Err(error) = (&self.file).write_all(bytes) {
            // Best effort: a tail left behind is cut at the next open anyway.
            let _ = self.file.set_len(self.len);
            return Err(error);
        }
        self.offsets.push(offset);
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// The encoded record `seq`, if this segment holds it.
    pub fn read(&self, seq: u64) -> io::Result<Option<Vec<u8>>> {
        let Some(index) = seq.checked_sub(self.first).and_then(|index| usize::try_from(index).ok()) else {
            return Ok(None);
        };
        let Some(&start) = self.offsets.get(index) else { return Ok(None) };
        let end = self.offsets.get(index + 1).map_or(self.len, |&next| u64::from(next));
        let mut bytes = vec![0; (end - u64::from(start)) as usize];
        self.file.read_exact_at(&mut bytes, u64::from(start))?;
        Ok(Some(bytes))
    }

    /// Makes the appended records durable.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    pub fn remove(self) -> io::Result<()> {
        fs::remove_file(&self.path)
    }
}

/// The file name of the segment whose first record is `first`.
pub fn file_name(first: u64) -> String {
    format!("{first:020}.{EXTENSION}")
}

/// The first seq of a segment file name; `None` for other files.
pub fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(EXTENSION)?.strip_suffix('.')?;
    if digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()) { digits.parse().ok() } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_other_files_are_ignored() {
        assert_eq!(file_name(42), "00000000000000000042.seg");
        assert_eq!(parse_name(&file_name(42)), Some(42));
        assert_eq!(parse_name(&file_name(u64::MAX)), Some(u64::MAX));
        for other in ["acked", "lock", "42.seg", "00000000000000000042.seg.tmp", "0000000000000000004x.seg"] {
            assert_eq!(parse_name(other), None, "{other}");
        }
    }

    #[test]
    fn appended_records_read_back_after_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut segment = Segment::create(dir.path(), 5).expect("created");
        let records: Vec<Vec<u8>> =
            (5..8).map(|seq| record::encode(seq, seq * 10, 1, "t", &[seq as u8; 3]).expect("fits")).collect();
        for bytes in &records {
            segment.append(bytes).expect("appended");
        }
        assert_eq!((segment.end(), segment.len()), (8, records.iter().map(|r| r.len() as u64).sum()));
        assert_eq!(segment.read(6).expect("read").as_ref(), Some(&records[1]));
        assert_eq!(segment.read(8).expect("read"), None);
        assert_eq!(segment.read(4).expect("read"), None);
        let path = dir.path().join(file_name(5));
        drop(segment);
        let (reopened, cut) = Segment::open(path, 5).expect("opened");
        assert_eq!(cut, None);
        assert_eq!(reopened.end(), 8);
        assert_eq!(reopened.read(7).expect("read").as_ref(), Some(&records[2]));
    }
}
