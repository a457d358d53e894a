//! An `mqtt_sensor` payload as the agent's inbound route takes it: `wire::decode_sensor_window` in the
//! source's encoding, then the sensor preprocessor of a real bundle (activity-classifier: 6 channels, 100
//! samples, per-channel standardisation).

use protocol::wire::{self, Format};
use runtime::manifest::InputSpec;
use runtime::preprocess::SensorPreprocessor;
use runtime::{Manifest, SensorWindow};
use std::sync::LazyLock;

static PREPROCESSOR: LazyLock<SensorPreprocessor> = LazyLock::new(|| {
    let manifest = Manifest::parse(include_str!("../../models/activity-classifier/manifest.toml")).unwrap();
    let InputSpec::Sensor(spec) = &manifest.input else { panic!("activity-classifier takes sensor windows") };
    SensorPreprocessor::new(spec)
});

/// Panics where the product breaks a rule on `data`.
pub fn check(data: &[u8]) {
    // The first byte picks the source's encoding; the rest is the payload.
    let Some((&selector, payload)) = data.split_first() else { return };
    let encoding = if selector & 1 == 0 { Format::Json } else { Format::Postcard };
    let Ok(message) = wire::decode_sensor_window(encoding, payload) else { return };
    assert!(message.channels > 0 && message.values.len().is_multiple_of(message.channels as usize));
    // As the agent's inbound route hands it to the source's worker.
    let window = SensorWindow { channels: message.channels as usize, values: message.values };
    let mut preprocessor = PREPROCESSOR.clone();
    if preprocessor.prepare(&window).is_ok() {
        assert_eq!(preprocessor.tensor().len(), window.values.len());
    }
}
