//! Several predictions of one source in one message, for sources that infer faster than one MQTT message per
//! input is worth (`[sources.batch]` in the agent's config). They go on the same topic as single predictions,
//! `<prefix>/predictions/<source>`: postcard tells them apart by the envelope's kind, JSON by the `predictions`
//! list a single prediction does not have. [`decode_predictions`] reads either.

use super::{Format, Message, MessageKind, Prediction, WireError, decode};
use crate::{ModelIdentity, Output, StageTimings};
use serde::{Deserialize, Serialize};

/// Consecutive predictions of one source made by one model, in `seq` order. What every prediction of the batch
/// shares is written once.
///
/// postcard body: `device`, `source`, `published_at_ms`, `model` (`name`, `version`, `sha256`), `provider`,
/// `predictions` (each a [`BatchedPrediction`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionBatch {
    pub device: String,
    pub source: String,
    /// When the batch was handed over for publishing: [`Prediction::published_at_ms`] of each of its predictions.
    pub published_at_ms: u64,
    /// The model that made every prediction of the batch (a model swap ends a batch).
    pub model: ModelIdentity,
    pub provider: String,
    pub predictions: Vec<BatchedPrediction>,
}

impl Message for PredictionBatch {
    const KIND: MessageKind = MessageKind::PredictionBatch;
}

/// A [`Prediction`] less what its batch holds once.
///
/// postcard body: `seq`, `captured_at_ms`, `output`, `latency_us`, `total_us`, `input`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchedPrediction {
    pub seq: u64,
    pub captured_at_ms: u64,
    pub output: Output,
    pub latency_us: StageTimings,
    pub total_us: u32,
    pub input: Option<String>,
}

impl PredictionBatch {
    /// The predictions as single messages would have carried them.
    pub fn into_predictions(self) -> Vec<Prediction> {
        let PredictionBatch { device, source, published_at_ms, model, provider, predictions } = self;
        predictions
            .into_iter()
            .map(|p| Prediction {
                device: device.clone(),
                source: source.clone(),
                seq: p.seq,
                captured_at_ms: p.captured_at_ms,
                published_at_ms,
                model: model.clone(),
                provider: provider.clone(),
                output: p.output,
                latency_us: p.latency_us,
                total_us: p.total_us,
                input: p.input,
            })
            .collect()
    }
}

/// Reads a message of a predictions topic: a single [`Prediction`] or a [`PredictionBatch`], in `seq` order.
pub fn decode_predictions(format: Format, bytes: &[u8]) -> Result<Vec<Prediction>, WireError> {
    let batched = match format {
        // Byte 1 is the envelope's kind; `decode` checks the version and the rest.
        Format::Postcard => bytes.get(1) == Some(&(MessageKind::PredictionBatch as u8)),
        // Only a batch has a `predictions` key; a shallow look is enough to pick the type to decode.
        Format::Json => serde_json::from_slice::<BatchShape>(bytes).is_ok_and(|shape| shape.predictions.is_some()),
    };
    if batched {
        Ok(decode::<PredictionBatch>(format, bytes)?.into_predictions())
    } else {
        Ok(vec![decode::<Prediction>(format, bytes)?])
    }
}

/// The one key that tells a JSON batch from a single prediction; the rest of the object is skipped unread.
#[derive(Deserialize)]
struct BatchShape {
    predictions: Option<serde::de::IgnoredAny>,
}
