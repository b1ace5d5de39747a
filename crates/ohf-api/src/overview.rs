//! `getOverview`: one document with what an operator looks at first, for the status page and
//! any dashboard: requests by state with the backlog, each provider's health, breakers and call
//! figures, recent requests and failures, machines held per template, and venue capacity when
//! requests are placed. Every part is read the cheap way (counts, short lists).

use ohf_app::App;
use ohf_app::RequestFilter;
use ohf_app::queries::{
    GetAvailableCapacity, GetOperatingFigures, GetProviderHealth, GetResilienceStatus, ListRequests,
};
use ohf_domain::{RequestKind, RequestState};
use serde_json::{Map, Value, json};

use crate::ApiError;
use crate::view::wall_clock;

/// Recent requests shown.
const RECENT: u32 = 15;
/// Recent failures shown.
const FAILED: u32 = 10;

/// The overview document.
pub async fn overview(app: &App) -> Result<Value, ApiError> {
    let figures = app.ask(GetOperatingFigures).await?;
    let mut requests: Map<String, Value> = Map::new();
    for kind in [RequestKind::Provision, RequestKind::Return] {
        let by_state: Map<String, Value> = RequestState::ALL
            .iter()
            .map(|s| {
                let n = figures.requests.iter().find(|(k, st, _)| *k == kind && st == s).map_or(0, |(_, _, n)| *n);
                (s.as_str().to_owned(), json!(n))
            })
            .collect();
        requests.insert(kind.as_str().to_owned(), Value::Object(by_state));
    }
    let health = app.ask(GetProviderHealth::default()).await?;
    let calls = app.ask(GetResilienceStatus).await?.providers;
    let providers: Vec<Value> = health
        .providers
        .iter()
        .map(|p| {
            let (mut made, mut failed, mut latency_ms) = (0u64, 0u64, 0u64);
            if let Some((_, report)) = calls.iter().find(|(name, _)| *name == p.provider_name)
                && let Some(ops) = report["operations"].as_object()
            {
                for op in ops.values() {
                    made += op["calls"].as_u64().unwrap_or(0);
                    failed += op["failures"].as_u64().unwrap_or(0);
                    latency_ms += op["totalLatencyMs"].as_u64().unwrap_or(0);
                }
            }
            json!({
                "name": p.provider_name,
                "healthy": p.health.is_healthy,
                "message": p.health.status_message,
                "breakers": p.circuit_breakers.iter().map(|b| json!({
                    "service": b.service,
                    "state": b.breaker.state.as_str(),
                    "failures": b.breaker.failures,
                })).collect::<Vec<_>>(),
                "calls": made,
                "failures": failed,
                "averageLatencyMs": (made > 0).then(|| latency_ms / made),
            })
        })
        .collect();
    let recent = app.ask(ListRequests { filter: RequestFilter { limit: Some(RECENT), ..Default::default() } }).await?;
    let bad = vec![RequestState::Failed, RequestState::Timeout, RequestState::PartialSuccess, RequestState::Rejected];
    let failures = app
        .ask(ListRequests { filter: RequestFilter { states: bad, limit: Some(FAILED), ..Default::default() } })
        .await?;
    let line = |r: &ohf_domain::Request| {
        json!({
            "requestId": r.id().as_str(),
            "kind": r.kind().as_str(),
            "status": r.state().as_str(),
            "templateId": r.template().map(|t| t.id().as_str()),
            "machineCount": r.count(),
            "machinesHeld": r.machines().iter().filter(|m| m.is_held()).count(),
            "provider": r.provider().map(|p| p.as_str()),
            "updatedAt": r.updated_at().to_rfc3339(),
            "errorMessage": r.error(),
        })
    };
    let venues = match app.places_requests() {
        true => Some(app.ask(GetAvailableCapacity::default()).await?),
        false => None,
    };
    Ok(json!({
        "generatedAt": wall_clock().to_rfc3339(),
        "requests": requests,
        "backlog": figures.backlog,
        "held": figures.held,
        "providers": providers,
        "recent": recent.iter().map(line).collect::<Vec<_>>(),
        "failures": failures.iter().map(line).collect::<Vec<_>>(),
        "venues": venues,
    }))
}
