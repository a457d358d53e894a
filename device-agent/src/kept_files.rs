//! A directory of files kept per source (snapshots, large payloads), the oldest deleted beyond a count and a byte
//! budget.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// One source's files of one extension in a directory (which other sources may share: each prunes only its own
/// files).
#[derive(Debug)]
pub struct KeptFiles {
    dir: PathBuf,
    source: String,
    extension: &'static str,
    keep_files: usize,
    keep_bytes: u64,
}

impl KeptFiles {
    pub fn new(dir: PathBuf, source: &str, extension: &'static str, keep_files: usize, keep_bytes: u64) -> KeptFiles {
        KeptFiles { dir, source: source.to_owned(), extension, keep_files, keep_bytes }
    }

    /// The file of an input: `<source>-<captured_at_ms>-<seq>.<extension>`, the time zero-padded so that names
    /// sort oldest first (the sequence restarts at each start of the agent; the time does not).
    pub fn file_name(&self, captured_at_ms: u64, seq: u64) -> String {
        format!("{}-{captured_at_ms:013}-{seq}.{}", self.source, self.extension)
    }

    /// Writes `bytes` (through a temporary file and a rename: a reader never sees half a file), then deletes
    /// the source's oldest files beyond `keep_files` or `keep_bytes`. Returns the path written.
    pub fn store(&self, captured_at_ms: u64, seq: u64, bytes: &[u8]) -> io::Result<PathBuf> {
        fs::create_dir_all(&self.dir)?;
        let name = self.file_name(captured_at_ms, seq);
        let path = self.dir.join(&name);
        let partial = self.dir.join(format!(".{name}.partial"));
        fs::write(&partial, bytes)?;
        fs::rename(&partial, &path)?;
        self.prune()?;
        Ok(path)
    }

    /// Whether `name` is one of this source's files: `<source>-`, 13 digits, `-`, digits, `.<extension>` (so
    /// that source `door` leaves source `door-2`'s files alone).
    fn is_own(&self, name: &str) -> bool {
        let Some(rest) = name.strip_prefix(&self.source).and_then(|rest| rest.strip_prefix('-')) else {
            return false;
        };
        let suffix = rest.strip_suffix(self.extension).and_then(|rest| rest.strip_suffix('.'));
        let Some((time, seq)) = suffix.and_then(|rest| rest.split_once('-')) else {
            return false;
        };
        let digits = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
        time.len() == 13 && digits(time) && digits(seq)
    }

    fn prune(&self) -> io::Result<()> {
        let mut files: Vec<(String, u64)> = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if self.is_own(&name) {
                files.push((name, entry.metadata()?.len()));
            }
        }
        files.sort_unstable();
        let mut bytes: u64 = files.iter().map(|(_, len)| len).sum();
        let mut count = files.len();
        for (name, len) in files {
            if count <= self.keep_files && bytes <= self.keep_bytes {
                break;
            }
            remove(&self.dir.join(name))?;
            count -= 1;
            bytes -= len;
        }
        Ok(())
    }
}

/// Removes a file; one already gone (deleted by hand meanwhile) is not an error.
fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("readable")
            .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn keeps_the_newest_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = KeptFiles::new(dir.path().join("snaps"), "door", "jpg", 2, 1 << 20);
        for seq in 0..4 {
            let path = store.store(1_700_000_000_000 + seq * 1000, seq, b"jpeg").expect("stored");
            assert_eq!(fs::read(path).expect("written"), b"jpeg");
        }
        assert_eq!(names(&dir.path().join("snaps")), ["door-1700000002000-2.jpg", "door-1700000003000-3.jpg"]);
    }

    #[test]
    fn keeps_within_the_byte_budget_and_leaves_other_files_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("yard-0000000000001-0.jpg"), [0u8; 100]).expect("written");
        fs::write(dir.path().join("door-2-0000000000000-0.jpg"), [0u8; 100]).expect("written");
        fs::write(dir.path().join("notes.txt"), [0u8; 100]).expect("written");
        let store = KeptFiles::new(dir.path().to_owned(), "door", "jpg", 100, 250);
        for seq in 0..3 {
            store.store(seq, seq, &[0u8; 100]).expect("stored");
        }
        // Three of 100 bytes are over 250: the oldest goes.
        assert_eq!(
            names(dir.path()),
            [
                "door-0000000000001-1.jpg",
                "door-0000000000002-2.jpg",
                "door-2-0000000000000-0.jpg",
                "notes.txt",
                "yard-0000000000001-0.jpg"
            ]
        );
    }

    #[test]
    fn names_sort_by_capture_time() {
        let store = KeptFiles::new(PathBuf::new(), "door", "jpg", 1, 1);
        assert!(store.file_name(999, 5) < store.file_name(1_700_000_000_000, 0));
    }
}
