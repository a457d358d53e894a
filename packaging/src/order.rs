//! Signing and opening operators' orders ([`protocol::update::Order`]): the order's JSON text goes into an
//! [`Envelope`] with an Ed25519 signature over those exact bytes, by the same keys that sign packages.

use crate::error::{Error, Result};
use crate::hashing::hex_sha256;
use crate::signature::{PublicKey, SigningKey, verify_line};
use protocol::update::{Envelope, Order};

/// An order whose signature is by a trusted key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// What the signed text says.
    pub order: Order,
    /// sha256 of the signed text: tells a repeat of an order from another order with the same counter.
    pub digest: String,
    /// The key that signed.
    pub signer: PublicKey,
}

/// Signs `order` with `key`.
pub fn seal(order: &Order, key: &SigningKey) -> Envelope {
    seal_text(serde_json::to_string(order).expect("an order is plain data and always encodes"), key)
}

/// Signs `signed`, any JSON text an operator vouches for (an order, or an operator tool's own record), with `key`.
pub fn seal_text(signed: String, key: &SigningKey) -> Envelope {
    let signature = key.sign(signed.as_bytes()).to_string();
    Envelope { signed, signature }
}

/// Reads an envelope (JSON) and checks its signature, over what is `signed` ("the order", "the rollout
/// state"...), against `trusted`; returns the signed text and the key that signed.
pub fn open_text(signed: &'static str, payload: &[u8], trusted: &[PublicKey]) -> Result<(String, PublicKey)> {
    let envelope: Envelope = serde_json::from_slice(payload)
        .map_err(|e| Error::MalformedOrder { message: format!("{signed} is not an envelope: {e}") })?;
    let signer = verify_line(signed, envelope.signed.as_bytes(), &envelope.signature, trusted)?;
    Ok((envelope.signed, signer))
}

/// Reads an envelope (JSON) and checks its signature against `trusted` before reading the order inside: what
/// an untrusted sender wrote is never parsed further than the envelope.
pub fn open(payload: &[u8], trusted: &[PublicKey]) -> Result<Opened> {
    let (signed, signer) = open_text("the order", payload, trusted)?;
    let order =
        serde_json::from_str(&signed).map_err(|e| Error::MalformedOrder { message: format!("signed text: {e}") })?;
    Ok(Opened { order, digest: hex_sha256(signed.as_bytes()), signer })
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::update::{Instruction, Target};

    fn order() -> Order {
        Order {
            target: Target::Device("d1".into()),
            counter: 1,
            expires_at_ms: 2,
            instruction: Instruction::Rollback { model: None },
        }
    }

    #[test]
    fn a_sealed_order_opens_with_its_key_only() {
        let (key, other) = (SigningKey::generate().unwrap(), SigningKey::generate().unwrap());
        let payload = serde_json::to_vec(&seal(&order(), &key)).unwrap();
        let opened = open(&payload, &[key.public_key()]).unwrap();
        assert_eq!((opened.order, opened.signer), (order(), key.public_key()));
        assert_eq!(opened.digest.len(), 64);

        let untrusted = open(&payload, &[other.public_key()]).unwrap_err();
        assert_eq!(untrusted.kind().as_str(), "untrusted_key");
        assert!(untrusted.to_string().starts_with("the order is signed by key"), "{untrusted}");

        let mut envelope = seal(&order(), &key);
        envelope.signed = envelope.signed.replace("\"d1\"", "\"d2\"");
        let edited = open(&serde_json::to_vec(&envelope).unwrap(), &[key.public_key()]).unwrap_err();
        assert_eq!(edited.kind().as_str(), "bad_signature", "{edited}");
    }

    #[test]
    fn what_is_not_a_signed_order_is_malformed() {
        let key = SigningKey::generate().unwrap();
        let trusted = [key.public_key()];
        let kind = |payload: &[u8]| open(payload, &trusted).unwrap_err().kind().as_str();
        assert_eq!(kind(br#"{"command":"rollback"}"#), "malformed");
        assert_eq!(kind(br#"{"signed":"{}","signature":""}"#), "malformed_signature");
        // Signed, but not an order: refused after the signature, never carried out.
        let signature = key.sign(b"{}").to_string();
        let payload = serde_json::to_vec(&Envelope { signed: "{}".into(), signature }).unwrap();
        assert_eq!(kind(&payload), "malformed");
    }
}
