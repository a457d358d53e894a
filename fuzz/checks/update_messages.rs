//! The update protocol's inbound messages, decoded as the device (announcements, commands) and `edgectl`
//! (chunk requests, statuses, memberships) decode them, and chunk topics as the device splits them.

use protocol::update::{Announcement, ChunkRequest, Membership, UpdateCommand, UpdateStatus, parse_chunk_topic};

/// Panics where the product breaks a rule on `data`.
pub fn check(data: &[u8]) {
    // The first byte picks the message; the rest is the payload (or the topic).
    let Some((&selector, payload)) = data.split_first() else { return };
    match selector % 6 {
        0 => {
            if let Ok(announcement) = serde_json::from_slice::<Announcement>(payload) {
                announcement.chunk_count();
            }
        }
        1 => drop(serde_json::from_slice::<UpdateCommand>(payload)),
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
