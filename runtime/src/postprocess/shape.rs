//! Shape checks shared by the decoders. Errors name the tensor, the shape expected and the shape got; nothing
//! here allocates unless it fails.

use crate::error::{Error, Result};
use crate::tensor::OutputTensor;

/// An [`Error::Output`] about `tensor`.
pub(super) fn output_error(tensor: &str, reason: impl Into<String>) -> Error {
    Error::Output { tensor: tensor.to_owned(), reason: reason.into() }
}

/// An [`Error::Output`] saying `tensor` should have been `expected`.
pub(super) fn shape_error(tensor: &OutputTensor, expected: &str) -> Error {
    output_error(tensor.name(), format!("expected shape {expected}, got {:?}", tensor.shape()))
}

/// The number of values the shape announces, checked against the data actually there.
pub(super) fn element_count(tensor: &OutputTensor) -> Result<usize> {
    let mut count = 1usize;
    for &dim in tensor.shape() {
        let dim = usize::try_from(dim)
            .map_err(|_| output_error(tensor.name(), format!("shape {:?} has a negative dimension", tensor.shape())))?;
        count = count.checked_mul(dim).ok_or_else(|| {
            output_error(tensor.name(), format!("shape {:?} overflows the address space", tensor.shape()))
        })?;
    }
    if count != tensor.len() {
        return Err(output_error(
            tensor.name(),
            format!("shape {:?} does not hold {} values", tensor.shape(), tensor.len()),
        ));
    }
    Ok(count)
}

/// The dimensions of a rank-`R` tensor; `expected` describes the wanted shape in the error (`"[1, 1, h, w]"`).
pub(super) fn dims<const R: usize>(tensor: &OutputTensor, expected: &str) -> Result<[usize; R]> {
    if tensor.shape().len() != R {
        return Err(shape_error(tensor, expected));
    }
    element_count(tensor)?;
    let mut dims = [0usize; R];
    for (dim, &announced) in dims.iter_mut().zip(tensor.shape()) {
        // Cannot fail: element_count accepted every dimension.
        *dim = usize::try_from(announced).unwrap_or(0);
    }
    Ok(dims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(shape: &[i64], len: usize) -> OutputTensor {
        OutputTensor::new("t".to_owned(), shape.to_vec(), vec![0.0; len])
    }

    #[test]
    fn dims_checks_rank_count_and_sign() {
        assert_eq!(dims::<2>(&tensor(&[2, 3], 6), "[a, b]").unwrap(), [2, 3]);
        let rank = dims::<3>(&tensor(&[2, 3], 6), "[1, a, b]").unwrap_err().to_string();
        assert!(rank.contains("expected shape [1, a, b], got [2, 3]"), "{rank}");
        let count = dims::<2>(&tensor(&[2, 3], 5), "[a, b]").unwrap_err().to_string();
        assert!(count.contains("does not hold 5 values"), "{count}");
        let negative = element_count(&tensor(&[-1, 3], 3)).unwrap_err().to_string();
        assert!(negative.contains("negative"), "{negative}");
        assert_eq!(element_count(&tensor(&[], 1)).unwrap(), 1);
    }
}
