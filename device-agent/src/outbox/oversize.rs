//! Predictions too large for one MQTT packet (`mqtt.max_packet_bytes`), such as a `raw` decoder's big tensors.
//! They are never handed to the spool or the link: rumqttc refuses to write such a packet and drops the
//! connection, and a spooled one would be retried forever ahead of everything behind it. Each becomes a
//! `payload_too_large` error event instead, counted in health; with `[large_payloads] store = true` the encoded
//! prediction is also kept on disk and the event names its file.

use crate::config::LargePayloadsConfig;
use crate::kept_files::KeptFiles;
use crate::mqtt::{QoS, publish_packet_bytes};
use protocol::wire::Format;

/// The packet limit predictions are held to, and where the ones over it are kept.
#[derive(Debug)]
pub struct PayloadLimit {
    max_packet_bytes: usize,
    store: Option<KeptFiles>,
}

impl PayloadLimit {
    /// No limit: for `device-agent infer`, which prints, and for tests of other things.
    pub fn none() -> PayloadLimit {
        PayloadLimit { max_packet_bytes: usize::MAX, store: None }
    }

    /// Source `source`'s limit: `max_packet_bytes`, and `[large_payloads]` for what is over it.
    pub fn new(max_packet_bytes: usize, large: &LargePayloadsConfig, source: &str, format: Format) -> PayloadLimit {
        let extension = match format {
            Format::Json => "json",
            Format::Postcard => "postcard",
        };
        let store = large
            .store
            .then(|| KeptFiles::new(large.dir.clone(), source, extension, large.keep_files, large.keep_bytes));
        PayloadLimit { max_packet_bytes, store }
    }

    /// Whether `payload_len` bytes on `topic` at `qos` fit one packet.
    pub fn fits(&self, topic: &str, qos: QoS, payload_len: usize) -> bool {
        publish_packet_bytes(topic, qos, payload_len) <= self.max_packet_bytes
    }

    /// Keeps `payload`, the prediction `seq` captured at `captured_at_ms`, when so configured; returns the error
    /// event's message.
    pub fn refuse(&self, topic: &str, qos: QoS, payload: &[u8], seq: u64, captured_at_ms: u64) -> String {
        let bytes = publish_packet_bytes(topic, qos, payload.len());
        let refused = format!(
            "the prediction is {bytes} bytes as an MQTT packet, over mqtt.max_packet_bytes ({}); not published",
            self.max_packet_bytes
        );
        match &self.store {
            None => refused,
            Some(store) => match store.store(captured_at_ms, seq, payload) {
                Ok(path) => format!("{refused}; stored as {}", path.display()),
                Err(error) => format!("{refused}; storing it failed: {error}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_fits_up_to_the_packet_limit() {
        let limit = PayloadLimit { max_packet_bytes: 1000, store: None };
        let topic = "devices/cam-01/predictions/front";
        // Payloads of 128 to 16383 bytes take two remaining-length bytes: the overhead is the same for all of them.
        let overhead = publish_packet_bytes(topic, QoS::AtLeastOnce, 200) - 200;
        assert!(limit.fits(topic, QoS::AtLeastOnce, 1000 - overhead));
        assert!(!limit.fits(topic, QoS::AtLeastOnce, 1000 - overhead + 1));
        assert!(PayloadLimit::none().fits(topic, QoS::AtLeastOnce, 1 << 30));
    }

    #[test]
    fn a_refused_payload_is_stored_when_configured_and_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let large = LargePayloadsConfig { store: true, dir: dir.path().to_owned(), ..LargePayloadsConfig::default() };
        let limit = PayloadLimit::new(1024, &large, "front", Format::Json);
        let payload = vec![b'x'; 2000];
        let message = limit.refuse("t", QoS::AtMostOnce, &payload, 7, 1_700_000_000_000);
        let path = dir.path().join("front-1700000000000-7.json");
        assert!(
            message.starts_with("the prediction is 2006 bytes as an MQTT packet, over mqtt.max_packet_bytes (1024)")
        );
        assert!(message.ends_with(&format!("; stored as {}", path.display())), "{message}");
        assert_eq!(std::fs::read(&path).expect("stored"), payload);

        let unstored = PayloadLimit::new(1024, &LargePayloadsConfig::default(), "front", Format::Json);
        assert!(unstored.refuse("t", QoS::AtMostOnce, &payload, 8, 1).ends_with("; not published"));
    }
}
