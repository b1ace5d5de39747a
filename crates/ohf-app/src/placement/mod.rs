//! Placement of the routing-requests seed: routing requests and their workloads as stored,
//! the configuration of venues and routing, and the one place that changes routing state
//! (under a lease shared by every process on the store). The decisions themselves are
//! `ohf-placement`'s pure functions.

use std::collections::BTreeMap;

use ohf_placement::{Day, Demand, DiskNeed, Mode, Placement, Scope, SensorType, Venue};
use serde::{Deserialize, Serialize};

pub(crate) mod engine;
mod state;
mod venues;

pub(crate) use state::{LeaseTurns, PendingHold, RoutingState};
pub use venues::VenueReading;
pub(crate) use venues::VenueView;

/// How routing is set up (`[routing]` and `[[venues]]` in `ohf.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingSettings {
    /// The mode a request that names none is scored under.
    pub default_mode: Mode,
    /// Sensor placement strategies for requests that name none (`datastore-fill`, …).
    pub sensor_placement_strategy: Vec<String>,
    /// Sensors whose recalculation excludes a venue for every request (global lockout).
    pub required_sensor_types: Vec<SensorType>,
    /// Days after its expected date a booking may still turn PLACED; then it EXPIRES.
    pub booking_validity_days: u32,
    /// How far ahead a booking may be made, in days.
    pub horizon_days: u32,
    /// Seconds between the daemon's recalculations of venue capacity.
    pub refresh_interval_secs: u64,
    /// Workload profiles: expected utilisation as shares of the instance type's vCPUs and memory.
    pub profiles: BTreeMap<String, Profile>,
    /// The hosting venues (`[[venues]]`, beside the providers); none: one venue per provider,
    /// without limits.
    #[serde(skip)]
    pub venues: Vec<Venue>,
}

impl Default for RoutingSettings {
    fn default() -> Self {
        Self {
            default_mode: Mode::CapacitySensitive,
            sensor_placement_strategy: Vec::new(),
            required_sensor_types: Vec::new(),
            booking_validity_days: 1,
            horizon_days: 365,
            refresh_interval_secs: 300,
            profiles: BTreeMap::new(),
            venues: Vec::new(),
        }
    }
}

impl RoutingSettings {
    /// The profile named `name`: a configured one, else one of the built-in profiles.
    pub fn profile(&self, name: &str) -> Option<Profile> {
        self.profiles
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, p)| *p)
            .or_else(|| Profile::BUILT_IN.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, p)| *p))
    }

    /// Every profile name a request may use.
    pub fn profile_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Profile::BUILT_IN.iter().map(|(n, _)| (*n).to_owned()).collect();
        names.extend(self.profiles.keys().cloned());
        names.sort();
        names.dedup();
        names
    }

    /// Checks what serde cannot: unique venue names, shares and thresholds in range.
    pub fn check(&self) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        for v in &self.venues {
            if v.name.trim().is_empty() || v.environment.trim().is_empty() || v.provider.trim().is_empty() {
                return Err("every venue needs a name, an environment and a provider".into());
            }
            if !seen.insert(v.name.to_ascii_lowercase()) {
                return Err(format!("venue '{}' is declared twice", v.name));
            }
            if v.threshold_pct == 0 || v.threshold_pct > 100 {
                return Err(format!("venue '{}': threshold_pct must be 1 to 100", v.name));
            }
            let mut stores = std::collections::BTreeSet::new();
            for d in &v.datastores {
                if !stores.insert(d.name.clone()) {
                    return Err(format!("venue '{}': datastore '{}' is declared twice", v.name, d.name));
                }
            }
        }
        for (name, p) in &self.profiles {
            if !(p.cpu > 0.0 && p.cpu <= 1.0 && p.memory > 0.0 && p.memory <= 1.0) {
                return Err(format!("profile '{name}': cpu and memory are shares above 0, at most 1"));
            }
        }
        if self.booking_validity_days == 0 {
            return Err("booking_validity_days must be at least 1".into());
        }
        Ok(())
    }
}

/// A workload profile: how much of its instance type a workload is expected to use.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Share of the vCPUs (above 0, at most 1).
    pub cpu: f64,
    /// Share of the memory (above 0, at most 1).
    pub memory: f64,
}

impl Profile {
    /// Profiles every installation knows.
    pub const BUILT_IN: [(&'static str, Profile); 5] = [
        ("Low_Utilization", Profile { cpu: 0.25, memory: 0.5 }),
        ("Medium_Utilization", Profile { cpu: 0.5, memory: 0.75 }),
        ("High_Utilization", Profile { cpu: 1.0, memory: 1.0 }),
        ("Memory_Intensive", Profile { cpu: 0.5, memory: 1.0 }),
        ("CPU_Intensive", Profile { cpu: 1.0, memory: 0.5 }),
    ];
}

/// Where a routing request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RoutingStatus {
    /// Capacity is reserved for a future date.
    Booked,
    /// Its workloads have their venues for today.
    Placed,
    /// A workload could not be placed or booked: nothing is reserved.
    Rejected,
    /// Its bookings were not used within their validity: nothing is reserved.
    Expired,
}

