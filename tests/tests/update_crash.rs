//! SIGKILL at random moments of an over-the-air update (download, verify, self-test, activation, probation,
//! commit): after a restart the agent always serves a model that works, says a consistent thing about the
//! update, and its slot state reads back.
//!
//! Each trial is a fresh device (own id and state directory) so that it goes through the whole update again.
//! Every third trial pushes the unstable variant (also 1.1.0), which probation rolls back, so that kills land
//! in a rollback too.
//! The kill comes either after a random delay from the start of the push (uniform over the length of an update,
//! measured on a first uninterrupted run), or right after a randomly chosen status, so that the short phases
//! (verifying, self-testing) are hit too. The seed is printed; `UPDATE_CRASH_SEED=<n>` replays one.

use integration_tests::agent::Agent;
use integration_tests::broker::Broker;
use integration_tests::fixtures::edited_bundle;
use integration_tests::models_dir;
use integration_tests::update::{ConfigBuilder, Push, Watch, Workbench, csv_loop, now_ms};
use protocol::update::{UpdateState, UpdateStatus};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const TRIALS: usize = 80;
const WAIT: Duration = Duration::from_secs(60);
/// Statuses a kill can be aimed at.
const KILL_ON: [&str; 6] = ["downloading", "verifying", "self_testing", "probation", "committed", "rolled_back"];

/// xorshift64*: enough randomness for kill times, and reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What one trial kills at.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// This long after the push started.
    After(Duration),
    /// This long after the device reported this state (or at once if the update is already past it).
    On(&'static str, Duration),
}

struct Trial<'a> {
    broker: &'a Broker,
    bench: &'a Workbench,
    package: &'a Path,
    device: String,
    state: tempfile::TempDir,
    config: String,
    watch: Watch,
}

