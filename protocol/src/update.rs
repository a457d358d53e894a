//! The update protocol's messages and topics. Control messages are always JSON, whatever `mqtt.format` says:
//! they are small, rare, and read by people and scripts as often as by the agent. Chunks are raw bytes.
//!
//! ```text
//! <base>/update/announce              pusher -> devices   Envelope of an Order to Announce
//! <base>/update/chunk/<id>/<index>    pusher -> devices   raw chunk bytes, QoS 1
//! <prefix>/update/request             device -> pusher    ChunkRequest
//! <prefix>/update/status              device, retained    UpdateStatus
//! <prefix>/update/command             operator -> device  Envelope of an Order to Rollback (or a later command)
//! groups/<group>/members/<device>     device, retained    Membership
//! ```
//! `<prefix>` is a device's prefix (`devices/<device_id>` by default); `<base>` is a device prefix or a group
//! base `groups/<group>`. What changes what a device runs comes as a signed [`Order`] (see [`order`]).

mod order;

pub use order::{Envelope, Instruction, Order, Target};

use serde::{Deserialize, Serialize};

/// Lower-case hex characters of an update id: the first 16 of the package's sha256.
pub const UPDATE_ID_LEN: usize = 16;

/// The update id of a package with sha256 `sha256` (lower-case hex).
pub fn update_id(sha256: &str) -> String {
    sha256.chars().take(UPDATE_ID_LEN).collect()
}

/// The topics of the update protocol under one base (a device prefix or `groups/<group>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateTopics {
    base: String,
}

impl UpdateTopics {
    /// Topics under a device's prefix.
    pub fn device(prefix: &str) -> UpdateTopics {
        UpdateTopics { base: prefix.to_owned() }
    }

    /// Topics under the base of group `group`.
    pub fn group(group: &str) -> UpdateTopics {
        UpdateTopics { base: format!("groups/{group}") }
    }

    pub fn announce(&self) -> String {
        format!("{}/update/announce", self.base)
    }

    /// Where the chunks of update `id` go: `<chunks>/<index>`.
    pub fn chunks(&self, id: &str) -> String {
        format!("{}/update/chunk/{id}", self.base)
    }

    /// The filter that matches every chunk under this base.
    pub fn chunk_filter(&self) -> String {
        format!("{}/update/chunk/#", self.base)
    }

    pub fn request(&self) -> String {
        format!("{}/update/request", self.base)
    }

    pub fn status(&self) -> String {
        format!("{}/update/status", self.base)
    }

    pub fn command(&self) -> String {
        format!("{}/update/command", self.base)
    }

    /// The retained membership message of `device` (group bases only).
    pub fn member(&self, device: &str) -> String {
        format!("{}/members/{device}", self.base)
    }

    /// The filter that matches every member of the group (group bases only).
    pub fn member_filter(&self) -> String {
        format!("{}/members/+", self.base)
    }
}

/// Splits a chunk topic `<...>/update/chunk/<id>/<index>` into the id and the index.
pub fn parse_chunk_topic(topic: &str) -> Option<(&str, u32)> {
    let rest = &topic[topic.rfind("/update/chunk/")? + "/update/chunk/".len()..];
    let (id, index) = rest.split_once('/')?;
    Some((id, index.parse().ok()?))
}

/// What a pusher offers, inside a signed [`Order`]: sent before the chunks and repeated until every target has
/// answered. Every field is signed, so the package's sha256, its size and the hash of each chunk are the
/// operator's word: a chunk that does not match is refused on arrival and asked for again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Announcement {
    /// [`update_id`] of `sha256`.
    pub id: String,
    /// The manifest's model name: the device updates every source that runs a model of this name.
    pub name: String,
    /// The manifest's version.
    pub version: String,
    /// Bytes of the package.
    pub size: u64,
    /// Lower-case hex sha256 of the whole package.
    pub sha256: String,
    /// The `manifest.sig` line of the package, for people; the device verifies the copy inside the package.
    pub signature: Option<String>,
    /// Bytes per chunk; the last chunk holds the remainder.
    pub chunk_size: u32,
    /// Lower-case hex sha256 of each chunk, in order: [`Announcement::chunk_count`] of them.
    pub chunk_sha256: Vec<String>,
    /// The topic the chunks are published under (`<chunks_topic>/<index>`).
    pub chunks_topic: String,
    /// The operator's authorisation to install `version` although it is lower than the running one and the
    /// device's version floor (an explicit rollback push). Signed with the rest.
    pub rollback: bool,
}

impl Announcement {
    /// Number of chunks.
    pub fn chunk_count(&self) -> u32 {
        u32::try_from(self.size.div_ceil(u64::from(self.chunk_size.max(1)))).unwrap_or(u32::MAX)
    }
}

