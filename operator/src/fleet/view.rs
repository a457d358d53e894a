//! The fleet view's state, pure: retained (and live) messages in, one [`Row`] per device out. The shell in
//! [`super::list`] feeds it what the broker delivers; nothing here does IO or reads a clock.

use protocol::update::{Membership, UpdateState, UpdateStatus};
use protocol::wire::{self, Alert, AlertKind, AlertReport, Format, Health, Severity, State, Status};
use serde::Serialize;
use std::collections::BTreeMap;

/// Which devices the view holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every device whose prefix is this string and one more topic level (`devices/` holds `devices/<id>`).
    Prefix(String),
    /// The members of a group, each on the prefix its membership names.
    Group(String),
}

impl Scope {
    /// The topic filters that hold everything the view reads: for a group, its memberships (the members' own
    /// topics follow from them, see [`device_filters`]).
    pub fn filters(&self) -> Vec<String> {
        match self {
            Scope::Prefix(prefix) => device_filters(&format!("{prefix}+")),
            Scope::Group(group) => vec![format!("groups/{group}/members/+")],
        }
    }
}

/// The filters of one device's topics under `prefix` (a `+` level for every device of a prefix).
pub fn device_filters(prefix: &str) -> Vec<String> {
    ["status", "health", "update/status", "alerts/+"].iter().map(|topic| format!("{prefix}/{topic}")).collect()
}

/// Online, offline, or no status seen yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    Online,
    Offline,
    Unknown,
}