impl RoutingStatus {
    /// The seed's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Booked => "BOOKED",
            Self::Placed => "PLACED",
            Self::Rejected => "REJECTED",
            Self::Expired => "EXPIRED",
        }
    }

    /// Whether it holds capacity.
    pub fn holds(self) -> bool {
        matches!(self, Self::Booked | Self::Placed)
    }

    /// A status by its name, in any case.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Booked, Self::Placed, Self::Rejected, Self::Expired]
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(name))
    }
}

/// Where a workload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorkloadStatus {
    /// Booked for its expected date.
    Booked,
    /// Placed for today.
    Placed,
    /// Refused with its request.
    Rejected,
    /// Taken out of its request; it can be routed again by id.
    Unrouted,
    /// Its booking was not used in time.
    Expired,
}

impl WorkloadStatus {
    /// The seed's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Booked => "BOOKED",
            Self::Placed => "PLACED",
            Self::Rejected => "REJECTED",
            Self::Unrouted => "UNROUTED",
            Self::Expired => "EXPIRED",
        }
    }

    /// Whether it holds capacity.
    pub fn holds(self) -> bool {
        matches!(self, Self::Booked | Self::Placed)
    }
}

/// One disk of a workload's machines, as asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    /// GiB per machine.
    pub size_gb: u64,
    /// Volume type (storage tier); any when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_type: Option<String>,
    /// The preferred datastore (kept by `record_placement`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pref_datastore: Option<String>,
}

/// A workload of a routing request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutedWorkload {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The template its machines are.
    pub catalog_spec: String,
    /// Its utilisation profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_profile: Option<String>,
    /// Machines.
    pub count: u32,
    /// The day its machines arrive.
    pub expected_day: Day,
    /// Its disks.
    #[serde(default)]
    pub disks: Vec<Disk>,
    /// Where it is.
    pub status: WorkloadStatus,
    /// Why (REJECTED, forced, expired, rechecked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// What it needs of a venue.
    pub demand: Demand,
    /// Where it goes, and what it holds there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    /// The provision request that launches its machines, when its request asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provision_request: Option<String>,
}

impl RoutedWorkload {
    /// What it needs with the preferred datastores of its disks.
    pub(crate) fn demand_now(&self) -> Demand {
        let mut demand = self.demand.clone();
        for (need, disk) in demand.disks.iter_mut().zip(&self.disks) {
            need.pref_datastore.clone_from(&disk.pref_datastore);
        }
        demand
    }

    /// As the pure router sees it.
    pub(crate) fn to_workload(&self) -> ohf_placement::Workload {
        ohf_placement::Workload {
            id: self.id.clone(),
            name: self.name.clone(),
            day: self.expected_day,
            demand: self.demand_now(),
        }
    }
}

/// A routing request: workloads placed or rejected as one unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutingRequest {
    /// Its id.
    pub id: String,
    /// Where it is.
    pub status: RoutingStatus,
    /// Why (REJECTED: per workload; PLACED: "Force to place").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// The day it is routed for.
    pub expected_day: Day,
    /// Who routed it.
    pub requester: String,
    /// When it was made (ms since the epoch).
    pub created_at: i64,
    /// When it last changed.
    pub updated_at: i64,
    /// The mode it was scored under.
    pub mode: Mode,
    /// Where it let the router look.
    #[serde(default)]
    pub scopes: Vec<Scope>,
    /// Its sensor placement strategies, as given.
    #[serde(default)]
    pub sensor_placement_strategy: Vec<String>,
    /// Sensors whose recalculation excludes a venue.
    #[serde(default)]
    pub required_sensor_types: Vec<SensorType>,
    /// Placed by force.
    #[serde(default)]
    pub force: bool,
    /// Launch the machines when placed.
    #[serde(default)]
    pub provision: bool,
    /// The provision request this placement was made for (every `requestMachines` on a host
    /// with venues is placed): it is released when that request holds no machines any more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_request: Option<String>,
    /// Its workloads.
    pub workloads: Vec<RoutedWorkload>,
}

impl RoutingRequest {
    /// The environment its workloads were placed in (set when BOOKED or PLACED).
    pub fn control_environment(&self) -> Option<&str> {
        if !self.status.holds() {
            return None;
        }
        self.workloads.iter().find_map(|w| w.placement.as_ref()).map(|p| p.environment.as_str())
    }

    /// The infrastructure group its workloads were placed in (set when BOOKED or PLACED).
    pub fn infrastructure_group(&self) -> Option<&str> {
        if !self.status.holds() {
            return None;
        }
        self.workloads.iter().find_map(|w| w.placement.as_ref()).and_then(|p| p.groups.first()).map(String::as_str)
    }

    /// The holds of its workloads that hold capacity.
    pub(crate) fn holds(&self) -> impl Iterator<Item = &ohf_placement::Hold> {
        self.workloads.iter().filter(|w| w.status.holds()).filter_map(|w| w.placement.as_ref()).map(|p| &p.hold)
    }
}

/// A disk's need for the router: the request's size for every machine.
pub(crate) fn disk_needs(disks: &[Disk], count: u32) -> Vec<DiskNeed> {
    disks
        .iter()
        .map(|d| DiskNeed {
            size_gib: d.size_gb.saturating_mul(u64::from(count)),
            volume_type: d.volume_type.clone(),
            pref_datastore: d.pref_datastore.clone(),
        })
        .collect()
}
