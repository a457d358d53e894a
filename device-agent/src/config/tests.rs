use super::*;
use runtime::{GraphOptimization, ProviderKind};

const MINIMAL: &str = r#"
device_id = "cam-01"
[[sources]]
name = "front-door"
model = "models/image-classifier"
kind = "images"
path = "frames"
"#;

/// Every key of every section, as in the documented template.
const FULL: &str = r#"
device_id = "cam-01"
[onnxruntime]
library = "ort/libonnxruntime.so.1"
intra_threads = 2
cpu_arena = true
memory_pattern = false
graph_optimization = "extended"
intra_spinning = false
optimized_model_cache = false
providers = ["cuda", "cpu"]
require = true
[mqtt]
host = "broker.local"
port = 8884
client_id = "agent-7"
prefix = "site/a"
keep_alive_secs = 10
connect_timeout_secs = 3
format = "postcard"
username = "agent"
password_file = "secret"
queue_capacity = 16
max_packet_bytes = 65536
max_skipped_packet_bytes = 131072
[mqtt.qos]
status = 2
predictions = 0
health = 1
errors = 0
subscriptions = 0
[mqtt.tls]
ca_file = "ca.pem"
client_cert_file = "client.pem"
client_key_file = "client.key"
server_name = "broker"
[health]
interval_secs = 3
retain = false
[[sources]]
name = "front-door"
model = "models/classifier"
kind = "images"
files = ["a.jpg", "/abs/b.png"]
rate_fps = 0.5
loop = true
[[sources]]
name = "cam-mqtt"
model = "models/detector"
kind = "mqtt_frames"
topic = "cameras/door"
[[sources]]
name = "vib"
model = "models/anomaly"
kind = "csv"
path = "data/vib.csv"
rate_hz = 100.0
stride = 32
loop = true
queue = 4
[[sources]]
name = "console"
model = "models/anomaly"
kind = "stdin"
stride = 8
[[sources]]
name = "imu"
model = "models/anomaly"
kind = "mqtt_sensor"
encoding = "postcard"
queue = 2
"#;

fn errors(text: &str) -> Vec<String> {
    match AgentConfig::parse(text) {
        Ok(config) => panic!("expected errors, parsed {config:#?}"),
        Err(ConfigErrors(errors)) => errors.iter().map(ToString::to_string).collect(),
    }
}

/// A minimal config with `extra` appended to its only source.
fn with_source_keys(extra: &str) -> String {
    format!("{MINIMAL}{extra}\n")
}

#[test]
fn defaults() {
    let config = AgentConfig::parse(MINIMAL).expect("valid");
    assert_eq!(config.onnxruntime, OnnxRuntimeConfig::default());
    assert_eq!(config.onnxruntime.library, None);
    assert_eq!(config.onnxruntime.intra_threads, 1);
    assert_eq!(config.onnxruntime.session_overrides(), runtime::SessionOverrides::default());
    assert!(config.onnxruntime.optimized_model_cache && !config.onnxruntime.require);
    assert_eq!(config.mqtt, MqttConfig::default());
    assert_eq!(config.mqtt.brokers(), [::mqtt::BrokerAddress::new("127.0.0.1", 1883)]);
    assert_eq!(config.mqtt.port(), 1883);
    assert_eq!(config.mqtt_client_id(), "cam-01");
    assert_eq!(config.topics(), Topics::new("devices/cam-01"));
    assert_eq!(config.mqtt.keep_alive_secs, 10);
    assert_eq!(config.mqtt.connect_timeout_secs, 5);
    assert_eq!(config.mqtt.max_skipped_packet_bytes, 16 * 1024 * 1024);
    assert_eq!(config.mqtt.format, Format::Json);
    assert_eq!(config.mqtt.queue_capacity, 64);
    assert_eq!(config.mqtt.qos, QosConfig { status: 1, predictions: 1, health: 0, errors: 1, subscriptions: 1 });
    assert_eq!(config.health.interval_secs, 10);
    let SourceConfig::Images(images) = &config.sources[0] else { panic!("images") };
    assert_eq!(images.rate_fps, 2.0);
    assert!(!images.repeat && !images.watch && images.files.is_empty());
}