/// A device asking for chunks it lacks: half-open index ranges `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkRequest {
    pub id: String,
    pub device: String,
    pub ranges: Vec<[u32; 2]>,
}

/// Where an update stands on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateState {
    /// No update has run since the device was installed.
    Idle,
    /// Chunks are arriving.
    Downloading,
    /// Checking sha256, signature, version and the manifest against the graph.
    Verifying,
    /// Running the bundle's golden vectors on the candidate while the old model serves.
    SelfTesting,
    /// The candidate serves; its metrics are being compared with the previous model's.
    Probation,
    /// The candidate passed probation and is the model now.
    Committed,
    /// The update was refused before it ever ran; `reason` says why.
    Rejected,
    /// The candidate ran and was replaced by the previous model; `reason` says why.
    RolledBack,
    /// The device could not carry out the update (disk full, I/O error); `reason` says why.
    Failed,
}

impl UpdateState {
    /// Every state, in the order an update goes through them (outcomes last).
    pub const ALL: [UpdateState; 9] = [
        UpdateState::Idle,
        UpdateState::Downloading,
        UpdateState::Verifying,
        UpdateState::SelfTesting,
        UpdateState::Probation,
        UpdateState::Committed,
        UpdateState::Rejected,
        UpdateState::RolledBack,
        UpdateState::Failed,
    ];

    /// The state's name on the wire (`rolled_back`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateState::Idle => "idle",
            UpdateState::Downloading => "downloading",
            UpdateState::Verifying => "verifying",
            UpdateState::SelfTesting => "self_testing",
            UpdateState::Probation => "probation",
            UpdateState::Committed => "committed",
            UpdateState::Rejected => "rejected",
            UpdateState::RolledBack => "rolled_back",
            UpdateState::Failed => "failed",
        }
    }

    /// Whether the update has reached an outcome.
    pub fn is_final(self) -> bool {
        matches!(self, UpdateState::Committed | UpdateState::Rejected | UpdateState::RolledBack | UpdateState::Failed)
    }
}

/// The device's retained update status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateStatus {
    pub device: String,
    pub state: UpdateState,
    /// The update this status is about; `None` when it is about no update (idle, or a `rollback` command).
    pub update_id: Option<String>,
    /// The model name the update is for.
    pub model: String,
    /// The version the update brings.
    pub version: String,
    /// The version serving now.
    pub running_version: String,
    /// Package bytes received so far, and in all.
    pub bytes: u64,
    pub size: u64,
    /// `bytes` in percent of `size`.
    pub percent: f32,
    /// Bytes that were already staged when this transfer (re)started: more than 0 after a resume.
    pub resumed_bytes: u64,
    /// Why an update was rejected, rolled back or failed.
    pub reason: Option<String>,
    pub at_ms: u64,
    /// The `counter` of the signed [`Order`] this status answers; `None` for what no order asked (the state at
    /// start, an outcome reached after a restart). A pusher takes only statuses that answer its own order.
    #[serde(default)]
    pub order: Option<u64>,
    /// Update messages (announcements, chunks, commands) dropped since the agent started because the update
    /// thread's queue was full. A dropped chunk is asked for again; a dropped command is not carried out.
    #[serde(default)]
    pub messages_dropped: u64,
    /// Error events on `<prefix>/errors/update` that the MQTT link refused (its queue full) since the start.
    #[serde(default)]
    pub errors_unpublished: u64,
}

impl UpdateStatus {
    /// The reason, or "" when there is none.
    pub fn reason(&self) -> &str {
        self.reason.as_deref().unwrap_or_default()
    }
}

/// A device's retained membership in a group, so that `model push --group` can find the members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Membership {
    pub device: String,
    /// The device's topic prefix.
    pub prefix: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_topics_round_trip() {
        let topics = UpdateTopics::group("lab");
        let topic = format!("{}/{}", topics.chunks("0123456789abcdef"), 42);
        assert_eq!(topic, "groups/lab/update/chunk/0123456789abcdef/42");
        assert_eq!(parse_chunk_topic(&topic), Some(("0123456789abcdef", 42)));
        assert_eq!(topics.chunk_filter(), "groups/lab/update/chunk/#");
        assert_eq!(parse_chunk_topic("devices/a/update/chunk/x/notanumber"), None);
    }

    #[test]
    fn state_names_are_the_wire_names() {
        for state in UpdateState::ALL {
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
    }

    #[test]
    fn chunk_count_rounds_up() {
        let mut announcement = Announcement {
            id: String::new(),
            name: String::new(),
            version: String::new(),
            size: 10,
            sha256: String::new(),
            signature: None,
            chunk_size: 4,
            chunk_sha256: Vec::new(),
            chunks_topic: String::new(),
            rollback: false,
        };
        assert_eq!(announcement.chunk_count(), 3);
        announcement.size = 8;
        assert_eq!(announcement.chunk_count(), 2);
    }
}
