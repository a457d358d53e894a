//! One class's log: its segments in one directory (oldest first, the last one appended to), where it stands
//! with the broker ([`Delivery`]) and its `acked` file. A segment is deleted once every record in it is
//! acknowledged, or as a whole when a budget needs its bytes.

use super::delivery::Delivery;
use super::position::AckedFile;
use super::record::{self, Record};
use super::segment::{self, Cut, Segment};
use crate::config::Fsync;
use crate::update::fsutil::fsync_dir;
use std::collections::VecDeque;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct ClassLog {
    dir: PathBuf,
    segments: VecDeque<Segment>,
    /// The seq of the next record appended.
    head: u64,
    delivery: Delivery,
    acked_file: AckedFile,
    /// Bytes of all segments.
    bytes: u64,
    /// Unacknowledged records deleted to make room, or unreadable.
    dropped: u64,
    /// Records appended to the last segment since it was last synced.
    unsynced: bool,
    /// Segments created since the directory was last synced.
    dir_unsynced: bool,
}

impl ClassLog {
    /// Opens the log in `dir` (created if missing): scans every segment, cuts damaged tails, deletes what is
    /// acknowledged, and makes every unacknowledged record backlog.
    pub fn open(dir: &Path) -> io::Result<ClassLog> {
        fs::create_dir_all(dir)?;
        let (acked_file, acked) = AckedFile::open(dir)?;
        let mut found = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if let Some(first) = entry.file_name().to_str().and_then(segment::parse_name) {
                found.push((first, entry.path()));
            }
        }
        found.sort_unstable();
        let mut segments = VecDeque::new();
        for (first, path) in found {
            let (segment, cut) = Segment::open(path, first)?;
            if let Some(Cut { damage, bytes }) = cut {
                log::warn!(spool = dir.display().to_string(), segment = first; "Cut {bytes} bytes off a spool segment at a {damage:?} record.");
            }
            if segment.is_empty() || segment.end() <= acked {
                segment.remove()?;
            } else {
                segments.push_back(segment);
            }
        }
        let head = segments.back().map_or(acked, Segment::end).max(acked);
        let first_unacked = segments.front().map_or(head, Segment::first).max(acked);
        let mut delivery = Delivery::new(first_unacked, head);
        for (earlier, later) in segments.iter().zip(segments.iter().skip(1)) {
            delivery.skip(earlier.end()..later.first());
        }
        Ok(ClassLog {
            dir: dir.to_owned(),
            bytes: segments.iter().map(Segment::len).sum(),
            segments,
            head,
            delivery,
            acked_file,
            dropped: 0,
            unsynced: false,
            dir_unsynced: false,
        })
    }

    /// The seq the next record gets.
    pub fn head(&self) -> u64 {
        self.head
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Records neither acknowledged nor dropped.
    pub fn unacked(&self) -> u64 {
        self.delivery.unacked(self.head)
    }

    pub fn in_flight(&self) -> usize {
        self.delivery.in_flight()
    }

    pub fn has_backlog(&self) -> bool {
        self.delivery.has_backlog()
    }

    /// Appends `bytes`, record [`Self::head`] encoded, starting a new segment when the last one would grow
    /// past `segment_bytes` (a record larger than that gets a segment of its own).
    pub fn append(&mut self, bytes: &[u8], segment_bytes: u64, fsync: Fsync) -> io::Result<()> {
        let roll = self.segments.back().is_none_or(|last| {
            last.end() != self.head || (!last.is_empty() && last.len() + bytes.len() as u64 > segment_bytes)
        });
        if roll {
            // The full segment is made durable now, so only the last one can be unsynced.
            if self.unsynced && fsync != Fsync::Never {
                self.sync()?;
            }
            self.segments.push_back(Segment::create(&self.dir, self.head)?);
            self.dir_unsynced = true;
        }
        let Some(last) = self.segments.back_mut() else { return Err(io::Error::other("no segment to append to")) };
        last.append(bytes)?;
        self.head += 1;
        self.bytes += bytes.len() as u64;
        self.unsynced = true;
        if fsync == Fsync::Always {
            self.sync()?;
        }
        Ok(())
    }

    /// Makes what was appended (and the segments created) durable.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.unsynced
            && let Some(last) = self.segments.back()
        {
            last.sync()?;
        }
        self.unsynced = false;
        if self.dir_unsynced {
            fsync_dir(&self.dir)?;
        }
        self.dir_unsynced = false;
        Ok(())
    }

    /// Deletes the oldest segment, counting its unacknowledged records as dropped; false when there is none.
    pub fn drop_oldest(&mut self) -> io::Result<bool> {
        let Some(oldest) = self.segments.pop_front() else { return Ok(false) };
        self.dropped += self.delivery.drop_below(oldest.end());
        self.bytes -= oldest.len();
        if self.segments.is_empty() {
            self.unsynced = false;
        }
        oldest.remove()?;
        Ok(true)
    }

    /// The next live record to send, now in flight.
    pub fn next_live(&mut self) -> Option<u64> {
        self.delivery.next_live(self.head)
    }

    /// The next backlog record to send, now in flight.
    pub fn next_backlog(&mut self) -> Option<u64> {
        self.delivery.next_backlog()
    }

    /// The link is down: what is unsent joins the backlog.
    pub fn defer_live(&mut self) {
        self.delivery.defer_live(self.head);
    }

    /// Reads record `seq`.
    pub fn read(&self, seq: u64) -> Result<Record, String> {
        let index = self.segments.partition_point(|segment| segment.first() <= seq);
        let read = index.checked_sub(1).and_then(|index| self.segments.get(index)).map(|segment| segment.read(seq));
        match read {
            Some(Ok(Some(bytes))) => record::decode(&bytes).map_err(|damage| format!("{damage:?} record")),
            Some(Err(error)) => Err(error.to_string()),
            Some(Ok(None)) | None => Err("record not found".to_owned()),
        }
    }

    /// Record `seq`, in flight, can never be sent (gone bad since the log was opened): it is counted dropped
    /// and settled, so that it is never retried.
    pub fn discard(&mut self, seq: u64, why: &str) {
        log::error!(spool = self.dir.display().to_string(), seq; "Spool record dropped: {why}.");
        self.dropped += 1;
        self.acknowledged(seq);
    }

    /// A message that can never fit the budgets was refused: counted dropped.
    pub fn refused(&mut self) {
        self.dropped += 1;
    }

    /// The broker acknowledged `seq`: segments now wholly acknowledged are deleted (the last one is kept for
    /// appending).
    pub fn acknowledged(&mut self, seq: u64) {
        self.delivery.acknowledged(seq);
        while self.segments.len() > 1
            && self.segments.front().is_some_and(|oldest| oldest.end() <= self.delivery.acked_below())
        {
            let Some(oldest) = self.segments.pop_front() else { break };
            self.bytes -= oldest.len();
            if let Err(error) = oldest.remove() {
                log::warn!(spool = self.dir.display().to_string(); "Deleting an acknowledged spool segment: {error}.");
            }
        }
    }

    /// The link lost `seq`: it is sent again.
    pub fn lost(&mut self, seq: u64) {
        self.delivery.lost(seq);
    }

    /// When the oldest unacknowledged record was appended (Unix milliseconds); `None` when there is none.
    pub fn oldest_created_ms(&self) -> Option<u64> {
        let seq = self.delivery.acked_below();
        let index = self.segments.partition_point(|segment| segment.first() <= seq).checked_sub(1)?;
        let bytes = self.segments.get(index)?.read(seq).ok()??;
        record::decode(&bytes).ok().map(|record| record.created_ms)
    }

    /// Writes the acknowledged position, so that a restart skips what the broker has.
    pub fn persist_position(&mut self, sync: bool) -> io::Result<()> {
        self.acked_file.write(self.delivery.acked_below(), sync)
    }
}
