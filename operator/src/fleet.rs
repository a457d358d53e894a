//! `edgectl fleet`: commands about many devices at once.

pub mod simulate;
