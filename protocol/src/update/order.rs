//! Signed orders: everything that changes what a device runs (an announcement of a package, a rollback, and
//! any command added later) travels as an [`Envelope`] around an [`Order`]. The order names its target, a
//! counter the device must not have seen surpassed, and an expiry; the envelope's signature is by an operator
//! key the device trusts. A device carries out an order only if all of that holds.
//!
//! ```json
//! {"signed": "{\"target\":{\"device\":\"wrist-01\"},\"counter\":1733318212345678,\"expires_at_ms\":1733318542345,\"instruction\":{\"rollback\":{\"model\":null}}}",
//!  "signature": "ed25519 <public key, 64 hex> <signature, 128 hex>"}
//! ```
//! The signature covers the exact bytes of `signed`, so no canonical form of JSON is needed.

use super::Announcement;
use serde::{Deserialize, Serialize};

/// An order as it travels: its JSON text and the signature over that text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// The JSON text of an [`Order`].
    pub signed: String,
    /// `ed25519 <public key, 64 hex> <signature, 128 hex>` over the UTF-8 bytes of `signed`: the format of a
    /// package's `manifest.sig`.
    pub signature: String,
}

/// What an operator signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Order {
    /// Who must carry it out: a device, or every member of a group.
    pub target: Target,
    /// Larger than every counter the device took before, or equal to the last one for the same order repeated
    /// (a pusher repeats its announcement). Devices keep the last one on disk, so a replay is refused across
    /// restarts too. `edgectl` uses the Unix time in microseconds at signing.
    pub counter: u64,
    /// Unix time (ms) after which the device refuses the order.
    pub expires_at_ms: u64,
    pub instruction: Instruction,
}

/// The device or group an order is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Device(String),
    Group(String),
}

impl Target {
    /// Whether a device with id `device`, member of `groups`, is addressed.
    pub fn addresses(&self, device: &str, groups: &[String]) -> bool {
        match self {
            Target::Device(id) => id == device,
            Target::Group(group) => groups.iter().any(|member_of| member_of == group),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Device(id) => write!(f, "device {id}"),
            Target::Group(group) => write!(f, "group {group}"),
        }
    }
}

/// What the order says to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Instruction {
    /// Take this package (on `<base>/update/announce`).
    Announce(Announcement),
    /// Return to the previous model of `model`, the only updated model when unset (on `<prefix>/update/command`).
    Rollback { model: Option<String> },
    /// Publish the samples of retraining candidate `candidate` on `<prefix>/retrain/samples/<candidate>/...`
    /// (on `<prefix>/update/command`): signed, because they are the device's inputs.
    FetchEvidence { candidate: String },
}

impl Instruction {
    /// Whether it is a command (it comes on the command topic), not an announcement.
    pub fn is_command(&self) -> bool {
        !matches!(self, Instruction::Announce(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_read_as_documented() {
        let text = r#"{"target":{"device":"wrist-01"},"counter":7,"expires_at_ms":9,"instruction":{"rollback":{"model":null}}}"#;
        let order: Order = serde_json::from_str(text).unwrap();
        assert_eq!(
            order,
            Order {
                target: Target::Device("wrist-01".into()),
                counter: 7,
                expires_at_ms: 9,
                instruction: Instruction::Rollback { model: None },
            }
        );
        assert!(order.instruction.is_command());
        assert_eq!(serde_json::to_string(&order).unwrap(), text);
        let unknown = text.replace("\"model\":null", "\"model\":null,\"force\":true");
        assert!(serde_json::from_str::<Order>(&unknown).is_err(), "unknown fields are refused");
        assert!(serde_json::from_str::<Order>(r#"{"command":"rollback"}"#).is_err(), "the unsigned command is gone");
        let fetch = r#"{"target":{"device":"wrist-01"},"counter":8,"expires_at_ms":9,"instruction":{"fetch_evidence":{"candidate":"1733318212345-0"}}}"#;
        let order: Order = serde_json::from_str(fetch).unwrap();
        assert_eq!(order.instruction, Instruction::FetchEvidence { candidate: "1733318212345-0".into() });
        assert!(order.instruction.is_command(), "it comes on the command topic");
    }

    #[test]
    fn targets_address_a_device_or_the_members_of_a_group() {
        let groups = ["lab".to_owned()];
        assert!(Target::Device("d1".into()).addresses("d1", &groups));
        assert!(!Target::Device("d2".into()).addresses("d1", &groups));
        assert!(Target::Group("lab".into()).addresses("d1", &groups));
        assert!(!Target::Group("field".into()).addresses("d1", &groups));
        assert_eq!(serde_json::to_string(&Target::Group("lab".into())).unwrap(), r#"{"group":"lab"}"#);
    }
}
