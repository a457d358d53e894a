//! Golden bytes for every postcard message (derived by hand from the primitives in the module docs), JSON
//! field names, round trips and malformed sensor windows.

use super::*;
use crate::{ClassScore, RawTensor};
use serde_json::{Value, json};

fn identity() -> ModelIdentity {
    ModelIdentity { name: "m".into(), version: "1.0.0".into(), sha256: "ab".into() }
}

fn online() -> Status {
    Status {
        state: State::Online,
        device: "cam-01".into(),
        agent_version: "0.1.0".into(),
        since_ms: Some(1_700_000_000_000),
    }
}

fn prediction() -> Prediction {
    Prediction {
        device: "cam-01".into(),
        source: "front".into(),
        seq: 0,
        captured_at_ms: 1000,
        published_at_ms: 1001,
        model: identity(),
        provider: "cpu".into(),
        output: Output::Classification { classes: vec![ClassScore { index: 3, label: "cat".into(), score: 0.5 }] },
        latency_us: StageTimings { decode_us: 1, preprocess_us: 2, inference_us: 300, postprocess_us: 4 },
        total_us: 307,
        input: Some("a.jpg".into()),
    }
}

fn error_event() -> ErrorEvent {
    ErrorEvent {
        device: "cam-01".into(),
        source: "front".into(),
        seq: 300,
        at_ms: 1000,
        stage: ErrorStage::Decode,
        kind: ErrorKind::Decode,
        message: "bad jpeg".into(),
        input: Some("a.jpg".into()),
    }
}

fn health() -> Health {
    let total = Percentiles { p50_us: 100, p95_us: 200, p99_us: 300 };
    Health {
        device: "d".into(),
        agent_version: "0.1.0".into(),
        uptime_s: 5,
        cpu_percent: 12.5,
        rss_bytes: 1024,
        peak_rss_bytes: 2048,
        temperature_c: Some(45.0),
        mqtt_reconnects: 1,
        sources: vec![SourceHealth {
            name: "s".into(),
            model: ModelIdentity { name: "m".into(), version: "1".into(), sha256: "ab".into() },
            provider_requested: vec!["cuda".into(), "cpu".into()],
            provider_active: "cpu".into(),
            frames_in: 10,
            frames_ok: 9,
            frames_per_s: 2.0,
            dropped: 1,
            errors: vec![ErrorCount { kind: ErrorKind::Io, count: 1 }],
            queue_depth: 0,
            queue_capacity: 8,
            latency: StageLatency { total, ..StageLatency::default() },
            predictions_unpublished: 0,
        }],
        health_unpublished: 0,
        arch: "aarch64".into(),
        mqtt_oversized: 2,
        conditions: vec![Condition {
            kind: ErrorKind::DiskFull,
            source: "agent".into(),
            since_ms: 7,
            detail: "x".into(),
        }],
        spool: Some(SpoolHealth {
            records: 3,
            bytes: 1000,
            oldest_age_ms: 200,
            dropped_predictions: 4,
            dropped_errors: 0,
            dropped_health: 5,
            write_errors: 0,
        }),
        cameras: vec![CameraHealth {
            source: "c".into(),
            received_per_s: 2.0,
            decoded_per_s: 2.0,
            inferred_per_s: 1.0,
            replaced_per_s: 0.0,
            decode_errors: 3,
            reconnects: 1,
            last_frame_age_ms: Some(200),
            width: 640,
            height: 480,
            codec: "h264".into(),
            decoder: "sw".into(),
        }],
        snapshots: vec![SnapshotHealth {
            source: "c".into(),
            published: 2,
            stored: 1,
            rate_limited: 7,
            busy: 0,
            too_large: 1,
            failed: 0,
        }],
        monitors: Vec::new(),
        at_ms: 1_700_000_000_000,
    }
}

fn postcard<M: Message>(message: &M) -> Vec<u8> {
    encode(Format::Postcard, message).expect("postcard encodes")
}

fn json_object<M: Message>(message: &M) -> Value {
    serde_json::from_slice(&encode(Format::Json, message).expect("JSON encodes")).expect("valid JSON")
}

