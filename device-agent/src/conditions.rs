//! Lasting conditions the agent runs degraded by (an unusable state directory, a full disk, a failing spool, a
//! stuck inference): any part of the agent raises and clears them on one shared [`Conditions`]. A condition is
//! reported once, when it begins, as an error event on `<prefix>/errors/<source>`, and appears in every health
//! report while it lasts. `docs/operations.md` lists them and what to do about each.

use crate::clock::Clock;
use crate::outbox::{OutboxSettings, error_event};
use crate::spool::Class;
use protocol::error::{ErrorKind, ErrorStage};
use protocol::wire;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// The `source` of conditions of the device as a whole (its errors topic is `<prefix>/errors/agent`).
pub const AGENT: &str = "agent";

/// What the agent can be degraded by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// `update.state_dir` cannot be written (read-only file system, permissions): updates wait.
    StateDirReadOnly,
    /// `update.state_dir` does not exist and cannot be created.
    StateDirMissing,
    /// `update.state_dir` fails otherwise (I/O errors).
    StateDirFailing,
    /// The state directory's file system is full.
    DiskFull,
    /// The spool cannot write or read its records.
    #[allow(dead_code, reason = "raised by the spool, which comes in its own branch")]
    SpoolFailing,
    /// A worker has not returned from an inference for many times its usual latency.
    InferenceStuck,
}

impl Condition {
    /// The kind it is reported with, in error events and health.
    pub fn kind(self) -> ErrorKind {
        match self {
            Condition::StateDirReadOnly => ErrorKind::StateDirReadOnly,
            Condition::StateDirMissing => ErrorKind::StateDirMissing,
            Condition::StateDirFailing => ErrorKind::StateDirFailing,
            Condition::DiskFull => ErrorKind::DiskFull,
            Condition::SpoolFailing => ErrorKind::SpoolFailing,
            Condition::InferenceStuck => ErrorKind::InferenceStuck,
        }
    }

    fn stage(self) -> ErrorStage {
        match self {
            Condition::InferenceStuck => ErrorStage::Inference,
            _ => ErrorStage::Storage,
        }
    }
}

/// One raised condition.
struct Raised {
    condition: Condition,
    source: String,
    since: Instant,
    since_ms: u64,
    detail: String,
}

/// The registry of raised conditions; shared (`Arc`) by whoever raises, clears or reports them.
pub struct Conditions {
    raised: Mutex<Vec<Raised>>,
    settings: OutboxSettings,
    clock: Arc<dyn Clock>,
    /// Sequence number of the error events, for subscribers to spot gaps.
    events: AtomicU64,
}

impl Conditions {
    /// Conditions whose error events go out through `settings`' link and topics.
    pub fn new(settings: OutboxSettings, clock: Arc<dyn Clock>) -> Conditions {
        Conditions { raised: Mutex::new(Vec::new()), settings, clock, events: AtomicU64::new(0) }
    }

    /// Raises `condition` for `source` ([`AGENT`] for the device as a whole). The first raise logs it and
    /// publishes an error event; raising it again while it lasts only updates its detail.
    pub fn raise(&self, condition: Condition, source: &str, detail: &str) {
        let mut raised = self.lock();
        if let Some(existing) = raised.iter_mut().find(|r| r.condition == condition && r.source == source) {
            detail.clone_into(&mut existing.detail);
            return;
        }
        raised.push(Raised {
            condition,
            source: source.to_owned(),
            since: self.clock.now(),
            since_ms: self.clock.unix_time_ms(),
            detail: detail.to_owned(),
        });
        drop(raised);
        let kind = condition.kind();
        log::warn!(source, condition = kind.as_str(); "Degraded: {detail}.");
        self.publish(source, condition.stage(), kind, detail);
    }

    /// Clears `condition` for `source`, if raised; true when it was.
    pub fn clear(&self, condition: Condition, source: &str) -> bool {
        let mut raised = self.lock();
        let Some(index) = raised.iter().position(|r| r.condition == condition && r.source == source) else {
            return false;
        };
        let cleared = raised.remove(index);
        drop(raised);
        let lasted = self.clock.now().saturating_duration_since(cleared.since);
        log::info!(source, condition = condition.kind().as_str(); "Condition cleared after {:.0} s.", lasted.as_secs_f64());
        true
    }

    /// The raised conditions, oldest first, as health reports them.
    pub fn snapshot(&self) -> Vec<wire::Condition> {
        self.lock()
            .iter()
            .map(|r| wire::Condition {
                kind: r.condition.kind(),
                source: r.source.clone(),
                since_ms: r.since_ms,
                detail: r.detail.clone(),
            })
            .collect()
    }

