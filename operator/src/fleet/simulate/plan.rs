//! The pure parts of the simulator: which devices it runs, which of them fail their self-test, and the tally of
//! update outcomes it prints at exit.

use protocol::update::UpdateState;
use std::collections::BTreeMap;

/// The simulated devices: ids, and which fail their simulated self-test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetPlan {
    pub id_prefix: String,
    pub first_index: u32,
    pub devices: u32,
    /// Device ids named by `--fail-self-test`.
    pub failing: Vec<String>,
    /// `--fail-self-test-every K`: the devices whose index is `K-1 mod K`.
    pub fail_every: Option<u32>,
}

impl FleetPlan {
    /// The indices of the devices, in the order they connect.
    pub fn indices(&self) -> impl Iterator<Item = u32> + use<> {
        self.first_index..self.first_index.saturating_add(self.devices)
    }

    /// Device `index`'s id: the prefix and the index zero-padded to 4 digits (`sim-0007`).
    pub fn device_id(&self, index: u32) -> String {
        format!("{}{index:04}", self.id_prefix)
    }

    /// Whether device `index` fails its self-test.
    pub fn fails_self_test(&self, index: u32) -> bool {
        self.fail_every.is_some_and(|every| every > 0 && index % every == every - 1)
            || self.failing.contains(&self.device_id(index))
    }

    /// Ids named by `--fail-self-test` that are not in the fleet: most likely a typo, refused.
    pub fn unknown_failing(&self) -> Vec<&str> {
        let ids: Vec<String> = self.indices().map(|index| self.device_id(index)).collect();
        self.failing.iter().filter(|id| !ids.contains(id)).map(String::as_str).collect()
    }
}

/// Update outcomes by state, for the summary.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    by_state: BTreeMap<&'static str, u64>,
}

impl Tally {
    pub fn count(&mut self, state: UpdateState) {
        *self.by_state.entry(state.as_str()).or_default() += 1;
    }

    pub fn by_state(&self) -> &BTreeMap<&'static str, u64> {
        &self.by_state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(first_index: u32, devices: u32) -> FleetPlan {
        FleetPlan { id_prefix: "sim-".into(), first_index, devices, failing: Vec::new(), fail_every: None }
    }

    #[test]
    fn ids_are_the_prefix_and_a_four_digit_index() {
        let plan = fleet(7, 3);
        let ids: Vec<String> = plan.indices().map(|index| plan.device_id(index)).collect();
        assert_eq!(ids, ["sim-0007", "sim-0008", "sim-0009"]);
        assert_eq!(plan.device_id(12345), "sim-12345", "wider indices are not cut");
    }

    #[test]
    fn every_kth_device_and_the_named_ones_fail_their_self_test() {
        let plan = FleetPlan { fail_every: Some(5), failing: vec!["sim-0002".into()], ..fleet(0, 12) };
        let failing: Vec<u32> = plan.indices().filter(|&index| plan.fails_self_test(index)).collect();
        assert_eq!(failing, [2, 4, 9]);
        let every = FleetPlan { fail_every: Some(1), ..fleet(0, 3) };
        assert!(every.indices().all(|index| every.fails_self_test(index)), "K = 1 fails them all");
    }

    #[test]
    fn failing_ids_outside_the_fleet_are_reported() {
        let plan = FleetPlan { failing: vec!["sim-0001".into(), "sim-0100".into(), "cam-01".into()], ..fleet(0, 10) };
        assert_eq!(plan.unknown_failing(), ["sim-0100", "cam-01"]);
    }

    #[test]
    fn outcomes_are_counted_by_state() {
        let mut tally = Tally::default();
        for state in [UpdateState::Committed, UpdateState::Rejected, UpdateState::Committed] {
            tally.count(state);
        }
        assert_eq!(
            tally.by_state().iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(),
            [("committed", 2), ("rejected", 1)]
        );
    }
}
