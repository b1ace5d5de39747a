//! The ledger: what every routed workload holds of each venue's resources, day by day.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::Day;

/// What one placed or booked workload holds of a venue, from a day on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// The venue.
    pub venue: String,
    /// The first day it is held.
    pub from: Day,
    /// The day it is released (exclusive); `None`: held until it is unrouted.
    #[serde(default)]
    pub until: Option<Day>,
    /// vCPUs.
    pub vcpus: u64,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// The subnet its machines take addresses from.
    #[serde(default)]
    pub subnet: Option<String>,
    /// IP addresses.
    pub ips: u64,
    /// GiB per datastore.
    #[serde(default)]
    pub datastores: Vec<(String, u64)>,
    /// Placed by force, over capacity.
    #[serde(default)]
    pub forced: bool,
}

/// One resource of a venue.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Resource {
    /// Its vCPU quota.
    Cpu,
    /// Its memory quota.
    Memory,
    /// One subnet's addresses.
    Subnet(String),
    /// One datastore.
    Datastore(String),
}

type Span = (Day, Option<Day>, i64);

/// Every hold, indexed by venue and resource.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    spans: HashMap<String, HashMap<Resource, Vec<Span>>>,
    forced: HashSet<String>,
}

impl Ledger {
    /// The ledger of `holds`.
    pub fn new<'a>(holds: impl IntoIterator<Item = &'a Hold>) -> Self {
        let mut ledger = Self::default();
        for hold in holds {
            ledger.add(hold);
        }
        ledger
    }

    /// Counts one more hold.
    pub fn add(&mut self, hold: &Hold) {
        let venue = self.spans.entry(hold.venue.clone()).or_default();
        let span = |amount: u64| (hold.from, hold.until, i64::try_from(amount).unwrap_or(i64::MAX));
        venue.entry(Resource::Cpu).or_default().push(span(hold.vcpus));
        venue.entry(Resource::Memory).or_default().push(span(hold.memory_mib));
        if let Some(subnet) = &hold.subnet {
            venue.entry(Resource::Subnet(subnet.clone())).or_default().push(span(hold.ips));
        }
        for (datastore, gib) in &hold.datastores {
            venue.entry(Resource::Datastore(datastore.clone())).or_default().push(span(*gib));
        }
        if hold.forced {
            self.forced.insert(hold.venue.clone());
        }
    }

    /// Whether a forced placement ever went to `venue`.
    pub fn forced(&self, venue: &str) -> bool {
        self.forced.contains(venue)
    }

    /// The most of `resource` held on any day from `from` on: what a workload arriving on
    /// `from` and staying must fit beside.
    pub fn peak(&self, venue: &str, resource: &Resource, from: Day) -> i64 {
        let Some(spans) = self.spans.get(venue).and_then(|v| v.get(resource)) else { return 0 };
        let mut events: Vec<(Day, i64)> = Vec::with_capacity(spans.len() * 2);
        for &(start, until, amount) in spans {
            let start = start.max(from);
            match until {
                Some(end) if end <= start => {}
                Some(end) => {
                    events.push((start, amount));
                    events.push((end, -amount));
                }
                None => events.push((start, amount)),
            }
        }
        // Releases on a day come before arrivals on it: `until` is exclusive.
        events.sort_unstable_by_key(|&(day, delta)| (day, delta));
        let (mut now, mut peak) = (0_i64, 0_i64);
        for (_, delta) in events {
            now = now.saturating_add(delta);
            peak = peak.max(now);
        }
        peak
    }

    /// How much of `resource` is held on `day`.
    pub fn held_on(&self, venue: &str, resource: &Resource, day: Day) -> i64 {
        self.spans.get(venue).and_then(|v| v.get(resource)).map_or(0, |spans| {
            spans
                .iter()
                .filter(|(from, until, _)| *from <= day && until.is_none_or(|u| day < u))
                .map(|(_, _, amount)| *amount)
                .sum()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(from: i64, until: Option<i64>, vcpus: u64) -> Hold {
        Hold {
            venue: "v".into(),
            from: Day(from),
            until: until.map(Day),
            vcpus,
            memory_mib: 0,
            subnet: None,
            ips: 0,
            datastores: vec![],
            forced: false,
        }
    }

    #[test]
    fn the_peak_counts_later_bookings_and_drops_released_ones() {
        let ledger = Ledger::new(&[hold(10, None, 4), hold(20, None, 8), hold(5, Some(12), 16), hold(12, Some(15), 2)]);
        // On day 10: 4 + 16; the 16 ends on day 12; from day 20 on: 4 + 8.
        assert_eq!(ledger.peak("v", &Resource::Cpu, Day(0)), 20);
        assert_eq!(ledger.peak("v", &Resource::Cpu, Day(12)), 12);
        assert_eq!(ledger.peak("v", &Resource::Cpu, Day(21)), 12);
        assert_eq!(ledger.held_on("v", &Resource::Cpu, Day(11)), 20);
        assert_eq!(ledger.held_on("v", &Resource::Cpu, Day(12)), 6);
        assert_eq!(ledger.peak("other", &Resource::Cpu, Day(0)), 0);
    }
}
