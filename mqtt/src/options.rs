//! What a link is configured with, and the rumqttc options built from it. Everything that can fail (files, TLS
//! material) fails here, at start, with the setting's name in the message; rumqttc's own setters assert on
//! values the callers have already checked.

use crate::{BrokerAddress, EncodeError, Presence, tls};
use rumqttc::{LastWill, MqttOptions, NetworkOptions, QoS, TlsConfiguration, Transport};
use std::path::PathBuf;
use std::time::Duration;

/// A setting with the name its user knows it by (a config key, a command-line flag), for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named<T> {
    pub name: String,
    pub value: T,
}

impl<T> Named<T> {
    pub fn new(name: impl Into<String>, value: T) -> Named<T> {
        Named { name: name.into(), value }
    }
}

/// A link's settings.
#[derive(Clone)]
pub struct LinkOptions {
    pub client_id: String,
    /// The brokers, tried in order (round robin) whenever a connection attempt fails or a connection is lost;
    /// at least one. TLS settings apply to each, verified against its own host.
    pub brokers: Vec<BrokerAddress>,
    /// A PINGREQ goes out every `keep_alive` whatever the traffic; a link whose PINGRESP has not come back by the
    /// next one is dead. So a dead link (a partition, a silent broker) is noticed within 2 × `keep_alive`.
    /// rumqttc keeps its socket to itself, so TCP keep-alive and `TCP_USER_TIMEOUT` cannot be set: this is the
    /// only detector, besides writes that time out.
    pub keep_alive: Duration,
    /// How long a connection attempt (TCP, TLS, CONNECT to CONNACK) and a flush of writes may take (whole
    /// seconds, at least 1).
    pub connect_timeout: Duration,
    /// The largest packet sent, and the largest inbound message delivered.
    pub max_packet_bytes: usize,
    /// The largest inbound packet read only to be skipped (see [`crate::Oversized`]); at least
    /// `max_packet_bytes`. Larger packets cannot be read at all.
    pub max_skipped_packet_bytes: usize,
    /// Requests queued before publishes are refused as [`crate::PublishError::QueueFull`].
    pub queue_capacity: usize,
    pub credentials: Option<Credentials>,
    pub tls: Option<TlsOptions>,
    /// The retained status kept on the broker, if the link has one.
    pub presence: Option<Presence>,
    /// The QoS of every subscription of the routes. At 1 the broker resends, within a connection, what the link
    /// has not acknowledged (sessions are clean, so nothing across connections). On NATS, 0: there a QoS 1
    /// subscription is a JetStream consumer, which may live on another node and dies silently with it
    /// (docs/fleets.md).
    pub subscription_qos: QoS,
}

#[derive(Debug, Clone)]
pub struct Credentials {
    pub username: String,
    pub password: Password,
}

#[derive(Debug, Clone)]
pub enum Password {
    Inline(String),
    /// Read at start; its line ending is not part of it.
    File(Named<PathBuf>),
}

/// TLS with `ca` as the only trust anchors.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    pub ca: Named<PathBuf>,
    /// A client certificate, for mutual TLS.
    pub client: Option<ClientAuth>,
    /// The name the broker's certificate must carry, when it is not the host dialled.
    pub server_name: Option<Named<String>>,
}

#[derive(Debug, Clone)]
pub struct ClientAuth {
    pub cert: Named<PathBuf>,
    pub key: Named<PathBuf>,
}

