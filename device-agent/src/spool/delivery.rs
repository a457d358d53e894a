//! Where one class's log stands with the broker, apart from IO: which records are acknowledged, which are in
//! flight, and which are still to send, as the live records (appended while the link is up, sent at once) and
//! the backlog (everything else unacknowledged, replayed in order under the rate cap).

use std::collections::BTreeSet;
use std::ops::Range;

/// The cursors of one log. Sequence numbers are the records' `seq`; `head` is the log's next one.
#[derive(Debug)]
pub struct Delivery {
    /// Every record below is acknowledged, dropped or absent.
    acked_below: u64,
    /// Acknowledged (or absent) records at or above `acked_below`.
    acked: BTreeSet<u64>,
    /// Handed to the link, outcome not known yet.
    in_flight: BTreeSet<u64>,
    /// Still to replay, in order: a record in it that is settled or in flight is skipped.
    backlog: Range<u64>,
    /// The next live record: every record from here to the head is unsent.
    live: u64,
}

impl Delivery {
    /// A log whose records `first_unacked..head` wait to be sent: all of them backlog.
    pub fn new(first_unacked: u64, head: u64) -> Delivery {
        Delivery {
            acked_below: first_unacked,
            acked: BTreeSet::new(),
            in_flight: BTreeSet::new(),
            backlog: first_unacked..head,
            live: head,
        }
    }

    /// Every record below this is acknowledged or gone; what a restart may skip.
    pub fn acked_below(&self) -> u64 {
        self.acked_below
    }

