//! The link's bookkeeping, apart from IO (rumqttc's `state.rs` split): reconnect backoff, the publishes
//! still owed an acknowledgement, and when a connection change is worth a log line.

use rumqttc::{QoS, Request};
use std::collections::{HashMap, VecDeque};
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

/// What became of a tracked publish ([`crate::MqttHandle::try_publish_tracked`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The broker acknowledged it (PubAck, or PubComp at QoS 2); a QoS 0 publish once it was written.
    Acknowledged,
    /// A clean-session reconnect discarded it, unacknowledged: send it again if it matters.
    Lost,
}

/// Which tracked publish each packet id stands for, so that acks and losses reach their tokens.
///
/// rumqttc reports a publish by packet id only, but it writes publishes in the order they were queued and
/// says so (`Outgoing::Publish(pkid)`) for each. So the handles queue a token (or `None` for an untracked
/// publish) in a FIFO in the same order as their publishes (under one lock), and the link pops one entry per
/// publish written. The link's own publishes at ConnAck (the `online` status, the kept retained messages) go
/// out ahead of the queue (rumqttc's `pending`), without an entry. When a connection breaks, rumqttc moves what was written and unacked (with its packet id) and
/// what was still queued (packet id 0) into `pending`, which the next clean ConnAck discards: those are lost.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    /// Written, QoS >= 1, tracked, awaiting an ack.
    in_flight: HashMap<u16, u64>,
    /// Taken from the queue but held by rumqttc until a packet id frees up (`Outgoing::AwaitAck`).
    collided: Option<(u16, Option<u64>)>,
    /// The link's own publishes in `pending`, not written yet.
    own_unsent: usize,
}

/// Receives outcomes.
pub(crate) type Report<'a> = &'a mut dyn FnMut(u64, Outcome);

impl Tracker {
    /// The link queued `count` publishes of its own in `pending`, to be written before the next queued one (at
    /// ConnAck, or when nothing written is still unreported).
    pub(crate) fn own_queued(&mut self, count: usize) {
        self.own_unsent += count;
    }

    /// rumqttc wrote a publish (`Outgoing::Publish(pkid)`; 0 for QoS 0).
    pub(crate) fn written(&mut self, pkid: u16, fifo: &mut VecDeque<Option<u64>>, report: Report<'_>) {
        let token = match self.collided {
            Some((collided, token)) if collided == pkid => {
                self.collided = None;
                token
            }
            _ => self.next_entry(fifo),
        };
        let Some(token) = token else { return };
        if pkid == 0 {
            report(token, Outcome::Acknowledged);
        } else if let Some(replaced) = self.in_flight.insert(pkid, token) {
            // rumqttc never reuses an unacked packet id; were it to, the older publish is gone.
            report(replaced, Outcome::Lost);
        }
    }

    /// rumqttc took a publish but holds it until `pkid` is acknowledged (`Outgoing::AwaitAck(pkid)`).
    pub(crate) fn collided(&mut self, pkid: u16, fifo: &mut VecDeque<Option<u64>>) {
        self.collided = Some((pkid, self.next_entry(fifo)));
    }

    /// The broker acknowledged `pkid` (PubAck, or PubComp at QoS 2).
    pub(crate) fn acknowledged(&mut self, pkid: u16, report: Report<'_>) {
        if let Some(token) = self.in_flight.remove(&pkid) {
            report(token, Outcome::Acknowledged);
        }
    }

    /// The connection broke and rumqttc moved its work into `pending` (which a clean session discards): every
    /// written publish is lost, and so is every queued one that was drained into `pending` (packet id 0, in
    /// queue order, the link's own publishes aside).
    pub(crate) fn connection_lost(
        &mut self,
        pending: &VecDeque<Request>,
        fifo: &mut VecDeque<Option<u64>>,
        report: Report<'_>,
    ) {
        for (_, token) in self.in_flight.drain() {
            report(token, Outcome::Lost);
        }
        if let Some((_, Some(token))) = self.collided.take() {
            report(token, Outcome::Lost);
        }
        let queued = pending.iter().filter(|request| matches!(request, Request::Publish(p) if p.pkid == 0)).count();
        let drained = queued.saturating_sub(std::mem::take(&mut self.own_unsent));
        for token in fifo.drain(..drained.min(fifo.len())).flatten() {
            report(token, Outcome::Lost);
        }
    }

    /// The next entry of the queue's FIFO, or none for one of the link's own publishes.
    fn next_entry(&mut self, fifo: &mut VecDeque<Option<u64>>) -> Option<u64> {
        if self.own_unsent > 0 {
            self.own_unsent -= 1;
            return None;
        }
        fifo.pop_front().flatten()
    }
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

    fn publish(pkid: u16) -> Request {
        let mut publish = Publish::new("a", QoS::AtLeastOnce, "p");
        publish.pkid = pkid;
        Request::Publish(publish)
    }

