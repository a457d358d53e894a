//! `[[monitors]]`: drift, alerts, feedback and retraining evidence of one source (see `crate::monitor`).

use super::{EvidenceConfig, FeedbackConfig, Problems, SourceConfig};
use serde::Deserialize;
use std::collections::HashMap;

/// Largest `window`: the drift window holds `window` feature vectors per source, in memory.
const MAX_WINDOW: usize = 100_000;

/// One `[[monitors]]` entry: the model monitor of one source.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorConfig {
    /// The `name` of a source. Required; one entry per source.
    pub source: String,
    /// Inputs per drift window.
    pub window: usize,
    /// Inputs between two evaluations of the window, once it is full.
    pub stride: usize,
    /// Ground truth on `<prefix>/feedback/<source>`; absent: no feedback is taken.
    pub feedback: Option<FeedbackConfig>,
    /// Inputs kept as evidence when a drift alert is raised; absent: none are kept.
    pub evidence: Option<EvidenceConfig>,
    /// Seconds between two reports on `<prefix>/monitor/<source>`.
    pub publish_secs: u64,
    /// A feature's PSI at or above this makes its window drifted, severity `warn`.
    pub psi_warn: f64,
    /// ...and at or above this, severity `alert`.
    pub psi_alert: f64,
    /// Family-wise KS significance over the source's continuous features: each is tested at `ks_p_value / m`.
    pub ks_p_value: f64,
    /// A categorical feature's Jensen-Shannon distance (base 2) at or above this makes its window drifted.
    pub js_alert: f64,
    /// Consecutive bad windows before an alert is raised.
    pub raise_after: u32,
    /// Consecutive good windows before an active alert is cleared.
    pub clear_after: u32,
    /// Alert when a window's inference p95 exceeds this multiple of the model's baseline p95.
    pub latency_ratio: f64,
    /// Alert when a window's error rate exceeds the model's baseline rate by this much (0–1: 0.1 is 10 points).
    pub error_rate_increase: f64,
    /// Alert when a window's mean top-1 confidence falls below this fraction of the profile's reference mean.
    pub confidence_ratio: f64,
    /// Alert when one predicted class takes more than this share of a window though its reference share is less.
    pub class_share: f64,
    /// Alert when no input arrived for this many seconds; unset: never.
    pub idle_secs: Option<u64>,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            source: String::new(),
            window: 200,
            stride: 50,
            feedback: None,
            evidence: None,
            publish_secs: 60,
            psi_warn: 0.1,
            psi_alert: 0.25,
            ks_p_value: 0.01,
            js_alert: 0.2,
            raise_after: 3,
            clear_after: 3,
            latency_ratio: 2.0,
            error_rate_increase: 0.1,
            confidence_ratio: 0.5,
            class_share: 0.9,
            idle_secs: None,
        }
    }
}

/// Checks every `[[monitors]]` entry against the sources (`[monitors.feedback]` and `[monitors.evidence]`
/// are checked by their own sections).
pub(super) fn validate(monitors: &[MonitorConfig], sources: &[SourceConfig], problems: &mut Problems) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (index, monitor) in monitors.iter().enumerate() {
        let key = format!("monitors[{index}]");
        let name = monitor.source.as_str();
        if name.is_empty() {
            problems.push(format!("{key}.source"), "is required");
        } else if !sources.iter().any(|source| source.name() == name) {
            problems.push(format!("{key}.source"), format!("no source is named {name:?}"));
        }
        let first = *seen.entry(name).or_insert(index);
        if first != index && !name.is_empty() {
            problems.push(format!("{key}.source"), format!("monitors[{first}] already monitors {name:?}"));
        }
        monitor.validate(&key, problems);
    }
}