/// Why a link's options could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error("{name}: reading {}", path.display())]
    Read { name: String, path: PathBuf, source: std::io::Error },
    #[error("{name} {}: invalid PEM", path.display())]
    InvalidPem { name: String, path: PathBuf, source: rustls::pki_types::pem::Error },
    #[error("{name} {}: no PEM certificate in the file", path.display())]
    NoCertificate { name: String, path: PathBuf },
    #[error("{name} {}: no PEM private key in the file", path.display())]
    NoPrivateKey { name: String, path: PathBuf },
    #[error("{name} {}: not a usable CA certificate", path.display())]
    UnusableCa { name: String, path: PathBuf, source: rustls::Error },
    #[error(
        "{} {} and {} {}: not a usable certificate and key pair",
        .files.cert.name, .files.cert.value.display(), .files.key.name, .files.key.value.display()
    )]
    UnusableKeyPair { files: Box<ClientAuth>, source: rustls::Error },
    #[error("{} {:?}: not a DNS name or IP address", .0.name, .0.value)]
    ServerName(Named<String>),
    #[error("the TLS provider supports no default protocol version")]
    TlsVersions(#[source] rustls::Error),
    #[error("{name}: building the certificate verifier")]
    Verifier { name: String, source: rustls::client::VerifierBuilderError },
    #[error("encoding the last will")]
    Will(#[source] EncodeError),
    #[error("no MQTT broker given")]
    NoBrokers,
}

impl LinkOptions {
    /// The rumqttc options for each broker, in order, with `will` (the encoded `offline` status) as the
    /// retained last will. Built all at start, so that a file or TLS problem shows then, not at a failover.
    pub(crate) fn build(&self, will: Option<Vec<u8>>) -> Result<Vec<MqttOptions>, OptionsError> {
        if self.brokers.is_empty() {
            return Err(OptionsError::NoBrokers);
        }
        self.brokers.iter().map(|broker| self.build_for(broker, will.clone())).collect()
    }

    fn build_for(&self, broker: &BrokerAddress, will: Option<Vec<u8>>) -> Result<MqttOptions, OptionsError> {
        let mut options = MqttOptions::new(self.client_id.clone(), broker.host.clone(), broker.port);
        options
            .set_keep_alive(self.keep_alive)
            // A fresh session on every connect: the link subscribes again itself, and the broker keeps no backlog
            // for a client that was away.
            .set_clean_session(true)
            .set_max_packet_size(self.max_packet_bytes, self.max_packet_bytes)
            .set_request_channel_capacity(self.queue_capacity);
        if let (Some(presence), Some(will)) = (&self.presence, will) {
            options.set_last_will(LastWill::new(presence.topic.clone(), will, presence.qos, true));
        }
        if let Some(credentials) = &self.credentials {
            options.set_credentials(credentials.username.clone(), credentials.password.read()?);
        }
        if let Some(tls) = &self.tls {
            let client_config = tls::client_config(tls, &broker.host)?;
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(client_config)));
        }
        Ok(options)
    }

    /// rumqttc's network settings: the connection timeout.
    pub(crate) fn network_options(&self) -> NetworkOptions {
        let mut network = NetworkOptions::new();
        network.set_connection_timeout(self.connect_timeout.as_secs().max(1));
        network
    }

    /// Builds the options without connecting: what a configuration check uses to find unreadable TLS or
    /// password files before the link is started for real.
    pub fn check(&self) -> Result<(), OptionsError> {
        self.build(None).map(drop)
    }
}

