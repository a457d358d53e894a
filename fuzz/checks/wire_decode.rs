//! Every payload type of the wire protocol through `wire::decode`, in JSON and in a postcard envelope: the
//! agent decodes inbound sensor windows with it, `edgectl` and subscribers the rest. A payload that decodes
//! must encode again; in postcard the encoding must then be stable. In JSON it need not read back: a number
//! beyond f32's range (`1e39`) decodes as infinity, which serde_json writes as `null` (the worker refuses
//! non-finite sensor values as `non_finite`; fuzz/regressions/wire_decode holds such a window).

use protocol::wire::{self, ErrorEvent, Format, Health, Message, Prediction, SensorWindowMsg, Status};
use serde::de::DeserializeOwned;

/// Panics where the product breaks a rule on `data`.
pub fn check(data: &[u8]) {
    // The first byte picks the format and the message type; the rest is the payload.
    let Some((&selector, payload)) = data.split_first() else { return };
    let format = if selector & 1 == 0 { Format::Json } else { Format::Postcard };
    match (selector >> 1) % 5 {
        0 => round_trip::<Status>(format, payload),
        1 => round_trip::<Prediction>(format, payload),
        2 => round_trip::<ErrorEvent>(format, payload),
        3 => round_trip::<Health>(format, payload),
        _ => round_trip::<SensorWindowMsg>(format, payload),
    }
}

fn round_trip<M: Message + DeserializeOwned>(format: Format, payload: &[u8]) {
    let Ok(message) = wire::decode::<M>(format, payload) else { return };
    let encoded = wire::encode(format, &message).expect("a decoded message encodes");
    let again: M = match (format, wire::decode(format, &encoded)) {
        (_, Ok(again)) => again,
        (Format::Json, Err(_)) => return,
        (Format::Postcard, Err(e)) => panic!("an encoded message does not decode: {e}"),
    };
    assert_eq!(wire::encode(format, &again).expect("a decoded message encodes"), encoded, "encoding is not stable");
}
