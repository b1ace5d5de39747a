//! Workloads: groups of machines of one template, with what they need of a venue.

use serde::{Deserialize, Serialize};

use crate::Day;

/// One disk a workload's machines need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskNeed {
    /// GiB for the whole workload (per machine × machines).
    pub size_gib: u64,
    /// The volume type (storage tier) asked for; any when absent.
    #[serde(default)]
    pub volume_type: Option<String>,
    /// The preferred datastore (from a recorded placement): it overrides the strategy when it
    /// is in the chosen venue, of the tier and has room.
    #[serde(default)]
    pub pref_datastore: Option<String>,
}

/// What a workload needs of a venue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Demand {
    /// The instance type the machines launch as.
    pub instance_type: String,
    /// Machines.
    pub count: u32,
    /// vCPUs for the whole workload, after its utilisation profile.
    pub vcpus: u64,
    /// Memory in MiB for the whole workload, after its utilisation profile.
    pub memory_mib: u64,
    /// Whether it launches on spot capacity (priced at spot where measured).
    #[serde(default)]
    pub spot: bool,
    /// Its disks.
    #[serde(default)]
    pub disks: Vec<DiskNeed>,
}

impl Demand {
    /// IP addresses it takes: one per machine.
    pub fn ips(&self) -> u64 {
        u64::from(self.count)
    }
}

/// A workload to route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The day its machines arrive.
    pub day: Day,
    /// What it needs.
    pub demand: Demand,
}
