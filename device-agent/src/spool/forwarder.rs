//! The `spool-forwarder` thread: publishes the spool's records as tracked publishes, a bounded window in
//! flight. Live records (appended while the link is up) go at once; the backlog (what accumulated during an
//! outage or before a restart, and what the link lost) is replayed in order under `spool.replay_rate`, so a
//! long outage never holds back what is happening now. Acknowledged records are settled (their segments deleted
//! once whole), lost ones are sent again. The thread also syncs the logs (`fsync = "interval"`) and persists the
//! acknowledged positions.

use super::{Class, Logs, Record, Spool};
use crate::config::Fsync;
use crate::mqtt::{self, MqttHandle, Outcome, OutcomeObserver, PublishError};
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often the acknowledged positions are written (in place, without fsync: losing one re-sends duplicates).
const PERSIST_EVERY: Duration = Duration::from_secs(1);
/// The link tells no one when it comes back; while it is down the thread looks this often.
const LINK_POLL: Duration = Duration::from_millis(100);
/// The replay may catch up on this much missed time at once (a burst), no more.
const REPLAY_BURST: Duration = Duration::from_millis(100);

/// What the forwarder publishes through: the MQTT link, or a stand-in in tests.
pub trait Link: Send + Sync {
    fn is_connected(&self) -> bool;
    /// Queues `record` as a tracked publish (retained if `retain`) whose outcome comes back with `token`.
    fn publish(&self, record: Record, retain: bool, token: u64) -> Result<(), PublishError>;
}

impl Link for MqttHandle {
    fn is_connected(&self) -> bool {
        MqttHandle::is_connected(self)
    }

    fn publish(&self, record: Record, retain: bool, token: u64) -> Result<(), PublishError> {
        self.try_publish_tracked(record.topic, mqtt::qos(record.qos), retain, record.payload, token)
    }
}

/// What wakes the forwarder: records appended, outcomes from the link (told on the `mqtt` thread, which must
/// not wait for the spool's lock), a request to stop.
#[derive(Debug, Default)]
pub struct Inbox {
    mail: Mutex<Mail>,
    delivered: Condvar,
}

#[derive(Debug, Default)]
struct Mail {
    outcomes: Vec<(u64, Outcome)>,
    appended: bool,
    /// Stop once everything is acknowledged (or the link is down), or at this deadline.
    stop: Option<Instant>,
}

impl Inbox {
    pub(super) fn appended(&self) {
        let mut mail = self.lock();
        if !mail.appended {
            mail.appended = true;
            self.delivered.notify_one();
        }
    }

    /// The link's outcome for `token`.
    pub fn outcome(&self, token: u64, outcome: Outcome) {
        self.lock().outcomes.push((token, outcome));
        self.delivered.notify_one();
    }

    fn stop(&self, deadline: Instant) {
        self.lock().stop = Some(deadline);
        self.delivered.notify_one();
    }

