//! Rollouts of a package to a group in waves (`model push --group --wave-rate|--ramp`), and `edgectl rollout
//! pause|resume|abort|status`. The decisions are the pure [`machine`]; [`shell`] carries them out on the broker.
//! The rollout's record and the operator's controls are retained on the broker, each signed with the operator
//! key:
//!
//! ```text
//! groups/<g>/rollout/state     Envelope of a Record (JSON): waves, their orders, outcomes, pause, end
//! groups/<g>/rollout/control   Envelope of a ControlMessage: {"group":"lab","command":"pause","at_ms":...}
//! ```

mod machine;
mod shell;

pub use machine::Stamp;
pub(crate) use shell::{Push, WaveArgs, run as run_waves};

use crate::push::{Broker, BrokerArgs, Inbound, KeyArgs, Signer, client_id};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use machine::{Control, End, Record};
use packaging::PublicKey;
use serde::{Deserialize, Serialize};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// An order's expiry beyond its wave's timeout: the devices' clocks may be ahead (the signer's rule).
const CLOCK_SLACK_MS: u64 = crate::push::CLOCK_SLACK.as_millis() as u64;
/// How long to wait for the broker to hand over a retained record.
const RETAINED_WAIT: Duration = Duration::from_secs(1);
/// How long the broker may take to hand back a record it stores: a clustered broker replicates it first, and three
/// NATS nodes on a loaded 2-core machine under a thousand devices took more than 30 s.
const STORE_WAIT: Duration = Duration::from_secs(120);
/// Room for a record of a large group.
pub(crate) const MAX_PACKET: usize = 16 * 1024 * 1024;

pub fn state_topic(group: &str) -> String {
    format!("groups/{group}/rollout/state")
}

pub fn control_topic(group: &str) -> String {
    format!("groups/{group}/rollout/control")
}

/// What `edgectl rollout pause|resume|abort` publishes, signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlMessage {
    pub group: String,
    pub command: ControlCommand,
    pub at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ControlCommand {
    Pause,
    Resume,
    Abort,
}

