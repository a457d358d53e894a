//! One phase of a push: announce the package on one or more bases, serve the chunks the devices ask for, and
//! follow each device's status until every one has an outcome or the time is up.

use super::broker::{Broker, Inbound};
use super::chunks::{ChunkCounts, ChunkQueue, DUPLICATE_WINDOW};
use super::package::Package;
use super::passed_on::PassedOn;
use super::report::{DeviceOutcome, Phase, progress_line, whole_percent};
use super::signer::Signer;
use crate::rollout::Stamp;
use anyhow::{Result, bail};
use protocol::update::{
    Announcement, ChunkRequest, Instruction, Target as OrderTarget, UpdateState, UpdateStatus, UpdateTopics,
};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How often the announcement is repeated while some device has not taken it up.
const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(3);
/// Chunks published per base before looking at the broker's messages again.
const CHUNK_BATCH: usize = 8;

/// A device to update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub device: String,
    /// The device's topic prefix, where its status and chunk requests are.
    pub prefix: String,
}

/// Where a set of targets is announced to: a device's own prefix, or a group base; `order_target` is whom the
/// signed announcement names (the device, or the group).
pub struct Destination {
    pub topics: UpdateTopics,
    pub order_target: OrderTarget,
    pub targets: Vec<Target>,
    /// The counter and expiry of the order, when decided before (a rollout's wave); else fresh ones.
    pub stamp: Option<Stamp>,
}

/// How a transfer reports and how long it waits.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub phase: Phase,
    pub json: bool,
    pub timeout: Duration,
}

struct Base {
    topics: UpdateTopics,
    announcement: Announcement,
    /// The counter of the signed announcement: a device's status answers this push only if it names it.
    counter: u64,
    /// The signed announcement.
    payload: Vec<u8>,
    chunks: ChunkQueue,
}

struct Device {
    target: Target,
    base: usize,
    /// The last status about this update.
    status: Option<UpdateStatus>,
    /// Whether the device's latest live status was about this update: it has the announcement.
    acknowledged: bool,
    /// Whether `status` is the outcome.
    finished: bool,
    /// What the last progress line showed.
    shown: Option<(UpdateState, u32)>,
}

impl Device {
    /// Takes a status published by the device; `live` when it was published after we subscribed. Only a
    /// status that answers this push's signed announcement counts: one the broker retained from before, or one
    /// forged before the push began, cannot name its counter.
    fn observe(&mut self, status: UpdateStatus, live: bool, announcement: &Announcement, counter: u64) -> bool {
        if self.finished {
            return false;
        }
        if !answers(&status, announcement, counter) {
            // A restarted device, or one busy with something else: it needs the announcement again.
            if live {
                self.acknowledged = false;
            }
            return false;
        }
        self.acknowledged = true;
        self.finished = status.state.is_final();
        self.status = Some(status);
        true
    }

    fn outcome(&self, timeout: Duration) -> DeviceOutcome {
        let reason = match (&self.status, self.finished) {
            (Some(status), true) => status.reason.clone(),
            (Some(_), false) => Some(format!("timed out after {} s", timeout.as_secs())),
            (None, _) => Some(format!("no answer within {} s", timeout.as_secs())),
        };
        DeviceOutcome {
            device: self.target.device.clone(),
            state: self.status.as_ref().map(|status| status.state),
            reason,
            finished: self.finished,
        }
    }
}

/// Whether `status` answers the signed announcement with `counter` of the update `announcement` offers (a
/// device that already runs the package answers `committed`).
fn answers(status: &UpdateStatus, announcement: &Announcement, counter: u64) -> bool {
    status.order == Some(counter) && status.update_id.as_deref() == Some(announcement.id.as_str())
}

#[derive(Debug, Clone, Copy)]
enum Inbox {
    Status(usize),
    Request(usize),
}

