//! `device-agent spool-bench`: what the spool costs on this machine's storage. Appends records of a
//! prediction's size under each fsync policy (µs per record, bytes written per record), then replays them
//! through the forwarder to a link that acknowledges at once (the spool's own ceiling on the replay rate).

use super::forwarder::{Forwarder, Link};
use super::{Class, Record, Spool};
use crate::config::{Fsync, SpoolConfig};
use crate::mqtt::{Outcome, PublishError};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `spool-bench`'s arguments.
#[derive(clap::Args)]
pub struct SpoolBenchArgs {
    /// A directory on the storage to measure (a temporary directory is made in it); default: the system's
    /// temporary directory.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Records appended per policy (fewer for `always`: one tenth).
    #[arg(long, default_value_t = 20_000)]
    records: u64,
    /// Payload bytes per record (a JSON classification prediction is about 500).
    #[arg(long, default_value_t = 500)]
    payload_bytes: usize,
}

const TOPIC: &str = "devices/bench/predictions/source";

pub fn main(args: SpoolBenchArgs) -> anyhow::Result<ExitCode> {
    let parent = args.dir.unwrap_or_else(std::env::temp_dir);
    let payload = vec![b'x'; args.payload_bytes];
    println!("{} payload bytes, topic {TOPIC:?}", args.payload_bytes);
    println!("{:<9} {:>8} {:>14} {:>12} {:>17}", "fsync", "records", "µs per record", "records/s", "bytes per record");
    for fsync in [Fsync::Never, Fsync::Interval, Fsync::Always] {
        let records = if fsync == Fsync::Always { (args.records / 10).max(1) } else { args.records };
        let dir = tempfile::tempdir_in(&parent)?;
        let spool = Spool::open(&bench_config(dir.path().to_owned(), fsync))?;
        let started = Instant::now();
        for _ in 0..records {
            spool.append(Class::Predictions, TOPIC, 1, &payload)?;
        }
        // The interval policy syncs on the forwarder's clock; one sync per run is what it adds.
        if fsync == Fsync::Interval {
            spool.lock().class(Class::Predictions).sync()?;
        }
        let elapsed = started.elapsed();
        let bytes = spool.health().bytes;
        println!(
            "{:<9} {records:>8} {:>14.1} {:>12.0} {:>17.0}",
            format!("{fsync:?}").to_lowercase(),
            elapsed.as_secs_f64() * 1e6 / records as f64,
            records as f64 / elapsed.as_secs_f64(),
            bytes as f64 / records as f64
        );
        if fsync == Fsync::Never {
            replay(spool, records)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Replays `records` unsent records through the forwarder, uncapped, to a link that acknowledges at once.
fn replay(spool: Spool, records: u64) -> anyhow::Result<()> {
    let spool = Arc::new(spool);
    let link = Arc::new(Acknowledging(spool.clone()));
    let started = Instant::now();
    let running = Forwarder::new(spool.clone(), link, 32, 1e9, Duration::from_secs(1)).spawn()?;
    while spool.health().records > 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = started.elapsed();
    running.stop(Instant::now());
    println!(
        "replay: {records} records read, published and settled in {:.2} s: {:.0} records/s (the spool's ceiling; \
         spool.replay_rate caps it)",
        elapsed.as_secs_f64(),
        records as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

fn bench_config(dir: PathBuf, fsync: Fsync) -> SpoolConfig {
    let huge = 1 << 40;
    SpoolConfig {
        dir,
        fsync,
        max_bytes: huge,
        predictions_max_bytes: huge,
        errors_max_bytes: huge,
        health_max_bytes: huge,
        ..SpoolConfig::default()
    }
}

/// A link that is always up and acknowledges every publish at once.
struct Acknowledging(Arc<Spool>);

impl Link for Acknowledging {
    fn is_connected(&self) -> bool {
        true
    }

    fn publish(&self, _record: Record, _retain: bool, token: u64) -> Result<(), PublishError> {
        self.0.inbox().outcome(token, Outcome::Acknowledged);
        Ok(())
    }
}
