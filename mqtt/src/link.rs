//! The `mqtt` thread: polls the connection, answers every ConnAck with the subscriptions, the online status and
//! the kept retained messages (and its own last will, published late, with the online status again), hands
//! inbound messages to their routes, settles acks, and backs off between reconnects, moving to the next broker
//! after every failure.

use crate::brokers::Rotation;
use crate::failure::Failure;
use crate::oversize::{Oversize, OversizeHook, Refusal};
use crate::shared::{Shared, Stop, lock};
use crate::state::{Backoff, Connectivity, Outcome, Tracker, unacked_in};
use crate::{Message, OwnStatus, Route};
use rumqttc::{
    ConnectionError, Event, MqttOptions, Outgoing, Packet, PubAck, PubComp, Publish, QoS, Request, Subscribe,
    SubscribeFilter, SubscribeReasonCode,
};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

const BACKOFF_INITIAL: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Filters per SUBSCRIBE packet: AWS IoT Core refuses more (MQTT itself has no limit).
const FILTERS_PER_SUBSCRIBE: usize = 8;

/// Why the link thread did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// An invalid filter would make the broker drop every connection; it is refused here instead.
    #[error("invalid MQTT topic filter {0:?}")]
    InvalidFilter(String),
    #[error("spawning the mqtt thread")]
    Spawn(#[source] std::io::Error),
}

/// Called on the `mqtt` thread after every reconnection (it must not block).
pub type ReconnectHook = Box<dyn FnMut() + Send>;

/// Told, on the `mqtt` thread, the outcome of each tracked publish by its token (it must not block).
pub type OutcomeObserver = Box<dyn FnMut(u64, Outcome) + Send>;

/// A link whose handle exists but whose thread has not started: nothing is sent before [`PendingLink::start`].
pub struct PendingLink {
    connection: rumqttc::Connection,
    /// rumqttc's options for each broker, in order; the connection starts with the first.
    per_broker: Vec<MqttOptions>,
    shared: Arc<Shared>,
    own_status: Option<OwnStatus>,
    subscription_qos: QoS,
    on_reconnect: Option<ReconnectHook>,
    on_outcome: Option<OutcomeObserver>,
    oversize: Oversize,
}

impl PendingLink {
    pub(crate) fn new(
        connection: rumqttc::Connection,
        per_broker: Vec<MqttOptions>,
        shared: Arc<Shared>,
        own_status: Option<OwnStatus>,
        subscription_qos: QoS,
        oversize: Oversize,
    ) -> PendingLink {
        let (on_reconnect, on_outcome) = (None, None);
        PendingLink { connection, per_broker, shared, own_status, subscription_qos, on_reconnect, on_outcome, oversize }
    }

    /// Has `hook` called after every reconnection, for a client that must redo what the broker forgot (a clean
    /// session drops what was in flight).
    pub fn on_reconnect(mut self, hook: ReconnectHook) -> PendingLink {
        self.on_reconnect = Some(hook);
        self
    }

    /// Has `observer` told the outcome of every tracked publish
    /// ([`MqttHandle::try_publish_tracked`](crate::MqttHandle::try_publish_tracked)).
    pub fn on_outcome(mut self, observer: OutcomeObserver) -> PendingLink {
        self.on_outcome = Some(observer);
        self
    }

    /// Has `hook` told of every inbound message skipped for its size.
    pub fn on_oversized(mut self, hook: OversizeHook) -> PendingLink {
        self.oversize.set_hook(hook);
        self
    }

