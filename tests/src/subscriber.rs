//! A plain MQTT subscriber (rumqttc) that collects what arrives, for assertions.

use rumqttc::{Client, Event, MqttOptions, Outgoing, Packet, QoS};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// One message as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

impl Received {
    /// The payload as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or_else(|e| {
            panic!("{} is not JSON ({e}): {:?}", self.topic, String::from_utf8_lossy(&self.payload))
        })
    }
}

/// A client id unique within the process: a broker disconnects the older of two clients with one id.
fn fresh_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("test-sub-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A subscription on `127.0.0.1:<port>`. It subscribes again after a reconnect (so it outlives a broker restart
/// on the same port) and disconnects when dropped.
pub struct Subscriber {
    client: Client,
    messages: Receiver<Received>,
    stopped: Arc<AtomicBool>,
}

impl Subscriber {
    /// Subscribes to `filter` and waits until the broker acknowledged it.
    pub fn connect(port: u16, filter: &str) -> Subscriber {
        Subscriber::connect_as(port, filter, fresh_id(), true, QoS::AtLeastOnce)
    }

    /// As [`Subscriber::connect`], at QoS 0: for reading retained messages from a NATS node, where a QoS 1
    /// subscription is a JetStream consumer that can be placed on a node that died (docs/fleets.md).
    pub fn at_most_once(port: u16, filter: &str) -> Subscriber {
        Subscriber::connect_as(port, filter, fresh_id(), true, QoS::AtMostOnce)
    }

    /// A subscriber with a persistent session (clean session off, client id `id`): while it is away (the broker
    /// restarted, with persistence), the broker keeps its QoS 1 messages for it.
    pub fn persistent(port: u16, filter: &str, id: &str) -> Subscriber {
        Subscriber::connect_as(port, filter, id.to_owned(), false, QoS::AtLeastOnce)
    }

    fn connect_as(port: u16, filter: &str, id: String, clean_session: bool, qos: QoS) -> Subscriber {
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_clean_session(clean_session);
        options.set_keep_alive(Duration::from_secs(5));
        options.set_max_packet_size(16 << 20, 16 << 20);
        let (client, mut connection) = Client::new(options, 64);
        let (sender, messages) = channel();
        let (subscribed_tx, subscribed_rx) = channel();
        let stopped = Arc::new(AtomicBool::new(false));
        let (resubscribe, filter, stop) = (client.clone(), filter.to_owned(), stopped.clone());
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    // Sessions are clean: every (re)connection subscribes anew.
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = resubscribe.try_subscribe(filter.clone(), qos);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let message =
                            Received { topic: p.topic.clone(), payload: p.payload.to_vec(), retain: p.retain };
                        if sender.send(message).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
                    Ok(_) => {}
                    Err(_) if stop.load(Ordering::Relaxed) => return,
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        subscribed_rx.recv_timeout(Duration::from_secs(10)).expect("the broker acknowledges the subscription");
        Subscriber { client, messages, stopped }
    }

    /// The next message, if one arrives within `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<Received> {
        self.messages.recv_timeout(timeout).ok()
    }

    /// Collects messages until `done` holds for what was collected, or panics after `timeout` with what came.
    pub fn collect_until(&self, timeout: Duration, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        let mut collected = Vec::new();
        while !done(&collected) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out; got {} message(s): {:?}", collected.len(), summary(&collected));
            if let Some(message) = self.next(left.min(Duration::from_millis(200))) {
                collected.push(message);
            }
        }
        collected
    }

    /// Everything that arrives within `duration`.
    pub fn collect_for(&self, duration: Duration) -> Vec<Received> {
        let deadline = Instant::now() + duration;
        let mut collected = Vec::new();
        while let Some(message) = self.next(deadline.saturating_duration_since(Instant::now())) {
            collected.push(message);
        }
        collected
    }

    /// Waits for the first message on `topic` (retained ones included).
    pub fn first_on(&self, topic: &str, timeout: Duration) -> Received {
        let found = self.collect_until(timeout, |got| got.iter().any(|m| m.topic == topic));
        found.into_iter().find(|m| m.topic == topic).expect("found")
    }

    /// Publishes `payload` on `topic` at QoS 1 (to feed the agent's inbound sources).
    pub fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client.publish(topic, QoS::AtLeastOnce, false, payload.into()).expect("publish queued");
    }

    /// Disconnects.
    pub fn close(self) {}
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Relaxed);
        let _ = self.client.try_disconnect();
    }
}

/// The last few messages, shortened, for failure messages.
pub(crate) fn summary(messages: &[Received]) -> Vec<String> {
    messages[messages.len().saturating_sub(8)..]
        .iter()
        .map(|m| format!("{} {}", m.topic, String::from_utf8_lossy(&m.payload).chars().take(200).collect::<String>()))
        .collect()
}