    /// Records below `head` neither acknowledged nor dropped.
    pub fn unacked(&self, head: u64) -> u64 {
        head.saturating_sub(self.acked_below).saturating_sub(self.acked.len() as u64)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether the backlog may still hold a record to send (it may turn out settled when taken).
    pub fn has_backlog(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// Records that do not exist (a gap a damaged segment left) count as settled.
    pub fn skip(&mut self, absent: Range<u64>) {
        self.acked.extend(absent.filter(|&seq| seq >= self.acked_below));
        self.advance();
    }

    /// The next live record to send, now in flight.
    pub fn next_live(&mut self, head: u64) -> Option<u64> {
        (self.live < head).then(|| {
            let seq = self.live;
            self.live += 1;
            self.in_flight.insert(seq);
            seq
        })
    }

    /// The next backlog record to send, now in flight.
    pub fn next_backlog(&mut self) -> Option<u64> {
        while let Some(seq) = self.backlog.next() {
            if !self.is_settled(seq) && self.in_flight.insert(seq) {
                return Some(seq);
            }
        }
        None
    }

    /// While the link is down nothing is live: what waits until `head` joins the backlog, to be replayed in
    /// order under the rate cap once it is back.
    pub fn defer_live(&mut self, head: u64) {
        if self.live < head {
            self.extend_backlog(self.live..head);
            self.live = head;
        }
    }

    /// The broker acknowledged `seq`.
    pub fn acknowledged(&mut self, seq: u64) {
        self.in_flight.remove(&seq);
        if seq >= self.acked_below {
            self.acked.insert(seq);
            self.advance();
        }
    }

    /// The link lost `seq` (a clean session discarded it, or it could not be queued): send it again.
    pub fn lost(&mut self, seq: u64) {
        if self.in_flight.remove(&seq) && !self.is_settled(seq) {
            self.extend_backlog(seq..seq + 1);
        }
    }

    /// Records below `end` were deleted unacknowledged; returns how many of them were not acknowledged.
    pub fn drop_below(&mut self, end: u64) -> u64 {
        if end <= self.acked_below {
            return 0;
        }
        let settled = self.acked.range(..end).count() as u64;
        let dropped = end - self.acked_below - settled;
        self.acked = self.acked.split_off(&end);
        self.acked_below = end;
        self.backlog.start = self.backlog.start.max(end);
        self.live = self.live.max(end);
        self.advance();
        dropped
    }

    fn is_settled(&self, seq: u64) -> bool {
        seq < self.acked_below || self.acked.contains(&seq)
    }

    fn extend_backlog(&mut self, records: Range<u64>) {
        self.backlog = if self.backlog.is_empty() {
            records
        } else {
            self.backlog.start.min(records.start)..self.backlog.end.max(records.end)
        };
    }

    fn advance(&mut self) {
        while self.acked.remove(&self.acked_below) {
            self.acked_below += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain_backlog(delivery: &mut Delivery) -> Vec<u64> {
        std::iter::from_fn(|| delivery.next_backlog()).collect()
    }

    #[test]
    fn a_reopened_log_replays_its_unacknowledged_records_in_order() {
        let mut delivery = Delivery::new(3, 6);
        assert_eq!(delivery.unacked(6), 3);
        assert_eq!(delivery.next_live(6), None);
        assert_eq!(drain_backlog(&mut delivery), [3, 4, 5]);
        assert_eq!(delivery.in_flight(), 3);
        // Out of order acks: the cursor moves only over a whole prefix.
        delivery.acknowledged(4);
        assert_eq!((delivery.acked_below(), delivery.unacked(6)), (3, 2));
        delivery.acknowledged(3);
        assert_eq!((delivery.acked_below(), delivery.unacked(6)), (5, 1));
        delivery.acknowledged(5);
        assert_eq!((delivery.acked_below(), delivery.unacked(6), delivery.in_flight()), (6, 0, 0));
    }

    #[test]
    fn live_records_go_at_once_and_lost_ones_are_replayed() {
        let mut delivery = Delivery::new(0, 0);
        assert_eq!(delivery.next_live(3), Some(0));
        assert_eq!(delivery.next_live(3), Some(1));
        assert_eq!(delivery.next_live(3), Some(2));
        assert_eq!(delivery.next_live(3), None);
        delivery.acknowledged(1);
        delivery.lost(2);
        delivery.lost(0);
        assert!(delivery.has_backlog());
        // 1 is inside the replayed range but acknowledged: skipped.
        assert_eq!(drain_backlog(&mut delivery), [0, 2]);
        // A second loss report of a record no longer in flight changes nothing.
        delivery.lost(1);
        assert_eq!(drain_backlog(&mut delivery), Vec::<u64>::new());
        delivery.acknowledged(0);
        delivery.acknowledged(2);
        assert_eq!(delivery.acked_below(), 3);
    }

    #[test]
    fn records_appended_while_the_link_is_down_become_backlog() {
        let mut delivery = Delivery::new(0, 0);
        assert_eq!(delivery.next_live(1), Some(0));
        delivery.defer_live(5);
        assert_eq!(delivery.next_live(5), None);
        assert_eq!(delivery.next_live(6), Some(5));
        assert_eq!(drain_backlog(&mut delivery), [1, 2, 3, 4]);
        // The one in flight when the link went down is lost later, and replayed then.
        delivery.lost(0);
        assert_eq!(drain_backlog(&mut delivery), [0]);
    }

    #[test]
    fn dropping_counts_only_the_unacknowledged() {
        let mut delivery = Delivery::new(10, 20);
        delivery.acknowledged(12);
        delivery.acknowledged(13);
        delivery.acknowledged(17);
        assert_eq!(delivery.drop_below(15), 3);
        assert_eq!((delivery.acked_below(), delivery.unacked(20)), (15, 4));
        assert_eq!(delivery.drop_below(15), 0);
        assert_eq!(delivery.drop_below(12), 0);
        assert_eq!(drain_backlog(&mut delivery), [15, 16, 18, 19]);
        // In flight when dropped: already counted, and its late ack changes nothing.
        assert_eq!(delivery.drop_below(20), 4);
        delivery.acknowledged(16);
        assert_eq!((delivery.acked_below(), delivery.unacked(20), delivery.in_flight()), (20, 0, 3));
    }

    #[test]
    fn absent_records_are_settled() {
        let mut delivery = Delivery::new(0, 10);
        delivery.skip(4..7);
        assert_eq!(delivery.unacked(10), 7);
        assert_eq!(drain_backlog(&mut delivery), [0, 1, 2, 3, 7, 8, 9]);
        for seq in [0, 1, 2, 3] {
            delivery.acknowledged(seq);
        }
        assert_eq!(delivery.acked_below(), 7);
    }
}
