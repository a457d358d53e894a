//! Batch inference: several sensor windows in one `Session::run`, for a model whose graph takes any number of
//! windows stacked along the first dimension ([`Engine::takes_batches`](crate::Engine::takes_batches)). A run has
//! a fixed cost (binding, scheduling, thread hand-offs) that a small model pays once per window unbatched; in a
//! batch it is paid once per batch. Each window is still preprocessed, decoded and timed on its own, and its
//! result is what [`Pipeline::infer`] would have given it.

use super::{Pipeline, Preprocessor, micros};
use crate::error::{Error, Result};
use crate::input::Input;
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
    row: Outputs,
}

impl Pipeline {
    /// How many inputs [`Pipeline::infer_batch`] runs at once: [`MAX_BATCH`] for a sensor model whose graph takes
    /// batches, else 1.
    pub fn max_batch(&self) -> usize {
        match self.preprocessor {
            Preprocessor::Sensor(_) if self.engine.takes_batches() => MAX_BATCH,
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
        for chunk in inputs.chunks(self.max_batch()) {
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
        let Preprocessor::Sensor(pre) = &mut self.preprocessor else {
            // Image models take no batches (`max_batch` is 1); should one come, it runs one by one.
            for input in inputs {
                let result = self.infer(input);
                results.push(result);
            }
            return;
        };
        buffers.input.clear();
        let mut stacked = 0;
        for input in inputs {
            let started = Instant::now();
            let prepared = match input {
                Input::Sensor(window) => pre.prepare(window),
                other => Err(Error::WrongInputKind { expected: "sensor", got: other.kind() }),
            };
            results.push(prepared.map(|()| {
                buffers.input.extend_from_slice(pre.tensor());
                stacked += 1;
                let timings =
                    StageTimings { preprocess_us: micros(started, Instant::now()), ..StageTimings::default() };
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
            let decoded = slice_row(outputs, row, stacked, &mut buffers.row)
                .and_then(|()| self.decoder.decode(&buffers.row, None));
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
/// shaped as an unbatched run's: first dimension 1.
fn slice_row(outputs: &Outputs, row: usize, batch: usize, into: &mut Outputs) -> Result<()> {
    into.tensors.resize_with(outputs.tensors.len(), OutputTensor::default);
    for (tensor, sliced) in outputs.tensors.iter().zip(&mut into.tensors) {
        if tensor.shape.first() != Some(&(batch as i64)) || !tensor.data.len().is_multiple_of(batch) {
            return Err(Error::Output {
                tensor: tensor.name.clone(),
                reason: format!("shape {:?} does not hold a batch of {batch}", tensor.shape),
            });
        }
        let len = tensor.data.len() / batch;
        sliced.name.clone_from(&tensor.name);
        sliced.shape.clear();
        sliced.shape.push(1);
        sliced.shape.extend_from_slice(&tensor.shape[1..]);
        sliced.data.clear();
        sliced.data.extend_from_slice(&tensor.data[row * len..(row + 1) * len]);
    }
    Ok(())
}