    fn publish(&self, source: &str, stage: ErrorStage, kind: ErrorKind, detail: &str) {
        let settings = &self.settings;
        let seq = self.events.fetch_add(1, Ordering::Relaxed);
        let event = error_event(&settings.device, source, seq, stage, kind, detail, "");
        let sent = wire::encode(settings.format, &event).map_err(|e| e.to_string()).and_then(|payload| {
            settings.link.publish(Class::Errors, settings.topics.errors(source), settings.qos.errors, payload)
        });
        if let Err(reason) = sent {
            // Health still shows the condition while it lasts.
            log::debug!(source; "Condition event not published: {reason}.");
        }
    }

    /// The registry stays usable after a panic elsewhere: the list is valid at any instant.
    fn lock(&self) -> MutexGuard<'_, Vec<Raised>> {
        self.raised.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::mqtt::QoS;
    use crate::outbox::{OutboxQos, PayloadLimit, Publish};
    use protocol::wire::{ErrorEvent, Format, Topics};
    use std::time::Duration;

    /// A link that keeps what is published.
    #[derive(Default)]
    pub(crate) struct Recorder(Mutex<Vec<(String, Vec<u8>)>>);

    impl Publish for Recorder {
        fn publish(&self, _class: Class, topic: String, _qos: QoS, payload: Vec<u8>) -> Result<(), String> {
            self.0.lock().expect("recorder").push((topic, payload));
            Ok(())
        }
    }

    impl Recorder {
        pub(crate) fn events(&self) -> Vec<(String, ErrorEvent)> {
            let published = self.0.lock().expect("recorder");
            published
                .iter()
                .map(|(topic, payload)| (topic.clone(), serde_json::from_slice(payload).expect("JSON")))
                .collect()
        }
    }

    /// A registry on `clock` that records what it publishes.
    pub(crate) fn recorded(clock: Arc<dyn Clock>) -> (Conditions, Arc<Recorder>) {
        let recorder = Arc::new(Recorder::default());
        let settings = OutboxSettings {
            device: "cam-01".into(),
            topics: Arc::new(Topics::new("devices/cam-01".to_owned())),
            format: Format::Json,
            qos: OutboxQos { predictions: QoS::AtLeastOnce, errors: QoS::AtLeastOnce },
            link: recorder.clone(),
            payload_limit: Arc::new(|_| PayloadLimit::none()),
        };
        (Conditions::new(settings, clock), recorder)
    }

    #[test]
    fn a_condition_is_reported_once_listed_while_it_lasts_and_cleared() {
        let clock = Arc::new(ManualClock::new(5_000));
        let (conditions, recorder) = recorded(clock.clone());
        conditions.raise(Condition::StateDirReadOnly, AGENT, "read-only file system");
        clock.advance(Duration::from_secs(30));
        conditions.raise(Condition::StateDirReadOnly, AGENT, "still read-only");
        conditions.raise(Condition::InferenceStuck, "front", "busy for 12 s");

        let events = recorder.events();
        assert_eq!(events.len(), 2, "one event per condition, not per raise");
        assert_eq!(events[0].0, "devices/cam-01/errors/agent");
        assert_eq!((events[0].1.kind, events[0].1.stage), (ErrorKind::StateDirReadOnly, ErrorStage::Storage));
        assert_eq!(events[0].1.message, "read-only file system");
        assert_eq!(events[1].0, "devices/cam-01/errors/front");
        assert_eq!(
            (events[1].1.kind, events[1].1.stage, events[1].1.seq),
            (ErrorKind::InferenceStuck, ErrorStage::Inference, 1)
        );

        let listed = conditions.snapshot();
        assert_eq!(listed.len(), 2);
        assert_eq!((listed[0].kind, listed[0].source.as_str()), (ErrorKind::StateDirReadOnly, AGENT));
        assert_eq!((listed[0].since_ms, listed[0].detail.as_str()), (5_000, "still read-only"));
        assert_eq!(listed[1].since_ms, 35_000);

        assert!(conditions.clear(Condition::StateDirReadOnly, AGENT));
        assert!(!conditions.clear(Condition::StateDirReadOnly, AGENT), "already cleared");
        let listed = conditions.snapshot();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].kind, listed[0].source.as_str()), (ErrorKind::InferenceStuck, "front"));
    }
}