#[test]
fn status_postcard_bytes() {
    #[rustfmt::skip]
    let expected = [
        0x02, 0x00,                                     // envelope version 2, kind Status
        0x00,                                           // state Online
        0x06, b'c', b'a', b'm', b'-', b'0', b'1',       // device
        0x05, b'0', b'.', b'1', b'.', b'0',             // agent_version
        0x01, 0x80, 0xD0, 0x95, 0xFF, 0xBC, 0x31,       // since_ms Some(1_700_000_000_000)
    ];
    assert_eq!(postcard(&online()), expected);

    let will = Status { state: State::Offline, since_ms: None, ..online() };
    let will_bytes = postcard(&will);
    assert_eq!(will_bytes[..3], [0x02, 0x00, 0x01]); // Offline
    assert_eq!(will_bytes.last(), Some(&0x00)); // since_ms None
}

#[test]
fn prediction_postcard_bytes() {
    #[rustfmt::skip]
    let expected = [
        0x02, 0x01,                                     // envelope version 2, kind Prediction
        0x06, b'c', b'a', b'm', b'-', b'0', b'1',       // device
        0x05, b'f', b'r', b'o', b'n', b't',             // source
        0x00,                                           // seq 0
        0xE8, 0x07,                                     // captured_at_ms 1000
        0xE9, 0x07,                                     // published_at_ms 1001
        0x01, b'm',                                     // model.name
        0x05, b'1', b'.', b'0', b'.', b'0',             // model.version
        0x02, b'a', b'b',                               // model.sha256
        0x03, b'c', b'p', b'u',                         // provider
        0x00,                                           // output: Classification
        0x01,                                           //   one class
        0x03,                                           //   index 3
        0x03, b'c', b'a', b't',                         //   label
        0x00, 0x00, 0x00, 0x3F,                         //   score 0.5
        0x01, 0x02, 0xAC, 0x02, 0x04,                   // latency_us 1, 2, 300, 4
        0xB3, 0x02,                                     // total_us 307
        0x01, 0x05, b'a', b'.', b'j', b'p', b'g',       // input Some("a.jpg")
    ];
    assert_eq!(postcard(&prediction()), expected);
}

#[test]
fn anomaly_output_postcard_bytes() {
    let output =
        Output::Anomaly { score: 0.5, threshold: 2.0, anomalous: false, label: Some(-1), label_anomalous: None };
    let anomaly = Prediction { output, ..prediction() };
    let bytes = postcard(&anomaly);
    // Variant 2, two f32, a bool, Some(-1) as a zigzag varint, None; then the same latency, total and input as above.
    #[rustfmt::skip]
    let tail = [
        0x02, 0x00, 0x00, 0x00, 0x3F, 0x00, 0x00, 0x00, 0x40, 0x00, 0x01, 0x01, 0x00,
        0x01, 0x02, 0xAC, 0x02, 0x04, 0xB3, 0x02,
        0x01, 0x05, b'a', b'.', b'j', b'p', b'g',
    ];
    assert!(bytes.ends_with(&tail), "{bytes:02X?}");
}

