//! Latency histograms since start, per source and stage, for Prometheus: unlike the percentile windows of MQTT
//! health, their buckets add up across devices and over any range a query picks.

use super::{Metrics, PerStage, lock};

/// Upper bounds of the latency histogram buckets, in microseconds: 100 µs to 10 s in 1-2.5-5 steps, so that a
/// quantile is read within a factor of 2.5 from a board's millisecond models to a slow first inference. Fixed, so
/// that histograms aggregate across a fleet.
pub const LATENCY_BUCKETS_US: [u32; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];

/// A source's latency histograms, as taken for one health report.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceLatency {
    pub source: String,
    pub stages: PerStage<LatencyHistogram>,
}

/// Samples counted since start into the fixed [`LATENCY_BUCKETS_US`], plus one bucket above the last bound.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyHistogram {
    /// Samples per bucket, not cumulative: `counts[i]` holds those at most `LATENCY_BUCKETS_US[i]` and above the
    /// bound before it.
    counts: [u64; LATENCY_BUCKETS_US.len() + 1],
    sum_us: u64,
}

impl LatencyHistogram {
    pub(super) fn observe(&mut self, sample_us: u32) {
        let bucket = LATENCY_BUCKETS_US.partition_point(|&bound| bound < sample_us);
        self.counts[bucket] += 1;
        self.sum_us = self.sum_us.saturating_add(u64::from(sample_us));
    }

    /// Each bucket's upper bound in microseconds (`None`: above the last bound) and its own count.
    pub fn buckets(&self) -> impl Iterator<Item = (Option<u32>, u64)> + '_ {
        LATENCY_BUCKETS_US.iter().map(|&bound| Some(bound)).chain([None]).zip(self.counts.iter().copied())
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn sum_us(&self) -> u64 {
        self.sum_us
    }
}

impl<T> PerStage<T> {
    /// Each stage by the name it is labelled with, in pipeline order, then the total.
    pub fn named(&self) -> [(&'static str, &T); 5] {
        [
            ("decode", &self.decode),
            ("preprocess", &self.preprocess),
            ("inference", &self.inference),
            ("postprocess", &self.postprocess),
            ("total", &self.total),
        ]
    }
}

impl Metrics {
    /// Every source's latency histograms since start, in registration order.
    pub fn latency_histograms(&self) -> Vec<SourceLatency> {
        lock(&self.sources)
            .iter()
            .map(|stats| SourceLatency { source: stats.name.clone(), stages: lock(&stats.latency).histograms.clone() })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::StageTimings;

    #[test]
    fn samples_fall_in_the_first_bucket_whose_bound_holds_them() {
        let mut histogram = LatencyHistogram::default();
        for sample in [0, 100, 101, 250, 9_999_999, 10_000_000, 10_000_001, u32::MAX] {
            histogram.observe(sample);
        }
        let counts: Vec<(Option<u32>, u64)> = histogram.buckets().filter(|&(_, count)| count > 0).collect();
        assert_eq!(counts, [(Some(100), 2), (Some(250), 2), (Some(10_000_000), 2), (None, 2)]);
        assert_eq!(histogram.count(), 8);
        let sum = [0u64, 100, 101, 250, 9_999_999, 10_000_000, 10_000_001, u64::from(u32::MAX)].iter().sum::<u64>();
        assert_eq!(histogram.sum_us(), sum);
        assert_eq!(histogram.buckets().count(), LATENCY_BUCKETS_US.len() + 1);
    }

    #[test]
    fn every_stage_is_counted_since_start_beside_the_windows() {
        let metrics = Metrics::new();
        let front = metrics.register("front");
        metrics.register("back");
        for _ in 0..3000 {
            front.frame_ok(&StageTimings {
                decode_us: 50,
                preprocess_us: 300,
                inference_us: 4_000,
                postprocess_us: 20,
            });
        }
        let latency = metrics.latency_histograms();
        assert_eq!(latency.iter().map(|source| source.source.as_str()).collect::<Vec<_>>(), ["front", "back"]);
        let stages = &latency[0].stages;
        // Since start, not over the 1024-sample window.
        let counted: Vec<(&str, u64)> = stages.named().iter().map(|&(stage, h)| (stage, h.count())).collect();
        assert_eq!(
            counted,
            [("decode", 3000), ("preprocess", 3000), ("inference", 3000), ("postprocess", 3000), ("total", 3000)]
        );
        let bound_of =
            |histogram: &LatencyHistogram| histogram.buckets().find(|&(_, count)| count > 0).map(|(bound, _)| bound);
        assert_eq!(bound_of(&stages.decode), Some(Some(100)));
        assert_eq!(bound_of(&stages.preprocess), Some(Some(500)));
        assert_eq!(bound_of(&stages.inference), Some(Some(5_000)));
        assert_eq!(bound_of(&stages.total), Some(Some(5_000)));
        assert_eq!(stages.total.sum_us(), 3000 * 4_370);
        assert_eq!(latency[1].stages, PerStage::default());
    }
}
