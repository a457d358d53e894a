//! A group rollout in waves as a pure state machine: it takes events (device outcomes, health and alerts,
//! operator controls, clock ticks with the time passed in) and returns actions for the shell to carry out, in
//! order. Everything it decides is in its [`Record`], which the shell keeps retained on the broker, so that a
//! re-run continues where a dead one stopped.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// How the members, in device-id order, are cut into waves (after the canary wave, if any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WavePlan {
    /// `per_minute` devices a minute: waves of `ceil(per_minute × wave_secs / 60)` devices, each started no
    /// sooner than `wave_secs` after the one before (and only once that one's gate passed).
    Rate { per_minute: u32, wave_secs: u64 },
    /// Waves of `first`, 2×, 4×... devices, each started as soon as the one before passed its gate.
    Exponential { first: usize },
}

/// What a wave must show, over the soak after its devices committed, before the next one starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gates {
    pub soak_ms: u64,
    /// Failed inputs per input taken, over the soak (0.05: 5%).
    pub max_error_rate: Option<f64>,
    /// The p95 of a source's whole pipeline, as health gives it.
    pub max_latency_ms: Option<u32>,
    /// Whether active drift or accuracy alerts are let through.
    pub allow_alerts: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub plan: WavePlan,
    /// Failures above this percentage of the finished devices abort the rollout...
    pub max_failures_percent: u32,
    /// ...once at least this many devices have an outcome.
    pub min_finished: usize,
    pub gates: Gates,
    /// How long a wave's devices have for an outcome (their signed order lives this long, plus clock slack).
    pub wave_timeout_ms: u64,
}

/// How a device's update ended, as far as the rollout is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeState {
    Committed,
    Rejected,
    RolledBack,
    Failed,
    /// No outcome before the wave's deadline.
    TimedOut,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    pub state: OutcomeState,
    pub reason: Option<String>,
}

/// The signed order a wave's devices get: re-signing the same text gives the same order (Ed25519 is
/// deterministic), so a repeat after a restart is the order the device already has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stamp {
    pub counter: u64,
    pub expires_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wave {
    pub devices: Vec<String>,
    /// Set, and persisted, before any of `devices` is announced.
    pub order: Option<Stamp>,
    pub started_ms: Option<u64>,
    pub deadline_ms: Option<u64>,
    /// When every device had an outcome.
    pub settled_ms: Option<u64>,
    /// The gate's verdict: `Ok` or why it failed.
    pub gate: Option<Result<(), String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum End {
    Finished { at_ms: u64 },
    Aborted { at_ms: u64, reason: String },
}

/// Everything the rollout decided: published retained (signed) on `groups/<g>/rollout/state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub group: String,
    pub update_id: String,
    pub sha256: String,
    /// Device id to topic prefix.
    pub members: BTreeMap<String, String>,
    pub waves: Vec<Wave>,
    pub outcomes: BTreeMap<String, Outcome>,
    pub paused: bool,
    pub end: Option<End>,
}

/// One health report of a device, summed over its sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSample {
    /// Failed inputs since the agent started.
    pub errors: u64,
    /// Inputs taken since the agent started.
    pub frames: u64,
    /// The worst p95 of any source's whole pipeline.
    pub p95_ms: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Pause,
    Resume,
    Abort,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Outcome {
        device: String,
        outcome: Outcome,
    },
    Health {
        device: String,
        sample: HealthSample,
    },
    /// An alert of `source` became active or cleared (`<prefix>/alerts/<source>`, retained while active).
    Alert {
        device: String,
        source: String,
        active: bool,
    },
    Control(Control),
    Tick,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Publish the record (retained, acknowledged) before carrying out any action after this one.
    Persist,
    WaveStarted {
        wave: usize,
        devices: Vec<String>,
    },
    /// Announce the package to `devices` with the wave's order (again, after a restart: the same order).
    Announce {
        wave: usize,
        devices: Vec<String>,
        order: Stamp,
    },
    Outcome {
        device: String,
        outcome: Outcome,
    },
    Gate {
        wave: usize,
        result: Result<(), String>,
    },
    Paused,
    Resumed,
    Aborted {
        reason: String,
    },
    Finished,
}

