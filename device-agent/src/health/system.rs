//! Process and board statistics from Linux's `/proc` and `/sys`. The parsers are pure functions over the
//! files' text; where a file is missing or unreadable (another OS, a locked-down container) the value is
//! reported as 0 or `None` rather than failing the health report.

use std::path::Path;
use std::time::{Duration, Instant};

/// One reading of the process and board.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SystemSample {
    /// Seconds since the process started.
    pub uptime_s: u64,
    /// Process CPU time over the interval since the previous sample, in percent of one core.
    pub cpu_percent: f32,
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
    pub temperature_c: Option<f32>,
}

/// Takes [`SystemSample`]s, remembering the CPU time of the previous one.
#[derive(Debug)]
pub struct SystemSampler {
    /// For uptime where `/proc` can't give the process's start.
    created: Instant,
    ticks_per_s: u64,
    last_cpu: (u64, Instant),
}

impl SystemSampler {
    pub fn new() -> SystemSampler {
        let now = Instant::now();
        let ticks = read_proc("/proc/self/stat").as_deref().and_then(stat_cpu_ticks).unwrap_or(0);
        SystemSampler { created: now, ticks_per_s: clock_ticks_per_s(), last_cpu: (ticks, now) }
    }

    pub fn sample(&mut self) -> SystemSample {
        let now = Instant::now();
        let stat = read_proc("/proc/self/stat").unwrap_or_default();
        let ticks = stat_cpu_ticks(&stat).unwrap_or(0);
        let (last_ticks, last_at) = self.last_cpu;
        self.last_cpu = (ticks, now);
        let status = read_proc("/proc/self/status").unwrap_or_default();
        let since_boot = read_proc("/proc/uptime").as_deref().and_then(boot_uptime_s);
        let uptime_s = since_boot
            .zip(stat_start_ticks(&stat))
            .and_then(|(since_boot, start)| process_uptime_s(since_boot, start, self.ticks_per_s))
            .unwrap_or_else(|| now.saturating_duration_since(self.created).as_secs());
        SystemSample {
            uptime_s,
            cpu_percent: cpu_percent(ticks.saturating_sub(last_ticks), self.ticks_per_s, now - last_at),
            rss_bytes: status_kib(&status, "VmRSS").map_or(0, |kib| kib * 1024),
            peak_rss_bytes: status_kib(&status, "VmHWM").map_or(0, |kib| kib * 1024),
            temperature_c: board_temperature_c(Path::new("/sys/class/thermal")),
        }
    }
}

fn read_proc(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The peak resident set size of this process so far (`VmHWM`), `None` where `/proc` can't tell.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status_kib(&status, "VmHWM").map(|kib| kib * 1024)
}

/// This process's user plus system CPU time so far, all threads (clock-tick resolution), `None` where `/proc`
/// can't tell.
pub fn cpu_time() -> Option<Duration> {
    let ticks = stat_cpu_ticks(&read_proc("/proc/self/stat")?)?;
    Some(Duration::from_secs_f64(ticks as f64 / clock_ticks_per_s() as f64))
}

/// The unit of `/proc/self/stat` times (`sysconf(_SC_CLK_TCK)`).
fn clock_ticks_per_s() -> u64 {
    rustix::param::clock_ticks_per_second()
}

/// User plus system CPU time (clock ticks) from the text of `/proc/<pid>/stat`: fields 14 and 15.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    Some(stat_field(stat, 14)? + stat_field(stat, 15)?)
}

/// When the process started, in clock ticks after boot: field 22 of `/proc/<pid>/stat`.
fn stat_start_ticks(stat: &str) -> Option<u64> {
    stat_field(stat, 22)
}

/// Numeric field `number` (1-based, as in proc(5)) of `/proc/<pid>/stat`, from field 3 on.
fn stat_field(stat: &str, number: usize) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces and parentheses itself, so fields
    // are counted from the last ')', after which field 3 comes first.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(number.checked_sub(3)?)?.parse().ok()
}

/// Seconds since boot: the first number of `/proc/uptime`.
fn boot_uptime_s(uptime: &str) -> Option<f64> {
    uptime.split_whitespace().next()?.parse().ok().filter(|seconds: &f64| seconds.is_finite())
}

/// Seconds the process has run, from the time since boot and its start in ticks after boot.
fn process_uptime_s(since_boot_s: f64, start_ticks: u64, ticks_per_s: u64) -> Option<u64> {
    let started_s = start_ticks as f64 / ticks_per_s as f64;
    (ticks_per_s > 0 && since_boot_s >= started_s).then_some((since_boot_s - started_s) as u64)
}

/// CPU time over wall time, in percent of one core.
fn cpu_percent(ticks: u64, ticks_per_s: u64, elapsed: Duration) -> f32 {
    let seconds = elapsed.as_secs_f64();
    if seconds <= 0.0 || ticks_per_s == 0 {
        return 0.0;
    }
    (ticks as f64 / ticks_per_s as f64 / seconds * 100.0) as f32
}

/// A `kB` value of `/proc/<pid>/status`, such as `VmRSS:     1234 kB`.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// The hottest `thermal_zone*/temp` under `thermal_dir`, in °C.
fn board_temperature_c(thermal_dir: &Path) -> Option<f32> {
    let zones = std::fs::read_dir(thermal_dir).ok()?;
    let readings: Vec<String> = zones
        .filter_map(Result::ok)
        .filter(|zone| zone.file_name().to_string_lossy().starts_with("thermal_zone"))
        // Some zones fail to read (sensor asleep); they are skipped, not fatal.
        .filter_map(|zone| std::fs::read_to_string(zone.path().join("temp")).ok())
        .collect();
    max_temperature_c(readings.iter().map(String::as_str))
}

