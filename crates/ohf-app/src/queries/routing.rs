//! Read routing requests (a read moves due bookings on, as the seed says) and the capacity
//! left per venue and template.

use ohf_placement::Day;
use serde::Serialize;

use crate::cqrs::{Handler, message};
use crate::placement::{RoutingRequest, RoutingStatus};
use crate::{App, AppError};

/// One routing request. A BOOKED request whose day has come is PLACED first (or EXPIRED);
/// `recheck_host` re-places PLACED workloads whose venue is unhealthy now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetRoutingRequest {
    /// The routing request.
    pub id: String,
    /// Re-place workloads on unhealthy full-control venues.
    pub recheck_host: bool,
}

message!(query GetRoutingRequest => RoutingRequest);

impl Handler<GetRoutingRequest> for App {
    async fn handle(&self, q: GetRoutingRequest) -> Result<RoutingRequest, AppError> {
        let missing = || ohf_domain::DomainError::RequestNotFound { request_id: q.id.clone() };
        let found = self.routing_request(&q.id).await?.ok_or_else(missing)?;
        let today = self.today();
        if found.status == RoutingStatus::Booked
            && found.workloads.iter().any(|w| w.status.holds() && w.expected_day <= today)
        {
            self.advance_routing(Some(&q.id)).await?;
        }
        if q.recheck_host && found.status.holds() {
            self.recheck_hosts(&q.id).await?;
        }
        Ok(self.routing_request(&q.id).await?.ok_or_else(missing)?)
    }
}

/// Every routing request, optionally of one status or requester, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListRoutingRequests {
    /// Only this status (BOOKED, PLACED, REJECTED, EXPIRED).
    pub status: Option<String>,
    /// Only this requester.
    pub requester: Option<String>,
}

message!(query ListRoutingRequests => Vec<RoutingRequest>);

impl Handler<ListRoutingRequests> for App {
    async fn handle(&self, q: ListRoutingRequests) -> Result<Vec<RoutingRequest>, AppError> {
        let status = match q.status.as_deref() {
            None => None,
            Some(s) => Some(RoutingStatus::parse(s).ok_or_else(|| {
                ohf_domain::DomainError::validation(
                    "status",
                    format!("'{s}' is not BOOKED, PLACED, REJECTED or EXPIRED"),
                )
            })?),
        };
        let mut all = self.routing_requests(status.is_none_or(|s| !s.holds())).await?;
        all.retain(|r| status.is_none_or(|s| r.status == s));
        all.retain(|r| q.requester.as_deref().is_none_or(|who| r.requester == who));
        all.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.id.cmp(&b.id)));
        Ok(all)
    }
}

/// How many more machines of each template fit in each venue, today and on a date.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetAvailableCapacity {
    /// One template; every template when absent.
    pub catalog_spec: Option<String>,
    /// A date (ms since the epoch) to answer for beside today.
    pub expected_date: Option<i64>,
    /// The workload profile the machines would have.
    pub workload_profile: Option<String>,
}

/// How many more machines of one template fit in one venue.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VenueCapacity {
    /// The venue.
    pub venue: String,
    /// Its environment.
    pub control_environment: String,
    /// Its infrastructure groups.
    pub infrastructure_groups: Vec<String>,
    /// Its provider.
    pub provider: String,
    /// Its zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// The template.
    pub catalog_spec: String,
    /// Machines that fit from today on; `null`: no limit ohf knows of.
    pub available_today: Option<u64>,
    /// Machines that fit from the date asked about on, when one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_on_date: Option<Option<u64>>,
}

message!(query GetAvailableCapacity => Vec<VenueCapacity>);

impl Handler<GetAvailableCapacity> for App {
    async fn handle(&self, q: GetAvailableCapacity) -> Result<Vec<VenueCapacity>, AppError> {
        let templates = match &q.catalog_spec {
            Some(id) => vec![self.template(id).await?],
            None => self.templates().await?.0,
        };
        let today = self.today();
        let date = q.expected_date.map(|d| Day::of_millis(d).max(today));
        let venues = self.venues_now().await?;
        let open = self.routing_requests(false).await?;
        let ledger = ohf_placement::Ledger::new(open.iter().flat_map(RoutingRequest::holds));
        let mut out = Vec::new();
        for template in &templates {
            let (one, _) = self.demand_of(template, 1, q.workload_profile.as_deref(), &[])?;
            let now = ohf_placement::available_in(&venues, &ledger, &one, today);
            let then = date.map(|d| ohf_placement::available_in(&venues, &ledger, &one, d));
            for v in venues.iter() {
                out.push(VenueCapacity {
                    venue: v.name.clone(),
                    control_environment: v.environment.clone(),
                    infrastructure_groups: v.groups.clone(),
                    provider: v.provider.clone(),
                    zone: v.zone.clone(),
                    catalog_spec: template.id().to_string(),
                    available_today: now.get(&v.name).copied().flatten(),
                    available_on_date: then.as_ref().map(|t| t.get(&v.name).copied().flatten()),
                });
            }
        }
        Ok(out)
    }
}
