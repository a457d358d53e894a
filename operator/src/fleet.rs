//! `fleet`: what every device of a prefix or a group is doing, from the messages the broker retains for them.

mod list;
mod render;
mod view;

pub use list::{ListArgs, main as list};
