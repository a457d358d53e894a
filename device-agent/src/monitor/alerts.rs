//! The alert state machine of one source: readings of each evaluated window in, raises and clears out. Pure:
//! no IO, time given by the caller (as `rumqttc`'s `state.rs` is kept apart from its event loop).
//!
//! Hysteresis: an alert is raised after `raise_after` consecutive bad windows of its subject and cleared after
//! `clear_after` consecutive good ones; a subject with no reading in a window (a class that stopped
//! dominating) counts as good. Its severity is the band of the window that raised it; an active `warn` whose
//! window reaches the `alert` band escalates (announced as a new raise, with the value and threshold of that
//! window), and never de-escalates before it clears. The no-input alert is not windowed: its idle time is its
//! hysteresis, so it is raised and cleared at once ([`AlertMachine::set_immediate`]).

use protocol::wire::{Alert, AlertChange, AlertKind, Severity};

/// What one window says about one subject.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub kind: AlertKind,
    /// The feature or the signal (`inference_p95`, the dominating class's label...).
    pub subject: String,
    /// The statistic compared (`psi`, `ks_p_value`, `p95_us`...).
    pub statistic: &'static str,
    pub value: f32,
    /// The threshold it was compared with, after any correction.
    pub threshold: f32,
    /// `Some` when the window is bad for this subject, with how bad.
    pub bad: Option<Severity>,
}

/// One raise or clear, to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub change: AlertChange,
    pub alert: Alert,
    /// A raise that escalates an active `warn` to `alert` (not a new alert).
    pub escalation: bool,
}

impl Change {
    fn raised(alert: Alert) -> Change {
        Change { change: AlertChange::Raised, alert, escalation: false }
    }

    fn cleared(alert: Alert) -> Change {
        Change { change: AlertChange::Cleared, alert, escalation: false }
    }
}

/// The windows seen of one subject, and its alert while active.
#[derive(Debug)]
struct Track {
    kind: AlertKind,
    subject: String,
    bad_streak: u32,
    good_streak: u32,
    active: Option<Alert>,
}

/// Every subject's track, and the immediate (no-input) alerts.
#[derive(Debug)]
pub struct AlertMachine {
    raise_after: u32,
    clear_after: u32,
    tracks: Vec<Track>,
    immediate: Vec<Alert>,
}

impl AlertMachine {
    pub fn new(raise_after: u32, clear_after: u32) -> AlertMachine {
        AlertMachine { raise_after, clear_after, tracks: Vec::new(), immediate: Vec::new() }
    }

    /// Takes one evaluated window's readings at `now_ms`; returns the raises and clears, in reading order
    /// (clears of subjects without a reading last).
    pub fn window(&mut self, readings: Vec<Reading>, now_ms: u64) -> Vec<Change> {
        let mut changes = Vec::new();
        let mut read = vec![false; self.tracks.len()];
        for reading in readings {
            let index = match self.tracks.iter().position(|t| t.kind == reading.kind && t.subject == reading.subject) {
                Some(index) => index,
                None => {
                    self.tracks.push(Track {
                        kind: reading.kind,
                        subject: reading.subject.clone(),
                        bad_streak: 0,
                        good_streak: 0,
                        active: None,
                    });
                    read.push(false);
                    self.tracks.len() - 1
                }
            };
            read[index] = true;
            changes.extend(self.tracks[index].step(&reading, self.raise_after, self.clear_after, now_ms));
        }
        for (track, _) in self.tracks.iter_mut().zip(read).filter(|(_, read)| !read) {
            changes.extend(track.unread(self.clear_after));
        }
        // Tracks that are quiet and inactive carry nothing worth keeping.
        self.tracks.retain(|track| track.active.is_some() || track.bad_streak > 0);
        changes
    }

    /// Raises `reading`'s alert at once when it is bad and not active, clears it at once when it is good and
    /// active.
    pub fn set_immediate(&mut self, reading: Reading, now_ms: u64) -> Option<Change> {
        let position = self.immediate.iter().position(|a| a.kind == reading.kind && a.subject == reading.subject);
        match (reading.bad, position) {
            (Some(severity), None) => {
                let alert = alert(&reading, severity, now_ms);
                self.immediate.push(alert.clone());
                Some(Change::raised(alert))
            }
            (None, Some(index)) => {
                let mut alert = self.immediate.remove(index);
                (alert.value, alert.threshold) = (reading.value, reading.threshold);
                Some(Change::cleared(alert))
            }
            _ => None,
        }
    }

