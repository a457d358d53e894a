//! `model push` and `model rollback`: the workstation side of over-the-air updates.
//!
//! A push announces the package on a device's prefix (or a group's base), repeats the announcement until every
//! device has taken it up, and publishes the chunks the devices ask for: devices pull, so a device that was
//! away, or restarted, resumes where it stopped. It follows each device's retained status until every one has
//! an outcome or `--timeout` passes. A group push can go to a few canary devices first, and to the rest only if
//! the canaries commit.
//!
//! Ctrl-C and SIGTERM end the push at once, by their default action: the devices keep what they have staged,
//! and a later push of the same package resumes it.

pub(crate) mod broker;
mod chunks;
mod package;
mod passed_on;
mod report;
mod signer;
pub(crate) mod transfer;

pub(crate) use crate::rollout::WaveArgs;
use anyhow::{Result, bail};
pub use broker::BrokerArgs;
pub(crate) use broker::{Broker, Inbound};
pub(crate) use chunks::ChunkCounts;
use clap::Args;
pub(crate) use package::Package;
use protocol::update::{Instruction, Membership, Target as OrderTarget, UpdateState, UpdateStatus, UpdateTopics};
pub(crate) use report::Phase;
use report::{DeviceOutcome, Summary, progress_line};
pub(crate) use signer::{CLOCK_SLACK, KeyArgs, Signer};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
pub(crate) use transfer::{Destination, Settings, Target};

/// Room in a packet for the topic and the MQTT header around a chunk.
const PACKET_OVERHEAD: usize = 1024;
/// The largest chunk that fits an MQTT packet (256 MiB) with the overhead.
const MAX_CHUNK_SIZE: i64 = 268_435_455 - PACKET_OVERHEAD as i64;
/// The smallest packet limit: statuses and memberships are small, but not that small.
const MIN_MAX_PACKET: usize = 64 * 1024;
/// How long group members have to show up, and the silence after the first one that ends the wait early.
const MEMBERS_WAIT: Duration = Duration::from_secs(2);
const MEMBERS_SILENCE: Duration = Duration::from_millis(300);

#[derive(Args, Debug)]
pub struct PushArgs {
    /// The package to deliver (a `model pack` file).
    pub package: PathBuf,
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub signer: KeyArgs,
    /// A device to update; repeat for several.
    #[arg(long = "device", value_name = "ID", required_unless_present = "group")]
    pub devices: Vec<String>,
    /// Update every member of this group (members announce themselves under groups/<name>/members/).
    #[arg(long, value_name = "NAME", conflicts_with = "devices")]
    pub group: Option<String>,
    /// Update N members, or P% of them (at least one), first, each on its own prefix; go on to the whole group
    /// only if every one of them commits.
    // `conflicts_with` too: clap drops the requirement of an argument that conflicts with a present one.
    #[arg(long, value_name = "N|P%", requires = "group", conflicts_with = "devices", value_parser = parse_canary)]
    pub canary: Option<Canary>,
    /// The device's topic prefix (default devices/<id>); with a single --device.
    #[arg(long, requires = "devices", conflicts_with = "group")]
    pub prefix: Option<String>,
    /// Bytes per chunk.
    #[arg(
        long,
        value_name = "BYTES",
        default_value_t = 65536,
        value_parser = clap::value_parser!(u32).range(1..=MAX_CHUNK_SIZE)
    )]
    pub chunk_size: u32,
    /// Authorise, signed, a version lower than the one running and the device's version floor (an explicit
    /// rollback).
    #[arg(long)]
    pub rollback: bool,
    /// Seconds to wait for the outcomes: of the canaries, then of the group.
    #[arg(long, value_name = "SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub waves: WaveArgs,
}

#[derive(Args, Debug)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub signer: KeyArgs,
    /// The device to roll back.
    #[arg(long, value_name = "ID")]
    pub device: String,
    /// The device's topic prefix (default devices/<id>).
    #[arg(long)]
    pub prefix: Option<String>,
    /// The model to roll back (default: the device's only updated model).
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// Seconds to wait for the device's answer.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// How many members of a group go first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canary {
    Devices(usize),
    Percent(u32),
}

impl Canary {
    /// The number of canaries among `members` devices: at least one, at most all.
    pub(crate) fn count(self, members: usize) -> usize {
        let wanted = match self {
            Canary::Devices(count) => count,
            Canary::Percent(percent) => (members * percent as usize).div_ceil(100),
        };
        wanted.max(1).min(members)
    }
}

