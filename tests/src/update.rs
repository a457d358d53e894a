//! Over-the-air updates through the real CLI: keys, packages, `model push` / `model rollback` as child
//! processes, agent configs with an `[update]` section, and what the agents publish about it.

use crate::agent::{Agent, mqtt_brokers_table, operator_binary};
use crate::fixtures::edited_bundle;
use crate::json_child::JsonChild;
use crate::models_dir;
use crate::subscriber::{Received, Subscriber, summary};
use protocol::update::{Instruction, Order, Target, UpdateStatus};
use serde_json::Value;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Waiting for an agent to say something.
pub const WAIT: Duration = Duration::from_secs(90);

/// Runs `edgectl` with `args` and returns its stdout; panics with its stderr when it fails.
fn cli(args: &[OsString]) -> String {
    let output = Command::new(operator_binary())
        .args(args)
        .env("ORT_DYLIB_PATH", crate::ort_library())
        .output()
        .expect("edgectl runs");
    assert!(
        output.status.success(),
        "edgectl {args:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `edgectl` with `args` and returns its stdout; panics with its stderr when it fails.
pub fn edgectl(args: &[&str]) -> String {
    cli(&os(&args.iter().map(|arg| arg as &dyn AsRef<std::ffi::OsStr>).collect::<Vec<_>>()))
}

fn os(parts: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    parts.iter().map(|part| part.as_ref().to_owned()).collect()
}

/// A key pair made by `edgectl keygen`.
pub struct Keys {
    /// `<base>.key` and `<base>.pub`.
    base: PathBuf,
    /// The public key, 64 hex digits, as the agent config's `trusted_keys` wants it.
    pub public: String,
}

impl Keys {
    pub fn private(&self) -> PathBuf {
        self.base.with_extension("key")
    }
}

/// A directory for keys and packages, with one key pair the agents trust.
pub struct Workbench {
    dir: tempfile::TempDir,
    pub trusted: Keys,
    packed: std::cell::Cell<u32>,
}

impl Default for Workbench {
    fn default() -> Self {
        Workbench::new()
    }
}

impl Workbench {
    pub fn new() -> Workbench {
        let dir = tempfile::tempdir().expect("temp dir");
        let trusted = keygen(dir.path(), "trusted");
        Workbench { dir, trusted, packed: std::cell::Cell::new(0) }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Another key pair (not trusted by anyone unless put in a config).
    pub fn keygen(&self, name: &str) -> Keys {
        keygen(self.dir.path(), name)
    }

    /// `model pack` of `bundle` into a new file; `self_test` lists its golden inputs (none: pack without).
    pub fn pack(&self, bundle: &Path, self_test: &[PathBuf]) -> PathBuf {
        let number = self.packed.get() + 1;
        self.packed.set(number);
        let package = self.dir.path().join(format!("package-{number}.bundle"));
        let mut args = os(&[&"model", &"pack", &bundle, &"-o", &package, &"--onnxruntime", &crate::ort_library()]);
        if !self_test.is_empty() {
            args.push("--self-test".into());
            args.extend(self_test.iter().map(OsString::from));
        }
        cli(&args);
        package
    }

    /// `model sign` of `package` with `keys`.
    pub fn sign(&self, package: &Path, keys: &Keys) {
        cli(&os(&[&"model", &"sign", &package, &"--key", &keys.private()]));
    }

    /// A package of `bundle`, with golden vectors of `self_test`, signed with the trusted key.
    pub fn signed(&self, bundle: &Path, self_test: &[PathBuf]) -> PathBuf {
        let package = self.pack(bundle, self_test);
        self.sign(&package, &self.trusted);
        package
    }

    /// An order for `device` as it travels (an envelope, JSON), signed with `keys`: counter `counter`, valid
    /// until `expires_at_ms`.
    pub fn order(
        &self,
        keys: &Keys,
        device: &str,
        counter: u64,
        expires_at_ms: u64,
        instruction: Instruction,
    ) -> Vec<u8> {
        let key = packaging::SigningKey::read(&keys.private()).expect("the private key reads");
        let order = Order { target: Target::Device(device.to_owned()), counter, expires_at_ms, instruction };
        serde_json::to_vec(&packaging::order::seal(&order, &key)).expect("an envelope encodes")
    }
}

fn keygen(dir: &Path, name: &str) -> Keys {
    let base = dir.join(name);
    cli(&os(&[&"keygen", &"--out", &base]));
    let public = std::fs::read_to_string(base.with_extension("pub")).expect("public key file").trim().to_owned();
    assert!(public.len() == 64 && public.bytes().all(|b| b.is_ascii_hexdigit()), "public key {public:?}");
    Keys { base, public }
}

/// `model push` (or `model rollback`) running as a child process with `--json`; its stdout lines are collected
/// as they come.
pub struct Push {
    process: JsonChild,
    /// Wall-clock time (Unix ms) just before the process started, to compare with the agents' `at_ms`.
    pub started_ms: u64,
}

impl Push {
    /// `model push <package> --broker 127.0.0.1:<port> --key <keys> --json <args>` (`args`: the target and
    /// options).
    pub fn start(package: &Path, port: u16, keys: &Keys, args: &[&str]) -> Push {
        Push::start_listing(package, &[format!("127.0.0.1:{port}")], keys, args)
    }

    /// Like [`Push::start`], with one `--broker` per entry of `brokers` (`host:port`), in order.
    pub fn start_listing(package: &Path, brokers: &[String], keys: &Keys, args: &[&str]) -> Push {
        let mut all = os(&[&"model", &"push", &package]);
        for broker in brokers {
            all.extend(os(&[&"--broker", broker]));
        }
        all.extend(os(&[&"--key", &keys.private(), &"--json"]));
        all.extend(args.iter().map(OsString::from));
        Push::spawn(all)
    }

    /// `model rollback --broker 127.0.0.1:<port> --key <keys> --device <device> --json`.
    pub fn rollback(port: u16, keys: &Keys, device: &str) -> Push {
        Push::spawn(os(&[
            &"model",
            &"rollback",
            &"--broker",
            &format!("127.0.0.1:{port}"),
            &"--key",
            &keys.private(),
            &"--device",
            &device,
            &"--json",
        ]))
    }

    /// Any other `edgectl` command that prints JSON lines (`fleet list --watch --json`), as a child to follow.
    pub fn command(args: &[&str]) -> Push {
        Push::spawn(args.iter().map(OsString::from).collect())
    }

    fn spawn(args: Vec<OsString>) -> Push {
        let started_ms = now_ms();
        Push { process: JsonChild::edgectl(&args, "info"), started_ms }
    }

    /// The JSON lines printed so far (progress lines, and the summary once it came).
    pub fn lines(&mut self) -> &[Value] {
        self.process.lines()
    }

    /// Kills the process (SIGKILL: it gets no chance to tidy up) and returns the lines it printed.
    pub fn kill(mut self) -> Vec<Value> {
        self.process.kill();
        self.lines().to_vec()
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        self.process.running()
    }

    /// What it logged so far.
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// Waits for the exit (killing it after `timeout`) and returns what it printed.
    pub fn finish(mut self, timeout: Duration) -> PushOutcome {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.process.exited() {
                break status;
            }
            if Instant::now() > deadline {
                self.process.kill();
                let lines = self.lines().to_vec();
                panic!("the push did not end within {timeout:?}; lines: {lines:?}\nstderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // The reader thread ends at EOF; take everything it read.
        let lines = self.process.all_lines(Duration::from_secs(5)).to_vec();
        let summary = lines.iter().find_map(|line| line.get("summary")).cloned().unwrap_or(Value::Null);
        PushOutcome { success: status.success(), code: status.code(), lines, summary, stderr: self.stderr() }
    }
}

/// How a push ended.
#[derive(Debug)]
pub struct PushOutcome {
    /// Exit status 0.
    pub success: bool,
    pub code: Option<i32>,
    /// Every line printed, the summary included.
    pub lines: Vec<Value>,
    /// The `summary` object (`Null` when none was printed).
    pub summary: Value,
    pub stderr: String,
}

impl PushOutcome {
    /// `summary.devices.<device>.state`.
    pub fn state(&self, device: &str) -> Option<&str> {
        self.summary["devices"][device]["state"].as_str()
    }

    pub fn chunks_published(&self) -> u64 {
        self.summary["chunks_published"].as_u64().unwrap_or_else(|| panic!("no chunks_published in {self:#?}"))
    }

    pub fn chunk_count(&self) -> u64 {
        self.summary["chunk_count"].as_u64().unwrap_or_else(|| panic!("no chunk_count in {self:#?}"))
    }
}

/// An agent config with an `[update]` section; keys can be overridden one by one.
pub struct ConfigBuilder {
    device: String,
    port: u16,
    /// Set: `mqtt.brokers` instead of the broker at `port`.
    brokers: Option<Vec<String>>,
    /// Set: `mqtt.qos.subscriptions`.
    subscription_qos: Option<u8>,
    sources: Vec<String>,
    update: BTreeMap<String, String>,
    probation: BTreeMap<String, String>,
}

impl ConfigBuilder {
    /// `device` on the broker at `port`, trusting `trusted_key`, keeping its update state in `state_dir`.
    /// Probation is short (2 s, 5 inputs) and its latency limit loose (x10), so that a loaded CI machine does
    /// not roll back a sound update; requests time out after 2 s.
    pub fn new(device: &str, port: u16, trusted_key: &str, state_dir: &Path) -> ConfigBuilder {
        let mut builder = ConfigBuilder {
            device: device.to_owned(),
            port,
            brokers: None,
            subscription_qos: None,
            sources: Vec::new(),
            update: BTreeMap::new(),
            probation: BTreeMap::new(),
        };
        builder = builder
            .update("trusted_keys", format!("[{}]", quoted(trusted_key)))
            .update("state_dir", quoted(&state_dir.display().to_string()))
            .update("request_timeout_secs", 2)
            .probation("window_secs", 2)
            .probation("min_frames", 5)
            .probation("max_p95_ratio", 10);
        builder
    }

    /// Lists `brokers` (`host:port`) as `mqtt.brokers`, instead of the broker at `port` (see
    /// [`mqtt_brokers_table`]).
    pub fn brokers(mut self, brokers: Vec<String>) -> ConfigBuilder {
        self.brokers = Some(brokers);
        self
    }

    /// Sets `mqtt.qos.subscriptions` (0 on NATS, see docs/fleets.md).
    pub fn subscription_qos(mut self, level: u8) -> ConfigBuilder {
        self.subscription_qos = Some(level);
        self
    }

    /// Adds a `[[sources]]` table (see [`csv_loop`], [`images_loop`]).
    pub fn source(mut self, table: String) -> ConfigBuilder {
        self.sources.push(table);
        self
    }

    /// Sets `[update] key = value` (value as TOML).
    pub fn update(mut self, key: &str, value: impl ToString) -> ConfigBuilder {
        self.update.insert(key.to_owned(), value.to_string());
        self
    }

    /// Sets `[update.probation] key = value` (value as TOML).
    pub fn probation(mut self, key: &str, value: impl ToString) -> ConfigBuilder {
        self.probation.insert(key.to_owned(), value.to_string());
        self
    }

    pub fn build(&self) -> String {
        let mqtt = match &self.brokers {
            Some(brokers) => mqtt_brokers_table(brokers),
            None => format!("[mqtt]\nhost = \"127.0.0.1\"\nport = {}\nkeep_alive_secs = 5\n", self.port),
        };
        let qos =
            self.subscription_qos.map(|level| format!("[mqtt.qos]\nsubscriptions = {level}\n")).unwrap_or_default();
        let mut text = format!("device_id = {}\n{mqtt}{qos}[health]\ninterval_secs = 1\n", quoted(&self.device));
        for source in &self.sources {
            text.push_str(source);
        }
        text.push_str("[update]\n");
        for (key, value) in &self.update {
            text.push_str(&format!("{key} = {value}\n"));
        }
        text.push_str("[update.probation]\n");
        for (key, value) in &self.probation {
            text.push_str(&format!("{key} = {value}\n"));
        }
        text
    }
}

/// A TOML basic string.
pub fn quoted(text: &str) -> String {
    Value::from(text).to_string()
}

/// A `csv` source replaying `models/recordings/activity.csv` in a loop through `bundle`, `windows_per_s` windows
/// of 100 samples a second.
pub fn csv_loop(name: &str, bundle: &Path, windows_per_s: u32) -> String {
    format!(
        "[[sources]]\nname = {}\nkind = \"csv\"\nmodel = {}\npath = {}\nloop = true\nrate_hz = {}\n",
        quoted(name),
        quoted(&bundle.display().to_string()),
        quoted(&crate::models_dir().join("recordings/activity.csv").display().to_string()),
        windows_per_s * 100
    )
}

/// An `images` source looping over `frames` (names in `models/frames/`) through `bundle` at `fps`.
pub fn images_loop(name: &str, bundle: &Path, frames: &[&str], fps: f64) -> String {
    let files: Vec<String> = frames
        .iter()
        .map(|frame| quoted(&crate::models_dir().join("frames").join(frame).display().to_string()))
        .collect();
    format!(
        "[[sources]]\nname = {}\nkind = \"images\"\nmodel = {}\nfiles = [{}]\nloop = true\nrate_fps = {fps}\n",
        quoted(name),
        quoted(&bundle.display().to_string()),
        files.join(", ")
    )
}

/// Parses a device's retained update status, as published on `devices/<id>/update/status`.
pub fn parse_status(message: &Received) -> UpdateStatus {
    serde_json::from_slice(&message.payload).unwrap_or_else(|e| {
        panic!("{} does not parse as a status ({e}): {}", message.topic, String::from_utf8_lossy(&message.payload))
    })
}

/// One prediction: its sequence number, the model version that made it and when it was published.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub seq: u64,
    pub version: String,
    pub published_at_ms: u64,
}

impl Prediction {
    pub fn parse(message: &Received) -> Prediction {
        let json = message.json();
        Prediction {
            seq: json["seq"].as_u64().unwrap_or_else(|| panic!("no seq: {json}")),
            version: json["model"]["version"].as_str().unwrap_or_else(|| panic!("no model.version: {json}")).to_owned(),
            published_at_ms: json["published_at_ms"].as_u64().unwrap_or_else(|| panic!("no published_at_ms: {json}")),
        }
    }
}

pub fn status_topic(device: &str) -> String {
    format!("devices/{device}/update/status")
}

pub fn predictions_topic(device: &str, source: &str) -> String {
    format!("devices/{device}/predictions/{source}")
}

/// A subscription that keeps everything it received, to wait on and to look back at.
pub struct Watch {
    subscriber: Subscriber,
    pub seen: Vec<Received>,
}

impl Watch {
    pub fn new(port: u16, filter: &str) -> Watch {
        Watch { subscriber: Subscriber::connect(port, filter), seen: Vec::new() }
    }

    /// As [`Watch::new`], subscribed at QoS 0 (see [`Subscriber::at_most_once`]).
    pub fn at_most_once(port: u16, filter: &str) -> Watch {
        Watch { subscriber: Subscriber::at_most_once(port, filter), seen: Vec::new() }
    }

    /// Takes what arrived, until `done` holds for everything seen so far; panics after `timeout`, showing the
    /// last few messages and `context()` (an agent's log, say).
    pub fn until(&mut self, timeout: Duration, context: impl Fn() -> String, done: impl Fn(&Watch) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "timed out after {timeout:?}; last messages:\n{}\n{}",
                    summary(&self.seen).join("\n"),
                    context()
                );
            }
            if let Some(message) = self.subscriber.next(left.min(Duration::from_millis(100))) {
                self.seen.push(message);
            }
        }
    }

    /// Publishes `payload` on `topic` at QoS 1, as anyone on the broker could.
    pub fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.subscriber.publish(topic, payload);
    }

    /// The error events of `device`'s updater (JSON), in order of arrival.
    pub fn update_errors(&self, device: &str) -> Vec<Value> {
        let topic = format!("devices/{device}/errors/update");
        self.seen.iter().filter(|m| m.topic == topic).map(Received::json).collect()
    }

    /// Takes what arrives for `duration`.
    pub fn drain(&mut self, duration: Duration) {
        let deadline = Instant::now() + duration;
        while let Some(message) = self.subscriber.next(deadline.saturating_duration_since(Instant::now())) {
            self.seen.push(message);
        }
    }

    /// The update statuses of `device`, in order of arrival.
    pub fn statuses(&self, device: &str) -> Vec<UpdateStatus> {
        let topic = status_topic(device);
        self.seen.iter().filter(|m| m.topic == topic).map(parse_status).collect()
    }

    /// The predictions of `device`'s `source`, in order of arrival.
    pub fn predictions(&self, device: &str, source: &str) -> Vec<Prediction> {
        let topic = predictions_topic(device, source);
        self.seen.iter().filter(|m| m.topic == topic).map(Prediction::parse).collect()
    }

    /// Whether `device` reported `state` for update `id`, or for any update when `id` is `None`.
    pub fn reported(&self, device: &str, state: &str, id: Option<&str>) -> bool {
        self.statuses(device)
            .iter()
            .any(|s| s.state.as_str() == state && (id.is_none() || s.update_id.as_deref() == id))
    }
}

