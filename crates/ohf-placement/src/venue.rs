//! Hosting venues and their sensors: where machines can be placed and the capacity dimensions
//! that routing must not over-commit.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// How much of a venue ohf controls and measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Control {
    /// ohf launches into it and measures its capacity: every check and the score apply.
    #[default]
    Full,
    /// Capacity ohf cannot see: fit-for-purpose checks only, a hosting score of 100.
    NonControl,
    /// Guest-level capacity: treated as non-control.
    Guest,
}

impl Control {
    /// Whether ohf measures this venue (full control).
    pub fn is_full(self) -> bool {
        self == Self::Full
    }
}

/// A subnet of a venue and the free IP addresses measured in it (its `ipaddresspools` sensor).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subnet {
    /// The provider's subnet id.
    pub id: String,
    /// Free IP addresses at the last refresh; `None` when not measured (no limit).
    #[serde(default)]
    pub free_ips: Option<u64>,
}

/// Block storage of one volume type in a venue (its `datastore` sensor).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Datastore {
    /// The datastore's name, unique in its venue.
    pub name: String,
    /// The volume type it provides (`gp3`, `io2`, …): the storage tier a disk asks for.
    pub volume_type: String,
    /// Tier priority: 1 is the best; a forced placement may fall to a higher number.
    #[serde(default = "first_tier")]
    pub tier: u32,
    /// Capacity in GiB.
    pub capacity_gib: u64,
}

fn first_tier() -> u32 {
    1
}

/// One hosting venue: a provider instance and zone with its subnets and storage, in an
/// environment and in infrastructure groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Venue {
    /// Unique name.
    pub name: String,
    /// The control environment it belongs to (a region, an account).
    pub environment: String,
    /// The infrastructure groups it is part of ("Prod", "Dev").
    #[serde(default)]
    pub groups: Vec<String>,
    /// The provider instance that launches into it.
    pub provider: String,
    /// Its availability zone, when it is one.
    #[serde(default)]
    pub zone: Option<String>,
    /// How much of it ohf controls.
    #[serde(default)]
    pub control: Control,
    /// vCPU quota; `None`: no limit.
    #[serde(default)]
    pub vcpus: Option<u64>,
    /// Memory quota in MiB; `None`: no limit.
    #[serde(default)]
    pub memory_mib: Option<u64>,
    /// Its subnets; none: the provider's template decides, no IP sensor.
    #[serde(default)]
    pub subnets: Vec<Subnet>,
    /// Its block storage; none: disks are not checked.
    #[serde(default)]
    pub datastores: Vec<Datastore>,
    /// Instance types offered in it; `None`: not known, every type passes.
    #[serde(default)]
    pub offerings: Option<BTreeSet<String>>,
    /// Hourly on-demand price per instance type.
    #[serde(default)]
    pub on_demand_prices: BTreeMap<String, f64>,
    /// Hourly spot price per instance type, where measured.
    #[serde(default)]
    pub spot_prices: BTreeMap<String, f64>,
    /// Percent of each capacity routing may fill (fill-and-spill stops there); 100 by default.
    #[serde(default = "full_threshold")]
    pub threshold_pct: u32,
    /// Whether its provider is healthy now (health and breakers).
    #[serde(default = "healthy")]
    pub healthy: bool,
    /// Sensors whose data is being recalculated now: a request that requires them skips it.
    #[serde(default)]
    pub refreshing: BTreeSet<SensorType>,
}

fn full_threshold() -> u32 {
    100
}

fn healthy() -> bool {
    true
}

impl Venue {
    /// A full-control venue of `provider` with no limits, in environment `environment`.
    pub fn unlimited(name: &str, environment: &str, provider: &str) -> Self {
        Self {
            name: name.to_owned(),
            environment: environment.to_owned(),
            groups: Vec::new(),
            provider: provider.to_owned(),
            zone: None,
            control: Control::Full,
            vcpus: None,
            memory_mib: None,
            subnets: Vec::new(),
            datastores: Vec::new(),
            offerings: None,
            on_demand_prices: BTreeMap::new(),
            spot_prices: BTreeMap::new(),
            threshold_pct: 100,
            healthy: true,
            refreshing: BTreeSet::new(),
        }
    }

    /// Whether the venue is inside one of `scopes` (every venue when there are none).
    pub fn in_scopes(&self, scopes: &[Scope]) -> bool {
        scopes.is_empty() || scopes.iter().any(|s| s.admits(self))
    }

    /// A capacity after the venue's threshold.
    pub fn usable(&self, capacity: u64) -> i64 {
        let usable = u128::from(capacity) * u128::from(self.threshold_pct.min(100)) / 100;
        i64::try_from(usable).unwrap_or(i64::MAX)
    }
}

/// Where a request lets the router look: an environment and, optionally, some of its
/// infrastructure groups; or groups in any environment.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// The control environment; any when absent.
    #[serde(default)]
    pub control_environment: Option<String>,
    /// Infrastructure groups; every group of the environment when empty.
    #[serde(default)]
    pub infrastructure_groups: Vec<String>,
}

