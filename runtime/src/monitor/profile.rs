//! The reference profile (`profile.json` in a bundle, listed in the manifest's `profile` key and covered by its
//! `[checksums]`): per feature, fixed bin edges from the reference quantiles with the reference's share in each
//! bin, a quantile grid for the Kolmogorov-Smirnov test, and the reference size. `docs/bundle-format.md`
//! documents the format.

use crate::error::{Error, Result};
use crate::monitor::features::{FeatureKind, FeatureSpec};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The conventional file name of a bundle's profile.
pub const PROFILE_FILE: &str = "profile.json";

/// The profile format this runtime writes and reads.
const VERSION: u32 = 1;
/// Points of the quantile grid: probabilities 0, 0.01, ..., 1.
const QUANTILES: usize = 101;
/// Bins of a continuous feature before equal deciles merge: edges at the deciles 0.1, ..., 0.9.
const BINS: usize = 10;
/// How far from 1 a feature's proportions may sum (each is rounded to `f32`, 6e-8 relative).
const SUM_TOLERANCE: f64 = 1e-6;

/// A model's reference profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Format version (1).
    pub version: u32,
    /// Reference inputs profiled.
    pub size: u64,
    /// One entry per feature, in [`crate::monitor::FeatureExtractor::specs`] order.
    pub features: Vec<FeatureProfile>,
}

/// One feature of a [`Profile`]. Its numbers are `f32` values (features are `f32`; quantiles and shares are
/// rounded to it), written in `f32`'s shortest form and read back as `f32`: the file stays small, and a value
/// the reference held exactly (a constant feature's) compares equal with the same value on the device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureProfile {
    /// The feature's name, as [`FeatureSpec::name`].
    pub name: String,
    /// How it is compared, as [`FeatureSpec::kind`].
    pub kind: FeatureKind,
    /// Inner bin edges, ascending (continuous features); bins are `(-inf, e0)`, `[e0, e1)`, ..., `[en, inf)`.
    #[serde(with = "f32_numbers")]
    pub edges: Vec<f64>,
    /// The reference's share in each bin (or each category), summing to 1.
    #[serde(with = "f32_numbers")]
    pub proportions: Vec<f64>,
    /// Reference quantiles at evenly spaced probabilities 0..=1 (continuous features), for the KS test.
    #[serde(with = "f32_numbers")]
    pub quantiles: Vec<f64>,
    /// The reference mean; for a categorical feature its most frequent category (as a monitor report gives it).
    #[serde(with = "f32_number")]
    pub mean: f64,
    /// The reference standard deviation (population; of the category index for a categorical feature).
    #[serde(with = "f32_number")]
    pub std: f64,
}

impl FeatureProfile {
    /// The bin of a continuous feature's `value`: the number of edges at or below it.
    pub(crate) fn bin(&self, value: f64) -> usize {
        self.edges.partition_point(|&edge| edge <= value)
    }
}

impl Profile {
    /// Parses a profile and checks it against the features `specs` lists (same names, kinds and order) and
    /// every number in it. Errors are [`Error::Profile`] naming [`PROFILE_FILE`]; [`Profile::read`] names the
    /// file it read.
    pub fn parse(json: &str, specs: &[FeatureSpec]) -> Result<Profile> {
        Profile::parse_at(json, specs, Path::new(PROFILE_FILE))
    }

    /// Reads and parses the profile at `path`, as [`Profile::parse`].
    pub fn read(path: &Path, specs: &[FeatureSpec]) -> Result<Profile> {
        let json = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
        Profile::parse_at(&json, specs, path)
    }

    fn parse_at(json: &str, specs: &[FeatureSpec], path: &Path) -> Result<Profile> {
        let fail = |message: String| Error::Profile { path: path.to_owned(), message };
        let profile: Profile = serde_json::from_str(json).map_err(|e| fail(e.to_string()))?;
        profile.check(specs).map_err(fail)?;
        Ok(profile)
    }

    /// The profile as JSON, one feature per line.
    pub fn to_json(&self) -> String {
        // Plain data with string keys: serialising it cannot fail.
        let features: Vec<String> =
            self.features.iter().map(|feature| serde_json::to_string(feature).unwrap_or_default()).collect();
        format!("{{\"version\":{},\"size\":{},\"features\":[\n{}\n]}}\n", self.version, self.size, features.join(",\n"))
    }