/// What the gate watches of a device that committed.
#[derive(Debug, Default)]
struct Signals {
    first: Option<HealthSample>,
    latest: Option<HealthSample>,
    alerts: BTreeSet<String>,
}

pub struct Rollout {
    record: Record,
    policy: Policy,
    signals: BTreeMap<String, Signals>,
}

/// The wave sizes for `members` devices: the canary wave first, then as the plan says.
pub fn wave_sizes(members: usize, canary: Option<usize>, plan: WavePlan) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut left = members;
    if let Some(canary) = canary {
        let size = canary.clamp(1, members.max(1)).min(left);
        sizes.push(size);
        left -= size;
    }
    let mut next = match plan {
        WavePlan::Rate { per_minute, wave_secs } => (u64::from(per_minute) * wave_secs).div_ceil(60).max(1) as usize,
        WavePlan::Exponential { first } => match canary {
            Some(canary) => canary.max(1) * 2,
            None => first.max(1),
        },
    };
    while left > 0 {
        let size = next.min(left);
        sizes.push(size);
        left -= size;
        if let WavePlan::Exponential { .. } = plan {
            next = next.saturating_mul(2);
        }
    }
    sizes
}

impl Record {
    /// A new rollout: `members` (device, prefix) cut into waves of `sizes`, in device-id order.
    pub fn plan(
        group: &str,
        update_id: &str,
        sha256: &str,
        members: BTreeMap<String, String>,
        sizes: &[usize],
    ) -> Record {
        let mut devices = members.keys().cloned();
        let waves = sizes
            .iter()
            .map(|&size| Wave {
                devices: devices.by_ref().take(size).collect(),
                order: None,
                started_ms: None,
                deadline_ms: None,
                settled_ms: None,
                gate: None,
            })
            .collect();
        Record {
            group: group.to_owned(),
            update_id: update_id.to_owned(),
            sha256: sha256.to_owned(),
            members,
            waves,
            outcomes: BTreeMap::new(),
            paused: false,
            end: None,
        }
    }

    fn current_wave(&self) -> Option<usize> {
        self.waves.iter().rposition(|wave| wave.order.is_some())
    }

    fn last_counter(&self) -> u64 {
        self.waves.iter().filter_map(|wave| wave.order.map(|order| order.counter)).max().unwrap_or(0)
    }
}

impl Rollout {
    /// Takes up `record`, new or persisted; the returned actions repeat the current wave's order to its devices
    /// that have no outcome yet (never a new order to a device already announced).
    pub fn resume(record: Record, policy: Policy) -> (Rollout, Vec<Action>) {
        let mut actions = Vec::new();
        if record.end.is_none()
            && let Some(index) = record.current_wave()
        {
            let wave = &record.waves[index];
            let devices: Vec<String> =
                wave.devices.iter().filter(|device| !record.outcomes.contains_key(*device)).cloned().collect();
            if let (Some(order), false) = (wave.order, devices.is_empty()) {
                actions.push(Action::Announce { wave: index, devices, order });
            }
        }
        (Rollout { record, policy, signals: BTreeMap::new() }, actions)
    }

    pub fn record(&self) -> &Record {
        &self.record
    }

    pub fn handle(&mut self, event: Event, now_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.record.end.is_some() {
            return actions;
        }
        match event {
            Event::Outcome { device, outcome } => self.on_outcome(device, outcome, &mut actions),
            Event::Health { device, sample } => {
                if self.record.outcomes.get(&device).is_some_and(|o| o.state == OutcomeState::Committed) {
                    let signals = self.signals.entry(device).or_default();
                    signals.first.get_or_insert(sample);
                    signals.latest = Some(sample);
                }
            }
            Event::Alert { device, source, active } => {
                let alerts = &mut self.signals.entry(device).or_default().alerts;
                if active {
                    alerts.insert(source);
                } else {
                    alerts.remove(&source);
                }
            }
            Event::Control(control) => self.on_control(control, now_ms, &mut actions),
            Event::Tick => {}
        }
        if self.record.end.is_none() {
            self.advance(now_ms, &mut actions);
        }
        actions
    }

