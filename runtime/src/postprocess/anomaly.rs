//! Anomaly: one score compared with the manifest's threshold.

use super::shape::{self, output_error};
use crate::error::Result;
use crate::manifest::AnomalySpec;
use crate::tensor::Outputs;
use protocol::Output;

/// Reads the single value of `spec.tensor` (any shape holding exactly one) and judges it against the threshold.
pub(super) fn decode(spec: &AnomalySpec, outputs: &Outputs) -> Result<Output> {
    let tensor = outputs.get(&spec.tensor)?;
    shape::element_count(tensor)?;
    let &[score] = tensor.data() else {
        return Err(shape::shape_error(tensor, "one value (such as [1] or [1, 1])"));
    };
    if score.is_nan() {
        return Err(output_error(tensor.name(), "the anomaly score is NaN"));
    }
    Ok(Output::Anomaly { score, threshold: spec.threshold, anomalous: score > spec.threshold })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::OutputTensor;

    fn outputs(shape: &[i64], data: &[f32]) -> Outputs {
        Outputs { tensors: vec![OutputTensor::new("score".to_owned(), shape.to_vec(), data.to_vec())] }
    }

    fn spec() -> AnomalySpec {
        AnomalySpec { tensor: "score".to_owned(), threshold: 0.5 }
    }

    #[test]
    fn judges_a_single_value_of_any_shape() {
        for shape in [&[][..], &[1], &[1, 1], &[1, 1, 1]] {
            assert_eq!(
                decode(&spec(), &outputs(shape, &[0.7])).unwrap(),
                Output::Anomaly { score: 0.7, threshold: 0.5, anomalous: true }
            );
        }
        // At the threshold is not above it.
        assert_eq!(
            decode(&spec(), &outputs(&[1], &[0.5])).unwrap(),
            Output::Anomaly { score: 0.5, threshold: 0.5, anomalous: false }
        );
    }

    #[test]
    fn refuses_more_or_fewer_values_nan_and_a_missing_tensor() {
        for (shape, data) in [(&[2i64][..], &[0.1, 0.2][..]), (&[1, 0], &[])] {
            let err = decode(&spec(), &outputs(shape, data)).unwrap_err().to_string();
            assert!(err.contains("output score: expected shape one value"), "{err}");
            assert!(err.contains(&format!("got {shape:?}")), "{err}");
        }
        let err = decode(&spec(), &outputs(&[1], &[0.1, 0.2])).unwrap_err().to_string();
        assert!(err.contains("does not hold 2 values"), "{err}");
        let err = decode(&spec(), &outputs(&[1], &[f32::NAN])).unwrap_err();
        assert!(matches!(&err, crate::Error::Output { tensor, reason } if tensor == "score" && reason.contains("NaN")));
        let err = decode(&spec(), &Outputs::default()).unwrap_err().to_string();
        assert!(err.contains("did not produce it"), "{err}");
    }
}
