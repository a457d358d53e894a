//! The IO of a rollout: reads or plans the record, carries out the machine's actions (persist, announce a wave
//! through the push's transfer, print), and feeds it what the broker says (outcomes, health, alerts, controls)
//! and the clock. A wave's devices are each announced on their own prefix with the wave's signed order, and
//! their chunks are published there too.

use super::machine::{
    Action, End, Event, Gates, HealthSample, Outcome, OutcomeState, Policy, Record, Rollout, WavePlan, wave_sizes,
};
use super::{CLOCK_SLACK_MS, control_topic, open_control, publish_acknowledged, read_record, state_topic, unix_ms};
use crate::push::{Broker, Inbound, Signer};
use crate::push::{ChunkCounts, Package, Phase, Settings, Target, own_prefix, transfer};
use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use protocol::update::UpdateState;
use protocol::wire::{Format, Health, decode};
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::process::ExitCode;
use std::time::Duration;

/// How often the clock ticks the machine while nothing arrives.
const TICK: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Ramp {
    Exponential,
}

/// The flags of `model push --group` that make it a rollout in waves.
#[derive(Args, Debug)]
pub struct WaveArgs {
    /// Start at most this many devices a minute, in device-id order: waves of ceil(rate × --wave-secs / 60).
    #[arg(long, value_name = "DEVICES", conflicts_with = "ramp", requires = "group",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub wave_rate: Option<u32>,
    /// Seconds between the starts of two --wave-rate waves (at least).
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub wave_secs: u64,
    /// Waves of --first-wave (or twice the canaries), then twice as many each time.
    #[arg(long, value_enum, requires = "group")]
    pub ramp: Option<Ramp>,
    /// The size of the first --ramp wave when there is no --canary.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub first_wave: u64,
    /// Abort when more than this percentage of the devices with an outcome failed...
    #[arg(long, value_name = "P%", default_value = "10%", value_parser = parse_percent)]
    pub max_failures: u32,
    /// ...once at least this many devices have an outcome.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub min_finished: usize,
    /// Seconds a wave's signals must hold after its devices committed before the next wave starts.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub soak_secs: u64,
    /// Highest failed inputs per input over the soak (0.05 = 5%); needs health reports.
    #[arg(long, value_name = "RATE")]
    pub max_error_rate: Option<f64>,
    /// Highest p95 of any source's whole pipeline (health's `latency.total.p95_us`).
    #[arg(long, value_name = "MS")]
    pub max_latency_ms: Option<u32>,
    /// Let a wave pass with active drift or accuracy alerts.
    #[arg(long)]
    pub allow_alerts: bool,
    /// Start a new rollout although the group's record shows this update's rollout finished or aborted.
    #[arg(long)]
    pub restart: bool,
}

impl WaveArgs {
    pub fn waves(&self) -> bool {
        self.wave_rate.is_some() || self.ramp.is_some()
    }

