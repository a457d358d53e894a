//! Classification: a softmax when the scores are not probabilities yet, then the `top_k` best classes.

use super::nms::best_first;
use super::shape::{self, output_error};
use super::{class_index, label_for};
use crate::error::Result;
use crate::manifest::{ClassificationSpec, SoftmaxMode};
use crate::tensor::{OutputTensor, Outputs};
use protocol::{ClassScore, Output};

/// How far from 1 the sum of scores may be for [`SoftmaxMode::Auto`] to take them as a distribution already.
const DISTRIBUTION_TOLERANCE: f32 = 1e-3;

/// Turns logits into probabilities in place. The maximum is subtracted first so that large logits do not
/// overflow `exp`; the result is the same mathematically.
pub fn softmax(values: &mut [f32]) {
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for value in values.iter_mut() {
        *value = (*value - max).exp();
        sum += *value;
    }
    // The maximum contributes exp(0) = 1, so sum >= 1 unless a value was NaN or infinite (then NaN throughout,
    // which the decoder reports).
    for value in values.iter_mut() {
        *value /= sum;
    }
}

/// True when `values` already look like a probability distribution: all within 0..=1, summing to 1 (±1e-3).
pub fn is_distribution(values: &[f32]) -> bool {
    values.iter().all(|v| (0.0..=1.0).contains(v)) && (values.iter().sum::<f32>() - 1.0).abs() <= DISTRIBUTION_TOLERANCE
}

/// Applies the softmax `mode` to `values` in place.
pub fn apply_softmax(mode: SoftmaxMode, values: &mut [f32]) {
    let needed = match mode {
        SoftmaxMode::Always => true,
        SoftmaxMode::Never => false,
        SoftmaxMode::Auto => !is_distribution(values),
    };
    if needed {
        softmax(values);
    }
}

/// Fills `order` with the indices of the `k` highest scores (all of them if fewer), best first, ties broken by
/// lower index. Selects before sorting, so the cost is O(n + k log k); `order` is the caller's buffer.
pub fn top_k(scores: &[f32], k: usize, order: &mut Vec<usize>) {
    order.clear();
    let k = k.min(scores.len());
    if k == 0 {
        return;
    }
    order.extend(0..scores.len());
    let rank = best_first(|i| scores[i]);
    if k < order.len() {
        order.select_nth_unstable_by(k - 1, &rank);
        order.truncate(k);
    }
    order.sort_unstable_by(&rank);
}

/// Decodes a classifier's output with reusable buffers.
#[derive(Debug)]
pub(super) struct ClassificationDecoder {
    spec: ClassificationSpec,
    probabilities: Vec<f32>,
    order: Vec<usize>,
}

impl ClassificationDecoder {
    pub(super) fn new(spec: &ClassificationSpec) -> Self {
        ClassificationDecoder { spec: spec.clone(), probabilities: Vec::new(), order: Vec::new() }
    }

    pub(super) fn decode(&mut self, outputs: &Outputs, labels: &[String]) -> Result<Output> {
        let tensor = outputs.get(&self.spec.tensor)?;
        check_scores_shape(tensor)?;
        self.probabilities.clear();
        self.probabilities.extend_from_slice(tensor.data());
        apply_softmax(self.spec.softmax, &mut self.probabilities);
        if self.probabilities.iter().any(|p| p.is_nan()) {
            return Err(output_error(tensor.name(), "class scores are NaN (NaN or infinite values in the output)"));
        }
        top_k(&self.probabilities, self.spec.top_k, &mut self.order);
        // Allocated at its final size: collecting `Result`s would grow it.
        let mut classes = Vec::with_capacity(self.order.len());
        for &index in &self.order {
            classes.push(ClassScore {
                index: class_index(tensor.name(), index)?,
                label: label_for(labels, index),
                score: self.probabilities[index],
            });
        }
        Ok(Output::Classification { classes })
    }
}

