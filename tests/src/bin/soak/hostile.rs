//! Hostile inbound messages, published with `mosquitto_pub` as any client on the broker could: an oversize
//! retained frame, bytes that are no image, a malformed sensor window and the unsigned rollback command.

use crate::config::{FRAMES_SOURCE, MAX_PACKET_BYTES, SENSOR_SOURCE, prefix};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// One kind of hostile message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hostile {
    OversizeRetainedFrame,
    GarbageFrame,
    MalformedWindow,
    UnsignedRollback,
}

impl Hostile {
    /// Every kind, in the order they take turns.
    pub const ALL: [Hostile; 4] =
        [Hostile::OversizeRetainedFrame, Hostile::GarbageFrame, Hostile::MalformedWindow, Hostile::UnsignedRollback];

    pub fn name(self) -> &'static str {
        match self {
            Hostile::OversizeRetainedFrame => "oversize retained frame",
            Hostile::GarbageFrame => "frame that is no image",
            Hostile::MalformedWindow => "malformed JSON window",
            Hostile::UnsignedRollback => "unsigned rollback",
        }
    }

    /// Where it goes, whether it is retained, and its bytes.
    fn message(self) -> (String, bool, Vec<u8>) {
        let frames = format!("{}/frames/{FRAMES_SOURCE}", prefix());
        match self {
            // One byte over the limit: the case that used to lock the link in a reconnect loop.
            Hostile::OversizeRetainedFrame => (frames, true, vec![0xA5; MAX_PACKET_BYTES + 1]),
            Hostile::GarbageFrame => (frames, false, b"\xff\xd8\xff\xe0 not a JPEG after all".to_vec()),
            Hostile::MalformedWindow => {
                (format!("{}/sensor/{SENSOR_SOURCE}", prefix()), false, br#"{"channels":6,"values":[0.1,"#.to_vec())
            }
            Hostile::UnsignedRollback => {
                (format!("{}/update/command", prefix()), false, br#"{"command":"rollback"}"#.to_vec())
            }
        }
    }
}

/// Publishes hostile messages in turn, with its payload files in a directory of its own.
pub struct Attacker {
    dir: tempfile::TempDir,
    port: u16,
    turn: usize,
}

impl Attacker {
    pub fn new(port: u16) -> anyhow::Result<Attacker> {
        Ok(Attacker { dir: tempfile::tempdir()?, port, turn: 0 })
    }

    /// Publishes the next kind at QoS 1; an error when `mosquitto_pub` fails (the broker is down).
    pub fn next(&mut self) -> anyhow::Result<Hostile> {
        let hostile = Hostile::ALL[self.turn % Hostile::ALL.len()];
        self.turn += 1;
        let (topic, retain, payload) = hostile.message();
        let file: PathBuf = self.dir.path().join("payload");
        std::fs::write(&file, payload)?;
        let mut command = Command::new("mosquitto_pub");
        command.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q", "1", "-t", &topic]).arg("-f").arg(&file);
        if retain {
            command.arg("-r");
        }
        let status = command.stdout(Stdio::null()).stderr(Stdio::null()).status()?;
        anyhow::ensure!(status.success(), "mosquitto_pub failed ({status}) for the {}", hostile.name());
        Ok(hostile)
    }
}