#[test]
fn raw_tensors_carry_their_element_type_and_integer_values() {
    let label = RawTensor {
        name: "label".to_owned(),
        shape: vec![1],
        data: vec![],
        dtype: crate::TensorDtype::Int64,
        integers: vec![-1],
    };
    let output = Output::Raw { tensors: vec![label] };
    let json = serde_json::to_string(&output).unwrap();
    assert_eq!(json, r#"{"raw":{"tensors":[{"name":"label","shape":[1],"data":[],"dtype":"int64","integers":[-1]}]}}"#);
    let bytes = postcard(&Prediction { output, ..prediction() });
    // Variant 3, one tensor: name, shape [1] (zigzag 2), no data, dtype 6 (int64), integers [-1] (zigzag 1); then the
    // same latency, total and input as above.
    #[rustfmt::skip]
    let tail = [
        0x03, 0x01, 0x05, b'l', b'a', b'b', b'e', b'l', 0x01, 0x02, 0x00, 0x06, 0x01, 0x01,
        0x01, 0x02, 0xAC, 0x02, 0x04, 0xB3, 0x02,
        0x01, 0x05, b'a', b'.', b'j', b'p', b'g',
    ];
    assert!(bytes.ends_with(&tail), "{bytes:02X?}");
}

#[test]
fn error_event_postcard_bytes() {
    #[rustfmt::skip]
    let expected = [
        0x02, 0x02,                                     // envelope version 2, kind Error
        0x06, b'c', b'a', b'm', b'-', b'0', b'1',       // device
        0x05, b'f', b'r', b'o', b'n', b't',             // source
        0xAC, 0x02,                                     // seq 300
        0xE8, 0x07,                                     // at_ms 1000
        0x06, b'd', b'e', b'c', b'o', b'd', b'e',       // stage
        0x06, b'd', b'e', b'c', b'o', b'd', b'e',       // kind
        0x08, b'b', b'a', b'd', b' ', b'j', b'p', b'e', b'g', // message
        0x01, 0x05, b'a', b'.', b'j', b'p', b'g',       // input Some("a.jpg")
    ];
    assert_eq!(postcard(&error_event()), expected);
}

#[test]
fn health_postcard_bytes() {
    #[rustfmt::skip]
    let expected = [
        0x02, 0x03,                                     // envelope version 2, kind Health
        0x01, b'd',                                     // device
        0x05, b'0', b'.', b'1', b'.', b'0',             // agent_version
        0x05,                                           // uptime_s
        0x00, 0x00, 0x48, 0x41,                         // cpu_percent 12.5
        0x80, 0x08,                                     // rss_bytes 1024
        0x80, 0x10,                                     // peak_rss_bytes 2048
        0x01, 0x00, 0x00, 0x34, 0x42,                   // temperature_c Some(45.0)
        0x01,                                           // mqtt_reconnects
        0x01,                                           // one source:
        0x01, b's',                                     //   name
        0x01, b'm', 0x01, b'1', 0x02, b'a', b'b',       //   model
        0x02, 0x04, b'c', b'u', b'd', b'a', 0x03, b'c', b'p', b'u', // provider_requested
        0x03, b'c', b'p', b'u',                         //   provider_active
        0x0A,                                           //   frames_in 10
        0x09,                                           //   frames_ok 9
        0x00, 0x00, 0x00, 0x40,                         //   frames_per_s 2.0
        0x01,                                           //   dropped
        0x01, 0x02, b'i', b'o', 0x01,                   //   errors [io: 1]
        0x00,                                           //   queue_depth
        0x08,                                           //   queue_capacity
        0x00, 0x00, 0x00,                               //   latency.decode
        0x00, 0x00, 0x00,                               //   latency.preprocess
        0x00, 0x00, 0x00,                               //   latency.inference
        0x00, 0x00, 0x00,                               //   latency.postprocess
        0x64, 0xC8, 0x01, 0xAC, 0x02,                   //   latency.total 100, 200, 300
        0x00,                                           //   predictions_unpublished
        0x00,                                           // health_unpublished
        0x07, b'a', b'a', b'r', b'c', b'h', b'6', b'4', // arch
        0x02,                                           // mqtt_oversized
        0x01,                                           // one condition:
        0x09, b'd', b'i', b's', b'k', b'_', b'f', b'u', b'l', b'l', // kind
        0x05, b'a', b'g', b'e', b'n', b't',             //   source
        0x07,                                           //   since_ms
        0x01, b'x',                                     //   detail
        0x01,                                           // spool Some:
        0x03,                                           //   records
        0xE8, 0x07,                                     //   bytes 1000
        0xC8, 0x01,                                     //   oldest_age_ms 200
        0x04, 0x00, 0x05,                               //   dropped_predictions, _errors, _health
        0x00,                                           //   write_errors
        0x01,                                           // one camera:
        0x01, b'c',                                     //   source
        0x00, 0x00, 0x00, 0x40,                         //   received_per_s 2.0
        0x00, 0x00, 0x00, 0x40,                         //   decoded_per_s 2.0
        0x00, 0x00, 0x80, 0x3F,                         //   inferred_per_s 1.0
        0x00, 0x00, 0x00, 0x00,                         //   replaced_per_s 0.0
        0x03,                                           //   decode_errors
        0x01,                                           //   reconnects
        0x01, 0xC8, 0x01,                               //   last_frame_age_ms Some(200)
        0x80, 0x05,                                     //   width 640
        0xE0, 0x03,                                     //   height 480
        0x04, b'h', b'2', b'6', b'4',                   //   codec
        0x02, b's', b'w',                               //   decoder
        0x01,                                           // one source's snapshots:
        0x01, b'c',                                     //   source
        0x02, 0x01, 0x07, 0x00, 0x01, 0x00,             //   published, stored, rate_limited, busy, too_large, failed
        0x00,                                           // no monitors
        0x80, 0xD0, 0x95, 0xFF, 0xBC, 0x31,             // at_ms 1_700_000_000_000
    ];
    assert_eq!(postcard(&health()), expected);
}

#[test]
fn sensor_window_postcard_bytes() {
    let window = SensorWindowMsg { channels: 2, values: vec![1.0, -1.0] };
    #[rustfmt::skip]
    let expected = [
        0x02, 0x04,                                     // envelope version 2, kind SensorWindow
        0x02,                                           // channels
        0x02, 0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x80, 0xBF, // values [1.0, -1.0]
    ];
    assert_eq!(postcard(&window), expected);
}

#[test]
fn json_status_is_the_documented_object() {
    assert_eq!(
        json_object(&online()),
        json!({"state": "online", "device": "cam-01", "agent_version": "0.1.0", "since_ms": 1_700_000_000_000u64})
    );
    let will = Status { state: State::Offline, since_ms: None, ..online() };
    assert_eq!(json_object(&will)["state"], "offline");
    assert_eq!(json_object(&will)["since_ms"], Value::Null);
}

#[test]
fn json_prediction_field_names() {
    let value = json_object(&prediction());
    let keys: Vec<&str> = value.as_object().expect("an object").keys().map(String::as_str).collect();
    let mut expected = [
        "device",
        "source",
        "seq",
        "captured_at_ms",
        "published_at_ms",
        "model",
        "provider",
        "output",
        "latency_us",
        "total_us",
        "input",
    ];
    expected.sort_unstable();
    let mut keys = keys;
    keys.sort_unstable();
    assert_eq!(keys, expected);
    assert_eq!(value["model"], json!({"name": "m", "version": "1.0.0", "sha256": "ab"}));
    assert_eq!(value["output"], json!({"classification": {"classes": [{"index": 3, "label": "cat", "score": 0.5}]}}));
    assert_eq!(
        value["latency_us"],
        json!({"decode_us": 1, "preprocess_us": 2, "inference_us": 300, "postprocess_us": 4})
    );
}

#[test]
fn json_error_and_health_field_names() {
    let error = json_object(&error_event());
    assert_eq!(error["stage"], "decode");
    assert_eq!(error["input"], "a.jpg");
    assert_eq!(json_object(&ErrorEvent { input: None, ..error_event() })["input"], Value::Null);

    let health = json_object(&health());
    assert_eq!(health["temperature_c"], 45.0);
    let source = &health["sources"][0];
    assert_eq!(source["errors"], json!([{"kind": "io", "count": 1}]));
    assert_eq!(health["conditions"], json!([{"kind": "disk_full", "source": "agent", "since_ms": 7, "detail": "x"}]));
    assert_eq!(source["latency"]["total"], json!({"p50_us": 100, "p95_us": 200, "p99_us": 300}));
    assert_eq!(source["provider_requested"], json!(["cuda", "cpu"]));
    assert_eq!(
        health["spool"],
        json!({"records": 3, "bytes": 1000, "oldest_age_ms": 200, "dropped_predictions": 4, "dropped_errors": 0,
               "dropped_health": 5, "write_errors": 0})
    );
    let without_spool = Health { spool: None, ..self::health() };
    assert_eq!(json_object(&without_spool)["spool"], Value::Null);
    assert_eq!(
        health["cameras"],
        json!([{"source": "c", "received_per_s": 2.0, "decoded_per_s": 2.0, "inferred_per_s": 1.0,
                "replaced_per_s": 0.0, "decode_errors": 3, "reconnects": 1, "last_frame_age_ms": 200,
                "width": 640, "height": 480, "codec": "h264", "decoder": "sw"}])
    );
    assert_eq!(
        health["snapshots"],
        json!([{"source": "c", "published": 2, "stored": 1, "rate_limited": 7, "busy": 0, "too_large": 1,
                "failed": 0}])
    );
}

/// The camera, snapshot and monitor parts were appended after `spool`: a report without them encodes as before
/// plus three empty lists, so a reader of the older schema reads its prefix unchanged.
#[test]
fn cameras_snapshots_and_monitors_are_appended_after_the_spool() {
    // `at_ms` 0 (one byte), appended after them, is not what this is about.
    let before = Health { cameras: Vec::new(), snapshots: Vec::new(), monitors: Vec::new(), at_ms: 0, ..health() };
    let bytes = postcard(&before);
    let (older_prefix, appended) = bytes.split_at(bytes.len() - 4);
    assert_eq!(appended, [0x00, 0x00, 0x00, 0x00]);
    assert!(postcard(&Health { at_ms: 0, ..health() }).starts_with(older_prefix));
}

/// `at_ms` was appended after `monitors`: its varint ends the body, and a JSON report without it reads as 0.
#[test]
fn the_health_time_is_appended_last() {
    let bytes = postcard(&health());
    let without = postcard(&Health { at_ms: 0, ..health() });
    assert_eq!(bytes[..without.len() - 1], without[..without.len() - 1]);
    assert_eq!(without.last(), Some(&0x00));
    let mut json = json_object(&health());
    json.as_object_mut().expect("an object").remove("at_ms");
    let read: Health = serde_json::from_value(json).expect("reads without at_ms");
    assert_eq!(read, Health { at_ms: 0, ..health() });
}

#[test]
fn round_trips_in_both_formats() {
    for format in [Format::Json, Format::Postcard] {
        let bytes = encode(format, &online()).expect("encodes");
        assert_eq!(decode::<Status>(format, &bytes).expect("decodes"), online());
        let bytes = encode(format, &prediction()).expect("encodes");
        assert_eq!(decode::<Prediction>(format, &bytes).expect("decodes"), prediction());
        let bytes = encode(format, &error_event()).expect("encodes");
        assert_eq!(decode::<ErrorEvent>(format, &bytes).expect("decodes"), error_event());
        let bytes = encode(format, &health()).expect("encodes");
        assert_eq!(decode::<Health>(format, &bytes).expect("decodes"), health());
    }
}

#[test]
fn postcard_envelope_is_checked() {
    let mut bytes = postcard(&online());
    assert!(matches!(decode::<Prediction>(Format::Postcard, &bytes), Err(WireError::UnexpectedKind { .. })));
    // A version-1 payload (before the outputs grew inside predictions) is refused, as is a later version.
    for version in [1, 3] {
        bytes[0] = version;
        assert!(
            matches!(decode::<Status>(Format::Postcard, &bytes), Err(WireError::UnsupportedVersion(v)) if v == version)
        );
    }
    let mut bytes = postcard(&online());
    bytes.push(0);
    assert!(matches!(decode::<Status>(Format::Postcard, &bytes), Err(WireError::TrailingBytes(1))));
}

#[test]
fn topics_under_the_prefix() {
    let topics = Topics::new("devices/cam-01");
    assert_eq!(topics.status(), "devices/cam-01/status");
    assert_eq!(topics.health(), "devices/cam-01/health");
    assert_eq!(topics.predictions("front"), "devices/cam-01/predictions/front");
    assert_eq!(topics.errors("front"), "devices/cam-01/errors/front");
    assert_eq!(topics.frames("front"), "devices/cam-01/frames/front");
    assert_eq!(topics.sensor("imu"), "devices/cam-01/sensor/imu");
    assert_eq!(topics.snapshots("front"), "devices/cam-01/snapshots/front");
}

#[test]
fn sensor_window_from_json_and_postcard() {
    let window = decode_sensor_window(Format::Json, br#"{"channels":3,"values":[1,2,3,4,5,6]}"#).expect("valid");
    assert_eq!(window, SensorWindowMsg { channels: 3, values: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0] });
    let bytes = postcard(&window);
    assert_eq!(decode_sensor_window(Format::Postcard, &bytes).expect("valid"), window);
}

#[test]
fn malformed_sensor_windows_are_errors() {
    let json_cases: [&[u8]; 8] = [
        b"",
        b"not json",
        br#"{"channels":3}"#,
        br#"{"channels":-1,"values":[1]}"#,
        br#"{"channels":0,"values":[1]}"#,
        br#"{"channels":2,"values":[]}"#,
        br#"{"channels":2,"values":[1,2,3]}"#,
        br#"{"channels":1,"values":[1],"extra":true}"#,
    ];
    for case in json_cases {
        let result = decode_sensor_window(Format::Json, case);
        assert!(result.is_err(), "{:?} decoded as {result:?}", String::from_utf8_lossy(case));
    }

    let valid = postcard(&SensorWindowMsg { channels: 2, values: vec![1.0, 2.0] });
    // Every truncation, and a length claiming far more values than there are bytes.
    for end in 0..valid.len() {
        assert!(decode_sensor_window(Format::Postcard, &valid[..end]).is_err(), "truncated at {end}");
    }
    let huge_length = [0x02, 0x04, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x00];
    assert!(decode_sensor_window(Format::Postcard, &huge_length).is_err());
    let ragged = postcard(&SensorWindowMsg { channels: 2, values: vec![1.0, 2.0, 3.0] });
    let error = decode_sensor_window(Format::Postcard, &ragged).expect_err("ragged");
    assert_eq!(error.to_string(), "invalid sensor window: 3 values are not a whole number of 2-channel samples");
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A cheap deterministic sweep (xorshift) over short garbage payloads in both encodings.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for len in 0..64 {
        for _ in 0..32 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state.to_le_bytes()[0]
                })
                .collect();
            let _ = decode_sensor_window(Format::Postcard, &bytes);
            let _ = decode_sensor_window(Format::Json, &bytes);
            let mut enveloped = vec![ENVELOPE_VERSION, 4];
            enveloped.extend_from_slice(&bytes);
            let _ = decode_sensor_window(Format::Postcard, &enveloped);
        }
    }
}