    /// Starts the `mqtt` thread with its inbound `routes`; it connects in the background and keeps reconnecting
    /// until shutdown.
    pub fn start(self, routes: Vec<Route>) -> Result<JoinHandle<()>, StartError> {
        if let Some(route) = routes.iter().find(|route| !rumqttc::valid_filter(&route.topic)) {
            return Err(StartError::InvalidFilter(route.topic.clone()));
        }
        lock(&self.shared.routes).extend(routes);
        let link = Link {
            connection: self.connection,
            rotation: Rotation::new(self.per_broker.len()),
            per_broker: self.per_broker,
            shared: self.shared,
            own_status: self.own_status,
            online_owed: false,
            subscription_qos: self.subscription_qos,
            on_reconnect: self.on_reconnect,
            oversize: self.oversize,
            on_outcome: self.on_outcome,
            tracker: Tracker::default(),
            connectivity: Connectivity::Starting,
            last_error: String::new(),
            backoff: Backoff::new(BACKOFF_INITIAL, BACKOFF_MAX),
        };
        thread::Builder::new().name("mqtt".into()).spawn(move || link.run()).map_err(StartError::Spawn)
    }
}

/// The thread's side of the link.
struct Link {
    connection: rumqttc::Connection,
    per_broker: Vec<MqttOptions>,
    rotation: Rotation,
    shared: Arc<Shared>,
    own_status: Option<OwnStatus>,
    /// The broker published the link's last will while it was connected: `online` is to be published again.
    online_owed: bool,
    subscription_qos: QoS,
    on_reconnect: Option<ReconnectHook>,
    oversize: Oversize,
    on_outcome: Option<OutcomeObserver>,
    tracker: Tracker,
    connectivity: Connectivity,
    last_error: String,
    backoff: Backoff,
}

impl Link {
    fn run(mut self) {
        loop {
            let eventloop = &self.connection.eventloop;
            let was_connected = eventloop.network.is_some();
            // A ConnAck without a session discards rumqttc's `pending` queue: count what it held now.
            let discarded = if was_connected { 0 } else { unacked_in(&eventloop.pending) };
            if self.online_owed && was_connected && !self.writes_unreported() {
                self.publish_online_again();
            }
            let Ok(event) = self.connection.recv() else {
                // Every handle is gone, so nothing can be published any more.
                break;
            };
            let end = match event {
                Ok(event) => self.handle(event, discarded),
                Err(error) => {
                    if was_connected {
                        self.connection_lost();
                    }
                    self.on_connection_error(&error)
                }
            };
            if end || self.shared.stop() == Some(Stop::Now) {
                break;
            }
            self.shared.progress();
        }
        self.shared.close();
        log::info!("MQTT link closed.");
    }

