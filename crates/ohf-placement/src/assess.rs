//! The assessment of a venue for a workload: fit-for-purpose checks, capacity per sensor over
//! the workload's whole timeframe, cost, and the hosting score under a mode.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::ledger::{Ledger, Resource};
use crate::venue::{SensorType, Strategies, Strategy, Venue};
use crate::workload::Workload;

/// What the hosting score weighs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The venue with the most capacity left after the workload.
    #[default]
    CapacitySensitive,
    /// The cheapest venue that fits.
    CostSensitive,
    /// Both, weighed equally.
    CostAndCapacity,
}

impl Mode {
    /// The seed's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CapacitySensitive => "capacity_sensitive",
            Self::CostSensitive => "cost_sensitive",
            Self::CostAndCapacity => "cost_and_capacity",
        }
    }

    /// A mode by its seed name.
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "capacity_sensitive" => Some(Self::CapacitySensitive),
            "cost_sensitive" => Some(Self::CostSensitive),
            "cost_and_capacity" => Some(Self::CostAndCapacity),
            _ => None,
        }
    }
}

/// One fit-for-purpose check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// What was checked.
    pub name: std::borrow::Cow<'static, str>,
    /// PASS or not.
    pub pass: bool,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Check {
    fn new(name: &'static str, failure: Option<String>) -> Self {
        Self { name: std::borrow::Cow::Borrowed(name), pass: failure.is_none(), reason: failure }
    }
}

/// One sensor of the chosen resources, over the workload's timeframe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SensorFigure {
    /// The sensor type.
    pub sensor: SensorType,
    /// The subnet or datastore, for those types.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Usable capacity (after the threshold); `None`: no limit.
    pub capacity: Option<i64>,
    /// The most held on any day of the timeframe.
    pub held: i64,
    /// What the workload needs.
    pub needed: i64,
}

impl SensorFigure {
    /// What is left before the workload; `None`: no limit.
    pub fn free(&self) -> Option<i64> {
        self.capacity.map(|c| c - self.held)
    }

    /// Whether the workload fits.
    pub fn fits(&self) -> bool {
        self.free().is_none_or(|f| f >= self.needed)
    }

    /// The share of capacity left after the workload (negative when over).
    fn left_ratio(&self) -> Option<f64> {
        let capacity = self.capacity?;
        Some(if capacity <= 0 { -1.0 } else { (capacity - self.held - self.needed) as f64 / capacity as f64 })
    }
}

/// A venue assessed for one workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    /// The venue.
    pub venue: String,
    /// Whether it is a full-control venue (capacity and score apply).
    pub full_control: bool,
    /// Fit-for-purpose checks.
    pub checks: Vec<Check>,
    /// Capacity per sensor of the chosen resources.
    pub sensors: Vec<SensorFigure>,
    /// The subnet chosen in it.
    pub subnet: Option<String>,
    /// The datastore chosen for each disk, in the disks' order.
    pub datastores: Vec<String>,
    /// Hourly price of the workload in it, when known.
    pub hourly_cost: Option<f64>,
    /// Capacity left after the workload, in percent of the tightest sensor (negative when over).
    pub capacity_score: f64,
    /// Cost relative to the cheapest candidate, in percent.
    pub cost_score: f64,
    /// The hosting score under the mode (100 for venues ohf does not control).
    pub hosting_score: f64,
}

impl Assessment {
    /// Whether every fit-for-purpose check passed.
    pub fn fit_for_purpose(&self) -> bool {
        self.checks.iter().all(|c| c.pass)
    }

    /// Whether every sensor has room for the workload.
    pub fn fits(&self) -> bool {
        self.sensors.iter().all(SensorFigure::fits)
    }

    /// Whether the workload can be placed here without force.
    pub fn eligible(&self) -> bool {
        self.fit_for_purpose() && self.fits()
    }

    /// Why it cannot be placed here, in one line.
    pub fn refusal(&self) -> Option<String> {
        let mut reasons: Vec<String> = self.checks.iter().filter_map(|c| c.reason.clone()).collect();
        for s in self.sensors.iter().filter(|s| !s.fits()) {
            let what = s
                .resource
                .as_ref()
                .map_or_else(|| s.sensor.as_str().to_owned(), |r| format!("{} {r}", s.sensor.as_str()));
            reasons.push(format!("{what}: needs {}, {} free", s.needed, s.free().unwrap_or_default()));
        }
        (!reasons.is_empty()).then(|| format!("{}: {}", self.venue, reasons.join("; ")))
    }
}

/// Hourly prices every venue falls back on (the user's price table): a venue's own prices win.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prices {
    /// On-demand $/hour by instance type.
    pub on_demand: std::collections::BTreeMap<String, f64>,
    /// Spot $/hour by instance type.
    pub spot: std::collections::BTreeMap<String, f64>,
}