    fn check(&self, specs: &[FeatureSpec]) -> Result<(), String> {
        if self.version != VERSION {
            return Err(format!("version {} is not supported (this runtime reads {VERSION})", self.version));
        }
        if self.size == 0 {
            return Err("`size` is 0: a profile needs reference inputs".to_owned());
        }
        if self.features.len() != specs.len() {
            let names = |names: Vec<&str>| names.join(", ");
            return Err(format!(
                "{} features [{}], but the model has {} [{}]",
                self.features.len(),
                names(self.features.iter().map(|f| f.name.as_str()).collect()),
                specs.len(),
                names(specs.iter().map(|s| s.name.as_str()).collect()),
            ));
        }
        for (index, (feature, spec)) in self.features.iter().zip(specs).enumerate() {
            if feature.name != spec.name {
                return Err(format!("feature {index} is `{}`, the model's is `{}`", feature.name, spec.name));
            }
            feature.check(spec.kind).map_err(|problem| format!("feature `{}`: {problem}", feature.name))?;
        }
        Ok(())
    }
}

impl FeatureProfile {
    fn check(&self, kind: FeatureKind) -> Result<(), String> {
        if self.kind != kind {
            return Err(format!("kind is {:?}, the model's is {kind:?}", self.kind));
        }
        finite("mean", &[self.mean])?;
        finite("std", &[self.std])?;
        if self.std < 0.0 {
            return Err(format!("`std` is negative ({})", self.std));
        }
        let bins = match kind {
            FeatureKind::Continuous => {
                finite("edges", &self.edges)?;
                if self.edges.is_empty() {
                    return Err("`edges` is empty".to_owned());
                }
                if let Some(at) = self.edges.windows(2).position(|pair| pair[0] >= pair[1]) {
                    return Err(format!("`edges` are not strictly ascending at index {}", at + 1));
                }
                finite("quantiles", &self.quantiles)?;
                if self.quantiles.len() != QUANTILES {
                    return Err(format!("{} `quantiles`, expected {QUANTILES}", self.quantiles.len()));
                }
                if let Some(at) = self.quantiles.windows(2).position(|pair| pair[0] > pair[1]) {
                    return Err(format!("`quantiles` decrease at index {}", at + 1));
                }
                self.edges.len() + 1
            }
            FeatureKind::Categorical { categories } => {
                if !self.edges.is_empty() || !self.quantiles.is_empty() {
                    return Err("a categorical feature has no `edges` or `quantiles`".to_owned());
                }
                categories as usize
            }
        };
        if self.proportions.len() != bins {
            return Err(format!("{} `proportions` for {bins} bins", self.proportions.len()));
        }
        finite("proportions", &self.proportions)?;
        if let Some(at) = self.proportions.iter().position(|share| !(0.0..=1.0).contains(share)) {
            return Err(format!("`proportions[{at}]` is {}, outside 0..=1", self.proportions[at]));
        }
        let sum: f64 = self.proportions.iter().sum();
        if (sum - 1.0).abs() > SUM_TOLERANCE {
            return Err(format!("`proportions` sum to {sum}, not 1"));
        }
        Ok(())
    }
}

/// (De)serialises an `f64` holding an `f32` value as that `f32`.
mod f32_number {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f32(*value as f32)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        f32::deserialize(deserializer).map(f64::from)
    }
}

/// (De)serialises `f64`s holding `f32` values as those `f32`s.
mod f32_numbers {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(values: &[f64], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(values.iter().map(|&value| value as f32))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<f64>, D::Error> {
        Vec::<f32>::deserialize(deserializer).map(|values| values.into_iter().map(f64::from).collect())
    }
}

/// `value` rounded to the nearest `f32`, the precision a profile keeps.
fn to_f32(value: f64) -> f64 {
    f64::from(value as f32)
}

fn finite(key: &str, values: &[f64]) -> Result<(), String> {
    match values.iter().position(|value| !value.is_finite()) {
        Some(at) => Err(format!("`{key}` has a non-finite value at index {at}")),
        None => Ok(()),
    }
}

/// Collects reference feature vectors and builds a [`Profile`] from them.
#[derive(Debug, Clone)]
pub struct ProfileBuilder {
    specs: Vec<FeatureSpec>,
    /// Each feature's values so far, one column per spec.
    columns: Vec<Vec<f64>>,
}

impl ProfileBuilder {
    /// A builder for the features `specs` lists.
    pub fn new(specs: &[FeatureSpec]) -> ProfileBuilder {
        ProfileBuilder { specs: specs.to_vec(), columns: vec![Vec::new(); specs.len()] }
    }

    /// Adds one input's features (as [`crate::monitor::FeatureExtractor::extract`] wrote them).
    pub fn add(&mut self, features: &[f32]) {
        debug_assert_eq!(features.len(), self.columns.len());
        for (column, &value) in self.columns.iter_mut().zip(features) {
            column.push(f64::from(value));
        }
    }