#[test]
fn sensor_and_mqtt_source_defaults() {
    let text = r#"
device_id = "d"
[[sources]]
name = "vib"
model = "m"
kind = "csv"
path = "v.csv"
[[sources]]
name = "imu"
model = "m"
kind = "mqtt_sensor"
[[sources]]
name = "door"
model = "m"
kind = "mqtt_frames"
[[sources]]
name = "console"
model = "m"
kind = "stdin"
"#;
    let config = AgentConfig::parse(text).expect("valid");
    let SourceConfig::Csv(csv) = &config.sources[0] else { panic!("csv") };
    assert_eq!((csv.rate_hz, csv.stride, csv.repeat, csv.queue), (0.0, None, false, 8));
    let SourceConfig::MqttSensor(sensor) = &config.sources[1] else { panic!("mqtt_sensor") };
    assert_eq!((sensor.encoding, sensor.queue), (Format::Json, 8));
    let topics = config.topics();
    assert_eq!(config.sources[1].inbound_topic(&topics).as_deref(), Some("devices/d/sensor/imu"));
    assert_eq!(config.sources[2].inbound_topic(&topics).as_deref(), Some("devices/d/frames/door"));
    assert_eq!(config.sources[0].inbound_topic(&topics), None);
    let SourceConfig::Stdin(stdin) = &config.sources[3] else { panic!("stdin") };
    assert_eq!((stdin.stride, stdin.queue), (None, 8));
    let kinds: Vec<&str> = config.sources.iter().map(SourceConfig::kind).collect();
    assert_eq!(kinds, ["csv", "mqtt_sensor", "mqtt_frames", "stdin"]);
}

#[test]
fn every_key_is_read() {
    let config = AgentConfig::parse(FULL).expect("valid");
    assert_eq!(config.onnxruntime.providers, [ProviderKind::Cuda, ProviderKind::Cpu]);
    assert_eq!(config.onnxruntime.intra_threads, 2);
    assert!(config.onnxruntime.require && !config.onnxruntime.optimized_model_cache);
    assert_eq!(
        config.onnxruntime.session_overrides(),
        runtime::SessionOverrides {
            cpu_arena: Some(true),
            memory_pattern: Some(false),
            optimization: Some(GraphOptimization::Extended),
            intra_spinning: Some(false),
        }
    );
    assert_eq!(config.mqtt.port(), 8884);
    assert_eq!(config.mqtt_client_id(), "agent-7");
    assert_eq!(config.topics(), Topics::new("site/a"));
    assert_eq!(config.mqtt.format, Format::Postcard);
    assert_eq!(config.mqtt.qos, QosConfig { status: 2, predictions: 0, health: 1, errors: 0, subscriptions: 0 });
    assert_eq!(config.mqtt.max_packet_bytes, 65536);
    assert_eq!((config.mqtt.connect_timeout_secs, config.mqtt.max_skipped_packet_bytes), (3, 131072));
    let tls = config.mqtt.tls.as_ref().expect("tls");
    assert_eq!(tls.server_name.as_deref(), Some("broker"));
    assert_eq!((config.health.interval_secs, config.health.retain), (3, false));
    assert_eq!(config.sources.len(), 5);
    assert_eq!(config.sources[1].inbound_topic(&config.topics()).as_deref(), Some("cameras/door"));
    assert_eq!(config.sources[4].inbound_topic(&config.topics()).as_deref(), Some("site/a/sensor/imu"));
}

#[test]
fn a_list_of_brokers_takes_the_default_port_of_the_transport() {
    let text = format!(
        "{MINIMAL}[mqtt]\nbrokers = [\"a.local:1884\", \"b.local\", \"[::1]:1885\"]\n[mqtt.tls]\nca_file = \"ca.pem\"\n"
    );
    let config = AgentConfig::parse(&text).expect("valid");
    let brokers: Vec<String> = config.mqtt.brokers().iter().map(ToString::to_string).collect();
    assert_eq!(brokers, ["a.local:1884", "b.local:8883", "[::1]:1885"]);
    let one = AgentConfig::parse(&format!("{MINIMAL}[mqtt]\nhost = \"broker\"\nport = 1999\n")).expect("valid");
    assert_eq!(one.mqtt.brokers(), [::mqtt::BrokerAddress::new("broker", 1999)]);
}

