//! A window's drift statistics judged against the thresholds: each feature's [`FeatureDrift`] for the
//! reports, and its [`Reading`] for the alerts.
//!
//! A feature's window is drifted when its PSI reaches `psi_warn` (severity `warn`; `alert` from `psi_alert`),
//! when its KS p-value falls below `ks_p_value / m` or when its Jensen-Shannon distance reaches `js_alert`
//! (both `warn`: they say the distribution moved, PSI says by how much). `m` is the number of continuous
//! features of the model: the Bonferroni correction keeps the chance of any false KS alarm per window at
//! `ks_p_value` however many features are tested.
//!
//! PSI has a noise floor: over a window of `n` inputs against a reference of `N`, in `B` bins, sampling alone
//! gives PSI of about `(B - 1)(1/n + 1/N)` (0.06 for 10 bins, a window of 200 and a reference of 350), and a
//! many-class predicted class far more. A PSI band counts only from [`psi_noise_quantile`] at the same
//! family-wise level (`ks_p_value` over all the features), so an unchanged stream does not cross 0.1 by chance.

use super::alerts::Reading;
use protocol::wire::{AlertKind, FeatureDrift, FeatureSide, Severity};
use runtime::monitor::{FeatureKind, FeatureSpec, FeatureStats, Profile, psi_noise_quantile};

/// The drift thresholds of one source (`[[monitors]]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriftThresholds {
    pub psi_warn: f64,
    pub psi_alert: f64,
    /// Family-wise, before the Bonferroni correction.
    pub ks_p_value: f64,
    pub js_alert: f64,
}

/// One window judged.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub features: Vec<FeatureDrift>,
    pub readings: Vec<Reading>,
    /// The largest PSI of an output feature, for probation; `None` without output features.
    pub output_psi: Option<f64>,
}

impl DriftThresholds {
    /// The KS threshold each feature is tested at: `ks_p_value / m`.
    pub fn ks_threshold(&self, specs: &[FeatureSpec]) -> f64 {
        let continuous = specs.iter().filter(|spec| spec.kind == FeatureKind::Continuous).count();
        self.ks_p_value / continuous.max(1) as f64
    }

    /// Judges `stats` (one per feature, in `specs` and `profile` order) of a window of `window` inputs.
    pub fn judge(&self, specs: &[FeatureSpec], profile: &Profile, stats: &[FeatureStats], window: usize) -> Judged {
        let ks_threshold = self.ks_threshold(specs);
        let noise_level = self.ks_p_value / specs.len().max(1) as f64;
        let mut judged = Judged { features: Vec::new(), readings: Vec::new(), output_psi: None };
        for ((spec, reference), stats) in specs.iter().zip(&profile.features).zip(stats) {
            let psi_floor = psi_noise_quantile(reference.proportions.len(), window, profile.size, noise_level);
            let reading = self.reading(&spec.name, stats, ks_threshold, psi_floor);
            let reference_mean = match reference.kind {
                FeatureKind::Continuous => reference.mean,
                FeatureKind::Categorical { .. } => most_frequent(&reference.proportions),
            };
            judged.features.push(FeatureDrift {
                feature: spec.name.clone(),
                side: spec.side,
                psi: Some(stats.psi as f32),
                ks_statistic: stats.ks.map(|ks| ks.statistic as f32),
                ks_p_value: stats.ks.map(|ks| ks.p_value as f32),
                js_distance: stats.js_distance.map(|js| js as f32),
                window_mean: stats.mean as f32,
                reference_mean: reference_mean as f32,
                drifted: reading.bad.is_some(),
            });
            if spec.side == FeatureSide::Output {
                judged.output_psi = Some(judged.output_psi.map_or(stats.psi, |max: f64| max.max(stats.psi)));
            }
            judged.readings.push(reading);
        }
        judged
    }

    /// The statistic that makes the window bad, the worst first; PSI against `psi_warn` when none does. The PSI
    /// bands start at `psi_floor` at the least (the alert's threshold says so).
    fn reading(&self, feature: &str, stats: &FeatureStats, ks_threshold: f64, psi_floor: f64) -> Reading {
        let reading = |statistic, value: f64, threshold: f64, bad| Reading {
            kind: AlertKind::Drift,
            subject: feature.to_owned(),
            statistic,
            value: value as f32,
            threshold: threshold as f32,
            bad,
        };
        let (psi_alert, psi_warn) = (self.psi_alert.max(psi_floor), self.psi_warn.max(psi_floor));
        if stats.psi >= psi_alert {
            return reading("psi", stats.psi, psi_alert, Some(Severity::Alert));
        }
        if stats.psi >= psi_warn {
            return reading("psi", stats.psi, psi_warn, Some(Severity::Warn));
        }
        if let Some(ks) = stats.ks.filter(|ks| ks.p_value < ks_threshold) {
            return reading("ks_p_value", ks.p_value, ks_threshold, Some(Severity::Warn));
        }
        if let Some(js) = stats.js_distance.filter(|js| *js >= self.js_alert) {
            return reading("js_distance", js, self.js_alert, Some(Severity::Warn));
        }
        reading("psi", stats.psi, psi_warn, None)
    }
}

