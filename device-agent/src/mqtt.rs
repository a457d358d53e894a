//! The agent's side of the shared MQTT link (the `mqtt` crate): its options from `[mqtt]`, with the config keys
//! in error messages, the device's retained status as the link's presence, and the report of inbound messages
//! skipped for their size.

pub use ::mqtt::{
    MqttHandle, Outcome, OutcomeObserver, PendingLink, PublishError, QoS, Route, Sink, publish_packet_bytes, qos,
};

use crate::AGENT_VERSION;
use crate::config::{AgentConfig, MqttConfig, TlsConfig};
use crate::health::Metrics;
use crate::outbox::error_event;
use ::mqtt::{
    ClientAuth, Credentials, EncodeError, LinkOptions, Liveness, Named, OversizeHook, Oversized, Password, Presence,
    StatusPayload,
};
use anyhow::{Result, anyhow};
use protocol::error::{ErrorKind, ErrorStage};
use protocol::wire::{self, State, Status};
use std::sync::Arc;
use std::time::Duration;

/// The link for `config`, not yet connected: the outboxes take the handle, the routes come later.
pub fn connect(config: &AgentConfig) -> Result<(MqttHandle, PendingLink)> {
    Ok(::mqtt::connect(link_options(config)?)?)
}

/// Builds the link's options without connecting: what `run --check` uses to find unreadable TLS or password
/// files before the agent is started for real.
pub fn check(config: &AgentConfig) -> Result<()> {
    Ok(link_options(config)?.check()?)
}

fn link_options(config: &AgentConfig) -> Result<LinkOptions> {
    let mqtt = &config.mqtt;
    let presence = Presence {
        topic: config.topics().status(),
        qos: qos(mqtt.qos.status),
        payload: Arc::new(DeviceStatus { format: mqtt.format, device: config.device_id.clone() }),
    };
    Ok(LinkOptions {
        client_id: config.mqtt_client_id().to_owned(),
        brokers: mqtt.brokers(),
        keep_alive: Duration::from_secs(mqtt.keep_alive_secs),
        connect_timeout: Duration::from_secs(mqtt.connect_timeout_secs),
        max_packet_bytes: mqtt.max_packet_bytes,
        max_skipped_packet_bytes: mqtt.max_skipped_packet_bytes,
        queue_capacity: mqtt.queue_capacity,
        credentials: mqtt.username.as_ref().map(|username| credentials(username, mqtt)),
        tls: mqtt.tls.as_ref().map(tls_options).transpose()?,
        presence: Some(presence),
        subscription_qos: qos(mqtt.qos.subscriptions),
    })
}

/// The source name of the link's own error events, on `<prefix>/errors/mqtt`.
pub const LINK_SOURCE: &str = "mqtt";

/// Counts each inbound message the link skipped for its size (health's `mqtt_oversized`) and reports it as an
/// error event of source `mqtt`, stage `source`, kind `message_too_large`, with the topic as its input.
pub fn oversize_hook(config: &AgentConfig, link: MqttHandle, metrics: Arc<Metrics>) -> OversizeHook {
    let (device, format) = (config.device_id.clone(), config.mqtt.format);
    let (topic, errors_qos) = (config.topics().errors(LINK_SOURCE), qos(config.mqtt.qos.errors));
    Box::new(move |oversized: &Oversized| {
        let seq = metrics.count_mqtt_oversized();
        let message = match &oversized.topic {
            Some(_) => format!(
                "an inbound message of {} bytes is over mqtt.max_packet_bytes ({}); skipped",
                oversized.bytes, oversized.limit
            ),
            None => format!(
                "an inbound message of {} bytes is over mqtt.max_skipped_packet_bytes too, so it cannot be read; \
                 nothing arrives until it is cleared from the broker",
                oversized.bytes
            ),
        };
        let origin = oversized.topic.as_deref().unwrap_or_default();
        let event =
            error_event(&device, LINK_SOURCE, seq, ErrorStage::Source, ErrorKind::MessageTooLarge, &message, origin);
        // On the mqtt thread: never wait. A full queue loses the event, not the count.
        let published = wire::encode(format, &event)
            .map_err(|e| e.to_string())
            .and_then(|payload| link.try_publish(topic.clone(), errors_qos, false, payload).map_err(|e| e.to_string()));
        if let Err(error) = published {
            log::debug!("The oversize message's error event was not published: {error}.");
        }
    })
}

