//! The monitor thread's state ([`Runner`]) fed by hand with feature vectors drawn at random from a [`Pool`],
//! under given `[[monitors]]` settings. The alerts counted are the reports it publishes on the alerts topic, so
//! what is measured is the device's behaviour: windows, PSI/KS/JS judged with the Bonferroni correction, the
//! agent's own signals, hysteresis.

use super::pool::Pool;
use crate::clock::ManualClock;
use crate::config::MonitorConfig;
use crate::monitor::runner::{MonitorLink, MonitorSettings, MonitorTopics, Runner};
use crate::monitor::{MonitorStats, Observation, Outcome};
use protocol::wire::{Alert, AlertChange, AlertReport, Format, Topics};
use runtime::StageTimings;
use std::sync::{Arc, Mutex};

/// The source name the simulated monitor reports under.
pub const SOURCE: &str = "eval";
/// Evaluated windows before a shift starts: the window full and the latency and error baselines learned.
const WARM_UP_WINDOWS: u64 = 10;
/// How long each shift lasts, in inputs: five windows' worth, far more than detection needs.
pub const SHIFT_INPUTS: u64 = 1000;
/// Unshifted inputs after a shift within which its alerts must clear.
const CLEAR_LIMIT: u64 = 2000;

/// A link that keeps the alert reports published (the simulated monitor publishes nothing else).
struct KeptAlerts(Arc<Mutex<Vec<AlertReport>>>);

impl MonitorLink for KeptAlerts {
    fn publish(&self, _topic: &str, _retain: bool, payload: &[u8]) -> Result<(), String> {
        // An empty payload removes the retained alert after the last clear: nothing to keep.
        if !payload.is_empty() {
            let report = serde_json::from_slice(payload).expect("an alert report");
            self.0.lock().expect("not poisoned").push(report);
        }
        Ok(())
    }
}

/// One simulated source.
pub struct Simulation<'a> {
    pool: &'a Pool,
    config: MonitorConfig,
    runner: Runner,
    stats: Arc<MonitorStats>,
    published: Arc<Mutex<Vec<AlertReport>>>,
    random: fastrand::Rng,
    inputs: u64,
    active: Vec<Alert>,
    /// Every alert raised so far (escalations of active ones not counted again).
    raised: Vec<Alert>,
}

impl<'a> Simulation<'a> {
    /// A monitor of `pool`'s model with `config`'s settings; `seed` draws the stream.
    pub fn new(pool: &'a Pool, config: &MonitorConfig, seed: u64) -> Simulation<'a> {
        let config = MonitorConfig { source: SOURCE.to_owned(), ..config.clone() };
        let published = Arc::new(Mutex::new(Vec::new()));
        let stats = Arc::new(MonitorStats::default());
        let settings = MonitorSettings {
            device: "eval".to_owned(),
            config: config.clone(),
            topics: MonitorTopics::of(&Topics::new("devices/eval"), SOURCE),
            format: Format::Json,
            evidence_dir: None,
            channel_names: Vec::new(),
            link: Box::new(KeptAlerts(published.clone())),
            clock: Arc::new(ManualClock::new(0)),
            stats: stats.clone(),
        };
        Simulation {
            pool,
            config,
            runner: Runner::new(settings, None),
            stats,
            published,
            random: fastrand::Rng::with_seed(seed),
            inputs: 0,
            active: Vec::new(),
            raised: Vec::new(),
        }
    }

    /// The settings simulated.
    pub fn config(&self) -> &MonitorConfig {
        &self.config
    }

    /// Feeds one input drawn from the stream half, under `pool.shifted[shift]` when given.
    pub fn step(&mut self, shift: Option<usize>) {
        let index = self.random.usize(0..self.pool.stream.len());
        let features = match shift {
            Some(shift) => &self.pool.shifted[shift].features[index],
            None => &self.pool.stream[index],
        };
        self.observe(features.clone());
    }

    /// Feeds one input with these features.
    pub fn observe(&mut self, features: Vec<f32>) {
        // The latency signal is not what is simulated: every input takes the same time.
        let timings = StageTimings { inference_us: 1000, ..StageTimings::default() };
        let outcome = Outcome::Inferred { features, predicted: None, timings };
        let observation = Observation {
            seq: self.inputs,
            captured_at_ms: self.inputs,
            model: self.pool.model.clone(),
            outcome,
            input: None,
        };
        self.runner.observed(observation);
        self.inputs += 1;
        for report in self.published.lock().expect("not poisoned").drain(..) {
            if report.change == AlertChange::Raised
                && !self.active.iter().any(|alert| same_subject(alert, &report.alert))
            {
                self.raised.push(report.alert.clone());
            }
            self.active = report.active;
        }
    }

    pub fn inputs(&self) -> u64 {
        self.inputs
    }

    /// Windows evaluated: one when the window first fills, then one every `stride` inputs.
    pub fn windows(&self) -> u64 {
        let (window, stride) = (self.config.window as u64, self.config.stride as u64);
        if self.inputs < window { 0 } else { (self.inputs - window) / stride + 1 }
    }

    /// Windows evaluated, as the monitor's health counts them.
    pub fn windows_counted(&self) -> u64 {
        self.stats.health(SOURCE).windows_evaluated
    }

    pub fn raised(&self) -> &[Alert] {
        &self.raised
    }

    pub fn active(&self) -> &[Alert] {
        &self.active
    }

    /// Bytes the source's monitor state holds on the heap.
    pub fn state_bytes(&self) -> usize {
        self.runner.heap_bytes()
    }
}

/// Alerts raised on a stream where nothing changed.
pub struct FalseAlarms {
    pub windows: u64,
    pub raised: Vec<Alert>,
}

impl FalseAlarms {
    pub fn per_10k_windows(&self) -> f64 {
        self.raised.len() as f64 * 10_000.0 / self.windows.max(1) as f64
    }
}

/// Runs `windows` evaluated windows of the unshifted stream.
pub fn false_alarms(pool: &Pool, config: &MonitorConfig, windows: u64, seed: u64) -> FalseAlarms {
    let mut simulation = Simulation::new(pool, config, seed);
    while simulation.windows() < windows {
        simulation.step(None);
    }
    assert_eq!(simulation.windows_counted(), simulation.windows(), "the monitor evaluated as often as expected");
    FalseAlarms { windows: simulation.windows(), raised: simulation.raised().to_vec() }
}

/// Inputs and evaluated windows from an event (a shift starting or ending) to the monitor's reaction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Delay {
    pub inputs: u64,
    pub windows: u64,
}