impl<'a> Trial<'a> {
    fn new(broker: &'a Broker, bench: &'a Workbench, package: &'a Path, number: usize) -> Trial<'a> {
        let device = format!("crash-{number:02}");
        let state = tempfile::tempdir().unwrap();
        let config = ConfigBuilder::new(&device, broker.port(), &bench.trusted.public, state.path())
            .source(csv_loop("wrist", &models_dir().join("activity-classifier"), 10))
            .probation("window_secs", 1)
            .probation("min_frames", 3)
            .build();
        let watch = Watch::new(broker.port(), &format!("devices/{device}/#"));
        Trial { broker, bench, package, device, state, config, watch }
    }

    /// Starts the agent and, once it listens (it said it is idle), the push.
    fn start(&mut self) -> (Agent, Push) {
        let agent = Agent::start(&self.config);
        let device = self.device.clone();
        self.watch.until(WAIT, || agent.log(), |w| !w.statuses(&device).is_empty());
        let push = Push::start(
            self.package,
            self.broker.port(),
            &self.bench.trusted,
            &["--device", &self.device, "--chunk-size", "1024", "--timeout", "600"],
        );
        (agent, push)
    }

    fn last_state(&self) -> String {
        self.watch.statuses(&self.device).last().map_or_else(|| "none".to_owned(), |s| s.state.as_str().to_owned())
    }
}

#[test]
fn killing_the_agent_anywhere_in_an_update_leaves_it_serving_and_consistent() {
    let seed = std::env::var("UPDATE_CRASH_SEED").ok().and_then(|text| text.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    eprintln!("seed {seed} (UPDATE_CRASH_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    let test_started = Instant::now();
    let broker = Broker::start();
    let bench = Workbench::new();
    let v110 = edited_bundle("activity-classifier", |m| m.replace("version = \"1.0.0\"", "version = \"1.1.0\""));
    let calm = [models_dir().join("testing/calm-window.csv")];
    let package = bench.signed(v110.path(), &calm);
    let unstable = bench.signed(&models_dir().join("testing/activity-classifier-unstable"), &calm);

    // An uninterrupted update first: it must work, and it says how long an update takes.
    let mut trial = Trial::new(&broker, &bench, &package, 0);
    let (agent, push) = trial.start();
    let pushed_ms = push.started_ms;
    let outcome = push.finish(WAIT);
    assert!(outcome.success, "{outcome:#?}\n{}", agent.log());
    let device = trial.device.clone();
    trial.watch.until(WAIT, || agent.log(), |w| w.reported(&device, "committed", None));
    let statuses = trial.watch.statuses(&trial.device);
    let timeline: Vec<String> =
        statuses.iter().map(|s| format!("{} +{} ms", s.state.as_str(), s.at_ms.saturating_sub(pushed_ms))).collect();
    eprintln!("uninterrupted update, from the start of the push: {}", timeline.join(", "));
    let update_ms = statuses.last().unwrap().at_ms.saturating_sub(pushed_ms);
    drop(agent);

    let mut killed_in: BTreeMap<String, usize> = BTreeMap::new();
    let mut after_restart: BTreeMap<String, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    for number in 1..=TRIALS {
        let kill = if number % 2 == 0 {
            Kill::After(Duration::from_millis(rng.below(update_ms * 5 / 4 + 1)))
        } else {
            Kill::On(KILL_ON[rng.below(KILL_ON.len() as u64) as usize], Duration::from_millis(rng.below(10)))
        };
        let pushed = if number % 3 == 0 { &unstable } else { &package };
        let mut trial = Trial::new(&broker, &bench, pushed, number);
        let (agent, push) = trial.start();
        let device = trial.device.clone();
        match kill {
            Kill::After(delay) => std::thread::sleep(delay),
            Kill::On(state, delay) => {
                // An update already past `state` (it did not stop there, or it ended) is killed at once.
                let wanted = KILL_ON.iter().position(|s| *s == state).unwrap();
                let at_or_past = |w: &Watch| {
                    w.statuses(&device).iter().any(|s| {
                        s.state.is_final()
                            || KILL_ON.iter().position(|k| *k == s.state.as_str()).is_some_and(|p| p >= wanted)
                    })
                };
                trial.watch.until(WAIT, || agent.log(), at_or_past);
                std::thread::sleep(delay);
            }
        }
        let log = agent.kill();
        trial.watch.drain(Duration::ZERO);
        let trial_killed_in = trial.last_state();
        *killed_in.entry(trial_killed_in.clone()).or_default() += 1;

        let restarted_ms = now_ms();
        let agent = Agent::start(&trial.config);
        let context =
            || format!("trial {number}, {kill:?}, seed {seed}\nbefore the kill:\n{log}\nafter:\n{}", agent.log());
        trial.watch.until(WAIT, context, |w| {
            w.statuses(&device).iter().any(|s| s.at_ms >= restarted_ms)
                && w.predictions(&device, "wrist").iter().filter(|p| p.published_at_ms >= restarted_ms).count() >= 3
        });
        let status: UpdateStatus = trial.watch.statuses(&device).into_iter().find(|s| s.at_ms >= restarted_ms).unwrap();
        *after_restart.entry(status.state.as_str().to_owned()).or_default() += 1;
        if let Err(problem) = check_consistent(&trial, &status, restarted_ms) {
            eprintln!("INCONSISTENT: {problem}\n{}", context());
            problems.push(format!("trial {number} ({kill:?}, killed after {trial_killed_in}): {problem}"));
        }

        drop(push);
        drop(agent);
    }
    eprintln!("last status seen before the kill: {killed_in:?}");
    eprintln!("first status after the restart:   {after_restart:?}");
    eprintln!("{TRIALS} trials in {:.0} s", test_started.elapsed().as_secs_f64());
    assert!(problems.is_empty(), "seed {seed}: {} inconsistent restarts:\n{}", problems.len(), problems.join("\n"));
}

/// What a restarted agent says and does must agree: a known state, predictions from 1.0.0 or 1.1.0, the version
/// an outcome names is the one serving, and the slot state parses.
fn check_consistent(trial: &Trial, status: &UpdateStatus, restarted_ms: u64) -> Result<(), String> {
    if status.device != trial.device {
        return Err(format!("not a status of {}: {status:?}", trial.device));
    }
    // A restarted agent rolls back whatever was on probation: it can start in any state but that one.
    if status.state == UpdateState::Probation {
        return Err(format!("starts on probation: {status:?}"));
    }
    let served: Vec<String> = trial
        .watch
        .predictions(&trial.device, "wrist")
        .into_iter()
        .filter(|p| p.published_at_ms >= restarted_ms)
        .map(|p| p.version)
        .collect();
    if !served.iter().all(|v| v == "1.0.0" || v == "1.1.0") {
        return Err(format!("serves {served:?}"));
    }
    if status.state == UpdateState::Committed && status.version != status.running_version {
        return Err(format!("committed {} but runs {}", status.version, status.running_version));
    }
    // After an outcome nothing more happens to this update: what serves is what the status says runs.
    if status.state.is_final() && !served.iter().all(|v| *v == status.running_version) {
        return Err(format!("{status:?} but serves {served:?}"));
    }
    let slots = trial.state.path().join("models/activity-classifier/state.json");
    if let Ok(text) = std::fs::read_to_string(&slots) {
        let state: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{} does not parse ({e}): {text:?}", slots.display()))?;
        if !["factory", "a", "b"].contains(&state["active"].as_str().unwrap_or_default()) {
            return Err(format!("{} names no slot as active: {text}", slots.display()));
        }
    }
    Ok(())
}
