//! An `edgectl` command that prints JSON lines (`--json`), running as a child process: its stdout lines are
//! collected as they come (a line that is not JSON fails the test), its stderr kept in a file for failure
//! messages. Killed when dropped.

use crate::agent::operator_binary;
use serde_json::Value;
use std::ffi::OsString;
use std::io::BufRead;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

pub struct JsonChild {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<Value>,
    stderr: tempfile::NamedTempFile,
}

impl JsonChild {
    /// `edgectl <args>` logging at `log` (`RUST_LOG`).
    pub fn edgectl(args: &[OsString], log: &str) -> JsonChild {
        let stderr = tempfile::NamedTempFile::new().expect("temp file");
        let mut child = Command::new(operator_binary())
            .args(args)
            .env("ORT_DYLIB_PATH", crate::ort_library())
            .env("RUST_LOG", log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().expect("stderr file"))
            .spawn()
            .expect("edgectl starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        JsonChild { child, lines, seen: Vec::new(), stderr }
    }

    /// The JSON lines printed so far.
    pub fn lines(&mut self) -> &[Value] {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(parse_line(&line));
        }
        &self.seen
    }

    /// Every line printed, once the process has exited: waits (up to `within`) for the reader to reach the end.
    pub fn all_lines(&mut self, within: Duration) -> &[Value] {
        let deadline = Instant::now() + within;
        while let Ok(line) = self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            self.seen.push(parse_line(&line));
        }
        &self.seen
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    pub fn running(&mut self) -> bool {
        self.exited().is_none()
    }

    /// SIGKILL: it gets no chance to tidy up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn sigterm(&self) {
        crate::sigterm(&self.child);
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it logged so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }
}

impl Drop for JsonChild {
    fn drop(&mut self) {
        self.kill();
    }
}

fn parse_line(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("a --json line that is not JSON ({e}): {line:?}"))
}
