//! The spool's byte budgets, apart from IO: what must go before a record fits.
//!
//! Each class has its own budget, and all of them share a total. A class over its own budget loses its own
//! oldest segment; over the total, the oldest health goes first, then the oldest predictions, and error events
//! last (they are rare and say what went wrong).

use super::Class;

/// Byte budgets of the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Indexed by [`Class::index`].
    pub per_class: [u64; Class::ALL.len()],
    pub total: u64,
}

/// What appending `need` bytes to a class takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    Fits,
    /// The oldest segment of this class must go first (then ask again).
    DropOldest(Class),
    /// Larger than a budget on its own: it can never fit.
    Never,
}

/// Who gives way when the total is over, first to last.
const TOTAL_VICTIMS: [Class; 3] = [Class::Health, Class::Predictions, Class::Errors];

impl Limits {
    /// Where `need` more bytes of `class` go, with the classes holding `sizes` bytes now.
    pub fn room(&self, sizes: [u64; Class::ALL.len()], class: Class, need: u64) -> Room {
        let own_limit = self.per_class[class.index()];
        if need > own_limit || need > self.total {
            return Room::Never;
        }
        if sizes[class.index()] + need > own_limit {
            return Room::DropOldest(class);
        }
        if sizes.iter().sum::<u64>() + need > self.total {
            // Some class holds bytes, since `need` alone fits the total.
            return TOTAL_VICTIMS
                .into_iter()
                .find(|victim| sizes[victim.index()] > 0)
                .map_or(Room::Never, Room::DropOldest);
        }
        Room::Fits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// predictions, errors, health
    fn sizes(predictions: u64, errors: u64, health: u64) -> [u64; 3] {
        let mut sizes = [0; 3];
        sizes[Class::Predictions.index()] = predictions;
        sizes[Class::Errors.index()] = errors;
        sizes[Class::Health.index()] = health;
        sizes
    }

    fn limits() -> Limits {
        Limits { per_class: sizes(60, 30, 30), total: 100 }
    }

    #[test]
    fn a_class_over_its_own_budget_drops_its_own_oldest() {
        assert_eq!(limits().room(sizes(50, 0, 0), Class::Predictions, 10), Room::Fits);
        assert_eq!(limits().room(sizes(51, 0, 30), Class::Predictions, 10), Room::DropOldest(Class::Predictions));
        assert_eq!(limits().room(sizes(0, 25, 30), Class::Errors, 6), Room::DropOldest(Class::Errors));
    }

    #[test]
    fn over_the_total_health_goes_first_then_predictions_then_errors() {
        assert_eq!(limits().room(sizes(50, 25, 20), Class::Errors, 5), Room::Fits);
        assert_eq!(limits().room(sizes(50, 20, 25), Class::Errors, 6), Room::DropOldest(Class::Health));
        assert_eq!(limits().room(sizes(50, 25, 20), Class::Predictions, 6), Room::DropOldest(Class::Health));
        assert_eq!(limits().room(sizes(55, 30, 0), Class::Health, 20), Room::DropOldest(Class::Predictions));
        let tight = Limits { total: 40, ..limits() };
        assert_eq!(tight.room(sizes(0, 30, 0), Class::Predictions, 20), Room::DropOldest(Class::Errors));
    }

    #[test]
    fn a_record_larger_than_a_budget_never_fits() {
        assert_eq!(limits().room(sizes(0, 0, 0), Class::Health, 31), Room::Never);
        assert_eq!(Limits { total: 20, ..limits() }.room(sizes(0, 0, 0), Class::Health, 21), Room::Never);
    }
}
