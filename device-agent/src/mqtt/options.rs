//! rumqttc options from the agent's config. Everything that can fail (files, TLS material) fails here, at
//! start, with the config key in the message; rumqttc's own setters assert on values the config check
//! has already refused.

use super::{qos, tls};
use crate::config::{AgentConfig, MqttConfig};
use anyhow::{Context, Result};
use rumqttc::{LastWill, MqttOptions, TlsConfiguration, Transport};
use std::time::Duration;

/// Options for `config`, with `will` (the encoded `offline` status) as the retained last will.
pub(super) fn mqtt_options(config: &AgentConfig, will: Vec<u8>) -> Result<MqttOptions> {
    let mqtt = &config.mqtt;
    let mut options = MqttOptions::new(config.mqtt_client_id(), mqtt.host.clone(), mqtt.port());
    options
        .set_keep_alive(Duration::from_secs(mqtt.keep_alive_secs))
        // A fresh session on every connect: the link re-subscribes itself, and the broker keeps no backlog
        // of frames for a device that was away.
        .set_clean_session(true)
        .set_max_packet_size(mqtt.max_packet_bytes, mqtt.max_packet_bytes)
        .set_last_will(LastWill::new(config.topics().status(), will, qos(mqtt.qos.status), true));
    if let Some(username) = &mqtt.username {
        options.set_credentials(username.clone(), password(mqtt)?);
    }
    if let Some(tls_config) = &mqtt.tls {
        let client_config = tls::client_config(tls_config, &mqtt.host)?;
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(client_config)));
    }
    Ok(options)
}

/// `password`, or the content of `password_file` without its line ending; empty when neither is set.
fn password(mqtt: &MqttConfig) -> Result<String> {
    match (&mqtt.password, &mqtt.password_file) {
        (_, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("mqtt.password_file: reading {}", path.display()))?;
            Ok(text.trim_end_matches(['\r', '\n']).to_owned())
        }
        (Some(password), None) => Ok(password.clone()),
        (None, None) => Ok(String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::QoS;
    use std::path::Path;

    fn config(extra: &str) -> AgentConfig {
        let text = format!(
            "device_id = \"cam-01\"\n[[sources]]\nname = \"s\"\nmodel = \"m\"\nkind = \"images\"\npath = \"p\"\n{extra}"
        );
        AgentConfig::parse(&text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn error_text(config: &AgentConfig) -> String {
        match mqtt_options(config, b"offline".to_vec()) {
            Ok(_) => panic!("expected an error"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn options_follow_the_config() {
        let config = config("[mqtt]\nhost = \"broker\"\nkeep_alive_secs = 7\nmax_packet_bytes = 4096\n");
        let options = mqtt_options(&config, b"offline".to_vec()).expect("valid");
        assert_eq!(options.broker_address(), ("broker".to_owned(), 1883));
        assert_eq!(options.client_id(), "cam-01");
        assert_eq!(options.keep_alive(), Duration::from_secs(7));
        assert!(options.clean_session());
        assert_eq!(options.max_packet_size(), 4096);
        assert_eq!(options.credentials(), None);
        let will = options.last_will().expect("a last will");
        assert_eq!(will.topic, "devices/cam-01/status");
        assert_eq!(&will.message[..], b"offline");
        assert_eq!(will.qos, QoS::AtLeastOnce);
        assert!(will.retain);
    }

    #[test]
    fn credentials_from_password_or_file() {
        let inline = config("[mqtt]\nusername = \"agent\"\npassword = \"secret\"\n");
        let login = mqtt_options(&inline, Vec::new()).expect("valid").credentials().expect("credentials");
        assert_eq!((login.username.as_str(), login.password.as_str()), ("agent", "secret"));

        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("password");
        std::fs::write(&file, "from-file\n").expect("write");
        let from_file = config(&format!("[mqtt]\nusername = \"agent\"\npassword_file = {:?}\n", file));
        let login = mqtt_options(&from_file, Vec::new()).expect("valid").credentials().expect("credentials");
        assert_eq!(login.password, "from-file");

        let missing = config("[mqtt]\nusername = \"agent\"\npassword_file = \"/nonexistent/password\"\n");
        assert!(error_text(&missing).starts_with("mqtt.password_file: reading /nonexistent/password: "));
    }

    #[test]
    fn tls_errors_name_the_key_and_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").expect("write");
        let bad_base64 = dir.path().join("bad.pem");
        std::fs::write(&bad_base64, "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n").expect("write");
        let not_der = dir.path().join("not-der.pem");
        std::fs::write(&not_der, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").expect("write");
        let tls = |keys: &str| config(&format!("[mqtt.tls]\n{keys}"));
        let path = |p: &Path| format!("{p:?}");

        let missing = error_text(&tls("ca_file = \"/nonexistent/ca.pem\"\n"));
        assert!(missing.starts_with("mqtt.tls.ca_file: reading /nonexistent/ca.pem: "), "{missing}");
        assert!(missing.contains("No such file"), "{missing}");

        let empty = error_text(&tls(&format!("ca_file = {}\n", path(&garbage))));
        assert!(empty.ends_with("garbage.pem: no PEM certificate in the file"), "{empty}");

        let invalid = error_text(&tls(&format!("ca_file = {}\n", path(&bad_base64))));
        assert!(invalid.contains("bad.pem: invalid PEM"), "{invalid}");

        let unusable = error_text(&tls(&format!("ca_file = {}\n", path(&not_der))));
        assert!(unusable.contains("not-der.pem: not a usable CA certificate"), "{unusable}");
    }

    #[test]
    fn tls_server_name_must_be_a_name() {
        let ca = crate::mqtt::live_tests::Pki::generate();
        let bad_name = config(&format!("[mqtt.tls]\nca_file = {:?}\nserver_name = \"not a name!\"\n", ca.ca));
        let text = error_text(&bad_name);
        assert_eq!(text, "mqtt.tls.server_name \"not a name!\": not a DNS name or IP address");
    }

    #[test]
    fn tls_client_key_errors() {
        let pki = crate::mqtt::live_tests::Pki::generate();
        let dir = tempfile::tempdir().expect("temp dir");
        let no_key = dir.path().join("no-key.pem");
        std::fs::write(&no_key, "nothing here\n").expect("write");
        let tls = |cert: &Path, key: &Path| {
            config(&format!(
                "[mqtt.tls]\nca_file = {:?}\nclient_cert_file = {cert:?}\nclient_key_file = {key:?}\n",
                pki.ca
            ))
        };
        let text = error_text(&tls(&pki.client_cert, &no_key));
        assert!(text.ends_with("no-key.pem: no PEM private key in the file"), "{text}");
        // The server's key does not belong to the client's certificate.
        let text = error_text(&tls(&pki.client_cert, &pki.server_key));
        assert!(text.contains("not a usable certificate and key pair"), "{text}");
        assert!(mqtt_options(&tls(&pki.client_cert, &pki.client_key), Vec::new()).is_ok());
    }
}