    fn policy(&self, timeout: Duration) -> Policy {
        let plan = match self.wave_rate {
            Some(per_minute) => WavePlan::Rate { per_minute, wave_secs: self.wave_secs },
            None => WavePlan::Exponential { first: usize::try_from(self.first_wave).unwrap_or(usize::MAX) },
        };
        Policy {
            plan,
            max_failures_percent: self.max_failures,
            min_finished: self.min_finished,
            gates: Gates {
                soak_ms: self.soak_secs * 1000,
                max_error_rate: self.max_error_rate,
                max_latency_ms: self.max_latency_ms,
                allow_alerts: self.allow_alerts,
            },
            wave_timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

fn parse_percent(text: &str) -> Result<u32, String> {
    match text.strip_suffix('%').unwrap_or(text).parse() {
        Ok(percent @ 0..=100) => Ok(percent),
        _ => Err(format!("{text:?} is not a percentage from 0% to 100%")),
    }
}

/// What the rollout needs from `model push`.
pub struct Push<'a> {
    pub group: &'a str,
    pub waves: &'a WaveArgs,
    pub canary: Option<crate::push::Canary>,
    pub timeout: Duration,
    pub json: bool,
}

/// Runs (or continues) the rollout of `package` to the group: 0 when it finished, 1 when it was aborted.
pub fn run(push: &Push, broker: &mut Broker, package: &mut Package, signer: &mut Signer) -> Result<ExitCode> {
    let group = push.group;
    let policy = push.waves.policy(push.timeout);
    let announcement = package.announcement(&protocol::update::UpdateTopics::group(group));
    let retained = read_record(broker, group, &signer.public_key())?;
    let record = match retained {
        Some(record) if record.update_id == announcement.id && record.end.is_none() => {
            log::info!("Continuing the rollout of update {} to {group} from its retained record.", record.update_id);
            record
        }
        Some(record) if record.update_id == announcement.id && !push.waves.restart => {
            print_end(push.json, &record);
            log::warn!("This rollout is over; --restart starts a new one of the same package.");
            return Ok(exit_status(&record));
        }
        Some(record) if record.end.is_none() => {
            bail!(
                "group {group} has a rollout of update {} under way: `edgectl rollout abort --group {group}` first",
                record.update_id
            );
        }
        _ => {
            let members = crate::push::discover_members(broker, group)?;
            let sizes = wave_sizes(members.len(), push.canary.map(|c| c.count(members.len())), policy.plan);
            let members = members.into_iter().map(|target| (target.device, target.prefix)).collect();
            // A control left from an earlier rollout must not steer this one.
            publish_acknowledged(broker, &control_topic(group), &[])?;
            Record::plan(group, &announcement.id, &announcement.sha256, members, &sizes)
        }
    };
    let (rollout, actions) = Rollout::resume(record, policy);
    let mut shell = Shell { push, rollout, inboxes: HashMap::new(), counts: ChunkCounts::default() };
    broker.subscribe(&control_topic(group))?;
    shell.subscribe_signals(broker)?;
    let mut queue: VecDeque<Action> = actions.into();
    queue.extend(shell.rollout.handle(Event::Tick, unix_ms()));
    loop {
        while let Some(action) = queue.pop_front() {
            let events = shell.carry_out(action, broker, package, signer)?;
            for event in events {
                queue.extend(shell.rollout.handle(event, unix_ms()));
            }
        }
        if shell.rollout.record().end.is_some() {
            break;
        }
        let event = match broker.recv(TICK) {
            Some(Inbound::Message { topic, payload, .. }) => shell.event(&topic, &payload, signer),
            _ => None,
        };
        queue.extend(shell.rollout.handle(event.unwrap_or(Event::Tick), unix_ms()));
    }
    print_end(push.json, shell.rollout.record());
    Ok(exit_status(shell.rollout.record()))
}

#[derive(Debug, Clone)]
enum Inbox {
    Health(String),
    Alert(String),
}

struct Shell<'a> {
    push: &'a Push<'a>,
    rollout: Rollout,
    inboxes: HashMap<String, Inbox>,
    counts: ChunkCounts,
}

impl Shell<'_> {
    /// Follows the health and alerts of every announced device.
    fn subscribe_signals(&mut self, broker: &mut Broker) -> Result<()> {
        let record = self.rollout.record();
        let announced: Vec<String> =
            record.waves.iter().filter(|wave| wave.order.is_some()).flat_map(|wave| wave.devices.clone()).collect();
        for device in announced {
            let prefix = &record.members[&device];
            for (filter, inbox) in [
                (format!("{prefix}/health"), Inbox::Health(device.clone())),
                (format!("{prefix}/alerts/+"), Inbox::Alert(device.clone())),
            ] {
                if self.inboxes.insert(filter.clone(), inbox).is_none() {
                    broker.subscribe(&filter)?;
                }
            }
        }
        Ok(())
    }

