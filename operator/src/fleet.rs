//! `edgectl fleet`: commands about many devices at once: what each device of a prefix or a group is doing,
//! from the messages the broker retains for them (`list`), and simulated devices (`simulate`).

mod list;
mod render;
pub mod simulate;
mod view;

pub use list::{ListArgs, main as list};