impl Password {
    fn read(&self) -> Result<String, OptionsError> {
        match self {
            Password::Inline(password) => Ok(password.clone()),
            Password::File(file) => {
                let text = std::fs::read_to_string(&file.value).map_err(|source| OptionsError::Read {
                    name: file.name.clone(),
                    path: file.value.clone(),
                    source,
                })?;
                Ok(text.trim_end_matches(['\r', '\n']).to_owned())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Pki;
    use crate::{Liveness, StatusPayload};
    use rumqttc::QoS;
    use std::path::Path;
    use std::sync::Arc;

    struct Text;

    impl StatusPayload for Text {
        fn encode(&self, liveness: Liveness, _since_ms: Option<u64>) -> Result<Vec<u8>, EncodeError> {
            Ok(format!("{liveness:?}").into_bytes())
        }
    }

    fn options() -> LinkOptions {
        LinkOptions {
            client_id: "cam-01".into(),
            brokers: vec![BrokerAddress::new("broker", 1883)],
            keep_alive: Duration::from_secs(7),
            connect_timeout: Duration::from_secs(3),
            max_packet_bytes: 4096,
            max_skipped_packet_bytes: 8192,
            queue_capacity: 16,
            credentials: None,
            tls: None,
            presence: None,
            subscription_qos: QoS::AtLeastOnce,
        }
    }

    fn error_text(options: &LinkOptions) -> String {
        match options.build(None) {
            Ok(_) => panic!("expected an error"),
            Err(e) => chain(&e),
        }
    }

    /// The error and its sources, as anyhow's `{:#}` prints them.
    fn chain(error: &dyn std::error::Error) -> String {
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            text += &format!(": {cause}");
            source = cause.source();
        }
        text
    }

    fn named(name: &str, path: &Path) -> Named<PathBuf> {
        Named::new(name, path.to_owned())
    }

    fn tls(ca: &Path) -> TlsOptions {
        TlsOptions { ca: named("mqtt.tls.ca_file", ca), client: None, server_name: None }
    }

    #[test]
    fn options_follow_the_settings() {
        let presence =
            Presence { topic: "devices/cam-01/status".into(), qos: QoS::AtLeastOnce, payload: Arc::new(Text) };
        let with_status = LinkOptions { presence: Some(presence), ..options() };
        let built = with_status.build(Some(b"offline".to_vec())).expect("valid").remove(0);
        assert_eq!(built.broker_address(), ("broker".to_owned(), 1883));
        assert_eq!(built.client_id(), "cam-01");
        assert_eq!(built.keep_alive(), Duration::from_secs(7));
        assert!(built.clean_session());
        assert_eq!(built.max_packet_size(), 4096);
        assert_eq!(built.request_channel_capacity(), 16);
        assert_eq!(with_status.network_options().connection_timeout(), 3);
        let sub_second = LinkOptions { connect_timeout: Duration::from_millis(200), ..options() };
        assert_eq!(sub_second.network_options().connection_timeout(), 1);
        assert_eq!(built.credentials(), None);
        let will = built.last_will().expect("a last will");
        assert_eq!(will.topic, "devices/cam-01/status");
        assert_eq!(&will.message[..], b"offline");
        assert_eq!(will.qos, QoS::AtLeastOnce);
        assert!(will.retain);
        assert!(crate::connect(with_status).is_ok());
        assert!(options().build(None).expect("valid")[0].last_will().is_none());
    }

    #[test]
    fn one_set_of_options_per_broker_in_order() {
        let brokers = vec![BrokerAddress::new("a", 1883), BrokerAddress::new("::1", 1884)];
        let built = LinkOptions { brokers, ..options() }.build(None).expect("valid");
        let addresses: Vec<(String, u16)> = built.iter().map(MqttOptions::broker_address).collect();
        assert_eq!(addresses, [("a".to_owned(), 1883), ("::1".to_owned(), 1884)]);
        assert!(built.iter().all(|options| options.client_id() == "cam-01" && options.keep_alive().as_secs() == 7));
        let none = LinkOptions { brokers: Vec::new(), ..options() };
        assert_eq!(error_text(&none), "no MQTT broker given");
    }

    #[test]
    fn credentials_from_password_or_file() {
        let login = |password| {
            let credentials = Credentials { username: "agent".into(), password };
            let options = LinkOptions { credentials: Some(credentials), ..options() }.build(None).expect("valid");
            options[0].credentials().expect("credentials")
        };
        let inline = login(Password::Inline("secret".into()));
        assert_eq!((inline.username.as_str(), inline.password.as_str()), ("agent", "secret"));

        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("password");
        std::fs::write(&file, "from-file\r\n").expect("write");
        assert_eq!(login(Password::File(named("mqtt.password_file", &file))).password, "from-file");

        let missing = Password::File(named("mqtt.password_file", Path::new("/nonexistent/password")));
        let credentials = Credentials { username: "agent".into(), password: missing };
        let text = error_text(&LinkOptions { credentials: Some(credentials), ..options() });
        assert!(text.starts_with("mqtt.password_file: reading /nonexistent/password: "), "{text}");
    }

    #[test]
    fn tls_errors_name_the_setting_and_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").expect("write");
        let bad_base64 = dir.path().join("bad.pem");
        std::fs::write(&bad_base64, "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n").expect("write");
        let not_der = dir.path().join("not-der.pem");
        std::fs::write(&not_der, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").expect("write");
        let text = |ca: &Path| error_text(&LinkOptions { tls: Some(tls(ca)), ..options() });

        let missing = text(Path::new("/nonexistent/ca.pem"));
        assert!(missing.starts_with("mqtt.tls.ca_file: reading /nonexistent/ca.pem: "), "{missing}");
        assert!(missing.contains("No such file"), "{missing}");

        let empty = text(&garbage);
        assert!(empty.ends_with("garbage.pem: no PEM certificate in the file"), "{empty}");

        let invalid = text(&bad_base64);
        assert!(invalid.contains("bad.pem: invalid PEM"), "{invalid}");

        let unusable = text(&not_der);
        assert!(unusable.contains("not-der.pem: not a usable CA certificate"), "{unusable}");
    }

    #[test]
    fn tls_server_name_must_be_a_name() {
        let pki = Pki::generate();
        let server_name = Some(Named::new("mqtt.tls.server_name", "not a name!".to_owned()));
        let bad_name = LinkOptions { tls: Some(TlsOptions { server_name, ..tls(&pki.ca) }), ..options() };
        assert_eq!(error_text(&bad_name), "mqtt.tls.server_name \"not a name!\": not a DNS name or IP address");
    }

    #[test]
    fn tls_client_key_errors() {
        let pki = Pki::generate();
        let dir = tempfile::tempdir().expect("temp dir");
        let no_key = dir.path().join("no-key.pem");
        std::fs::write(&no_key, "nothing here\n").expect("write");
        let client = |cert: &Path, key: &Path| {
            let client = ClientAuth {
                cert: named("mqtt.tls.client_cert_file", cert),
                key: named("mqtt.tls.client_key_file", key),
            };
            LinkOptions { tls: Some(TlsOptions { client: Some(client), ..tls(&pki.ca) }), ..options() }
        };
        let text = error_text(&client(&pki.client_cert, &no_key));
        assert!(text.ends_with("no-key.pem: no PEM private key in the file"), "{text}");
        // The server's key does not belong to the client's certificate.
        let text = error_text(&client(&pki.client_cert, &pki.server_key));
        assert!(text.contains("not a usable certificate and key pair"), "{text}");
        assert!(client(&pki.client_cert, &pki.client_key).check().is_ok());
    }
}
