//! The device side of the over-the-air update protocol, without IO: the [`machine`] takes [`effects::Event`]s
//! and the time, and returns [`effects::Action`]s for a shell to carry out. The agent's `update` thread is one
//! shell (slots, staging, pipelines on disk); `edgectl fleet simulate` is another (installs simulated, in
//! memory). `docs/updates.md` describes the protocol.

pub mod effects;
pub mod inbound;
pub mod judge;
pub mod machine;
pub mod progress;
pub mod settings;