impl Scope {
    /// Whether `venue` is inside this scope.
    pub fn admits(&self, venue: &Venue) -> bool {
        let environment = self.control_environment.as_ref().is_none_or(|e| e.eq_ignore_ascii_case(&venue.environment));
        let group = self.infrastructure_groups.is_empty()
            || self.infrastructure_groups.iter().any(|g| venue.groups.iter().any(|v| v.eq_ignore_ascii_case(g)));
        environment && group
    }
}

/// The capacity dimensions of a venue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SensorType {
    /// vCPUs against the venue's quota.
    Cpu,
    /// Memory against the venue's quota.
    Memory,
    /// Free IP addresses in the venue's subnets.
    Ipaddresspools,
    /// Block storage per volume type.
    Datastore,
}

impl SensorType {
    /// Every sensor type.
    pub const ALL: [Self; 4] = [Self::Cpu, Self::Memory, Self::Ipaddresspools, Self::Datastore];

    /// The seed's name (`cpu`, `memory`, `ipaddresspools`, `datastore`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Memory => "memory",
            Self::Ipaddresspools => "ipaddresspools",
            Self::Datastore => "datastore",
        }
    }

    /// A sensor type by any of the seed's spellings (`datastores`, `ip_address_pools`, …).
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().replace('_', "").as_str() {
            "cpu" | "vcpu" | "vcpus" => Some(Self::Cpu),
            "memory" | "mem" => Some(Self::Memory),
            "ipaddresspools" | "ipaddresspool" => Some(Self::Ipaddresspools),
            "datastore" | "datastores" => Some(Self::Datastore),
            _ => None,
        }
    }

    /// Whether a placement strategy can choose among resources of this type inside a venue.
    pub fn routable(self) -> bool {
        matches!(self, Self::Ipaddresspools | Self::Datastore)
    }
}

/// How to choose among the resources of one sensor type inside the chosen venue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Most available first (the default).
    #[default]
    Balance,
    /// Fill and spill: least available first, up to the threshold.
    Fill,
}

/// A placement strategy per routable sensor type.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Strategies(pub BTreeMap<SensorType, Strategy>);

impl Strategies {
    /// Reads `<sensor type>-<strategy>` entries; an invalid entry is ignored, as the seed
    /// says, and is named in the second list.
    pub fn parse(entries: &[String]) -> (Self, Vec<String>) {
        let mut chosen = BTreeMap::new();
        let mut ignored = Vec::new();
        for entry in entries {
            let parsed = entry.rsplit_once('-').and_then(|(sensor, strategy)| {
                let sensor = SensorType::parse(sensor).filter(|s| s.routable())?;
                let strategy = match strategy.trim().to_ascii_lowercase().as_str() {
                    "balance" | "balanced" => Strategy::Balance,
                    "fill" => Strategy::Fill,
                    _ => return None,
                };
                Some((sensor, strategy))
            });
            match parsed {
                Some((sensor, strategy)) => {
                    chosen.insert(sensor, strategy);
                }
                None => ignored.push(entry.clone()),
            }
        }
        (Self(chosen), ignored)
    }

    /// The strategy for `sensor`: this set's, else `fallback`'s, else balance.
    pub fn for_sensor(&self, sensor: SensorType, fallback: &Self) -> Strategy {
        self.0.get(&sensor).or_else(|| fallback.0.get(&sensor)).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_strategy_entries_are_ignored_and_named() {
        let entries: Vec<String> =
            ["datastore-fill", "ipaddresspools-balance", "cpu-fill", "datastore-spill", "nonsense"]
                .map(String::from)
                .into();
        let (s, ignored) = Strategies::parse(&entries);
        assert_eq!(s.0.get(&SensorType::Datastore), Some(&Strategy::Fill));
        assert_eq!(s.0.get(&SensorType::Ipaddresspools), Some(&Strategy::Balance));
        assert_eq!(ignored, vec!["cpu-fill", "datastore-spill", "nonsense"]);
        let (spelt, none) = Strategies::parse(&["datastores-fill".into(), "ip_address_pools-fill".into()]);
        assert!(none.is_empty());
        assert_eq!(spelt.for_sensor(SensorType::Ipaddresspools, &Strategies::default()), Strategy::Fill);
        assert_eq!(Strategies::default().for_sensor(SensorType::Datastore, &spelt), Strategy::Fill);
        assert_eq!(Strategies::default().for_sensor(SensorType::Datastore, &Strategies::default()), Strategy::Balance);
    }

    #[test]
    fn scopes_restrict_by_environment_and_group() {
        let mut v = Venue::unlimited("a", "London", "aws");
        v.groups = vec!["Prod".into()];
        let boston = Scope { control_environment: Some("Boston".into()), infrastructure_groups: vec![] };
        let london_dev =
            Scope { control_environment: Some("London".into()), infrastructure_groups: vec!["Dev".into()] };
        let prod = Scope { control_environment: None, infrastructure_groups: vec!["prod".into()] };
        assert!(v.in_scopes(&[]));
        assert!(!v.in_scopes(&[boston.clone(), london_dev]));
        assert!(v.in_scopes(&[boston, prod]));
    }
}