#[test]
fn broker_list_problems_name_the_keys_and_entries() {
    let both = errors(&format!("{MINIMAL}[mqtt]\nhost = \"a\"\nport = 1883\nbrokers = [\"b:1883\"]\n"));
    assert_eq!(
        both,
        [
            "mqtt.brokers: mqtt.host is given too: list the brokers in one of them only",
            "mqtt.brokers: mqtt.port is given too: list the brokers in one of them only"
        ]
    );
    let bad = errors(&format!("{MINIMAL}[mqtt]\nbrokers = [\"ok:1883\", \"b:http\", \":1883\", \"[::1\"]\n"));
    assert_eq!(
        bad,
        [
            "mqtt.brokers[1]: \"b:http\": invalid port \"http\"",
            "mqtt.brokers[2]: \":1883\": no host",
            "mqtt.brokers[3]: \"[::1\": missing ']'"
        ]
    );
    assert_eq!(errors(&format!("{MINIMAL}[mqtt]\nbrokers = []\n")), ["mqtt.brokers: must list at least one broker"]);
}

#[test]
fn tls_changes_the_default_port_and_empty_strings_are_unset() {
    let text = format!(
        "{MINIMAL}[mqtt]\nclient_id = \"\"\nprefix = \"\"\n[mqtt.tls]\nca_file = \"ca.pem\"\nclient_cert_file = \"\"\nclient_key_file = \"\"\n"
    );
    // `[mqtt]` after `[[sources]]` is still a top-level table in TOML.
    let config = AgentConfig::parse(&text).expect("valid");
    assert_eq!(config.mqtt.port(), 8883);
    assert_eq!(config.mqtt_client_id(), "cam-01");
    assert_eq!(config.topics(), Topics::new("devices/cam-01"));
    let tls = config.mqtt.tls.expect("tls");
    assert_eq!((tls.client_cert_file, tls.client_key_file), (None, None));
}

#[test]
fn unknown_keys_are_rejected() {
    for text in [
        format!("{MINIMAL}[mqtt]\nhots = \"x\"\n"),
        format!("colour = 1\n{MINIMAL}"),
        format!("{MINIMAL}[mqtt.qos]\nstatuss = 1\n"),
        format!("{MINIMAL}[mqtt.tls]\nca_file = \"a\"\ncafile = \"b\"\n"),
        format!("{MINIMAL}[health]\ninterval = 3\n"),
        format!("{MINIMAL}[onnxruntime]\nthreads = 3\n"),
        with_source_keys("rate = 3"),
        // `queue` belongs to sensor sources only: camera sources keep the latest frame.
        with_source_keys("queue = 3"),
    ] {
        let errors = errors(&text);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("unknown field"), "{text}\n{errors:?}");
    }
}

#[test]
fn unknown_kind_format_and_provider_are_rejected() {
    assert!(errors(&MINIMAL.replace("\"images\"", "\"video\""))[0].contains("video"));
    assert!(errors(&format!("{MINIMAL}[mqtt]\nformat = \"xml\"\n"))[0].contains("xml"));
    assert!(errors(&format!("{MINIMAL}[onnxruntime]\nproviders = [\"gpu\"]\n"))[0].contains("gpu"));
}

#[test]
fn syntax_errors_are_reported() {
    let errors = errors("device_id = ");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("line 1"), "{errors:?}");
}

