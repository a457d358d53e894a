//! Every payload type of the wire protocol through `wire::decode`, in JSON and in a postcard envelope: the
//! agent decodes inbound sensor windows with it, `edgectl` and subscribers the rest. A payload that decodes
//! must encode again, and its encoding must be stable from there on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::wire::{self, ErrorEvent, Format, Health, Message, Prediction, SensorWindowMsg, Status};
use serde::de::DeserializeOwned;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the format and the message type; the rest is the payload.
    let Some((&selector, payload)) = data.split_first() else { return };
    let format = if selector & 1 == 0 { Format::Json } else { Format::Postcard };
    match (selector >> 1) % 5 {
        0 => check::<Status>(format, payload),
        1 => check::<Prediction>(format, payload),
        2 => check::<ErrorEvent>(format, payload),
        3 => check::<Health>(format, payload),
        _ => check::<SensorWindowMsg>(format, payload),
    }
});

fn check<M: Message + DeserializeOwned>(format: Format, payload: &[u8]) {
    let Ok(message) = wire::decode::<M>(format, payload) else { return };
    let encoded = wire::encode(format, &message).expect("a decoded message encodes");
    let again: M = wire::decode(format, &encoded).expect("an encoded message decodes");
    assert_eq!(wire::encode(format, &again).expect("a decoded message encodes"), encoded, "encoding is not stable");
}
