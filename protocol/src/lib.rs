//! The agent's wire protocol, shared by the agent, the operator tool (`edgectl`) and the tests: the MQTT topics
//! and payloads ([`wire`]), the decoded result of an inference ([`Output`]) and the over-the-air update
//! protocol's messages and states ([`update`]). Pure data and encoding: no IO, no clock, no threads.

pub mod error;
mod model;
mod output;
pub mod update;
pub mod wire;

pub use model::{ModelIdentity, StageTimings};
pub use output::{
    BoundingBox, ClassMask, ClassScore, Detection, Keypoint, Mask, Output, Point, RawTensor, StageOutput, StageResult,
    TensorDtype,
};
