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

/// One resource of a venue (subnets and datastores by a borrowed name: a lookup copies nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource<'a> {
    /// Its vCPU quota.
    Cpu,
    /// Its memory quota.
    Memory,
    /// One subnet's addresses.
    Subnet(&'a str),
    /// One datastore.
    Datastore(&'a str),
}

type Span = (Day, Option<Day>, i64);

/// FNV-1a: venue, subnet and datastore names are short, and the ledger hashes them once per
/// hold; SipHash's resistance to chosen keys buys nothing for names from configuration.
#[derive(Default)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
        self.0 = h;
    }
}

type Names<V> = HashMap<String, V, std::hash::BuildHasherDefault<Fnv>>;

/// What is held of one resource: the spans, and the sum of those without an end (when every
/// span is open-ended, as placements are until unrouted, that sum is the peak of every day
/// from any day on: no sweep needed).
#[derive(Debug, Clone, Default)]
struct Held {
    spans: Vec<Span>,
    open_total: i64,
    bounded: usize,
}

impl Held {
    fn push(&mut self, from: Day, until: Option<Day>, amount: u64) {
        let amount = i64::try_from(amount).unwrap_or(i64::MAX);
        self.spans.push((from, until, amount));
        match until {
            None => self.open_total = self.open_total.saturating_add(amount),
            Some(_) => self.bounded += 1,
        }
    }
}

/// What is held of one venue's resources.
#[derive(Debug, Clone, Default)]
struct VenueHeld {
    cpu: Held,
    memory: Held,
    subnets: Names<Held>,
    datastores: Names<Held>,
}

impl VenueHeld {
    fn of(&self, resource: &Resource<'_>) -> Option<&Held> {
        match *resource {
            Resource::Cpu => Some(&self.cpu),
            Resource::Memory => Some(&self.memory),
            Resource::Subnet(s) => self.subnets.get(s),
            Resource::Datastore(d) => self.datastores.get(d),
        }
    }
}

/// `f` on the entry of `key`, made when missing (the key is copied only then).
fn with<V: Default>(map: &mut Names<V>, key: &str, f: impl FnOnce(&mut V)) {
    match map.get_mut(key) {
        Some(v) => f(v),
        None => f(map.entry(key.to_owned()).or_default()),
    }
}

/// Every hold, indexed by venue and resource; optionally over a shared base ledger (what a
/// process already knows is held), so that a decision adds its own holds without copying it.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    venues: Names<VenueHeld>,
    forced: HashSet<String>,
    base: Option<std::sync::Arc<Ledger>>,
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

    /// An empty ledger over `base`: its figures are the base's plus its own. Peaks add up,
    /// which is exact for holds without an end and never less than the truth otherwise.
    pub fn over(base: std::sync::Arc<Ledger>) -> Self {
        Self { base: Some(base), ..Self::default() }
    }

    /// Counts one more hold.
    pub fn add(&mut self, hold: &Hold) {
        let (from, until) = (hold.from, hold.until);
        with(&mut self.venues, &hold.venue, |v| {
            v.cpu.push(from, until, hold.vcpus);
            v.memory.push(from, until, hold.memory_mib);
            if let Some(subnet) = &hold.subnet {
                with(&mut v.subnets, subnet, |h| h.push(from, until, hold.ips));
            }
            for (datastore, gib) in &hold.datastores {
                with(&mut v.datastores, datastore, |h| h.push(from, until, *gib));
            }
        });
        if hold.forced && !self.forced.contains(&hold.venue) {
            self.forced.insert(hold.venue.clone());
        }
    }

    /// Whether a forced placement ever went to `venue`.
    pub fn forced(&self, venue: &str) -> bool {
        self.forced.contains(venue) || self.base.as_ref().is_some_and(|b| b.forced(venue))
    }

    /// The most of `resource` held on any day from `from` on: what a workload arriving on
    /// `from` and staying must fit beside.
    pub fn peak(&self, venue: &str, resource: &Resource<'_>, from: Day) -> i64 {
        let below = self.base.as_ref().map_or(0, |b| b.peak(venue, resource, from));
        below.saturating_add(self.own_peak(venue, resource, from))
    }

    fn own_peak(&self, venue: &str, resource: &Resource<'_>, from: Day) -> i64 {
        let Some(held) = self.venues.get(venue).and_then(|v| v.of(resource)) else { return 0 };
        if held.bounded == 0 {
            // Every span stays once started: on the day the last one starts, all are held.
            return held.open_total;
        }
        let mut events: Vec<(Day, i64)> = Vec::with_capacity(held.spans.len() * 2);
        for &(start, until, amount) in &held.spans {
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
    pub fn held_on(&self, venue: &str, resource: &Resource<'_>, day: Day) -> i64 {
        let below = self.base.as_ref().map_or(0, |b| b.held_on(venue, resource, day));
        below
            + self.venues.get(venue).and_then(|v| v.of(resource)).map_or(0, |held| {
                held.spans
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

    #[test]
    fn a_ledger_over_a_base_adds_its_own_holds_to_the_bases() {
        let base = std::sync::Arc::new(Ledger::new(&[hold(10, None, 4)]));
        let mut top = Ledger::over(base.clone());
        top.add(&Hold { forced: true, ..hold(20, None, 8) });
        assert_eq!(top.peak("v", &Resource::Cpu, Day(0)), 12);
        assert_eq!(top.held_on("v", &Resource::Cpu, Day(15)), 4);
        assert!(top.forced("v") && !base.forced("v"));
        assert_eq!(base.peak("v", &Resource::Cpu, Day(0)), 4, "the base is not changed");
    }
}
