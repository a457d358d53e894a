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

use crate::mqtt::{QoS, Route};
use device_update::{effects, machine, progress};
use protocol::update::{UpdateTopics, parse_chunk_topic};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

/// Chunks (and announcements) waiting for the update thread. With the request window at its default of 16,
/// more than this means the thread is stuck verifying; the excess is dropped (and counted: a chunk is asked
/// for again later, a command must be sent again).
const EVENT_QUEUE: usize = 64;

/// What the MQTT thread hands to the update thread.
#[derive(Debug)]
pub enum UpdateEvent {
    /// An announcement that arrived on `base`'s announce topic.
    Announce {
        base: UpdateTopics,
        payload: Vec<u8>,
    },
    Chunk {
        id: String,
        index: u32,
        payload: Vec<u8>,
    },
    Command(Vec<u8>),
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
/// and never blocks the MQTT thread.
pub fn routes(device: &UpdateTopics, groups: &[UpdateTopics]) -> (Vec<Route>, Inbox) {
    let (sender, receiver) = sync_channel(EVENT_QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    let mut routes = Vec::new();
    for base in std::iter::once(device).chain(groups) {
        routes.push(route(base.announce(), &sender, &dropped, {
            let base = base.clone();
            move |_, payload| Some(UpdateEvent::Announce { base: base.clone(), payload: payload.to_vec() })
        }));
        routes.push(route(base.chunk_filter(), &sender, &dropped, |topic, payload| {
            let (id, index) = parse_chunk_topic(topic)?;
            Some(UpdateEvent::Chunk { id: id.to_owned(), index, payload: payload.to_vec() })
        }));
    }
    routes.push(route(device.command(), &sender, &dropped, |_, payload| Some(UpdateEvent::Command(payload.to_vec()))));
    (routes, Inbox { events: receiver, wake: sender, dropped })
}

fn route(
    topic: String,
    sender: &SyncSender<UpdateEvent>,
    dropped: &Arc<AtomicU64>,
    event: impl Fn(&str, &[u8]) -> Option<UpdateEvent> + Send + 'static,
) -> Route {
    let (sender, dropped) = (sender.clone(), dropped.clone());
    let sink = Box::new(move |topic: &str, payload: &[u8]| {
        let Some(event) = event(topic, payload) else {
            log::debug!("Ignoring a message on {topic}: not an update chunk topic.");
            return;
        };
        if let Err(TrySendError::Full(_)) = sender.try_send(event) {
            // Reported in the update status's `messages_dropped`.
            dropped.fetch_add(1, Ordering::Relaxed);
            log::debug!("Update queue full; a message on {topic} is dropped.");
        }
    });
    Route { topic, qos: QoS::AtLeastOnce, sink }
}
