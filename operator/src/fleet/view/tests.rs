use super::*;
use crate::fleet::render;
use protocol::ModelIdentity;
use protocol::error::ErrorKind;
use protocol::wire::{AlertChange, ErrorCount, SourceHealth, encode};

fn status(state: State, since_ms: Option<u64>) -> Status {
    Status { state, device: "a".into(), agent_version: "0.9.1".into(), since_ms }
}

fn health(at_ms: u64) -> Health {
    let source = SourceHealth {
        name: "imu".into(),
        model: ModelIdentity { name: "activity".into(), version: "1.1.0".into(), sha256: "ab".into() },
        provider_requested: vec!["cpu".into()],
        provider_active: "cpu".into(),
        frames_in: 10,
        frames_ok: 8,
        frames_per_s: 1.0,
        dropped: 0,
        errors: vec![ErrorCount { kind: ErrorKind::Io, count: 1 }, ErrorCount { kind: ErrorKind::Decode, count: 2 }],
        queue_depth: 0,
        queue_capacity: 4,
        latency: Default::default(),
        predictions_unpublished: 0,
    };
    Health {
        device: "a".into(),
        agent_version: "0.9.1".into(),
        uptime_s: 60,
        cpu_percent: 2.5,
        rss_bytes: 30 << 20,
        peak_rss_bytes: 31 << 20,
        temperature_c: None,
        mqtt_reconnects: 0,
        sources: vec![source],
        health_unpublished: 0,
        arch: "x86_64".into(),
        mqtt_oversized: 0,
        conditions: Vec::new(),
        spool: None,
        cameras: Vec::new(),
        snapshots: Vec::new(),
        monitors: Vec::new(),
        at_ms,
    }
}

fn alert_report(active: bool) -> AlertReport {
    let alert = Alert {
        kind: AlertKind::Drift,
        subject: "x".into(),
        statistic: "psi".into(),
        value: 0.5,
        threshold: 0.2,
        severity: Severity::Alert,
        since_ms: 5_000,
    };
    let change = if active { AlertChange::Raised } else { AlertChange::Cleared };
    let active = if active { vec![alert.clone()] } else { Vec::new() };
    AlertReport { device: "a".into(), source: "imu".into(), at_ms: 5_000, change, alert, active }
}

fn update_status() -> UpdateStatus {
    serde_json::from_value(serde_json::json!({
        "device": "a", "state": "committed", "update_id": "0123456789abcdef", "model": "activity",
        "version": "1.1.0", "running_version": "1.1.0", "bytes": 10, "size": 10, "percent": 100.0,
        "resumed_bytes": 0, "reason": null, "at_ms": 6_000
    }))
    .expect("an update status")
}

fn json<M: wire::Message>(message: &M) -> Vec<u8> {
    encode(Format::Json, message).expect("encodes")
}

fn postcard<M: wire::Message>(message: &M) -> Vec<u8> {
    encode(Format::Postcard, message).expect("encodes")
}

#[test]
fn a_prefix_collects_every_topic_of_a_device_in_either_format() {
    let mut view = FleetView::new(Scope::Prefix("devices/".into()));
    assert!(view.observe("devices/a/status", &json(&status(State::Online, Some(1_000)))).changed.is_some());
    assert!(view.observe("devices/a/health", &postcard(&health(4_000))).changed.is_some());
    let update = serde_json::to_vec(&update_status()).expect("JSON");
    assert!(view.observe("devices/a/update/status", &update).changed.is_some());
    let changed = view.observe("devices/a/alerts/imu", &postcard(&alert_report(true))).changed.expect("a change");
    // The same message again changes nothing.
    assert_eq!(view.observe("devices/a/alerts/imu", &postcard(&alert_report(true))), Observed::default());

    assert_eq!(changed.device, "a");
    assert_eq!(changed.prefix, "devices/a");
    assert_eq!((changed.state, changed.since_ms), (Presence::Online, Some(1_000)));
    assert_eq!(changed.agent_version.as_deref(), Some("0.9.1"));
    assert_eq!(
        changed.models,
        [SourceModel { source: "imu".into(), model: "activity".into(), version: "1.1.0".into() }]
    );
    let update = changed.update.as_ref().expect("an update");
    assert_eq!((update.state, update.update_id.as_deref()), (UpdateState::Committed, Some("0123456789abcdef")));
    assert_eq!(changed.alerts.len(), 1);
    assert_eq!((changed.alerts[0].kind, changed.alerts[0].source.as_str()), (AlertKind::Drift, "imu"));
    let health = changed.health.as_ref().expect("health");
    assert_eq!((health.at_ms, health.errors, health.rss_bytes), (4_000, 3, 30 << 20));
    assert!(changed.problems.is_empty());
    assert_eq!(view.rows(), std::slice::from_ref(&changed));

    let json = serde_json::to_value(&changed).expect("JSON");
    assert_eq!(json["state"], "online");
    assert_eq!(json["update"]["state"], "committed");
    assert_eq!(json["alerts"][0]["kind"], "drift");
    let table = render::table(&view.rows(), 10_000);
    assert!(table.starts_with("DEVICE"), "{table}");
    assert!(table.contains("online since 1970-01-01T00:00:01Z (9s ago)"), "{table}");
    assert!(table.contains("imu=activity@1.1.0") && table.contains("committed activity@1.1.0"), "{table}");
    assert!(table.contains("imu:Drift(x)") && table.contains("errors 3"), "{table}");

    // A cleared alert: the report without active alerts, then the retained message removed.
    let cleared = view.observe("devices/a/alerts/imu", &json_alerts(false)).changed.expect("a change");
    assert!(cleared.alerts.is_empty());
    view.observe("devices/a/alerts/imu", &postcard(&alert_report(true)));
    assert!(view.observe("devices/a/alerts/imu", b"").changed.expect("a change").alerts.is_empty());
}