#[test]
fn every_problem_is_reported_with_its_key() {
    let text = r#"
device_id = "cam 01"
[onnxruntime]
library = ""
intra_threads = 0
providers = ["cuda", "cpu", "cuda"]
[mqtt]
host = ""
port = 0
prefix = "site/+/"
keep_alive_secs = 2
connect_timeout_secs = 0
password = "p"
password_file = "f"
queue_capacity = 0
max_packet_bytes = 10
max_skipped_packet_bytes = 5
[mqtt.qos]
status = 3
predictions = 1
health = 7
errors = 0
subscriptions = 2
[mqtt.tls]
client_cert_file = "c.pem"
[health]
interval_secs = 0
[[sources]]
name = ""
model = ""
kind = "images"
rate_fps = 0.0
watch = true
[[sources]]
name = "front door"
model = "m"
kind = "images"
path = "p"
files = ["f"]
rate_fps = -1.0
watch = true
loop = true
[[sources]]
name = "vib"
model = "m"
kind = "csv"
rate_hz = -1.0
stride = 0
queue = 0
[[sources]]
name = "vib"
model = "m"
kind = "stdin"
queue = 5000
[[sources]]
name = "in2"
model = "m"
kind = "stdin"
[[sources]]
name = "cam"
model = "m"
kind = "mqtt_frames"
topic = "frames/#"
[[sources]]
name = "imu"
model = "m"
kind = "mqtt_sensor"
topic = "same"
[[sources]]
name = "imu2"
model = "m"
kind = "mqtt_sensor"
topic = "same"
"#;
    let expected = [
        "device_id: must match [A-Za-z0-9_-]+",
        "onnxruntime.intra_threads: must be >= 1",
        "onnxruntime.providers[2]: cuda is listed twice",
        "mqtt.host: must not be empty",
        "mqtt.port: must be > 0",
        "mqtt.prefix: must not contain MQTT wildcards (+ #)",
        "mqtt.keep_alive_secs: must be between 5 and 65535",
        "mqtt.connect_timeout_secs: must be between 1 and 60",
        "mqtt.password_file: set either password or password_file, not both",
        "mqtt.username: is required when a password is set",
        "mqtt.queue_capacity: must be >= 1",
        "mqtt.max_packet_bytes: must be between 1024 and 268435455",
        "mqtt.max_skipped_packet_bytes: must be between mqtt.max_packet_bytes and 268435455",
        "mqtt.qos.status: must be 0, 1 or 2",
        "mqtt.qos.health: must be 0, 1 or 2",
        "mqtt.qos.subscriptions: must be 0 or 1",
        "mqtt.tls.ca_file: is required when [mqtt.tls] is present",
        "mqtt.tls.client_key_file: is required with client_cert_file",
        "health.interval_secs: must be >= 1",
        "sources[0].name: is required",
        "sources[0].model: is required",
        "sources[0].path: one of path or files is required",
        "sources[0].rate_fps: must be > 0",
        "sources[0].watch: needs path (a directory)",
        "sources[1].name: must match [A-Za-z0-9_-]+ (it is part of topics)",
        "sources[1].files: set either path or files, not both",
        "sources[1].rate_fps: must be > 0",
        "sources[1].loop: can't be combined with watch",
        "sources[2].path: is required",
        "sources[2].rate_hz: must be >= 0",
        "sources[2].stride: must be > 0",
        "sources[2].queue: must be between 1 and 4096",
        "sources[3].queue: must be between 1 and 4096",
        "sources[3].name: duplicate of sources[2].name (\"vib\")",
        "sources[4].kind: sources[3] already reads stdin",
        "sources[5].topic: must not contain MQTT wildcards (+ #)",
        "sources[7].topic: \"same\" is also the topic of sources[6]",
    ];
    assert_eq!(errors(text), expected);
}

#[test]
fn missing_device_id_and_sources() {
    assert_eq!(errors(""), ["device_id: is required", "sources: at least one source is required"]);
}

#[test]
fn tls_cert_and_key_both_or_neither() {
    let base = format!("{MINIMAL}[mqtt.tls]\nca_file = \"ca.pem\"\n");
    assert!(AgentConfig::parse(&base).is_ok());
    assert!(AgentConfig::parse(&format!("{base}client_cert_file = \"c\"\nclient_key_file = \"k\"\n")).is_ok());
    assert_eq!(
        errors(&format!("{base}client_key_file = \"k\"\n")),
        ["mqtt.tls.client_cert_file: is required with client_key_file"]
    );
    assert_eq!(
        errors(&format!("{base}client_cert_file = \"c\"\n")),
        ["mqtt.tls.client_key_file: is required with client_cert_file"]
    );
}

#[test]
fn duplicate_source_names() {
    let text = format!("{MINIMAL}{}", MINIMAL.replace("device_id = \"cam-01\"", ""));
    assert_eq!(errors(&text), ["sources[1].name: duplicate of sources[0].name (\"front-door\")"]);
}

#[test]
fn the_agents_own_error_sources_are_reserved_names() {
    for name in ["update", "mqtt"] {
        let text = MINIMAL.replace("name = \"front-door\"", &format!("name = \"{name}\""));
        let problems = errors(&text);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with(&format!("sources[0].name: \"{name}\" is reserved: ")), "{problems:?}");
    }
}