    /// Inputs added so far.
    pub fn len(&self) -> usize {
        self.columns.first().map_or(0, Vec::len)
    }

    /// True until the first [`ProfileBuilder::add`].
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The profile of everything added; an error when nothing was.
    pub fn build(self) -> Result<Profile> {
        let size = self.len();
        if size == 0 {
            let message = "no reference inputs were profiled".to_owned();
            return Err(Error::Profile { path: PROFILE_FILE.into(), message });
        }
        let features = self
            .specs
            .iter()
            .zip(self.columns)
            .map(|(spec, mut values)| {
                values.sort_by(f64::total_cmp);
                feature_profile(spec, &values)
            })
            .collect();
        Ok(Profile { version: VERSION, size: size as u64, features })
    }
}

/// One feature's profile from its ascending reference `values` (at least one).
fn feature_profile(spec: &FeatureSpec, values: &[f64]) -> FeatureProfile {
    let count = values.len() as f64;
    let mean = values.iter().sum::<f64>() / count;
    let std = (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / count).sqrt();
    let mut profile = FeatureProfile {
        name: spec.name.clone(),
        kind: spec.kind,
        edges: Vec::new(),
        proportions: Vec::new(),
        quantiles: Vec::new(),
        mean: to_f32(mean),
        std: to_f32(std),
    };
    let shares = |counts: &[u64]| counts.iter().map(|&c| to_f32(c as f64 / count)).collect();
    match spec.kind {
        FeatureKind::Continuous => {
            profile.edges = bin_edges(values);
            let mut counts = vec![0u64; profile.edges.len() + 1];
            for &value in values {
                counts[profile.bin(value)] += 1;
            }
            profile.proportions = shares(&counts);
            profile.quantiles =
                (0..QUANTILES).map(|i| to_f32(quantile(values, i as f64 / (QUANTILES - 1) as f64))).collect();
        }
        FeatureKind::Categorical { categories } => {
            let counts = category_counts(categories, values.iter().copied());
            profile.proportions = shares(&counts);
            profile.mean = most_frequent(&counts) as f64;
        }
    }
    profile
}

/// The inner edges of a continuous feature (`f32` values, ascending `values`): the reference deciles, equal
/// ones merged. When the top edge is the reference maximum (a constant feature, or one whose top tenth is a
/// single value), one more edge, the next `f32` above it, gives values beyond everything the reference saw a
/// bin of their own, so that a move up shows.
fn bin_edges(values: &[f64]) -> Vec<f64> {
    let mut edges: Vec<f64> = (1..BINS).map(|i| to_f32(quantile(values, i as f64 / BINS as f64))).collect();
    edges.dedup();
    let max = values[values.len() - 1];
    let above = (max as f32).next_up();
    if above.is_finite() && edges.last().is_some_and(|&top| top >= max) {
        edges.push(f64::from(above));
    }
    edges
}

/// The `p` quantile of ascending `values` with linear interpolation between order statistics, as numpy's
/// default (`method = "linear"`).
pub(crate) fn quantile(values: &[f64], p: f64) -> f64 {
    let n = values.len();
    // numpy's virtual index for "linear", `n p + (1 - p) - 1`, computed in the same order.
    let position = (n as f64 * p + (1.0 - p) - 1.0).clamp(0.0, (n - 1) as f64);
    let below = position.floor();
    let fraction = position - below;
    let low = values[below as usize];
    let high = values[(below as usize + 1).min(n - 1)];
    // numpy's `_lerp`: from the nearer end, so that the result never leaves [low, high].
    let difference = high - low;
    if fraction >= 0.5 { high - difference * (1.0 - fraction) } else { low + difference * fraction }
}

/// How many of `values` fall in each category `0..categories`; values outside (which the extractor never
/// writes) are not counted.
pub(crate) fn category_counts(categories: u32, values: impl Iterator<Item = f64>) -> Vec<u64> {
    let mut counts = vec![0u64; categories as usize];
    for value in values {
        if let Some(count) = counts.get_mut(value as usize).filter(|_| value >= 0.0) {
            *count += 1;
        }
    }
    counts
}

/// The most frequent category (the lowest of equally frequent ones); 0 when there are none.
pub(crate) fn most_frequent(counts: &[u64]) -> usize {
    counts.iter().enumerate().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0))).map_or(0, |(index, _)| index)
}

#[cfg(test)]
#[path = "profile_tests.rs"]
mod tests;
