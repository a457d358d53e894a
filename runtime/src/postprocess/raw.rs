//! Raw: output tensors published as they are, for models the runtime has no decoder for.

use super::shape;
use crate::error::Result;
use crate::manifest::RawSpec;
use crate::tensor::{OutputTensor, Outputs};
use protocol::{Output, RawTensor};

/// The tensors `spec` lists, in its order, or every output in graph order when the list is empty.
pub(super) fn decode(spec: &RawSpec, outputs: &Outputs) -> Result<Output> {
    let tensors = if spec.tensors.is_empty() {
        outputs.tensors.iter().map(raw_tensor).collect::<Result<Vec<_>>>()?
    } else {
        spec.tensors.iter().map(|name| outputs.get(name).and_then(raw_tensor)).collect::<Result<Vec<_>>>()?
    };
    Ok(Output::Raw { tensors })
}

/// A copy of `tensor`, once its shape is known to match its data: floating-point values in `data`, integer and bool
/// ones in `integers`.
fn raw_tensor(tensor: &OutputTensor) -> Result<RawTensor> {
    shape::element_count(tensor)?;
    Ok(RawTensor {
        name: tensor.name().to_owned(),
        shape: tensor.shape().to_vec(),
        data: tensor.data().to_vec(),
        dtype: tensor.dtype(),
        integers: tensor.integers().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::TensorDtype;

    fn outputs() -> Outputs {
        let tensor = |name: &str, shape: &[i64], data: &[f32]| OutputTensor::new(name, shape.to_vec(), data.to_vec());
        Outputs { tensors: vec![tensor("a", &[2], &[1.0, 2.0]), tensor("b", &[1, 2, 1], &[3.0, 4.0])] }
    }

    fn names(output: &Output) -> Vec<(&str, &[i64], &[f32])> {
        let Output::Raw { tensors } = output else { panic!("raw expected") };
        tensors.iter().map(|t| (t.name.as_str(), t.shape.as_slice(), t.data.as_slice())).collect()
    }

    #[test]
    fn publishes_all_in_graph_order_or_the_list_in_its_order() {
        let all = decode(&RawSpec { tensors: vec![] }, &outputs()).unwrap();
        assert_eq!(names(&all), vec![("a", &[2i64][..], &[1.0f32, 2.0][..]), ("b", &[1, 2, 1], &[3.0, 4.0])]);
        let listed = decode(&RawSpec { tensors: vec!["b".to_owned(), "a".to_owned()] }, &outputs()).unwrap();
        assert_eq!(names(&listed), vec![("b", &[1i64, 2, 1][..], &[3.0f32, 4.0][..]), ("a", &[2], &[1.0, 2.0])]);
    }

    #[test]
    fn publishes_integer_and_bool_tensors_as_integers_with_their_type() {
        let outputs = Outputs {
            tensors: vec![
                OutputTensor::from_integers("label", vec![1], TensorDtype::Int64, vec![-1]),
                OutputTensor::from_integers("flags", vec![2], TensorDtype::Bool, vec![1, 0]),
            ],
        };
        let Output::Raw { tensors } = decode(&RawSpec { tensors: vec![] }, &outputs).unwrap() else { panic!() };
        let summary: Vec<_> = tensors.iter().map(|t| (t.dtype, t.integers.as_slice(), t.data.is_empty())).collect();
        assert_eq!(summary, vec![(TensorDtype::Int64, &[-1i64][..], true), (TensorDtype::Bool, &[1, 0], true)]);
    }

    #[test]
    fn refuses_a_missing_tensor_and_a_shape_that_does_not_hold_the_data() {
        let err = decode(&RawSpec { tensors: vec!["c".to_owned()] }, &outputs()).unwrap_err();
        assert!(matches!(&err, crate::Error::Output { tensor, .. } if tensor == "c"), "{err}");
        let mut bad = outputs();
        bad.tensors[1] = OutputTensor::new("b", vec![3], vec![3.0, 4.0]);
        let err = decode(&RawSpec { tensors: vec![] }, &bad).unwrap_err().to_string();
        assert!(err.contains("output b: shape [3] does not hold 2 values"), "{err}");
    }
}
