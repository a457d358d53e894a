//! `[sources.batch]` of a sensor source: several predictions per MQTT message (a
//! [`PredictionBatch`](protocol::wire::PredictionBatch)), for sources that infer faster than one message per
//! window is worth. Absent: one `Prediction` per window, as subscribers that predate batching expect.

use super::Problems;
use serde::Deserialize;
use std::time::Duration;

/// More predictions than this in one message only delay them; the bound keeps a typo from making a batch larger
/// than a broker takes.
const MAX_PREDICTIONS: usize = 10_000;
/// A prediction older than this is no longer news; the bound catches a value meant in seconds.
const MAX_DELAY_MS: u64 = 60_000;

/// When a source's waiting predictions are published together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// Published as soon as this many wait (1–10000).
    pub max_predictions: usize,
    /// Published when the oldest waiting prediction is this old, however few wait (1–60000).
    pub max_delay_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { max_predictions: 50, max_delay_ms: 100 }
    }
}

impl BatchConfig {
    pub fn max_delay(&self) -> Duration {
        Duration::from_millis(self.max_delay_ms)
    }

    pub(super) fn validate(&self, key: &str, problems: &mut Problems) {
        if !(1..=MAX_PREDICTIONS).contains(&self.max_predictions) {
            problems.push(format!("{key}.batch.max_predictions"), format!("must be 1–{MAX_PREDICTIONS}"));
        }
        if !(1..=MAX_DELAY_MS).contains(&self.max_delay_ms) {
            problems.push(format!("{key}.batch.max_delay_ms"), format!("must be 1–{MAX_DELAY_MS}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{AgentConfig, SourceConfig};
    use super::*;

    fn recording(batch: &str) -> Result<AgentConfig, String> {
        let text = format!(
            "device_id = \"d\"\n[[sources]]\nname = \"wrist\"\nmodel = \"m\"\nkind = \"csv\"\npath = \"a.csv\"\n{batch}"
        );
        AgentConfig::parse(&text).map_err(|errors| errors.to_string())
    }

    #[test]
    fn off_unless_the_table_is_there_and_its_keys_default() {
        assert_eq!(recording("").expect("valid").sources[0].batch(), None);
        let config = recording("[sources.batch]\n").expect("valid");
        assert_eq!(config.sources[0].batch(), Some(BatchConfig { max_predictions: 50, max_delay_ms: 100 }));
        let config = recording("[sources.batch]\nmax_predictions = 7\nmax_delay_ms = 3\n").expect("valid");
        let SourceConfig::Csv(csv) = &config.sources[0] else { panic!("a csv source") };
        assert_eq!(csv.batch, Some(BatchConfig { max_predictions: 7, max_delay_ms: 3 }));
        assert_eq!(csv.batch.map(|batch| batch.max_delay()), Some(Duration::from_millis(3)));
    }

    #[test]
    fn out_of_range_and_unknown_keys_are_refused() {
        let errors = recording("[sources.batch]\nmax_predictions = 0\nmax_delay_ms = 60001\n").unwrap_err();
        assert!(errors.contains("sources[0].batch.max_predictions: must be 1–10000"), "{errors}");
        assert!(errors.contains("sources[0].batch.max_delay_ms: must be 1–60000"), "{errors}");
        assert!(recording("[sources.batch]\nmax_bytes = 5\n").is_err());
    }

    #[test]
    fn image_sources_take_no_batch() {
        let text = "device_id = \"d\"\n[[sources]]\nname = \"cam\"\nmodel = \"m\"\nkind = \"images\"\npath = \"f\"\n\
                    [sources.batch]\n";
        assert!(AgentConfig::parse(text).is_err());
    }
}