    /// Clears everything (a new model began serving): the clears of what was active.
    pub fn reset(&mut self) -> Vec<Change> {
        let windowed = self.tracks.drain(..).filter_map(|track| track.active);
        windowed.chain(self.immediate.drain(..)).map(Change::cleared).collect()
    }

    /// Bytes held on the heap: room for the tracks, the subjects of the live ones and the active alerts.
    #[cfg(test)]
    pub fn heap_bytes(&self) -> usize {
        let alert = |alert: &Alert| alert.subject.capacity() + alert.statistic.capacity();
        let track = |track: &Track| track.subject.capacity() + track.active.as_ref().map_or(0, alert);
        self.tracks.capacity() * size_of::<Track>()
            + self.tracks.iter().map(track).sum::<usize>()
            + self.immediate.capacity() * size_of::<Alert>()
            + self.immediate.iter().map(alert).sum::<usize>()
    }

    /// What is alerting now, windowed alerts first.
    #[cfg(test)]
    pub fn active(&self) -> Vec<Alert> {
        self.tracks.iter().filter_map(|track| track.active.clone()).chain(self.immediate.iter().cloned()).collect()
    }
}

impl Track {
    fn step(&mut self, reading: &Reading, raise_after: u32, clear_after: u32, now_ms: u64) -> Option<Change> {
        let Some(severity) = reading.bad else {
            self.bad_streak = 0;
            self.good_streak += 1;
            if self.good_streak < clear_after {
                return None;
            }
            let mut cleared = self.active.take()?;
            (cleared.value, cleared.threshold) = (reading.value, reading.threshold);
            cleared.statistic = reading.statistic.to_owned();
            return Some(Change::cleared(cleared));
        };
        self.good_streak = 0;
        self.bad_streak += 1;
        match &mut self.active {
            None if self.bad_streak >= raise_after => {
                let raised = alert(reading, severity, now_ms);
                self.active = Some(raised.clone());
                Some(Change::raised(raised))
            }
            Some(active) if active.severity < severity => {
                let since_ms = active.since_ms;
                *active = Alert { since_ms, ..alert(reading, severity, now_ms) };
                Some(Change { change: AlertChange::Raised, alert: active.clone(), escalation: true })
            }
            _ => None,
        }
    }

    /// A window without a reading of this subject: good.
    fn unread(&mut self, clear_after: u32) -> Option<Change> {
        self.bad_streak = 0;
        self.good_streak += 1;
        if self.good_streak < clear_after {
            return None;
        }
        self.active.take().map(Change::cleared)
    }
}

