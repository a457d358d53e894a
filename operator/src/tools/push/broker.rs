//! The pusher's MQTT connection: rumqttc's synchronous `Client`, and its `Connection` polled on a thread that
//! hands the broker's messages over a channel. Sessions are clean, so the subscriptions are made again on
//! every reconnect.

use crate::config::TlsConfig;
use crate::mqtt::tls;
use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use rumqttc::{
    Client, ClientError, Connection, Event, MqttOptions, Outgoing, Packet, QoS, Request, TlsConfiguration, Transport,
};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

/// How long to wait for the first connection before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause between reconnect attempts, so a broker that is away costs no busy loop.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// Requests rumqttc queues before `publish` has to wait; QoS 1 flow control happens behind it (inflight).
const REQUEST_QUEUE: usize = 64;
/// How long to let the disconnect go out on close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the broker is and how to log in: what `model push` and `model rollback` share.
#[derive(Args, Debug, Clone)]
pub struct BrokerArgs {
    /// The MQTT broker: `host`, `host:port` or `[ipv6]:port` (port default 1883, 8883 with TLS).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub broker: String,
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
    /// rumqttc options for a clean session as `client_id`, for packets up to `max_packet` bytes.
    fn options(&self, client_id: &str, max_packet: usize) -> Result<MqttOptions> {
        let default_port = if self.tls_ca.is_some() { 8883 } else { 1883 };
        let (host, port) = host_and_port(&self.broker, default_port)?;
        let mut options = MqttOptions::new(client_id, host.clone(), port);
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true)
            .set_max_packet_size(max_packet, max_packet)
            .set_request_channel_capacity(REQUEST_QUEUE);
        if let Some(username) = &self.username {
            let password = match &self.password_file {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("--password-file: reading {}", path.display()))?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
                None => String::new(),
            };
            options.set_credentials(username.clone(), password);
        }
        if let Some(ca_file) = &self.tls_ca {
            let tls_config = TlsConfig {
                ca_file: Some(ca_file.clone()),
                client_cert_file: self.tls_cert.clone(),
                client_key_file: self.tls_key.clone(),
                server_name: None,
            };
            // The agent's builder names its config keys; say which flags they came from.
            let client_config =
                tls::client_config(&tls_config, &host).context("TLS from --tls-ca, --tls-cert and --tls-key")?;
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(client_config)));
        }
        Ok(options)
    }
}

/// `host[:port]`, `[ipv6][:port]`, or a bare IPv6 address, with `default_port` where none is given.
fn host_and_port(broker: &str, default_port: u16) -> Result<(String, u16)> {
    let parse_port =
        |port: &str| port.parse::<u16>().map_err(|_| anyhow!("--broker {broker:?}: invalid port {port:?}"));
    let (host, port) = if let Some(rest) = broker.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| anyhow!("--broker {broker:?}: missing ']'"))?;
        match after {
            "" => (host, default_port),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, parse_port(port)?),
                None => bail!("--broker {broker:?}: expected ':' after ']'"),
            },
        }
    } else {
        match broker.rsplit_once(':') {
            // More than one ':' and no brackets: an IPv6 address without a port.
            Some((host, port)) if !host.contains(':') => (host, parse_port(port)?),
            _ => (broker, default_port),
        }
    };
    if host.is_empty() {
        bail!("--broker {broker:?}: no host");
    }
    Ok((host.to_owned(), port))
}

/// What the connection thread hands over.
#[derive(Debug)]
pub enum Inbound {
    /// The broker accepted a (re)connection; the subscriptions are being made again.
    Connected,
    /// A message on one of the subscriptions. `retained`: sent because we subscribed, so it predates us;
    /// a live message is delivered with the flag cleared (MQTT 3.1.1, 3.3.1-9).
    Message { topic: String, payload: Vec<u8>, retained: bool },
}

enum Polled {
    Connected,
    Message { topic: String, payload: Vec<u8>, retained: bool },
    Lost(String),
}

/// A connection to the broker.
pub struct Broker {
    client: Client,
    polled: Receiver<Polled>,
    /// Every filter subscribed to, to subscribe again after a reconnect.
    subscriptions: Vec<String>,
    address: String,
}

impl Broker {
    /// Connects as `client_id` and waits for the broker to accept; the first failure is the error.
    pub fn connect(args: &BrokerArgs, client_id: &str, max_packet: usize) -> Result<Broker> {
        let options = args.options(client_id, max_packet)?;
        let (host, port) = options.broker_address();
        let address = format!("{host}:{port}");
        let (client, connection) = Client::new(options, REQUEST_QUEUE);
        let (sender, polled) = mpsc::channel();
        thread::Builder::new()
            .name("mqtt".into())
            .spawn(move || poll(connection, &sender))
            .context("starting the MQTT thread")?;
        match polled.recv_timeout(CONNECT_TIMEOUT) {
            Ok(Polled::Connected) => {}
            Ok(Polled::Lost(error)) => bail!("connecting to the MQTT broker {address}: {error}"),
            Ok(Polled::Message { .. }) => bail!("the MQTT broker {address} sent a message before accepting us"),
            Err(_) => {
                bail!("connecting to the MQTT broker {address}: no answer within {} s", CONNECT_TIMEOUT.as_secs())
            }
        }
        log::debug!("Connected to {address} as {client_id}.");
        Ok(Broker { client, polled, subscriptions: Vec::new(), address })
    }