/// What became of one shift.
#[derive(Debug, Clone)]
pub struct ShiftRun {
    /// Alerts raised before the shift started (false alarms).
    pub before: usize,
    /// The first alert raised under the shift, and when.
    pub detected: Option<(Delay, Alert)>,
    /// When every alert raised under the shift had cleared after it ended.
    pub cleared: Option<Delay>,
}

/// Whether two alerts are about the same thing (an escalation or a clear of the same alert).
fn same_subject(a: &Alert, b: &Alert) -> bool {
    a.kind == b.kind && a.subject == b.subject
}

/// Runs the stream unshifted for [`WARM_UP_WINDOWS`] and a random part of a stride, then under
/// `pool.shifted[shift]` for [`SHIFT_INPUTS`], then unshifted until the alerts the shift raised cleared or
/// [`CLEAR_LIMIT`].
pub fn shift_run(pool: &Pool, config: &MonitorConfig, shift: usize, seed: u64) -> ShiftRun {
    let mut simulation = Simulation::new(pool, config, seed);
    while simulation.windows() < WARM_UP_WINDOWS {
        simulation.step(None);
    }
    // A shift starts anywhere between two evaluations.
    let phase = simulation.random.u64(0..simulation.config.stride as u64);
    (0..phase).for_each(|_| simulation.step(None));
    let before = simulation.raised().len();
    let since = |simulation: &Simulation, (inputs, windows): (u64, u64)| Delay {
        inputs: simulation.inputs() - inputs,
        windows: simulation.windows() - windows,
    };
    let started = (simulation.inputs(), simulation.windows());
    let mut detected = None;
    for _ in 0..SHIFT_INPUTS {
        simulation.step(Some(shift));
        if detected.is_none() && simulation.raised().len() > before {
            detected = Some((since(&simulation, started), simulation.raised()[before].clone()));
        }
    }
    let ended = (simulation.inputs(), simulation.windows());
    let shift_alerts = simulation.raised()[before..].to_vec();
    let raised_by_shift = |active: &Alert| shift_alerts.iter().any(|raised| same_subject(raised, active));
    let mut cleared = None;
    for _ in 0..CLEAR_LIMIT {
        if !simulation.active().iter().any(raised_by_shift) {
            cleared = Some(since(&simulation, ended));
            break;
        }
        simulation.step(None);
    }
    ShiftRun { before, detected, cleared }
}
