//! Over-the-air model updates on the device: the `update` thread, which takes announcements, chunks and
//! commands from MQTT, stages the package, verifies it, hands the new pipelines to the workers and judges
//! them on probation. `docs/updates.md` describes the procedure for users.
//!
//! The decisions are a pure state machine (the `device-update` crate's `machine`: events and the time in,
//! `effects` out); the thread (`updater`) is the shell that carries the effects out.
//!
//! ```text
//! mqtt ──(bounded, never blocks)──> update ──Swap──> worker-<name> (one per source of the model)
//!                                     │  <──old pipeline──┘
//!                                     ├── <state_dir>/staging/<id>/   the download in progress
//!                                     └── <state_dir>/models/<name>/  slots a and b, state.json
//! ```

mod boot;
pub(crate) mod fsutil;
pub mod probation;
mod slots;
mod staging;
mod updater;

pub use boot::ModelSlots;
pub(crate) use fsutil::available_space;
pub use updater::{ConfiguredCascade, ServedModel, UpdateQos, Updater, UpdaterParts, WorkerLink};

use crate::mqtt::Route;
use device_update::inbound::{UpdateMessage, subscriptions};
use device_update::{effects, machine, progress};
use protocol::update::UpdateTopics;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// Chunks (and announcements) waiting for the update thread. With the request window at its default of 16,
/// more than this means the thread is stuck verifying; the excess is dropped (and counted: a chunk is asked
/// for again later, a command must be sent again).
const EVENT_QUEUE: usize = 64;

/// What the MQTT thread hands to the update thread.
#[derive(Debug)]
pub enum UpdateEvent {
    Message(UpdateMessage),
    /// The agent stops.
    Stop,
}

/// The update thread's end of its channel, a sender that wakes it when the agent stops, and the count of
/// messages dropped because the channel was full.
pub struct Inbox {
    events: Receiver<UpdateEvent>,
    wake: SyncSender<UpdateEvent>,
    dropped: Arc<AtomicU64>,
}

/// The update thread's inbound routes: the device's own update topics and each group's. The channel is bounded
/// and never blocks the MQTT thread; what it drops is reported in the update status's `messages_dropped`.
pub fn routes(device: &UpdateTopics, groups: &[UpdateTopics]) -> (Vec<Route>, Inbox) {
    let (sender, receiver) = sync_channel(EVENT_QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    let routes = subscriptions(device, groups)
        .into_iter()
        .map(|subscription| {
            let topic = subscription.filter.clone();
            Route::to_queue(topic, &sender, &dropped, move |topic, payload| {
                subscription.message(topic, payload).map(UpdateEvent::Message)
            })
        })
        .collect();
    (routes, Inbox { events: receiver, wake: sender, dropped })
}