    /// Takes what arrived, waiting up to `timeout` for something to.
    fn take(&self, timeout: Duration) -> Mail {
        let mail = self.lock();
        let idle = |mail: &mut Mail| mail.outcomes.is_empty() && !mail.appended && mail.stop.is_none();
        let mut mail = self.delivered.wait_timeout_while(mail, timeout, idle).unwrap_or_else(PoisonError::into_inner).0;
        Mail {
            outcomes: std::mem::take(&mut mail.outcomes),
            appended: std::mem::take(&mut mail.appended),
            stop: mail.stop.take(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Mail> {
        self.mail.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the link tells outcomes to: the spool's inbox (the `mqtt` thread never waits for the spool's lock).
pub fn observer(spool: Arc<Spool>) -> OutcomeObserver {
    Box::new(move |token, outcome| spool.inbox().outcome(token, outcome))
}

/// The forwarder, before its thread starts.
pub struct Forwarder {
    spool: Arc<Spool>,
    link: Arc<dyn Link>,
    /// Records in flight at most.
    window: usize,
    replay: Pace,
    fsync_interval: Duration,
    /// The class whose live records go retained (health, with `health.retain`); replayed ones never do, so that
    /// an old record replayed after an outage cannot replace the newest one the broker keeps.
    retained: Option<Class>,
}

/// The running thread.
pub struct Running {
    spool: Arc<Spool>,
    thread: JoinHandle<()>,
}

impl Running {
    /// Lets the thread send what is left until everything is acknowledged, the link is down, or `deadline`;
    /// then it persists the positions, syncs and ends. What is unacknowledged stays for the next start.
    pub fn stop(self, deadline: Instant) {
        self.spool.inbox().stop(deadline);
        let _ = self.thread.join();
    }
}

impl Forwarder {
    /// A forwarder of `spool` through `link`, `window` records in flight at most, the backlog replayed at
    /// `replay_rate` messages per second.
    pub fn new(
        spool: Arc<Spool>,
        link: Arc<dyn Link>,
        window: usize,
        replay_rate: f64,
        fsync_interval: Duration,
    ) -> Self {
        Forwarder { spool, link, window: window.max(1), replay: Pace::new(replay_rate), fsync_interval, retained: None }
    }

    /// Publishes the live records of `class` retained.
    pub fn retain_live(mut self, class: Class) -> Self {
        self.retained = Some(class);
        self
    }

    pub fn spawn(self) -> io::Result<Running> {
        let spool = self.spool.clone();
        let thread = thread::Builder::new().name("spool-forwarder".into()).spawn(move || self.run())?;
        Ok(Running { spool, thread })
    }

    fn run(mut self) {
        let spool = self.spool.clone();
        let mut next_persist = Instant::now() + PERSIST_EVERY;
        let mut next_sync = Instant::now() + self.fsync_interval;
        let mut wait = Duration::ZERO;
        let mut stopping = None;
        loop {
            let mail = spool.inbox().take(wait);
            stopping = stopping.or(mail.stop);
            let now = Instant::now();
            let mut logs = spool.lock();
            settle(&mut logs, mail.outcomes);
            let connected = self.link.is_connected();
            let next_replay = if connected { self.send(&mut logs, now) } else { defer_live(&mut logs) };
            let unacked: u64 = Class::ALL.into_iter().map(|class| logs.class(class).unacked()).sum();
            if stopping.is_some_and(|deadline| !connected || unacked == 0 || now >= deadline) {
                finish(&mut logs);
                return;
            }
            if logs.fsync() == Fsync::Interval && now >= next_sync {
                sync(&mut logs);
                next_sync = now + self.fsync_interval;
            }
            if now >= next_persist {
                persist(&mut logs, false);
                next_persist = now + PERSIST_EVERY;
            }
            let interval_sync = logs.fsync() == Fsync::Interval;
            drop(logs);
            let mut wake = next_persist;
            if interval_sync {
                wake = wake.min(next_sync);
            }
            if !connected || stopping.is_some() {
                wake = wake.min(now + LINK_POLL);
            }
            if let Some(at) = next_replay {
                wake = wake.min(at);
            }
            wait = wake.saturating_duration_since(now);
        }
    }

    /// Sends live records, then backlog ones as the pace allows, while the window has room. Returns when the
    /// next backlog record may go, when one is waiting for the pace.
    fn send(&mut self, logs: &mut Logs, now: Instant) -> Option<Instant> {
        let mut in_flight: usize = Class::ALL.into_iter().map(|class| logs.class(class).in_flight()).sum();
        for class in Class::ALL {
            while in_flight < self.window {
                let Some(seq) = logs.class(class).next_live() else { break };
                if !self.publish(logs, class, seq, self.retained == Some(class)) {
                    return None;
                }
                in_flight += 1;
            }
        }
        for class in Class::ALL {
            while in_flight < self.window && logs.class(class).has_backlog() {
                if !self.replay.ready(now) {
                    return Some(self.replay.next);
                }
                let Some(seq) = logs.class(class).next_backlog() else { break };
                self.replay.take(now);
                if !self.publish(logs, class, seq, false) {
                    return None;
                }
                in_flight += 1;
            }
        }
        None
    }

    /// Hands record `seq` to the link; false when the link refused it (it is sent again later).
    fn publish(&self, logs: &mut Logs, class: Class, seq: u64, retain: bool) -> bool {
        let log = logs.class(class);
        let record = match log.read(seq) {
            Ok(record) => record,
            Err(why) => {
                log.discard(seq, &why);
                return true;
            }
        };
        match self.link.publish(record, retain, token(class, seq)) {
            Ok(()) => true,
            Err(PublishError::InvalidTopic) => {
                log.discard(seq, "invalid topic");
                true
            }
            // Spooled under a larger `mqtt.max_packet_bytes` than the link's now: it can never be sent.
            Err(error @ PublishError::TooLarge { .. }) => {
                log.discard(seq, &error.to_string());
                true
            }
            Err(PublishError::QueueFull | PublishError::Closed) => {
                log.lost(seq);
                false
            }
        }
    }
}

/// The tracked-publish token of record `seq` of `class`: the class in the low two bits.
fn token(class: Class, seq: u64) -> u64 {
    seq << 2 | class.index() as u64
}

fn untoken(token: u64) -> Option<(Class, u64)> {
    Class::ALL.get((token & 0b11) as usize).map(|&class| (class, token >> 2))
}

fn settle(logs: &mut Logs, outcomes: Vec<(u64, Outcome)>) {
    for (class, seq, outcome) in outcomes.into_iter().filter_map(|(token, outcome)| {
        let (class, seq) = untoken(token)?;
        Some((class, seq, outcome))
    }) {
        match outcome {
            Outcome::Acknowledged => logs.class(class).acknowledged(seq),
            Outcome::Lost => logs.class(class).lost(seq),
        }
    }
}

/// The link is down: everything unsent becomes backlog. Nothing to pace.
fn defer_live(logs: &mut Logs) -> Option<Instant> {
    for class in Class::ALL {
        logs.class(class).defer_live();
    }
    None
}

fn sync(logs: &mut Logs) {
    for class in Class::ALL {
        if let Err(error) = logs.class(class).sync() {
            log::warn!(class = class.name(); "Spool sync failed: {error}.");
        }
    }
}

fn persist(logs: &mut Logs, durable: bool) {
    for class in Class::ALL {
        if let Err(error) = logs.class(class).persist_position(durable) {
            log::warn!(class = class.name(); "Writing the spool's acknowledged position failed: {error}.");
        }
    }
}

/// The end: positions written and everything made durable as the policy says.
fn finish(logs: &mut Logs) {
    let durable = logs.fsync() != Fsync::Never;
    if durable {
        sync(logs);
    }
    persist(logs, durable);
}

/// Paces the backlog: one record every `1 / rate` seconds, catching up on at most [`REPLAY_BURST`].
#[derive(Debug)]
struct Pace {
    interval: Duration,
    /// When the next record may go.
    next: Instant,
}

impl Pace {
    fn new(rate: f64) -> Pace {
        Pace { interval: Duration::from_secs_f64(1.0 / rate), next: Instant::now() }
    }

    fn ready(&self, now: Instant) -> bool {
        now >= self.next
    }

    fn take(&mut self, now: Instant) {
        let earliest = now.checked_sub(REPLAY_BURST).unwrap_or(now);
        self.next = self.next.max(earliest) + self.interval;
    }
}

#[cfg(test)]
mod tests;