/// `password`, or the content of `password_file`; empty when neither is set.
fn credentials(username: &str, mqtt: &MqttConfig) -> Credentials {
    let password = match (&mqtt.password, &mqtt.password_file) {
        (_, Some(path)) => Password::File(Named::new("mqtt.password_file", path.clone())),
        (password, None) => Password::Inline(password.clone().unwrap_or_default()),
    };
    Credentials { username: username.to_owned(), password }
}

fn tls_options(tls: &TlsConfig) -> Result<::mqtt::TlsOptions> {
    // The config check guarantees these; the same rules, stated for direct callers.
    let ca_file = tls.ca_file.clone().ok_or_else(|| anyhow!("mqtt.tls.ca_file is required"))?;
    let client = match (&tls.client_cert_file, &tls.client_key_file) {
        (Some(cert), Some(key)) => Some(ClientAuth {
            cert: Named::new("mqtt.tls.client_cert_file", cert.clone()),
            key: Named::new("mqtt.tls.client_key_file", key.clone()),
        }),
        (None, None) => None,
        _ => return Err(anyhow!("mqtt.tls.client_cert_file and client_key_file go together")),
    };
    Ok(::mqtt::TlsOptions {
        ca: Named::new("mqtt.tls.ca_file", ca_file),
        client,
        server_name: tls.server_name.clone().map(|name| Named::new("mqtt.tls.server_name", name)),
    })
}

/// The device's retained [`Status`], in the configured format.
struct DeviceStatus {
    format: wire::Format,
    device: String,
}