#[test]
fn inbound_topics_clash_with_defaults_too() {
    let text = r#"
device_id = "d"
[[sources]]
name = "a"
model = "m"
kind = "mqtt_frames"
[[sources]]
name = "b"
model = "m"
kind = "mqtt_frames"
topic = "devices/d/frames/a"
"#;
    assert_eq!(errors(text), ["sources[1].topic: \"devices/d/frames/a\" is also the topic of sources[0]"]);
}

#[test]
fn trailing_slash_prefix_and_credentials() {
    assert_eq!(errors(&format!("{MINIMAL}[mqtt]\nprefix = \"a/b/\"\n")), ["mqtt.prefix: must not end with /"]);
    let ok = format!("{MINIMAL}[mqtt]\nusername = \"u\"\npassword = \"p\"\n");
    assert!(AgentConfig::parse(&ok).is_ok());
    let ok = format!("{MINIMAL}[mqtt]\nusername = \"u\"\n");
    assert!(AgentConfig::parse(&ok).is_ok());
}

#[test]
fn non_finite_rates_are_refused() {
    assert_eq!(errors(&with_source_keys("rate_fps = nan")), ["sources[0].rate_fps: must be > 0"]);
    assert_eq!(errors(&with_source_keys("rate_fps = inf")), ["sources[0].rate_fps: must be > 0"]);
    // An integer is a fine rate.
    assert!(AgentConfig::parse(&with_source_keys("rate_fps = 5")).is_ok());
}

#[test]
fn paths_resolve_against_the_config_directory() {
    let mut config = AgentConfig::parse(FULL).expect("valid");
    config.resolve_paths(Path::new("/etc/agent"));
    let SourceConfig::Images(images) = &config.sources[0] else { panic!("images") };
    assert_eq!(images.model, Path::new("/etc/agent/models/classifier"));
    assert_eq!(images.files, [PathBuf::from("/etc/agent/a.jpg"), PathBuf::from("/abs/b.png")]);
    let SourceConfig::Csv(csv) = &config.sources[2] else { panic!("csv") };
    assert_eq!(csv.path.as_deref(), Some(Path::new("/etc/agent/data/vib.csv")));
    let tls = config.mqtt.tls.as_ref().expect("tls");
    assert_eq!(tls.ca_file.as_deref(), Some(Path::new("/etc/agent/ca.pem")));
    assert_eq!(tls.client_key_file.as_deref(), Some(Path::new("/etc/agent/client.key")));
    assert_eq!(config.mqtt.password_file.as_deref(), Some(Path::new("/etc/agent/secret")));
    // The library has its own lookup (beside the executable, then dlopen).
    assert_eq!(config.onnxruntime.library.as_deref(), Some(Path::new("ort/libonnxruntime.so.1")));
}

#[test]
fn load_reads_the_file_and_resolves_paths() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, MINIMAL).expect("write config");
    let config = AgentConfig::load(&path).expect("valid");
    assert_eq!(config.sources[0].model(), dir.path().join("models/image-classifier"));

    let missing = AgentConfig::load(&dir.path().join("nope.toml")).expect_err("missing file");
    assert!(missing.to_string().starts_with("reading "), "{missing}");
}

#[test]
fn errors_display_one_per_line() {
    let text = errors(&format!("{MINIMAL}[health]\ninterval_secs = 0\n[mqtt]\nkeep_alive_secs = 1\n"));
    assert_eq!(text, ["mqtt.keep_alive_secs: must be between 5 and 65535", "health.interval_secs: must be >= 1"]);
    let Err(all) = AgentConfig::parse("device_id = \"\"") else { panic!("invalid") };
    assert_eq!(all.to_string(), "device_id: is required\nsources: at least one source is required");
}

