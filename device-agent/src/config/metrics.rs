//! `[metrics]`: the Prometheus endpoint (cargo feature `prometheus`).

use super::{Problems, empty_as_none};
use serde::Deserialize;
use std::net::SocketAddr;

/// Where `/metrics` is served; off unless `listen` is set.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// A local address such as `127.0.0.1:9898`; unset or empty: no endpoint.
    #[serde(deserialize_with = "empty_as_none")]
    pub listen: Option<String>,
}

impl MetricsConfig {
    /// The address to serve `/metrics` on, `None` when off. Only after validation: an unparsable address reads
    /// as off.
    #[cfg(feature = "prometheus")]
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen.as_deref().and_then(|listen| listen.parse().ok())
    }

    pub(super) fn validate(&self, problems: &mut Problems) {
        let Some(listen) = self.listen.as_deref() else { return };
        if !cfg!(feature = "prometheus") {
            problems.push(
                "metrics.listen",
                "this device-agent was built without the `prometheus` feature: remove [metrics] or use a build with it",
            );
        } else if let Err(error) = listen.parse::<SocketAddr>() {
            problems.push("metrics.listen", format!("{listen:?} is not an IP address and port ({error})"));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::AgentConfig;

    fn config(metrics: &str) -> Result<AgentConfig, Vec<String>> {
        let text = format!(
            "device_id = \"cam-01\"\n[[sources]]\nname = \"front\"\nmodel = \"m\"\nkind = \"images\"\npath = \"f\"\n\
             [metrics]\n{metrics}"
        );
        AgentConfig::parse(&text).map_err(|errors| errors.0.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn unset_or_empty_is_off() {
        assert_eq!(config("").expect("valid").metrics.listen, None);
        assert_eq!(config("listen = \"\"").expect("valid").metrics.listen, None);
    }

    #[cfg(feature = "prometheus")]
    #[test]
    fn listen_is_an_ip_address_and_port() {
        let parsed = config("listen = \"0.0.0.0:9898\"").expect("valid");
        assert_eq!(parsed.metrics.listen_addr(), Some(([0, 0, 0, 0], 9898).into()));
        let v6 = super::MetricsConfig { listen: Some("[::1]:9898".into()) };
        assert_eq!(v6.listen_addr().map(|address| address.is_ipv6()), Some(true));
        let errors = config("listen = \"localhost:9898\"").expect_err("a host name");
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("metrics.listen: \"localhost:9898\" is not an IP address and port"),
            "{errors:?}"
        );
        assert!(config("listen = \"127.0.0.1\"").is_err(), "no port");
    }

    #[cfg(not(feature = "prometheus"))]
    #[test]
    fn listen_is_refused_without_the_feature() {
        let errors = config("listen = \"127.0.0.1:9898\"").expect_err("compiled out");
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("built without the `prometheus` feature"), "{errors:?}");
    }
}