    fn on_outcome(&mut self, device: String, outcome: Outcome, actions: &mut Vec<Action>) {
        let announced = self.record.waves.iter().any(|wave| wave.order.is_some() && wave.devices.contains(&device));
        if !announced || self.record.outcomes.contains_key(&device) {
            return;
        }
        // Not persisted here: a thousand outcomes would be a thousand writes of the whole record, each replicated by
        // a clustered broker. The record is written ahead of every announcement and when a wave settles; a re-run
        // learns the outcomes in between from the devices' retained statuses, as they answer the repeated order.
        self.record.outcomes.insert(device.clone(), outcome.clone());
        actions.push(Action::Outcome { device, outcome });
    }

    fn on_control(&mut self, control: Control, now_ms: u64, actions: &mut Vec<Action>) {
        match control {
            Control::Pause if !self.record.paused => {
                self.record.paused = true;
                actions.extend([Action::Paused, Action::Persist]);
            }
            Control::Resume if self.record.paused => {
                self.record.paused = false;
                actions.extend([Action::Resumed, Action::Persist]);
            }
            Control::Abort => self.abort("aborted by the operator".to_owned(), now_ms, actions),
            Control::Pause | Control::Resume => {}
        }
    }

    fn abort(&mut self, reason: String, now_ms: u64, actions: &mut Vec<Action>) {
        self.record.end = Some(End::Aborted { at_ms: now_ms, reason: reason.clone() });
        actions.extend([Action::Aborted { reason }, Action::Persist]);
    }

    /// The failure budget: `Some(why)` once it is spent.
    fn over_budget(&self) -> Option<String> {
        let finished = self.record.outcomes.len();
        let failures = self.record.outcomes.values().filter(|o| o.state != OutcomeState::Committed).count();
        let limit = u64::from(self.policy.max_failures_percent) * finished as u64;
        (finished >= self.policy.min_finished && failures as u64 * 100 > limit).then(|| {
            format!(
                "{failures} of {finished} finished devices failed, more than --max-failures {}%",
                self.policy.max_failures_percent
            )
        })
    }

    fn advance(&mut self, now_ms: u64, actions: &mut Vec<Action>) {
        if let Some(reason) = self.over_budget() {
            return self.abort(reason, now_ms, actions);
        }
        let next = match self.record.current_wave() {
            None => 0,
            Some(index) => {
                if !self.settle(index, now_ms, actions) {
                    return;
                }
                if let Some(reason) = self.over_budget() {
                    return self.abort(reason, now_ms, actions);
                }
                match self.gate(index, now_ms, actions) {
                    None => return,
                    Some(Err(reason)) => return self.abort(format!("wave {index}: {reason}"), now_ms, actions),
                    Some(Ok(())) => {}
                }
                if index + 1 == self.record.waves.len() {
                    self.record.end = Some(End::Finished { at_ms: now_ms });
                    actions.extend([Action::Finished, Action::Persist]);
                    return;
                }
                let started = self.record.waves[index].started_ms.unwrap_or(0);
                if let WavePlan::Rate { wave_secs, .. } = self.policy.plan
                    && now_ms < started + wave_secs * 1000
                {
                    return;
                }
                index + 1
            }
        };
        if self.record.paused {
            return;
        }
        self.start(next, now_ms, actions);
    }

