//! The rustls client configuration: ring as the crypto provider (no aws-lc C build), the CA file as the only
//! trust anchors, an optional client certificate (mutual TLS), and an optional server name that the broker's
//! certificate must carry instead of the host.

use crate::options::{Named, OptionsError, TlsOptions};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::PathBuf;
use std::sync::Arc;

/// Builds the client configuration; every error names the setting and the file.
pub(crate) fn client_config(tls: &TlsOptions, host: &str) -> Result<Arc<ClientConfig>, OptionsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(&tls.ca)? {
        roots.add(cert).map_err(|source| OptionsError::UnusableCa {
            name: tls.ca.name.clone(),
            path: tls.ca.value.clone(),
            source,
        })?;
    }

    // Passing the provider keeps the choice here instead of in rustls' process-wide default.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(OptionsError::TlsVersions)?;
    let builder = match tls.server_name.as_ref().filter(|name| name.value != host) {
        None => builder.with_root_certificates(roots),
        Some(name) => {
            let verifier = ExpectedName::new(name, &tls.ca.name, roots, provider)?;
            builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier))
        }
    };

    let config = match &tls.client {
        Some(client) => {
            let chain = read_certs(&client.cert)?;
            let key = read_key(&client.key)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|source| OptionsError::UnusableKeyPair { files: Box::new(client.clone()), source })?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn read_pem(file: &Named<PathBuf>) -> Result<Vec<u8>, OptionsError> {
    std::fs::read(&file.value).map_err(|source| OptionsError::Read {
        name: file.name.clone(),
        path: file.value.clone(),
        source,
    })
}

fn invalid_pem(file: &Named<PathBuf>) -> impl FnOnce(pem::Error) -> OptionsError + '_ {
    |source| OptionsError::InvalidPem { name: file.name.clone(), path: file.value.clone(), source }
}

fn read_certs(file: &Named<PathBuf>) -> Result<Vec<CertificateDer<'static>>, OptionsError> {
    let bytes = read_pem(file)?;
    let certs = CertificateDer::pem_slice_iter(&bytes).collect::<Result<Vec<_>, _>>().map_err(invalid_pem(file))?;
    if certs.is_empty() {
        return Err(OptionsError::NoCertificate { name: file.name.clone(), path: file.value.clone() });
    }
    Ok(certs)
}

fn read_key(file: &Named<PathBuf>) -> Result<PrivateKeyDer<'static>, OptionsError> {
    match PrivateKeyDer::from_pem_slice(&read_pem(file)?) {
        Err(pem::Error::NoItemsFound) => {
            Err(OptionsError::NoPrivateKey { name: file.name.clone(), path: file.value.clone() })
        }
        key => key.map_err(invalid_pem(file)),
    }
}

/// Full WebPKI verification against our roots, but for the configured server name rather than the host
/// rumqttc dials: a broker reached by IP address or an internal alias, whose certificate names it otherwise.
#[derive(Debug)]
struct ExpectedName {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ExpectedName {
    fn new(
        name: &Named<String>,
        ca_name: &str,
        roots: RootCertStore,
        provider: Arc<CryptoProvider>,
    ) -> Result<ExpectedName, OptionsError> {
        let name = ServerName::try_from(name.value.clone()).map_err(|_| OptionsError::ServerName(name.clone()))?;
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|source| OptionsError::Verifier { name: ca_name.to_owned(), source })?;
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