fn alert(reading: &Reading, severity: Severity, now_ms: u64) -> Alert {
    Alert {
        kind: reading.kind,
        subject: reading.subject.clone(),
        statistic: reading.statistic.to_owned(),
        value: reading.value,
        threshold: reading.threshold,
        severity,
        since_ms: now_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn psi(subject: &str, value: f32) -> Reading {
        let bad = if value >= 0.25 {
            Some(Severity::Alert)
        } else if value >= 0.1 {
            Some(Severity::Warn)
        } else {
            None
        };
        Reading { kind: AlertKind::Drift, subject: subject.into(), statistic: "psi", value, threshold: 0.1, bad }
    }

    fn run(machine: &mut AlertMachine, values: &[f32]) -> Vec<Vec<Change>> {
        values
            .iter()
            .enumerate()
            .map(|(at, value)| machine.window(vec![psi("acc_x.mean", *value)], at as u64))
            .collect()
    }

    #[test]
    fn raised_after_k_bad_windows_and_cleared_after_k_good_ones() {
        let mut machine = AlertMachine::new(3, 2);
        let changes = run(&mut machine, &[0.5, 0.5, 0.01, 0.5, 0.5, 0.5, 0.01, 0.5, 0.01, 0.01]);
        let at = |window: usize| changes[window].iter().map(|change| change.change).collect::<Vec<_>>();
        // A good window in between restarts the count.
        assert!((0..5).all(|window| at(window).is_empty()));
        assert_eq!(at(5), [AlertChange::Raised]);
        let raised = &changes[5][0].alert;
        assert_eq!((raised.subject.as_str(), raised.statistic.as_str()), ("acc_x.mean", "psi"));
        assert_eq!((raised.value, raised.severity, raised.since_ms), (0.5, Severity::Alert, 5));
        // One good window between bad ones does not clear it.
        assert!(at(6).is_empty() && at(7).is_empty() && at(8).is_empty());
        assert_eq!(at(9), [AlertChange::Cleared]);
        let cleared = &changes[9][0].alert;
        assert_eq!((cleared.value, cleared.since_ms), (0.01, 5));
        assert!(machine.active().is_empty());
    }

    #[test]
    fn a_warn_escalates_to_alert_in_the_alert_band() {
        let mut machine = AlertMachine::new(2, 2);
        let changes = run(&mut machine, &[0.3, 0.15, 0.3, 0.3, 0.15]);
        assert!(changes[0].is_empty());
        assert_eq!((changes[1][0].alert.severity, changes[1][0].escalation), (Severity::Warn, false));
        assert_eq!(changes[2].len(), 1);
        let escalated = &changes[2][0];
        assert_eq!((escalated.change, escalated.escalation), (AlertChange::Raised, true));
        assert_eq!((escalated.alert.severity, escalated.alert.since_ms), (Severity::Alert, 1));
        assert_eq!((escalated.alert.value, escalated.alert.threshold), (0.3, 0.1));
        assert!(changes[3].is_empty());
        // Back in the warn band: still bad, still `alert` until it clears.
        assert!(changes[4].is_empty());
        assert_eq!(machine.active()[0].severity, Severity::Alert);
    }

    #[test]
    fn a_subject_without_a_reading_counts_as_good() {
        let mut machine = AlertMachine::new(1, 2);
        let dominant = |label: &str| Reading {
            kind: AlertKind::ClassDominance,
            subject: label.into(),
            statistic: "class_share",
            value: 0.95,
            threshold: 0.9,
            bad: Some(Severity::Alert),
        };
        assert_eq!(machine.window(vec![dominant("walking")], 0).len(), 1);
        assert!(machine.window(vec![], 1).is_empty());
        let cleared = machine.window(vec![], 2);
        assert_eq!((cleared[0].change, cleared[0].alert.subject.as_str()), (AlertChange::Cleared, "walking"));
    }

    #[test]
    fn reset_clears_everything_active() {
        let mut machine = AlertMachine::new(1, 3);
        machine.window(vec![psi("a", 0.5), psi("b", 0.5), psi("c", 0.0)], 0);
        let idle = Reading {
            kind: AlertKind::NoInput,
            subject: "input".into(),
            statistic: "idle_s",
            value: 30.0,
            threshold: 10.0,
            bad: Some(Severity::Alert),
        };
        assert!(machine.set_immediate(idle, 0).is_some());
        let cleared = machine.reset();
        let subjects: Vec<&str> = cleared.iter().map(|change| change.alert.subject.as_str()).collect();
        assert_eq!(subjects, ["a", "b", "input"]);
        assert!(cleared.iter().all(|change| change.change == AlertChange::Cleared));
        assert!(machine.active().is_empty());
        assert!(machine.window(vec![psi("a", 0.5)], 1).len() == 1, "a fresh start needs only raise_after windows");
    }

    #[test]
    fn immediate_alerts_raise_and_clear_at_once() {
        let mut machine = AlertMachine::new(3, 3);
        let idle = |value: f32| Reading {
            kind: AlertKind::NoInput,
            subject: "input".into(),
            statistic: "idle_s",
            value,
            threshold: 10.0,
            bad: (value >= 10.0).then_some(Severity::Alert),
        };
        assert_eq!(machine.set_immediate(idle(5.0), 0), None);
        assert_eq!(machine.set_immediate(idle(10.0), 1).map(|change| change.change), Some(AlertChange::Raised));
        assert_eq!(machine.set_immediate(idle(12.0), 2), None, "raised once");
        // Windows do not touch it.
        assert!(machine.window(vec![], 3).is_empty());
        let cleared = machine.set_immediate(idle(0.0), 4).expect("cleared");
        assert_eq!((cleared.change, cleared.alert.value, cleared.alert.since_ms), (AlertChange::Cleared, 0.0, 1));
    }
}
