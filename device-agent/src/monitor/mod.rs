//! The model monitor of a source (`[[monitors]]`): drift of its inputs and outputs against the bundle's
//! reference profile, alerts with hysteresis, accuracy from feedback, and evidence kept for retraining.

pub mod evidence;
pub mod feedback;
