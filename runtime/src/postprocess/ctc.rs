//! CTC text recognition (PaddleOCR's recognisers): `[1, steps, classes]` probabilities, class 0 the blank,
//! class `i` the label `i - 1`, and with `use_space_char` the last class a space. Greedy decoding as PaddleOCR's
//! `CTCLabelDecode` does it: the best class per step, repeats collapsed, blanks dropped; the score is the mean
//! best probability of the steps kept (0 when none is).

use super::shape;
use crate::error::Result;
use crate::manifest::CtcSpec;
use crate::tensor::Outputs;
use protocol::Output;

const EXPECTED: &str = "[1, steps, classes]";

/// The blank class.
const BLANK: usize = 0;

/// Decodes a CTC head into [`Output::Text`].
pub(super) fn decode(spec: &CtcSpec, outputs: &Outputs, labels: &[String]) -> Result<Output> {
    let tensor = outputs.get(&spec.tensor)?;
    let classes = match shape::dims::<3>(tensor, EXPECTED)? {
        [1, _, classes] if classes > 0 => classes,
        _ => return Err(shape::shape_error(tensor, EXPECTED)),
    };
    let space = spec.use_space_char.then_some(classes - 1);
    let mut text = String::new();
    let (mut kept, mut probability_sum) = (0usize, 0.0f64);
    let mut previous = None;
    for step in tensor.data().chunks_exact(classes) {
        let (best, probability) = best_class(step);
        if best != BLANK && previous != Some(best) {
            let character = if Some(best) == space { Some(" ") } else { labels.get(best - 1).map(String::as_str) };
            let Some(character) = character else {
                let reason = format!("class {best} has no label ({} labels)", labels.len());
                return Err(shape::output_error(tensor.name(), reason));
            };
            text.push_str(character);
            kept += 1;
            probability_sum += f64::from(probability);
        }
        previous = Some(best);
    }
    let score = if kept == 0 { 0.0 } else { (probability_sum / kept as f64) as f32 };
    Ok(Output::Text { text, score })
}

/// The first class with the highest probability (numpy's argmax) and that probability.
fn best_class(step: &[f32]) -> (usize, f32) {
    step.iter().enumerate().fold((0, f32::NEG_INFINITY), |best, (class, &p)| if p > best.1 { (class, p) } else { best })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::OutputTensor;

    fn outputs(steps: &[[f32; 4]]) -> Outputs {
        let data = steps.iter().flatten().copied().collect();
        Outputs { tensors: vec![OutputTensor::new("probs", vec![1, steps.len() as i64, 4], data)] }
    }

    fn spec(use_space_char: bool) -> CtcSpec {
        CtcSpec { tensor: "probs".to_owned(), use_space_char }
    }

    fn labels() -> Vec<String> {
        vec!["a".to_owned(), "b".to_owned()]
    }

    #[test]
    fn collapses_repeats_drops_blanks_and_averages_the_kept_probabilities() {
        // Classes: blank, "a", "b", space. "a a _ a b _ b" reads "aab": the blank separates the two a's.
        let steps = [
            [0.1, 0.8, 0.05, 0.05],
            [0.1, 0.6, 0.2, 0.1],
            [0.9, 0.05, 0.05, 0.0],
            [0.2, 0.7, 0.1, 0.0],
            [0.1, 0.1, 0.5, 0.3],
            [0.1, 0.1, 0.7, 0.1],
            [0.1, 0.1, 0.2, 0.6],
        ];
        let Output::Text { text, score } = decode(&spec(true), &outputs(&steps), &labels()).unwrap() else {
            panic!("text expected")
        };
        assert_eq!(text, "aab ");
        // Kept steps: 0 (a, 0.8), 3 (a, 0.7), 4 (b, 0.5), 6 (space, 0.6).
        assert!((score - (0.8 + 0.7 + 0.5 + 0.6) / 4.0).abs() < 1e-6, "{score}");
    }

    #[test]
    fn all_blanks_read_empty_with_score_zero() {
        let steps = [[0.9, 0.05, 0.05, 0.0]; 3];
        assert_eq!(
            decode(&spec(true), &outputs(&steps), &labels()).unwrap(),
            Output::Text { text: String::new(), score: 0.0 }
        );
    }

    #[test]
    fn a_class_without_label_is_an_error_naming_the_tensor() {
        // Without the space class, class 3 has no label among two.
        let steps = [[0.0, 0.0, 0.0, 1.0]];
        let err = decode(&spec(false), &outputs(&steps), &labels()).unwrap_err().to_string();
        assert!(err.contains("probs") && err.contains("class 3 has no label"), "{err}");
        let wrong_rank = Outputs { tensors: vec![OutputTensor::new("probs", vec![4], vec![0.0; 4])] };
        assert!(decode(&spec(true), &wrong_rank, &labels()).unwrap_err().to_string().contains(EXPECTED));
    }
}
