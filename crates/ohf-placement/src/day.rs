//! Days of the placement timeline: UTC calendar days counted from the Unix epoch.

use serde::{Deserialize, Serialize};

const MILLIS_PER_DAY: i64 = 86_400_000;

/// A UTC calendar day; the time of day is ignored, as the seed asks for expected dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Day(pub i64);

impl Day {
    /// The day that holds an instant given in milliseconds since the Unix epoch.
    pub fn of_millis(millis: i64) -> Self {
        Self(millis.div_euclid(MILLIS_PER_DAY))
    }

    /// Midnight UTC at the start of this day, in milliseconds since the Unix epoch.
    pub fn start_millis(self) -> i64 {
        self.0.saturating_mul(MILLIS_PER_DAY)
    }

    /// The day `days` later.
    pub fn plus(self, days: i64) -> Self {
        Self(self.0.saturating_add(days))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_of_day_is_ignored_and_days_before_the_epoch_round_down() {
        assert_eq!(Day::of_millis(1_458_518_806_000), Day::of_millis(1_458_518_400_000));
        assert_eq!(Day::of_millis(1_458_518_806_000).start_millis(), 1_458_518_400_000);
        assert_eq!(Day::of_millis(-1), Day(-1));
        assert_eq!(Day(3).plus(2), Day(5));
    }
}