fn drift_alert() -> Alert {
    Alert {
        kind: AlertKind::Drift,
        subject: "x".into(),
        statistic: "psi".into(),
        value: 0.5,
        threshold: 0.25,
        severity: Severity::Alert,
        since_ms: 1000,
    }
}

fn monitor_report() -> MonitorReport {
    MonitorReport {
        device: "d".into(),
        source: "s".into(),
        model: ModelIdentity { name: "m".into(), version: "1".into(), sha256: "ab".into() },
        at_ms: 1000,
        observed: 300,
        window: 200,
        windows_evaluated: 2,
        features: vec![FeatureDrift {
            feature: "x".into(),
            side: FeatureSide::Input,
            psi: Some(0.5),
            ks_statistic: Some(0.25),
            ks_p_value: Some(1.0),
            js_distance: None,
            window_mean: 2.0,
            reference_mean: 1.0,
            drifted: true,
        }],
        accuracy: Some(AccuracyReport {
            labelled: 4,
            correct: 3,
            accuracy: Some(0.75),
            classes: vec![ClassAccuracy { label: "a".into(), precision: Some(1.0), recall: None, support: 2 }],
            matched_total: 4,
            late_total: 1,
            unknown_total: 0,
            invalid_total: 2,
        }),
        active_alerts: vec![drift_alert()],
    }
}