    /// Subscribes to `filter` (QoS 1), now and after every reconnect.
    pub fn subscribe(&mut self, filter: &str) -> Result<()> {
        if !self.subscriptions.iter().any(|known| known == filter) {
            self.subscriptions.push(filter.to_owned());
        }
        self.client.subscribe(filter, QoS::AtLeastOnce).with_context(|| format!("subscribing to {filter}"))
    }

    pub fn unsubscribe(&mut self, filter: &str) -> Result<()> {
        self.subscriptions.retain(|known| known != filter);
        self.client.unsubscribe(filter).with_context(|| format!("unsubscribing from {filter}"))
    }

    /// Publishes `payload` to `topic` with QoS 1, not retained. Waits while rumqttc's queue is full (the broker
    /// is slow or away), but not past `deadline`.
    pub fn publish(&self, topic: &str, payload: Vec<u8>, deadline: Instant) -> Result<()> {
        let mut payload = payload;
        loop {
            match self.client.try_publish(topic, QoS::AtLeastOnce, false, payload) {
                Ok(()) => return Ok(()),
                Err(ClientError::TryRequest(Request::Publish(publish))) if Instant::now() < deadline => {
                    payload = Vec::from(publish.payload);
                    thread::sleep(Duration::from_millis(10));
                }
                Err(error) => return Err(error).with_context(|| format!("publishing to {topic} on {}", self.address)),
            }
        }
    }

    /// The next thing the broker did, waiting up to `wait`; `None` when nothing happened in time.
    pub fn recv(&mut self, wait: Duration) -> Result<Option<Inbound>> {
        let polled = match self.polled.recv_timeout(wait) {
            Ok(polled) => polled,
            Err(RecvTimeoutError::Timeout) => return Ok(None),
            Err(RecvTimeoutError::Disconnected) => bail!("the MQTT connection to {} has ended", self.address),
        };
        Ok(Some(match polled {
            Polled::Connected => {
                log::info!("Reconnected to {}.", self.address);
                for filter in &self.subscriptions {
                    self.client
                        .subscribe(filter, QoS::AtLeastOnce)
                        .with_context(|| format!("subscribing to {filter}"))?;
                }
                Inbound::Connected
            }
            Polled::Message { topic, payload, retained } => Inbound::Message { topic, payload, retained },
            Polled::Lost(error) => {
                log::warn!("Lost the MQTT connection to {}, reconnecting: {error}.", self.address);
                return Ok(None);
            }
        }))
    }

    /// Disconnects, giving queued publishes a moment to go out.
    pub fn close(self) {
        if self.client.try_disconnect().is_ok() {
            let deadline = Instant::now() + CLOSE_TIMEOUT;
            // The thread drops its sender when the disconnect has gone out.
            while let Some(wait) = deadline.checked_duration_since(Instant::now()) {
                if let Err(RecvTimeoutError::Disconnected) = self.polled.recv_timeout(wait) {
                    break;
                }
            }
        }
    }
}

/// The connection thread: polls until the disconnect goes out or nobody listens any more.
fn poll(mut connection: Connection, sender: &Sender<Polled>) {
    let mut last_error = None;
    for event in connection.iter() {
        let polled = match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                last_error = None;
                Polled::Connected
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                Polled::Message { topic: publish.topic, payload: Vec::from(publish.payload), retained: publish.retain }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
            Ok(_) => continue,
            Err(error) => {
                let message = error.to_string();
                let repeated = last_error.as_ref() == Some(&message);
                last_error = Some(message.clone());
                if !repeated && sender.send(Polled::Lost(message)).is_err() {
                    break;
                }
                thread::sleep(RECONNECT_DELAY);
                continue;
            }
        };
        if sender.send(polled).is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_addresses() {
        let parse = |text: &str| host_and_port(text, 1883).map_err(|e| e.to_string());
        assert_eq!(parse("broker"), Ok(("broker".to_owned(), 1883)));
        assert_eq!(parse("broker:8883"), Ok(("broker".to_owned(), 8883)));
        assert_eq!(parse("10.0.0.1:1884"), Ok(("10.0.0.1".to_owned(), 1884)));
        assert_eq!(parse("[::1]:1885"), Ok(("::1".to_owned(), 1885)));
        assert_eq!(parse("[::1]"), Ok(("::1".to_owned(), 1883)));
        assert_eq!(parse("fe80::1"), Ok(("fe80::1".to_owned(), 1883)));
        assert!(parse("broker:http").is_err_and(|e| e.contains("invalid port")));
        assert!(parse(":1883").is_err_and(|e| e.contains("no host")));
        assert!(parse("[::1]x").is_err());
    }
}
