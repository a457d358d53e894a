//! The MQTT link: one named thread (`mqtt`) polling rumqttc's synchronous `Connection` (which runs its own
//! current-thread runtime), and cloneable [`MqttHandle`]s that queue publishes without ever blocking.
//!
//! - **Backpressure** is rumqttc's bounded request queue (`mqtt.queue_capacity`): a full queue is
//!   [`PublishError::QueueFull`], which callers count (health's `predictions_unpublished`) and move on.
//!   While the broker is away, publishes wait in that queue, up to its capacity.
//! - **Sessions** are clean. On every ConnAck the link queues, ahead of everything else, the retained
//!   `online` [`Status`] and the subscriptions of its inbound [`Route`]s. The last will is the retained
//!   `offline` status.
//! - **Reconnects** back off from 0.5 s, doubling up to 10 s, with one log line per change of state.
//! - **Shutdown** ([`MqttHandle::shutdown`]) publishes `offline`, waits (bounded) until every QoS >= 1
//!   publish is acknowledged, then disconnects cleanly, so SIGTERM doesn't lose queued predictions.

mod link;
mod options;
mod state;
pub(crate) mod tls;

#[cfg(test)]
pub(crate) mod live_tests;

use crate::config::AgentConfig;
use crate::AGENT_VERSION;
use crate::clock::unix_time_ms;
use protocol::wire::{self, State, Status};
use anyhow::{Context, Result, bail};
use link::{Shared, Stop};
use std::fmt;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub use link::MqttLink;
pub use rumqttc::QoS;

/// The QoS for a level of `[mqtt.qos]` (0, 1 or 2; the config check refuses others, read here as 2).
pub fn qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// Receives an inbound route's messages (topic, payload). Runs on the `mqtt` thread, so it must not block:
/// hand the bytes to a slot or a bounded queue.
pub type Sink = Box<dyn FnMut(&str, &[u8]) + Send>;

/// An inbound subscription: every payload published to `topic` goes to `sink`.
pub struct Route {
    pub topic: String,
    pub qos: QoS,
    pub sink: Sink,
}

/// Why a publish was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishError {
    /// The request queue is full: the broker is slow or away.
    QueueFull,
    /// The link is shutting down or its thread has ended.
    Closed,
    /// Not a valid MQTT topic name (empty, or with wildcards).
    InvalidTopic,
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PublishError::QueueFull => "MQTT request queue is full",
            PublishError::Closed => "MQTT link is closed",
            PublishError::InvalidTopic => "invalid MQTT topic",
        })
    }
}

impl std::error::Error for PublishError {}

/// What [`MqttHandle::shutdown`] achieved before its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// QoS >= 1 publishes (the `offline` status included) still unacknowledged at the end.
    pub unacked: u64,
    /// Whether the `mqtt` thread has ended, so joining it won't wait.
    pub closed: bool,
}

/// Publishes through the link; cheap to clone, never blocks.
#[derive(Clone)]
pub struct MqttHandle {
    client: rumqttc::Client,
    shared: Arc<Shared>,
    status: StatusTemplate,
}

impl MqttLink {
    /// Builds the link's options without connecting: what `run --check` uses to find unreadable TLS or
    /// password files before the agent is started for real.
    pub fn check(config: &AgentConfig) -> Result<()> {
        options::mqtt_options(config, Vec::new()).map(drop)
    }

    /// Builds the options from `config` (failing on unreadable TLS or password files) and starts the `mqtt`
    /// thread, which connects in the background and keeps reconnecting until shutdown.
    pub fn start(config: &AgentConfig, routes: Vec<Route>) -> Result<(MqttHandle, JoinHandle<()>)> {
        // An invalid filter would make the broker drop every connection; refuse it here instead.
        if let Some(route) = routes.iter().find(|route| !rumqttc::valid_filter(&route.topic)) {
            bail!("invalid MQTT topic filter {:?}", route.topic);
        }
        let status = StatusTemplate::new(config);
        let options = options::mqtt_options(config, status.encode(State::Offline, None)?)?;
        let (client, connection) = rumqttc::Client::new(options, config.mqtt.queue_capacity);
        let shared = Arc::new(Shared::default());
        let link = MqttLink::new(connection, shared.clone(), status.clone(), routes);
        let thread =
            thread::Builder::new().name("mqtt".into()).spawn(move || link.run()).context("spawning the mqtt thread")?;
        Ok((MqttHandle { client, shared, status }, thread))
    }
}