    /// Runs `step` with a report that collects the outcomes.
    fn outcomes(step: impl FnOnce(Report<'_>)) -> Vec<(u64, Outcome)> {
        let mut seen = Vec::new();
        step(&mut |token, outcome| seen.push((token, outcome)));
        seen
    }

    #[test]
    fn written_publishes_map_packet_ids_to_tokens() {
        let mut tracker = Tracker::default();
        let mut fifo: VecDeque<Option<u64>> = [Some(10), None, Some(11), Some(12)].into();
        tracker.own_queued(1);
        // The online status, then the queue in order: 10, an untracked publish, 11, and 12 at QoS 0.
        for pkid in [1, 2, 3, 4] {
            assert_eq!(outcomes(|report| tracker.written(pkid, &mut fifo, report)), []);
        }
        assert_eq!(outcomes(|report| tracker.written(0, &mut fifo, report)), [(12, Outcome::Acknowledged)]);
        assert!(fifo.is_empty());
        assert_eq!(outcomes(|report| tracker.acknowledged(1, report)), [], "the online status");
        assert_eq!(outcomes(|report| tracker.acknowledged(4, report)), [(11, Outcome::Acknowledged)]);
        assert_eq!(outcomes(|report| tracker.acknowledged(2, report)), [(10, Outcome::Acknowledged)]);
        assert_eq!(outcomes(|report| tracker.acknowledged(2, report)), [], "a second ack reports nothing");
    }

    #[test]
    fn a_broken_connection_loses_what_was_written_and_what_was_drained() {
        let mut tracker = Tracker::default();
        let mut fifo: VecDeque<Option<u64>> = [Some(1), Some(2), Some(3), None, Some(4), Some(5)].into();
        tracker.written(7, &mut fifo, &mut |_, _| {});
        tracker.written(8, &mut fifo, &mut |_, _| {});
        tracker.collided(7, &mut fifo);
        // rumqttc's pending: the written two, then the drained queue (untracked, 4); 5 reached the channel later.
        let pending: VecDeque<Request> = [publish(7), publish(8), publish(0), publish(0)].into();
        let mut lost = outcomes(|report| tracker.connection_lost(&pending, &mut fifo, report));
        lost.sort_by_key(|&(token, _)| token);
        assert_eq!(lost, [(1, Outcome::Lost), (2, Outcome::Lost), (3, Outcome::Lost), (4, Outcome::Lost)]);
        assert_eq!(fifo, [Some(5)]);
        assert_eq!(outcomes(|report| tracker.acknowledged(7, report)), [], "forgotten");
    }

    #[test]
    fn an_unsent_online_status_is_not_a_queued_publish() {
        let mut tracker = Tracker::default();
        let mut fifo: VecDeque<Option<u64>> = [Some(1), Some(2)].into();
        tracker.own_queued(1);
        let pending: VecDeque<Request> = [publish(0), publish(0)].into();
        let lost = outcomes(|report| tracker.connection_lost(&pending, &mut fifo, report));
        assert_eq!(lost, [(1, Outcome::Lost)]);
        // After the next ConnAck, the online status is queued anew and written first.
        tracker.own_queued(1);
        tracker.written(1, &mut fifo, &mut |_, _| {});
        tracker.written(2, &mut fifo, &mut |_, _| {});
        assert_eq!(outcomes(|report| tracker.acknowledged(2, report)), [(2, Outcome::Acknowledged)]);
    }

    #[test]
    fn an_own_publish_queued_while_connected_takes_no_queue_entry() {
        let mut tracker = Tracker::default();
        let mut fifo: VecDeque<Option<u64>> = [Some(1), Some(2)].into();
        tracker.written(1, &mut fifo, &mut |_, _| {});
        // The online status again, mid-connection: written next, ahead of token 2.
        tracker.own_queued(1);
        tracker.written(2, &mut fifo, &mut |_, _| {});
        tracker.written(3, &mut fifo, &mut |_, _| {});
        assert_eq!(outcomes(|report| tracker.acknowledged(2, report)), []);
        assert_eq!(outcomes(|report| tracker.acknowledged(3, report)), [(2, Outcome::Acknowledged)]);
        assert_eq!(outcomes(|report| tracker.acknowledged(1, report)), [(1, Outcome::Acknowledged)]);
    }

    #[test]
    fn the_links_own_publishes_take_no_queue_entries() {
        let mut tracker = Tracker::default();
        let mut fifo: VecDeque<Option<u64>> = [Some(1), Some(2)].into();
        // The online status and two kept retained messages, then the queue.
        tracker.own_queued(3);
        for pkid in [1, 2, 3, 4] {
            tracker.written(pkid, &mut fifo, &mut |_, _| {});
        }
        assert_eq!(outcomes(|report| tracker.acknowledged(3, report)), []);
        assert_eq!(outcomes(|report| tracker.acknowledged(4, report)), [(1, Outcome::Acknowledged)]);
        assert_eq!(fifo, [Some(2)]);
    }

    #[test]
    fn a_collided_publish_is_mapped_when_written() {
        let mut tracker = Tracker::default();
        let mut fifo: VecDeque<Option<u64>> = [Some(1), Some(2)].into();
        tracker.written(1, &mut fifo, &mut |_, _| {});
        tracker.collided(1, &mut fifo);
        assert_eq!(outcomes(|report| tracker.acknowledged(1, report)), [(1, Outcome::Acknowledged)]);
        tracker.written(1, &mut fifo, &mut |_, _| {});
        assert_eq!(outcomes(|report| tracker.acknowledged(1, report)), [(2, Outcome::Acknowledged)]);
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
