//! The routing-requests seed's methods and documents: routing requests with their workloads,
//! their hrefs and status details, and the available-capacity query.

use ohf_app::commands::{RouteRequest, UnrouteRequest};
use ohf_app::placement::{RoutedWorkload, RoutingRequest};
use ohf_app::queries::{GetAvailableCapacity, GetRoutingRequest, ListRoutingRequests};
use ohf_app::{App, AppError};
use ohf_domain::DomainError;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::fields::{optional_text, text};

/// The routing methods of the JSON API.
pub const METHODS: [&str; 7] = [
    "routeRequest",
    "getRoutingRequest",
    "listRoutingRequests",
    "getRoutingWorkloads",
    "getWorkload",
    "unrouteRequest",
    "getAvailableCapacity",
];

/// The href of a routing request.
pub fn href(id: &str) -> String {
    format!("/routing-requests/{id}")
}

/// The href of a workload.
pub fn workload_href(id: &str) -> String {
    format!("/workloads/{id}")
}

/// A routing request as the seed shows it.
pub fn routing_view(r: &RoutingRequest) -> Value {
    let mut v = json!({
        "id": r.id,
        "href": href(&r.id),
        "status": r.status.as_str(),
        "expected_date": r.expected_day.start_millis(),
        "requester": r.requester,
        "mode": r.mode.as_str(),
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        "workloads": r.workloads.iter().map(|w| json!({"id": w.id, "name": w.name, "href": workload_href(&w.id)})).collect::<Vec<_>>(),
        "status_details": {
            "workloads": r.workloads.iter().map(status_detail).collect::<Vec<_>>(),
        },
    });
    if let Some(reason) = &r.status_reason {
        v["status_reason"] = json!(reason);
    }
    if let Some(env) = r.control_environment() {
        v["control_environment"] = json!(env);
    }
    if let Some(group) = r.infrastructure_group() {
        v["infrastructure_group"] = json!(group);
    }
    if !r.scopes.is_empty() {
        v["scopes"] = json!(r.scopes);
    }
    if !r.sensor_placement_strategy.is_empty() {
        v["sensor_placement_strategy"] = json!(r.sensor_placement_strategy);
    }
    if !r.required_sensor_types.is_empty() {
        v["required_sensor_types"] = json!(r.required_sensor_types);
    }
    if r.force {
        v["force"] = json!(true);
    }
    if r.provision {
        v["provision"] = json!(true);
    }
    v
}

fn status_detail(w: &RoutedWorkload) -> Value {
    let mut d = json!({"id": w.id, "name": w.name, "status": w.status});
    if let Some(reason) = &w.status_reason {
        d["status_reason"] = json!(reason);
    }
    if let Some(p) = &w.placement {
        d["venue"] = json!(p.venue);
        d["hosting_score"] = json!((p.hosting_score * 100.0).round() / 100.0);
    }
    d
}

/// A workload with every element (`?details=true`).
pub fn workload_view(request: &str, w: &RoutedWorkload) -> Value {
    let mut v = json!({
        "id": w.id,
        "name": w.name,
        "href": workload_href(&w.id),
        "routing_request": href(request),
        "catalog_spec": w.catalog_spec,
        "count": w.count,
        "expected_date": w.expected_day.start_millis(),
        "status": w.status,
        "disks": w.disks,
        "demand": {
            "instance_type": w.demand.instance_type,
            "vcpus": w.demand.vcpus,
            "memory_mib": w.demand.memory_mib,
            "ip_addresses": w.demand.ips(),
            "spot": w.demand.spot,
        },
    });
    if let Some(profile) = &w.workload_profile {
        v["workload_profile"] = json!(profile);
    }
    if let Some(reason) = &w.status_reason {
        v["status_reason"] = json!(reason);
    }
    if let Some(p) = &w.placement {
        v["placement"] = json!({
            "venue": p.venue,
            "provider": p.provider,
            "control_environment": p.environment,
            "infrastructure_groups": p.groups,
            "zone": p.zone,
            "subnet": p.subnet,
            "datastores": p.datastores,
            "hosting_score": (p.hosting_score * 100.0).round() / 100.0,
            "forced": p.forced,
        });
    }
    if let Some(id) = &w.provision_request {
        v["provision_request"] = json!(id);
    }
    v
}