/// Scores come as `[N]` or `[1, N]`, with at least one class.
fn check_scores_shape(tensor: &OutputTensor) -> Result<()> {
    const EXPECTED: &str = "[N] or [1, N]";
    let classes = match tensor.shape().len() {
        1 => shape::dims::<1>(tensor, EXPECTED)?[0],
        2 => match shape::dims::<2>(tensor, EXPECTED)? {
            [1, classes] => classes,
            _ => return Err(shape::shape_error(tensor, EXPECTED)),
        },
        _ => return Err(shape::shape_error(tensor, EXPECTED)),
    };
    if classes == 0 {
        return Err(shape::shape_error(tensor, "with at least one class"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_the_order() {
        let mut values = [1.0, 3.0, 2.0, -1.0];
        softmax(&mut values);
        assert!(close(values.iter().sum(), 1.0), "{values:?}");
        assert!(values[1] > values[2] && values[2] > values[0] && values[0] > values[3], "{values:?}");
        let e = [1.0f32.exp(), 3.0f32.exp(), 2.0f32.exp(), (-1.0f32).exp()];
        let total: f32 = e.iter().sum();
        for (got, want) in values.iter().zip(e) {
            assert!(close(*got, want / total), "{got} vs {}", want / total);
        }
    }

    #[test]
    fn softmax_is_stable_with_large_logits() {
        let mut values = [1000.0, 1001.0];
        softmax(&mut values);
        assert!(values.iter().all(|v| v.is_finite()), "{values:?}");
        let expected_high = 1.0 / (1.0 + (-1.0f32).exp()); // 0.7310586
        assert!(close(values[1], expected_high), "{values:?}");
        assert!(close(values[0], 1.0 - expected_high), "{values:?}");
    }

    #[test]
    fn auto_leaves_a_distribution_alone_and_softmaxes_logits() {
        let mut distribution = [0.1, 0.6, 0.3];
        apply_softmax(SoftmaxMode::Auto, &mut distribution);
        assert_eq!(distribution, [0.1, 0.6, 0.3]);

        // Within 0..=1 but not summing to 1: logits after all.
        let mut logits = [0.1, 0.2, 0.3];
        apply_softmax(SoftmaxMode::Auto, &mut logits);
        assert!(close(logits.iter().sum(), 1.0), "{logits:?}");
        assert!(logits[0] > 0.3 && logits[2] < 0.37, "{logits:?}");

        let mut negative = [-1.0, 2.0];
        apply_softmax(SoftmaxMode::Auto, &mut negative);
        assert!(close(negative.iter().sum(), 1.0), "{negative:?}");

        let mut never = [5.0, 6.0];
        apply_softmax(SoftmaxMode::Never, &mut never);
        assert_eq!(never, [5.0, 6.0]);
        let mut always = [0.1, 0.6, 0.3];
        apply_softmax(SoftmaxMode::Always, &mut always);
        assert!(!close(always[1], 0.6), "{always:?}");
    }

    #[test]
    fn top_k_hand_case_with_ties() {
        let mut order = Vec::new();
        top_k(&[0.2, 0.5, 0.5, 0.1, 0.5], 2, &mut order);
        assert_eq!(order, vec![1, 2]);
        top_k(&[0.2, 0.5, 0.5, 0.1, 0.5], 10, &mut order);
        assert_eq!(order, vec![1, 2, 4, 0, 3]);
        top_k(&[0.2, 0.5], 0, &mut order);
        assert!(order.is_empty());
    }

    proptest! {
        #[test]
        fn top_k_matches_a_full_sort(
            scores in proptest::collection::vec(
                prop_oneof![(-3i8..4).prop_map(f32::from), -100.0f32..100.0], 0..60),
            k in 0usize..70,
        ) {
            let mut reference: Vec<usize> = (0..scores.len()).collect();
            reference.sort_by(|&a, &b| scores[b].partial_cmp(&scores[a]).unwrap()); // stable: lower index first
            reference.truncate(k);
            let mut order = vec![99; 3]; // stale content must not leak through
            top_k(&scores, k, &mut order);
            prop_assert_eq!(order, reference);
        }
    }

    fn outputs(shape: &[i64], data: &[f32]) -> Outputs {
        Outputs { tensors: vec![OutputTensor::new("logits".to_owned(), shape.to_vec(), data.to_vec())] }
    }

    fn decoder(softmax: SoftmaxMode, top_k: usize) -> ClassificationDecoder {
        ClassificationDecoder::new(&ClassificationSpec { tensor: "logits".to_owned(), softmax, top_k })
    }

    #[test]
    fn decodes_n_and_1_by_n_with_labels_and_index_fallback() {
        let labels = vec!["cat".to_owned(), "dog".to_owned()];
        let mut decoder = decoder(SoftmaxMode::Never, 2);
        for shape in [&[3i64][..], &[1, 3]] {
            let output = decoder.decode(&outputs(shape, &[0.1, 0.3, 0.6]), &labels).unwrap();
            let Output::Classification { classes } = output else { panic!("classification expected") };
            assert_eq!(
                classes,
                vec![
                    ClassScore { index: 2, label: "2".to_owned(), score: 0.6 },
                    ClassScore { index: 1, label: "dog".to_owned(), score: 0.3 },
                ]
            );
        }
    }

    #[test]
    fn refuses_bad_shapes_and_nan() {
        let mut decoder = decoder(SoftmaxMode::Auto, 5);
        for (shape, data) in [(&[2i64, 3][..], &[0.0; 6][..]), (&[1, 1, 3], &[0.0; 3]), (&[0], &[])] {
            let err = decoder.decode(&outputs(shape, data), &[]).unwrap_err().to_string();
            assert!(err.contains("output logits: expected shape"), "{err}");
            assert!(err.contains(&format!("got {shape:?}")), "{err}");
        }
        let err = decoder.decode(&outputs(&[3], &[0.0, f32::NAN, 1.0]), &[]).unwrap_err().to_string();
        assert!(err.contains("NaN"), "{err}");
        let err = decoder.decode(&outputs(&[3], &[0.0, 1.0]), &[]).unwrap_err().to_string();
        assert!(err.contains("does not hold 2 values"), "{err}");
        assert!(decoder.decode(&Outputs::default(), &[]).is_err());
    }
}
