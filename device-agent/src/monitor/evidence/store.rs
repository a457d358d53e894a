//! The candidates of one source on disk: `<directory>/<source>/<candidate>/`, each holding its samples and a
//! `candidate.json`. A candidate is written in `.tmp-<candidate>/` and renamed into place, so a reader (or the
//! next start) sees all of it or nothing; a temporary left by a crash is removed at open.

use protocol::wire::{RetrainCandidate, parse_candidate_id as parse_id};
use std::io;
use std::path::{Path, PathBuf};

/// The announcement of a candidate, in its directory.
pub const CANDIDATE_FILE: &str = "candidate.json";
const TEMP_PREFIX: &str = ".tmp-";

/// A candidate on disk, by what it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    id: String,
    /// `(at_ms, n)` of its id `<at_ms>-<n>`: oldest first.
    order: (u64, u64),
    samples: u64,
    bytes: u64,
}

/// The candidates of one source.
#[derive(Debug)]
pub(super) struct Store {
    dir: PathBuf,
    /// Oldest first.
    stored: Vec<Stored>,
}

impl Store {
    /// Opens (creating it) `dir`, removes what an interrupted write left, and counts the candidates there.
    pub fn open(dir: PathBuf) -> io::Result<Store> {
        std::fs::create_dir_all(&dir)?;
        let mut stored = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(TEMP_PREFIX) {
                std::fs::remove_dir_all(entry.path())?;
            } else if let Some(order) = parse_id(name)
                && entry.file_type()?.is_dir()
            {
                let (samples, bytes) = measure(&entry.path())?;
                stored.push(Stored { id: name.to_owned(), order, samples, bytes });
            }
        }
        stored.sort_by_key(|candidate| candidate.order);
        Ok(Store { dir, stored })
    }

    /// Samples and bytes on disk.
    pub fn totals(&self) -> (u64, u64) {
        self.stored.iter().fold((0, 0), |(samples, bytes), c| (samples + c.samples, bytes + c.bytes))
    }

    /// `<at_ms>-<n>` with the smallest `n` no candidate here has.
    pub fn free_id(&self, at_ms: u64) -> String {
        let mut n = 0;
        while self.stored.iter().any(|candidate| candidate.order == (at_ms, n)) {
            n += 1;
        }
        format!("{at_ms}-{n}")
    }

    /// Writes `candidate` with its sample files (`(id, bytes)`), all or nothing.
    pub fn write(&mut self, candidate: &RetrainCandidate, files: &[(&str, &[u8])]) -> io::Result<()> {
        let order = parse_id(&candidate.candidate).ok_or_else(|| io::Error::other("not a candidate id"))?;
        let temp = self.dir.join(format!("{TEMP_PREFIX}{}", candidate.candidate));
        let written = write_files(&temp, candidate, files).and_then(|()| {
            std::fs::rename(&temp, self.dir.join(&candidate.candidate))?;
            // The rename is durable once the directory is.
            std::fs::File::open(&self.dir)?.sync_all()
        });
        if let Err(error) = written {
            let _ = std::fs::remove_dir_all(&temp);
            return Err(error);
        }
        let (samples, bytes) = measure(&self.dir.join(&candidate.candidate))?;
        self.stored.push(Stored { id: candidate.candidate.clone(), order, samples, bytes });
        self.stored.sort_by_key(|stored| stored.order);
        Ok(())
    }

    /// Deletes the oldest candidates, except `keep`, until the total is within `max_bytes`.
    pub fn trim(&mut self, max_bytes: u64, keep: Option<&str>) -> io::Result<()> {
        while self.totals().1 > max_bytes {
            let Some(oldest) = self.stored.iter().position(|candidate| Some(candidate.id.as_str()) != keep) else {
                return Ok(());
            };
            std::fs::remove_dir_all(self.dir.join(&self.stored[oldest].id))?;
            self.stored.remove(oldest);
        }
        Ok(())
    }
}

fn write_files(temp: &Path, candidate: &RetrainCandidate, files: &[(&str, &[u8])]) -> io::Result<()> {
    if temp.exists() {
        std::fs::remove_dir_all(temp)?;
    }
    std::fs::create_dir(temp)?;
    for (id, bytes) in files {
        std::fs::write(temp.join(id), bytes)?;
    }
    std::fs::write(temp.join(CANDIDATE_FILE), announcement_json(candidate)?)
}

/// `candidate.json`'s bytes.
pub(super) fn announcement_json(candidate: &RetrainCandidate) -> io::Result<Vec<u8>> {
    serde_json::to_vec_pretty(candidate).map_err(io::Error::other)
}

/// Sample files and bytes of all files in a candidate's directory.
fn measure(dir: &Path) -> io::Result<(u64, u64)> {
    let (mut samples, mut bytes) = (0, 0);
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        bytes += entry.metadata()?.len();
        if entry.file_name() != CANDIDATE_FILE {
            samples += 1;
        }
    }
    Ok((samples, bytes))
}