impl StatusPayload for DeviceStatus {
    fn encode(&self, liveness: Liveness, since_ms: Option<u64>) -> Result<Vec<u8>, EncodeError> {
        let state = match liveness {
            Liveness::Online => State::Online,
            Liveness::Offline => State::Offline,
        };
        let status = Status { state, device: self.device.clone(), agent_version: AGENT_VERSION.into(), since_ms };
        Ok(wire::encode(self.format, &status)?)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ::mqtt::testing::{Broker, Pki, Subscriber};
    use std::time::Duration;

    fn config(extra: &str) -> AgentConfig {
        let text = format!(
            "device_id = \"cam-01\"\n[[sources]]\nname = \"s\"\nmodel = \"m\"\nkind = \"images\"\npath = \"p\"\n{extra}"
        );
        AgentConfig::parse(&text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn error_text(config: &AgentConfig) -> String {
        match check(config) {
            Ok(()) => panic!("expected an error"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn errors_name_the_config_keys() {
        let missing = config("[mqtt]\nusername = \"agent\"\npassword_file = \"/nonexistent/password\"\n");
        assert!(error_text(&missing).starts_with("mqtt.password_file: reading /nonexistent/password: "));
        let missing_ca = error_text(&config("[mqtt.tls]\nca_file = \"/nonexistent/ca.pem\"\n"));
        assert!(missing_ca.starts_with("mqtt.tls.ca_file: reading /nonexistent/ca.pem: "), "{missing_ca}");

        let pki = Pki::generate();
        let bad_name = config(&format!("[mqtt.tls]\nca_file = {:?}\nserver_name = \"not a name!\"\n", pki.ca));
        assert_eq!(error_text(&bad_name), "mqtt.tls.server_name \"not a name!\": not a DNS name or IP address");
        let keys = |key: &std::path::Path| {
            let files = format!("client_cert_file = {:?}\nclient_key_file = {key:?}\n", pki.client_cert);
            config(&format!("[mqtt.tls]\nca_file = {:?}\n{files}", pki.ca))
        };
        let mismatch = error_text(&keys(&pki.server_key));
        assert!(mismatch.starts_with("mqtt.tls.client_cert_file "), "{mismatch}");
        assert!(mismatch.contains(" and mqtt.tls.client_key_file "), "{mismatch}");
        assert!(check(&keys(&pki.client_key)).is_ok());
    }

    #[test]
    fn presence_is_the_device_status() {
        let broker = Broker::start(None);
        let config = agent_config(&broker, "presence-1", "format = \"postcard\"");
        let (handle, pending) = connect(&config).expect("valid");
        let thread = pending.start(Vec::new()).expect("link starts");
        handle.wait_connected(Duration::from_secs(10)).expect("connected");
        let mut online = Vec::new();
        ::mqtt::testing::wait_for("the online status", || {
            online = broker.retained("devices/presence-1/status").unwrap_or_default();
            !online.is_empty()
        });
        let status: Status = wire::decode(wire::Format::Postcard, &online).expect("a postcard status");
        assert_eq!(
            (status.state, status.device.as_str(), status.agent_version.as_str()),
            (State::Online, "presence-1", AGENT_VERSION)
        );
        assert!(status.since_ms.is_some());
        assert!(handle.shutdown(Duration::from_secs(5)).closed);
        thread.join().expect("mqtt thread ends");
    }

    #[test]
    fn skipped_messages_are_counted_and_reported_on_the_links_errors_topic() {
        let broker = Broker::start(None);
        let config = agent_config(&broker, "oversize-1", "");
        let (handle, pending) = connect(&config).expect("valid");
        let thread = pending.start(Vec::new()).expect("link starts");
        handle.wait_connected(Duration::from_secs(10)).expect("connected");
        let subscriber = Subscriber::start(&broker, "devices/oversize-1/errors/mqtt", "devices/oversize-1/errors/mqtt");
        let metrics = Arc::new(Metrics::new());
        let mut hook = oversize_hook(&config, handle.clone(), metrics.clone());

        hook(&Oversized { topic: Some("devices/oversize-1/frames/door".into()), bytes: 5000, limit: 4096 });
        hook(&Oversized { topic: None, bytes: 9000, limit: 4096 });
        assert_eq!(metrics.mqtt_oversized(), 2);
        let event = |(topic, payload): (String, String)| {
            assert_eq!(topic, "devices/oversize-1/errors/mqtt");
            serde_json::from_str::<wire::ErrorEvent>(&payload).expect("an error event")
        };
        let skipped = event(subscriber.next_message());
        assert_eq!((skipped.source.as_str(), skipped.seq), ("mqtt", 1));
        assert_eq!((skipped.stage, skipped.kind), (ErrorStage::Source, ErrorKind::MessageTooLarge));
        assert_eq!(skipped.input.as_deref(), Some("devices/oversize-1/frames/door"));
        assert_eq!(skipped.message, "an inbound message of 5000 bytes is over mqtt.max_packet_bytes (4096); skipped");
        let unreadable = event(subscriber.next_message());
        assert_eq!((unreadable.seq, unreadable.input), (2, None));
        assert!(unreadable.message.contains("cannot be read"), "{}", unreadable.message);
        assert!(handle.shutdown(Duration::from_secs(5)).closed);
        thread.join().expect("mqtt thread ends");
    }

    /// A config for `broker`'s plain listener (the health tests use it too).
    pub(crate) fn agent_config(broker: &Broker, device: &str, mqtt_keys: &str) -> AgentConfig {
        let text = format!(
            "device_id = \"{device}\"\n[mqtt]\nport = {}\nkeep_alive_secs = 5\n{mqtt_keys}\n\
             [[sources]]\nname = \"s\"\nmodel = \"m\"\nkind = \"images\"\npath = \"p\"\n",
            broker.port()
        );
        AgentConfig::parse(&text).unwrap_or_else(|e| panic!("{e}"))
    }
}
