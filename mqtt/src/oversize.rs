//! Inbound packets over `max_packet_bytes`. rumqttc refuses to read a packet over its read limit and drops the
//! connection; a retained message comes back at every subscription, so on its own that is a reconnect loop that
//! delivers nothing. The link learns the packet's size from that error and raises its read limit to it for the
//! next connections, never above `max_skipped_packet_bytes` (so memory stays bounded): the packet is then read,
//! and skipped here instead of being delivered, with the [`OversizeHook`] told. MQTT 3.1.1 has no way to tell the
//! broker our limit (MQTT 5's Maximum Packet Size would make the broker drop such packets itself).
//!
//! A packet above the ceiling cannot be read: the link reports it once per size (with no topic, which is inside
//! the unread packet) and retries at the longest backoff until someone clears it from the broker.

use rumqttc::{ConnectionError, MqttOptions, Publish, QoS, StateError, mqttbytes};

/// An inbound message the link did not deliver because it is over `max_packet_bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Oversized {
    /// The message's topic; `None` when it was above `max_skipped_packet_bytes`, so never read.
    pub topic: Option<String>,
    /// Its size as MQTT counts it against the limit (the packet's remaining length).
    pub bytes: usize,
    /// `max_packet_bytes`.
    pub limit: usize,
}

/// Called on the `mqtt` thread for each skipped message (it must not block).
pub type OversizeHook = Box<dyn FnMut(&Oversized) + Send>;

/// What the link does after a read refused an oversize packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The read limit now covers it: reconnect as usual, the packet will be read and skipped.
    Readable,
    /// It is above the ceiling: reconnect slowly, it will be refused again.
    AboveCeiling,
}

/// The link's read limit and what it does with packets over `max_packet_bytes`.
pub(crate) struct Oversize {
    limit: usize,
    ceiling: usize,
    /// The read limit of the next connections: `limit`, raised to the largest oversize packet met.
    reading: usize,
    /// The last size refused above the ceiling, reported once.
    unreadable: Option<usize>,
    hook: Option<OversizeHook>,
}

impl Oversize {
    pub(crate) fn new(limit: usize, ceiling: usize) -> Oversize {
        Oversize { limit, ceiling: ceiling.max(limit), reading: limit, unreadable: None, hook: None }
    }

    pub(crate) fn set_hook(&mut self, hook: OversizeHook) {
        self.hook = Some(hook);
    }

    /// The size of the packet a read refused, when that is why the connection broke.
    pub(crate) fn refused_size(error: &ConnectionError) -> Option<usize> {
        match error {
            ConnectionError::MqttState(StateError::Deserialization(mqttbytes::Error::PayloadSizeLimitExceeded(
                bytes,
            ))) => Some(*bytes),
            _ => None,
        }
    }

    /// A read refused a packet of `bytes`: raises the read limit of the next connections in `options` to it, or
    /// reports it once when it is above the ceiling.
    pub(crate) fn refused(&mut self, bytes: usize, options: &mut MqttOptions) -> Refusal {
        if bytes <= self.ceiling {
            self.reading = self.reading.max(bytes);
            self.apply_read_limit(options);
            return Refusal::Readable;
        }
        if self.unreadable != Some(bytes) {
            self.unreadable = Some(bytes);
            self.report(Oversized { topic: None, bytes, limit: self.limit });
        }
        Refusal::AboveCeiling
    }

    /// Sets the read limit of the next connections on `options` (also on the options of a broker failed over to).
    pub(crate) fn apply_read_limit(&self, options: &mut MqttOptions) {
        options.set_max_packet_size(self.reading, self.limit);
    }

    /// Whether `publish` is over the limit; if so it is reported, and must not be delivered.
    pub(crate) fn skipped(&mut self, publish: &Publish) -> bool {
        let bytes = remaining_length(publish);
        if bytes <= self.limit {
            return false;
        }
        self.report(Oversized { topic: Some(publish.topic.clone()), bytes, limit: self.limit });
        true
    }

