//! The spool: store-and-forward between the producers (outboxes, health) and the MQTT link. Every message is
//! appended to an on-disk log of its class (one `write` under a mutex, never waiting for the network), and the
//! [`forwarder`] thread publishes from the logs, deleting a segment once the broker has acknowledged every
//! record in it. A SIGKILL loses nothing (appended data is in the page cache); what a power cut may lose is
//! set by `spool.fsync`. Layout, budgets and figures: docs/operations.md.
//!
//! ```text
//! <dir>/lock                          held by the running agent
//! <dir>/<class>/acked                 everything below this seq is acknowledged
//! <dir>/<class>/<first seq>.seg       records, oldest segment first
//! ```

pub mod bench;
mod budget;
mod class_log;
mod delivery;
pub mod forwarder;
mod position;
mod record;
mod segment;

use crate::clock::unix_time_ms;
use crate::config::{Fsync, SpoolConfig};
use budget::{Limits, Room};
use class_log::ClassLog;
use forwarder::Inbox;
use protocol::wire::SpoolHealth;
use std::fs::{self, File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

pub use record::Record;

/// The kind of message a log holds; each has its own log and byte budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Predictions,
    Errors,
    Health,
}

impl Class {
    pub const ALL: [Class; 3] = [Class::Predictions, Class::Errors, Class::Health];

    fn index(self) -> usize {
        self as usize
    }

    /// The log's directory name.
    fn name(self) -> &'static str {
        match self {
            Class::Predictions => "predictions",
            Class::Errors => "errors",
            Class::Health => "health",
        }
    }
}

/// Why the spool could not open or take a message.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The directory or a file in it can't be created, read or written (read-only, full, failing).
    #[error("spool {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Another agent runs on this spool.
    #[error("spool {}: held by another process", .0.display())]
    Locked(PathBuf),
    #[error(transparent)]
    TooLarge(#[from] record::TooLarge),
}

/// The logs of every class and the policy they are written by.
#[derive(Debug)]
pub(crate) struct Logs {
    classes: [ClassLog; 3],
    limits: Limits,
    segment_bytes: u64,
    fsync: Fsync,
}

impl Logs {
    pub(crate) fn class(&mut self, class: Class) -> &mut ClassLog {
        &mut self.classes[class.index()]
    }

    pub(crate) fn fsync(&self) -> Fsync {
        self.fsync
    }

    /// Drops oldest segments until `need` more bytes of `class` fit the budgets; false when they never can.
    fn make_room(&mut self, class: Class, need: u64) -> io::Result<bool> {
        loop {
            let sizes = self.classes.each_ref().map(ClassLog::bytes);
            match self.limits.room(sizes, class, need) {
                Room::Fits => return Ok(true),
                Room::Never => return Ok(false),
                Room::DropOldest(victim) => {
                    if !self.class(victim).drop_oldest()? {
                        return Ok(false);
                    }
                }
            }
        }
    }
}

/// The open spool; shared by every producer and the forwarder.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    logs: Mutex<Logs>,
    /// Wakes the forwarder.
    inbox: Inbox,
    write_errors: AtomicU64,
    /// Holds the directory's lock while the spool is open.
    _lock: File,
}

impl Spool {
    /// Opens (or creates) the spool in `config.dir`, recovering every log: damaged tails are cut, what the
    /// broker acknowledged is skipped, the rest is backlog.
    pub fn open(config: &SpoolConfig) -> Result<Spool, SpoolError> {
        let dir = config.dir.clone();
        let io_error = |path: &Path| {
            let path = path.to_owned();
            move |source| SpoolError::Io { path, source }
        };
        fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let lock_path = dir.join("lock");
        let lock = File::create(&lock_path).map_err(io_error(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(SpoolError::Locked(dir)),
            Err(TryLockError::Error(source)) => return Err(SpoolError::Io { path: lock_path, source }),
        }
        let open = |class: Class| {
            let path = dir.join(class.name());
            ClassLog::open(&path).map_err(io_error(&path))
        };
        let classes = [open(Class::Predictions)?, open(Class::Errors)?, open(Class::Health)?];
        let mut per_class = [0; 3];
        per_class[Class::Predictions.index()] = config.predictions_max_bytes;
        per_class[Class::Errors.index()] = config.errors_max_bytes;
        per_class[Class::Health.index()] = config.health_max_bytes;
        let logs = Logs {
            classes,
            limits: Limits { per_class, total: config.max_bytes },
            segment_bytes: config.segment_bytes,
            fsync: config.fsync,
        };
        Ok(Spool { dir, logs: Mutex::new(logs), inbox: Inbox::default(), write_errors: AtomicU64::new(0), _lock: lock })
    }

    /// Appends a message. Over budget, the oldest segments go first (and are counted as dropped); a message
    /// larger than a budget on its own is dropped and counted. `Err` when it could not be written.
    pub fn append(&self, class: Class, topic: &str, qos: u8, payload: &[u8]) -> Result<(), SpoolError> {
        let result = self.write(class, topic, qos, payload);
        match &result {
            Ok(()) => self.inbox.appended(),
            Err(SpoolError::Io { .. }) => {
                self.write_errors.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {}
        }
        result
    }

    fn write(&self, class: Class, topic: &str, qos: u8, payload: &[u8]) -> Result<(), SpoolError> {
        let mut logs = self.lock();
        let log_dir = self.dir.join(class.name());
        let io_error = |source| SpoolError::Io { path: log_dir.clone(), source };
        let bytes = record::encode(logs.class(class).head(), unix_time_ms(), qos, topic, payload)?;
        if !logs.make_room(class, bytes.len() as u64).map_err(io_error)? {
            logs.class(class).refused();
            log::warn!(class = class.name(), bytes = bytes.len(); "Message larger than the spool's budget, dropped.");
            return Ok(());
        }
        let (segment_bytes, fsync) = (logs.segment_bytes, logs.fsync);
        logs.class(class).append(&bytes, segment_bytes, fsync).map_err(io_error)
    }

    /// The spool in a health report.
    pub fn health(&self) -> SpoolHealth {
        let now_ms = unix_time_ms();
        let mut logs = self.lock();
        let mut health = SpoolHealth {
            records: 0,
            bytes: 0,
            oldest_age_ms: 0,
            dropped_predictions: logs.class(Class::Predictions).dropped(),
            dropped_errors: logs.class(Class::Errors).dropped(),
            dropped_health: logs.class(Class::Health).dropped(),
            write_errors: self.write_errors.load(Ordering::Relaxed),
        };
        for log in &logs.classes {
            health.records += log.unacked();
            health.bytes += log.bytes();
            if let Some(created_ms) = log.oldest_created_ms() {
                health.oldest_age_ms = health.oldest_age_ms.max(now_ms.saturating_sub(created_ms));
            }
        }
        health
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Logs> {
        self.logs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn inbox(&self) -> &Inbox {
        &self.inbox
    }
}

#[cfg(test)]
mod tests;
