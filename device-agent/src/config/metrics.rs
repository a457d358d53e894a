//! `[metrics]`: the Prometheus endpoint (cargo feature `prometheus`).

use serde::Deserialize;

/// Where `/metrics` is served; off unless `listen` is set.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// A local address such as `127.0.0.1:9898`; unset: no endpoint.
    pub listen: Option<String>,
}