    fn report(&mut self, oversized: Oversized) {
        match &oversized.topic {
            Some(topic) => log::warn!(
                "Skipped an inbound MQTT message of {} bytes on {topic}: over the {}-byte packet limit.",
                oversized.bytes,
                oversized.limit
            ),
            None => log::error!(
                "An inbound MQTT packet of {} bytes is over the {}-byte limit for skipped packets, so it cannot \
                 even be read; nothing arrives until it is cleared from the broker.",
                oversized.bytes,
                self.ceiling
            ),
        }
        if let Some(hook) = &mut self.hook {
            hook(&oversized);
        }
    }
}

/// What MQTT 3.1.1 checks against the packet limit: the topic with its length, the packet id at QoS >= 1, and
/// the payload (rumqttc compares the fixed header's remaining length).
fn remaining_length(publish: &Publish) -> usize {
    let packet_id = if publish.qos == QoS::AtMostOnce { 0 } else { 2 };
    2 + publish.topic.len() + packet_id + publish.payload.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn recording(oversize: &mut Oversize) -> Arc<Mutex<Vec<Oversized>>> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        oversize.set_hook(Box::new(move |oversized| sink.lock().expect("lock").push(oversized.clone())));
        seen
    }

    fn refusal(bytes: usize) -> ConnectionError {
        let error = mqttbytes::Error::PayloadSizeLimitExceeded(bytes);
        ConnectionError::MqttState(StateError::Deserialization(error))
    }

    #[test]
    fn only_a_size_refusal_has_a_size() {
        assert_eq!(Oversize::refused_size(&refusal(5000)), Some(5000));
        assert_eq!(Oversize::refused_size(&ConnectionError::MqttState(StateError::AwaitPingResp)), None);
        assert_eq!(Oversize::refused_size(&ConnectionError::NetworkTimeout), None);
    }

    #[test]
    fn the_read_limit_rises_to_the_largest_refusal_up_to_the_ceiling() {
        let mut oversize = Oversize::new(1000, 8000);
        let seen = recording(&mut oversize);
        let mut options = MqttOptions::new("c", "h", 1883);
        options.set_max_packet_size(1000, 1000);
        assert_eq!(oversize.refused(3000, &mut options), Refusal::Readable);
        assert_eq!(options.max_packet_size(), 3000);
        assert_eq!(oversize.refused(2000, &mut options), Refusal::Readable);
        assert_eq!(options.max_packet_size(), 3000, "never lowered");
        assert_eq!(oversize.refused(8000, &mut options), Refusal::Readable);
        assert_eq!(options.max_packet_size(), 8000);
        assert!(seen.lock().expect("lock").is_empty(), "readable packets are reported when skipped");

        assert_eq!(oversize.refused(8001, &mut options), Refusal::AboveCeiling);
        assert_eq!(oversize.refused(8001, &mut options), Refusal::AboveCeiling);
        assert_eq!(options.max_packet_size(), 8000);
        assert_eq!(*seen.lock().expect("lock"), [Oversized { topic: None, bytes: 8001, limit: 1000 }], "once");
    }

    #[test]
    fn messages_over_the_limit_are_skipped_and_reported() {
        let mut oversize = Oversize::new(100, 1000);
        let seen = recording(&mut oversize);
        // Remaining length at QoS 1: 2 + 5 (topic) + 2 (packet id) + payload.
        let at_limit = Publish::new("a/b/c", QoS::AtLeastOnce, vec![0; 91]);
        assert!(!oversize.skipped(&at_limit));
        let over = Publish::new("a/b/c", QoS::AtLeastOnce, vec![0; 92]);
        assert!(oversize.skipped(&over));
        // At QoS 0 there is no packet id.
        assert!(!oversize.skipped(&Publish::new("a/b/c", QoS::AtMostOnce, vec![0; 93])));
        assert_eq!(*seen.lock().expect("lock"), [Oversized { topic: Some("a/b/c".into()), bytes: 101, limit: 100 }]);
    }
}
