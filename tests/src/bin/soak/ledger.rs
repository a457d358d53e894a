//! What the subscriber received, per source: prediction and error sequence numbers, duplicates, and the agent's
//! own counters from its latest health report.

use integration_tests::subscriber::Received;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};

/// The sequence numbers received for one source.
#[derive(Debug, Default)]
struct SourceLedger {
    predictions: HashSet<u64>,
    prediction_messages: u64,
    errors: HashSet<u64>,
    /// Sequence numbers are per source from 0, shared by predictions and error events.
    next_seq: u64,
}

/// Everything received, by source.
#[derive(Debug, Default)]
pub struct Ledger {
    sources: BTreeMap<String, SourceLedger>,
    health: Option<Value>,
    health_reports: u64,
}

impl Ledger {
    /// Records a message published under `prefix`; others (the hostile ones echoed back) are ignored.
    pub fn record(&mut self, prefix: &str, message: &Received) {
        let Some(kind) = message.topic.strip_prefix(prefix).and_then(|t| t.strip_prefix('/')) else { return };
        let Ok(payload) = serde_json::from_slice::<Value>(&message.payload) else { return };
        if kind == "health" {
            self.health = Some(payload);
            self.health_reports += 1;
            return;
        }
        let Some(seq) = payload["seq"].as_u64() else { return };
        let (source, is_prediction) = match kind.split_once('/') {
            Some(("predictions", source)) => (source, true),
            Some(("errors", source)) => (source, false),
            _ => return,
        };
        let ledger = self.sources.entry(source.to_owned()).or_default();
        ledger.next_seq = ledger.next_seq.max(seq + 1);
        if is_prediction {
            ledger.prediction_messages += 1;
            ledger.predictions.insert(seq);
        } else {
            ledger.errors.insert(seq);
        }
    }

    /// Health reports received.
    pub fn health_reports(&self) -> u64 {
        self.health_reports
    }

    /// A top-level counter of the latest health report.
    pub fn health_counter(&self, field: &str) -> u64 {
        self.health.as_ref().and_then(|h| h[field].as_u64()).unwrap_or(0)
    }

    /// A counter of the spool in the latest health report (0 without a spool).
    pub fn spool_counter(&self, field: &str) -> u64 {
        self.health.as_ref().and_then(|h| h["spool"][field].as_u64()).unwrap_or(0)
    }

    /// Distinct error events received from `source`.
    pub fn errors(&self, source: &str) -> usize {
        self.sources.get(source).map_or(0, |l| l.errors.len())
    }

    /// Distinct predictions received, over every source.
    pub fn predictions(&self) -> usize {
        self.sources.values().map(|l| l.predictions.len()).sum()
    }

    /// The accounting of `source`, against the latest health report.
    pub fn account(&self, source: &str) -> Account {
        let empty = SourceLedger::default();
        let ledger = self.sources.get(source).unwrap_or(&empty);
        let health = self
            .health
            .as_ref()
            .and_then(|h| h["sources"].as_array()?.iter().find(|s| s["name"].as_str() == Some(source)).cloned());
        let counter = |field: &str| health.as_ref().and_then(|h| h[field].as_u64()).unwrap_or(0);
        let received = ledger.predictions.len() as u64;
        let errors = ledger.errors.len() as u64;
        let counted = counter("dropped") + counter("predictions_unpublished");
        let missing = ledger.next_seq - received - errors;
        Account {
            produced: counter("frames_ok"),
            sequenced: ledger.next_seq,
            received,
            duplicates: ledger.prediction_messages - received,
            errors,
            counted,
            uncounted: missing.saturating_sub(counted),
        }
    }
}

/// One source's predictions, from production to the subscriber.
#[derive(Debug, Clone, Copy)]
pub struct Account {
    /// `frames_ok` of the latest health report (taken before the agent's drain at SIGTERM).
    pub produced: u64,
    /// Sequence numbers issued: the highest received plus one.
    pub sequenced: u64,
    /// Distinct predictions received.
    pub received: u64,
    /// Predictions received more than once.
    pub duplicates: u64,
    /// Distinct error events received.
    pub errors: u64,
    /// What the agent counted as not delivered: `dropped` + `predictions_unpublished`.
    pub counted: u64,
    /// Sequence numbers neither received nor counted: lost without a trace.
    pub uncounted: u64,
}

impl Account {
    pub fn print_header() {
        println!(
            "  {:<10} {:>12} {:>10} {:>10} {:>10} {:>8} {:>14} {:>16}",
            "source", "produced¹", "sequenced", "received", "duplicated", "errors", "counted drops", "lost uncounted"
        );
    }

    pub fn print(&self, source: &str) {
        println!(
            "  {:<10} {:>12} {:>10} {:>10} {:>10} {:>8} {:>14} {:>16}",
            source,
            self.produced,
            self.sequenced,
            self.received,
            self.duplicates,
            self.errors,
            self.counted,
            self.uncounted
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(topic: &str, payload: &str) -> Received {
        Received { topic: format!("devices/d/{topic}"), payload: payload.as_bytes().to_vec(), retain: false }
    }

    #[test]
    fn sequence_numbers_are_received_counted_or_lost() {
        let mut ledger = Ledger::default();
        for (topic, payload) in [
            ("predictions/s", r#"{"seq":0}"#),
            ("predictions/s", r#"{"seq":0}"#),
            ("errors/s", r#"{"seq":1}"#),
            ("predictions/s", r#"{"seq":4}"#),
            ("frames/s", "not JSON"),
            ("health", r#"{"mqtt_reconnects":2,"sources":[{"name":"s","frames_ok":4,"dropped":1}]}"#),
        ] {
            ledger.record("devices/d", &message(topic, payload));
        }
        let account = ledger.account("s");
        // Seqs 0..5: 0 and 4 received (0 twice), 1 an error, one of 2 and 3 dropped as counted, one lost.
        assert_eq!(
            (account.produced, account.sequenced, account.received, account.duplicates, account.errors),
            (4, 5, 2, 1, 1)
        );
        assert_eq!((account.counted, account.uncounted), (1, 1));
        assert_eq!((ledger.health_counter("mqtt_reconnects"), ledger.health_reports()), (2, 1));
    }
}