/// One device, as `--json` prints it (see docs/fleets.md).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub device: String,
    /// The device's topic prefix.
    pub prefix: String,
    pub state: Presence,
    /// When the state began (Unix ms); `None` for the last will and before any status.
    pub since_ms: Option<u64>,
    pub agent_version: Option<String>,
    /// The model each source runs, from the last health.
    pub models: Vec<SourceModel>,
    pub update: Option<UpdateRow>,
    pub alerts: Vec<ActiveAlert>,
    pub health: Option<HealthRow>,
    /// Messages of this device that could not be read, one per topic, each saying why.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceModel {
    pub source: String,
    pub model: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpdateRow {
    pub state: UpdateState,
    pub update_id: Option<String>,
    pub model: String,
    pub version: String,
    pub running_version: String,
    pub percent: f32,
    pub reason: Option<String>,
    pub at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActiveAlert {
    pub source: String,
    pub kind: AlertKind,
    pub subject: String,
    pub severity: Severity,
    pub since_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthRow {
    /// When the report was made (Unix ms); 0 from an agent that does not say.
    pub at_ms: u64,
    pub uptime_s: u64,
    pub cpu_percent: f32,
    pub rss_bytes: u64,
    /// Failed inputs since start, all sources and kinds together.
    pub errors: u64,
    /// The kinds of the conditions the agent is degraded by.
    pub conditions: Vec<String>,
}

/// What one message did to the view.
#[derive(Debug, Default, PartialEq)]
pub struct Observed {
    /// A group member whose own topics are now to be subscribed: its prefix.
    pub joined: Option<String>,
    /// A member that left its group: its prefix (its topics can be unsubscribed).
    pub left: Option<String>,
    /// The device's row, when the message changed it.
    pub changed: Option<Row>,
}

/// What the view knows of one device.
#[derive(Debug, Clone, Default)]
struct Device {
    id: String,
    status: Option<Status>,
    health: Option<Health>,
    update: Option<UpdateStatus>,
    alerts: BTreeMap<String, Vec<Alert>>,
    problems: BTreeMap<String, String>,
}

/// Every device of a scope, by prefix.
pub struct FleetView {
    scope: Scope,
    devices: BTreeMap<String, Device>,
}

impl FleetView {
    pub fn new(scope: Scope) -> FleetView {
        FleetView { scope, devices: BTreeMap::new() }
    }

    /// One row per device, sorted by prefix.
    pub fn rows(&self) -> Vec<Row> {
        self.devices.iter().map(|(prefix, device)| device.row(prefix)).collect()
    }

    /// Takes a message on `topic`. An empty payload is a retained message being removed.
    pub fn observe(&mut self, topic: &str, payload: &[u8]) -> Observed {
        if let Scope::Group(group) = &self.scope
            && let Some(member) = topic.strip_prefix(&format!("groups/{group}/members/"))
        {
            return self.membership(topic, member, payload);
        }
        let Some((prefix, rest)) = self.device_of(topic) else { return Observed::default() };
        let device = match &self.scope {
            Scope::Prefix(_) => self.devices.entry(prefix.clone()).or_insert_with(|| Device {
                id: prefix.rsplit('/').next().unwrap_or_default().to_owned(),
                ..Device::default()
            }),
            Scope::Group(_) => match self.devices.get_mut(&prefix) {
                Some(device) => device,
                None => return Observed::default(),
            },
        };
        let before = device.row(&prefix);
        let read = device.take(&rest, payload);
        match read {
            Ok(()) => device.problems.remove(topic),
            Err(why) => device.problems.insert(topic.to_owned(), format!("{topic}: {why}")),
        };
        let after = device.row(&prefix);
        Observed { changed: (after != before).then_some(after), ..Observed::default() }
    }

    /// A group member's retained membership (or its removal).
    fn membership(&mut self, topic: &str, member: &str, payload: &[u8]) -> Observed {
        if payload.is_empty() {
            let prefix = self.devices.iter().find(|(_, device)| device.id == member).map(|(prefix, _)| prefix.clone());
            if let Some(prefix) = &prefix {
                self.devices.remove(prefix);
            }
            return Observed { left: prefix, ..Observed::default() };
        }
        match serde_json::from_slice::<Membership>(payload) {
            Ok(membership) if membership.prefix.is_empty() || membership.prefix.contains(['+', '#']) => self
                .member_problem(
                    member,
                    format!("{topic}: prefix {:?} is empty or has MQTT wildcards", membership.prefix),
                ),
            Ok(membership) if membership.device == member => {
                // A sound membership replaces an unusable one.
                self.devices.remove(&problem_key(member));
                if self.devices.contains_key(&membership.prefix) {
                    return Observed::default();
                }
                let device = Device { id: membership.device, ..Device::default() };
                let row = device.row(&membership.prefix);
                self.devices.insert(membership.prefix.clone(), device);
                Observed { joined: Some(membership.prefix), changed: Some(row), left: None }
            }
            Ok(membership) => self.member_problem(
                member,
                format!("{topic}: the membership names device {:?}, not {member:?}", membership.device),
            ),
            Err(error) => self.member_problem(member, format!("{topic}: unreadable membership: {error}")),
        }
    }

    /// A membership that can't be taken: the member is listed with the problem and no prefix to follow.
    fn member_problem(&mut self, member: &str, problem: String) -> Observed {
        let key = problem_key(member);
        let device =
            self.devices.entry(key.clone()).or_insert_with(|| Device { id: member.to_owned(), ..Device::default() });
        device.problems.insert(key.clone(), problem);
        Observed { changed: Some(device.row(&key)), ..Observed::default() }
    }

    /// The device prefix `topic` belongs to, and the rest of the topic after it.
    fn device_of(&self, topic: &str) -> Option<(String, String)> {
        match &self.scope {
            Scope::Prefix(prefix) => {
                let (id, rest) = topic.strip_prefix(prefix.as_str())?.split_once('/')?;
                Some((format!("{prefix}{id}"), rest.to_owned()))
            }
            // The longest member prefix the topic is under: prefixes may nest (`site` and `site/a`).
            Scope::Group(_) => self
                .devices
                .keys()
                .filter_map(|prefix| Some((prefix, topic.strip_prefix(prefix.as_str())?.strip_prefix('/')?)))
                .max_by_key(|(prefix, _)| prefix.len())
                .map(|(prefix, rest)| (prefix.clone(), rest.to_owned())),
        }
    }
}

impl Device {
    /// Takes the message on `<prefix>/<rest>`; `Err` says why it could not be read.
    fn take(&mut self, rest: &str, payload: &[u8]) -> Result<(), String> {
        let removed = payload.is_empty();
        match rest {
            "status" => self.status = if removed { None } else { Some(decode(payload)?) },
            "health" => self.health = if removed { None } else { Some(decode(payload)?) },
            "update/status" => {
                // Always JSON, whatever `mqtt.format` says (protocol::update).
                self.update = match removed {
                    true => None,
                    false => Some(serde_json::from_slice(payload).map_err(|e| format!("invalid JSON: {e}"))?),
                }
            }
            _ => match rest.strip_prefix("alerts/") {
                Some(source) if removed => {
                    self.alerts.remove(source);
                }
                Some(source) => {
                    let report: AlertReport = decode(payload)?;
                    match report.active.is_empty() {
                        true => self.alerts.remove(source),
                        false => self.alerts.insert(source.to_owned(), report.active),
                    };
                }
                None => return Err("not a topic of the fleet view".to_owned()),
            },
        }
        Ok(())
    }

    fn row(&self, prefix: &str) -> Row {
        let (state, since_ms) = match &self.status {
            Some(Status { state: State::Online, since_ms, .. }) => (Presence::Online, *since_ms),
            Some(Status { state: State::Offline, since_ms, .. }) => (Presence::Offline, *since_ms),
            None => (Presence::Unknown, None),
        };
        let agent_version = (self.status.as_ref().map(|status| &status.agent_version))
            .or(self.health.as_ref().map(|health| &health.agent_version))
            .cloned();
        let models = self.health.iter().flat_map(|health| &health.sources).map(|source| SourceModel {
            source: source.name.clone(),
            model: source.model.name.clone(),
            version: source.model.version.clone(),
        });
        let alerts = self.alerts.iter().flat_map(|(source, alerts)| {
            alerts.iter().map(|alert| ActiveAlert {
                source: source.clone(),
                kind: alert.kind,
                subject: alert.subject.clone(),
                severity: alert.severity,
                since_ms: alert.since_ms,
            })
        });
        Row {
            device: self.id.clone(),
            prefix: prefix.to_owned(),
            state,
            since_ms,
            agent_version,
            models: models.collect(),
            update: self.update.as_ref().map(|update| UpdateRow {
                state: update.state,
                update_id: update.update_id.clone(),
                model: update.model.clone(),
                version: update.version.clone(),
                running_version: update.running_version.clone(),
                percent: update.percent,
                reason: update.reason.clone(),
                at_ms: update.at_ms,
            }),
            alerts: alerts.collect(),
            health: self.health.as_ref().map(|health| HealthRow {
                at_ms: health.at_ms,
                uptime_s: health.uptime_s,
                cpu_percent: health.cpu_percent,
                rss_bytes: health.rss_bytes,
                errors: health.sources.iter().flat_map(|source| &source.errors).map(|count| count.count).sum(),
                conditions: health.conditions.iter().map(|condition| condition.kind.to_string()).collect(),
            }),
            problems: self.problems.values().cloned().collect(),
        }
    }
}

/// Where a member whose membership can't be used is listed: not a prefix, so that no topic falls under it.
fn problem_key(member: &str) -> String {
    format!("(membership of {member})")
}

/// A payload in either of the agent's formats (`mqtt.format`): a JSON object opens with `{`, a postcard
/// envelope with its version byte, which is never `{`.
fn decode<M: wire::Message + serde::de::DeserializeOwned>(payload: &[u8]) -> Result<M, String> {
    let format = if payload.first() == Some(&b'{') { Format::Json } else { Format::Postcard };
    wire::decode(format, payload).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests;
