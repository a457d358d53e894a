//! The update topics a device subscribes to and what a message on each of them is. The agent and
//! `edgectl fleet simulate` both subscribe through this, so both read the same topics the same way.

use crate::effects::{Disk, Event};
use protocol::update::{UpdateTopics, parse_chunk_topic};

/// An update message as it arrived, before the device's thread takes it.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateMessage {
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
}

impl UpdateMessage {
    /// The machine's event for this message. `disk` and `wall_ms` are read when the thread takes the message (a
    /// queued announcement is judged against the disk as it is then); only announcements read the disk.
    pub fn into_event(self, disk: impl FnOnce() -> Disk, wall_ms: u64) -> Event {
        match self {
            UpdateMessage::Announce { base, payload } => Event::Announce { base, payload, disk: disk(), wall_ms },
            UpdateMessage::Chunk { id, index, payload } => Event::Chunk { id, index, payload },
            UpdateMessage::Command(payload) => Event::Command { payload, wall_ms },
        }
    }
}

/// One subscription of the device's update side: a topic filter and what arrives on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub filter: String,
    arrives: Arrives,
}

#[derive(Debug, Clone, PartialEq)]
enum Arrives {
    /// Announcements addressed to this base (the device's own, or one of its groups').
    Announce(UpdateTopics),
    Chunk,
    Command,
}

impl Subscription {
    /// The message on `topic` (a topic this subscription's filter matched); `None` for a chunk topic that does not
    /// parse.
    pub fn message(&self, topic: &str, payload: &[u8]) -> Option<UpdateMessage> {
        let payload = payload.to_vec();
        Some(match &self.arrives {
            Arrives::Announce(base) => UpdateMessage::Announce { base: base.clone(), payload },
            Arrives::Chunk => {
                let (id, index) = parse_chunk_topic(topic)?;
                UpdateMessage::Chunk { id: id.to_owned(), index, payload }
            }
            Arrives::Command => UpdateMessage::Command(payload),
        })
    }
}

/// The announce and chunk topics of the device and of each of its groups, and the device's command topic.
pub fn subscriptions(device: &UpdateTopics, groups: &[UpdateTopics]) -> Vec<Subscription> {
    let mut subscriptions = Vec::new();
    for base in std::iter::once(device).chain(groups) {
        subscriptions.push(Subscription { filter: base.announce(), arrives: Arrives::Announce(base.clone()) });
        subscriptions.push(Subscription { filter: base.chunk_filter(), arrives: Arrives::Chunk });
    }
    subscriptions.push(Subscription { filter: device.command(), arrives: Arrives::Command });
    subscriptions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_topic_gives_its_message() {
        let (device, lab) = (UpdateTopics::device("devices/d1"), UpdateTopics::group("lab"));
        let subscriptions = subscriptions(&device, std::slice::from_ref(&lab));
        let filters: Vec<&str> = subscriptions.iter().map(|subscription| subscription.filter.as_str()).collect();
        let expected = [device.announce(), device.chunk_filter(), lab.announce(), lab.chunk_filter(), device.command()];
        assert_eq!(filters, expected);
        let on = |filter: &str, topic: &str| {
            let subscription = subscriptions.iter().find(|subscription| subscription.filter == filter).expect(filter);
            subscription.message(topic, b"p")
        };
        assert_eq!(
            on(&lab.announce(), &lab.announce()),
            Some(UpdateMessage::Announce { base: lab.clone(), payload: b"p".to_vec() })
        );
        let chunk = format!("{}/7", lab.chunks("0123456789abcdef"));
        assert_eq!(
            on(&lab.chunk_filter(), &chunk),
            Some(UpdateMessage::Chunk { id: "0123456789abcdef".into(), index: 7, payload: b"p".to_vec() })
        );
        assert_eq!(on(&device.chunk_filter(), "devices/d1/update/chunk/x/notanumber"), None);
        assert_eq!(on(&device.command(), &device.command()), Some(UpdateMessage::Command(b"p".to_vec())));
    }
}
