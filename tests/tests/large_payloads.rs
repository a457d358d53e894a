//! A prediction too large for one MQTT packet (a `raw` output of about 5 MB against the default 2 MiB
//! `mqtt.max_packet_bytes`) becomes a `payload_too_large` error event, counted in health, and is kept on disk with
//! `[large_payloads] store = true`; the link stays up and the other source's predictions keep arriving.

use integration_tests::agent::Agent;
use integration_tests::broker::Broker;
use integration_tests::models_dir;
use integration_tests::subscriber::{Received, Subscriber};
use serde_json::Value;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn on<'a>(messages: &'a [Received], topic: &str) -> Vec<&'a Received> {
    messages.iter().filter(|m| m.topic == topic).collect()
}

fn source_errors(health: &Value, source: &str, kind: &str) -> u64 {
    let sources = health["sources"].as_array().cloned().unwrap_or_default();
    let Some(source) = sources.iter().find(|s| s["name"] == source) else { return 0 };
    let errors = source["errors"].as_array().cloned().unwrap_or_default();
    errors.iter().filter(|e| e["kind"] == kind).filter_map(|e| e["count"].as_u64()).sum()
}

#[test]
fn a_prediction_over_the_packet_limit_becomes_an_error_event_and_the_link_stays_up() {
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port(), "devices/cam-01/#");
    let dir = tempfile::tempdir().unwrap();
    let stored = dir.path().join("large");
    let frames = models_dir().join("frames");
    let config = format!(
        "device_id = \"cam-01\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = {}\n[health]\ninterval_secs = 1\n\
         [large_payloads]\nstore = true\ndir = \"{}\"\n\
         [[sources]]\nname = \"big\"\nkind = \"images\"\nmodel = \"{}\"\nfiles = [\"{}\", \"{}\"]\nrate_fps = 1\n\
         [[sources]]\nname = \"small\"\nkind = \"images\"\nmodel = \"{}\"\npath = \"{}\"\nrate_fps = 5\nloop = true\n",
        broker.port(),
        stored.display(),
        models_dir().join("testing/large-output").display(),
        frames.join("cat.jpg").display(),
        frames.join("coffee.jpg").display(),
        models_dir().join("image-classifier").display(),
        frames.display(),
    );
    let agent = Agent::start_in(dir, &config);
    let messages = sub.collect_until(WAIT, |got| {
        let health = on(got, "devices/cam-01/health");
        let counted = health.iter().any(|h| source_errors(&h.json(), "big", "payload_too_large") == 2);
        // Predictions of the other source after both refusals: the link carried on.
        let Some(second) = got.iter().filter(|m| m.topic == "devices/cam-01/errors/big").nth(1) else { return false };
        let after = got.iter().skip_while(|m| !std::ptr::eq(*m, second));
        counted && after.filter(|m| m.topic == "devices/cam-01/predictions/small").count() >= 3
    });

    let refused = on(&messages, "devices/cam-01/errors/big");
    assert_eq!(refused.len(), 2, "one event per prediction");
    for event in &refused {
        let event = event.json();
        assert_eq!((event["stage"].as_str(), event["kind"].as_str()), (Some("publish"), Some("payload_too_large")));
        let message = event["message"].as_str().unwrap();
        assert!(message.contains("over mqtt.max_packet_bytes (2097152); not published"), "{message}");
        let path = message.split("; stored as ").nth(1).unwrap_or_else(|| panic!("no file named: {message}"));
        let kept: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(kept["seq"], event["seq"], "the kept prediction is the refused one");
        let tensor = &kept["output"]["raw"]["tensors"][0];
        assert_eq!(tensor["shape"], serde_json::json!([1, 27, 224, 224]));
        assert_eq!(tensor["data"].as_array().unwrap().len(), 27 * 224 * 224);
    }
    assert!(on(&messages, "devices/cam-01/predictions/big").is_empty(), "nothing too large was published");
    let health = on(&messages, "devices/cam-01/health").last().unwrap().json();
    assert_eq!(health["mqtt_reconnects"], 0, "the link never dropped: {health}");
    let (status, log) = agent.terminate(WAIT);
    assert!(status.success(), "{log}");
}
