//! Model monitoring primitives: the features the agent watches, the reference profile a bundle carries, the
//! drift statistics (PSI, Kolmogorov-Smirnov, Jensen-Shannon) and a fixed-size window of recent features.
//! Pure computation: the agent's monitor thread decides when to evaluate and what to alert on.

mod features;
mod profile;
mod stats;
mod window;

#[cfg(test)]
mod test_support;

pub use features::{FeatureExtractor, FeatureKind, FeatureSpec};
pub use profile::{FeatureProfile, PROFILE_FILE, Profile, ProfileBuilder};
pub use stats::{
    KsTest, PSI_EPSILON, js_distance, kolmogorov_sf, ks_against_reference, ks_two_sample, psi, psi_noise_quantile,
};
pub use window::{DriftWindow, FeatureStats};
