//! Signed orders: what is taken, what is refused, and the guard that remembers the last counter and each
//! model's version floor. An order is carried out only once its counter is on disk, so that a replay is
//! refused after a restart too.

use super::{Machine, report_error};
use crate::effects::{Action, Disk, Guard};
use protocol::error::{ErrorKind, ErrorStage};
use protocol::update::{Announcement, Order, UpdateTopics};

/// A taken order, waiting for its counter to be on disk.
pub(super) enum Pending {
    Announce(Box<Offer>),
    Rollback { model: Option<String>, order: u64 },
    FetchEvidence { candidate: String, order: u64 },
}

/// A signed announcement taken, with where it came from and the disk as it found it.
pub(super) struct Offer {
    pub base: UpdateTopics,
    pub announcement: Announcement,
    pub disk: Disk,
    pub order: u64,
}

impl Pending {
    fn stage(&self) -> ErrorStage {
        match self {
            Pending::Announce(_) => ErrorStage::Announce,
            Pending::Rollback { .. } | Pending::FetchEvidence { .. } => ErrorStage::Command,
        }
    }
}

impl Machine {
    /// Opens the signed order in `payload`, which arrived on the topic of `stage` at `wall_ms`. Returns it
    /// when the device may carry it out, with the guard that records it when its counter is new; otherwise
    /// publishes an error event and returns `None`: nothing else changes.
    pub(super) fn admit(
        &self,
        stage: ErrorStage,
        payload: &[u8],
        wall_ms: u64,
        out: &mut Vec<Action>,
    ) -> Option<(Order, Option<Guard>)> {
        let refuse = |out: &mut Vec<Action>, kind: ErrorKind, message: String| {
            report_error(out, stage, kind, format!("order refused: {message}"));
            None
        };
        let opened = match packaging::order::open(payload, &self.settings.trusted) {
            Ok(opened) => opened,
            Err(e) => return refuse(out, e.kind(), e.to_string()),
        };
        let order = opened.order;
        let topic_kind = if stage == ErrorStage::Command { "a command" } else { "an announcement" };
        if order.instruction.is_command() != (stage == ErrorStage::Command) {
            return refuse(out, ErrorKind::Malformed, format!("the order is not {topic_kind}"));
        }
        let device = &self.settings.device;
        if !order.target.addresses(device, &self.settings.config.groups) {
            let message = format!("the order is for {}, not device {device} or its groups", order.target);
            return refuse(out, ErrorKind::Misaddressed, message);
        }
        if wall_ms > order.expires_at_ms {
            let message = format!("the order expired at {} ms, it is {wall_ms} ms (Unix time)", order.expires_at_ms);
            return refuse(out, ErrorKind::Expired, message);
        }
        let last = self.guard.counter;
        match order.counter.cmp(&last) {
            std::cmp::Ordering::Less => {
                refuse(out, ErrorKind::Replayed, format!("counter {} is below the last taken, {last}", order.counter))
            }
            std::cmp::Ordering::Equal if opened.digest != self.guard.digest => {
                refuse(out, ErrorKind::Replayed, format!("counter {last} was taken by another order"))
            }
            // A command is carried out once.
            std::cmp::Ordering::Equal if stage == ErrorStage::Command => {
                refuse(out, ErrorKind::Replayed, format!("the command with counter {last} was carried out already"))
            }
            // The same announcement again: a pusher repeats it until the device answers.
            std::cmp::Ordering::Equal => Some((order, None)),
            std::cmp::Ordering::Greater => {
                let renewed = Guard { counter: order.counter, digest: opened.digest, ..self.guard.clone() };
                Some((order, Some(renewed)))
            }
        }
    }

    /// Carries out `pending` at once if its counter is already recorded, else once `renewed` is on disk.
    pub(super) fn carry_out(&mut self, renewed: Option<Guard>, pending: Pending, out: &mut Vec<Action>) {
        match renewed {
            Some(guard) => {
                out.push(Action::SaveGuard(guard.clone()));
                self.pending = Some((guard, pending));
            }
            None => self.dispatch(pending, out),
        }
    }

    pub(super) fn on_guard_saved(&mut self, result: Result<(), String>, out: &mut Vec<Action>) {
        let Some((guard, pending)) = self.pending.take() else {
            // A floor: the commit or rollback stands; the floor on disk is the older one until the next save.
            if let Err(e) = result {
                log::warn!("Saving the version floor failed: {e}.");
            }
            return;
        };
        match result {
            Ok(()) => {
                self.guard = guard;
                self.dispatch(pending, out);
            }
            Err(e) => {
                let message = format!("order not carried out: recording its counter failed: {e}");
                report_error(out, pending.stage(), ErrorKind::Io, message);
            }
        }
    }

    fn dispatch(&mut self, pending: Pending, out: &mut Vec<Action>) {
        match pending {
            Pending::Announce(offer) => {
                let Offer { base, announcement, disk, order } = *offer;
                self.take_announcement(&base, announcement, disk, order, out);
            }
            Pending::Rollback { model, order } => self.roll_back(model, order, out),
            // Independent of any update in progress: it only reads what the monitors kept.
            Pending::FetchEvidence { candidate, order } => out.push(Action::PublishEvidence { candidate, order }),
        }
    }

    /// Records `version` as the floor of model `model`.
    pub(super) fn set_floor(&mut self, model: String, version: String, out: &mut Vec<Action>) {
        self.guard.floors.insert(model, version);
        out.push(Action::SaveGuard(self.guard.clone()));
    }
}
