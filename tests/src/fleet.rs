//! Fleets in the tests: `edgectl fleet simulate` as a child process, and what a process costs (CPU time, peak
//! memory) read from `/proc`, for the figures the cluster tests report.

use crate::json_child::JsonChild;
use serde_json::Value;
use std::ffi::OsString;
use std::time::{Duration, Instant};

/// The flags of simulated devices in `group` that run `activity-classifier` 1.0.0 and trust `trusted_key`, the
/// fleet every rollout test starts from.
pub fn activity_fleet<'a>(group: &'a str, trusted_key: &'a str) -> [&'a str; 8] {
    ["--group", group, "--model", "activity-classifier", "--version", "1.0.0", "--trusted-key", trusted_key]
}

/// `edgectl fleet simulate --json` running as a child process; its stdout lines are collected as they come.
pub struct Simulator(JsonChild);

impl Simulator {
    /// `edgectl fleet simulate --broker <b>... --json <args>`, and waits until it says every device is ready.
    pub fn start(brokers: &[String], args: &[&str], ready_within: Duration) -> Simulator {
        let mut all: Vec<OsString> = vec!["fleet".into(), "simulate".into(), "--json".into()];
        for broker in brokers {
            all.extend(["--broker".into(), broker.into()]);
        }
        all.extend(args.iter().map(OsString::from));
        let mut simulator = Simulator(JsonChild::edgectl(&all, "warn"));
        let deadline = Instant::now() + ready_within;
        while !simulator.lines().iter().any(|line| line["event"] == "ready") {
            assert!(simulator.running(), "the simulator exited before it was ready:\n{}", simulator.stderr());
            assert!(
                Instant::now() < deadline,
                "the simulator was not ready within {ready_within:?}:\n{}",
                simulator.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        simulator
    }

    /// The JSON lines printed so far.
    pub fn lines(&mut self) -> &[Value] {
        self.0.lines()
    }

    pub fn running(&mut self) -> bool {
        self.0.running()
    }

    pub fn pid(&self) -> u32 {
        self.0.pid()
    }

    pub fn stderr(&self) -> String {
        self.0.stderr()
    }

    /// SIGTERM, and the exit within `timeout`.
    pub fn terminate(mut self, timeout: Duration) -> std::process::ExitStatus {
        self.0.sigterm();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.0.exited() {
                return status;
            }
            assert!(Instant::now() < deadline, "the simulator did not stop within {timeout:?}:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// What a process has cost so far: CPU time (user + system) and peak resident memory.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub cpu_s: f64,
    pub peak_rss_bytes: u64,
}

impl Usage {
    /// Read from `/proc/<pid>`; `None` once the process is gone.
    pub fn of(pid: u32) -> Option<Usage> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let peak_kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())?;
        let ticks_per_s = rustix::param::clock_ticks_per_second() as f64;
        Some(Usage { cpu_s: ticks as f64 / ticks_per_s, peak_rss_bytes: peak_kib * 1024 })
    }

    /// CPU time and peak memory as one line: `12.3 s CPU, 45.6 MiB peak`.
    pub fn describe(&self) -> String {
        format!("{:.1} s CPU, {:.1} MiB peak", self.cpu_s, self.peak_rss_bytes as f64 / (1024.0 * 1024.0))
    }
}
