//! The resident set broken down by mapping, from `/proc/self/smaps`: the agent's binary, libonnxruntime, other
//! libraries, and anonymous memory (heap and ONNX Runtime's allocations). Taken at phases of `bench` (before
//! ONNX Runtime loads, after, once the session is built, after the first runs), the anonymous deltas split into
//! ONNX Runtime's environment, the session (weights and graph) and the first runs (arena and buffers).

use std::path::Path;

/// Resident bytes per kind of mapping at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RssSnapshot {
    pub binary: u64,
    pub onnxruntime: u64,
    pub other_libraries: u64,
    pub anonymous: u64,
}

impl RssSnapshot {
    /// This process now; all zero where `/proc` can't tell.
    pub fn take() -> RssSnapshot {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
        let exe = std::env::current_exe().ok();
        RssSnapshot::parse(&smaps, exe.as_deref())
    }

    /// Sums each mapping's `Rss:` by kind, from the text of a `smaps` file.
    fn parse(smaps: &str, exe: Option<&Path>) -> RssSnapshot {
        let mut snapshot = RssSnapshot::default();
        let mut kind = None;
        for line in smaps.lines() {
            if let Some(path) = mapping_path(line) {
                kind = Some(path);
                continue;
            }
            let (Some(path), Some(kib)) = (kind, line.strip_prefix("Rss:")) else { continue };
            let counted = match path {
                "" | "[heap]" => Some(&mut snapshot.anonymous),
                p if exe.is_some_and(|exe| Path::new(p) == exe) => Some(&mut snapshot.binary),
                p if p.contains("libonnxruntime") => Some(&mut snapshot.onnxruntime),
                p if p.starts_with('/') => Some(&mut snapshot.other_libraries),
                // The stack, vdso and vvar: small, and not ours to shrink.
                _ => None,
            };
            if let Some(total) = counted {
                *total += kib.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap_or(0) * 1024;
            }
        }
        snapshot
    }

    pub fn total(&self) -> u64 {
        self.binary + self.onnxruntime + self.other_libraries + self.anonymous
    }
}

/// The path of a mapping's header line (`start-end perms offset dev inode [path]`), `""` for anonymous memory;
/// `None` for the other lines.
fn mapping_path(line: &str) -> Option<&str> {
    let mut fields = line.splitn(6, ' ');
    let range = fields.next()?;
    let perms = fields.next()?;
    if !range.contains('-') || perms.len() != 4 || !range.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return None;
    }
    let _offset_dev_inode = (fields.next()?, fields.next()?, fields.next()?);
    Some(fields.next().unwrap_or("").trim())
}

/// Prints the breakdown from the snapshots at each phase.
pub fn print_breakdown(start: RssSnapshot, loaded: RssSnapshot, built: RssSnapshot, warm: RssSnapshot) {
    let mb = |bytes: u64| format!("{:.1} MB", bytes as f64 / 1e6);
    let delta = |after: u64, before: u64| {
        let d = after as i64 - before as i64;
        format!("{}{:.1} MB", if d < 0 { "-" } else { "+" }, d.unsigned_abs() as f64 / 1e6)
    };
    println!("RSS breakdown of the agent's pipeline (/proc/self/smaps; anonymous memory by phase):");
    println!("  {:<48}{:>10}", "binary (device-agent)", mb(warm.binary));
    println!("  {:<48}{:>10}", "libonnxruntime", mb(warm.onnxruntime));
    println!("  {:<48}{:>10}", "other libraries", mb(warm.other_libraries));
    println!("  {:<48}{:>10}", "anonymous before ONNX Runtime loads", mb(start.anonymous));
    println!("  {:<48}{:>10}", "ONNX Runtime's environment", delta(loaded.anonymous, start.anonymous));
    println!("  {:<48}{:>10}", "session: weights and graph", delta(built.anonymous, loaded.anonymous));
    println!(
        "  {:<48}{:>10}",
        "first runs: arena, ORT's and the agent's buffers",
        delta(warm.anonymous, built.anonymous)
    );
    println!("  {:<48}{:>10}", "total after the first runs", mb(warm.total()));
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0a00000-55d0c0b00000 r-xp 00001000 08:01 1234 /usr/bin/device-agent
Size:               1024 kB
Rss:                 600 kB
7f0000000000-7f0001000000 r-xp 00000000 08:01 99 /opt/ort/libonnxruntime.so.1.31.1
Rss:               12000 kB
7f1000000000-7f1000100000 r--p 00000000 08:01 98 /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                 900 kB
55d0c1000000-55d0c2000000 rw-p 00000000 00:00 0 [heap]
Rss:                3000 kB
7f2000000000-7f2004000000 rw-p 00000000 00:00 0
Rss:               40000 kB
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0 [stack]
Rss:                 132 kB
";

    #[test]
    fn each_mapping_counts_once_under_its_kind() {
        let snapshot = RssSnapshot::parse(SMAPS, Some(Path::new("/usr/bin/device-agent")));
        assert_eq!(
            snapshot,
            RssSnapshot {
                binary: 600 * 1024,
                onnxruntime: 12000 * 1024,
                other_libraries: 900 * 1024,
                anonymous: 43000 * 1024,
            }
        );
    }
}
