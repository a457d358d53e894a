//! The supervisor, on the main thread while the agent runs: it finds stuck inferences (and reports them as
//! conditions), watches the free space of the state directory, and pings systemd's watchdog only while the agent
//! is alive: its own loop turning, the MQTT link thread handling events, and no worker busy past the hard limit.
//! `docs/operations.md` says how systemd acts on it.

mod stuck;
mod watchdog;

pub use stuck::{Busy, StuckLimits};
pub use watchdog::Watchdog;

use crate::conditions::{AGENT, Condition, Conditions};
use crate::health::SourceStats;
use crate::mqtt::MqttHandle;
use crate::shutdown::Shutdown;
use crate::update::available_space;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stuck::{Change, Observation, StuckDetector};

/// How often the supervisor looks, at most (less when the watchdog needs pinging more often).
const TICK: Duration = Duration::from_secs(1);
/// Below this much free space, the state directory's file system counts as full.
pub const DISK_FULL_BELOW: u64 = 1024 * 1024;

/// A worker under watch.
pub struct WatchedWorker {
    pub source: String,
    pub busy: Arc<Busy>,
    pub stats: Arc<SourceStats>,
}

/// What the supervisor is built from.
pub struct SupervisorParts {
    pub watchdog: Watchdog,
    pub limits: StuckLimits,
    pub workers: Vec<WatchedWorker>,
    pub link: MqttHandle,
    /// The MQTT link thread is wedged when it has handled nothing for this long.
    pub link_stall: Duration,
    pub conditions: Arc<Conditions>,
    /// The state directory whose free space is watched, and how often.
    pub disk: Option<(PathBuf, Duration)>,
}

pub struct Supervisor {
    watchdog: Watchdog,
    detector: StuckDetector,
    workers: Vec<WatchedWorker>,
    link: MqttHandle,
    link_watch: LinkWatch,
    conditions: Arc<Conditions>,
    disk: Option<DiskWatch>,
    /// Why the watchdog is not pinged, as last logged.
    dead: Option<String>,
}

impl Supervisor {
    pub fn new(parts: SupervisorParts) -> Supervisor {
        let now = Instant::now();
        Supervisor {
            watchdog: parts.watchdog,
            detector: StuckDetector::new(parts.limits),
            workers: parts.workers,
            link_watch: LinkWatch::new(parts.link.events_handled(), now, parts.link_stall),
            link: parts.link,
            conditions: parts.conditions,
            disk: parts.disk.map(|(dir, every)| DiskWatch { dir, every, next: now }),
            dead: None,
        }
    }

    /// Tells the service manager the agent serves, then supervises until `shutdown`, then tells it the agent
    /// stops.
    pub fn run(mut self, shutdown: &Shutdown) {
        self.watchdog.ready();
        let tick = self.watchdog.ping_every().map_or(TICK, |every| (every / 2).min(TICK));
        loop {
            let now = Instant::now();
            if let Some(disk) = &mut self.disk {
                disk.check(now, &self.conditions);
            }
            match self.why_dead(now) {
                None => {
                    if self.dead.take().is_some() {
                        log::info!("The agent is alive again; pinging the watchdog.");
                    }
                    self.watchdog.alive(now);
                }
                Some(reason) => {
                    if self.dead.as_ref() != Some(&reason) {
                        log::error!("Not pinging the watchdog (systemd restarts the agent): {reason}.");
                    }
                    self.dead = Some(reason);
                }
            }
            if shutdown.wait(tick) {
                break;
            }
        }
        self.watchdog.stopping();
    }

    /// Checks the workers and the link; why the agent counts as dead, if it does.
    fn why_dead(&mut self, now: Instant) -> Option<String> {
        let observations = self.workers.iter().map(|worker| Observation {
            source: &worker.source,
            busy_since: worker.busy.since(),
            p99: worker.stats.total_p99(),
        });
        let verdict = self.detector.check(now, observations);
        for change in verdict.changes {
            match change {
                Change::Stuck { source, busy, limit } => {
                    let detail = format!(
                        "the worker has been in one inference for {:.0} s (limit {:.1} s)",
                        busy.as_secs_f64(),
                        limit.as_secs_f64()
                    );
                    self.conditions.raise(Condition::InferenceStuck, &source, &detail);
                }
                Change::Returned { source, busy } => {
                    log::info!(source = source.as_str(); "The stuck inference returned after about {:.0} s.", busy.as_secs_f64());
                    self.conditions.clear(Condition::InferenceStuck, &source);
                }
            }
        }
        if let Some(source) = verdict.past_restart.first() {
            return Some(format!("the worker of source {source} is stuck past the hard limit"));
        }
        if !self.link_watch.alive(self.link.events_handled(), now) {
            return Some("the MQTT link thread has handled nothing for too long".to_owned());
        }
        None
    }
}

/// Whether the MQTT link thread still turns: its event count must change within `stall`. Connected, it handles
/// at least a keep-alive ping per keep-alive interval; disconnected, a connection attempt per backoff.
#[derive(Debug)]
struct LinkWatch {
    events: u64,
    changed: Instant,
    stall: Duration,
}

impl LinkWatch {
    fn new(events: u64, now: Instant, stall: Duration) -> LinkWatch {
        LinkWatch { events, changed: now, stall }
    }

    fn alive(&mut self, events: u64, now: Instant) -> bool {
        if events != self.events {
            self.events = events;
            self.changed = now;
        }
        now.saturating_duration_since(self.changed) < self.stall
    }
}

/// The free space of the state directory's file system, looked at every `every`.
struct DiskWatch {
    dir: PathBuf,
    every: Duration,
    next: Instant,
}

impl DiskWatch {
    fn check(&mut self, now: Instant, conditions: &Conditions) {
        if now < self.next {
            return;
        }
        self.next = now + self.every;
        // An unusable directory is the state-directory conditions' business.
        let Ok(free) = available_space(&self.dir) else { return };
        if free < DISK_FULL_BELOW {
            let detail = format!("{} has {free} bytes free", self.dir.display());
            conditions.raise(Condition::DiskFull, AGENT, &detail);
        } else {
            conditions.clear(Condition::DiskFull, AGENT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_is_wedged_when_its_event_count_stops_moving() {
        let start = Instant::now();
        let stall = Duration::from_secs(60);
        let mut watch = LinkWatch::new(7, start, stall);
        assert!(watch.alive(7, start + Duration::from_secs(59)));
        assert!(watch.alive(8, start + Duration::from_secs(61)), "it moved");
        assert!(watch.alive(8, start + Duration::from_secs(120)));
        assert!(!watch.alive(8, start + Duration::from_secs(121)), "60 s without an event");
        assert!(watch.alive(9, start + Duration::from_secs(122)), "it came back");
    }
}
