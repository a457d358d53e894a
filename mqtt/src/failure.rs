//! Why a connection failed, as an operator needs to read it: a certificate problem or a refusal is a
//! configuration mistake that retrying won't fix, unlike a broker that is away.

use crate::oversize::Oversize;
use rumqttc::ConnectionError;
use rustls::AlertDescription;
use std::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The broker answered CONNECT with a refusal (credentials, ACL, client id).
    Refused,
    /// The broker's certificate failed our verification (unknown CA, wrong name, expired).
    BrokerCertificate,
    /// The broker refused our client certificate (a TLS alert during the handshake).
    ClientCertificate,
    /// A read refused an inbound packet of this size (see [`crate::oversize`]).
    Oversize(usize),
    /// Anything else: the network, the broker going away, a dead link, a timeout.
    Network,
}

impl Failure {
    pub(crate) fn of(error: &ConnectionError) -> Failure {
        if matches!(error, ConnectionError::ConnectionRefused(_)) {
            return Failure::Refused;
        }
        if let Some(bytes) = Oversize::refused_size(error) {
            return Failure::Oversize(bytes);
        }
        match tls_error(error) {
            Some(rustls::Error::InvalidCertificate(_)) => Failure::BrokerCertificate,
            Some(rustls::Error::AlertReceived(alert)) if is_certificate_alert(*alert) => Failure::ClientCertificate,
            _ => Failure::Network,
        }
    }

    /// What the link reports as the connection's last error: `error`, named as what it is.
    pub(crate) fn describe(self, error: &ConnectionError) -> String {
        match self {
            Failure::BrokerCertificate => {
                format!("certificate error: the broker's certificate is not trusted: {error}")
            }
            Failure::ClientCertificate => format!("certificate error: the broker refused our certificate: {error}"),
            Failure::Refused | Failure::Oversize(_) | Failure::Network => error.to_string(),
        }
    }

    /// The log line's advice, for failures that retrying won't fix.
    pub(crate) fn advice(self) -> Option<&'static str> {
        match self {
            Failure::Refused => Some("check credentials and ACLs"),
            Failure::BrokerCertificate => Some("check the CA file, the server name and the clock"),
            Failure::ClientCertificate => Some("check the client certificate, the CA the broker trusts and the clock"),
            Failure::Oversize(_) | Failure::Network => None,
        }
    }
}

/// The rustls error under `error`. tokio-rustls wraps it in an `io::Error`, whose `source()` skips the error it
/// wraps, so each `io::Error` of the chain is opened with `get_ref`.
fn tls_error(error: &ConnectionError) -> Option<&rustls::Error> {
    let mut next: Option<&(dyn Error + 'static)> = Some(error);
    while let Some(current) = next {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        let wrapped = current.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref());
        if let Some(tls) = wrapped.and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
            return Some(tls);
        }
        next = current.source();
    }
    None
}

/// Alerts a server sends when it does not accept the client's certificate.
fn is_certificate_alert(alert: AlertDescription) -> bool {
    matches!(
        alert,
        AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateRequired
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::{ConnectReturnCode, StateError};
    use rustls::CertificateError;
    use std::io;

    /// A handshake error as rumqttc returns it: tokio-rustls' `io::Error` inside rumqttc's TLS error.
    fn handshake(error: rustls::Error) -> ConnectionError {
        ConnectionError::Tls(rumqttc::TlsError::Io(io::Error::new(io::ErrorKind::InvalidData, error)))
    }

    #[test]
    fn certificate_failures_are_named_as_such() {
        let unknown_ca = handshake(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer));
        assert_eq!(Failure::of(&unknown_ca), Failure::BrokerCertificate);
        let text = Failure::BrokerCertificate.describe(&unknown_ca);
        assert!(text.starts_with("certificate error: the broker's certificate is not trusted: "), "{text}");
        let expired = handshake(rustls::Error::InvalidCertificate(CertificateError::Expired));
        assert_eq!(Failure::of(&expired), Failure::BrokerCertificate);

        let refused = handshake(rustls::Error::AlertReceived(AlertDescription::CertificateRequired));
        assert_eq!(Failure::of(&refused), Failure::ClientCertificate);
        // After the handshake, the alert comes with the first read.
        let on_read = ConnectionError::MqttState(StateError::Deserialization(rumqttc::mqttbytes::Error::Io(
            io::Error::new(io::ErrorKind::InvalidData, rustls::Error::AlertReceived(AlertDescription::UnknownCA)),
        )));
        assert_eq!(Failure::of(&on_read), Failure::ClientCertificate);
    }

    #[test]
    fn other_failures() {
        let refused = ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized);
        assert_eq!(Failure::of(&refused), Failure::Refused);
        assert_eq!(Failure::Refused.describe(&refused), refused.to_string());
        let unreachable = ConnectionError::Io(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(Failure::of(&unreachable), Failure::Network);
        assert_eq!(Failure::of(&ConnectionError::MqttState(StateError::AwaitPingResp)), Failure::Network);
        let other_alert = handshake(rustls::Error::AlertReceived(AlertDescription::HandshakeFailure));
        assert_eq!(Failure::of(&other_alert), Failure::Network);
        assert_eq!(Failure::Network.advice(), None);
    }
}
