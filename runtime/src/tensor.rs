//! Tensors passed between the stages: the input a preprocessor writes and the outputs an engine hands a decoder.
//!
//! Neither is copied on its way through ONNX Runtime: the input is an ONNX Runtime value over a buffer of
//! ours, written in place by the preprocessor ([`InputBuffer`]), and fixed-shape outputs are ONNX Runtime
//! values allocated once that every run overwrites and the decoder reads in place ([`OutputTensor`]).

use crate::error::{Error, Result};
use crate::manifest::{InputDtype, InputSpec};
use half::f16;
use ort::value::{DynTensorRef, DynValue, PrimitiveTensorElementType, Tensor};

/// A borrowed input tensor, in the element type the model takes.
#[derive(Debug, Clone, Copy)]
pub enum InputTensor<'a> {
    /// 32-bit floats.
    F32(&'a [f32]),
    /// Raw bytes.
    U8(&'a [u8]),
    /// 16-bit floats.
    F16(&'a [f16]),
    /// Signed bytes.
    I8(&'a [i8]),
    /// 32-bit integers.
    I32(&'a [i32]),
    /// 64-bit integers.
    I64(&'a [i64]),
}

/// An input tensor to write, in the element type the model takes.
#[derive(Debug)]
pub enum InputTensorMut<'a> {
    /// 32-bit floats.
    F32(&'a mut [f32]),
    /// Raw bytes.
    U8(&'a mut [u8]),
    /// 16-bit floats.
    F16(&'a mut [f16]),
    /// Signed bytes.
    I8(&'a mut [i8]),
    /// 32-bit integers.
    I32(&'a mut [i32]),
    /// 64-bit integers.
    I64(&'a mut [i64]),
}

impl InputTensorMut<'_> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            InputTensorMut::F32(data) => data.len(),
            InputTensorMut::U8(data) => data.len(),
            InputTensorMut::F16(data) => data.len(),
            InputTensorMut::I8(data) => data.len(),
            InputTensorMut::I32(data) => data.len(),
            InputTensorMut::I64(data) => data.len(),
        }
    }

    /// The element type.
    pub fn dtype(&self) -> InputDtype {
        match self {
            InputTensorMut::F32(_) => InputDtype::F32,
            InputTensorMut::U8(_) => InputDtype::U8,
            InputTensorMut::F16(_) => InputDtype::F16,
            InputTensorMut::I8(_) => InputDtype::I8,
            InputTensorMut::I32(_) => InputDtype::I32,
            InputTensorMut::I64(_) => InputDtype::I64,
        }
    }

    /// True when it holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An input element as `f32`, for the monitor's image features (integer inputs hold pixel values, which an `f32`
/// holds exactly).
pub(crate) trait AsF32: Copy {
    fn as_f32(self) -> f32;
}

impl AsF32 for f32 {
    fn as_f32(self) -> f32 {
        self
    }
}

impl AsF32 for f16 {
    fn as_f32(self) -> f32 {
        self.to_f32()
    }
}

impl AsF32 for u8 {
    fn as_f32(self) -> f32 {
        f32::from(self)
    }
}

impl AsF32 for i8 {
    fn as_f32(self) -> f32 {
        f32::from(self)
    }
}

impl AsF32 for i32 {
    fn as_f32(self) -> f32 {
        self as f32
    }
}

impl AsF32 for i64 {
    fn as_f32(self) -> f32 {
        self as f32
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
    format!("{} {:?}", dtype.name(), &dims[..rank])
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
enum InputValue {
    F32(Tensor<f32>),
    U8(Tensor<u8>),
    F16(Tensor<f16>),
    I8(Tensor<i8>),
    I32(Tensor<i32>),
    I64(Tensor<i64>),
}

/// A zeroed tensor of `shape`.
fn zeroed<T>(shape: &[i64]) -> ort::Result<Tensor<T>>
where
    T: PrimitiveTensorElementType + Default + Clone + std::fmt::Debug + 'static,
{
    let len = shape.iter().product::<i64>() as usize;
    Tensor::from_array((shape.to_vec(), vec![T::default(); len]))
}

impl InputBuffer {
    /// A zeroed tensor of the element type and shape `spec` gives (batch of one).
    pub fn new(spec: &InputSpec) -> Result<InputBuffer> {
        let (dtype, dims, rank) = input_layout(spec);
        let shape = dims[..rank].to_vec();
        let error = |e: ort::Error| Error::Inference { reason: format!("creating the input tensor: {e}") };
        let value = match dtype {
            InputDtype::F32 => InputValue::F32(zeroed(&shape).map_err(error)?),
            InputDtype::U8 => InputValue::U8(zeroed(&shape).map_err(error)?),
            InputDtype::F16 => InputValue::F16(zeroed(&shape).map_err(error)?),
            InputDtype::I8 => InputValue::I8(zeroed(&shape).map_err(error)?),
            InputDtype::I32 => InputValue::I32(zeroed(&shape).map_err(error)?),
            InputDtype::I64 => InputValue::I64(zeroed(&shape).map_err(error)?),
        };
        Ok(InputBuffer { shape, value })
    }

    /// True when it has the element type and shape `spec` gives, so it can take that spec's inputs.
    pub fn fits(&self, spec: &InputSpec) -> bool {
        let (dtype, dims, rank) = input_layout(spec);
        self.dtype() == dtype && dims[..rank] == self.shape[..]
    }

    fn dtype(&self) -> InputDtype {
        match &self.value {
            InputValue::F32(_) => InputDtype::F32,
            InputValue::U8(_) => InputDtype::U8,
            InputValue::F16(_) => InputDtype::F16,
            InputValue::I8(_) => InputDtype::I8,
            InputValue::I32(_) => InputDtype::I32,
            InputValue::I64(_) => InputDtype::I64,
        }
    }

    /// Its shape (batch of one).
    pub fn shape(&self) -> &[i64] {
        &self.shape
    }

    /// The elements, to read.
    pub fn view(&self) -> InputTensor<'_> {
        match &self.value {
            InputValue::F32(tensor) => InputTensor::F32(tensor.extract_tensor().1),
            InputValue::U8(tensor) => InputTensor::U8(tensor.extract_tensor().1),
            InputValue::F16(tensor) => InputTensor::F16(tensor.extract_tensor().1),
            InputValue::I8(tensor) => InputTensor::I8(tensor.extract_tensor().1),
            InputValue::I32(tensor) => InputTensor::I32(tensor.extract_tensor().1),
            InputValue::I64(tensor) => InputTensor::I64(tensor.extract_tensor().1),
        }
    }

    /// The elements, to write.
    pub fn view_mut(&mut self) -> InputTensorMut<'_> {
        match &mut self.value {
            InputValue::F32(tensor) => InputTensorMut::F32(tensor.extract_tensor_mut().1),
            InputValue::U8(tensor) => InputTensorMut::U8(tensor.extract_tensor_mut().1),
            InputValue::F16(tensor) => InputTensorMut::F16(tensor.extract_tensor_mut().1),
            InputValue::I8(tensor) => InputTensorMut::I8(tensor.extract_tensor_mut().1),
            InputValue::I32(tensor) => InputTensorMut::I32(tensor.extract_tensor_mut().1),
            InputValue::I64(tensor) => InputTensorMut::I64(tensor.extract_tensor_mut().1),
        }
    }

    /// The value a run takes (a reference-counted handle: nothing is copied or allocated).
    pub fn value(&self) -> DynTensorRef<'_> {
        match &self.value {
            InputValue::F32(tensor) => tensor.upcast_ref(),
            InputValue::U8(tensor) => tensor.upcast_ref(),
            InputValue::F16(tensor) => tensor.upcast_ref(),
            InputValue::I8(tensor) => tensor.upcast_ref(),
            InputValue::I32(tensor) => tensor.upcast_ref(),
            InputValue::I64(tensor) => tensor.upcast_ref(),
        }
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
