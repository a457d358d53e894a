//! The pusher's connection: the shared MQTT link (one backoff, one password reader, waits on the link's
//! events), with every subscription's messages handed over a channel. Sessions are clean; the link subscribes
//! again on every reconnect and says so, so that the push can repeat its announcements.

use anyhow::{Context, Result, anyhow};
use clap::Args;
use mqtt::{
    BrokerAddress, ClientAuth, Credentials, LinkOptions, Message, MqttHandle, Named, Password, QoS, Route, Sink,
    TlsOptions,
};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long to wait for the first connection before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Requests queued before `publish` has to wait; QoS 1 flow control happens behind it (inflight). Subscribing
/// and unsubscribing never wait, and a group push queues two of each per member: 64 failed at 50 members (found
/// by `fleet simulate`), so room for a thousand members.
const REQUEST_QUEUE: usize = 4096;
/// How long to let the acknowledgements and the disconnect go out on close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// One connection attempt (TCP, TLS, CONNACK), as rumqttc's default.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the broker is and how to log in: what `model push` and `model rollback` share.
#[derive(Args, Debug, Clone)]
pub struct BrokerArgs {
    /// The MQTT broker: `host`, `host:port` or `[ipv6]:port` (port default 1883, 8883 with TLS). Repeat it to
    /// list several: they are tried in order, and the next one is used whenever a connection fails or is lost.
    #[arg(long, value_name = "HOST[:PORT]", required = true)]
    pub broker: Vec<String>,
    /// MQTT user name.
    #[arg(long)]
    pub username: Option<String>,
    /// File holding the MQTT password (its line ending is not part of it).
    #[arg(long, value_name = "FILE", requires = "username")]
    pub password_file: Option<PathBuf>,
    /// PEM CA certificate(s) the broker's certificate must chain to; connects over TLS.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate chain for mutual TLS (with --tls-key).
    #[arg(long, value_name = "FILE", requires_all = ["tls_ca", "tls_key"])]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires_all = ["tls_ca", "tls_cert"])]
    pub tls_key: Option<PathBuf>,
}

impl BrokerArgs {
    /// Link options for a clean session as `client_id`, for packets up to `max_packet` bytes.
    fn options(&self, client_id: &str, max_packet: usize) -> Result<LinkOptions> {
        let default_port = if self.tls_ca.is_some() { 8883 } else { 1883 };
        let brokers = self
            .broker
            .iter()
            .map(|broker| BrokerAddress::parse(broker, default_port).map_err(|e| anyhow!("--broker {e}")))
            .collect::<Result<Vec<_>>>()?;
        let password = match &self.password_file {
            Some(path) => Password::File(Named::new("--password-file", path.clone())),
            None => Password::Inline(String::new()),
        };
        let client = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(ClientAuth {
                cert: Named::new("--tls-cert", cert.clone()),
                key: Named::new("--tls-key", key.clone()),
            }),
            // clap requires them together.
            _ => None,
        };
        let tls = self.tls_ca.as_ref().map(|ca| TlsOptions {
            ca: Named::new("--tls-ca", ca.clone()),
            client,
            server_name: None,
        });
        Ok(LinkOptions {
            client_id: client_id.to_owned(),
            brokers,
            keep_alive: KEEP_ALIVE,
            connect_timeout: ATTEMPT_TIMEOUT,
            max_packet_bytes: max_packet,
            // The device's status and answers are small: anything over the limit is refused, not read to skip.
            max_skipped_packet_bytes: max_packet,
            queue_capacity: REQUEST_QUEUE,
            credentials: self.username.as_ref().map(|username| Credentials { username: username.clone(), password }),
            tls,
            presence: None,
            // QoS 0: a pusher subscribes and unsubscribes per device and per wave. On NATS every QoS 1
            // subscription is a JetStream consumer made and deleted, and on NATS 2.9.10 a session's subscriptions
            // stopped delivering after about a hundred of them. Nothing is lost that matters: after a reconnect
            // the link subscribes again and the broker resends the retained statuses, and devices repeat their
            // requests.
            subscription_qos: QoS::AtMostOnce,
        })
    }
}

