//! The rustls client configuration for `[mqtt.tls]`: ring as the crypto provider (no aws-lc C build), the
//! CA file as the only trust anchors, an optional client certificate (mutual TLS), and an optional server
//! name that the broker's certificate must carry instead of the host.

use crate::config::TlsConfig;
use anyhow::{Context, Result, anyhow, bail};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

/// Builds the client configuration; every error names the config key and the file.
pub(crate) fn client_config(tls: &TlsConfig, host: &str) -> Result<Arc<ClientConfig>> {
    // The config check guarantees a CA file; this is the same rule, stated for direct callers.
    let ca_file = tls.ca_file.as_deref().ok_or_else(|| anyhow!("mqtt.tls.ca_file is required"))?;
    let mut roots = RootCertStore::empty();
    for cert in read_certs("mqtt.tls.ca_file", ca_file)? {
        roots
            .add(cert)
            .with_context(|| format!("mqtt.tls.ca_file {}: not a usable CA certificate", ca_file.display()))?;
    }

    // Passing the provider keeps the choice here instead of in rustls' process-wide default.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("ring supports no default TLS version")?;
    let builder = match tls.server_name.as_deref().filter(|name| *name != host) {
        None => builder.with_root_certificates(roots),
        Some(name) => {
            let verifier = ExpectedName::new(name, roots, provider)?;
            builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier))
        }
    };

    let config = match (&tls.client_cert_file, &tls.client_key_file) {
        (Some(cert_file), Some(key_file)) => {
            let chain = read_certs("mqtt.tls.client_cert_file", cert_file)?;
            let key = read_key(key_file)?;
            builder.with_client_auth_cert(chain, key).with_context(|| {
                format!(
                    "mqtt.tls.client_cert_file {} and client_key_file {}: not a usable certificate and key pair",
                    cert_file.display(),
                    key_file.display()
                )
            })?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => bail!("mqtt.tls.client_cert_file and client_key_file go together"),
    };
    Ok(Arc::new(config))
}

fn read_certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = std::fs::read(path).with_context(|| format!("{key}: reading {}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(bytes.as_slice()))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{key} {}: invalid PEM", path.display()))?;
    if certs.is_empty() {
        bail!("{key} {}: no PEM certificate in the file", path.display());
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let key = "mqtt.tls.client_key_file";
    let bytes = std::fs::read(path).with_context(|| format!("{key}: reading {}", path.display()))?;
    rustls_pemfile::private_key(&mut BufReader::new(bytes.as_slice()))
        .with_context(|| format!("{key} {}: invalid PEM", path.display()))?
        .ok_or_else(|| anyhow!("{key} {}: no PEM private key in the file", path.display()))
}

/// Full WebPKI verification against our roots, but for `mqtt.tls.server_name` rather than the host
/// rumqttc dials: a broker reached by IP address or an internal alias, whose certificate names it otherwise.
#[derive(Debug)]
struct ExpectedName {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ExpectedName {
    fn new(name: &str, roots: RootCertStore, provider: Arc<CryptoProvider>) -> Result<ExpectedName> {
        let name = ServerName::try_from(name.to_owned())
            .map_err(|_| anyhow!("mqtt.tls.server_name {name:?}: not a DNS name or IP address"))?;
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .context("mqtt.tls.ca_file: building the certificate verifier")?;
        Ok(ExpectedName { inner, name })
    }
}

impl ServerCertVerifier for ExpectedName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _dialled: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