/// The highest of thermal-zone readings in millidegrees Celsius; unparsable readings are ignored.
fn max_temperature_c<'a>(millidegrees: impl Iterator<Item = &'a str>) -> Option<f32> {
    millidegrees.filter_map(|reading| reading.trim().parse::<i64>().ok()).max().map(|milli| milli as f32 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_ticks_counts_fields_after_the_name() {
        let stat = "12345 (device-agent) S 1 12345 12345 0 -1 4194560 2310 0 0 0 \
                    731 215 0 0 20 0 9 0 123456 456789012 4321 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 17 3 0 0";
        assert_eq!(stat_cpu_ticks(stat), Some(731 + 215));
        // A name with spaces and parentheses.
        let tricky = "7 (a) b (c) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 1 1 1";
        assert_eq!(stat_cpu_ticks(tricky), Some(11));
        assert_eq!(stat_cpu_ticks("7 (short) R 1 2"), None);
        assert_eq!(stat_cpu_ticks("no parenthesis"), None);
        assert_eq!(stat_cpu_ticks("1 (x) R 1 1 1 0 -1 0 0 0 0 0 utime 6"), None);
    }

    #[test]
    fn process_uptime_from_boot_and_start() {
        let stat = "12345 (device-agent) S 1 12345 12345 0 -1 4194560 2310 0 0 0 \
                    731 215 0 0 20 0 9 0 123456 456789012 4321";
        assert_eq!(stat_start_ticks(stat), Some(123_456));
        assert_eq!(stat_start_ticks("7 (short) R 1 2"), None);
        assert_eq!(boot_uptime_s("1300.50 5000.25\n"), Some(1300.5));
        assert_eq!(boot_uptime_s("soon"), None);
        assert_eq!(boot_uptime_s(""), None);
        assert_eq!(process_uptime_s(1300.5, 123_456, 100), Some(65));
        // A start after "now" (clock trouble) or no tick rate is no answer, not a wrap.
        assert_eq!(process_uptime_s(10.0, 123_456, 100), None);
        assert_eq!(process_uptime_s(10.0, 0, 0), None);
    }

    #[test]
    fn status_values_in_kib() {
        let status =
            "Name:\tdevice-agent\nVmPeak:\t  200000 kB\nVmHWM:\t   51234 kB\nVmRSS:\t   40960 kB\nThreads:\t9\n";
        assert_eq!(status_kib(status, "VmRSS"), Some(40960));
        assert_eq!(status_kib(status, "VmHWM"), Some(51234));
        assert_eq!(status_kib(status, "VmSwap"), None);
        // A key that is a prefix of another is not confused with it.
        assert_eq!(status_kib("VmRSSx:\t 1 kB\n", "VmRSS"), None);
        assert_eq!(status_kib("VmRSS:\tlots kB\n", "VmRSS"), None);
    }

    #[test]
    fn cpu_percent_over_the_interval() {
        assert_eq!(cpu_percent(50, 100, Duration::from_secs(1)), 50.0);
        assert_eq!(cpu_percent(400, 100, Duration::from_secs(2)), 200.0);
        assert_eq!(cpu_percent(10, 100, Duration::ZERO), 0.0);
        assert_eq!(cpu_percent(10, 0, Duration::from_secs(1)), 0.0);
    }

    #[test]
    fn hottest_zone_in_degrees() {
        assert_eq!(max_temperature_c(["45000\n", "51500\n", "garbage", ""].into_iter()), Some(51.5));
        assert_eq!(max_temperature_c(["-5000\n"].into_iter()), Some(-5.0));
        assert_eq!(max_temperature_c(std::iter::empty()), None);
    }

    #[test]
    fn thermal_zones_from_a_directory() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (zone, reading) in
            [("thermal_zone0", "42000\n"), ("thermal_zone1", "47250\n"), ("cooling_device0", "99000\n")]
        {
            std::fs::create_dir(dir.path().join(zone)).expect("zone dir");
            std::fs::write(dir.path().join(zone).join("temp"), reading).expect("temp file");
        }
        std::fs::create_dir(dir.path().join("thermal_zone2")).expect("zone without temp");
        assert_eq!(board_temperature_c(dir.path()), Some(47.25));
        assert_eq!(board_temperature_c(&dir.path().join("absent")), None);
    }

    #[test]
    fn sampling_this_process() {
        let mut sampler = SystemSampler::new();
        let sample = sampler.sample();
        let stat = read_proc("/proc/self/stat").expect("Linux has /proc/self/stat");
        assert!(stat_start_ticks(&stat).is_some() && boot_uptime_s(&read_proc("/proc/uptime").unwrap()).is_some());
        assert!(sample.rss_bytes > 0 && sample.peak_rss_bytes >= sample.rss_bytes, "{sample:?}");
        assert!(sample.cpu_percent >= 0.0);
        assert!(peak_rss_bytes().is_some_and(|peak| peak >= sample.rss_bytes));
        // Linux's USER_HZ is 100 on every architecture the agent builds for.
        assert_eq!(clock_ticks_per_s(), 100);
    }
}