/// The index of the largest share (the first of equals).
fn most_frequent(proportions: &[f64]) -> f64 {
    let mut best = 0;
    for (index, share) in proportions.iter().enumerate() {
        if *share > proportions[best] {
            best = index;
        }
    }
    best as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::monitor::{FeatureProfile, KsTest};

    /// A window large enough for PSI's noise floor to sit below the bands.
    const LARGE_WINDOW: usize = 100_000;

    const THRESHOLDS: DriftThresholds =
        DriftThresholds { psi_warn: 0.1, psi_alert: 0.25, ks_p_value: 0.01, js_alert: 0.2 };

    fn spec(name: &str, kind: FeatureKind, side: FeatureSide) -> FeatureSpec {
        FeatureSpec { name: name.into(), kind, side }
    }

    fn specs() -> Vec<FeatureSpec> {
        vec![
            spec("acc_x.mean", FeatureKind::Continuous, FeatureSide::Input),
            spec("acc_y.mean", FeatureKind::Continuous, FeatureSide::Input),
            spec("top1_confidence", FeatureKind::Continuous, FeatureSide::Output),
            spec("predicted_class", FeatureKind::Categorical { categories: 3 }, FeatureSide::Output),
        ]
    }

    fn profile() -> Profile {
        let feature = |spec: &FeatureSpec, proportions: Vec<f64>| FeatureProfile {
            name: spec.name.clone(),
            kind: spec.kind,
            edges: Vec::new(),
            proportions,
            quantiles: Vec::new(),
            mean: 0.5,
            std: 1.0,
        };
        let specs = specs();
        Profile {
            version: 1,
            size: 1000,
            features: vec![
                feature(&specs[0], vec![0.5, 0.5]),
                feature(&specs[1], vec![0.5, 0.5]),
                feature(&specs[2], vec![0.5, 0.5]),
                feature(&specs[3], vec![0.2, 0.7, 0.1]),
            ],
        }
    }

    fn continuous(psi: f64, p_value: f64) -> FeatureStats {
        let ks = KsTest { statistic: 0.1, p_value, effective_n: 100.0 };
        FeatureStats { psi, ks: Some(ks), js_distance: None, mean: 1.5 }
    }

    fn categorical(psi: f64, js: f64) -> FeatureStats {
        FeatureStats { psi, ks: None, js_distance: Some(js), mean: 2.0 }
    }

    #[test]
    fn ks_is_tested_at_the_bonferroni_corrected_level() {
        assert_eq!(THRESHOLDS.ks_threshold(&specs()), 0.01 / 3.0);
        // p = 0.005 passes uncorrected but not at 0.0033.
        let judged = THRESHOLDS.judge(
            &specs(),
            &profile(),
            &[continuous(0.01, 0.005), continuous(0.01, 0.001), continuous(0.01, 0.9), categorical(0.01, 0.05)],
            LARGE_WINDOW,
        );
        assert_eq!(judged.readings[0].bad, None);
        let ks = &judged.readings[1];
        assert_eq!((ks.statistic, ks.bad, ks.value), ("ks_p_value", Some(Severity::Warn), 0.001));
        assert_eq!(ks.threshold, (0.01f64 / 3.0) as f32);
        assert!(!judged.features[0].drifted && judged.features[1].drifted);
    }

    #[test]
    fn psi_bands_set_the_severity_and_js_judges_categories() {
        let judged = THRESHOLDS.judge(
            &specs(),
            &profile(),
            &[continuous(0.3, 0.5), continuous(0.15, 0.5), continuous(0.05, 0.5), categorical(0.05, 0.25)],
            LARGE_WINDOW,
        );
        let bands: Vec<_> = judged.readings.iter().map(|r| (r.statistic, r.bad, r.threshold)).collect();
        assert_eq!(
            bands,
            [
                ("psi", Some(Severity::Alert), 0.25),
                ("psi", Some(Severity::Warn), 0.1),
                ("psi", None, 0.1),
                ("js_distance", Some(Severity::Warn), 0.2),
            ]
        );
        let class = &judged.features[3];
        assert_eq!((class.js_distance, class.ks_p_value, class.reference_mean), (Some(0.25), None, 1.0));
        assert_eq!(judged.features[0].ks_p_value, Some(0.5));
        assert_eq!((judged.features[0].window_mean, judged.features[0].reference_mean), (1.5, 0.5));
        assert_eq!(judged.output_psi, Some(0.05));
    }

    #[test]
    fn a_psi_that_sampling_noise_explains_is_not_drift() {
        let stats = [continuous(0.15, 0.5), continuous(0.3, 0.5), continuous(0.05, 0.5), categorical(0.05, 0.05)];
        // Ten inputs against a reference of 1000: PSI's noise floor is far above both bands.
        let small = THRESHOLDS.judge(&specs(), &profile(), &stats, 10);
        let floor = small.readings[0].threshold;
        assert!(floor > 0.3, "{floor}");
        assert!(small.readings.iter().all(|reading| reading.bad.is_none()), "{:?}", small.readings);
        // The same PSIs over a large window are drift.
        let large = THRESHOLDS.judge(&specs(), &profile(), &stats, LARGE_WINDOW);
        assert_eq!((large.readings[0].bad, large.readings[1].bad), (Some(Severity::Warn), Some(Severity::Alert)));
    }
}
