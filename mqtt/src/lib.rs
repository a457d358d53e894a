//! The MQTT link of the device agent and the operator CLI: one named thread (`mqtt`) polling rumqttc's
//! synchronous `Connection` (which runs its own current-thread runtime), and cloneable [`MqttHandle`]s that
//! queue publishes without ever blocking.
//!
//! [`connect`] builds the options and returns the handle with a [`PendingLink`]; the thread starts when the
//! pending link gets its inbound [`Route`]s ([`PendingLink::start`]). Publishers can so hold the handle before
//! the routes (which may need them) exist; what they queue in between goes out once connected.
//!
//! - **Backpressure** is rumqttc's bounded request queue ([`LinkOptions::queue_capacity`]): a full queue is
//!   [`PublishError::QueueFull`], which callers count and move on, or wait out ([`MqttHandle::publish_until`]).
//! - **Sessions** are clean. On every ConnAck the link queues, ahead of everything else, the subscriptions of its
//!   routes, the retained `online` [`Presence`] status, and then every message kept with
//!   [`MqttHandle::retain_on_connect`]. The last will is the retained `offline` status. Clean, because a
//!   clustered broker may not hold a session across its nodes, and the link redoes everything a session would
//!   keep on whichever broker it reaches.
//! - **Late wills**: a broker may publish the will of a connection it closes late, after the link is connected
//!   again (elsewhere), which would leave the status `offline`. The link subscribes to its own status and answers
//!   its will delivered live with `online`.
//! - **Failover**: [`LinkOptions::brokers`] lists the brokers; a failed attempt or a lost connection moves the
//!   link to the next one (round robin), with the same backoff, reset by a ConnAck.
//! - **Reconnects** back off from 0.5 s, doubling up to 10 s, with one log line per change of state (a
//!   certificate error or a refusal is named as such). The first connection is not a reconnect.
//! - **Dead links** are noticed within 2 × [`LinkOptions::keep_alive`] (see there).
//! - **Oversize inbound messages** are read (up to a ceiling) and skipped, not delivered, and reported: see
//!   [`Oversized`].
//! - **Waits are events**: the thread signals every packet it handles, so waits for acks, room in the queue or a
//!   connection wake when something happened, never on a poll timer.
//! - **Tracked publishes** ([`MqttHandle::try_publish_tracked`]) carry a token whose outcome, acknowledged or
//!   lost to a clean-session reconnect, is reported exactly once to an observer ([`PendingLink::on_outcome`]),
//!   so that a caller with its own store (the agent's spool) can re-send exactly what was lost.
//! - **Shutdown** ([`MqttHandle::shutdown`]) publishes `offline`, waits (bounded) until every QoS >= 1 publish is
//!   acknowledged, then disconnects cleanly, so SIGTERM doesn't lose queued messages.

mod brokers;
mod failure;
mod handle;
mod link;
mod options;
mod oversize;
mod shared;
mod state;
mod tls;

#[cfg(test)]
mod live_tests;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use brokers::{AddressError, BrokerAddress};
pub use handle::{ConnectError, MqttHandle, PublishError, ShutdownReport, publish_packet_bytes};
pub use link::{OutcomeObserver, PendingLink, ReconnectHook, StartError};
pub use options::{ClientAuth, Credentials, LinkOptions, Named, OptionsError, Password, TlsOptions};
pub use oversize::{OversizeHook, Oversized};
pub use rumqttc::{QoS, matches};
pub use state::Outcome;

use oversize::Oversize;
use rumqttc::Publish;
use shared::Shared;
use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{SystemTime, UNIX_EPOCH};

/// Builds the rumqttc options (failing on unreadable TLS or password files) and the handle, without
/// connecting: the connection starts with [`PendingLink::start`].
pub fn connect(options: LinkOptions) -> Result<(MqttHandle, PendingLink), OptionsError> {
    let own_status = match &options.presence {
        Some(presence) => Some(OwnStatus::new(presence.clone()).map_err(OptionsError::Will)?),
        None => None,
    };
    let per_broker = options.build(own_status.as_ref().map(|own| own.will.clone()))?;
    let queue_capacity = per_broker[0].request_channel_capacity();
    let (client, mut connection) = rumqttc::Client::new(per_broker[0].clone(), queue_capacity);
    connection.eventloop.set_network_options(options.network_options());
    let shared = Arc::new(Shared::default());
    let handle = MqttHandle::new(client, shared.clone(), &options, per_broker.len());
    let oversize = Oversize::new(options.max_packet_bytes, options.max_skipped_packet_bytes);
    let link = PendingLink::new(connection, per_broker, shared, own_status, options.subscription_qos, oversize);
    Ok((handle, link))
}

/// The QoS for a configured level (0, 1 or 2; anything above reads as 2).
pub fn qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// A message the broker delivered on one of the routes.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub topic: &'a str,
    pub payload: &'a [u8],
    /// Sent because of a new subscription, so it predates it; a live message has the flag cleared (MQTT
    /// 3.1.1, 3.3.1-9).
    pub retained: bool,
}

