//! The agent's memory over the run, from `/proc/<pid>/status`: VmRSS (resident now) and VmHWM (its peak).

use std::time::Duration;

const MIB: f64 = 1024.0 * 1024.0;

/// One reading, `at` into the run.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: Duration,
    pub rss_bytes: u64,
    pub peak_bytes: u64,
}

/// Reads VmRSS and VmHWM of `pid`; `None` when the process is gone.
pub fn sample(pid: u32, at: Duration) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |field: &str| {
        status.lines().find_map(|line| line.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
    };
    Some(Sample { at, rss_bytes: kib("VmRSS:")? * 1024, peak_bytes: kib("VmHWM:")? * 1024 })
}

/// The figures of the samples taken after the warm-up.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub samples: usize,
    pub start: Sample,
    pub end: Sample,
    pub median_bytes: u64,
    pub max_bytes: u64,
}

impl Summary {
    /// `None` with fewer than two samples after `warm_up`.
    pub fn of(samples: &[Sample], warm_up: Duration) -> Option<Summary> {
        let kept: Vec<Sample> = samples.iter().copied().filter(|s| s.at >= warm_up).collect();
        let (start, end) = (*kept.first()?, *kept.last()?);
        if kept.len() < 2 {
            return None;
        }
        let mut rss: Vec<u64> = kept.iter().map(|s| s.rss_bytes).collect();
        rss.sort_unstable();
        Some(Summary {
            samples: kept.len(),
            start,
            end,
            median_bytes: rss[rss.len() / 2],
            max_bytes: rss[rss.len() - 1],
        })
    }

    /// End minus start, in bytes (negative when the agent gave memory back).
    pub fn growth_bytes(&self) -> i64 {
        self.end.rss_bytes as i64 - self.start.rss_bytes as i64
    }

    /// The growth extrapolated to an hour.
    pub fn growth_per_hour_bytes(&self) -> f64 {
        let hours = (self.end.at - self.start.at).as_secs_f64() / 3600.0;
        self.growth_bytes() as f64 / hours
    }

    pub fn print(&self) {
        let mib = |bytes: u64| bytes as f64 / MIB;
        println!("\nAgent memory (VmRSS, {} samples after the warm-up):", self.samples);
        println!("  {:<26} {:>9.1} MiB  (at {:.0} s)", "start", mib(self.start.rss_bytes), self.start.at.as_secs_f64());
        println!("  {:<26} {:>9.1} MiB", "median", mib(self.median_bytes));
        println!("  {:<26} {:>9.1} MiB", "max", mib(self.max_bytes));
        println!("  {:<26} {:>9.1} MiB  (at {:.0} s)", "end", mib(self.end.rss_bytes), self.end.at.as_secs_f64());
        println!("  {:<26} {:>+9.1} MiB", "growth, end - start", self.growth_bytes() as f64 / MIB);
        println!("  {:<26} {:>+9.1} MiB", "growth per hour", self.growth_per_hour_bytes() / MIB);
        println!("  {:<26} {:>9.1} MiB", "peak (VmHWM) at the end", mib(self.end.peak_bytes));
    }
}