    /// Times out the wave's silent devices past its deadline; whether every device has an outcome.
    fn settle(&mut self, index: usize, now_ms: u64, actions: &mut Vec<Action>) -> bool {
        let wave = &self.record.waves[index];
        if wave.settled_ms.is_some() {
            return true;
        }
        if wave.deadline_ms.is_some_and(|deadline| now_ms >= deadline) {
            let silent: Vec<String> =
                wave.devices.iter().filter(|d| !self.record.outcomes.contains_key(*d)).cloned().collect();
            let reason = format!("no outcome within {} s", self.policy.wave_timeout_ms / 1000);
            for device in silent {
                let outcome = Outcome { state: OutcomeState::TimedOut, reason: Some(reason.clone()) };
                self.on_outcome(device, outcome, actions);
            }
        }
        let wave = &mut self.record.waves[index];
        if wave.devices.iter().all(|device| self.record.outcomes.contains_key(device)) {
            wave.settled_ms = Some(now_ms);
            actions.push(Action::Persist);
            return true;
        }
        false
    }

    /// The wave's gate: `None` while its soak lasts.
    fn gate(&mut self, index: usize, now_ms: u64, actions: &mut Vec<Action>) -> Option<Result<(), String>> {
        let wave = &self.record.waves[index];
        if let Some(result) = &wave.gate {
            return Some(result.clone());
        }
        let committed: Vec<&String> = wave
            .devices
            .iter()
            .filter(|d| self.record.outcomes.get(*d).is_some_and(|o| o.state == OutcomeState::Committed))
            .collect();
        let result = if committed.is_empty() {
            Err("no device committed".to_owned())
        } else if now_ms < wave.settled_ms.unwrap_or(now_ms) + self.policy.gates.soak_ms {
            return None;
        } else {
            committed.iter().try_for_each(|device| self.quality(device))
        };
        self.record.waves[index].gate = Some(result.clone());
        actions.extend([Action::Gate { wave: index, result: result.clone() }, Action::Persist]);
        Some(result)
    }

    /// Whether a committed device's signals hold.
    fn quality(&self, device: &str) -> Result<(), String> {
        let gates = self.policy.gates;
        let empty = Signals::default();
        let signals = self.signals.get(device).unwrap_or(&empty);
        if !gates.allow_alerts && !signals.alerts.is_empty() {
            let sources: Vec<&str> = signals.alerts.iter().map(String::as_str).collect();
            return Err(format!("{device} has active alerts on {}", sources.join(", ")));
        }
        if gates.max_error_rate.is_none() && gates.max_latency_ms.is_none() {
            return Ok(());
        }
        let Some(latest) = signals.latest else {
            return Err(format!("{device} sent no health report after it committed"));
        };
        if let Some(max) = gates.max_error_rate {
            let first = signals.first.filter(|first| first.frames < latest.frames);
            let (errors, frames) = match first {
                Some(first) => (latest.errors.saturating_sub(first.errors), latest.frames - first.frames),
                None => (latest.errors, latest.frames),
            };
            let rate = if frames == 0 { 0.0 } else { errors as f64 / frames as f64 };
            if rate > max {
                return Err(format!("{device}'s error rate {rate:.4} is over --max-error-rate {max}"));
            }
        }
        if let Some(max) = gates.max_latency_ms
            && latest.p95_ms > max
        {
            return Err(format!("{device}'s p95 latency {} ms is over --max-latency-ms {max}", latest.p95_ms));
        }
        Ok(())
    }

    fn start(&mut self, index: usize, now_ms: u64, actions: &mut Vec<Action>) {
        // The counter rule of `Signer`: Unix microseconds, above every counter used before.
        let counter = (now_ms * 1000).max(self.record.last_counter() + 1);
        let order = Stamp { counter, expires_at_ms: now_ms + self.policy.wave_timeout_ms + super::CLOCK_SLACK_MS };
        let wave = &mut self.record.waves[index];
        wave.order = Some(order);
        wave.started_ms = Some(now_ms);
        wave.deadline_ms = Some(now_ms + self.policy.wave_timeout_ms);
        let devices = wave.devices.clone();
        // Write-ahead: the record naming the devices is stored before any of them hears of the update.
        actions.extend([
            Action::Persist,
            Action::WaveStarted { wave: index, devices: devices.clone() },
            Action::Announce { wave: index, devices, order },
        ]);
    }
}

#[cfg(test)]
mod tests;
