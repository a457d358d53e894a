//! The `mqtt` thread: polls the connection, answers every ConnAck with the online status and the
//! subscriptions, hands inbound payloads to their routes, settles acks, and backs off between reconnects.

use super::state::{AckLedger, Backoff, Connectivity, unacked_in};
use super::{Route, StatusTemplate};
use crate::clock::unix_time_ms;
use protocol::wire::State;
use rumqttc::{
    ConnectionError, Event, Outgoing, Packet, Publish, QoS, Request, Subscribe, SubscribeFilter, SubscribeReasonCode,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

const BACKOFF_INITIAL: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// How the thread should end, once asked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// A Disconnect is queued: end when it goes out (or at once while the broker is away).
    AfterDisconnect,
    /// End at the next event, sending nothing more.
    Now,
}

/// State shared by the link thread and its handles.
#[derive(Debug, Default)]
pub(super) struct Shared {
    connected: AtomicBool,
    /// Set by shutdown before it disconnects: later publishes would queue behind the Disconnect.
    closing: AtomicBool,
    /// Set when the thread ends.
    closed: AtomicBool,
    reconnects: AtomicU64,
    pub(super) ledger: AckLedger,
    stop: Mutex<Option<Stop>>,
    stop_requested: Condvar,
}

impl Shared {
    pub(super) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    pub(super) fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::SeqCst)
    }

    pub(super) fn start_closing(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }

    pub(super) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst) || self.is_closed()
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Asks the thread to end; `Now` overrides `AfterDisconnect`, never the reverse.
    pub(super) fn request_stop(&self, stop: Stop) {
        let mut current = self.stop.lock().unwrap_or_else(PoisonError::into_inner);
        if *current != Some(Stop::Now) {
            *current = Some(stop);
        }
        self.stop_requested.notify_all();
    }

    fn stop(&self) -> Option<Stop> {
        *self.stop.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sleeps for `delay` unless a stop is (or gets) requested; true when one is.
    fn sleep_unless_stopped(&self, delay: Duration) -> bool {
        let stop = self.stop.lock().unwrap_or_else(PoisonError::into_inner);
        let (stop, _) = self
            .stop_requested
            .wait_timeout_while(stop, delay, |stop| stop.is_none())
            .unwrap_or_else(PoisonError::into_inner);
        stop.is_some()
    }
}

/// The thread's side of the link.
pub struct MqttLink {
    connection: rumqttc::Connection,
    shared: Arc<Shared>,
    status: StatusTemplate,
    routes: Vec<Route>,
    connectivity: Connectivity,
    last_error: String,
    backoff: Backoff,
}

impl MqttLink {
    pub(super) fn new(
        connection: rumqttc::Connection,
        shared: Arc<Shared>,
        status: StatusTemplate,
        routes: Vec<Route>,
    ) -> MqttLink {
        MqttLink {
            connection,
            shared,
            status,
            routes,
            connectivity: Connectivity::Starting,
            last_error: String::new(),
            backoff: Backoff::new(BACKOFF_INITIAL, BACKOFF_MAX),
        }
    }

    pub(super) fn run(mut self) {
        loop {
            // A ConnAck without a session discards rumqttc's `pending` queue: count what it held now.
            let eventloop = &self.connection.eventloop;
            let discarded = if eventloop.network.is_none() { unacked_in(&eventloop.pending) } else { 0 };
            let Ok(event) = self.connection.recv() else {
                // Every handle is gone, so nothing can be published any more.
                break;
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(connack))) => {
                    if !connack.session_present {
                        self.shared.ledger.settle(discarded);
                    }
                    self.on_connected();
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => self.deliver(&publish),
                Ok(Event::Incoming(Packet::PubAck(_) | Packet::PubComp(_))) => self.shared.ledger.settle(1),
                Ok(Event::Incoming(Packet::SubAck(suback))) => {
                    if suback.return_codes.contains(&SubscribeReasonCode::Failure) {
                        log::warn!("The broker refused an inbound subscription: {:?}.", suback.return_codes);
                    }
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(error) => {
                    if self.on_connection_error(&error) {
                        break;
                    }
                }
            }
            if self.shared.stop() == Some(Stop::Now) {
                break;
            }
        }
        self.shared.connected.store(false, Ordering::SeqCst);
        self.shared.closed.store(true, Ordering::SeqCst);
        log::info!("MQTT link closed.");
    }

    fn on_connected(&mut self) {
        self.backoff.reset();
        self.shared.connected.store(true, Ordering::SeqCst);
        if self.connectivity != Connectivity::Starting {
            self.shared.reconnects.fetch_add(1, Ordering::SeqCst);
        }
        self.connectivity = Connectivity::Connected;
        self.last_error.clear();
        let (host, port) = self.connection.eventloop.mqtt_options.broker_address();
        log::info!("MQTT connected to {host}:{port}.");

        // `pending` is served before the request channel, so these go first even when it is full. The
        // subscription goes before `online`: the broker handles a connection's packets in order, so a peer that
        // sees `online` knows the inbound topics are live.
        let pending = &mut self.connection.eventloop.pending;
        if !self.routes.is_empty() {
            let filters = self.routes.iter().map(|route| SubscribeFilter::new(route.topic.clone(), route.qos));
            pending.push_back(Request::Subscribe(Subscribe::new_many(filters)));
        }
        match self.status.encode(State::Online, Some(unix_time_ms())) {
            Ok(payload) => {
                let mut online = Publish::new(self.status.topic.clone(), self.status.qos, payload);
                online.retain = true;
                if online.qos != QoS::AtMostOnce {
                    self.shared.ledger.accept();
                }
                pending.push_back(Request::Publish(online));
            }
            Err(e) => log::warn!("Encoding the online status failed: {e}."),
        }
    }

    fn deliver(&mut self, publish: &Publish) {
        for route in self.routes.iter_mut().filter(|route| rumqttc::matches(&publish.topic, &route.topic)) {
            (route.sink)(&publish.topic, &publish.payload);
        }
    }

    /// Logs (once per change), then sleeps the backoff. True when the thread should end instead.
    fn on_connection_error(&mut self, error: &ConnectionError) -> bool {
        self.shared.connected.store(false, Ordering::SeqCst);
        let previous = self.connectivity;
        let message = error.to_string();
        if self.connectivity.change_to(Connectivity::Down) || message != self.last_error {
            match previous {
                Connectivity::Connected => log::warn!("MQTT connection lost, reconnecting: {message}."),
                // A refusal by the broker (credentials, ACL, client id) is not a network problem; say so.
                Connectivity::Starting | Connectivity::Down if matches!(error, ConnectionError::ConnectionRefused(_)) => {
                    log::error!("MQTT broker refused the connection (check credentials and ACLs), retrying: {message}.")
                }
                Connectivity::Starting | Connectivity::Down => {
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
        self.shared.sleep_unless_stopped(self.backoff.next_delay())
    }
}
