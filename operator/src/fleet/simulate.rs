//! `edgectl fleet simulate`: N simulated devices in one process, each with its own MQTT session, for load-testing
//! a broker and a rollout before touching real devices. Each device is two named threads: its link (`mqtt`) and
//! its own (`sim-<index>`), which runs the real update machine of `device-update`; installs, self-tests and
//! probation are simulated. State is in memory: a restarted simulator starts fresh. See `docs/fleets.md`.

mod device;
mod plan;

use anyhow::{Context, Result, bail};
use clap::Args;
use device::{DeviceSpec, Inbound, MAX_PACKET, SimulatedDevice, SimulatedStatus};
use mqtt::{LinkOptions, Presence, QoS};
use plan::{FleetPlan, Tally};
use protocol::update::UpdateStatus;
use protocol::wire::Topics;
use serde_json::json;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Devices started per second: a few hundred, so that a broker is not stormed with connections.
const CONNECTS_PER_SECOND: u32 = 200;
/// Events from the devices to the main thread. A device blocks on a full channel (the main thread only prints,
/// so it drains it at once): an outcome is never lost.
const FLEET_EVENTS: usize = 1024;
const KEEP_ALIVE: Duration = Duration::from_secs(30);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests each link queues before a publish is refused (and counted).
const LINK_QUEUE: usize = 64;
/// Device threads do little: a small stack keeps 1,000 of them cheap.
const DEVICE_STACK: usize = 256 * 1024;

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// The MQTT broker, `host[:port]` (port default 1883); repeated, device i starts on the i-th (modulo) and fails
    /// over to the others in turn.
    #[arg(long = "broker", value_name = "HOST[:PORT]", required = true)]
    brokers: Vec<String>,
    /// How many devices to simulate.
    #[arg(long, value_name = "N")]
    devices: u32,
    /// The index of the first device.
    #[arg(long, default_value_t = 0)]
    first_index: u32,
    /// Device `i` is `<id-prefix><i, 4 digits>`, with prefix `devices/<id>`.
    #[arg(long, default_value = "sim-")]
    id_prefix: String,
    /// A group every device belongs to (repeatable): its retained membership and its update topics.
    #[arg(long = "group", value_name = "NAME")]
    groups: Vec<String>,
    /// The model the devices run.
    #[arg(long)]
    model: String,
    /// The version they run at start.
    #[arg(long)]
    version: String,
    /// An Ed25519 public key (64 hex digits) whose signed orders the devices take (repeatable).
    #[arg(long = "trusted-key", value_name = "HEX", required = true)]
    trusted_keys: Vec<String>,
    /// Predictions per second of each device.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Seconds between health reports.
    #[arg(long, default_value_t = 10.0)]
    health_secs: f64,
    /// Seconds an update spends on probation (it passes).
    #[arg(long, default_value_t = 5.0)]
    probation_secs: f64,
    /// Milliseconds a simulated install takes.
    #[arg(long, default_value_t = 200)]
    install_ms: u64,
    /// A device whose self-test fails (repeatable).
    #[arg(long = "fail-self-test", value_name = "DEVICE")]
    fail_self_test: Vec<String>,
    /// The devices whose index is K-1 mod K fail their self-test.
    #[arg(long, value_name = "K")]
    fail_self_test_every: Option<u32>,
    /// The QoS of every device's subscriptions, as the agent's `mqtt.qos.subscriptions`: 0 on NATS (a QoS 1
    /// subscription there is a JetStream consumer, which dies with its node; docs/fleets.md).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    subscription_qos: u8,
    /// Stop after this many seconds (default: at SIGTERM or SIGINT).
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// JSON lines on stdout: `ready`, one `outcome` per update outcome, a `summary` at exit.
    #[arg(long)]
    json: bool,
}

/// What the devices tell the main thread.
pub enum FleetEvent {
    /// Connected, subscribed, online.
    Ready,
    Outcome(Box<UpdateStatus>),
    /// Disconnected at shutdown: `closed` cleanly, with `unacked` publishes not acknowledged.
    Stopped {
        index: u32,
        closed: bool,
        unacked: u64,
    },
}

/// The devices' end of the main thread's channel.
#[derive(Clone)]
pub struct Fleet(SyncSender<FleetEvent>);

impl Fleet {
    fn send(&self, event: FleetEvent) {
        // Only fails once the main thread has gone, when nobody is left to tell.
        let _ = self.0.send(event);
    }
}

/// A started device: its inbox (to stop it) and its thread.
struct Running {
    inbox: SyncSender<Inbound>,
    thread: JoinHandle<()>,
}