/// `docs/agent.example.toml` is the documented template: it must load, and the values it shows as defaults must be
/// the defaults.
#[test]
fn the_documented_example_loads_with_the_defaults_it_shows() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/agent.example.toml");
    let config = AgentConfig::load(&path).unwrap_or_else(|e| panic!("{}:\n{e}", path.display()));
    assert_eq!(config.device_id, "cam-01");
    assert_eq!(config.onnxruntime, OnnxRuntimeConfig::default());
    assert_eq!(config.mqtt, MqttConfig { host: Some("127.0.0.1".into()), port: Some(1883), ..MqttConfig::default() });
    assert_eq!(config.health, HealthConfig::default());
    let expected_update = UpdateConfig {
        trusted_keys: vec!["8fee9cd46a57751ef3b0bad45a1643678736734cc8385af5ca62cf6a5e82dcb6".into()],
        state_dir: Some(path.parent().expect("docs/").join("state")),
        ..UpdateConfig::default()
    };
    assert_eq!(config.update, Some(expected_update));
    let expected_spool = SpoolConfig { dir: path.parent().expect("docs/").join("spool"), ..SpoolConfig::default() };
    assert_eq!(config.spool, expected_spool);
    let expected_large = LargePayloadsConfig {
        dir: path.parent().expect("docs/").join("large-payloads"),
        ..LargePayloadsConfig::default()
    };
    assert_eq!(config.large_payloads, expected_large);
    let kinds: Vec<&str> = config.sources.iter().map(SourceConfig::kind).collect();
    assert_eq!(kinds, ["images", "mqtt_frames", "http_mjpeg", "v4l2", "csv", "stdin", "mqtt_sensor", "rtsp"]);
    let SourceConfig::V4l2(usb) = &config.sources[3] else { panic!("v4l2") };
    assert_eq!(usb, &V4l2Source { name: "usb".into(), model: usb.model.clone(), ..V4l2Source::default() });
    let expected_snapshots =
        SnapshotConfig { source: "door".into(), labels: vec!["face".into()], ..SnapshotConfig::default() };
    assert_eq!(config.snapshots, [expected_snapshots]);
    let SourceConfig::Rtsp(rtsp) = &config.sources[7] else { panic!("rtsp") };
    assert_eq!(
        rtsp,
        &RtspSource {
            name: rtsp.name.clone(),
            model: rtsp.model.clone(),
            url: rtsp.url.clone(),
            ..RtspSource::default()
        }
    );
}

#[test]
fn image_sources_take_memory_limits_with_defaults_for_small_boards() {
    let config = AgentConfig::parse(MINIMAL).expect("valid");
    let SourceConfig::Images(images) = &config.sources[0] else { panic!("an images source") };
    assert_eq!(images.max_file_bytes, 16 << 20);
    assert_eq!(config.sources[0].image_limits(), Some(ImageLimits::default()));

    let frames = "[[sources]]\nname = \"door\"\nmodel = \"m\"\nkind = \"mqtt_frames\"\n";
    let sensor = "[[sources]]\nname = \"imu\"\nmodel = \"m\"\nkind = \"mqtt_sensor\"\n";
    let text = format!(
        "{MINIMAL}max_file_bytes = 1000\nmax_decoded_bytes = 2000000\n{frames}max_decoded_bytes = 3000000\n{sensor}"
    );
    let config = AgentConfig::parse(&text).expect("valid");
    let SourceConfig::Images(images) = &config.sources[0] else { panic!("an images source") };
    assert_eq!(images.max_file_bytes, 1000);
    let limits = |max_decoded_bytes| Some(ImageLimits { max_decoded_bytes, ..ImageLimits::default() });
    assert_eq!(config.sources[0].image_limits(), limits(2_000_000));
    assert_eq!(config.sources[1].image_limits(), limits(3_000_000));
    assert_eq!(config.sources[2].image_limits(), None);

    let text = format!("{MINIMAL}max_file_bytes = 0\nmax_decoded_bytes = 1000\n{frames}max_decoded_bytes = 0\n");
    let errors = AgentConfig::parse(&text).unwrap_err().to_string();
    assert_eq!(
        errors.lines().collect::<Vec<_>>(),
        [
            "sources[0].max_file_bytes: must be > 0",
            "sources[0].max_decoded_bytes: must be >= 1048576 (1 MiB)",
            "sources[1].max_decoded_bytes: must be >= 1048576 (1 MiB)",
        ]
    );
}

#[test]
fn large_payloads_defaults_and_rules() {
    let config = AgentConfig::parse(MINIMAL).expect("valid");
    assert_eq!(config.large_payloads, LargePayloadsConfig::default());
    assert!(!config.large_payloads.store);
    let text = with_source_keys(
        "[large_payloads]
store = true
dir = \"\"
keep_files = 0
keep_bytes = 1000",
    );
    assert_eq!(
        errors(&text),
        [
            "large_payloads.dir: must not be empty",
            "large_payloads.keep_files: must be >= 1",
            "large_payloads.keep_bytes: must be >= 1048576",
        ]
    );
}

