//! Batch inference: several sensor windows in one `Session::run`, for a model whose graph takes any number of
//! windows stacked along the first dimension ([`Engine::takes_batches`](crate::Engine::takes_batches)). A run has
//! a fixed cost (binding, scheduling, thread hand-offs) that a small model pays once per window unbatched; in a
//! batch it is paid once per batch. Each window is still preprocessed, decoded and timed on its own, and its
//! result is what [`Pipeline::infer`] would have given it.

use super::{Pipeline, micros};
use crate::error::{Error, Result};
use crate::input::Input;
use crate::manifest::{InputDtype, InputSpec};
use crate::preprocess::Geometry;
use crate::tensor::{InputTensor, OutputTensor, Outputs};
use protocol::{Output, StageTimings};
use std::time::Instant;

/// The most windows one batched run takes. Past a few dozen the run's fixed cost is spread thin already, and the
/// stacked input stays small (64 windows of the activity classifier are 150 KB).
pub const MAX_BATCH: usize = 64;

/// The buffers of batched runs: the stacked input and one window's slice of the outputs. The caller keeps them
/// from batch to batch (a model swap keeps them too), so a batch allocates nothing once they have grown.
#[derive(Debug, Default)]
pub struct BatchBuffers {
    input: Vec<f32>,
    /// Each stacked image's geometry (`None` for sensor windows), for its decoder.
    geometries: Vec<Option<Geometry>>,
    row: Outputs,
    row_shape: Vec<i64>,
}

impl Pipeline {
    /// How many inputs [`Pipeline::infer_batch`] runs at once: [`MAX_BATCH`] for a sensor model whose graph takes
    /// batches, else 1.
    pub fn max_batch(&self) -> usize {
        match *self.input {
            InputSpec::Sensor(_) if self.engine.takes_batches() => MAX_BATCH,
            _ => 1,
        }
    }

    /// How many crops a cascade runs at once on this model as its second stage: [`MAX_BATCH`] for an image model
    /// with an f32 input whose graph takes batches, else 1.
    pub(crate) fn crop_batch(&self) -> usize {
        match &*self.input {
            InputSpec::Image(spec) if spec.dtype == InputDtype::F32 && self.engine.takes_batches() => MAX_BATCH,
            _ => 1,
        }
    }

    /// Infers `inputs` (at most [`Pipeline::max_batch`] at once; more are run in turn), writing each one's result
    /// to `results` in order, as [`Pipeline::infer`] would. A window the preprocessor refuses gets its error and
    /// stays out of the run. Each window's `inference_us` is its share of the run; if the run fails, each window
    /// is inferred alone, so that its error is its own.
    pub fn infer_batch(
        &mut self,
        inputs: &[&Input],
        buffers: &mut BatchBuffers,
        results: &mut Vec<Result<(Output, StageTimings)>>,
    ) {
        results.clear();
        self.infer_in_chunks(inputs, self.max_batch(), buffers, results);
    }

    /// As [`Pipeline::infer_batch`], `chunk` inputs per run (appending to `results`): a cascade runs its crops so
    /// on a second stage that takes batches.
    pub(crate) fn infer_in_chunks(
        &mut self,
        inputs: &[&Input],
        chunk: usize,
        buffers: &mut BatchBuffers,
        results: &mut Vec<Result<(Output, StageTimings)>>,
    ) {
        for chunk in inputs.chunks(chunk) {
            if chunk.len() == 1 {
                results.push(self.infer(chunk[0]));
            } else {
                self.infer_stacked(chunk, buffers, results);
            }
        }
    }

    fn infer_stacked(
        &mut self,
        inputs: &[&Input],
        buffers: &mut BatchBuffers,
        results: &mut Vec<Result<(Output, StageTimings)>>,
    ) {
        let first = results.len();
        buffers.input.clear();
        buffers.geometries.clear();
        let mut stacked = 0;
        for input in inputs {
            let prepared =
                self.preparer.prepare(input, &mut self.prepared).and_then(|()| match self.prepared.tensor() {
                    Some(InputTensor::F32(window)) => {
                        buffers.input.extend_from_slice(window);
                        let (_, geometry) = self.prepared.for_spec(&self.input)?;
                        buffers.geometries.push(geometry.copied());
                        Ok(self.prepared.timings())
                    }
                    // Batches are run for f32 inputs only: sensor windows, and a cascade's f32 image crops.
                    _ => Err(Error::TensorMismatch {
                        expected: "f32".to_owned(),
                        got: "another element type".to_owned(),
                    }),
                });
            results.push(prepared.map(|timings| {
                stacked += 1;
                // Replaced by the window's decoded output below.
                (Output::Raw { tensors: Vec::new() }, timings)
            }));
        }
        if stacked == 0 {
            return;
        }
        let run_started = Instant::now();
        let ran = self.engine.run_batch(&buffers.input, stacked);
        let inference_us = micros(run_started, Instant::now()) / stacked as u32;
        let Ok(outputs) = ran else {
            for (result, input) in results[first..].iter_mut().zip(inputs) {
                if result.is_ok() {
                    *result = self.infer(input);
                }
            }
            return;
        };
        let window_len = buffers.input.len() / stacked;
        let mut row = 0;
        for result in &mut results[first..] {
            let Ok((output, timings)) = result else { continue };
            let decode_started = Instant::now();
            timings.inference_us = inference_us;
            let decoded = slice_row(outputs, row, stacked, &mut buffers.row, &mut buffers.row_shape)
                .and_then(|()| self.decoder.decode(&buffers.row, buffers.geometries[row].as_ref()));
            match decoded {
                Ok(decoded) => {
                    if let Some(features) = &mut self.monitored {
                        let window = &buffers.input[row * window_len..(row + 1) * window_len];
                        self.features.extract(InputTensor::F32(window), &decoded, features);
                    }
                    *output = decoded;
                    timings.postprocess_us = micros(decode_started, Instant::now());
                }
                Err(error) => *result = Err(error),
            }
            row += 1;
        }
    }
}

/// Copies input `row` of a batched run's `outputs` (`batch` rows along each output's first dimension) into `into`,
/// shaped as an unbatched run's: first dimension 1. `shape` is scratch space for that shape.
fn slice_row(outputs: &Outputs, row: usize, batch: usize, into: &mut Outputs, shape: &mut Vec<i64>) -> Result<()> {
    let same_names = into.tensors.len() == outputs.tensors.len()
        && into.tensors.iter().zip(&outputs.tensors).all(|(sliced, tensor)| sliced.name() == tensor.name());
    if !same_names {
        into.tensors =
            outputs.tensors.iter().map(|tensor| OutputTensor::new(tensor.name(), Vec::new(), Vec::new())).collect();
    }
    for (tensor, sliced) in outputs.tensors.iter().zip(&mut into.tensors) {
        if tensor.shape().first() != Some(&(batch as i64)) || !tensor.len().is_multiple_of(batch) {
            return Err(Error::Output {
                tensor: tensor.name().to_owned(),
                reason: format!("shape {:?} does not hold a batch of {batch}", tensor.shape()),
            });
        }
        let len = tensor.len() / batch;
        shape.clear();
        shape.push(1);
        shape.extend_from_slice(&tensor.shape()[1..]);
        sliced.copy_slice(shape, tensor, row * len..(row + 1) * len);
    }
    Ok(())
}
