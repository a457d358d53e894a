//! [`MqttHandle`]: publishes and subscribes through the link, and shuts it down.

use crate::shared::{Kept, Shared, Stop, lock};
use crate::{LinkOptions, Liveness, Presence, Route, unix_time_ms};
use rumqttc::QoS;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Keeps a quarter of a shutdown's time (at most this) for the thread to end.
const CLOSE_RESERVE: Duration = Duration::from_millis(200);

/// Why a publish or subscription was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The request queue is full: the broker is slow or away.
    #[error("MQTT request queue is full")]
    QueueFull,
    /// The link is shutting down or its thread has ended.
    #[error("MQTT link is closed")]
    Closed,
    /// Not a valid MQTT topic name (empty, or with wildcards), or not a valid filter.
    #[error("invalid MQTT topic")]
    InvalidTopic,
    /// The publish packet would be over `max_packet_bytes`: rumqttc would refuse to write it and drop the
    /// connection, so it is refused here instead.
    #[error("the message is {bytes} bytes as an MQTT packet, over mqtt.max_packet_bytes ({limit})")]
    TooLarge { bytes: usize, limit: usize },
}

/// The size of a PUBLISH packet of `payload_len` bytes on `topic` as rumqttc counts it against the outgoing
/// limit: fixed header, remaining-length bytes, topic, packet id (QoS 1 and 2) and payload.
pub fn publish_packet_bytes(topic: &str, qos: QoS, payload_len: usize) -> usize {
    let packet_id = if qos == QoS::AtMostOnce { 0 } else { 2 };
    let remaining = 2 + topic.len() + packet_id + payload_len;
    let length_bytes = match remaining {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    1 + length_bytes + remaining
}

/// Why [`MqttHandle::wait_connected`] gave up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The first attempt failed (the link keeps retrying).
    #[error("{0}")]
    Failed(String),
    #[error("no answer within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("MQTT link is closed")]
    Closed,
}

/// What [`MqttHandle::shutdown`] achieved before its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// QoS >= 1 publishes (the `offline` status included) still unacknowledged at the end.
    pub unacked: u64,
    /// Whether the `mqtt` thread has ended, so joining it won't wait.
    pub closed: bool,
}

/// Publishes through the link; cheap to clone, never blocks unless a method says it waits.
#[derive(Clone)]
pub struct MqttHandle {
    client: rumqttc::Client,
    shared: Arc<Shared>,
    presence: Option<Presence>,
    max_packet_bytes: usize,
    subscription_qos: QoS,
    /// How many brokers the link has: a first connection has failed once each has been tried.
    brokers: u64,
}

impl MqttHandle {
    pub(crate) fn new(
        client: rumqttc::Client,
        shared: Arc<Shared>,
        options: &LinkOptions,
        brokers: usize,
    ) -> MqttHandle {
        let (presence, max_packet_bytes, subscription_qos) =
            (options.presence.clone(), options.max_packet_bytes, options.subscription_qos);
        MqttHandle { client, shared, presence, max_packet_bytes, subscription_qos, brokers: brokers as u64 }
    }

    /// `max_packet_bytes`: the largest publish packet the link sends.
    pub fn max_packet_bytes(&self) -> usize {
        self.max_packet_bytes
    }

    /// Queues a publish. `Ok` means queued, not delivered: QoS >= 1 publishes are counted until acked
    /// (see [`MqttHandle::shutdown`]).
    pub fn try_publish(&self, topic: String, qos: QoS, retain: bool, payload: Vec<u8>) -> Result<(), PublishError> {
        self.enqueue(topic, qos, retain, payload, None)
    }

    /// Queues a publish whose fate is reported, with `token`, to the observer given to
    /// [`PendingLink::on_outcome`](crate::PendingLink::on_outcome): [`Acknowledged`](crate::Outcome::Acknowledged) once the broker
    /// acknowledged it (at QoS 0: once written), [`Lost`](crate::Outcome::Lost) when a clean-session reconnect discarded it.
    /// Exactly one outcome per token queued (`Ok`); none after a refusal, nor for what is still queued when the
    /// link shuts down.
    pub fn try_publish_tracked(
        &self,
        topic: String,
        qos: QoS,
        retain: bool,
        payload: Vec<u8>,
        token: u64,
    ) -> Result<(), PublishError> {
        self.enqueue(topic, qos, retain, payload, Some(token))
    }

