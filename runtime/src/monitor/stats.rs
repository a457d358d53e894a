//! Drift statistics. Checked against scipy/numpy values stored as fixtures (`tests/fixtures/drift.json`).

/// The share substituted for an empty bin (on either side) in [`psi`], so that the index stays finite.
pub const PSI_EPSILON: f64 = 1e-4;

/// A two-sample Kolmogorov-Smirnov test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KsTest {
    /// The largest distance between the two empirical distribution functions.
    pub statistic: f64,
    /// The asymptotic p-value, Kolmogorov's distribution at `sqrt(effective_n) * statistic`.
    pub p_value: f64,
    /// `m * n / (m + n)`.
    pub effective_n: f64,
}

/// Population Stability Index of `counts` (the window's count per bin) against the reference `proportions`.
pub fn psi(proportions: &[f64], counts: &[u64]) -> f64 {
    let _ = (proportions, counts);
    todo!("branch stats")
}

/// Two-sample KS test of two ascending samples.
pub fn ks_two_sample(a: &[f64], b: &[f64]) -> KsTest {
    let _ = (a, b);
    todo!("branch stats")
}

/// KS test of an ascending `window` against a reference of `reference_size` values described by its
/// `quantiles` (evenly spaced probabilities 0..=1, distribution function interpolated linearly between them).
pub fn ks_against_reference(quantiles: &[f64], reference_size: u64, window: &[f64]) -> KsTest {
    let _ = (quantiles, reference_size, window);
    todo!("branch stats")
}

/// The survival function of Kolmogorov's distribution, `P(K > x)`.
pub fn kolmogorov_sf(x: f64) -> f64 {
    let _ = x;
    todo!("branch stats")
}

/// Jensen-Shannon distance (base 2, 0..=1) between two distributions given as counts or shares.
pub fn js_distance(p: &[f64], q: &[f64]) -> f64 {
    let _ = (p, q);
    todo!("branch stats")
}