/// Receives a route's messages. Runs on the `mqtt` thread, so it must not block: hand the bytes to a slot or a
/// bounded queue. A closure of (topic, payload) is a sink.
pub trait Sink: Send {
    fn deliver(&mut self, message: Message<'_>);
}

impl<F: FnMut(&str, &[u8]) + Send> Sink for F {
    fn deliver(&mut self, message: Message<'_>) {
        self(message.topic, message.payload)
    }
}

/// An inbound subscription: every message published to `topic` (a filter) goes to `sink`. Its QoS is the link's
/// ([`LinkOptions::subscription_qos`]).
pub struct Route {
    pub topic: String,
    pub sink: Box<dyn Sink>,
}

impl Route {
    /// A route that hands what `message` makes of each delivery to a bounded channel, without ever blocking the
    /// `mqtt` thread: when the channel is full the message is dropped and counted in `dropped` (its owner reports
    /// the count); a delivery `message` makes nothing of is logged and ignored.
    pub fn to_queue<T: Send + 'static>(
        topic: String,
        queue: &SyncSender<T>,
        dropped: &Arc<AtomicU64>,
        message: impl Fn(&str, &[u8]) -> Option<T> + Send + 'static,
    ) -> Route {
        let (queue, dropped) = (queue.clone(), dropped.clone());
        let sink = Box::new(move |topic: &str, payload: &[u8]| {
            let Some(message) = message(topic, payload) else {
                log::debug!("Ignoring a message on {topic}.");
                return;
            };
            if let Err(TrySendError::Full(_)) = queue.try_send(message) {
                dropped.fetch_add(1, Ordering::Relaxed);
                log::debug!("Queue full; a message on {topic} is dropped.");
            }
        });
        Route { topic, sink }
    }
}

/// What a retained status says of its publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Online,
    Offline,
}

/// Why a status payload could not be encoded.
pub type EncodeError = Box<dyn Error + Send + Sync>;

/// Encodes the publisher's status; the link does not know its format.
pub trait StatusPayload: Send + Sync {
    /// The payload saying `liveness` since `since_ms` (Unix milliseconds; `None` for the last will, which the
    /// broker publishes at a time nobody knows in advance).
    fn encode(&self, liveness: Liveness, since_ms: Option<u64>) -> Result<Vec<u8>, EncodeError>;
}

/// The retained status a link keeps on its broker: `online` at every connect, `offline` as the last will and
/// at shutdown.
#[derive(Clone)]
pub struct Presence {
    pub topic: String,
    pub qos: QoS,
    pub payload: Arc<dyn StatusPayload>,
}

impl Presence {
    fn encode(&self, liveness: Liveness, since_ms: Option<u64>) -> Result<Vec<u8>, EncodeError> {
        self.payload.encode(liveness, since_ms)
    }
}

/// The link's side of its [`Presence`]: the status with the last will as sent in every CONNECT, so that the
/// link knows that will when the broker publishes it.
pub(crate) struct OwnStatus {
    presence: Presence,
    will: Vec<u8>,
}

impl OwnStatus {
    fn new(presence: Presence) -> Result<OwnStatus, EncodeError> {
        let will = presence.encode(Liveness::Offline, None)?;
        Ok(OwnStatus { presence, will })
    }

    /// Whether `publish` is this link's last will published live, so while the link is connected: the will of
    /// an earlier connection that the broker closed late (a clustered broker may notice a dead connection, or
    /// finish closing it, after the device is back on another node), which would leave the device `offline`.
    /// The will retained from before the subscription is not one: the link's `online` follows it.
    fn is_late_will(&self, publish: &Publish) -> bool {
        !publish.retain && publish.topic == self.presence.topic && publish.payload[..] == self.will[..]
    }

    /// The retained `online` status, as of now.
    fn online(&self) -> Result<Publish, EncodeError> {
        let payload = self.presence.encode(Liveness::Online, Some(unix_time_ms()))?;
        let mut publish = Publish::new(self.presence.topic.clone(), self.presence.qos, payload);
        publish.retain = true;
        Ok(publish)
    }
}

fn unix_time_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod route_tests {
    use super::*;
    use std::sync::mpsc::sync_channel;

    #[test]
    fn a_queue_route_drops_and_counts_when_full_and_ignores_what_it_cannot_read() {
        let (queue, received) = sync_channel(1);
        let dropped = Arc::new(AtomicU64::new(0));
        let mut route = Route::to_queue("t/#".into(), &queue, &dropped, |topic, payload| {
            (topic != "t/unreadable").then(|| payload.to_vec())
        });
        for (topic, payload) in [("t/a", b"1"), ("t/unreadable", b"2"), ("t/b", b"3")] {
            route.sink.deliver(Message { topic, payload, retained: false });
        }
        assert_eq!(received.try_iter().collect::<Vec<_>>(), [b"1".to_vec()]);
        assert_eq!(dropped.load(Ordering::Relaxed), 1, "only the message that found the queue full is counted");
    }

    struct Plain;

    impl StatusPayload for Plain {
        fn encode(&self, liveness: Liveness, since_ms: Option<u64>) -> Result<Vec<u8>, EncodeError> {
            Ok(format!("{liveness:?} {since_ms:?}").into_bytes())
        }
    }

    #[test]
    fn only_the_links_own_will_delivered_live_is_a_late_will() {
        let presence = Presence { topic: "d/1/status".into(), qos: QoS::AtLeastOnce, payload: Arc::new(Plain) };
        let own = OwnStatus::new(presence).expect("encodes");
        let publish = |topic: &str, payload: &[u8], retain: bool| {
            let mut publish = Publish::new(topic, QoS::AtMostOnce, payload.to_vec());
            publish.retain = retain;
            publish
        };
        assert!(own.is_late_will(&publish("d/1/status", b"Offline None", false)));
        assert!(!own.is_late_will(&publish("d/1/status", b"Offline None", true)), "retained from before");
        assert!(!own.is_late_will(&publish("d/1/status", b"Offline Some(5)", false)), "a shutdown's offline");
        assert!(!own.is_late_will(&publish("d/2/status", b"Offline None", false)), "another device's will");
        let online = own.online().expect("encodes");
        assert!(online.retain && online.topic == "d/1/status" && online.payload.starts_with(b"Online Some("));
    }
}
