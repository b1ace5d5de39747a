//! Route a request of workloads (place or book them as one), and unroute it or one workload.

use ohf_placement::Scope;
use serde::{Deserialize, Deserializer};

use crate::cqrs::{Handler, message};
use crate::placement::{Disk, RoutingRequest};
use crate::{App, AppError};

/// A workload of a routing request: its definition, or the id of an unrouted workload to
/// route again (its definition and preferred datastores are kept).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// An unrouted workload to route again.
    #[serde(default)]
    pub id: Option<String>,
    /// Its name.
    #[serde(default)]
    pub name: Option<String>,
    /// The template its machines are.
    #[serde(default)]
    pub catalog_spec: Option<String>,
    /// Its utilisation profile (`Medium_Utilization`, …).
    #[serde(default)]
    pub workload_profile: Option<String>,
    /// Machines (1 by default).
    #[serde(default)]
    pub count: Option<i64>,
    /// Its own expected date (ms since the epoch); the request's when absent.
    #[serde(default, deserialize_with = "millis")]
    pub expected_date: Option<i64>,
    /// Its disks; the template's root volume when none.
    #[serde(default)]
    pub disks: Vec<Disk>,
}

/// Place or book workloads as one unit: every workload fits, or the request is REJECTED with
/// a reason per workload and nothing is reserved.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRequest {
    /// The day the machines arrive (ms since the epoch, UTC; the time is ignored); today when
    /// absent. A later day books capacity.
    #[serde(default, deserialize_with = "millis")]
    pub expected_date: Option<i64>,
    /// Who routes it; the caller when absent; `__Unknown__` is refused.
    #[serde(default)]
    pub requester: Option<String>,
    /// The workloads.
    #[serde(default)]
    pub workloads: Vec<WorkloadSpec>,
    /// Environments and infrastructure groups to search; everywhere when empty.
    #[serde(default)]
    pub scopes: Vec<Scope>,
    /// Sensors whose recalculation excludes a venue (sensor lockout).
    #[serde(default)]
    pub required_sensor_types: Vec<String>,
    /// `<sensor type>-<balance|fill>` entries; invalid ones are ignored.
    #[serde(default)]
    pub sensor_placement_strategy: Vec<String>,
    /// capacity_sensitive, cost_sensitive or cost_and_capacity; configured when absent.
    #[serde(default)]
    pub mode: Option<String>,
    /// Place in the scopes' infrastructure group even over capacity.
    #[serde(default)]
    pub force: bool,
    /// Launch the machines when the workloads are placed (on the day, for a booking).
    #[serde(default)]
    pub provision: bool,
}

/// Milliseconds as a number or a string of digits (the seed writes both).
fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(i64),
        Text(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Number(n)) => Ok(Some(n)),
        Some(Raw::Text(t)) => t
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("'{t}' is not milliseconds since the epoch"))),
    }
}

message!(command RouteRequest => RoutingRequest);

impl Handler<RouteRequest> for App {
    async fn handle(&self, cmd: RouteRequest) -> Result<RoutingRequest, AppError> {
        self.route_request(cmd).await
    }
}

/// Unroute a routing request (DELETE `/routing-requests/<id>`) or one of its workloads
/// (`/routing-requests/<id>/<workload_id>`): its capacity is released and the workloads kept
/// UNROUTED, to be routed again by id. Deleting the last workload deletes the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnrouteRequest {
    /// The routing request.
    pub id: String,
    /// One of its workloads; all when absent.
    pub workload_id: Option<String>,
    /// Keep each disk's datastore as its preferred one (when none of the workload's disks has
    /// one yet).
    pub record_placement: bool,
}

message!(command UnrouteRequest => Option<RoutingRequest>);

impl Handler<UnrouteRequest> for App {
    async fn handle(&self, cmd: UnrouteRequest) -> Result<Option<RoutingRequest>, AppError> {
        self.unroute(&cmd.id, cmd.workload_id.as_deref(), cmd.record_placement).await
    }
}