/// Pushes `package` to every destination at once, each announcement signed by `signer`, and returns each
/// target's outcome, in order.
pub fn run(
    broker: &mut Broker,
    package: &mut Package,
    signer: &mut Signer,
    destinations: Vec<Destination>,
    settings: Settings,
    counts: &mut ChunkCounts,
) -> Result<Vec<DeviceOutcome>> {
    let mut transfer = Transfer::new(package, signer, destinations, settings)?;
    let result = transfer.run(broker, counts);
    for filter in transfer.inboxes.keys() {
        broker.unsubscribe(filter)?;
    }
    broker.hold(std::mem::take(&mut transfer.passed_on).into_messages());
    result?;
    Ok(transfer.devices.iter().map(|device| device.outcome(settings.timeout)).collect())
}

struct Transfer<'a> {
    package: &'a mut Package,
    settings: Settings,
    bases: Vec<Base>,
    devices: Vec<Device>,
    /// The status and request topic of every device.
    inboxes: HashMap<String, Inbox>,
    /// What came on the caller's subscriptions meanwhile.
    passed_on: PassedOn,
}

impl<'a> Transfer<'a> {
    fn new(
        package: &'a mut Package,
        signer: &mut Signer,
        destinations: Vec<Destination>,
        settings: Settings,
    ) -> Result<Transfer<'a>> {
        let mut bases = Vec::new();
        let mut devices = Vec::new();
        let mut inboxes = HashMap::new();
        for destination in destinations {
            let announcement = package.announcement(&destination.topics);
            let instruction = Instruction::Announce(announcement.clone());
            let (payload, counter) = match destination.stamp {
                Some(Stamp { counter, expires_at_ms }) => {
                    (signer.seal_stamped(destination.order_target, instruction, counter, expires_at_ms)?, counter)
                }
                None => signer.seal(destination.order_target, instruction, settings.timeout)?,
            };
            let duplicate_window = if destination.targets.len() > 1 { DUPLICATE_WINDOW } else { Duration::ZERO };
            for target in destination.targets {
                let topics = UpdateTopics::device(&target.prefix);
                let index = devices.len();
                for (topic, inbox) in
                    [(topics.status(), Inbox::Status(index)), (topics.request(), Inbox::Request(index))]
                {
                    if inboxes.insert(topic, inbox).is_some() {
                        bail!("two devices share the prefix {}", target.prefix);
                    }
                }
                let device = Device {
                    target,
                    base: bases.len(),
                    status: None,
                    acknowledged: false,
                    finished: false,
                    shown: None,
                };
                devices.push(device);
            }
            let chunks = ChunkQueue::new(announcement.chunk_count(), duplicate_window);
            bases.push(Base { topics: destination.topics, announcement, counter, payload, chunks });
        }
        Ok(Transfer { package, settings, bases, devices, inboxes, passed_on: PassedOn::default() })
    }

    fn run(&mut self, broker: &mut Broker, counts: &mut ChunkCounts) -> Result<()> {
        let started = Instant::now();
        let deadline = started + self.settings.timeout;
        // Subscribed before the announcement: the broker handles our packets in order, so no answer is missed.
        for filter in self.inboxes.keys() {
            broker.subscribe(filter)?;
        }
        for (index, base) in self.bases.iter().enumerate() {
            let targets: Vec<&str> = self
                .devices
                .iter()
                .filter(|device| device.base == index)
                .map(|device| device.target.device.as_str())
                .collect();
            let announcement = &base.announcement;
            log::info!(
                "Announcing {} {} (update {}, {} chunks of {} bytes) on {} to {}.",
                announcement.name,
                announcement.version,
                announcement.id,
                announcement.chunk_count(),
                announcement.chunk_size,
                base.topics.announce(),
                targets.join(", ")
            );
        }
        self.announce(broker, deadline, |_| true)?;
        let mut next_announcement = started + ANNOUNCE_INTERVAL;
        loop {
            let now = Instant::now();
            if self.devices.iter().all(|device| device.finished) {
                return Ok(());
            }
            if now >= deadline {
                let silent: Vec<&str> =
                    self.devices.iter().filter(|d| !d.finished).map(|d| d.target.device.as_str()).collect();
                log::warn!("No outcome within {} s from {}.", self.settings.timeout.as_secs(), silent.join(", "));
                return Ok(());
            }
            if now >= next_announcement {
                self.announce(broker, deadline, |device| !device.finished && !device.acknowledged)?;
                next_announcement = now + ANNOUNCE_INTERVAL;
            }

            let wake = next_announcement.min(deadline);
            let chunks_waiting = self.bases.iter().any(|base| !base.chunks.is_empty());
            let wait = if chunks_waiting { Duration::ZERO } else { wake.saturating_duration_since(now) };
            let mut inbound = broker.recv(wait);
            while let Some(message) = inbound {
                self.handle(broker, message, deadline)?;
                inbound = broker.recv(Duration::ZERO);
            }
            self.publish_chunks(broker, deadline, counts)?;
        }
    }

    /// Publishes the announcement on every base that has a device for which `wanted` holds.
    fn announce(&self, broker: &Broker, deadline: Instant, wanted: impl Fn(&Device) -> bool) -> Result<()> {
        for (index, base) in self.bases.iter().enumerate() {
            if self.devices.iter().any(|device| device.base == index && wanted(device)) {
                broker.publish(&base.topics.announce(), &base.payload, deadline)?;
            }
        }
        Ok(())
    }

    fn handle(&mut self, broker: &Broker, inbound: Inbound, deadline: Instant) -> Result<()> {
        let (topic, payload, retained) = match inbound {
            // The announcements went with the old connection, maybe unheard: repeat them now.
            Inbound::Connected => return self.announce(broker, deadline, |device| !device.finished),
            Inbound::Message { topic, payload, retained } => (topic, payload, retained),
        };
        match self.inboxes.get(&topic).copied() {
            Some(Inbox::Status(index)) => {
                // An empty payload clears a retained status; it says nothing.
                if payload.is_empty() {
                    return Ok(());
                }
                match serde_json::from_slice::<UpdateStatus>(&payload) {
                    Ok(status) => self.on_status(index, status, !retained),
                    Err(error) => log::warn!("Ignoring an unreadable status on {topic}: {error}."),
                }
            }
            Some(Inbox::Request(index)) => match serde_json::from_slice::<ChunkRequest>(&payload) {
                Ok(request) => self.on_request(index, &request),
                Err(error) => log::warn!("Ignoring an unreadable chunk request on {topic}: {error}."),
            },
            None => self.passed_on.keep(topic, payload, retained),
        }
        Ok(())
    }

    fn on_status(&mut self, index: usize, status: UpdateStatus, live: bool) {
        let device = &mut self.devices[index];
        let base = &self.bases[device.base];
        if !device.observe(status, live, &base.announcement, base.counter) {
            return;
        }
        let Some(status) = &device.status else { return };
        let shown = (status.state, whole_percent(status));
        if device.shown != Some(shown) {
            device.shown = Some(shown);
            println!("{}", progress_line(self.settings.json, self.settings.phase, &device.target.device, status));
        }
    }

    fn on_request(&mut self, index: usize, request: &ChunkRequest) {
        let device = &self.devices[index];
        let base = &mut self.bases[device.base];
        if request.id != base.announcement.id {
            log::debug!("Ignoring {}'s request for chunks of update {}.", device.target.device, request.id);
            return;
        }
        let queued = base.chunks.request(&request.ranges, Instant::now());
        log::debug!("{} asks for {:?}: {queued} chunks queued.", device.target.device, request.ranges);
    }

    /// Publishes up to [`CHUNK_BATCH`] queued chunks of every base, so that no base waits for another's.
    fn publish_chunks(&mut self, broker: &Broker, deadline: Instant, counts: &mut ChunkCounts) -> Result<()> {
        for base in &mut self.bases {
            for _ in 0..CHUNK_BATCH {
                let Some(index) = base.chunks.next() else { break };
                let chunk = self.package.read_chunk(index)?;
                let topic = format!("{}/{index}", base.announcement.chunks_topic);
                if let Err(error) = broker.publish(&topic, &chunk, deadline) {
                    // The broker took nothing until the deadline: the caller reports the timeout.
                    if Instant::now() >= deadline {
                        return Ok(());
                    }
                    return Err(error);
                }
                base.chunks.published(index, Instant::now());
                counts.count(index);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COUNTER: u64 = 42;
    const OURS: Option<&str> = Some("0123456789abcdef");

    fn announcement() -> Announcement {
        Announcement {
            id: "0123456789abcdef".into(),
            name: "detector".into(),
            version: "1.3.0".into(),
            size: 10,
            sha256: "0123456789abcdef".repeat(4),
            signature: None,
            chunk_size: 4,
            chunk_sha256: Vec::new(),
            chunks_topic: "devices/cam-01/update/chunk/0123456789abcdef".into(),
            rollback: false,
        }
    }

    /// A status of `state` about `update_id`, answering the order with `order`.
    fn status(state: UpdateState, update_id: Option<&str>, order: Option<u64>) -> UpdateStatus {
        UpdateStatus {
            device: "cam-01".into(),
            state,
            update_id: update_id.map(str::to_owned),
            model: "detector".into(),
            version: "1.3.0".into(),
            running_version: "1.2.0".into(),
            bytes: 0,
            size: 10,
            percent: 0.0,
            resumed_bytes: 0,
            reason: None,
            at_ms: 1,
            order,
            messages_dropped: 0,
            errors_unpublished: 0,
        }
    }

    fn device() -> Device {
        let target = Target { device: "cam-01".into(), prefix: "devices/cam-01".into() };
        Device { target, base: 0, status: None, acknowledged: false, finished: false, shown: None }
    }

    fn observe(device: &mut Device, status: UpdateStatus, live: bool) -> bool {
        device.observe(status, live, &announcement(), COUNTER)
    }

    /// The attack of the issue: a retained (or forged) `committed` is not success unless it answers this push.
    #[test]
    fn only_statuses_that_answer_this_push_count() {
        let mut device = device();
        for (state, id, order) in [
            (UpdateState::Committed, OURS, None),
            (UpdateState::Committed, OURS, Some(COUNTER - 1)),
            (UpdateState::Committed, Some("fedcba9876543210"), Some(COUNTER)),
            (UpdateState::Rejected, None, Some(COUNTER)),
        ] {
            for live in [false, true] {
                assert!(!observe(&mut device, status(state, id, order), live), "{state:?} {id:?} {order:?}");
            }
        }
        assert!(device.status.is_none() && !device.finished);
        assert!(observe(&mut device, status(UpdateState::Committed, OURS, Some(COUNTER)), false));
        assert!(device.finished);
        assert_eq!(device.outcome(Duration::from_secs(5)).state, Some(UpdateState::Committed));
    }

    #[test]
    fn an_outcome_stands_against_what_comes_later() {
        let mut device = device();
        observe(&mut device, status(UpdateState::Downloading, OURS, Some(COUNTER)), true);
        assert!(device.acknowledged && !device.finished);
        observe(&mut device, status(UpdateState::Rejected, OURS, Some(COUNTER)), true);
        assert!(device.finished);
        assert!(!observe(&mut device, status(UpdateState::Downloading, OURS, Some(COUNTER)), true));
        assert_eq!(device.outcome(Duration::from_secs(5)).state, Some(UpdateState::Rejected));
    }

    #[test]
    fn a_device_that_restarts_needs_the_announcement_again() {
        let mut device = device();
        observe(&mut device, status(UpdateState::Downloading, OURS, Some(COUNTER)), true);
        assert!(device.acknowledged);
        observe(&mut device, status(UpdateState::Idle, None, None), true);
        assert!(!device.acknowledged && !device.finished);
        // The last status about this update is kept for the report.
        let outcome = device.outcome(Duration::from_secs(600));
        assert_eq!(outcome.state, Some(UpdateState::Downloading));
        assert_eq!(outcome.reason.as_deref(), Some("timed out after 600 s"));
        assert!(!outcome.finished);
    }

    #[test]
    fn silent_devices_are_reported() {
        let outcome = device().outcome(Duration::from_secs(600));
        assert_eq!((outcome.state, outcome.reason.as_deref()), (None, Some("no answer within 600 s")));
    }
}