/// A boolean field: true or false, as JSON or as text (query strings).
pub fn flag(p: &Value, field: &str) -> Result<bool, ApiError> {
    match p.get(field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(ApiError::invalid(field, "must be true or false")),
    }
}

fn millis(p: &Value, field: &str) -> Result<Option<i64>, ApiError> {
    match p.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            n.as_i64().map(Some).ok_or_else(|| ApiError::invalid(field, "must be whole milliseconds"))
        }
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| ApiError::invalid(field, format!("'{s}' is not milliseconds since the epoch"))),
        Some(_) => Err(ApiError::invalid(field, "must be milliseconds since the epoch")),
    }
}

/// The routing-request form, read strictly: an unknown field or a wrong type is a
/// VALIDATION_ERROR that names it.
pub fn route_request(p: &Value) -> Result<RouteRequest, ApiError> {
    let p = if p.is_null() { json!({}) } else { p.clone() };
    serde_json::from_value(p).map_err(|e| {
        let message = e.to_string();
        let field =
            message.split('`').nth(1).filter(|_| message.starts_with("unknown field")).unwrap_or("body").to_owned();
        ApiError::invalid(&field, message)
    })
}

async fn find_workload(app: &App, id: &str) -> Result<(String, RoutedWorkload), AppError> {
    for r in app.ask(ListRoutingRequests::default()).await? {
        if let Some(w) = r.workloads.iter().find(|w| w.id == id) {
            return Ok((r.id.clone(), w.clone()));
        }
    }
    Err(DomainError::RequestNotFound { request_id: id.to_owned() }.into())
}

/// Runs one routing method.
pub async fn call(app: &App, method: &str, p: &Value) -> Result<Value, ApiError> {
    match method {
        "routeRequest" => Ok(routing_view(&app.execute(route_request(p)?).await?)),
        "getRoutingRequest" => {
            let q = GetRoutingRequest { id: text(p, "id")?, recheck_host: flag(p, "recheckHost")? };
            Ok(routing_view(&app.ask(q).await?))
        }
        "listRoutingRequests" => {
            let q =
                ListRoutingRequests { status: optional_text(p, "status")?, requester: optional_text(p, "requester")? };
            let all = app.ask(q).await?;
            if flag(p, "details")? {
                return Ok(json!(all.iter().map(routing_view).collect::<Vec<_>>()));
            }
            Ok(json!(all.iter().map(|r| json!({"id": r.id, "href": href(&r.id)})).collect::<Vec<_>>()))
        }
        "getRoutingWorkloads" => {
            let id = text(p, "id")?;
            let q = GetRoutingRequest { id: id.clone(), recheck_host: flag(p, "recheckHost")? };
            let r = app.ask(q).await?;
            if flag(p, "details")? {
                Ok(json!(r.workloads.iter().map(|w| workload_view(&id, w)).collect::<Vec<_>>()))
            } else {
                Ok(json!(
                    r.workloads
                        .iter()
                        .map(|w| json!({"id": w.id, "name": w.name, "href": workload_href(&w.id)}))
                        .collect::<Vec<_>>()
                ))
            }
        }
        "getWorkload" => {
            let (request, w) = find_workload(app, &text(p, "id")?).await?;
            Ok(workload_view(&request, &w))
        }
        "unrouteRequest" => {
            let cmd = UnrouteRequest {
                id: text(p, "id")?,
                workload_id: optional_text(p, "workloadId")?,
                record_placement: flag(p, "recordPlacement")?,
            };
            Ok(match app.execute(cmd).await? {
                Some(r) => routing_view(&r),
                None => json!({"deleted": true}),
            })
        }
        "getAvailableCapacity" => {
            let q = GetAvailableCapacity {
                catalog_spec: optional_text(p, "catalog_spec")?,
                expected_date: millis(p, "expected_date")?,
                workload_profile: optional_text(p, "workload_profile")?,
            };
            Ok(json!(app.ask(q).await?))
        }
        other => Err(crate::method_not_found(other)),
    }
}
