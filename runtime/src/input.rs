//! What goes into a pipeline: an encoded image, a raw frame or a window of sensor samples.

use crate::frame::Frame;

/// One input to a model, as a source delivers it.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// An encoded JPEG or PNG, decoded by the pipeline so that bad bytes are the pipeline's error to report.
    Image(Vec<u8>),
    /// A raw frame from a camera or a video decoder.
    Frame(Frame),
    /// A window of sensor samples.
    Sensor(SensorWindow),
}

impl Input {
    /// "image", "frame" or "sensor", for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Input::Image(_) => "image",
            Input::Frame(_) => "frame",
            Input::Sensor(_) => "sensor",
        }
    }
}

/// Samples of `channels` interleaved values, time-major: `values[t * channels + c]`, as rows of a CSV.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SensorWindow {
    /// Values per sample.
    pub channels: usize,
    /// The samples, time-major.
    pub values: Vec<f32>,
}

impl SensorWindow {
    /// Number of samples (rows) in the window; a ragged tail counts as a partial sample.
    pub fn samples(&self) -> usize {
        if self.channels == 0 { 0 } else { self.values.len().div_ceil(self.channels) }
    }
}