/// What a workload is assessed under.
#[derive(Debug, Clone, Default)]
pub struct Criteria {
    /// The price table venues fall back on.
    pub prices: std::sync::Arc<Prices>,
    /// The score's mode.
    pub mode: Mode,
    /// The request's sensor placement strategies.
    pub strategies: Strategies,
    /// The configured strategies, for the sensors the request does not name.
    pub default_strategies: Strategies,
    /// Sensors whose recalculation excludes a venue (sensor lockout).
    pub required_sensors: BTreeSet<SensorType>,
    /// Place over capacity (the seed's `force`): choose the least full resources.
    pub force: bool,
}

/// Assesses every venue for `workload` against what `ledger` holds; scores are relative to the
/// eligible candidates (cost) and follow `criteria.mode`.
pub fn assess(venues: &[&Venue], ledger: &Ledger, workload: &Workload, criteria: &Criteria) -> Vec<Assessment> {
    let mut all: Vec<Assessment> = venues.iter().map(|v| assess_venue(v, ledger, workload, criteria)).collect();
    let cheapest = all
        .iter()
        .filter(|a| a.full_control && a.eligible())
        .filter_map(|a| a.hourly_cost)
        .fold(None, |m: Option<f64>, c| Some(m.map_or(c, |m| m.min(c))));
    for a in &mut all {
        a.cost_score = match (cheapest, a.hourly_cost) {
            (None, _) => 100.0,
            (Some(_), None) => 0.0,
            (Some(min), Some(_)) if min <= 0.0 => 100.0 * f64::from(u8::from(a.hourly_cost <= Some(0.0))),
            (Some(min), Some(cost)) => (100.0 * min / cost).min(100.0),
        };
        a.hosting_score = if !a.full_control {
            100.0
        } else {
            match criteria.mode {
                Mode::CapacitySensitive => a.capacity_score,
                Mode::CostSensitive => a.cost_score,
                Mode::CostAndCapacity => (a.capacity_score.clamp(0.0, 100.0) + a.cost_score) / 2.0,
            }
        };
    }
    all
}

