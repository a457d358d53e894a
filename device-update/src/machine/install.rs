//! Installing a complete package: checked (sha256, signature, version), unpacked into the candidate slot,
//! built for each worker, self-tested, activated and swapped in, each step an action whose outcome comes back.
//! Any refusal leaves the running model serving.

use super::trial::JUDGE_INTERVAL;
use super::{Install, Machine, Phase, Trial};
use crate::effects::{Action, Candidate, Refusal};
use crate::judge::ScoreSnapshot;
use protocol::update::{UpdateState, UpdateStatus};
use std::time::Instant;

impl Machine {
    pub(super) fn on_package_checked(&mut self, result: Result<String, Refusal>, out: &mut Vec<Action>) {
        let Phase::Installing(install) = &self.phase else { return };
        // Signature and version first: an unsigned or older package must not cost the candidate slot (which may
        // hold the rollback target).
        match result.and_then(|version| self.check_version(install.model, &version, install.announcement.rollback)) {
            Ok(()) => out.push(Action::Unpack { model: install.model }),
            Err(refusal) => self.refuse_install(refusal, out),
        }
    }

    pub(super) fn on_unpacked(&mut self, result: Result<Candidate, Refusal>, out: &mut Vec<Action>) {
        let Phase::Installing(install) = &self.phase else { return };
        let announcement = &install.announcement;
        let checked = result.and_then(|candidate| {
            if candidate.name != announcement.name || candidate.version != announcement.version {
                return Err(Refusal::rejected(format!(
                    "the announcement says {} {}, the package holds {} {}",
                    announcement.name, announcement.version, candidate.name, candidate.version
                )));
            }
            self.check_version(install.model, &announcement.version, announcement.rollback)?;
            Ok(candidate)
        });
        match checked {
            Ok(candidate) => {
                if let Phase::Installing(install) = &mut self.phase {
                    install.candidate = Some(candidate);
                }
                self.build_next(out);
            }
            Err(refusal) => self.refuse_install(refusal, out),
        }
    }

    /// Asks for the next worker's pipeline; once every worker has one, for the self-test.
    pub(super) fn build_next(&mut self, out: &mut Vec<Action>) {
        let Phase::Installing(install) = &mut self.phase else { return };
        let Some(candidate) = &install.candidate else { return };
        let workers = &self.models[install.model].workers;
        if let Some(worker) = workers.get(install.providers.len()) {
            if worker.takes_images != candidate.takes_images {
                let reason = format!("source {} cannot feed this model's kind of input", worker.source);
                return self.refuse_install(Refusal::rejected(reason), out);
            }
            return out.push(Action::BuildPipeline { model: install.model });
        }
        if !candidate.has_self_test {
            let reason = "the package has no golden self-test vectors (pack it with `model pack --self-test`)";
            return self.refuse_install(Refusal::rejected(reason), out);
        }
        install.status.state = UpdateState::SelfTesting;
        out.push(Action::PublishStatus(install.status.clone()));
        out.push(Action::SelfTest);
    }

    pub(super) fn on_pipeline_built(&mut self, result: Result<String, Refusal>, out: &mut Vec<Action>) {
        let Phase::Installing(install) = &mut self.phase else { return };
        let Some(worker) = self.models[install.model].workers.get(install.providers.len()) else { return };
        let require_same = self.settings.config.probation.require_same_provider;
        let checked = result.and_then(|provider| {
            if require_same && provider != worker.provider {
                return Err(Refusal::rejected(format!(
                    "the candidate would run on {provider}, the running model runs on {} \
                     (update.probation.require_same_provider)",
                    worker.provider
                )));
            }
            Ok(provider)
        });
        match checked {
            Ok(provider) => {
                install.providers.push(provider);
                self.build_next(out);
            }
            Err(refusal) => self.refuse_install(refusal, out),
        }
    }

    pub(super) fn on_self_tested(&mut self, result: Result<(), Refusal>, out: &mut Vec<Action>) {
        let Phase::Installing(install) = &self.phase else { return };
        if let Err(refusal) = result {
            return self.refuse_install(refusal, out);
        }
        let announcement = &install.announcement;
        out.push(Action::DiscardStaging);
        let (update_id, version) = (announcement.id.clone(), announcement.version.clone());
        out.push(Action::Activate { model: install.model, update_id, version });
    }

    /// Any refusal of a complete package leaves the running model serving.
    pub(super) fn refuse_install(&mut self, refusal: Refusal, out: &mut Vec<Action>) {
        let Phase::Installing(install) = std::mem::replace(&mut self.phase, Phase::Idle) else { return };
        let mut status = install.status;
        out.push(Action::DiscardStaging);
        out.push(Action::DropCandidate);
        log::warn!(update = install.announcement.id.as_str(); "Update refused: {}.", refusal.reason);
        // A refusal on the package's merits is final for it; a failure of this device (disk, I/O) is not.
        let final_for_package = refusal.state == UpdateState::Rejected;
        status.state = refusal.state;
        status.reason = Some(refusal.reason);
        self.publish(status, final_for_package, out);
    }

    pub(super) fn on_activated(&mut self, result: Result<(), String>, out: &mut Vec<Action>) {
        let Phase::Installing(install) = &self.phase else { return };
        let (model, id, version) =
            (install.model, install.announcement.id.clone(), install.announcement.version.clone());
        if let Err(e) = result {
            let order = install.status.order;
            self.phase = Phase::Idle;
            out.push(Action::DropCandidate);
            let reason = Some(format!("recording the candidate as active: {e}"));
            let status = self.status_for(model, UpdateState::Failed, Some(id), version, reason);
            return self.publish(UpdateStatus { order, ..status }, false, out);
        }
        self.models[model].slot_update = Some((id, version));
        out.push(Action::SwapIn { model });
    }

    pub(super) fn on_swapped_in(&mut self, baselines: Vec<ScoreSnapshot>, now: Instant, out: &mut Vec<Action>) {
        let Phase::Installing(install) = std::mem::replace(&mut self.phase, Phase::Idle) else { return };
        let Install { model, announcement, providers, status, .. } = *install;
        let order = status.order;
        let served = &mut self.models[model];
        let previous_version = std::mem::replace(&mut served.running_version, announcement.version.clone());
        let mut previous_providers = Vec::new();
        for (worker, provider) in served.workers.iter_mut().zip(providers) {
            previous_providers.push(std::mem::replace(&mut worker.provider, provider));
        }
        let (name, version) = (announcement.name.as_str(), announcement.version.as_str());
        log::info!(model = name, version; "Update active, on probation.");
        let (id, version) = (Some(announcement.id.clone()), announcement.version.clone());
        let status = self.status_for(model, UpdateState::Probation, id, version, None);
        self.publish(UpdateStatus { order, ..status }, false, out);
        self.phase = Phase::Probation(Box::new(Trial {
            model,
            update_id: announcement.id,
            version: announcement.version,
            order,
            started: now,
            next_judgement: now + JUDGE_INTERVAL,
            baselines,
            previous_version,
            previous_providers,
        }));
    }
}