fn alert_report() -> AlertReport {
    AlertReport {
        device: "d".into(),
        source: "s".into(),
        at_ms: 1000,
        change: AlertChange::Raised,
        alert: drift_alert(),
        active: vec![drift_alert()],
    }
}

fn feedback() -> Feedback {
    Feedback { seq: 42, label: Some("walking".into()), anomalous: None }
}

#[rustfmt::skip]
const DRIFT_ALERT_BYTES: [u8; 18] = [
    0x00,                                               // kind Drift
    0x01, b'x',                                         // subject
    0x03, b'p', b's', b'i',                             // statistic
    0x00, 0x00, 0x00, 0x3F,                             // value 0.5
    0x00, 0x00, 0x80, 0x3E,                             // threshold 0.25
    0x01,                                               // severity Alert
    0xE8, 0x07,                                         // since_ms 1000
];

#[test]
fn monitor_report_postcard_bytes() {
    #[rustfmt::skip]
    let head = [
        0x02, 0x05,                                     // envelope version 2, kind MonitorReport
        0x01, b'd',                                     // device
        0x01, b's',                                     // source
        0x01, b'm', 0x01, b'1', 0x02, b'a', b'b',       // model
        0xE8, 0x07,                                     // at_ms 1000
        0xAC, 0x02,                                     // observed 300
        0xC8, 0x01,                                     // window 200
        0x02,                                           // windows_evaluated
        0x01,                                           // one feature
        0x01, b'x',                                     //   feature
        0x00,                                           //   side Input
        0x01, 0x00, 0x00, 0x00, 0x3F,                   //   psi Some(0.5)
        0x01, 0x00, 0x00, 0x80, 0x3E,                   //   ks_statistic Some(0.25)
        0x01, 0x00, 0x00, 0x80, 0x3F,                   //   ks_p_value Some(1.0)
        0x00,                                           //   js_distance None
        0x00, 0x00, 0x00, 0x40,                         //   window_mean 2.0
        0x00, 0x00, 0x80, 0x3F,                         //   reference_mean 1.0
        0x01,                                           //   drifted
        0x01,                                           // accuracy Some
        0x04, 0x03,                                     //   labelled 4, correct 3
        0x01, 0x00, 0x00, 0x40, 0x3F,                   //   accuracy Some(0.75)
        0x01, 0x01, b'a',                               //   one class, label
        0x01, 0x00, 0x00, 0x80, 0x3F, 0x00, 0x02,       //     precision Some(1.0), recall None, support 2
        0x04, 0x01, 0x00, 0x02,                         //   matched, late, unknown, invalid
        0x01,                                           // one active alert
    ];
    assert_eq!(postcard(&monitor_report()), [&head[..], &DRIFT_ALERT_BYTES].concat());
}