/// What the broker did.
#[derive(Debug)]
pub enum Inbound {
    /// The broker accepted a reconnection; the subscriptions are being made again.
    Connected,
    /// A message on one of the subscriptions. `retained`: sent because we subscribed, so it predates us.
    Message { topic: String, payload: Vec<u8>, retained: bool },
}

/// Hands a subscription's messages to the channel [`Broker::recv`] reads.
struct Forward(Sender<Inbound>);

impl Sink for Forward {
    fn deliver(&mut self, message: Message<'_>) {
        let Message { topic, payload, retained } = message;
        // The receiver goes only with the broker, which unsubscribes everything first.
        let _ = self.0.send(Inbound::Message { topic: topic.to_owned(), payload: payload.to_vec(), retained });
    }
}

/// A connection to the broker.
pub struct Broker {
    link: MqttHandle,
    thread: JoinHandle<()>,
    sender: Sender<Inbound>,
    inbound: Receiver<Inbound>,
    /// What a wait for one message read and gave back ([`Broker::hold`]): handed out before anything newer.
    held: VecDeque<Inbound>,
    address: String,
}

impl Broker {
    /// Connects as `client_id` and waits for the broker to accept; the first failure is the error.
    pub fn connect(args: &BrokerArgs, client_id: &str, max_packet: usize) -> Result<Broker> {
        let options = args.options(client_id, max_packet)?;
        let address = options.brokers.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        let (sender, inbound) = mpsc::channel();
        let (link, pending) = mqtt::connect(options)?;
        let reconnected = sender.clone();
        let thread = pending
            .on_reconnect(Box::new(move || {
                let _ = reconnected.send(Inbound::Connected);
            }))
            .start(Vec::new())?;
        link.wait_connected(CONNECT_TIMEOUT).with_context(|| format!("connecting to the MQTT broker {address}"))?;
        log::debug!("Connected to {address} as {client_id}.");
        Ok(Broker { link, thread, sender, inbound, held: VecDeque::new(), address })
    }

    /// Subscribes to `filter` (QoS 0, see [`BrokerArgs::options`]), now and after every reconnect.
    pub fn subscribe(&mut self, filter: &str) -> Result<()> {
        let route = Route { topic: filter.to_owned(), sink: Box::new(Forward(self.sender.clone())) };
        self.link.subscribe(route).with_context(|| format!("subscribing to {filter}"))
    }

    pub fn unsubscribe(&mut self, filter: &str) -> Result<()> {
        self.link.unsubscribe(filter).with_context(|| format!("unsubscribing from {filter}"))
    }

    /// Publishes `payload` to `topic` with QoS 1, not retained. Waits while the queue is full (the broker is slow
    /// or away), but not past `deadline`.
    pub fn publish(&self, topic: &str, payload: &[u8], deadline: Instant) -> Result<()> {
        self.link
            .publish_until(topic, QoS::AtLeastOnce, false, payload, deadline)
            .with_context(|| format!("publishing to {topic} on {}", self.address))
    }

    /// Publishes `payload` to `topic` with QoS 1, retained (an empty payload clears what is retained there).
    pub fn publish_retained(&self, topic: &str, payload: &[u8], deadline: Instant) -> Result<()> {
        self.link
            .publish_until(topic, QoS::AtLeastOnce, true, payload, deadline)
            .with_context(|| format!("publishing retained to {topic} on {}", self.address))
    }

    /// The next thing the broker did, waiting up to `wait`; `None` when nothing happened in time.
    pub fn recv(&mut self, wait: Duration) -> Option<Inbound> {
        if let Some(held) = self.held.pop_front() {
            return Some(held);
        }
        // The broker holds a sender, so the channel never disconnects.
        self.inbound.recv_timeout(wait).ok()
    }

    /// Gives back, in order, what was read while waiting for something else: the next [`Broker::recv`] calls
    /// return it first.
    pub fn hold(&mut self, inbound: Vec<Inbound>) {
        self.held.extend(inbound);
    }

    /// Waits (briefly) for the broker to acknowledge what was published, then disconnects.
    pub fn close(self) {
        if self.link.shutdown(CLOSE_TIMEOUT).closed {
            let _ = self.thread.join();
        }
    }
}
