use super::*;

const SOAK_MS: u64 = 2_000;

fn policy(plan: WavePlan) -> Policy {
    Policy {
        plan,
        max_failures_percent: 10,
        min_finished: 3,
        gates: Gates { soak_ms: SOAK_MS, max_error_rate: None, max_latency_ms: None, allow_alerts: false },
        wave_timeout_ms: 60_000,
    }
}

fn record(members: usize, sizes: &[usize]) -> Record {
    let members = (0..members).map(|i| (format!("d{i:02}"), format!("devices/d{i:02}"))).collect();
    Record::plan("lab", "0123456789abcdef", "ab", members, sizes)
}

fn committed() -> Outcome {
    Outcome { state: OutcomeState::Committed, reason: None }
}

fn failed() -> Outcome {
    Outcome { state: OutcomeState::Failed, reason: Some("self-test failed".into()) }
}

fn outcome(rollout: &mut Rollout, device: &str, outcome: Outcome, now_ms: u64) -> Vec<Action> {
    rollout.handle(Event::Outcome { device: device.into(), outcome }, now_ms)
}

/// The devices of every `Announce` in `actions`.
fn announced(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .flat_map(|action| match action {
            Action::Announce { devices, .. } => devices.clone(),
            _ => Vec::new(),
        })
        .collect()
}

fn names(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("d{i:02}")).collect()
}

#[test]
fn wave_sizes_by_rate_and_ramp() {
    let rate = WavePlan::Rate { per_minute: 30, wave_secs: 60 };
    assert_eq!(wave_sizes(100, None, rate), [30, 30, 30, 10]);
    assert_eq!(wave_sizes(100, Some(5), rate), [5, 30, 30, 30, 5]);
    // 60 a minute in waves of 2 s: two devices a wave.
    assert_eq!(wave_sizes(6, Some(1), WavePlan::Rate { per_minute: 60, wave_secs: 2 }), [1, 2, 2, 1]);
    let ramp = WavePlan::Exponential { first: 1 };
    assert_eq!(wave_sizes(20, None, ramp), [1, 2, 4, 8, 5]);
    assert_eq!(wave_sizes(20, Some(2), ramp), [2, 4, 8, 6]);
    assert_eq!(wave_sizes(3, Some(5), ramp), [3]);
}

#[test]
fn waves_start_in_order_after_commit_soak_and_interval() {
    let plan = WavePlan::Rate { per_minute: 60, wave_secs: 10 };
    let (mut rollout, resumed) = Rollout::resume(record(4, &[1, 3]), policy(plan));
    assert!(resumed.is_empty());
    let first = rollout.handle(Event::Tick, 1_000);
    // Write-ahead: persisted before the announcement.
    assert_eq!(first[0], Action::Persist);
    assert_eq!(announced(&first), names(0..1));
    let order = rollout.record().waves[0].order.expect("stamped");
    assert_eq!((order.counter, order.expires_at_ms), (1_000_000, 1_000 + 60_000 + super::super::CLOCK_SLACK_MS));
    assert!(announced(&outcome(&mut rollout, "d00", committed(), 2_000)).is_empty());
    // Soak: no gate before 2 s after the commit.
    assert!(rollout.handle(Event::Tick, 3_999).is_empty());
    let gated = rollout.handle(Event::Tick, 4_000);
    assert!(gated.contains(&Action::Gate { wave: 0, result: Ok(()) }), "{gated:?}");
    // The rate: the next wave no sooner than 10 s after the first began.
    assert!(announced(&gated).is_empty());
    assert!(announced(&rollout.handle(Event::Tick, 10_999)).is_empty());
    let second = rollout.handle(Event::Tick, 11_000);
    assert_eq!(announced(&second), names(1..4));
    assert!(rollout.record().waves[1].order.expect("stamped").counter > order.counter);
    for device in names(1..4) {
        outcome(&mut rollout, &device, committed(), 12_000);
    }
    let end = rollout.handle(Event::Tick, 14_000);
    assert!(end.contains(&Action::Finished), "{end:?}");
    assert_eq!(rollout.record().end, Some(End::Finished { at_ms: 14_000 }));
    assert!(rollout.handle(Event::Tick, 20_000).is_empty(), "nothing after the end");
}

