//! Tensors passed between the stages: the input a preprocessor writes and the outputs an engine hands a decoder.
//!
//! Neither is copied on its way through ONNX Runtime: the input is an ONNX Runtime value over a buffer of
//! ours, written in place by the preprocessor ([`InputBuffer`]), and fixed-shape outputs are ONNX Runtime
//! values allocated once that every run overwrites and the decoder reads in place ([`OutputTensor`]).

use crate::error::{Error, Result};
use crate::manifest::{InputDtype, InputSpec};
use ort::value::{DynValue, Tensor};

/// A borrowed input tensor, in the element type the model takes.
#[derive(Debug, Clone, Copy)]
pub enum InputTensor<'a> {
    /// 32-bit floats.
    F32(&'a [f32]),
    /// Raw bytes.
    U8(&'a [u8]),
}

/// An input tensor to write, in the element type the model takes.
#[derive(Debug)]
pub enum InputTensorMut<'a> {
    /// 32-bit floats.
    F32(&'a mut [f32]),
    /// Raw bytes.
    U8(&'a mut [u8]),
}

impl InputTensorMut<'_> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            InputTensorMut::F32(data) => data.len(),
            InputTensorMut::U8(data) => data.len(),
        }
    }

    /// True when it holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The element type and shape of an input spec's tensor: the first `rank` of the dimensions (batch of one).
/// An array, not a `Vec`: checking that a buffer fits allocates nothing.
fn input_layout(spec: &InputSpec) -> (InputDtype, [i64; 4], usize) {
    match spec {
        InputSpec::Image(image) => (image.dtype, image.shape().map(|d| d as i64), 4),
        InputSpec::Sensor(sensor) => {
            let [batch, rows, columns] = sensor.shape().map(|d| d as i64);
            (InputDtype::F32, [batch, rows, columns, 0], 3)
        }
    }
}

/// The element type and shape of `spec`'s tensor, for messages: `f32 [1, 3, 224, 224]`.
pub(crate) fn describe_input(spec: &InputSpec) -> String {
    let (dtype, dims, rank) = input_layout(spec);
    let shape = &dims[..rank];
    let dtype = match dtype {
        InputDtype::F32 => "f32",
        InputDtype::U8 => "u8",
    };
    format!("{dtype} {shape:?}")
}

/// An input tensor as an ONNX Runtime value over a buffer allocated once at its final size: the preprocessor
/// writes it in place and a run reads it in place, so neither copies nor allocates.
#[derive(Debug)]
pub(crate) struct InputBuffer {
    shape: Vec<i64>,
    value: InputValue,
}

/// The ONNX Runtime value of an [`InputBuffer`].
#[derive(Debug)]
pub(crate) enum InputValue {
    F32(Tensor<f32>),
    U8(Tensor<u8>),
}

impl InputBuffer {
    /// A zeroed tensor of the element type and shape `spec` gives (batch of one).
    pub fn new(spec: &InputSpec) -> Result<InputBuffer> {
        let (dtype, dims, rank) = input_layout(spec);
        InputBuffer::with_shape(dtype, &dims[..rank])
    }

    /// A zeroed tensor of `dtype` and `shape` (an input sized per frame).
    pub fn with_shape(dtype: InputDtype, shape: &[i64]) -> Result<InputBuffer> {
        let shape = shape.to_vec();
        let len = shape.iter().product::<i64>() as usize;
        let error = |e: ort::Error| Error::Inference { reason: format!("creating the input tensor: {e}") };
        let value = match dtype {
            InputDtype::F32 => InputValue::F32(Tensor::from_array((shape.clone(), vec![0.0; len])).map_err(error)?),
            InputDtype::U8 => InputValue::U8(Tensor::from_array((shape.clone(), vec![0; len])).map_err(error)?),
        };
        Ok(InputBuffer { shape, value })
    }

    /// True when it has the element type and shape `spec` gives, so it can take that spec's inputs.
    pub fn fits(&self, spec: &InputSpec) -> bool {
        let (dtype, dims, rank) = input_layout(spec);
        self.fits_shape(dtype, &dims[..rank])
    }

