//! Drift statistics. Checked against scipy/numpy values stored as fixtures (`tests/fixtures/drift.json`,
//! written by `models/scripts/make_drift_fixtures.py`).

/// The share substituted for an empty bin (on either side) in [`psi`], so that the index stays finite. Shares
/// are not renormalised afterwards. At 1e-4 one bin that the reference never saw but a window of 100 fills
/// with 1 % adds `(0.01 - 1e-4) ln(0.01 / 1e-4) = 0.046` to the index: noticeable, below the 0.1 warning.
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

impl KsTest {
    fn new(statistic: f64, m: f64, n: f64) -> KsTest {
        let effective_n = if m + n > 0.0 { m * n / (m + n) } else { 0.0 };
        KsTest { statistic, p_value: kolmogorov_sf(effective_n.sqrt() * statistic), effective_n }
    }
}

/// Population Stability Index of `counts` (the window's count per bin) against the reference `proportions`:
/// `sum((a - e) ln(a / e))` over the bins, `a` the window's share and `e` the reference's, either replaced by
/// [`PSI_EPSILON`] where it is 0. An empty window gives 0 (nothing to compare).
pub fn psi(proportions: &[f64], counts: &[u64]) -> f64 {
    debug_assert_eq!(proportions.len(), counts.len());
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let nonzero = |share: f64| if share > 0.0 { share } else { PSI_EPSILON };
    proportions
        .iter()
        .zip(counts)
        .map(|(&expected, &count)| {
            let (actual, expected) = (nonzero(count as f64 / total as f64), nonzero(expected));
            (actual - expected) * (actual / expected).ln()
        })
        .sum()
}

/// The PSI that sampling noise alone exceeds with probability `alpha` when a window of `window` inputs and a
/// reference of `reference` inputs come from one distribution binned into `bins` bins: under that hypothesis PSI
/// is approximately `(1/window + 1/reference)` times a chi-square variable with `bins - 1` degrees of freedom
/// (Yurdakul 2018), whose upper-`alpha` quantile is taken with the Wilson-Hilferty approximation (within 1 % of
/// the exact quantile for the bin counts profiles have). A window's PSI below this is no evidence of drift,
/// whatever the band thresholds say: small windows and many bins make PSI noisy.
pub fn psi_noise_quantile(bins: usize, window: usize, reference: u64, alpha: f64) -> f64 {
    if bins < 2 || window == 0 || reference == 0 {
        return 0.0;
    }
    let degrees = (bins - 1) as f64;
    let spread = (2.0 / (9.0 * degrees)).sqrt();
    let cube = (1.0 - 2.0 / (9.0 * degrees) + upper_normal_quantile(alpha) * spread).max(0.0);
    let chi_square = degrees * cube.powi(3);
    chi_square * (1.0 / window as f64 + 1.0 / reference as f64)
}

/// `z` with `P(Z > z) = p` for a standard normal `Z`, `0 < p <= 0.5` (Abramowitz and Stegun 26.2.23, absolute
/// error below 4.5e-4); `p` is clamped into that range.
fn upper_normal_quantile(p: f64) -> f64 {
    let p = p.clamp(1e-300, 0.5);
    let t = (-2.0 * p.ln()).sqrt();
    t - (2.515_517 + 0.802_853 * t + 0.010_328 * t * t)
        / (1.0 + 1.432_788 * t + 0.189_269 * t * t + 0.001_308 * t.powi(3))
}

/// Two-sample KS test of two ascending samples: the exact statistic `D` and the asymptotic p-value
/// `kolmogorov_sf(sqrt(m n / (m + n)) D)` (what `scipy.special.kolmogorov` gives), without a small-sample
/// correction, so for tiny samples it is conservative. An empty sample gives `D = 0`, p-value 1.
pub fn ks_two_sample(a: &[f64], b: &[f64]) -> KsTest {
    let (m, n) = (a.len(), b.len());
    let mut statistic = 0.0f64;
    if m > 0 && n > 0 {
        let (mut i, mut j) = (0, 0);
        // Step through the distinct values of both samples; ties move both distribution functions at once.
        while i < m && j < n {
            let x = a[i].min(b[j]);
            while i < m && a[i] <= x {
                i += 1;
            }
            while j < n && b[j] <= x {
                j += 1;
            }
            statistic = statistic.max((i as f64 / m as f64 - j as f64 / n as f64).abs());
        }
        // Once one sample is used up its distribution function is 1; the other's only approaches it.
        statistic = statistic.max((i as f64 / m as f64 - j as f64 / n as f64).abs());
    }
    KsTest::new(statistic, m as f64, n as f64)
}

