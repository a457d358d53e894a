//! Anomaly: one score compared with the manifest's threshold, in the manifest's direction, and the model's own label
//! when the manifest names its output.

use super::shape::{self, output_error};
use crate::error::Result;
use crate::manifest::AnomalySpec;
use crate::tensor::Outputs;
use protocol::Output;

/// Reads the single value of `spec.tensor` (any shape holding exactly one) and judges it against the threshold; reads
/// the single value of `spec.label_tensor` when there is one.
pub(super) fn decode(spec: &AnomalySpec, outputs: &Outputs) -> Result<Output> {
    let tensor = outputs.get(&spec.tensor)?;
    shape::element_count(tensor)?;
    let &[score] = tensor.data() else {
        return Err(shape::shape_error(tensor, ONE_VALUE));
    };
    if score.is_nan() {
        return Err(output_error(tensor.name(), "the anomaly score is NaN"));
    }
    let label = match &spec.label_tensor {
        Some(name) => {
            let tensor = outputs.get(name)?;
            shape::element_count(tensor)?;
            let &[label] = tensor.integers() else {
                return Err(shape::shape_error(tensor, ONE_VALUE));
            };
            Some(label)
        }
        None => None,
    };
    Ok(Output::Anomaly {
        score,
        threshold: spec.threshold,
        anomalous: spec.is_anomalous(score),
        label,
        label_anomalous: label.map(|label| label == spec.anomalous_label()),
    })
}

const ONE_VALUE: &str = "one value (such as [1] or [1, 1])";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::AnomalyDirection;
    use crate::tensor::OutputTensor;
    use protocol::TensorDtype;

    fn outputs(shape: &[i64], data: &[f32]) -> Outputs {
        Outputs { tensors: vec![OutputTensor::new("score".to_owned(), shape.to_vec(), data.to_vec())] }
    }

    fn spec() -> AnomalySpec {
        AnomalySpec {
            tensor: "score".to_owned(),
            threshold: 0.5,
            direction: AnomalyDirection::Higher,
            label_tensor: None,
            anomalous_label: None,
        }
    }

    fn verdict(score: f32, anomalous: bool) -> Output {
        Output::Anomaly { score, threshold: 0.5, anomalous, label: None, label_anomalous: None }
    }

    #[test]
    fn judges_a_single_value_of_any_shape() {
        for shape in [&[][..], &[1], &[1, 1], &[1, 1, 1]] {
            assert_eq!(decode(&spec(), &outputs(shape, &[0.7])).unwrap(), verdict(0.7, true));
        }
        // At the threshold is not above it.
        assert_eq!(decode(&spec(), &outputs(&[1], &[0.5])).unwrap(), verdict(0.5, false));
    }

    #[test]
    fn lower_scores_are_anomalous_in_the_lower_direction() {
        let lower = AnomalySpec { direction: AnomalyDirection::Lower, ..spec() };
        assert_eq!(decode(&lower, &outputs(&[1], &[0.3])).unwrap(), verdict(0.3, true));
        assert_eq!(decode(&lower, &outputs(&[1], &[0.7])).unwrap(), verdict(0.7, false));
        // At the threshold is not below it.
        assert_eq!(decode(&lower, &outputs(&[1], &[0.5])).unwrap(), verdict(0.5, false));
    }

    #[test]
    fn publishes_the_label_output_and_whether_it_is_the_anomalous_label() {
        let labelled =
            |anomalous_label| AnomalySpec { label_tensor: Some("label".to_owned()), anomalous_label, ..spec() };
        let with_label = |label: i64| {
            let mut outputs = outputs(&[1], &[0.7]);
            outputs.tensors.push(OutputTensor::from_integers("label", vec![1], TensorDtype::Int64, vec![label]));
            outputs
        };
        for (anomalous_label, label, label_anomalous) in [(None, -1, true), (None, 1, false), (Some(3), 3, true)] {
            let Output::Anomaly { label: got, label_anomalous: got_anomalous, anomalous, .. } =
                decode(&labelled(anomalous_label), &with_label(label)).unwrap()
            else {
                panic!("anomaly expected")
            };
            assert_eq!((got, got_anomalous, anomalous), (Some(label), Some(label_anomalous), true));
        }
        // The label output must hold one integer.
        let mut two = outputs(&[1], &[0.7]);
        two.tensors.push(OutputTensor::from_integers("label", vec![2], TensorDtype::Int64, vec![1, 1]));
        let err = decode(&labelled(None), &two).unwrap_err().to_string();
        assert!(err.contains("output label: expected shape one value"), "{err}");
        let err = decode(&labelled(None), &outputs(&[1], &[0.7])).unwrap_err().to_string();
        assert!(err.contains("label") && err.contains("did not produce it"), "{err}");
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