    fn event(&self, topic: &str, payload: &[u8], signer: &Signer) -> Option<Event> {
        let group = self.push.group;
        if topic == control_topic(group) {
            if payload.is_empty() {
                return None;
            }
            return match open_control(payload, &signer.public_key(), group) {
                Ok(message) => Some(Event::Control(message.command.control())),
                Err(error) => {
                    log::warn!("Ignoring the control on {topic}: {error:#}.");
                    None
                }
            };
        }
        let inbox = self.inboxes.iter().find(|(filter, _)| mqtt::matches(topic, filter)).map(|(_, inbox)| inbox)?;
        match inbox {
            Inbox::Health(device) => {
                let health: Health = match decode(Format::Json, payload).or_else(|_| decode(Format::Postcard, payload))
                {
                    Ok(health) => health,
                    Err(error) => {
                        log::warn!("Ignoring an unreadable health report on {topic}: {error}.");
                        return None;
                    }
                };
                Some(Event::Health { device: device.clone(), sample: sample(&health) })
            }
            Inbox::Alert(device) => {
                let source = topic.rsplit('/').next().unwrap_or_default().to_owned();
                Some(Event::Alert { device: device.clone(), source, active: !payload.is_empty() })
            }
        }
    }

    /// Carries out `action`; returns what it learnt (a wave's outcomes).
    fn carry_out(
        &mut self,
        action: Action,
        broker: &mut Broker,
        package: &mut Package,
        signer: &mut Signer,
    ) -> Result<Vec<Event>> {
        let json = self.push.json;
        match action {
            Action::Persist => {
                let text = serde_json::to_string(self.rollout.record())?;
                publish_acknowledged(broker, &state_topic(self.push.group), &signer.seal_text(text)?)?;
            }
            Action::WaveStarted { wave, devices } => {
                if json {
                    println!("{}", json!({"event": "wave_started", "wave": wave, "devices": devices}));
                } else {
                    println!("wave {wave} started: {}", devices.join(", "));
                }
            }
            Action::Announce { wave, devices, order } => {
                let record = self.rollout.record();
                let destinations = devices
                    .iter()
                    .map(|device| {
                        let target = Target { device: device.clone(), prefix: record.members[device].clone() };
                        crate::push::Destination { stamp: Some(order), ..own_prefix(&target) }
                    })
                    .collect();
                let left_ms = order.expires_at_ms.saturating_sub(CLOCK_SLACK_MS).saturating_sub(unix_ms());
                log::info!("Wave {wave}: announcing to {} (order {}).", devices.join(", "), order.counter);
                let settings = Settings { phase: Phase::Wave, json, timeout: Duration::from_millis(left_ms.max(1)) };
                let outcomes = transfer::run(broker, package, signer, destinations, settings, &mut self.counts)?;
                // What came meanwhile (health, alerts, a control) the transfer handed back to the broker.
                self.subscribe_signals(broker)?;
                return Ok(outcomes
                    .into_iter()
                    .filter(|outcome| outcome.finished)
                    .filter_map(|outcome| {
                        let state = match outcome.state? {
                            UpdateState::Committed => OutcomeState::Committed,
                            UpdateState::Rejected => OutcomeState::Rejected,
                            UpdateState::RolledBack => OutcomeState::RolledBack,
                            _ => OutcomeState::Failed,
                        };
                        let outcome_ = Outcome { state, reason: outcome.reason };
                        Some(Event::Outcome { device: outcome.device, outcome: outcome_ })
                    })
                    .collect());
            }
            Action::Outcome { device, outcome } => {
                let state = serde_json::to_value(outcome.state)?;
                if json {
                    println!(
                        "{}",
                        json!({"event": "device", "device": device, "state": state, "reason": outcome.reason})
                    );
                } else {
                    let reason = outcome.reason.map(|r| format!(": {r}")).unwrap_or_default();
                    println!("{device}: {}{reason}", state.as_str().unwrap_or_default());
                }
            }
            Action::Gate { wave, result } => {
                let reason = result.as_ref().err();
                if json {
                    println!("{}", json!({"event": "gate", "wave": wave, "passed": result.is_ok(), "reason": reason}));
                } else {
                    match reason {
                        None => println!("wave {wave}: gate passed"),
                        Some(reason) => println!("wave {wave}: gate failed: {reason}"),
                    }
                }
            }
            Action::Paused | Action::Resumed => {
                let event = if action == Action::Paused { "paused" } else { "resumed" };
                if json {
                    println!("{}", json!({"event": event}));
                } else {
                    println!("rollout {event}");
                }
            }
            Action::Aborted { reason } => {
                if json {
                    println!("{}", json!({"event": "aborted", "reason": reason}));
                } else {
                    println!("rollout aborted: {reason}");
                }
            }
            Action::Finished => {}
        }
        Ok(Vec::new())
    }
}