#[test]
fn spool_defaults_and_rules() {
    let config = AgentConfig::parse(MINIMAL).expect("valid");
    assert_eq!(config.spool, SpoolConfig::default());
    assert_eq!((config.spool.dir.as_path(), config.spool.fsync), (Path::new("spool"), Fsync::Interval));
    let text = with_source_keys(
        "[spool]\ndir = \"\"\nsegment_bytes = 100\nhealth_max_bytes = 100\nfsync = \"interval\"\n\
         fsync_interval_ms = 0\nreplay_rate = nan",
    );
    assert_eq!(
        errors(&text),
        [
            "spool.dir: must not be empty",
            "spool.segment_bytes: must be between 4096 and 67108864",
            "spool.health_max_bytes: must be at least 2 × spool.segment_bytes (200)",
            "spool.fsync_interval_ms: must be between 1 and 3600000",
            "spool.replay_rate: must be > 0",
        ]
    );
    let tight = with_source_keys("[spool]\nsegment_bytes = 65536\nerrors_max_bytes = 100000");
    assert_eq!(errors(&tight), ["spool.errors_max_bytes: must be at least 2 × spool.segment_bytes (131072)"]);
    let never =
        AgentConfig::parse(&with_source_keys("[spool]\nfsync = \"never\"\nfsync_interval_ms = 0")).expect("valid");
    assert_eq!(never.spool.fsync, Fsync::Never);
    let mut resolved = AgentConfig::parse(MINIMAL).expect("valid");
    resolved.resolve_paths(Path::new("/etc/agent"));
    assert_eq!(resolved.spool.dir, Path::new("/etc/agent/spool"));
}

#[test]
fn v4l2_source_keys_defaults_and_validation() {
    let text = r#"
device_id = "d"
[[sources]]
name = "usb"
kind = "v4l2"
model = "m"
[[sources]]
name = "csi"
kind = "v4l2"
model = "m"
device = "/dev/video2"
format = "nv12"
width = 1640
height = 1232
fps = 7.5
watchdog_secs = 10
max_decoded_bytes = 2097152
"#;
    let config = AgentConfig::parse(text).expect("valid");
    let SourceConfig::V4l2(usb) = &config.sources[0] else { panic!("v4l2") };
    assert_eq!(
        (usb.device.to_str(), usb.format, usb.width, usb.height),
        (Some("/dev/video0"), V4l2Format::Auto, 640, 480)
    );
    assert_eq!((usb.fps, usb.watchdog_secs), (None, 5));
    let SourceConfig::V4l2(csi) = &config.sources[1] else { panic!("v4l2") };
    assert_eq!((csi.format, csi.width, csi.height, csi.fps), (V4l2Format::Nv12, 1640, 1232, Some(7.5)));
    assert_eq!(config.sources[1].image_limits().map(|l| l.max_decoded_bytes), Some(2_097_152));
    assert_eq!(config.sources[1].kind(), "v4l2");

    let bad = r#"
device_id = "d"
[[sources]]
name = "usb"
kind = "v4l2"
model = "m"
device = ""
width = 0
fps = 0
watchdog_secs = 0
"#;
    assert_eq!(
        errors(bad),
        [
            "sources[0].device: is required",
            "sources[0].width: width and height must be > 0",
            "sources[0].fps: must be > 0",
            "sources[0].watchdog_secs: must be >= 1",
        ]
    );
    let unknown = errors(&text.replace("format = \"nv12\"", "format = \"h264\""));
    assert!(unknown[0].contains("unknown variant `h264`"), "{unknown:?}");
}