#[test]
fn failures_abort_once_enough_devices_finished() {
    let mut policy = policy(WavePlan::Exponential { first: 1 });
    policy.max_failures_percent = 25;
    policy.min_finished = 4;
    let (mut rollout, _) = Rollout::resume(record(10, &[4, 6]), policy);
    assert_eq!(announced(&rollout.handle(Event::Tick, 0)), names(0..4));
    // 1 failure of 1 finished: over 25%, but fewer than --min-finished have finished.
    let actions = outcome(&mut rollout, "d00", failed(), 1);
    assert!(!actions.iter().any(|a| matches!(a, Action::Aborted { .. })), "{actions:?}");
    outcome(&mut rollout, "d01", committed(), 2);
    outcome(&mut rollout, "d02", committed(), 3);
    // 2 of 4 failed: 50% > 25%.
    let actions = outcome(&mut rollout, "d03", failed(), 4);
    let reason = "2 of 4 finished devices failed, more than --max-failures 25%".to_owned();
    assert!(actions.contains(&Action::Aborted { reason: reason.clone() }), "{actions:?}");
    assert_eq!(rollout.record().end, Some(End::Aborted { at_ms: 4, reason }));
    assert!(rollout.record().waves[1].order.is_none(), "the second wave is never announced");
    assert!(rollout.handle(Event::Tick, 100_000).is_empty());
}

#[test]
fn failures_within_the_budget_let_the_wave_pass() {
    let (mut rollout, _) = Rollout::resume(record(11, &[10, 1]), policy(WavePlan::Exponential { first: 1 }));
    rollout.handle(Event::Tick, 0);
    for device in names(1..10) {
        outcome(&mut rollout, &device, committed(), 1);
    }
    outcome(&mut rollout, "d00", failed(), 1);
    // 1 of 10 is 10%: not over --max-failures 10%.
    assert_eq!(announced(&rollout.handle(Event::Tick, 1 + SOAK_MS)), names(10..11));
}

#[test]
fn silent_devices_time_out_as_failures() {
    let mut policy = policy(WavePlan::Exponential { first: 1 });
    policy.min_finished = 1;
    let (mut rollout, _) = Rollout::resume(record(3, &[1, 2]), policy);
    rollout.handle(Event::Tick, 0);
    assert!(rollout.handle(Event::Tick, 59_999).is_empty());
    let actions = rollout.handle(Event::Tick, 60_000);
    let timed_out = Outcome { state: OutcomeState::TimedOut, reason: Some("no outcome within 60 s".into()) };
    assert!(actions.contains(&Action::Outcome { device: "d00".into(), outcome: timed_out }), "{actions:?}");
    assert!(matches!(rollout.record().end, Some(End::Aborted { .. })));
}

fn gated(gates: Gates, events: Vec<Event>) -> Result<(), String> {
    let mut policy = policy(WavePlan::Exponential { first: 1 });
    policy.gates = gates;
    let (mut rollout, _) = Rollout::resume(record(2, &[1, 1]), policy);
    rollout.handle(Event::Tick, 0);
    outcome(&mut rollout, "d00", committed(), 10);
    for event in events {
        rollout.handle(event, 20);
    }
    rollout.handle(Event::Tick, 10 + SOAK_MS);
    rollout.record().waves[0].gate.clone().expect("gated")
}

#[test]
fn gates_hold_on_error_rate_latency_and_alerts() {
    let gates = Gates { soak_ms: SOAK_MS, max_error_rate: Some(0.05), max_latency_ms: Some(50), allow_alerts: false };
    let health = |errors, frames, p95_ms| Event::Health {
        device: "d00".into(),
        sample: HealthSample { errors, frames, p95_ms },
    };
    assert_eq!(gated(gates, vec![health(0, 100, 10)]), Ok(()));
    // Over the soak: 10 errors in 100 new inputs, though few since start.
    let rate = gated(gates, vec![health(0, 1000, 10), health(10, 1100, 10)]).unwrap_err();
    assert_eq!(rate, "d00's error rate 0.1000 is over --max-error-rate 0.05");
    let slow = gated(gates, vec![health(0, 100, 80)]).unwrap_err();
    assert_eq!(slow, "d00's p95 latency 80 ms is over --max-latency-ms 50");
    assert_eq!(gated(gates, vec![]).unwrap_err(), "d00 sent no health report after it committed");
    let alert = |active| Event::Alert { device: "d00".into(), source: "wrist".into(), active };
    assert_eq!(gated(gates, vec![health(0, 100, 10), alert(true)]).unwrap_err(), "d00 has active alerts on wrist");
    assert_eq!(gated(gates, vec![health(0, 100, 10), alert(true), alert(false)]), Ok(()));
    let allowing = Gates { allow_alerts: true, max_error_rate: None, max_latency_ms: None, ..gates };
    assert_eq!(gated(allowing, vec![alert(true)]), Ok(()));
}

