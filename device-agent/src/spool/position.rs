//! The `acked` file of a log: the seq below which everything is acknowledged, so that a restart re-sends only
//! what came after. 12 bytes (`seq: u64 LE | crc32: u32 LE`), rewritten in place rather than renamed: the page
//! cache folds repeated writes into one, which spares the flash, and a torn or lost write only means re-sending
//! records the broker already has (duplicates, never a loss).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

const FILE_NAME: &str = "acked";
const BYTES: usize = 12;

#[derive(Debug)]
pub struct AckedFile {
    file: File,
    /// What the file holds.
    written: u64,
}

impl AckedFile {
    /// Opens (or creates) the file in `dir`; the position it holds, 0 when it holds none that is sound.
    pub fn open(dir: &Path) -> io::Result<(AckedFile, u64)> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(dir.join(FILE_NAME))?;
        let mut bytes = [0; BYTES];
        let position = match file.read_exact_at(&mut bytes, 0) {
            Ok(()) => decode(&bytes).unwrap_or(0),
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => 0,
            Err(error) => return Err(error),
        };
        Ok((AckedFile { file, written: position }, position))
    }

    /// Records `position` unless the file already says so; `sync` makes it durable.
    pub fn write(&mut self, position: u64, sync: bool) -> io::Result<()> {
        if position == self.written {
            return Ok(());
        }
        self.file.write_all_at(&encode(position), 0)?;
        if sync {
            self.file.sync_data()?;
        }
        self.written = position;
        Ok(())
    }
}

fn encode(position: u64) -> [u8; BYTES] {
    let mut bytes = [0; BYTES];
    bytes[..8].copy_from_slice(&position.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..8]);
    bytes[8..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

fn decode(bytes: &[u8; BYTES]) -> Option<u64> {
    let (position, crc) = bytes.split_at(8);
    let position = u64::from_le_bytes(position.try_into().ok()?);
    (crc32fast::hash(&position.to_le_bytes()).to_le_bytes() == crc).then_some(position)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_position_survives_a_reopen_and_damage_reads_as_zero() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut file, position) = AckedFile::open(dir.path()).expect("created");
        assert_eq!(position, 0);
        file.write(1234, true).expect("written");
        drop(file);
        assert_eq!(AckedFile::open(dir.path()).expect("opened").1, 1234);

        let path = dir.path().join(FILE_NAME);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[3] ^= 0x10;
        std::fs::write(&path, &bytes).expect("damaged");
        assert_eq!(AckedFile::open(dir.path()).expect("opened").1, 0);
        std::fs::write(&path, &bytes[..5]).expect("torn");
        assert_eq!(AckedFile::open(dir.path()).expect("opened").1, 0);
    }
}
