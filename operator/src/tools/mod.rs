//! The workstation side of over-the-air updates: keys, packages, signatures, and pushing them over MQTT.

pub mod keygen;
pub mod pack;
pub mod push;
pub mod sign;
