//! The forwarder against a stand-in link that acknowledges at once, loses what it is told to lose once, and can
//! be down.

use super::*;
use crate::spool::tests::config;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};

struct StandIn {
    spool: Arc<Spool>,
    connected: AtomicBool,
    /// Tokens lost the first time they are published.
    lose_once: Mutex<HashSet<u64>>,
    published: Mutex<Vec<(Class, u64)>>,
    retained: Mutex<Vec<(Class, u64)>>,
}

impl Link for StandIn {
    fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    fn publish(&self, record: Record, retain: bool, token: u64) -> Result<(), PublishError> {
        let (class, seq) = untoken(token).expect("a valid token");
        assert_eq!(record.seq, seq);
        self.published.lock().expect("lock").push((class, seq));
        if retain {
            self.retained.lock().expect("lock").push((class, seq));
        }
        let outcome =
            if self.lose_once.lock().expect("lock").remove(&token) { Outcome::Lost } else { Outcome::Acknowledged };
        self.spool.inbox().outcome(token, outcome);
        Ok(())
    }
}

fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn tokens_carry_class_and_seq() {
    for class in Class::ALL {
        for seq in [0, 1, u64::MAX >> 2] {
            assert_eq!(untoken(token(class, seq)), Some((class, seq)));
        }
    }
    assert_eq!(untoken(3), None);
}

#[test]
fn the_pace_spaces_records_and_catches_up_a_little_only() {
    let mut pace = Pace::new(100.0);
    let start = Instant::now();
    pace.next = start;
    assert!(pace.ready(start));
    pace.take(start);
    assert!(!pace.ready(start + Duration::from_millis(9)));
    assert!(pace.ready(start + Duration::from_millis(10)));
    // After a long idle time, at most a burst's worth goes at once.
    let later = start + Duration::from_secs(5);
    let burst = std::iter::from_fn(|| pace.ready(later).then(|| pace.take(later))).take(1000).count();
    assert_eq!(burst, 11);
}

#[test]
fn the_backlog_replays_in_order_after_the_link_comes_back_and_lost_records_go_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = Arc::new(Spool::open(&config(dir.path(), 1 << 20, 4 << 20)).expect("opened"));
    let link = Arc::new(StandIn {
        spool: spool.clone(),
        connected: AtomicBool::new(false),
        lose_once: Mutex::new([token(Class::Predictions, 3), token(Class::Predictions, 7)].into()),
        published: Mutex::new(Vec::new()),
        retained: Mutex::new(Vec::new()),
    });
    let running = Forwarder::new(spool.clone(), link.clone(), 4, 2000.0, Duration::from_millis(50))
        .retain_live(Class::Health)
        .spawn()
        .expect("spawned");
    for seq in 0..10 {
        spool.append(Class::Predictions, "p", 1, &[seq]).expect("appended");
    }
    spool.append(Class::Health, "h", 0, b"h").expect("appended");
    thread::sleep(Duration::from_millis(50));
    assert!(link.published.lock().expect("lock").is_empty(), "nothing goes while the link is down");

    link.connected.store(true, Ordering::SeqCst);
    wait_for("everything acknowledged", || spool.health().records == 0);
    let published = link.published.lock().expect("lock").clone();
    let predictions: Vec<u64> =
        published.iter().filter(|(class, _)| *class == Class::Predictions).map(|&(_, seq)| seq).collect();
    // First sent in order, and the two lost ones sent again.
    let mut first = predictions.clone();
    let mut seen = HashSet::new();
    first.retain(|seq| seen.insert(*seq));
    assert_eq!(first, (0..10).collect::<Vec<_>>());
    let twice: Vec<u64> = (0..10).filter(|seq| predictions.iter().filter(|p| *p == seq).count() == 2).collect();
    assert_eq!((predictions.len(), twice), (12, vec![3, 7]));
    assert!(published.contains(&(Class::Health, 0)));
    // The health record waited out the outage: replayed, so not retained.
    assert!(link.retained.lock().expect("lock").is_empty(), "replayed records go unretained");

    // Live records go at once, and stopping drains them.
    spool.append(Class::Errors, "e", 1, b"e").expect("appended");
    spool.append(Class::Health, "h", 0, b"h").expect("appended");
    wait_for("the live health record", || link.published.lock().expect("lock").contains(&(Class::Health, 1)));
    assert_eq!(*link.retained.lock().expect("lock"), [(Class::Health, 1)], "only live health goes retained");
    running.stop(Instant::now() + Duration::from_secs(5));
    assert_eq!(spool.health().records, 0);
    assert!(link.published.lock().expect("lock").contains(&(Class::Errors, 0)));
}