    fn enqueue(
        &self,
        topic: String,
        qos: QoS,
        retain: bool,
        payload: Vec<u8>,
        token: Option<u64>,
    ) -> Result<(), PublishError> {
        if self.shared.is_closing() {
            return Err(PublishError::Closed);
        }
        if !rumqttc::valid_topic(&topic) {
            return Err(PublishError::InvalidTopic);
        }
        let bytes = publish_packet_bytes(&topic, qos, payload.len());
        if bytes > self.max_packet_bytes {
            return Err(PublishError::TooLarge { bytes, limit: self.max_packet_bytes });
        }
        let counted = qos != QoS::AtMostOnce;
        if counted {
            self.shared.ledger.accept();
        }
        // Held while queueing: the link pops one entry per publish rumqttc writes, in queue order.
        let mut queued = lock(&self.shared.queued);
        queued.push_back(token);
        match self.client.try_publish(topic, qos, retain, payload) {
            Ok(()) => Ok(()),
            Err(_) => {
                queued.pop_back();
                drop(queued);
                if counted {
                    self.shared.ledger.withdraw();
                }
                Err(self.refusal())
            }
        }
    }

    /// Keeps `payload` as the retained message of `topic` on whichever broker the link is connected to: published
    /// now when connected, and again after every ConnAck (after the subscriptions and the `online` status),
    /// since a clean session, another broker or another node of a cluster may not have it. Replaces what was
    /// kept for `topic`. A refusal now (a full queue) is no loss: the next connect publishes it.
    pub fn retain_on_connect(&self, topic: &str, qos: QoS, payload: Vec<u8>) -> Result<(), PublishError> {
        if !rumqttc::valid_topic(topic) {
            return Err(PublishError::InvalidTopic);
        }
        let bytes = publish_packet_bytes(topic, qos, payload.len());
        if bytes > self.max_packet_bytes {
            return Err(PublishError::TooLarge { bytes, limit: self.max_packet_bytes });
        }
        // Held while publishing: two callers for one topic leave the broker with the payload kept last.
        let mut kept = lock(&self.shared.kept);
        let message = Kept { topic: topic.to_owned(), qos, payload };
        match kept.iter_mut().find(|kept| kept.topic == topic) {
            Some(slot) => *slot = message.clone(),
            None => kept.push(message.clone()),
        }
        if !self.shared.is_connected() {
            return Ok(());
        }
        self.try_publish(message.topic, qos, true, message.payload)
    }

    /// Queues a publish, waiting while the queue is full (the broker is slow or away), but not past `deadline`.
    pub fn publish_until(
        &self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: &[u8],
        deadline: Instant,
    ) -> Result<(), PublishError> {
        self.publish_while(topic, qos, retain, payload, deadline, || true)
    }

    /// Queues a publish, waiting for room while the broker is connected (it is only slower than the publisher),
    /// but not past `deadline`; while the link is down, a full queue refuses at once.
    pub fn publish_while_connected(
        &self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: &[u8],
        deadline: Instant,
    ) -> Result<(), PublishError> {
        self.publish_while(topic, qos, retain, payload, deadline, || self.shared.is_connected())
    }

    /// Queues a publish, waiting for room in the queue while `worth_waiting` holds, until `deadline`.
    fn publish_while(
        &self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: &[u8],
        deadline: Instant,
        worth_waiting: impl Fn() -> bool,
    ) -> Result<(), PublishError> {
        let mut result = Err(PublishError::QueueFull);
        self.shared.wait_until(deadline, || {
            result = self.try_publish(topic.to_owned(), qos, retain, payload.to_vec());
            result != Err(PublishError::QueueFull) || !worth_waiting()
        });
        result
    }

    /// Subscribes `route` now and after every reconnect (sessions are clean).
    pub fn subscribe(&self, route: Route) -> Result<(), PublishError> {
        if !rumqttc::valid_filter(&route.topic) {
            return Err(PublishError::InvalidTopic);
        }
        let topic = route.topic.clone();
        lock(&self.shared.routes).push(route);
        // While the broker is away this waits in the queue, and the ConnAck subscribes all routes anyway.
        self.client.try_subscribe(topic, self.subscription_qos).map_err(|_| self.refusal())
    }

    /// Stops delivering `topic`'s messages and unsubscribes from it.
    pub fn unsubscribe(&self, topic: &str) -> Result<(), PublishError> {
        lock(&self.shared.routes).retain(|route| route.topic != topic);
        self.client.try_unsubscribe(topic).map_err(|_| self.refusal())
    }

