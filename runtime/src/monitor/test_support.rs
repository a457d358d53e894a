//! What the monitoring tests share: the scipy/numpy fixture, a seeded random source, the shipped manifests.

use crate::Bundle;
use crate::manifest::Manifest;
use serde_json::Value;
use std::path::PathBuf;

/// The cases of one section of `tests/fixtures/drift.json` (`models/scripts/make_drift_fixtures.py`).
pub fn fixture(section: &str) -> Vec<Value> {
    let all: Value = serde_json::from_str(include_str!("../../tests/fixtures/drift.json")).expect("fixture JSON");
    all[section].as_array().unwrap_or_else(|| panic!("fixture has no {section}")).clone()
}

pub fn numbers(case: &Value, key: &str) -> Vec<f64> {
    case[key].as_array().unwrap_or_else(|| panic!("{key}")).iter().map(|v| v.as_f64().expect("number")).collect()
}

pub fn number(case: &Value, key: &str) -> f64 {
    case[key].as_f64().unwrap_or_else(|| panic!("{key}"))
}

/// A seeded xorshift generator: the same numbers on every run, no dependency.
pub struct Random(u64);

impl Random {
    pub fn new(seed: u64) -> Random {
        Random(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Normal with this mean and standard deviation (Box-Muller).
    pub fn normal(&mut self, mean: f64, std: f64) -> f64 {
        let (u, v) = (1.0 - self.uniform(), self.uniform());
        mean + std * (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

pub fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// A shipped bundle's manifest and labels.
pub fn shipped(bundle: &str) -> (Manifest, Vec<String>) {
    let bundle = Bundle::load(models_dir().join(bundle)).expect("shipped bundle loads");
    (bundle.manifest().clone(), bundle.labels().to_vec())
}

/// The shipped bundles.
pub const BUNDLES: [&str; 4] = ["activity-classifier", "image-classifier", "face-detector", "vibration-anomaly"];
