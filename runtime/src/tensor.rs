//! Tensors passed between the stages: the input a preprocessor writes and the outputs an engine hands a decoder.

use crate::error::{Error, Result};

/// A borrowed input tensor, in the element type the model takes.
#[derive(Debug, Clone, Copy)]
pub enum InputTensor<'a> {
    /// 32-bit floats.
    F32(&'a [f32]),
    /// Raw bytes.
    U8(&'a [u8]),
}

/// One output of a run, copied out of ONNX Runtime and converted to `f32`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutputTensor {
    /// The graph output's name.
    pub name: String,
    /// Its shape in this run.
    pub shape: Vec<i64>,
    /// Its values, row-major.
    pub data: Vec<f32>,
}

/// The outputs of one run, in graph order. The engine reuses the buffers from run to run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outputs {
    /// One per output the decoder reads.
    pub tensors: Vec<OutputTensor>,
}

impl Outputs {
    /// The output called `name`.
    pub fn get(&self, name: &str) -> Result<&OutputTensor> {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| Error::Output { tensor: name.to_owned(), reason: "the run did not produce it".to_owned() })
    }
}

impl OutputTensor {
    /// The shape as `usize`s, checking it holds exactly `data.len()` elements.
    pub fn dims(&self) -> Result<Vec<usize>> {
        let dims: Vec<usize> = self.shape.iter().map(|d| usize::try_from(*d).unwrap_or(0)).collect();
        if dims.iter().product::<usize>() != self.data.len() {
            return Err(Error::Output {
                tensor: self.name.clone(),
                reason: format!("shape {:?} does not hold {} values", self.shape, self.data.len()),
            });
        }
        Ok(dims)
    }
}