impl MonitorConfig {
    fn validate(&self, key: &str, problems: &mut Problems) {
        let mut check = |field: &str, ok: bool, rule: &str| {
            if !ok {
                problems.push(format!("{key}.{field}"), rule.to_owned());
            }
        };
        check("window", (2..=MAX_WINDOW).contains(&self.window), &format!("must be between 2 and {MAX_WINDOW}"));
        check("stride", self.stride >= 1, "must be >= 1");
        check("stride", self.stride <= self.window, "must be <= window");
        check("publish_secs", self.publish_secs >= 1, "must be >= 1");
        check("psi_warn", self.psi_warn.is_finite() && self.psi_warn > 0.0, "must be > 0");
        check("psi_alert", self.psi_alert.is_finite() && self.psi_alert >= self.psi_warn, "must be >= psi_warn");
        check("ks_p_value", self.ks_p_value > 0.0 && self.ks_p_value < 1.0, "must be between 0 and 1 (exclusive)");
        check("js_alert", self.js_alert > 0.0 && self.js_alert <= 1.0, "must be in (0, 1]");
        check("raise_after", self.raise_after >= 1, "must be >= 1");
        check("clear_after", self.clear_after >= 1, "must be >= 1");
        check("latency_ratio", self.latency_ratio.is_finite() && self.latency_ratio > 1.0, "must be > 1");
        check(
            "error_rate_increase",
            self.error_rate_increase > 0.0 && self.error_rate_increase <= 1.0,
            "must be in (0, 1]",
        );
        check(
            "confidence_ratio",
            self.confidence_ratio > 0.0 && self.confidence_ratio < 1.0,
            "must be between 0 and 1 (exclusive)",
        );
        check("class_share", self.class_share > 0.0 && self.class_share < 1.0, "must be between 0 and 1 (exclusive)");
        check("idle_secs", self.idle_secs != Some(0), "must be >= 1 (or unset: off)");
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{AgentConfig, MonitorConfig};

    const SOURCES: &str =
        "device_id = \"d\"\n[[sources]]\nname = \"vib\"\nmodel = \"m\"\nkind = \"csv\"\npath = \"v.csv\"\n";

    fn parse(monitors: &str) -> Result<AgentConfig, Vec<String>> {
        AgentConfig::parse(&format!("{SOURCES}{monitors}")).map_err(|e| e.0.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn defaults_and_every_key() {
        let config = parse("[[monitors]]\nsource = \"vib\"\n").expect("valid");
        assert_eq!(config.monitors, [MonitorConfig { source: "vib".into(), ..MonitorConfig::default() }]);
        let keys = "[[monitors]]\nsource = \"vib\"\nwindow = 100\nstride = 10\npublish_secs = 5\npsi_warn = 0.2\n\
                    psi_alert = 0.3\nks_p_value = 0.05\njs_alert = 0.3\nraise_after = 2\nclear_after = 4\n\
                    latency_ratio = 3.0\nerror_rate_increase = 0.2\nconfidence_ratio = 0.6\nclass_share = 0.8\n\
                    idle_secs = 30\n";
        let monitor = &parse(keys).expect("valid").monitors[0];
        assert_eq!((monitor.window, monitor.stride, monitor.publish_secs), (100, 10, 5));
        assert_eq!((monitor.psi_warn, monitor.psi_alert, monitor.ks_p_value, monitor.js_alert), (0.2, 0.3, 0.05, 0.3));
        assert_eq!((monitor.raise_after, monitor.clear_after, monitor.idle_secs), (2, 4, Some(30)));
        assert_eq!(
            (monitor.latency_ratio, monitor.error_rate_increase, monitor.confidence_ratio, monitor.class_share),
            (3.0, 0.2, 0.6, 0.8)
        );
    }

    /// `docs/agent.example.toml` shows every key at its default.
    #[test]
    fn the_documented_example_shows_the_defaults() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/agent.example.toml");
        let config = AgentConfig::load(&path).unwrap_or_else(|e| panic!("{}:\n{e}", path.display()));
        let monitor = &config.monitors[0];
        let shown = MonitorConfig { feedback: None, evidence: None, ..monitor.clone() };
        assert_eq!(shown, MonitorConfig { source: "wrist".into(), ..MonitorConfig::default() });
    }

    #[test]
    fn every_problem_names_its_key() {
        let bad = "[[monitors]]\nsource = \"vib\"\nwindow = 1\nstride = 0\npublish_secs = 0\npsi_warn = 0.0\n\
                   psi_alert = -1.0\nks_p_value = 1.0\njs_alert = 1.5\nraise_after = 0\nclear_after = 0\n\
                   latency_ratio = 1.0\nerror_rate_increase = 0.0\nconfidence_ratio = 1.0\nclass_share = 0.0\n\
                   idle_secs = 0\n";
        assert_eq!(
            parse(bad).expect_err("invalid"),
            [
                "monitors[0].window: must be between 2 and 100000",
                "monitors[0].stride: must be >= 1",
                "monitors[0].publish_secs: must be >= 1",
                "monitors[0].psi_warn: must be > 0",
                "monitors[0].psi_alert: must be >= psi_warn",
                "monitors[0].ks_p_value: must be between 0 and 1 (exclusive)",
                "monitors[0].js_alert: must be in (0, 1]",
                "monitors[0].raise_after: must be >= 1",
                "monitors[0].clear_after: must be >= 1",
                "monitors[0].latency_ratio: must be > 1",
                "monitors[0].error_rate_increase: must be in (0, 1]",
                "monitors[0].confidence_ratio: must be between 0 and 1 (exclusive)",
                "monitors[0].class_share: must be between 0 and 1 (exclusive)",
                "monitors[0].idle_secs: must be >= 1 (or unset: off)",
            ]
        );
        assert_eq!(
            parse("[[monitors]]\nsource = \"vib\"\nwindow = 10\nstride = 11\n").expect_err("invalid"),
            ["monitors[0].stride: must be <= window"]
        );
    }

    #[test]
    fn one_monitor_per_existing_source() {
        let errors = parse(
            "[[monitors]]\n[[monitors]]\nsource = \"cam\"\n[[monitors]]\nsource = \"vib\"\n\
                            [[monitors]]\nsource = \"vib\"\n",
        )
        .expect_err("invalid");
        assert_eq!(
            errors,
            [
                "monitors[0].source: is required",
                "monitors[1].source: no source is named \"cam\"",
                "monitors[3].source: monitors[2] already monitors \"vib\"",
            ]
        );
    }
}
