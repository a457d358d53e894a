//! Tensors passed between the stages: the input a preprocessor writes and the outputs an engine hands a decoder.
//!
//! Neither is copied on its way through ONNX Runtime: the input is an ONNX Runtime value over a buffer of
//! ours, written in place by the preprocessor ([`InputBuffer`]), and fixed-shape outputs are ONNX Runtime
//! values allocated once that every run overwrites and the decoder reads in place ([`OutputTensor`]).

use crate::error::{Error, Result};
use crate::manifest::{InputDtype, InputSpec};
use half::f16;
use ort::value::{DynTensorRef, DynValue, PrimitiveTensorElementType, Tensor, TensorElementType, ValueType};
use protocol::TensorDtype;
use std::fmt::{Debug, Display};
use std::ops::Range;

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
        InputBuffer::with_shape(dtype, &dims[..rank])
    }

    /// A zeroed tensor of `dtype` and `shape` (an input sized per frame).
    pub fn with_shape(dtype: InputDtype, shape: &[i64]) -> Result<InputBuffer> {
        let shape = shape.to_vec();
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
        self.fits_shape(dtype, &dims[..rank])
    }

    /// True when it has `dtype` and `shape`.
    pub fn fits_shape(&self, dtype: InputDtype, shape: &[i64]) -> bool {
        self.dtype() == dtype && shape == &self.shape[..]
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

/// One output of a run: floating-point values as `f32` (float16 and float64 converted, so that every decoder reads
/// them alike), integer and bool values as `i64`. An `f32` output is read in place from the ONNX Runtime value the
/// engine bound to it, or copied out of the run where its shape is not known to stay the same.
#[derive(Debug, Default)]
pub struct OutputTensor {
    name: String,
    shape: Vec<i64>,
    dtype: TensorDtype,
    data: OutputData,
}

#[derive(Debug)]
enum OutputData {
    Floats(Vec<f32>),
    Integers(Vec<i64>),
    /// An f32 value the engine pre-allocated with `shape`, which every run overwrites.
    Bound(DynValue),
}

impl Default for OutputData {
    fn default() -> Self {
        OutputData::Floats(Vec::new())
    }
}

/// The [`TensorDtype`] of an ONNX Runtime element type; `None` for those an output cannot be read as (strings,
/// bfloat16, complex, 4-bit and 8-bit floats).
pub(crate) fn output_dtype(ty: TensorElementType) -> Option<TensorDtype> {
    Some(match ty {
        TensorElementType::Float32 => TensorDtype::Float32,
        TensorElementType::Float16 => TensorDtype::Float16,
        TensorElementType::Float64 => TensorDtype::Float64,
        TensorElementType::Int8 => TensorDtype::Int8,
        TensorElementType::Int16 => TensorDtype::Int16,
        TensorElementType::Int32 => TensorDtype::Int32,
        TensorElementType::Int64 => TensorDtype::Int64,
        TensorElementType::Uint8 => TensorDtype::Uint8,
        TensorElementType::Uint16 => TensorDtype::Uint16,
        TensorElementType::Uint32 => TensorDtype::Uint32,
        TensorElementType::Uint64 => TensorDtype::Uint64,
        TensorElementType::Bool => TensorDtype::Bool,
        _ => return None,
    })
}

impl OutputTensor {
    /// An f32 output called `name` of `shape` holding `data`, row-major.
    pub fn new(name: impl Into<String>, shape: Vec<i64>, data: Vec<f32>) -> OutputTensor {
        OutputTensor { name: name.into(), shape, dtype: TensorDtype::Float32, data: OutputData::Floats(data) }
    }

    /// An integer or bool output (`dtype`) called `name` of `shape` holding `values`, row-major.
    pub fn from_integers(name: impl Into<String>, shape: Vec<i64>, dtype: TensorDtype, values: Vec<i64>) -> Self {
        OutputTensor { name: name.into(), shape, dtype, data: OutputData::Integers(values) }
    }

    /// The graph output's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its shape in the last run.
    pub fn shape(&self) -> &[i64] {
        &self.shape
    }

    /// The graph output's element type.
    pub fn dtype(&self) -> TensorDtype {
        self.dtype
    }

    /// Its values in the last run, row-major, for a floating-point output; empty for an integer or bool one.
    pub fn data(&self) -> &[f32] {
        match &self.data {
            OutputData::Floats(data) => data,
            OutputData::Integers(_) => &[],
            // The engine bound a CPU tensor of f32, which always extracts.
            OutputData::Bound(value) => value.try_extract_tensor::<f32>().map_or(&[], |(_, data)| data),
        }
    }

    /// Its values in the last run, row-major, for an integer or bool output (bool as 0 or 1); empty otherwise.
    pub fn integers(&self) -> &[i64] {
        match &self.data {
            OutputData::Integers(values) => values,
            OutputData::Floats(_) | OutputData::Bound(_) => &[],
        }
    }

    /// Number of values it holds.
    pub fn len(&self) -> usize {
        match &self.data {
            OutputData::Integers(values) => values.len(),
            OutputData::Floats(_) | OutputData::Bound(_) => self.data().len(),
        }
    }

    /// True when it holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when runs write it in place.
    pub(crate) fn is_bound(&self) -> bool {
        matches!(self.data, OutputData::Bound(_))
    }

    /// Copies a run's `value` in, converted as its element type says, reusing the buffers (and unbinding it).
    pub(crate) fn copy_from(&mut self, value: &DynValue) -> Result<()> {
        let ty = match value.dtype() {
            ValueType::Tensor { ty, .. } => *ty,
            other => return Err(self.error(format!("not a tensor but {other}"))),
        };
        let dtype = output_dtype(ty).ok_or_else(|| self.error(format!("elements of type {ty} cannot be read")))?;
        self.dtype = dtype;
        match dtype {
            TensorDtype::Float32 => self.copy_floats(value, |v: &f32| *v),
            TensorDtype::Float16 => self.copy_floats(value, |v: &half::f16| v.to_f32()),
            // Narrowed: every decoder computes in f32, and a raw f64 output is published as f32.
            TensorDtype::Float64 => self.copy_floats(value, |v: &f64| *v as f32),
            TensorDtype::Int8 => self.copy_integers(value, |v: &i8| Some(i64::from(*v))),
            TensorDtype::Int16 => self.copy_integers(value, |v: &i16| Some(i64::from(*v))),
            TensorDtype::Int32 => self.copy_integers(value, |v: &i32| Some(i64::from(*v))),
            TensorDtype::Int64 => self.copy_integers(value, |v: &i64| Some(*v)),
            TensorDtype::Uint8 => self.copy_integers(value, |v: &u8| Some(i64::from(*v))),
            TensorDtype::Uint16 => self.copy_integers(value, |v: &u16| Some(i64::from(*v))),
            TensorDtype::Uint32 => self.copy_integers(value, |v: &u32| Some(i64::from(*v))),
            TensorDtype::Uint64 => self.copy_integers(value, |v: &u64| i64::try_from(*v).ok()),
            TensorDtype::Bool => self.copy_integers(value, |v: &bool| Some(i64::from(*v))),
        }
    }

    fn copy_floats<T: PrimitiveTensorElementType + Debug>(
        &mut self,
        value: &DynValue,
        convert: impl Fn(&T) -> f32,
    ) -> Result<()> {
        let (shape, data) = value.try_extract_tensor::<T>().map_err(|e| self.error(e.to_string()))?;
        self.set_shape(shape);
        match &mut self.data {
            OutputData::Floats(floats) => {
                floats.clear();
                floats.extend(data.iter().map(convert));
            }
            _ => self.data = OutputData::Floats(data.iter().map(convert).collect()),
        }
        Ok(())
    }

    /// As [`OutputTensor::copy_floats`]; `convert` gives `None` for a value no `i64` holds.
    fn copy_integers<T: PrimitiveTensorElementType + Debug + Display>(
        &mut self,
        value: &DynValue,
        convert: impl Fn(&T) -> Option<i64>,
    ) -> Result<()> {
        let (shape, data) = value.try_extract_tensor::<T>().map_err(|e| self.error(e.to_string()))?;
        if let Some(big) = data.iter().find(|v| convert(v).is_none()) {
            return Err(self.error(format!("the value {big} does not fit an i64")));
        }
        self.set_shape(shape);
        let values = data.iter().filter_map(convert);
        match &mut self.data {
            OutputData::Integers(integers) => {
                integers.clear();
                integers.extend(values);
            }
            _ => self.data = OutputData::Integers(values.collect()),
        }
        Ok(())
    }

    /// Copies the values `range` of `from` in, as a tensor of `shape` and `from`'s type (a row of a batch).
    pub(crate) fn copy_slice(&mut self, shape: &[i64], from: &OutputTensor, range: Range<usize>) {
        self.set_shape(shape);
        self.dtype = from.dtype;
        match (&mut self.data, &from.data) {
            (OutputData::Integers(integers), OutputData::Integers(values)) => {
                integers.clear();
                integers.extend_from_slice(&values[range]);
            }
            (_, OutputData::Integers(values)) => self.data = OutputData::Integers(values[range].to_vec()),
            (OutputData::Floats(floats), _) => {
                floats.clear();
                floats.extend_from_slice(&from.data()[range]);
            }
            (_, _) => self.data = OutputData::Floats(from.data()[range].to_vec()),
        }
    }

    fn set_shape(&mut self, shape: &[i64]) {
        self.shape.clear();
        self.shape.extend_from_slice(shape);
    }

    fn error(&self, reason: String) -> Error {
        Error::Output { tensor: self.name.clone(), reason }
    }

    /// From now on, reads `value`, an f32 tensor which runs overwrite in place.
    pub(crate) fn bind(&mut self, value: DynValue) {
        self.data = OutputData::Bound(value);
    }

    /// The shape as `usize`s, checking it holds exactly `len()` elements.
    pub fn dims(&self) -> Result<Vec<usize>> {
        let dims: Vec<usize> = self.shape.iter().map(|d| usize::try_from(*d).unwrap_or(0)).collect();
        if dims.iter().product::<usize>() != self.len() {
            return Err(self.error(format!("shape {:?} does not hold {} values", self.shape, self.len())));
        }
        Ok(dims)
    }
}

impl Clone for OutputTensor {
    /// A copy that no run overwrites.
    fn clone(&self) -> Self {
        let data = match &self.data {
            OutputData::Integers(values) => OutputData::Integers(values.clone()),
            OutputData::Floats(_) | OutputData::Bound(_) => OutputData::Floats(self.data().to_vec()),
        };
        OutputTensor { name: self.name.clone(), shape: self.shape.clone(), dtype: self.dtype, data }
    }
}

impl PartialEq for OutputTensor {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.shape == other.shape
            && self.dtype == other.dtype
            && self.data() == other.data()
            && self.integers() == other.integers()
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
