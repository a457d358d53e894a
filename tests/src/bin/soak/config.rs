//! The soaked agent's configuration: two sources that predict steadily (a looping CSV recording and looping image
//! files) and two inbound sources that only ever get hostile input, with `[update]` on so that commands are read.

use integration_tests::models_dir;

/// The device id, and so the topic prefix `devices/soak-01`.
pub const DEVICE: &str = "soak-01";

/// The agent's `mqtt.max_packet_bytes`, kept small so that an oversize message stays cheap to send.
pub const MAX_PACKET_BYTES: usize = 262_144;

/// The sources that produce predictions on their own, whose every sequence number is accounted for.
pub const STEADY_SOURCES: [&str; 2] = ["vibration", "camera"];

/// The inbound sources the hostile messages go to.
pub const FRAMES_SOURCE: &str = "door";
pub const SENSOR_SOURCE: &str = "wrist";

/// The key of `docs/agent.example.toml`: any valid key will do, nothing signed ever arrives.
const TRUSTED_KEY: &str = "8fee9cd46a57751ef3b0bad45a1643678736734cc8385af5ca62cf6a5e82dcb6";

/// `<prefix>` of every topic.
pub fn prefix() -> String {
    format!("devices/{DEVICE}")
}

/// The config for a broker on 127.0.0.1:`port`. Relative paths (`state`, `spool`) are in the agent's own
/// temporary directory.
pub fn agent(port: u16) -> String {
    let model = |name: &str| models_dir().join(name).display().to_string();
    let vibration = models_dir().join("recordings/vibration.csv").display().to_string();
    let frames = models_dir().join("frames").display().to_string();
    format!(
        r#"device_id = "{DEVICE}"

[mqtt]
host = "127.0.0.1"
port = {port}
max_packet_bytes = {MAX_PACKET_BYTES}

[mqtt.qos]
health = 1

[health]
interval_secs = 5

[update]
trusted_keys = ["{TRUSTED_KEY}"]
state_dir = "state"

[spool]
dir = "spool"

# 20 windows a second: 50 samples each, 1000 samples a second.
[[sources]]
name = "vibration"
kind = "csv"
model = "{vibration_model}"
path = "{vibration}"
rate_hz = 1000.0
stride = 50
loop = true

[[sources]]
name = "camera"
kind = "images"
model = "{camera_model}"
path = "{frames}"
rate_fps = 4.0
loop = true

[[sources]]
name = "{FRAMES_SOURCE}"
kind = "mqtt_frames"
model = "{door_model}"

[[sources]]
name = "{SENSOR_SOURCE}"
kind = "mqtt_sensor"
model = "{wrist_model}"
"#,
        vibration_model = model("vibration-anomaly"),
        camera_model = model("image-classifier"),
        door_model = model("face-detector"),
        wrist_model = model("activity-classifier"),
    )
}
