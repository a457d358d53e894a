//! `[monitors.evidence]`: the inputs kept for retraining when a drift alert is raised (see
//! `crate::monitor::evidence`).

use super::{Problems, UpdateConfig, empty_as_none};
use serde::Deserialize;
use std::path::PathBuf;

/// The most inputs kept per candidate.
const MAX_SAMPLES: usize = 10_000;
/// The least byte cap: room for a candidate's `candidate.json` and a small input.
const MIN_BYTES: u64 = 64 << 10;
/// Where the evidence goes under `update.state_dir` when `directory` is unset.
const STATE_SUBDIR: &str = "evidence";

/// How many inputs are kept, and within how many bytes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvidenceConfig {
    /// Inputs kept per alert.
    pub samples: usize,
    /// Bytes all kept inputs of the source may take on disk; the oldest are deleted first.
    pub max_bytes: u64,
    /// Where candidates are written, as `<directory>/<source>/<candidate>/`; unset: `<update.state_dir>/evidence`
    /// (then required without `[update]`).
    #[serde(deserialize_with = "empty_as_none")]
    pub directory: Option<PathBuf>,
}

impl Default for EvidenceConfig {
    fn default() -> Self {
        EvidenceConfig { samples: 32, max_bytes: 64 << 20, directory: None }
    }
}

impl EvidenceConfig {
    /// `directory`, else `<update.state_dir>/evidence`; `None` only in a configuration that failed validation.
    pub fn directory(&self, update: Option<&UpdateConfig>) -> Option<PathBuf> {
        self.directory.clone().or_else(|| update?.state_dir.as_ref().map(|state_dir| state_dir.join(STATE_SUBDIR)))
    }

    /// Checks the keys of the entry at `key` (`monitors[0].evidence`).
    pub(super) fn validate(&self, key: &str, update: Option<&UpdateConfig>, problems: &mut Problems) {
        if !(1..=MAX_SAMPLES).contains(&self.samples) {
            problems.push(format!("{key}.samples"), format!("must be between 1 and {MAX_SAMPLES}"));
        }
        if self.max_bytes < MIN_BYTES {
            problems.push(format!("{key}.max_bytes"), format!("must be >= {MIN_BYTES}"));
        }
        if self.directory(update).is_none() {
            problems.push(format!("{key}.directory"), "is required without [update] state_dir");
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::AgentConfig;
    use std::path::Path;

    const SOURCE: &str = "device_id = \"d\"\n[[sources]]\nname = \"cam\"\nmodel = \"m\"\nkind = \"mqtt_frames\"\n";
    const UPDATE: &str =
        "[update]\ntrusted_keys = [\"0000000000000000000000000000000000000000000000000000000000000000\"]\n";

    fn parse(update: &str, evidence: &str) -> Result<AgentConfig, Vec<String>> {
        let text = format!("{SOURCE}{update}[[monitors]]\nsource = \"cam\"\n[monitors.evidence]\n{evidence}");
        AgentConfig::parse(&text).map_err(|e| e.0.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn the_documented_example_shows_the_feedback_and_evidence_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/agent.example.toml");
        let config = AgentConfig::load(&path).unwrap_or_else(|e| panic!("{}:\n{e}", path.display()));
        let monitor = &config.monitors[0];
        assert_eq!(monitor.feedback, Some(crate::config::FeedbackConfig::default()));
        assert_eq!(monitor.evidence, Some(super::EvidenceConfig::default()));
    }

    #[test]
    fn the_directory_defaults_under_the_state_dir_and_is_required_without_it() {
        let state = format!("{UPDATE}state_dir = \"state\"\n");
        let mut config = parse(&state, "").expect("valid");
        config.resolve_paths(Path::new("/etc/agent"));
        let evidence = config.monitors[0].evidence.clone().expect("configured");
        assert_eq!((evidence.samples, evidence.max_bytes), (32, 64 << 20));
        assert_eq!(evidence.directory(config.update.as_ref()).as_deref(), Some(Path::new("/etc/agent/state/evidence")));

        let mut config = parse("", "directory = \"kept\"\n").expect("valid");
        config.resolve_paths(Path::new("/etc/agent"));
        let evidence = config.monitors[0].evidence.clone().expect("configured");
        assert_eq!(evidence.directory(None).as_deref(), Some(Path::new("/etc/agent/kept")));

        assert_eq!(
            parse("", "samples = 0\nmax_bytes = 1000\n").expect_err("invalid"),
            [
                "monitors[0].evidence.samples: must be between 1 and 10000",
                "monitors[0].evidence.max_bytes: must be >= 65536",
                "monitors[0].evidence.directory: is required without [update] state_dir",
            ]
        );
        assert!(parse("", "directory = \"\"\n").is_err(), "an empty directory is unset");
    }
}