/// KS test of an ascending `window` against a reference of `reference_size` values described by its
/// `quantiles` (evenly spaced probabilities 0..=1, distribution function interpolated linearly between them;
/// 0 below the first, 1 from the last, a jump where quantiles repeat). The p-value uses the effective size
/// `m n / (m + n)` with `n = reference_size`. An empty window or reference gives `D = 0`, p-value 1.
pub fn ks_against_reference(quantiles: &[f64], reference_size: u64, window: &[f64]) -> KsTest {
    let m = window.len();
    let mut statistic = 0.0f64;
    if m > 0 && quantiles.len() >= 2 && reference_size > 0 {
        // The window's distribution function steps up at each value, the reference's is non-decreasing, so the
        // largest gap is at a window value: just after it (`i / m` above `F(x)`) or just before (`F(x-)` above
        // `(i - 1) / m`).
        for (index, &x) in window.iter().enumerate() {
            let above = (index + 1) as f64 / m as f64 - reference_cdf(quantiles, x, false);
            let below = reference_cdf(quantiles, x, true) - index as f64 / m as f64;
            statistic = statistic.max(above).max(below);
        }
    }
    KsTest::new(statistic, m as f64, reference_size as f64)
}

/// The reference's distribution function at `x` (or its limit from the left), linear between the quantiles.
fn reference_cdf(quantiles: &[f64], x: f64, left_limit: bool) -> f64 {
    let step = 1.0 / (quantiles.len() - 1) as f64;
    // The quantiles at or below `x` (strictly below for the left limit); the last of them starts x's segment.
    let count = if left_limit { quantiles.partition_point(|&q| q < x) } else { quantiles.partition_point(|&q| q <= x) };
    match count {
        0 => 0.0,
        n if n == quantiles.len() => 1.0,
        n => {
            let (low, high) = (quantiles[n - 1], quantiles[n]);
            // `low <= x <= high` and `low < high` (a repeated quantile would have been counted).
            (n - 1) as f64 * step + (x - low) / (high - low) * step
        }
    }
}

/// The survival function of Kolmogorov's distribution, `P(K > x)`, as `scipy.special.kolmogorov` computes it:
/// `2 sum (-1)^(k-1) exp(-2 k^2 x^2)` for large `x`, one minus the theta-function series of the distribution
/// function `sqrt(2 pi) / x sum exp(-(2k-1)^2 pi^2 / (8 x^2))` for small `x`, where each converges in a few
/// terms. 1 at and below 0, NaN for NaN.
pub fn kolmogorov_sf(x: f64) -> f64 {
    // Where both series need few terms and neither loses precision (cephes' `KOLMOG_CUTOVER`).
    const CUTOVER: f64 = 0.82;
    if x.is_nan() {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 1.0;
    }
    if x < CUTOVER {
        let w = std::f64::consts::PI * std::f64::consts::PI / (8.0 * x * x);
        let mut sum = 0.0;
        for k in 1..=20u32 {
            let odd = f64::from(2 * k - 1);
            let term = (-odd * odd * w).exp();
            sum += term;
            if term <= sum * f64::EPSILON {
                break;
            }
        }
        1.0 - (2.0 * std::f64::consts::PI).sqrt() / x * sum
    } else {
        let mut sum = 0.0;
        for k in 1..=100u32 {
            let k = f64::from(k);
            let term = (-2.0 * k * k * x * x).exp();
            sum += if k % 2.0 == 1.0 { term } else { -term };
            if term <= sum.abs() * f64::EPSILON {
                break;
            }
        }
        (2.0 * sum).clamp(0.0, 1.0)
    }
}

/// Jensen-Shannon distance (base 2, 0..=1) between two distributions given as counts or shares, as
/// `scipy.spatial.distance.jensenshannon(p, q, base=2)`: both normalised to sum 1, then the square root of the
/// mean Kullback-Leibler divergence of each from their average. 0 when either side is all zero (an empty
/// window has no distribution to compare).
pub fn js_distance(p: &[f64], q: &[f64]) -> f64 {
    debug_assert_eq!(p.len(), q.len());
    let (p_total, q_total): (f64, f64) = (p.iter().sum(), q.iter().sum());
    if !(p_total > 0.0 && q_total > 0.0) {
        return 0.0;
    }
    let divergence = |share: f64, average: f64| if share > 0.0 { share * (share / average).ln() } else { 0.0 };
    let sum: f64 = p
        .iter()
        .zip(q)
        .map(|(&p, &q)| {
            let (p, q) = (p / p_total, q / q_total);
            let average = (p + q) / 2.0;
            divergence(p, average) + divergence(q, average)
        })
        .sum();
    (sum / 2.0 / std::f64::consts::LN_2).max(0.0).sqrt()
}

#[cfg(test)]
#[path = "stats_tests.rs"]
mod tests;