impl ControlCommand {
    fn control(self) -> Control {
        match self {
            ControlCommand::Pause => Control::Pause,
            ControlCommand::Resume => Control::Resume,
            ControlCommand::Abort => Control::Abort,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum RolloutCommand {
    /// Start no new wave until `resume` (the devices already announced finish).
    Pause(RolloutArgs),
    /// Let a paused rollout go on.
    Resume(RolloutArgs),
    /// End the rollout: no device not yet announced ever hears of the update.
    Abort(RolloutArgs),
    /// Print the group's rollout record.
    Status(StatusArgs),
}

/// Which group's rollout, on which broker, and the operator key: it signs a control message, and a record must
/// carry its signature.
#[derive(Args, Debug)]
pub struct RolloutArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub signer: KeyArgs,
    /// The group whose rollout this is.
    #[arg(long, value_name = "NAME")]
    pub group: String,
}

impl RolloutArgs {
    /// The operator key and a connection to the broker, once the group's name is checked.
    fn open(&self) -> Result<(Signer, Broker)> {
        crate::push::check_name("--group", &self.group)?;
        let signer = Signer::open(&self.signer)?;
        let broker = Broker::connect(&self.broker, &client_id(), MAX_PACKET)?;
        Ok((signer, broker))
    }
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub rollout: RolloutArgs,
    /// Print the record as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn main(command: &RolloutCommand) -> Result<ExitCode> {
    match command {
        RolloutCommand::Pause(args) => control(args, ControlCommand::Pause),
        RolloutCommand::Resume(args) => control(args, ControlCommand::Resume),
        RolloutCommand::Abort(args) => control(args, ControlCommand::Abort),
        RolloutCommand::Status(args) => status(args),
    }
}

fn control(args: &RolloutArgs, command: ControlCommand) -> Result<ExitCode> {
    let (signer, mut broker) = args.open()?;
    let message = ControlMessage { group: args.group.clone(), command, at_ms: unix_ms() };
    let payload = signer.seal_text(serde_json::to_string(&message)?)?;
    let topic = control_topic(&args.group);
    publish_acknowledged(&mut broker, &topic, &payload)?;
    broker.close();
    println!("{}: {} published on {topic}", args.group, serde_json::to_value(command)?.as_str().unwrap_or(""));
    Ok(ExitCode::SUCCESS)
}

fn status(args: &StatusArgs) -> Result<ExitCode> {
    let group = &args.rollout.group;
    let (signer, mut broker) = args.rollout.open()?;
    let record = read_record(&mut broker, group, &signer.public_key())?;
    broker.close();
    let Some(record) = record else {
        bail!("group {group}: no rollout record retained on {}", state_topic(group));
    };
    if args.json {
        println!("{}", serde_json::to_string(&record)?);
    } else {
        println!("{}", describe(&record));
    }
    Ok(ExitCode::SUCCESS)
}

/// The record for people: its state, then a line per wave.
fn describe(record: &Record) -> String {
    let state = match (&record.end, record.paused) {
        (Some(End::Finished { .. }), _) => "finished".to_owned(),
        (Some(End::Aborted { reason, .. }), _) => format!("aborted: {reason}"),
        (None, true) => "paused".to_owned(),
        (None, false) => "running".to_owned(),
    };
    let mut text = format!("group {}, update {} ({}): {state}", record.group, record.update_id, record.sha256);
    for (index, wave) in record.waves.iter().enumerate() {
        let outcomes: Vec<String> = wave
            .devices
            .iter()
            .map(|device| match record.outcomes.get(device) {
                Some(outcome) => format!("{device} {}", serde_json::to_value(outcome.state).unwrap_or_default()),
                None if wave.order.is_some() => format!("{device} announced"),
                None => device.clone(),
            })
            .collect();
        let gate = match &wave.gate {
            Some(Ok(())) => ", gate passed".to_owned(),
            Some(Err(reason)) => format!(", gate failed: {reason}"),
            None => String::new(),
        };
        text.push_str(&format!("\n  wave {index}: {}{gate}", outcomes.join(", ").replace('"', "")));
    }
    text
}

/// Publishes `payload` retained on `topic` and waits until the broker hands it back on a subscription: then it
/// is stored (the broker takes a client's packets in order). What else arrives meanwhile (a control, health) is
/// given back to the broker for the caller.
pub(crate) fn publish_acknowledged(broker: &mut Broker, topic: &str, payload: &[u8]) -> Result<()> {
    broker.subscribe(topic)?;
    let deadline = Instant::now() + STORE_WAIT;
    broker.publish_retained(topic, payload, deadline)?;
    let mut others = Vec::new();
    let stored = loop {
        let Some(wait) = deadline.checked_duration_since(Instant::now()) else { break false };
        match broker.recv(wait) {
            Some(Inbound::Message { topic: on, payload: stored, .. }) if on == topic && stored == payload => {
                break true;
            }
            Some(other) => others.push(other),
            None => {}
        }
    };
    broker.hold(others);
    if !stored {
        bail!("the broker did not store {topic} within {} s", STORE_WAIT.as_secs());
    }
    broker.unsubscribe(topic)
}

/// The rollout record retained for `group`, checked against the operator's key; `None` when none is retained.
pub(crate) fn read_record(broker: &mut Broker, group: &str, key: &PublicKey) -> Result<Option<Record>> {
    let topic = state_topic(group);
    broker.subscribe(&topic)?;
    let deadline = Instant::now() + RETAINED_WAIT;
    let (mut found, mut others) = (None, Vec::new());
    while let Some(wait) = deadline.checked_duration_since(Instant::now()) {
        match broker.recv(wait) {
            Some(Inbound::Message { topic: on, payload, retained: true }) if on == topic => {
                found = Some(payload);
                break;
            }
            Some(other) => others.push(other),
            None => {}
        }
    }
    broker.hold(others);
    broker.unsubscribe(&topic)?;
    let Some(payload) = found.filter(|payload| !payload.is_empty()) else { return Ok(None) };
    let record = open_record(&payload, key).with_context(|| format!("the rollout record retained on {topic}"))?;
    if record.group != group {
        bail!("the rollout record retained on {topic} is about group {:?}", record.group);
    }
    Ok(Some(record))
}

fn open_record(payload: &[u8], key: &PublicKey) -> Result<Record> {
    let (text, _) = packaging::order::open_text("the rollout state", payload, std::slice::from_ref(key))
        .context("refused: not signed by this operator key")?;
    serde_json::from_str(&text).context("a signed text that is not a rollout record")
}

/// A control message on the control topic, checked against the operator's key and the group.
fn open_control(payload: &[u8], key: &PublicKey, group: &str) -> Result<ControlMessage> {
    let (text, _) = packaging::order::open_text("the rollout control", payload, std::slice::from_ref(key))?;
    let message: ControlMessage = serde_json::from_str(&text).context("a signed text that is not a control")?;
    if message.group != group {
        bail!("a control for group {:?}", message.group);
    }
    Ok(message)
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_controls_open_with_the_operator_key_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ours, other) = (packaging::SigningKey::generate().unwrap(), packaging::SigningKey::generate().unwrap());
        let path = dir.path().join("ops.key");
        ours.write(&path).expect("written");
        let signer = Signer::open(&KeyArgs { key: path }).expect("opened");
        let record = Record::plan("lab", "0123", "ab", [("d1".into(), "devices/d1".into())].into(), &[1]);
        let payload = signer.seal_text(serde_json::to_string(&record).unwrap()).unwrap();
        assert_eq!(open_record(&payload, &ours.public_key()).unwrap(), record);
        let forged = open_record(&payload, &other.public_key()).unwrap_err();
        assert!(format!("{forged:#}").contains("not signed by this operator key"), "{forged:#}");

        let control = ControlMessage { group: "lab".into(), command: ControlCommand::Pause, at_ms: 1 };
        let payload = signer.seal_text(serde_json::to_string(&control).unwrap()).unwrap();
        assert_eq!(open_control(&payload, &ours.public_key(), "lab").unwrap(), control);
        assert!(open_control(&payload, &ours.public_key(), "other").is_err());
        assert!(open_control(&payload, &other.public_key(), "lab").is_err());
    }
}
