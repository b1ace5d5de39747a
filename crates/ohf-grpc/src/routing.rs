//! The routing service: the routing-requests seed's calls onto the same typed commands and
//! queries as the REST resource, each answer its own message.

use std::sync::Arc;

use ohf_api::access::Gate;
use ohf_app::App;
use ohf_app::commands::{RouteRequest, UnrouteRequest, WorkloadSpec};
use ohf_app::placement::{Disk, RoutedWorkload, RoutingRequest};
use ohf_app::queries::{GetAvailableCapacity, GetRoutingRequest, ListRoutingRequests};
use ohf_placement::Scope;
use tonic::{Request, Response, Status};

use crate::pb;
use crate::service::{admit, fail};

/// `ohf.v1.RoutingService`.
pub struct RoutingApi {
    app: Arc<App>,
    gate: Arc<Gate>,
}

impl RoutingApi {
    /// The service over `app`, its calls admitted by `gate`.
    pub fn new(app: Arc<App>, gate: Arc<Gate>) -> Self {
        Self { app, gate }
    }
}

type Answer<T> = Result<Response<T>, Status>;

fn scope_in(s: pb::Scope) -> Scope {
    Scope { control_environment: s.control_environment, infrastructure_groups: s.infrastructure_groups }
}

fn scope_out(s: &Scope) -> pb::Scope {
    pb::Scope {
        control_environment: s.control_environment.clone(),
        infrastructure_groups: s.infrastructure_groups.clone(),
    }
}

fn disk_in(d: pb::Disk) -> Disk {
    Disk { size_gb: d.size_gb, volume_type: d.volume_type, pref_datastore: d.pref_datastore }
}

fn disk_out(d: &Disk) -> pb::Disk {
    pb::Disk { size_gb: d.size_gb, volume_type: d.volume_type.clone(), pref_datastore: d.pref_datastore.clone() }
}

fn workload_out(w: &RoutedWorkload) -> pb::Workload {
    pb::Workload {
        id: w.id.clone(),
        name: w.name.clone(),
        href: ohf_api::routing::workload_href(&w.id),
        catalog_spec: w.catalog_spec.clone(),
        workload_profile: w.workload_profile.clone(),
        count: w.count,
        expected_date: w.expected_day.start_millis(),
        status: w.status.as_str().to_owned(),
        status_reason: w.status_reason.clone(),
        disks: w.disks.iter().map(disk_out).collect(),
        placement: w.placement.as_ref().map(|p| pb::WorkloadPlacement {
            venue: p.venue.clone(),
            provider: p.provider.clone(),
            control_environment: p.environment.clone(),
            infrastructure_groups: p.groups.clone(),
            zone: p.zone.clone(),
            subnet: p.subnet.clone(),
            datastores: p.datastores.clone(),
            hosting_score: p.hosting_score,
            forced: p.forced,
        }),
        provision_request: w.provision_request.clone(),
    }
}

fn routing_out(r: &RoutingRequest) -> pb::RoutingRequest {
    pb::RoutingRequest {
        id: r.id.clone(),
        href: ohf_api::routing::href(&r.id),
        status: r.status.as_str().to_owned(),
        status_reason: r.status_reason.clone(),
        expected_date: r.expected_day.start_millis(),
        requester: r.requester.clone(),
        mode: r.mode.as_str().to_owned(),
        control_environment: r.control_environment().map(String::from),
        infrastructure_group: r.infrastructure_group().map(String::from),
        workloads: r.workloads.iter().map(workload_out).collect(),
        created_at: r.created_at,
        updated_at: r.updated_at,
        scopes: r.scopes.iter().map(scope_out).collect(),
        force: r.force,
        provision: r.provision,
    }
}

#[tonic::async_trait]
impl pb::routing_service_server::RoutingService for RoutingApi {
    async fn route_request(&self, request: Request<pb::RouteRequestRequest>) -> Answer<pb::RoutingRequest> {
        let caller = admit(&self.gate, &request, "routeRequest")?;
        let r = request.into_inner();
        let cmd = RouteRequest {
            expected_date: r.expected_date,
            requester: r.requester.or(Some(caller)),
            workloads: r
                .workloads
                .into_iter()
                .map(|w| WorkloadSpec {
                    id: w.id,
                    name: w.name,
                    catalog_spec: w.catalog_spec,
                    workload_profile: w.workload_profile,
                    count: w.count,
                    expected_date: w.expected_date,
                    disks: w.disks.into_iter().map(disk_in).collect(),
                })
                .collect(),
            scopes: r.scopes.into_iter().map(scope_in).collect(),
            required_sensor_types: r.required_sensor_types,
            sensor_placement_strategy: r.sensor_placement_strategy,
            mode: r.mode,
            force: r.force,
            provision: r.provision,
        };
        let made = self.app.execute(cmd).await.map_err(fail)?;
        Ok(Response::new(routing_out(&made)))
    }

    async fn get_routing_request(&self, request: Request<pb::GetRoutingRequestRequest>) -> Answer<pb::RoutingRequest> {
        admit(&self.gate, &request, "getRoutingRequest")?;
        let r = request.into_inner();
        let found = self.app.ask(GetRoutingRequest { id: r.id, recheck_host: r.recheck_host }).await.map_err(fail)?;
        Ok(Response::new(routing_out(&found)))
    }

    async fn list_routing_requests(
        &self,
        request: Request<pb::ListRoutingRequestsRequest>,
    ) -> Answer<pb::ListRoutingRequestsResponse> {
        admit(&self.gate, &request, "listRoutingRequests")?;
        let r = request.into_inner();
        let all = self.app.ask(ListRoutingRequests { status: r.status, requester: r.requester }).await.map_err(fail)?;
        Ok(Response::new(pb::ListRoutingRequestsResponse { routing_requests: all.iter().map(routing_out).collect() }))
    }

    async fn unroute_request(&self, request: Request<pb::UnrouteRequestRequest>) -> Answer<pb::UnrouteRequestResponse> {
        admit(&self.gate, &request, "unrouteRequest")?;
        let r = request.into_inner();
        let cmd = UnrouteRequest { id: r.id, workload_id: r.workload_id, record_placement: r.record_placement };
        let left = self.app.execute(cmd).await.map_err(fail)?;
        Ok(Response::new(pb::UnrouteRequestResponse {
            deleted: left.is_none(),
            remaining: left.as_ref().map(routing_out),
        }))
    }

    async fn get_available_capacity(
        &self,
        request: Request<pb::GetAvailableCapacityRequest>,
    ) -> Answer<pb::GetAvailableCapacityResponse> {
        admit(&self.gate, &request, "getAvailableCapacity")?;
        let r = request.into_inner();
        let q = GetAvailableCapacity {
            catalog_spec: r.catalog_spec,
            expected_date: r.expected_date,
            workload_profile: r.workload_profile,
        };
        let all = self.app.ask(q).await.map_err(fail)?;
        Ok(Response::new(pb::GetAvailableCapacityResponse {
            venues: all
                .into_iter()
                .map(|c| pb::VenueCapacity {
                    venue: c.venue,
                    control_environment: c.control_environment,
                    infrastructure_groups: c.infrastructure_groups,
                    provider: c.provider,
                    zone: c.zone,
                    catalog_spec: c.catalog_spec,
                    available_today: c.available_today,
                    available_on_date: c.available_on_date.flatten(),
                })
                .collect(),
        }))
    }
}