#[test]
fn snapshot_defaults_and_rules() {
    let text = format!("{MINIMAL}[[snapshots]]\nsource = \"front-door\"\ndirectory = \"snaps\"\n");
    let mut config = AgentConfig::parse(&text).expect("valid");
    let snapshot = &config.snapshots[0];
    assert_eq!((snapshot.min_score, snapshot.min_anomaly_score, snapshot.min_interval_secs), (0.5, None, 10.0));
    assert!(snapshot.publish && snapshot.draw_boxes && snapshot.labels.is_empty());
    assert_eq!(
        (snapshot.max_bytes, snapshot.quality, snapshot.keep_files, snapshot.keep_bytes),
        (524_288, 85, 100, 64 << 20)
    );
    config.resolve_paths(Path::new("/etc/agent"));
    assert_eq!(config.snapshots[0].directory.as_deref(), Some(Path::new("/etc/agent/snaps")));

    let sensor = "[[sources]]\nname = \"imu\"\nmodel = \"m\"\nkind = \"mqtt_sensor\"\n";
    let bad = [
        "[[snapshots]]\nsource = \"nowhere\"\n",
        "[[snapshots]]\nsource = \"imu\"\n",
        "[[snapshots]]\nsource = \"front-door\"\nlabels = [\"\"]\nmin_score = 1.5\nmin_interval_secs = -1.0\n",
        "[[snapshots]]\nsource = \"front-door\"\npublish = false\nquality = 0\nkeep_files = 0\n",
        "[[snapshots]]\nsource = \"front-door\"\nmax_bytes = 100\nkeep_bytes = 10\n",
        "[[snapshots]]\nsource = \"\"\n",
    ];
    let text = format!("{MINIMAL}{sensor}{}", bad.concat());
    assert_eq!(
        errors(&text),
        [
            "snapshots[0].source: no source is named \"nowhere\"",
            "snapshots[1].source: \"imu\" is a sensor source: it has no frames",
            "snapshots[2].labels: must not contain an empty label",
            "snapshots[2].min_score: must be between 0 and 1",
            "snapshots[2].min_interval_secs: must be between 0 and 86400",
            "snapshots[3].source: snapshots[2] already takes \"front-door\"'s snapshots",
            "snapshots[3].publish: snapshots need publish = true or a directory",
            "snapshots[3].keep_files: must be >= 1",
            "snapshots[3].quality: must be between 1 and 100",
            "snapshots[4].source: snapshots[2] already takes \"front-door\"'s snapshots",
            "snapshots[4].keep_bytes: must be >= max_bytes (room for one snapshot)",
            "snapshots[4].max_bytes: must be >= 4096",
            "snapshots[5].source: is required",
        ]
    );

    // A snapshot must fit in one MQTT packet with its topic, when it is published.
    let small_packets = "[mqtt]\nmax_packet_bytes = 65536\n";
    let text = format!("{MINIMAL}{small_packets}[[snapshots]]\nsource = \"front-door\"\n");
    assert_eq!(
        errors(&text),
        ["snapshots[0].max_bytes: must be <= 65485 for the snapshot and its topic to fit in mqtt.max_packet_bytes"]
    );
    let text =
        format!("{MINIMAL}{small_packets}[[snapshots]]\nsource = \"front-door\"\npublish = false\ndirectory = \"s\"\n");
    assert!(AgentConfig::parse(&text).is_ok(), "stored only: no packet to fit");
}

#[test]
fn an_image_source_takes_a_cascade_resolved_against_the_config() {
    let text = format!(
        "{MINIMAL}[sources.cascade]\nbundle = \"models/face-id\"\nlabels = [\"face\"]\nmax_crops = 2\nmargin = 0.1\n"
    );
    let mut config = AgentConfig::parse(&text).unwrap();
    config.resolve_paths(Path::new("/etc/agent"));
    let cascade = config.sources[0].cascade().expect("a cascade");
    assert_eq!(cascade.bundle, "/etc/agent/models/face-id");
    assert_eq!(
        (cascade.labels.as_slice(), cascade.max_crops, cascade.margin, cascade.square),
        (&["face".to_owned()][..], 2, 0.1, false)
    );

    let bad = text.replace("max_crops = 2", "max_crops = 0").replace("margin = 0.1", "margin = 1.5");
    let errors = AgentConfig::parse(&bad).unwrap_err().to_string();
    assert!(errors.contains("sources[0].cascade.max_crops: must be within 1..=256"), "{errors}");
    assert!(errors.contains("sources[0].cascade.margin: must be within 0..=1"), "{errors}");

    let on_sensors = "device_id = \"d\"\n[[sources]]\nname = \"w\"\nkind = \"csv\"\nmodel = \"m\"\npath = \"a.csv\"\n\
                      [sources.cascade]\nbundle = \"b\"\n";
    assert!(AgentConfig::parse(on_sensors).unwrap_err().to_string().contains("unknown field `cascade`"));
}