pub fn main(args: &SimulateArgs) -> Result<ExitCode> {
    let plan = FleetPlan {
        id_prefix: args.id_prefix.clone(),
        first_index: args.first_index,
        devices: args.devices,
        failing: args.fail_self_test.clone(),
        fail_every: args.fail_self_test_every,
    };
    check(args, &plan)?;
    let trusted = args
        .trusted_keys
        .iter()
        .enumerate()
        .map(|(index, key)| {
            packaging::PublicKey::from_hex(key).with_context(|| format!("--trusted-key #{}: {key:?}", index + 1))
        })
        .collect::<Result<Vec<_>>>()?;
    let brokers = args
        .brokers
        .iter()
        .map(|broker| mqtt::BrokerAddress::parse(broker, 1883).with_context(|| format!("--broker {broker:?}")))
        .collect::<Result<Vec<_>>>()?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone()).context("installing the signal handlers")?;
    }
    let (sender, events) = sync_channel(FLEET_EVENTS);
    let fleet = Fleet(sender);
    let started = Instant::now();
    let deadline = args.duration.map(|secs| started + Duration::from_secs_f64(secs));
    let mut report = Report { json: args.json, devices: args.devices, ready: 0, tally: Tally::default(), started };
    let mut running = Vec::new();
    for (position, index) in plan.indices().enumerate() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let spec = DeviceSpec {
            index,
            groups: args.groups.clone(),
            model: args.model.clone(),
            version: args.version.clone(),
            trusted: trusted.clone(),
            rate: args.rate,
            health: Duration::from_secs_f64(args.health_secs),
            probation: Duration::from_secs_f64(args.probation_secs),
            install: Duration::from_millis(args.install_ms),
            subscription_qos: mqtt::qos(args.subscription_qos),
        };
        // Each device starts on its own broker of the list and fails over to the others in turn.
        let mut own_brokers = brokers.clone();
        own_brokers.rotate_left(position % brokers.len());
        running.push(start(&spec, &plan, own_brokers, &fleet)?);
        std::thread::sleep(Duration::from_secs(1) / CONNECTS_PER_SECOND);
        report.drain(&events, Duration::ZERO)?;
    }
    log::info!(devices = running.len(); "Every simulated device is started.");
    while !stop.load(Ordering::Relaxed) && deadline.is_none_or(|deadline| Instant::now() < deadline) {
        report.drain(&events, Duration::from_millis(100))?;
    }
    for device in &running {
        // Blocks only while the device's inbox is full; the device empties it.
        let _ = device.inbox.send(Inbound::Stop);
    }
    let count = running.len();
    drop(fleet);
    let (mut clean, mut unacked) = (0, 0);
    for _ in 0..count {
        match events.recv() {
            Ok(FleetEvent::Stopped { closed, unacked: lost, .. }) => {
                clean += u64::from(closed);
                unacked += lost;
            }
            Ok(other) => report.take(other)?,
            Err(_) => break,
        }
    }
    for device in running {
        if device.thread.join().is_err() {
            log::error!("A simulated device's thread panicked.");
        }
    }
    report.summary(count, clean, unacked)?;
    Ok(ExitCode::SUCCESS)
}

/// Refuses what would make a fleet that cannot run or is not what was meant.
fn check(args: &SimulateArgs, plan: &FleetPlan) -> Result<()> {
    if args.devices == 0 {
        bail!("--devices must be at least 1");
    }
    if plan.first_index.checked_add(args.devices).is_none() {
        bail!("--first-index {} + --devices {} is past {}", plan.first_index, args.devices, u32::MAX);
    }
    for (flag, value) in
        [("--rate", args.rate), ("--health-secs", args.health_secs), ("--probation-secs", args.probation_secs)]
    {
        if !(value.is_finite() && value > 0.0 && value <= 1e6) {
            bail!("{flag} {value}: must be a number of seconds (or per second) above 0");
        }
    }
    if args.duration.is_some_and(|secs| !(secs.is_finite() && secs > 0.0 && secs <= 1e9)) {
        bail!("--duration: must be a number of seconds above 0");
    }
    if args.fail_self_test_every == Some(0) {
        bail!("--fail-self-test-every must be at least 1");
    }
    if let Err(e) = semver::Version::parse(&args.version) {
        bail!("--version {:?}: {e}", args.version);
    }
    let unknown = plan.unknown_failing();
    if !unknown.is_empty() {
        bail!(
            "--fail-self-test {unknown:?}: not a simulated device (ids are {}, ...)",
            plan.device_id(plan.first_index)
        );
    }
    for group in &args.groups {
        if group.is_empty() || !group.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            bail!("--group {group:?}: must match [A-Za-z0-9_-]+ (it is part of topics)");
        }
    }
    if args.id_prefix.contains(['/', '+', '#']) {
        bail!("--id-prefix {:?}: must not hold '/', '+' or '#' (it is part of topics)", args.id_prefix);
    }
    Ok(())
}