    /// True when it has `dtype` and `shape`.
    pub fn fits_shape(&self, dtype: InputDtype, shape: &[i64]) -> bool {
        let same_type =
            matches!((&self.value, dtype), (InputValue::F32(_), InputDtype::F32) | (InputValue::U8(_), InputDtype::U8));
        same_type && shape == &self.shape[..]
    }

    /// The elements, to read.
    pub fn view(&self) -> InputTensor<'_> {
        match &self.value {
            InputValue::F32(tensor) => InputTensor::F32(tensor.extract_tensor().1),
            InputValue::U8(tensor) => InputTensor::U8(tensor.extract_tensor().1),
        }
    }

    /// The elements, to write.
    pub fn view_mut(&mut self) -> InputTensorMut<'_> {
        match &mut self.value {
            InputValue::F32(tensor) => InputTensorMut::F32(tensor.extract_tensor_mut().1),
            InputValue::U8(tensor) => InputTensorMut::U8(tensor.extract_tensor_mut().1),
        }
    }

    /// The value a run takes.
    pub fn value(&self) -> &InputValue {
        &self.value
    }
}

/// One output of a run, as `f32`: read in place from the ONNX Runtime value the engine bound to it, or copied
/// out of the run where its shape is not known to stay the same.
#[derive(Debug, Default)]
pub struct OutputTensor {
    name: String,
    shape: Vec<i64>,
    data: OutputData,
}

#[derive(Debug)]
enum OutputData {
    Copied(Vec<f32>),
    /// A value the engine pre-allocated with `shape`, which every run overwrites.
    Bound(DynValue),
}

impl Default for OutputData {
    fn default() -> Self {
        OutputData::Copied(Vec::new())
    }
}

impl OutputTensor {
    /// An output called `name` of `shape` holding `data`, row-major.
    pub fn new(name: impl Into<String>, shape: Vec<i64>, data: Vec<f32>) -> OutputTensor {
        OutputTensor { name: name.into(), shape, data: OutputData::Copied(data) }
    }

    /// The graph output's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its shape in the last run.
    pub fn shape(&self) -> &[i64] {
        &self.shape
    }

    /// Its values in the last run, row-major.
    pub fn data(&self) -> &[f32] {
        match &self.data {
            OutputData::Copied(data) => data,
            // The engine bound a CPU tensor of f32, which always extracts.
            OutputData::Bound(value) => value.try_extract_tensor::<f32>().map_or(&[], |(_, data)| data),
        }
    }

    /// True when runs write it in place.
    pub(crate) fn is_bound(&self) -> bool {
        matches!(self.data, OutputData::Bound(_))
    }

    /// Copies a run's `shape` and `data` in, reusing the buffers (and unbinding it).
    pub(crate) fn copy_from(&mut self, shape: &[i64], data: &[f32]) {
        self.shape.clear();
        self.shape.extend_from_slice(shape);
        if let OutputData::Copied(copied) = &mut self.data {
            copied.clear();
            copied.extend_from_slice(data);
        } else {
            self.data = OutputData::Copied(data.to_vec());
        }
    }

    /// From now on, reads `value`, which runs overwrite in place.
    pub(crate) fn bind(&mut self, value: DynValue) {
        self.data = OutputData::Bound(value);
    }

    /// The shape as `usize`s, checking it holds exactly `data().len()` elements.
    pub fn dims(&self) -> Result<Vec<usize>> {
        let dims: Vec<usize> = self.shape.iter().map(|d| usize::try_from(*d).unwrap_or(0)).collect();
        if dims.iter().product::<usize>() != self.data().len() {
            return Err(Error::Output {
                tensor: self.name.clone(),
                reason: format!("shape {:?} does not hold {} values", self.shape, self.data().len()),
            });
        }
        Ok(dims)
    }
}

impl Clone for OutputTensor {
    /// A copy that no run overwrites.
    fn clone(&self) -> Self {
        OutputTensor::new(self.name.clone(), self.shape.clone(), self.data().to_vec())
    }
}

impl PartialEq for OutputTensor {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.shape == other.shape && self.data() == other.data()
    }
}

/// The outputs of one run, in graph order. The engine reuses them from run to run.
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