/// Milliseconds since the Unix epoch, as the agents stamp their messages.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Bundle (or file) `name` of the repository's `models/`.
pub fn model(name: &str) -> PathBuf {
    models_dir().join(name)
}

/// A copy of bundle `name` with `version` instead of 1.0.0 (or the 1.1.0 of the test variants).
pub fn at_version(name: &str, version: &str) -> tempfile::TempDir {
    let version = format!("version = \"{version}\"");
    edited_bundle(name, move |manifest| {
        manifest.replace("version = \"1.0.0\"", &version).replace("version = \"1.1.0\"", &version)
    })
}

/// The golden input of the sensor packages: a window every variant classifies normally.
pub fn calm_window() -> Vec<PathBuf> {
    vec![model("testing/calm-window.csv")]
}

/// The agent's log, for failure messages.
pub fn log_of(agent: &Agent) -> impl Fn() -> String + '_ {
    move || format!("agent log:\n{}", agent.log())
}

/// Waits for `count` predictions of `device`'s `source` published after `after_ms` and returns them.
pub fn predictions_after(
    watch: &mut Watch,
    agent: &Agent,
    device: &str,
    source: &str,
    after_ms: u64,
    count: usize,
) -> Vec<Prediction> {
    let fresh = |watch: &Watch| -> Vec<Prediction> {
        watch.predictions(device, source).into_iter().filter(|p| p.published_at_ms > after_ms).collect()
    };
    watch.until(WAIT, log_of(agent), |watch| fresh(watch).len() >= count);
    fresh(watch)
}

/// The status `device`'s broker retained, as a late subscriber gets it.
pub fn retained_status(port: u16, device: &str) -> UpdateStatus {
    let mut watch = Watch::new(port, &status_topic(device));
    watch.until(WAIT, String::new, |watch| !watch.seen.is_empty());
    assert!(watch.seen[0].retain, "the update status is retained");
    parse_status(&watch.seen[0])
}
