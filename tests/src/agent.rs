//! The agent binary as a child process, with its config written to a temporary directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The `device-agent` binary of this workspace's build (`scripts/test.sh` builds it first).
pub fn agent_binary() -> PathBuf {
    workspace_binary("device-agent", "device-agent")
}

/// The operator's `edgectl` binary of this workspace's build (`scripts/test.sh` builds it first).
pub fn operator_binary() -> PathBuf {
    workspace_binary("edgectl", "edge-operator")
}

/// The binary `name` of package `package`, from `$CARGO_TARGET_DIR` (or `target`) in this build's profile.
fn workspace_binary(name: &str, package: &str) -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| crate::repo_root().join("target"));
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    let binary = target.join(profile).join(name);
    assert!(binary.exists(), "{} is missing: run `cargo build -p {package}` first", binary.display());
    binary
}

/// An `[mqtt]` table listing `brokers` (`host:port`) as `mqtt.brokers`, with a 5 s keep-alive (so that a dead
/// broker is noticed within 10 s) and a 2 s connection attempt.
pub fn mqtt_brokers_table(brokers: &[String]) -> String {
    let list: Vec<String> = brokers.iter().map(|broker| format!("{broker:?}")).collect();
    format!("[mqtt]\nbrokers = [{}]\nkeep_alive_secs = 5\nconnect_timeout_secs = 2\n", list.join(", "))
}

/// A running agent.
pub struct Agent {
    child: Child,
    dir: tempfile::TempDir,
}

impl Agent {
    /// Writes `config` as `agent.toml` in a fresh directory and starts `device-agent run` on it.
    pub fn start(config: &str) -> Agent {
        let dir = tempfile::tempdir().expect("temp dir");
        Agent::start_in(dir, config)
    }

    /// Like [`Agent::start`], in a directory the test prepared.
    pub fn start_in(dir: tempfile::TempDir, config: &str) -> Agent {
        Agent::spawn(dir, config, Stdio::null(), &[])
    }

    /// Like [`Agent::start`], run as `wrapper[0] wrapper[1..] <agent> run --config <file>`: e.g. `unshare` and a
    /// shell that mounts something first and then `exec`s the agent (so that [`Agent::pid`] stays the agent's).
    pub fn start_wrapped(config: &str, wrapper: &[&str]) -> Agent {
        Agent::spawn(tempfile::tempdir().expect("temp dir"), config, Stdio::null(), wrapper)
    }

    /// Like [`Agent::start`], with a pipe to the agent's standard input.
    pub fn start_with_stdin(config: &str) -> (Agent, std::process::ChildStdin) {
        let mut agent = Agent::spawn(tempfile::tempdir().expect("temp dir"), config, Stdio::piped(), &[]);
        let stdin = agent.child.stdin.take().expect("piped stdin");
        (agent, stdin)
    }

    fn spawn(dir: tempfile::TempDir, config: &str, stdin: Stdio, wrapper: &[&str]) -> Agent {
        let config_path = dir.path().join("agent.toml");
        std::fs::write(&config_path, config).expect("write config");
        let log = std::fs::File::create(dir.path().join("agent.log")).expect("log file");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(agent_binary());
                command
            }
            None => Command::new(agent_binary()),
        };
        let child = command
            .args(["run", "--config"])
            .arg(&config_path)
            .env("ORT_DYLIB_PATH", crate::ort_library())
            .env("RUST_LOG", "info")
            .stdin(stdin)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the agent starts");
        Agent { child, dir }
    }

    /// The agent's working directory (config, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the agent logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits (bounded) for the exit.
    pub fn terminate(mut self, timeout: Duration) -> (ExitStatus, String) {
        crate::sigterm(&self.child);
        let status = self.wait(timeout);
        (status, self.log())
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.log()
    }

    /// The exit status if the agent exits within `timeout`, `None` while it keeps running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the agent to exit by itself.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the agent did not exit within {timeout:?}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