/// A health report as the gate sees it: errors and inputs summed over the sources, the worst p95.
fn sample(health: &Health) -> HealthSample {
    let sources = &health.sources;
    HealthSample {
        errors: sources.iter().flat_map(|source| &source.errors).map(|count| count.count).sum(),
        frames: sources.iter().map(|source| source.frames_in).sum(),
        p95_ms: sources.iter().map(|source| source.latency.total.p95_us.div_ceil(1000)).max().unwrap_or(0),
    }
}

/// The last line: `finished` or `aborted`, with the outcomes and each wave's duration.
fn print_end(json: bool, record: &Record) {
    let (event, reason) = match &record.end {
        Some(End::Finished { .. }) => ("finished", None),
        Some(End::Aborted { reason, .. }) => ("aborted", Some(reason.as_str())),
        None => ("unfinished", None),
    };
    let count = |state| record.outcomes.values().filter(|o| o.state == state).count();
    let committed = count(OutcomeState::Committed);
    let failed = record.outcomes.len() - committed;
    let not_reached: usize =
        record.waves.iter().filter(|wave| wave.order.is_none()).map(|wave| wave.devices.len()).sum();
    let waves: Vec<_> = record
        .waves
        .iter()
        .enumerate()
        .map(|(index, wave)| {
            let duration_s = match (wave.started_ms, wave.settled_ms) {
                (Some(start), Some(end)) => Some(end.saturating_sub(start) as f64 / 1000.0),
                _ => None,
            };
            json!({"wave": index, "devices": wave.devices, "started": wave.order.is_some(), "duration_s": duration_s,
                   "gate_passed": wave.gate.as_ref().map(Result::is_ok)})
        })
        .collect();
    if json {
        println!(
            "{}",
            json!({"event": "summary", "end": event, "reason": reason, "update_id": record.update_id,
                   "committed": committed, "failed": failed, "not_reached": not_reached, "waves": waves,
                   "outcomes": record.outcomes})
        );
    } else {
        let reason = reason.map(|r| format!(" ({r})")).unwrap_or_default();
        println!(
            "rollout of update {} to {} {event}{reason}: {committed} committed, {failed} failed, {not_reached} not reached",
            record.update_id, record.group
        );
    }
}

fn exit_status(record: &Record) -> ExitCode {
    match record.end {
        Some(End::Finished { .. }) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages() {
        assert_eq!(parse_percent("10%"), Ok(10));
        assert_eq!(parse_percent("0"), Ok(0));
        assert!(parse_percent("101%").is_err());
        assert!(parse_percent("x").is_err());
    }

    #[test]
    fn health_as_the_gate_sees_it() {
        let health: Health = serde_json::from_value(json!({
            "device": "d", "agent_version": "0", "uptime_s": 1, "cpu_percent": 0.0, "rss_bytes": 0,
            "peak_rss_bytes": 0, "temperature_c": null, "mqtt_reconnects": 0, "health_unpublished": 0,
            "arch": "x86_64", "mqtt_oversized": 0, "conditions": [], "spool": null, "cameras": [],
            "snapshots": [], "monitors": [], "sources": []
        }))
        .expect("health");
        assert_eq!(sample(&health), HealthSample { errors: 0, frames: 0, p95_ms: 0 });
    }
}