impl MqttHandle {
    /// Queues a publish. `Ok` means queued, not delivered: QoS >= 1 publishes are tracked until acked
    /// (see [`MqttHandle::shutdown`]).
    pub fn try_publish(&self, topic: String, qos: QoS, retain: bool, payload: Vec<u8>) -> Result<(), PublishError> {
        if self.shared.is_closing() {
            return Err(PublishError::Closed);
        }
        if !rumqttc::valid_topic(&topic) {
            return Err(PublishError::InvalidTopic);
        }
        let tracked = qos != QoS::AtMostOnce;
        if tracked {
            self.shared.ledger.accept();
        }
        match self.client.try_publish(topic, qos, retain, payload) {
            Ok(()) => Ok(()),
            Err(_) => {
                if tracked {
                    self.shared.ledger.withdraw();
                }
                // rumqttc reports a full queue and a dropped connection alike; the link knows which.
                Err(if self.shared.is_closing() { PublishError::Closed } else { PublishError::QueueFull })
            }
        }
    }

    /// Reconnections since start (the first connection is not one).
    pub fn reconnects(&self) -> u64 {
        self.shared.reconnects()
    }

    /// Whether the broker has accepted the current connection (the live tests wait on it).
    #[cfg(test)]
    pub fn is_connected(&self) -> bool {
        self.shared.is_connected()
    }

    /// Publishes the retained `offline` status, waits until every QoS >= 1 publish is acknowledged, then
    /// disconnects cleanly (so the broker drops the last will) and waits for the `mqtt` thread to end, all
    /// within `timeout`. Stop the publishers first: what they queue after this call is refused.
    ///
    /// Waiting for acks stops early when the broker is away: a clean session would discard what is in
    /// flight anyway. A quarter of `timeout` (at most 200 ms) is kept for the thread to end. A thread stuck
    /// in a connection attempt or on a silent connection can outlive the deadline (up to the keep-alive), so
    /// join it only when the report says it has `closed`.
    pub fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        let deadline = Instant::now() + timeout;
        let drain_deadline = deadline - (timeout / 4).min(CLOSE_RESERVE);
        let draining = || self.shared.is_connected() && !self.shared.is_closed();
        self.publish_offline(drain_deadline);
        wait_until(drain_deadline, || self.shared.ledger.outstanding() == 0 || !draining());
        self.shared.start_closing();
        let stop = match self.client.try_disconnect() {
            Ok(()) => Stop::AfterDisconnect,
            Err(_) => Stop::Now,
        };
        self.shared.request_stop(stop);
        wait_until(deadline, || self.shared.is_closed());
        if !self.shared.is_closed() {
            self.shared.request_stop(Stop::Now);
        }
        ShutdownReport { unacked: self.shared.ledger.outstanding(), closed: self.shared.is_closed() }
    }

    fn publish_offline(&self, deadline: Instant) {
        let status = &self.status;
        let payload = match status.encode(State::Offline, Some(unix_time_ms())) {
            Ok(payload) => payload,
            Err(e) => {
                log::warn!("Encoding the offline status failed: {e}.");
                return;
            }
        };
        // The queue may be full of predictions: retry while they still move.
        loop {
            match self.try_publish(status.topic.clone(), status.qos, true, payload.clone()) {
                Err(PublishError::QueueFull) if self.shared.is_connected() && Instant::now() < deadline => {
                    thread::sleep(POLL_INTERVAL)
                }
                Err(e) => {
                    log::warn!("The offline status was not published: {e}.");
                    return;
                }
                Ok(()) => return,
            }
        }
    }
}

const CLOSE_RESERVE: Duration = Duration::from_millis(200);
const POLL_INTERVAL: Duration = Duration::from_millis(10);

fn wait_until(deadline: Instant, mut done: impl FnMut() -> bool) {
    while !done() && Instant::now() < deadline {
        thread::sleep(POLL_INTERVAL);
    }
}

/// Everything needed to publish the device's status, shared by the link (online, will) and the handles
/// (offline at shutdown).
#[derive(Debug, Clone)]
struct StatusTemplate {
    topic: String,
    qos: QoS,
    format: wire::Format,
    device: String,
}

impl StatusTemplate {
    fn new(config: &AgentConfig) -> StatusTemplate {
        StatusTemplate {
            topic: config.topics().status(),
            qos: qos(config.mqtt.qos.status),
            format: config.mqtt.format,
            device: config.device_id.clone(),
        }
    }

    fn encode(&self, state: State, since_ms: Option<u64>) -> Result<Vec<u8>, wire::WireError> {
        let status = Status { state, device: self.device.clone(), agent_version: AGENT_VERSION.into(), since_ms };
        wire::encode(self.format, &status)
    }
}
