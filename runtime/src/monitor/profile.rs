//! The reference profile (`profile.json` in a bundle, listed in the manifest's `profile` key and covered by its
//! `[checksums]`): per feature, fixed bin edges from the reference quantiles with the reference's share in each
//! bin, a quantile grid for the Kolmogorov-Smirnov test, and the reference size. `docs/bundle-format.md`
//! documents the format.

use crate::error::Result;
use crate::monitor::features::{FeatureKind, FeatureSpec};
use serde::{Deserialize, Serialize};

/// The conventional file name of a bundle's profile.
pub const PROFILE_FILE: &str = "profile.json";

/// A model's reference profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Format version (1).
    pub version: u32,
    /// Reference inputs profiled.
    pub size: u64,
    /// One entry per feature, in [`crate::monitor::FeatureExtractor::specs`] order.
    pub features: Vec<FeatureProfile>,
}

/// One feature of a [`Profile`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureProfile {
    pub name: String,
    pub kind: FeatureKind,
    /// Inner bin edges, ascending (continuous features); bins are `(-inf, e0)`, `[e0, e1)`, ..., `[en, inf)`.
    pub edges: Vec<f64>,
    /// The reference's share in each bin (or each category), summing to 1.
    pub proportions: Vec<f64>,
    /// Reference quantiles at evenly spaced probabilities 0..=1 (continuous features), for the KS test.
    pub quantiles: Vec<f64>,
    pub mean: f64,
    pub std: f64,
}

impl Profile {
    /// Parses a profile and checks it against the features `specs` lists (same names, kinds and order).
    pub fn parse(json: &str, specs: &[FeatureSpec]) -> Result<Profile> {
        let _ = (json, specs);
        todo!("branch stats")
    }
}

/// Collects reference feature vectors and builds a [`Profile`] from them.
#[derive(Debug, Clone)]
pub struct ProfileBuilder {
    specs: Vec<FeatureSpec>,
}

impl ProfileBuilder {
    pub fn new(specs: &[FeatureSpec]) -> ProfileBuilder {
        ProfileBuilder { specs: specs.to_vec() }
    }

    /// Adds one input's features (as [`crate::monitor::FeatureExtractor::extract`] wrote them).
    pub fn add(&mut self, features: &[f32]) {
        let _ = features;
        todo!("branch stats")
    }

    /// The profile of everything added; an error when nothing was.
    pub fn build(self) -> Result<Profile> {
        let _ = &self.specs;
        todo!("branch stats")
    }
}