    /// Waits until a broker accepts the connection. Once an attempt on each broker has failed, the last failure
    /// is the error: a wrong address or password will not fix itself. The link keeps trying in the background
    /// either way.
    pub fn wait_connected(&self, timeout: Duration) -> Result<(), ConnectError> {
        let mut failure = None;
        let connected = self.shared.wait_until(Instant::now() + timeout, || {
            failure = self.shared.failure_after(self.brokers);
            self.shared.is_connected() || failure.is_some() || self.shared.is_closed()
        });
        match (self.shared.is_connected(), failure) {
            (true, _) => Ok(()),
            (false, Some(error)) => Err(ConnectError::Failed(error)),
            (false, None) if connected => Err(ConnectError::Closed),
            (false, None) => Err(ConnectError::Timeout(timeout)),
        }
    }

    /// Reconnections since start (the first connection is not one).
    pub fn reconnects(&self) -> u64 {
        self.shared.reconnects()
    }

    /// Events (packets, connection changes) the link thread has handled since it started: a count that stops
    /// moving only while the thread is stuck, for a supervisor to tell a wedged link from a quiet one.
    pub fn events_handled(&self) -> u64 {
        self.shared.events()
    }

    /// Whether the broker has accepted the current connection.
    pub fn is_connected(&self) -> bool {
        self.shared.is_connected()
    }

    /// Publishes the retained `offline` status (with a [`Presence`]), waits until every QoS >= 1 publish is
    /// acknowledged, then disconnects cleanly (so the broker drops the last will) and waits for the `mqtt` thread
    /// to end, all within `timeout`. Stop the publishers first: what they queue after this call is refused.
    ///
    /// Waiting for acks stops early when the broker is away: a clean session would discard what is in flight
    /// anyway. A quarter of `timeout` (at most 200 ms) is kept for the thread to end. A thread stuck in a
    /// connection attempt or on a silent connection can outlive the deadline (up to the keep-alive), so join it
    /// only when the report says it has `closed`.
    pub fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        let deadline = Instant::now() + timeout;
        let drain_deadline = deadline - (timeout / 4).min(CLOSE_RESERVE);
        let draining = || self.shared.is_connected() && !self.shared.is_closed();
        if let Some(presence) = &self.presence {
            self.publish_offline(presence, drain_deadline);
        }
        self.shared.wait_until(drain_deadline, || self.shared.ledger.outstanding() == 0 || !draining());
        self.shared.start_closing();
        let stop = match self.client.try_disconnect() {
            Ok(()) => Stop::AfterDisconnect,
            Err(_) => Stop::Now,
        };
        self.shared.request_stop(stop);
        self.shared.wait_until(deadline, || self.shared.is_closed());
        if !self.shared.is_closed() {
            self.shared.request_stop(Stop::Now);
        }
        ShutdownReport { unacked: self.shared.ledger.outstanding(), closed: self.shared.is_closed() }
    }

    fn publish_offline(&self, presence: &Presence, deadline: Instant) {
        let payload = match presence.encode(Liveness::Offline, Some(unix_time_ms())) {
            Ok(payload) => payload,
            Err(e) => {
                log::warn!("Encoding the offline status failed: {e}.");
                return;
            }
        };
        // The queue may be full of messages: wait for room while they still move.
        let result =
            self.publish_while(&presence.topic, presence.qos, true, &payload, deadline, || self.shared.is_connected());
        if let Err(e) = result {
            log::warn!("The offline status was not published: {e}.");
        }
    }

    /// Why rumqttc refused a request: it reports a full queue and a dropped connection alike; the link knows which.
    fn refusal(&self) -> PublishError {
        if self.shared.is_closing() { PublishError::Closed } else { PublishError::QueueFull }
    }

    /// Ends the thread without a Disconnect, as a crash would (the broker then publishes the last will).
    #[cfg(test)]
    pub(crate) fn crash(&self) {
        self.shared.request_stop(Stop::Now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_packet_bytes_is_the_size_rumqttc_checks() {
        for payload_len in [0, 1, 100, 124, 125, 126, 16_000, 16_380, 16_400, 2_097_000, 2_097_200] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                let mut publish = rumqttc::Publish::new("devices/cam-01/predictions/front", qos, vec![0; payload_len]);
                // rumqttc counts the packet id once one is assigned, as it is before the packet is written.
                publish.pkid = u16::from(qos != QoS::AtMostOnce);
                let got = publish_packet_bytes("devices/cam-01/predictions/front", qos, payload_len);
                assert_eq!(got, publish.size(), "{payload_len} bytes at {qos:?}");
            }
        }
    }
}