    /// Handles one event; true when the thread should end.
    fn handle(&mut self, event: Event, discarded: u64) -> bool {
        let report = &mut |token, outcome| {
            if let Some(observer) = &mut self.on_outcome {
                observer(token, outcome);
            }
        };
        match event {
            Event::Incoming(Packet::ConnAck(connack)) => {
                if !connack.session_present {
                    self.shared.ledger.settle(discarded);
                }
                self.on_connected();
            }
            Event::Incoming(Packet::Publish(publish)) => self.deliver(&publish),
            Event::Incoming(Packet::PubAck(PubAck { pkid, .. }) | Packet::PubComp(PubComp { pkid, .. })) => {
                self.shared.ledger.settle(1);
                self.tracker.acknowledged(pkid, report);
            }
            Event::Incoming(Packet::SubAck(suback)) if suback.return_codes.contains(&SubscribeReasonCode::Failure) => {
                log::warn!("The broker refused an inbound subscription: {:?}.", suback.return_codes);
            }
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                self.tracker.written(pkid, &mut lock(&self.shared.queued), report)
            }
            Event::Outgoing(Outgoing::AwaitAck(pkid)) => self.tracker.collided(pkid, &mut lock(&self.shared.queued)),
            Event::Outgoing(Outgoing::Disconnect) => return true,
            _ => {}
        }
        false
    }

    /// The connection broke, and rumqttc moved its unfinished work into `pending`, which the next clean session
    /// discards: tracked publishes in it are lost.
    fn connection_lost(&mut self) {
        // rumqttc keeps the events of the batch that failed (acks read with it, a publish written just before)
        // and would hand them out after the reconnect: they belong to this connection, so they are settled now.
        while let Some(event) = self.connection.eventloop.state.events.pop_front() {
            self.handle(event, 0);
        }
        // A collided publish is neither in `pending` nor dropped by rumqttc's clean-up, and would block the new
        // session's queue: it is lost with the rest.
        self.connection.eventloop.state.collision = None;
        let report = &mut |token, outcome| {
            if let Some(observer) = &mut self.on_outcome {
                observer(token, outcome);
            }
        };
        let pending = &self.connection.eventloop.pending;
        self.tracker.connection_lost(pending, &mut lock(&self.shared.queued), report);
    }

    fn on_connected(&mut self) {
        self.backoff.reset();
        self.shared.set_connected(true);
        if self.connectivity != Connectivity::Starting {
            self.shared.count_reconnect();
            if let Some(hook) = &mut self.on_reconnect {
                hook();
            }
        }
        self.connectivity = Connectivity::Connected;
        self.last_error.clear();
        let (host, port) = self.connection.eventloop.mqtt_options.broker_address();
        log::info!("MQTT connected to {host}:{port}.");

        // `pending` is served before the request channel, so these go first even when it is full. The
        // subscription goes before `online`: the broker handles a connection's packets in order, so a peer that
        // sees `online` knows the inbound topics are live.
        let routes = lock(&self.shared.routes);
        let mut filters: Vec<SubscribeFilter> =
            routes.iter().map(|route| SubscribeFilter::new(route.topic.clone(), self.subscription_qos)).collect();
        drop(routes);
        // The link's own status too, to see its last will if the broker publishes it late (`deliver`), unless a
        // route has it already.
        if let Some(own) = self.own_status.as_ref().filter(|own| filters.iter().all(|f| f.path != own.presence.topic)) {
            filters.push(SubscribeFilter::new(own.presence.topic.clone(), QoS::AtMostOnce));
        }
        let pending = &mut self.connection.eventloop.pending;
        pending.extend(subscribe_packets(&filters).into_iter().map(Request::Subscribe));
        self.online_owed = false;
        let mut own = Vec::new();
        if let Some(online) = self.online() {
            own.push(online);
        }
        // After `online`: a peer that sees the device online then sees its state, never a stale one alone.
        own.extend(lock(&self.shared.kept).iter().map(|kept| {
            let mut publish = Publish::new(&kept.topic, kept.qos, kept.payload.clone());
            publish.retain = true;
            publish
        }));
        self.queue_own(own);
    }

    /// The retained `online` status, if the link has one.
    fn online(&self) -> Option<Publish> {
        let own = self.own_status.as_ref()?;
        own.online().map_err(|e| log::warn!("Encoding the online status failed: {e}.")).ok()
    }

    /// Queues the link's own publishes in `pending`, ahead of the request channel.
    fn queue_own(&mut self, own: Vec<Publish>) {
        self.tracker.own_queued(own.len());
        for publish in own {
            if publish.qos != QoS::AtMostOnce {
                self.shared.ledger.accept();
            }
            self.connection.eventloop.pending.push_back(Request::Publish(publish));
        }
    }

    /// Answers a late last will with `online`, unless the link is shutting down (its `offline` must stay last).
    fn publish_online_again(&mut self) {
        self.online_owed = false;
        if self.shared.stop().is_some() {
            return;
        }
        if let Some(online) = self.online() {
            self.queue_own(vec![online]);
        }
    }

    /// Whether rumqttc holds events of publishes it wrote (or put aside) that the link has not handled yet. A
    /// publish of the link's own queued now would be written after those, and the tracker, which pairs each
    /// written publish with its queue entry in order, would take it for one of them.
    fn writes_unreported(&self) -> bool {
        let events = &self.connection.eventloop.state.events;
        events.iter().any(|event| matches!(event, Event::Outgoing(Outgoing::Publish(_) | Outgoing::AwaitAck(_))))
    }

    /// Moves to the next broker (when there is more than one), keeping the read limit learnt so far.
    fn fail_over(&mut self) {
        let Some(next) = self.rotation.advance() else { return };
        let mut options = self.per_broker[next].clone();
        self.oversize.apply_read_limit(&mut options);
        let (host, port) = options.broker_address();
        log::info!(
            "MQTT moving to broker {} of {}: {}.",
            next + 1,
            self.per_broker.len(),
            crate::BrokerAddress::new(host, port)
        );
        self.connection.eventloop.mqtt_options = options;
    }

    fn deliver(&mut self, publish: &Publish) {
        if self.oversize.skipped(publish) {
            return;
        }
        if self.own_status.as_ref().is_some_and(|own| own.is_late_will(publish)) {
            log::info!("The broker published this link's last will while it is connected; publishing online again.");
            self.online_owed = true;
        }
        let message = Message { topic: &publish.topic, payload: &publish.payload, retained: publish.retain };
        let mut routes = lock(&self.shared.routes);
        for route in routes.iter_mut().filter(|route| rumqttc::matches(&publish.topic, &route.topic)) {
            route.sink.deliver(message);
        }
    }

    /// Logs (once per change), then sleeps the backoff. True when the thread should end instead.
    fn on_connection_error(&mut self, error: &ConnectionError) -> bool {
        let previous = self.connectivity;
        let failure = Failure::of(error);
        let message = failure.describe(error);
        self.shared.connection_failed(message.clone());
        // Waits for a first connection learn of the failure now, not after the backoff.
        self.shared.progress();
        let mut delay = self.backoff.next_delay();
        if let Failure::Oversize(bytes) = failure {
            match self.oversize.refused(bytes, &mut self.connection.eventloop.mqtt_options) {
                Refusal::Readable => {
                    log::warn!("An inbound MQTT packet of {bytes} bytes is over the limit; reconnecting to skip it.")
                }
                // It comes back at every subscription: retry seldom until someone clears it.
                Refusal::AboveCeiling => delay = BACKOFF_MAX,
            }
        } else {
            // The packet, not the broker, was at fault in an oversize refusal; anything else moves on.
            self.fail_over();
        }
        // Until a first connection the link is still starting: the first ConnAck is not a reconnect.
        let next = if previous == Connectivity::Starting { Connectivity::Starting } else { Connectivity::Down };
        if self.connectivity.change_to(next) || message != self.last_error {
            match (previous, failure.advice()) {
                (_, Some(advice)) => log::error!("MQTT connection failed ({advice}), retrying: {message}."),
                (Connectivity::Connected, None) => log::warn!("MQTT connection lost, reconnecting: {message}."),
                (Connectivity::Starting | Connectivity::Down, None) => {
                    log::warn!("MQTT broker unreachable, retrying: {message}.")
                }
            }
        } else {
            log::debug!("MQTT reconnect failed: {message}.");
        }
        self.last_error = message;
        if self.shared.stop().is_some() {
            return true;
        }
        self.shared.sleep_unless_stopped(delay)
    }
}

/// The SUBSCRIBE packets for `filters`, at most [`FILTERS_PER_SUBSCRIBE`] filters each.
fn subscribe_packets(filters: &[SubscribeFilter]) -> Vec<Subscribe> {
    filters.chunks(FILTERS_PER_SUBSCRIBE).map(|packet| Subscribe::new_many(packet.to_vec())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_go_eight_filters_to_a_packet() {
        let filters: Vec<SubscribeFilter> =
            (0..17).map(|i| SubscribeFilter::new(format!("t/{i}"), QoS::AtLeastOnce)).collect();
        let packets = subscribe_packets(&filters);
        let sizes: Vec<usize> = packets.iter().map(|packet| packet.filters.len()).collect();
        assert_eq!(sizes, [8, 8, 1]);
        let sent: Vec<&str> = packets.iter().flat_map(|p| p.filters.iter().map(|f| f.path.as_str())).collect();
        let wanted: Vec<&str> = filters.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(sent, wanted, "every filter once, in order");
        assert!(subscribe_packets(&[]).is_empty(), "no empty SUBSCRIBE");
    }
}