/// Connects device `spec.index` to `broker` and starts its thread.
fn start(spec: &DeviceSpec, plan: &FleetPlan, brokers: Vec<mqtt::BrokerAddress>, fleet: &Fleet) -> Result<Running> {
    let id = plan.device_id(spec.index);
    let prefix = format!("devices/{id}");
    let presence = Presence {
        topic: Topics::new(&prefix).status(),
        qos: QoS::AtLeastOnce,
        payload: Arc::new(SimulatedStatus { device: id.clone() }),
    };
    let options = LinkOptions {
        client_id: id.clone(),
        brokers,
        keep_alive: KEEP_ALIVE,
        connect_timeout: ATTEMPT_TIMEOUT,
        max_packet_bytes: MAX_PACKET,
        max_skipped_packet_bytes: MAX_PACKET,
        queue_capacity: LINK_QUEUE,
        credentials: None,
        tls: None,
        presence: Some(presence),
        subscription_qos: spec.subscription_qos,
    };
    let (link, pending) = mqtt::connect(options).with_context(|| format!("{id}: the MQTT link"))?;
    let (routes, inbox, receiver, dropped) = device::routes(&prefix, &spec.groups);
    pending.start(routes).with_context(|| format!("{id}: starting the MQTT link"))?;
    let device = SimulatedDevice::new(spec, plan, link, dropped, fleet.clone());
    let groups = spec.groups.clone();
    let thread = std::thread::Builder::new()
        .name(format!("sim-{}", spec.index))
        .stack_size(DEVICE_STACK)
        .spawn(move || device.run(&groups, receiver))
        .with_context(|| format!("{id}: starting its thread"))?;
    Ok(Running { inbox, thread })
}

/// What the simulator prints: log lines, or JSON lines with `--json`.
struct Report {
    json: bool,
    devices: u32,
    ready: u32,
    tally: Tally,
    started: Instant,
}

impl Report {
    /// Takes the devices' events for up to `wait`.
    fn drain(&mut self, events: &Receiver<FleetEvent>, wait: Duration) -> Result<()> {
        let mut next = events.recv_timeout(wait);
        while let Ok(event) = next {
            self.take(event)?;
            next = events.try_recv().map_err(|_| RecvTimeoutError::Timeout);
        }
        Ok(())
    }

    fn take(&mut self, event: FleetEvent) -> Result<()> {
        match event {
            FleetEvent::Ready => {
                self.ready += 1;
                if self.ready == self.devices {
                    let elapsed_ms = self.started.elapsed().as_millis();
                    log::info!(devices = self.devices, elapsed_ms; "Every simulated device is connected and subscribed.");
                    self.line(json!({"event": "ready", "devices": self.devices, "connected": self.ready,
                        "elapsed_ms": elapsed_ms}))?;
                }
            }
            FleetEvent::Outcome(status) => {
                self.tally.count(status.state);
                let (device, state) = (status.device.as_str(), status.state.as_str());
                log::info!(device, state, version = status.running_version.as_str(); "Update outcome.");
                self.line(json!({"event": "outcome", "device": status.device, "state": state,
                    "update_id": status.update_id, "version": status.version, "running_version": status.running_version,
                    "order": status.order, "reason": status.reason}))?;
            }
            FleetEvent::Stopped { index, closed, .. } => {
                log::debug!(index, closed; "A simulated device stopped.");
            }
        }
        Ok(())
    }

    fn summary(&self, devices: usize, clean: u64, unacked: u64) -> Result<()> {
        log::info!(devices, clean, unacked; "Every simulated device is offline: {:?}.", self.tally.by_state());
        self.line(
            json!({"event": "summary", "devices": devices, "ready": self.ready, "outcomes": self.tally.by_state(),
            "disconnected_cleanly": clean, "unacked": unacked, "elapsed_ms": self.started.elapsed().as_millis()}),
        )
    }

    fn line(&self, value: serde_json::Value) -> Result<()> {
        if self.json {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{value}").and_then(|()| out.flush()).context("writing to stdout")?;
        }
        Ok(())
    }
}