fn assess_venue(venue: &Venue, ledger: &Ledger, workload: &Workload, criteria: &Criteria) -> Assessment {
    let demand = &workload.demand;
    let full = venue.control.is_full();
    let mut checks = Vec::new();
    let offered = venue.offerings.as_ref().is_none_or(|o| o.contains(&demand.instance_type));
    checks.push(Check::new(
        "instance_type",
        (!offered).then(|| format!("{} is not offered there", demand.instance_type)),
    ));
    let missing_tiers: Vec<&str> = if venue.datastores.is_empty() {
        Vec::new()
    } else {
        demand
            .disks
            .iter()
            .filter_map(|d| d.volume_type.as_deref())
            .filter(|t| !venue.datastores.iter().any(|s| s.volume_type.eq_ignore_ascii_case(t)))
            .collect()
    };
    if !criteria.force {
        checks.push(Check::new(
            "storage_tier",
            (!missing_tiers.is_empty()).then(|| format!("no {} storage", missing_tiers.join(", "))),
        ));
    }
    if full {
        checks
            .push(Check::new("healthy", (!venue.healthy).then(|| format!("provider {} is unhealthy", venue.provider))));
        let locked: Vec<&str> = venue.refreshing.intersection(&criteria.required_sensors).map(|s| s.as_str()).collect();
        checks.push(Check::new(
            "sensor_data",
            (!locked.is_empty()).then(|| format!("{} data is being recalculated", locked.join(", "))),
        ));
    }

    let mut sensors = Vec::new();
    let (mut subnet, mut datastores) = (None, Vec::new());
    if full {
        let quota = |capacity: Option<u64>, sensor, resource: Resource<'_>, needed: u64| SensorFigure {
            sensor,
            resource: None,
            capacity: capacity.map(|c| venue.usable(c)),
            held: ledger.peak(&venue.name, &resource, workload.day),
            needed: i64::try_from(needed).unwrap_or(i64::MAX),
        };
        sensors.push(quota(venue.vcpus, SensorType::Cpu, Resource::Cpu, demand.vcpus));
        sensors.push(quota(venue.memory_mib, SensorType::Memory, Resource::Memory, demand.memory_mib));
        if !venue.subnets.is_empty() {
            let strategy = criteria.strategies.for_sensor(SensorType::Ipaddresspools, &criteria.default_strategies);
            let candidates: Vec<SensorFigure> = venue
                .subnets
                .iter()
                .map(|s| SensorFigure {
                    sensor: SensorType::Ipaddresspools,
                    resource: Some(s.id.clone()),
                    capacity: s.free_ips.map(|c| venue.usable(c)),
                    held: ledger.peak(&venue.name, &Resource::Subnet(&s.id), workload.day),
                    needed: i64::try_from(demand.ips()).unwrap_or(i64::MAX),
                })
                .collect();
            if let Some(chosen) = choose(candidates, strategy, None) {
                subnet = chosen.resource.clone();
                sensors.push(chosen);
            }
        }
        if !venue.datastores.is_empty() {
            let strategy = criteria.strategies.for_sensor(SensorType::Datastore, &criteria.default_strategies);
            let mut taken: HashMap<&str, i64> = HashMap::new();
            for disk in &demand.disks {
                let needed = i64::try_from(disk.size_gib).unwrap_or(i64::MAX);
                let wanted_tier = disk.volume_type.as_deref().and_then(|t| {
                    venue.datastores.iter().filter(|d| d.volume_type.eq_ignore_ascii_case(t)).map(|d| d.tier).min()
                });
                let figure = |d: &crate::venue::Datastore| SensorFigure {
                    sensor: SensorType::Datastore,
                    resource: Some(d.name.clone()),
                    capacity: Some(venue.usable(d.capacity_gib)),
                    held: ledger.peak(&venue.name, &Resource::Datastore(&d.name), workload.day)
                        + taken.get(d.name.as_str()).copied().unwrap_or(0),
                    needed,
                };
                let tier_ok = |d: &crate::venue::Datastore| {
                    disk.volume_type.as_deref().is_none_or(|t| d.volume_type.eq_ignore_ascii_case(t))
                };
                let matching: Vec<SensorFigure> = venue.datastores.iter().filter(|d| tier_ok(d)).map(figure).collect();
                let preferred = disk.pref_datastore.as_deref();
                let mut chosen = choose(matching.clone(), strategy, preferred);
                if criteria.force && chosen.as_ref().is_none_or(|c| !c.fits()) {
                    // The seed's order for forced disks: a lower tier with room, the asked tier
                    // regardless of room, then the most room in any tier.
                    let lower: Vec<SensorFigure> = venue
                        .datastores
                        .iter()
                        .filter(|d| wanted_tier.is_none_or(|w| d.tier > w))
                        .map(figure)
                        .filter(SensorFigure::fits)
                        .collect();
                    chosen = choose(lower, Strategy::Balance, None)
                        .or_else(|| choose(matching, Strategy::Balance, None))
                        .or_else(|| choose(venue.datastores.iter().map(figure).collect(), Strategy::Balance, None));
                }
                if let Some(chosen) = chosen {
                    let name = chosen.resource.clone().unwrap_or_default();
                    if let Some(d) = venue.datastores.iter().find(|d| d.name == name) {
                        *taken.entry(d.name.as_str()).or_default() += needed;
                    }
                    datastores.push(name);
                    sensors.push(chosen);
                }
            }
        }
    }
    let capacity_score = sensors
        .iter()
        .filter_map(SensorFigure::left_ratio)
        .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.min(r))))
        .map_or(100.0, |r| (100.0 * r).min(100.0));
    let t = &demand.instance_type;
    let spot = if demand.spot { venue.spot_prices.get(t).or_else(|| criteria.prices.spot.get(t)) } else { None };
    let price = spot.or_else(|| venue.on_demand_prices.get(t)).or_else(|| criteria.prices.on_demand.get(t));
    Assessment {
        venue: venue.name.clone(),
        full_control: full,
        checks,
        sensors,
        subnet,
        datastores,
        hourly_cost: price.map(|p| p * f64::from(demand.count)),
        capacity_score,
        cost_score: 0.0,
        hosting_score: 0.0,
    }
}

/// The resource a strategy picks: the preferred one when it fits, else among those that fit
/// the most free (balance) or the least free (fill); when none fits, the most free, so the
/// figures show how short it is. `None` when there are no candidates.
fn choose(mut candidates: Vec<SensorFigure>, strategy: Strategy, preferred: Option<&str>) -> Option<SensorFigure> {
    if let Some(p) = preferred
        && let Some(i) = candidates.iter().position(|c| c.fits() && c.resource.as_deref() == Some(p))
    {
        return Some(candidates.swap_remove(i));
    }
    let free = |c: &SensorFigure| c.free().unwrap_or(i64::MAX);
    let fitting = candidates.iter().enumerate().filter(|(_, c)| c.fits());
    let pick = match strategy {
        Strategy::Balance => fitting.max_by_key(|(i, c)| (free(c), std::cmp::Reverse(*i))).map(|(i, _)| i),
        Strategy::Fill => fitting.min_by_key(|(i, c)| (free(c), *i)).map(|(i, _)| i),
    };
    let index = pick.or_else(|| {
        candidates.iter().enumerate().max_by_key(|(i, c)| (free(c), std::cmp::Reverse(*i))).map(|(i, _)| i)
    })?;
    Some(candidates.swap_remove(index))
}