fn json_alerts(active: bool) -> Vec<u8> {
    json(&alert_report(active))
}

#[test]
fn offline_states_say_since_when_they_can() {
    let mut view = FleetView::new(Scope::Prefix("devices/".into()));
    view.observe("devices/a/health", &json(&health(4_000)));
    let clean = view.observe("devices/a/status", &json(&status(State::Offline, Some(5_000)))).changed.expect("changed");
    assert_eq!((clean.state, clean.since_ms), (Presence::Offline, Some(5_000)));
    assert!(render::line(&clean, 65_000).contains("a: offline since 1970-01-01T00:00:05Z (1m ago)"));

    let will = view.observe("devices/a/status", &postcard(&status(State::Offline, None))).changed.expect("changed");
    assert_eq!((will.state, will.since_ms), (Presence::Offline, None));
    let line = render::line(&will, 65_000);
    assert!(line.contains("offline, last health at 1970-01-01T00:00:04Z"), "{line}");

    let mut bare = FleetView::new(Scope::Prefix("devices/".into()));
    let row = bare.observe("devices/b/status", &json(&status(State::Offline, None))).changed.expect("changed");
    assert!(render::line(&row, 1).contains("offline, since unknown"));
}

#[test]
fn unreadable_messages_are_problems_of_their_device_until_a_good_one_comes() {
    let mut view = FleetView::new(Scope::Prefix("devices/".into()));
    let row = view.observe("devices/a/health", b"{\"device\":").changed.expect("changed");
    assert_eq!(row.problems.len(), 1);
    assert!(row.problems[0].starts_with("devices/a/health: invalid JSON"), "{:?}", row.problems);
    // A postcard envelope of another kind.
    let row = view.observe("devices/a/status", &postcard(&health(1))).changed.expect("changed");
    assert!(row.problems.iter().any(|p| p.contains("devices/a/status: envelope holds a Health message")), "{row:?}");
    let row = view.observe("devices/a/update/status", &[0x02, 0x00]).changed.expect("changed");
    assert_eq!(row.problems.len(), 3);
    let row = view.observe("devices/a/health", &postcard(&health(1))).changed.expect("changed");
    assert_eq!(row.problems.len(), 2);
    assert!(render::table(&view.rows(), 2).contains("  problem: devices/a/status: "));
    // Topics outside the view's (which it does not subscribe to) are no device's.
    assert_eq!(view.observe("elsewhere/a/status", &json(&status(State::Online, None))), Observed::default());
    assert_eq!(view.rows().len(), 1);
}

#[test]
fn a_group_follows_its_members_on_their_own_prefixes() {
    let mut view = FleetView::new(Scope::Group("lab".into()));
    assert_eq!(Scope::Group("lab".into()).filters(), ["groups/lab/members/+"]);
    let membership = |device: &str, prefix: &str| format!(r#"{{"device":"{device}","prefix":"{prefix}"}}"#);
    let joined = view.observe("groups/lab/members/a", membership("a", "site/a").as_bytes());
    assert_eq!(joined.joined.as_deref(), Some("site/a"));
    assert_eq!(joined.changed.expect("a row").state, Presence::Unknown);
    assert_eq!(view.observe("groups/lab/members/a", membership("a", "site/a").as_bytes()), Observed::default());
    view.observe("groups/lab/members/b", membership("b", "site/a/b").as_bytes());

    let row = view.observe("site/a/b/status", &json(&status(State::Online, Some(9)))).changed.expect("changed");
    assert_eq!((row.device.as_str(), row.prefix.as_str(), row.state), ("b", "site/a/b", Presence::Online));
    // Not a member's: ignored.
    assert_eq!(view.observe("devices/c/status", &json(&status(State::Online, None))), Observed::default());

    let wrong = view.observe("groups/lab/members/c", membership("d", "devices/d").as_bytes());
    assert!(wrong.joined.is_none());
    let problems = wrong.changed.expect("a row").problems;
    assert!(problems[0].contains("names device \"d\", not \"c\""), "{problems:?}");
    let wild = view.observe("groups/lab/members/e", membership("e", "devices/+").as_bytes());
    assert!(wild.joined.is_none() && wild.changed.expect("a row").problems[0].contains("wildcards"));

    let fixed = view.observe("groups/lab/members/e", membership("e", "devices/e").as_bytes());
    assert_eq!(fixed.joined.as_deref(), Some("devices/e"));
    assert!(fixed.changed.expect("a row").problems.is_empty());

    let left = view.observe("groups/lab/members/a", b"");
    assert_eq!(left.left.as_deref(), Some("site/a"));
    let devices: Vec<String> = view.rows().into_iter().map(|row| row.device).collect();
    assert_eq!(devices, ["c", "e", "b"]);
}