fn parse_canary(text: &str) -> Result<Canary, String> {
    match text.strip_suffix('%') {
        Some(percent) => match percent.parse() {
            Ok(percent @ 1..=100) => Ok(Canary::Percent(percent)),
            _ => Err(format!("{text:?} is not a percentage from 1% to 100%")),
        },
        None => match text.parse() {
            Ok(count @ 1..) => Ok(Canary::Devices(count)),
            _ => Err(format!("{text:?} is neither a number of devices (at least 1) nor a percentage")),
        },
    }
}

/// `model push`: 0 when every device committed, 1 otherwise.
pub fn main(args: &PushArgs) -> Result<ExitCode> {
    let started = Instant::now();
    if let Some(group) = &args.group {
        check_name("--group", group)?;
    }
    let targets =
        args.devices.iter().map(|device| device_target(device, args.prefix.as_deref())).collect::<Result<Vec<_>>>()?;
    if args.prefix.is_some() && targets.len() > 1 {
        bail!("--prefix names one device's prefix; it goes with a single --device");
    }
    let mut signer = Signer::open(&args.signer)?;
    let mut package = Package::open(&args.package, args.chunk_size, args.rollback)?;
    if !package.is_signed() {
        log::warn!("{} is not signed: devices will reject it.", args.package.display());
    }
    // The signed announcement carries the hash of every chunk; JSON inside JSON escapes its quotes.
    let announcement_bytes = serde_json::to_vec(&package.announcement(&UpdateTopics::group("")))?.len() * 2;
    let max_packet = (args.chunk_size as usize).max(announcement_bytes) + PACKET_OVERHEAD;
    // A rollout's record, retained on the broker, names every member: room for a large group.
    let max_packet = max_packet.max(MIN_MAX_PACKET).max(crate::rollout::MAX_PACKET);
    let mut broker = Broker::connect(&args.broker, &client_id(), max_packet)?;
    let mut counts = ChunkCounts::default();
    let settings = |phase| Settings { phase, json: args.json, timeout: Duration::from_secs(args.timeout) };
    let (outcomes, summary_topics) = match &args.group {
        None => {
            let destinations = targets.iter().map(own_prefix).collect();
            let outcomes = transfer::run(
                &mut broker,
                &mut package,
                &mut signer,
                destinations,
                settings(Phase::Devices),
                &mut counts,
            )?;
            (outcomes, UpdateTopics::device(&targets[0].prefix))
        }
        Some(group) if args.waves.waves() => {
            let push = crate::rollout::Push {
                group,
                waves: &args.waves,
                canary: args.canary,
                timeout: Duration::from_secs(args.timeout),
                json: args.json,
            };
            let status = crate::rollout::run_waves(&push, &mut broker, &mut package, &mut signer);
            broker.close();
            return status;
        }
        Some(group) => {
            let members = discover_members(&mut broker, group)?;
            let mut outcomes = Vec::new();
            let mut canaries_committed = true;
            if let Some(canary) = args.canary {
                let canaries = &members[..canary.count(members.len())];
                let names: Vec<&str> = canaries.iter().map(|target| target.device.as_str()).collect();
                log::info!("Canaries: {} of {} members of {group}.", names.join(", "), members.len());
                let destinations = canaries.iter().map(own_prefix).collect();
                let phase = settings(Phase::Canary);
                outcomes = transfer::run(&mut broker, &mut package, &mut signer, destinations, phase, &mut counts)?;
                canaries_committed = outcomes.iter().all(DeviceOutcome::committed);
                if canaries_committed {
                    outcomes.clear();
                } else {
                    log::error!("A canary did not commit: the rest of {group} is left as it is.");
                    outcomes.extend(members[canaries.len()..].iter().map(|target| DeviceOutcome {
                        device: target.device.clone(),
                        state: None,
                        reason: Some("not pushed: a canary did not commit".to_owned()),
                        finished: false,
                    }));
                }
            }
            if canaries_committed {
                let topics = UpdateTopics::group(group);
                let order_target = OrderTarget::Group(group.clone());
                let destinations = vec![Destination { topics, order_target, targets: members, stamp: None }];
                let phase = settings(Phase::Group);
                outcomes = transfer::run(&mut broker, &mut package, &mut signer, destinations, phase, &mut counts)?;
            }
            (outcomes, UpdateTopics::group(group))
        }
    };
    broker.close();
    let announcement = package.announcement(&summary_topics);
    let summary = Summary {
        announcement: &announcement,
        devices: &outcomes,
        chunks_published: counts.total,
        chunks_distinct: counts.distinct(),
        elapsed: started.elapsed(),
    };
    println!("{}", summary.render(args.json));
    Ok(if summary.all_committed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `model rollback`: 0 when the device rolled back, 1 when it refused, failed or did not answer.
pub fn rollback(args: &RollbackArgs) -> Result<ExitCode> {
    let target = device_target(&args.device, args.prefix.as_deref())?;
    let topics = UpdateTopics::device(&target.prefix);
    let timeout = Duration::from_secs(args.timeout);
    let mut signer = Signer::open(&args.signer)?;
    let rollback = Instruction::Rollback { model: args.model.clone() };
    let (command, counter) = signer.seal(OrderTarget::Device(target.device.clone()), rollback, timeout)?;
    let mut broker = Broker::connect(&args.broker, &client_id(), MIN_MAX_PACKET)?;
    let status_topic = topics.status();
    broker.subscribe(&status_topic)?;
    let deadline = Instant::now() + timeout;
    broker.publish(&topics.command(), &command, deadline)?;
    log::info!("Asked {} to roll back on {}.", target.device, topics.command());
    let answer = loop {
        let Some(wait) = deadline.checked_duration_since(Instant::now()) else { break None };
        let Some(Inbound::Message { topic, payload, .. }) = broker.recv(wait) else { continue };
        if topic != status_topic || payload.is_empty() {
            continue;
        }
        let status: UpdateStatus = match serde_json::from_slice(&payload) {
            Ok(status) => status,
            Err(error) => {
                log::warn!("Ignoring an unreadable status on {topic}: {error}.");
                continue;
            }
        };
        // Only the device's answer to this command counts, not what the broker retained or someone forged.
        if status.order != Some(counter) {
            continue;
        }
        println!("{}", progress_line(args.json, Phase::Rollback, &target.device, &status));
        if matches!(status.state, UpdateState::RolledBack | UpdateState::Rejected | UpdateState::Failed) {
            break Some(status.state);
        }
    };
    broker.close();
    Ok(match answer {
        Some(UpdateState::RolledBack) => ExitCode::SUCCESS,
        Some(_) => ExitCode::FAILURE,
        None => {
            let reason = format!("no answer within {} s", timeout.as_secs());
            if args.json {
                println!("{}", serde_json::json!({"device": target.device, "state": null, "reason": reason}));
            } else {
                println!("{}: {reason}", target.device);
            }
            ExitCode::FAILURE
        }
    })
}

/// The members of `group`, sorted by device id, from their retained membership messages.
pub(crate) fn discover_members(broker: &mut Broker, group: &str) -> Result<Vec<Target>> {
    let filter = UpdateTopics::group(group).member_filter();
    broker.subscribe(&filter)?;
    let started = Instant::now();
    let mut members = BTreeMap::new();
    let mut last_member = None;
    loop {
        let until = match last_member {
            None => started + MEMBERS_WAIT,
            Some(at) => (started + MEMBERS_WAIT).min(at + MEMBERS_SILENCE),
        };
        let Some(wait) = until.checked_duration_since(Instant::now()) else { break };
        let Some(Inbound::Message { topic, payload, .. }) = broker.recv(wait) else { continue };
        // An empty payload is a membership being cleared.
        if !mqtt::matches(&topic, &filter) || payload.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Membership>(&payload) {
            Ok(membership) => match device_target(&membership.device, Some(&membership.prefix)) {
                Ok(target) => {
                    members.insert(target.device.clone(), target);
                    last_member = Some(Instant::now());
                }
                Err(error) => log::warn!("Ignoring the membership on {topic}: {error:#}."),
            },
            Err(error) => log::warn!("Ignoring an unreadable membership on {topic}: {error}."),
        }
    }
    broker.unsubscribe(&filter)?;
    if members.is_empty() {
        bail!("group {group} has no members: nothing retained on {filter} within {} s", MEMBERS_WAIT.as_secs());
    }
    let members: Vec<Target> = members.into_values().collect();
    log::info!("Group {group}: {} members.", members.len());
    Ok(members)
}

/// The destination of a device pushed to on its own prefix.
pub(crate) fn own_prefix(target: &Target) -> Destination {
    Destination {
        topics: UpdateTopics::device(&target.prefix),
        order_target: OrderTarget::Device(target.device.clone()),
        targets: vec![target.clone()],
        stamp: None,
    }
}

pub(crate) fn device_target(device: &str, prefix: Option<&str>) -> Result<Target> {
    check_name("device id", device)?;
    let prefix = match prefix {
        Some(prefix) => {
            if prefix.is_empty() || prefix.contains(['+', '#']) {
                bail!("prefix {prefix:?} of {device}: empty or with MQTT wildcards");
            }
            prefix.to_owned()
        }
        None => format!("devices/{device}"),
    };
    Ok(Target { device: device.to_owned(), prefix })
}

/// Device ids and group names are single topic levels.
pub(crate) fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.contains(['/', '+', '#']) {
        bail!("{what} {name:?}: must be one MQTT topic level (not empty, no '/', '+' or '#')");
    }
    Ok(())
}

/// A client id no other pusher has: two pushes at once must not throw each other off the broker.
pub(crate) fn client_id() -> String {
    format!("push-{}-{}", std::process::id(), unix_time_ms())
}

pub(crate) fn unix_time_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canary_sizes() {
        assert_eq!(parse_canary("1"), Ok(Canary::Devices(1)));
        assert_eq!(parse_canary("25%"), Ok(Canary::Percent(25)));
        for bad in ["0", "0%", "101%", "-1", "x", "%", "2.5%", ""] {
            assert!(parse_canary(bad).is_err(), "{bad}");
        }
        assert_eq!(Canary::Devices(1).count(10), 1);
        assert_eq!(Canary::Devices(5).count(3), 3);
        assert_eq!(Canary::Percent(25).count(8), 2);
        // Rounded up, and never none.
        assert_eq!(Canary::Percent(25).count(9), 3);
        assert_eq!(Canary::Percent(1).count(3), 1);
        assert_eq!(Canary::Percent(100).count(4), 4);
    }

    #[test]
    fn push_arguments() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            push: PushArgs,
        }
        let parse = |args: &str| {
            let args = ["push", "p.bundle", "--broker", "b", "--key", "k"].into_iter().chain(args.split_whitespace());
            <Cli as clap::Parser>::try_parse_from(args).map(|cli| cli.push)
        };
        let without_key = ["push", "p.bundle", "--broker", "b", "--device", "a"];
        assert!(<Cli as clap::Parser>::try_parse_from(without_key).is_err(), "pushes are signed: --key is required");
        let push = parse("--device a --device b").expect("valid");
        assert_eq!(
            (push.devices, push.chunk_size, push.timeout, push.json),
            (vec!["a".into(), "b".into()], 65536, 600, false)
        );
        let push = parse("--group lab --canary 25% --timeout 5 --json").expect("valid");
        assert_eq!((push.group.as_deref(), push.canary, push.timeout), (Some("lab"), Some(Canary::Percent(25)), 5));
        assert_eq!(parse("--device a --prefix site/a").expect("valid").prefix.as_deref(), Some("site/a"));
        for bad in [
            "",
            "--device a --group lab",
            "--device a --canary 1",
            "--group lab --prefix x",
            "--group lab --canary 0",
            "--device a --chunk-size 0",
            "--device a --timeout 0",
            "--device a --password-file f",
            "--device a --tls-cert c --tls-key k",
            "--device a --tls-ca ca --tls-cert c",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn targets_and_names() {
        assert_eq!(
            device_target("cam-01", None).expect("valid"),
            Target { device: "cam-01".into(), prefix: "devices/cam-01".into() }
        );
        assert_eq!(device_target("cam-01", Some("site/a/cam")).expect("valid").prefix, "site/a/cam");
        assert!(device_target("cam/01", None).is_err());
        assert!(device_target("+", None).is_err());
        assert!(device_target("cam-01", Some("site/#")).is_err());
        assert!(device_target("cam-01", Some("")).is_err());
        assert!(check_name("--group", "lab").is_ok());
        assert!(check_name("--group", "").is_err());
    }

    #[test]
    fn client_id_names_the_process() {
        let id = client_id();
        assert!(id.starts_with(&format!("push-{}-", std::process::id())), "{id}");
    }
}
