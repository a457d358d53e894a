use super::*;
use crate::monitor::test_support::{fixture, number, numbers};

/// Statistics agree to 1e-9: both sides compute the same sums in double precision, in another order.
fn assert_close(name: &str, what: &str, ours: f64, theirs: f64) {
    assert!((ours - theirs).abs() <= 1e-9, "{name}: {what} is {ours}, scipy says {theirs}");
}

/// P-values agree to 1e-7 relative (and exactly where scipy gives 0 or 1): the series are the same, but the
/// statistic's last bits differ, and the p-value amplifies them by its slope, `sqrt(n)` times the density.
fn assert_p_close(name: &str, ours: f64, theirs: f64) {
    let tolerance = 1e-7 * theirs.abs().max(1e-300);
    assert!((ours - theirs).abs() <= tolerance, "{name}: p-value is {ours:e}, scipy says {theirs:e}");
}

#[test]
fn psi_matches_numpy_with_the_documented_epsilon() {
    for case in fixture("psi") {
        let name = case["name"].as_str().expect("name");
        let counts: Vec<u64> =
            case["counts"].as_array().expect("counts").iter().map(|c| c.as_u64().expect("count")).collect();
        assert_close(name, "psi", psi(&numbers(&case, "proportions"), &counts), number(&case, "psi"));
    }
}

#[test]
fn psi_of_an_empty_window_is_zero() {
    assert_eq!(psi(&[0.5, 0.5], &[0, 0]), 0.0);
}

#[test]
fn ks_two_sample_matches_scipy() {
    for case in fixture("ks_two_sample") {
        let name = case["name"].as_str().expect("name");
        let (a, b) = (numbers(&case, "a"), numbers(&case, "b"));
        let test = ks_two_sample(&a, &b);
        assert_close(name, "statistic", test.statistic, number(&case, "statistic"));
        assert_p_close(name, test.p_value, number(&case, "p_value"));
        let effective_n = (a.len() * b.len()) as f64 / (a.len() + b.len()) as f64;
        assert_close(name, "effective n", test.effective_n, effective_n);
        // The statistic is symmetric.
        assert_eq!(ks_two_sample(&b, &a).statistic, test.statistic, "{name}");
    }
}

#[test]
fn ks_against_reference_matches_scipy_kstest() {
    for case in fixture("ks_reference") {
        let name = case["name"].as_str().expect("name");
        let size = case["size"].as_u64().expect("size");
        let test = ks_against_reference(&numbers(&case, "quantiles"), size, &numbers(&case, "window"));
        assert_close(name, "statistic", test.statistic, number(&case, "statistic"));
        assert_p_close(name, test.p_value, number(&case, "p_value"));
    }
}

#[test]
fn ks_against_a_constant_reference_sees_any_other_value() {
    let constant = [3.0; 101];
    assert_eq!(ks_against_reference(&constant, 500, &[3.0, 3.0, 3.0]).statistic, 0.0);
    assert_eq!(ks_against_reference(&constant, 500, &[3.5, 3.5]).statistic, 1.0);
    assert_eq!(ks_against_reference(&constant, 500, &[2.5, 2.5]).statistic, 1.0);
    let half = ks_against_reference(&constant, 500, &[3.0, 4.0]);
    assert_eq!(half.statistic, 0.5);
    // A jump inside the grid: half the reference is 0, the other half spreads over 1..2.
    let mut quantiles = vec![0.0; 51];
    quantiles.extend((1..=50).map(|i| 1.0 + f64::from(i) / 50.0));
    let test = ks_against_reference(&quantiles, 1000, &[0.0, 0.0, 0.0, 0.0]);
    assert!((test.statistic - 0.5).abs() < 1e-12, "{test:?}");
}

#[test]
fn empty_samples_show_no_difference() {
    for test in [ks_two_sample(&[], &[1.0]), ks_two_sample(&[1.0], &[]), ks_against_reference(&[0.0, 1.0], 10, &[])] {
        assert_eq!((test.statistic, test.p_value), (0.0, 1.0));
    }
}

#[test]
fn kolmogorov_sf_matches_scipy_special_kolmogorov() {
    for case in fixture("kolmogorov") {
        let x = number(&case, "x");
        assert_p_close(&format!("x = {x}"), kolmogorov_sf(x), number(&case, "sf"));
    }
    assert_eq!(kolmogorov_sf(-1.0), 1.0);
    assert!(kolmogorov_sf(f64::NAN).is_nan());
}

#[test]
fn kolmogorov_sf_is_continuous_at_the_cutover_and_decreasing() {
    let below = kolmogorov_sf(0.82f64.next_down());
    let at = kolmogorov_sf(0.82);
    assert!((below - at).abs() < 1e-12, "{below} vs {at}");
    let values: Vec<f64> = (0..400).map(|i| kolmogorov_sf(f64::from(i) * 0.01)).collect();
    assert!(values.windows(2).all(|pair| pair[1] <= pair[0]), "{values:?}");
}

#[test]
fn js_distance_matches_scipy() {
    for case in fixture("js_distance") {
        let name = case["name"].as_str().expect("name");
        let distance = js_distance(&numbers(&case, "p"), &numbers(&case, "q"));
        assert_close(name, "distance", distance, number(&case, "distance"));
    }
    assert_eq!(js_distance(&[0.0, 0.0], &[1.0, 2.0]), 0.0);
}

/// Chi-square quantiles from scipy (`scipy.stats.chi2.ppf(1 - alpha, bins - 1)`), scaled by `1/n + 1/N`.
#[test]
fn the_psi_noise_quantile_is_the_scaled_chi_square_quantile() {
    for (bins, alpha, chi_square) in
        [(10, 0.01, 21.665_994), (10, 0.001, 27.877_165), (4, 0.05, 7.814_728), (100, 0.01, 134.641_617)]
    {
        let quantile = psi_noise_quantile(bins, 200, 800, alpha);
        let expected = chi_square * (1.0 / 200.0 + 1.0 / 800.0);
        assert!((quantile / expected - 1.0).abs() < 0.01, "{bins} bins at {alpha}: {quantile} against {expected}");
    }
    assert_eq!(psi_noise_quantile(1, 200, 800, 0.01), 0.0);
    assert_eq!(psi_noise_quantile(10, 0, 800, 0.01), 0.0);
    // More inputs, less noise.
    assert!(psi_noise_quantile(10, 2000, 800, 0.01) < psi_noise_quantile(10, 200, 800, 0.01));
}
