//! The update protocol's inbound messages, decoded as the device (signed orders: announcements and commands)
//! and `edgectl` (chunk requests, statuses, memberships) decode them, and chunk topics as the device splits them.

use packaging::SigningKey;
use packaging::order::{open, seal};
use protocol::update::{ChunkRequest, Instruction, Membership, Order, UpdateStatus, parse_chunk_topic};
use std::sync::LazyLock;

/// The operator key the device trusts here, so that fuzzed orders can also get past the signature.
static KEY: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::generate().unwrap());

/// Opens `payload` as the device opens an envelope; a trusted order's announcement is read further.
fn open_as_device(payload: &[u8]) {
    if let Ok(opened) = open(payload, &[KEY.public_key()]) {
        if let Instruction::Announce(announcement) = &opened.order.instruction {
            announcement.chunk_count();
        }
    }
}

/// Panics where the product breaks a rule on `data`.
pub fn check(data: &[u8]) {
    // The first byte picks the message; the rest is the payload (or the topic).
    let Some((&selector, payload)) = data.split_first() else { return };
    match selector % 6 {
        // An envelope from anyone.
        0 => open_as_device(payload),
        // An order as a trusted operator would sign it.
        1 => {
            if let Ok(order) = serde_json::from_slice::<Order>(payload) {
                open_as_device(&serde_json::to_vec(&seal(&order, &KEY)).unwrap());
            }
        }
        2 => drop(serde_json::from_slice::<ChunkRequest>(payload)),
        3 => {
            if let Ok(status) = serde_json::from_slice::<UpdateStatus>(payload) {
                status.reason();
                status.state.as_str();
            }
        }
        4 => drop(serde_json::from_slice::<Membership>(payload)),
        _ => {
            let topic = String::from_utf8_lossy(payload);
            if let Some((id, _)) = parse_chunk_topic(&topic) {
                assert!(topic.contains(&format!("/update/chunk/{id}/")));
            }
        }
    }
}