#[test]
fn a_failed_gate_aborts_and_says_which_wave() {
    let mut policy = policy(WavePlan::Exponential { first: 1 });
    policy.gates.max_latency_ms = Some(50);
    let (mut rollout, _) = Rollout::resume(record(2, &[1, 1]), policy);
    rollout.handle(Event::Tick, 0);
    outcome(&mut rollout, "d00", committed(), 10);
    let actions = rollout.handle(Event::Tick, 10 + SOAK_MS);
    let reason = "wave 0: d00 sent no health report after it committed".to_owned();
    assert!(actions.contains(&Action::Aborted { reason }), "{actions:?}");
    assert!(rollout.record().waves[1].order.is_none());
}

#[test]
fn pause_holds_the_next_wave_and_resume_releases_it() {
    let (mut rollout, _) = Rollout::resume(record(2, &[1, 1]), policy(WavePlan::Exponential { first: 1 }));
    rollout.handle(Event::Tick, 0);
    assert_eq!(rollout.handle(Event::Control(Control::Pause), 1), [Action::Paused, Action::Persist]);
    assert!(rollout.handle(Event::Control(Control::Pause), 2).is_empty(), "a repeated control changes nothing");
    outcome(&mut rollout, "d00", committed(), 3);
    assert!(announced(&rollout.handle(Event::Tick, 100_000)).is_empty());
    let actions = rollout.handle(Event::Control(Control::Resume), 100_001);
    assert_eq!(actions[..2], [Action::Resumed, Action::Persist]);
    assert_eq!(announced(&actions), names(1..2));
    let actions = rollout.handle(Event::Control(Control::Abort), 100_002);
    assert!(actions.contains(&Action::Aborted { reason: "aborted by the operator".into() }));
}

#[test]
fn a_resumed_rollout_repeats_the_same_order_and_never_announces_twice() {
    let policy = policy(WavePlan::Exponential { first: 1 });
    let (mut rollout, _) = Rollout::resume(record(3, &[1, 2]), policy);
    rollout.handle(Event::Tick, 0);
    outcome(&mut rollout, "d00", committed(), 1);
    let second = rollout.handle(Event::Tick, 1 + SOAK_MS);
    let order = rollout.record().waves[1].order.expect("stamped");
    assert_eq!(announced(&second), names(1..3));
    outcome(&mut rollout, "d01", committed(), 3_000);
    // The tool dies here; its successor reads the persisted record (through JSON, as from the broker).
    let persisted: Record = serde_json::from_str(&serde_json::to_string(rollout.record()).unwrap()).unwrap();
    let (mut resumed, actions) = Rollout::resume(persisted, policy);
    assert_eq!(actions, [Action::Announce { wave: 1, devices: names(2..3), order }]);
    // Nothing new is ever stamped for a device already announced: only outcomes and the end remain.
    let mut later = outcome(&mut resumed, "d02", committed(), 4_000);
    later.extend(resumed.handle(Event::Tick, 10_000));
    assert!(announced(&later).is_empty(), "{later:?}");
    assert!(later.contains(&Action::Finished));
    // A device's outcome is taken once, and only from a device that was announced.
    assert!(outcome(&mut resumed, "d02", failed(), 11_000).is_empty());
}

#[test]
fn outcomes_of_devices_not_announced_are_ignored() {
    let (mut rollout, _) = Rollout::resume(record(2, &[1, 1]), policy(WavePlan::Exponential { first: 1 }));
    rollout.handle(Event::Tick, 0);
    assert!(!outcome(&mut rollout, "d01", failed(), 1).iter().any(|a| matches!(a, Action::Outcome { .. })));
    assert!(!rollout.record().outcomes.contains_key("d01"));
}