#[test]
fn alert_report_and_feedback_postcard_bytes() {
    #[rustfmt::skip]
    let head = [
        0x02, 0x06,                                     // envelope version 2, kind AlertReport
        0x01, b'd',                                     // device
        0x01, b's',                                     // source
        0xE8, 0x07,                                     // at_ms 1000
        0x00,                                           // change Raised
    ];
    let expected = [&head[..], &DRIFT_ALERT_BYTES, &[0x01], &DRIFT_ALERT_BYTES].concat();
    assert_eq!(postcard(&alert_report()), expected);

    #[rustfmt::skip]
    let expected = [
        0x02, 0x08,                                     // envelope version 2, kind Feedback
        0x2A,                                           // seq 42
        0x01, 0x07, b'w', b'a', b'l', b'k', b'i', b'n', b'g', // label Some("walking")
        0x00,                                           // anomalous None
    ];
    assert_eq!(postcard(&feedback()), expected);
}

#[test]
fn json_monitor_alert_and_feedback_field_names() {
    let alert = json!({"kind": "drift", "subject": "x", "statistic": "psi", "value": 0.5, "threshold": 0.25,
                       "severity": "alert", "since_ms": 1000});
    assert_eq!(
        json_object(&monitor_report()),
        json!({"device": "d", "source": "s", "model": {"name": "m", "version": "1", "sha256": "ab"},
               "at_ms": 1000, "observed": 300, "window": 200, "windows_evaluated": 2,
               "features": [{"feature": "x", "side": "input", "psi": 0.5, "ks_statistic": 0.25, "ks_p_value": 1.0,
                             "js_distance": null, "window_mean": 2.0, "reference_mean": 1.0, "drifted": true}],
               "accuracy": {"labelled": 4, "correct": 3, "accuracy": 0.75,
                            "classes": [{"label": "a", "precision": 1.0, "recall": null, "support": 2}],
                            "matched_total": 4, "late_total": 1, "unknown_total": 0, "invalid_total": 2},
               "active_alerts": [alert.clone()]})
    );
    assert_eq!(
        json_object(&alert_report()),
        json!({"device": "d", "source": "s", "at_ms": 1000, "change": "raised", "alert": alert.clone(),
               "active": [alert]})
    );
    let cleared = AlertReport { change: AlertChange::Cleared, active: Vec::new(), ..alert_report() };
    assert_eq!(
        (json_object(&cleared)["change"].clone(), json_object(&cleared)["active"].clone()),
        (json!("cleared"), json!([]))
    );

    // As documented: a label, or an anomaly flag; nothing else.
    assert_eq!(json_object(&feedback()), json!({"seq": 42, "label": "walking", "anomalous": null}));
    let anomaly: Feedback = decode(Format::Json, br#"{"seq":7,"anomalous":true}"#).expect("decodes");
    assert_eq!(anomaly, Feedback { seq: 7, label: None, anomalous: Some(true) });
    let labelled: Feedback = decode(Format::Json, br#"{"seq":42,"label":"walking"}"#).expect("decodes");
    assert_eq!(labelled, feedback());
    assert!(decode::<Feedback>(Format::Json, br#"{"seq":1,"label":"a","truth":"b"}"#).is_err());
}

#[test]
fn monitor_payloads_round_trip_in_both_formats() {
    for format in [Format::Json, Format::Postcard] {
        let bytes = encode(format, &monitor_report()).expect("encodes");
        assert_eq!(decode::<MonitorReport>(format, &bytes).expect("decodes"), monitor_report());
        let bytes = encode(format, &alert_report()).expect("encodes");
        assert_eq!(decode::<AlertReport>(format, &bytes).expect("decodes"), alert_report());
        let bytes = encode(format, &feedback()).expect("encodes");
        assert_eq!(decode::<Feedback>(format, &bytes).expect("decodes"), feedback());
    }
}

/// Two predictions of `prediction()`'s source and model, seqs 0 and 1, the second without an input name.
fn prediction_batch() -> PredictionBatch {
    let first = prediction();
    let batched = |seq: u64, captured_at_ms: u64, input: Option<String>| BatchedPrediction {
        seq,
        captured_at_ms,
        output: first.output.clone(),
        latency_us: first.latency_us,
        total_us: first.total_us,
        input,
    };
    PredictionBatch {
        device: first.device.clone(),
        source: first.source.clone(),
        published_at_ms: first.published_at_ms,
        model: first.model.clone(),
        provider: first.provider.clone(),
        predictions: vec![batched(0, 1000, first.input.clone()), batched(1, 1002, None)],
    }
}

#[test]
fn prediction_batch_postcard_bytes() {
    #[rustfmt::skip]
    let expected = [
        0x02, 0x0A,                                     // envelope version 2, kind PredictionBatch
        0x06, b'c', b'a', b'm', b'-', b'0', b'1',       // device
        0x05, b'f', b'r', b'o', b'n', b't',             // source
        0xE9, 0x07,                                     // published_at_ms 1001
        0x01, b'm',                                     // model.name
        0x05, b'1', b'.', b'0', b'.', b'0',             // model.version
        0x02, b'a', b'b',                               // model.sha256
        0x03, b'c', b'p', b'u',                         // provider
        0x02,                                           // two predictions:
        0x00,                                           //   seq 0
        0xE8, 0x07,                                     //   captured_at_ms 1000
        0x00, 0x01, 0x03, 0x03, b'c', b'a', b't', 0x00, 0x00, 0x00, 0x3F, // output: Classification [cat 0.5]
        0x01, 0x02, 0xAC, 0x02, 0x04,                   //   latency_us 1, 2, 300, 4
        0xB3, 0x02,                                     //   total_us 307
        0x01, 0x05, b'a', b'.', b'j', b'p', b'g',       //   input Some("a.jpg")
        0x01,                                           //   seq 1
        0xEA, 0x07,                                     //   captured_at_ms 1002
        0x00, 0x01, 0x03, 0x03, b'c', b'a', b't', 0x00, 0x00, 0x00, 0x3F, // output
        0x01, 0x02, 0xAC, 0x02, 0x04,                   //   latency_us
        0xB3, 0x02,                                     //   total_us
        0x00,                                           //   input None
    ];
    assert_eq!(postcard(&prediction_batch()), expected);
}

#[test]
fn json_prediction_batch_is_the_documented_object() {
    let value = json_object(&prediction_batch());
    let mut keys: Vec<&str> = value.as_object().expect("an object").keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["device", "model", "predictions", "provider", "published_at_ms", "source"]);
    assert_eq!(
        value["predictions"][1],
        json!({"seq": 1, "captured_at_ms": 1002,
               "output": {"classification": {"classes": [{"index": 3, "label": "cat", "score": 0.5}]}},
               "latency_us": {"decode_us": 1, "preprocess_us": 2, "inference_us": 300, "postprocess_us": 4},
               "total_us": 307, "input": null})
    );
}

#[test]
fn a_predictions_topic_message_decodes_as_a_batch_or_a_single_prediction() {
    let expanded = prediction_batch().into_predictions();
    assert_eq!(expanded[0], prediction());
    assert_eq!(expanded[1], Prediction { seq: 1, captured_at_ms: 1002, input: None, ..prediction() });
    for format in [Format::Json, Format::Postcard] {
        let batch = encode(format, &prediction_batch()).expect("encodes");
        assert_eq!(decode_predictions(format, &batch).expect("a batch"), expanded);
        let single = encode(format, &prediction()).expect("encodes");
        assert_eq!(decode_predictions(format, &single).expect("a prediction"), [prediction()]);
        let status = encode(format, &online()).expect("encodes");
        assert!(decode_predictions(format, &status).is_err(), "{format:?}: a status is neither");
    }
}
