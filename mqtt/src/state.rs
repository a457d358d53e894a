//! The link's bookkeeping, apart from IO (rumqttc's `state.rs` split): reconnect backoff, the publishes
//! still owed an acknowledgement, and when a connection change is worth a log line.

use rumqttc::{QoS, Request};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Capped exponential backoff between reconnect attempts: `initial`, doubling up to `max`, back to `initial`
/// after a successful connection.
#[derive(Debug)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { initial, max, next: initial }
    }

    /// The delay before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    pub(crate) fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// Publishes at QoS 1 or 2 that are neither acknowledged nor known lost, so that shutdown can wait for them.
///
/// rumqttc reports acks by packet id only, so the ledger counts rather than tracks: every QoS >= 1 publish
/// is `accept`ed when queued (by a handle, or by the link for its `online` status), and `settle`d when its
/// PubAck/PubComp arrives or when a new clean session discards it.
#[derive(Debug, Default)]
pub(crate) struct AckLedger {
    accepted: AtomicU64,
    settled: AtomicU64,
}

impl AckLedger {
    /// Counts a publish before it is queued, so that its ack can never be counted first.
    pub(crate) fn accept(&self) {
        self.accepted.fetch_add(1, Ordering::SeqCst);
    }

    /// Takes back an [`accept`](Self::accept) whose publish could not be queued.
    pub(crate) fn withdraw(&self) {
        self.accepted.fetch_sub(1, Ordering::SeqCst);
    }

    pub(crate) fn settle(&self, count: u64) {
        self.settled.fetch_add(count, Ordering::SeqCst);
    }

    /// Publishes still owed an acknowledgement.
    pub(crate) fn outstanding(&self) -> u64 {
        // `settled` is read first: reading `accepted` first could see a publish's ack without its accept.
        let settled = self.settled.load(Ordering::SeqCst);
        self.accepted.load(Ordering::SeqCst).saturating_sub(settled)
    }
}

/// The acknowledged-delivery work in rumqttc's `pending` queue: what a clean session throws away when it
/// starts. That queue holds the previous connection's unacked publishes, the requests that were waiting in
/// the channel when it broke, and PubRels of QoS 2 publishes that are settled only at PubComp.
pub(crate) fn unacked_in(pending: &VecDeque<Request>) -> u64 {
    let unacked = pending.iter().filter(|request| match request {
        Request::Publish(publish) => publish.qos != QoS::AtMostOnce,
        Request::PubRel(_) => true,
        _ => false,
    });
    unacked.count() as u64
}

/// The connection as the logs describe it: one line per change, not one per retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Connectivity {
    /// Never connected yet (failed attempts included): the first connection is not a reconnect.
    Starting,
    Connected,
    /// Was connected and failed; retries are quiet.
    Down,
}

impl Connectivity {
    /// Moves to `next`, saying whether that is a change worth logging.
    pub(crate) fn change_to(&mut self, next: Connectivity) -> bool {
        let changed = *self != next;
        *self = next;
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::{PubAck, PubRel, Publish, Subscribe};

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
        let delays: Vec<u64> = (0..8).map(|_| backoff.next_delay().as_millis() as u64).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(500));
    }

    #[test]
    fn ledger_counts_outstanding_acks() {
        let ledger = AckLedger::default();
        assert_eq!(ledger.outstanding(), 0);
        for _ in 0..3 {
            ledger.accept();
        }
        ledger.settle(1);
        assert_eq!(ledger.outstanding(), 2);
        ledger.accept();
        ledger.withdraw();
        assert_eq!(ledger.outstanding(), 2);
        ledger.settle(2);
        assert_eq!(ledger.outstanding(), 0);
        // An ack seen before its accept (impossible by construction) reads as nothing owed, not a wrap.
        ledger.settle(1);
        assert_eq!(ledger.outstanding(), 0);
    }

    #[test]
    fn unacked_counts_publishes_at_qos_1_and_2_and_releases() {
        let pending: VecDeque<Request> = [
            Request::Publish(Publish::new("a", QoS::AtMostOnce, "0")),
            Request::Publish(Publish::new("a", QoS::AtLeastOnce, "1")),
            Request::Publish(Publish::new("a", QoS::ExactlyOnce, "2")),
            Request::PubRel(PubRel::new(7)),
            Request::PubAck(PubAck::new(3)),
            Request::Subscribe(Subscribe::new("b", QoS::AtLeastOnce)),
        ]
        .into();
        assert_eq!(unacked_in(&pending), 3);
        assert_eq!(unacked_in(&VecDeque::new()), 0);
    }

    #[test]
    fn connectivity_logs_changes_only() {
        let mut state = Connectivity::Starting;
        assert!(state.change_to(Connectivity::Down));
        assert!(!state.change_to(Connectivity::Down));
        assert!(state.change_to(Connectivity::Connected));
        assert!(!state.change_to(Connectivity::Connected));
        assert!(state.change_to(Connectivity::Down));
    }
}
