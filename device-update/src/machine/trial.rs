//! A candidate on probation: judged against the model it replaced, committed at the end of the window or rolled
//! back, and the rollback command for a committed model.

use super::{Machine, Phase, Recording, RecordingKind, Trial};
use crate::effects::{Action, Loaded};
use crate::judge::{ScoreSnapshot, Verdict, judge};
use protocol::update::{UpdateState, UpdateStatus};
use std::time::{Duration, Instant};

/// How often a candidate on probation is compared with the model it replaced.
pub(super) const JUDGE_INTERVAL: Duration = Duration::from_millis(100);

impl Machine {
    /// Asks for the candidate's scores when the next judgement is due, or the window has passed.
    pub(super) fn tick_trial(&mut self, now: Instant, out: &mut Vec<Action>) {
        let window = self.settings.config.probation.window();
        if let Phase::Probation(trial) = &mut self.phase
            && (now >= trial.next_judgement || now >= trial.started + window)
        {
            trial.next_judgement = now + JUDGE_INTERVAL;
            out.push(Action::SampleScores);
        }
    }

    /// Judges the candidate on probation: the first broken limit rolls it back; the end of the window commits it.
    pub(super) fn on_scores(&mut self, scores: &[ScoreSnapshot], now: Instant, out: &mut Vec<Action>) {
        let Phase::Probation(trial) = &self.phase else { return };
        let limits = &self.settings.config.probation;
        let failure =
            trial.baselines.iter().zip(scores).find_map(|(baseline, score)| match judge(limits, baseline, score) {
                Verdict::Unhealthy(reason) => Some(reason),
                Verdict::TooEarly | Verdict::Healthy => None,
            });
        if let Some(reason) = failure {
            // A verdict on the package: it is not tried again.
            let order = trial.order;
            return self.roll_back_trial(format!("probation failed: {reason}"), order, true, out);
        }
        if now.saturating_duration_since(trial.started) < limits.window() {
            return;
        }
        let judged: u64 = scores.iter().map(|score| score.frames).sum();
        let reason = (judged < limits.min_frames)
            .then(|| format!("committed after the probation window with only {judged} inputs to judge"));
        let Phase::Probation(trial) = std::mem::replace(&mut self.phase, Phase::Idle) else { return };
        let Trial { model, update_id, version, order, .. } = *trial;
        let status = self.status_for(model, UpdateState::Committed, Some(update_id), version.clone(), reason);
        out.push(Action::Commit { model });
        self.recording = Some(Recording {
            status: UpdateStatus { order, ..status },
            final_for_package: false,
            kind: RecordingKind::Commit,
            floor: Some((self.models[model].name.clone(), version)),
        });
    }

    /// Gives the workers back the pipelines the trial replaced; `order` is the order the status answers.
    pub(super) fn roll_back_trial(
        &mut self,
        reason: String,
        order: Option<u64>,
        final_for_package: bool,
        out: &mut Vec<Action>,
    ) {
        let Phase::Probation(trial) = std::mem::replace(&mut self.phase, Phase::Idle) else { return };
        let Trial { model, update_id, version, previous_version, previous_providers, .. } = *trial;
        out.push(Action::SwapBack { model });
        let served = &mut self.models[model];
        served.running_version = previous_version;
        for (worker, provider) in served.workers.iter_mut().zip(previous_providers) {
            worker.provider = provider;
        }
        let status = self.status_for(model, UpdateState::RolledBack, Some(update_id), version, Some(reason));
        let status = UpdateStatus { order, ..status };
        self.record_rollback(model, status, final_for_package, None, out);
    }

    /// Records the rollback in the slots of `model`, then `status`; `floor` is the version floor it leaves.
    fn record_rollback(
        &mut self,
        model: usize,
        status: UpdateStatus,
        final_for_package: bool,
        floor: Option<(String, String)>,
        out: &mut Vec<Action>,
    ) {
        out.push(Action::RecordRollback { model });
        self.recording = Some(Recording { status, final_for_package, kind: RecordingKind::Rollback, floor });
    }

    pub(super) fn on_slots_written(&mut self, result: Result<(), String>, out: &mut Vec<Action>) {
        let Some(Recording { mut status, final_for_package, kind, floor }) = self.recording.take() else { return };
        if let (Ok(()), Some((model, version))) = (&result, floor) {
            self.set_floor(model, version, out);
        }
        match (kind, result) {
            (RecordingKind::Commit, result) => {
                if let Err(e) = result {
                    status.state = UpdateState::Failed;
                    status.reason = Some(format!("recording the commit: {e}; the next start rolls back"));
                }
                log::info!(version = status.version.as_str(); "Update committed.");
            }
            (RecordingKind::Rollback, result) => {
                if let Err(e) = result {
                    status.state = UpdateState::Failed;
                    let reason = status.reason.take().unwrap_or_default();
                    status.reason = Some(format!("{reason}; recording the rollback failed: {e}"));
                }
                let reason = status.reason.as_deref().unwrap_or_default();
                log::warn!(model = status.model.as_str(); "Rolled back: {reason}.");
            }
        }
        self.publish(status, final_for_package, out);
    }

    pub(super) fn on_previous_loaded(&mut self, model: usize, result: Result<Loaded, String>, out: &mut Vec<Action>) {
        let order = self.commanded.take();
        let Some(served) = self.models.get_mut(model) else { return };
        let loaded = match result {
            Ok(loaded) => loaded,
            Err(reason) => {
                let version = served.running_version.clone();
                let reason = Some(format!("rollback refused: {reason}"));
                let status = self.status_for(model, UpdateState::Rejected, None, version, reason);
                return out.push(Action::PublishStatus(UpdateStatus { order, ..status }));
            }
        };
        let from = std::mem::replace(&mut served.running_version, loaded.version.clone());
        for (worker, provider) in served.workers.iter_mut().zip(loaded.providers) {
            worker.provider = provider;
        }
        let update_id = served.slot_update.as_ref().map(|(id, _)| id.clone());
        // The signed command authorised the version it returns to: the floor comes down to it.
        let floor = Some((served.name.clone(), loaded.version));
        let status =
            self.status_for(model, UpdateState::RolledBack, update_id, from, Some("rollback requested".into()));
        // The operator's choice, not a verdict on the package: it may be pushed again.
        self.record_rollback(model, UpdateStatus { order, ..status }, false, floor, out);
    }
}
