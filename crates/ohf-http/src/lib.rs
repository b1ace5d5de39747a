//! The HTTP JSON API of `ohf serve`, in the shape of the request-management seed:
//! `POST /rpc` with `{"method": "requestMachines", "params": {…}}` answers `{"result": …}` or
//! `{"error": {"code": "TEMPLATE_NOT_FOUND", "message": …, "details": …}}`. Statuses come from
//! the one table in `ohf_app::api`; a busy request answers 423 and a client over its rate limit
//! 429, both with `Retry-After`.
//!
//! An accepted mutation answers with the request's state at that moment, not a bare "ok": the
//! change itself happens in the background, so clients poll `getRequestStatus` or long-poll
//! `watchRequest` until it shows.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
pub use ohf_app::access::{ApiOptions, ApiToken, Gate, RateLimit, Role};
use ohf_app::api::ApiError;
use ohf_app::view::{event_view, reconcile_view, request_view, sweep_view, template_view};
use ohf_app::{App, MachineRef, RequestFilter, RequestMachines, RequestReturn, TemplateCheck};
use ohf_domain::{DomainError, ErrorCode, RequestKind, RequestState};
use serde_json::{Map, Value, json};

/// Every method of the API.
pub const METHODS: [&str; 15] = [
    "requestMachines",
    "requestReturnMachines",
    "getRequestStatus",
    "getReturnRequests",
    "cancelRequest",
    "listRequests",
    "watchRequest",
    "getRequestHistory",
    "getAvailableTemplates",
    "getTemplate",
    "validateTemplate",
    "getResilienceStatus",
    "reconcile",
    "sweepOrphans",
    "purgeHistory",
];

/// The longest a `watchRequest` call waits for a change.
const MAX_WATCH_WAIT: Duration = Duration::from_secs(60);

/// An error as an HTTP response: the seed's body, the table's status, `Retry-After` when given.
pub fn error_response(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.wire().http).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(e.to_json())).into_response();
    if let Some(secs) = e.retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid(field, message)
}

struct Api {
    app: Arc<App>,
    gate: Arc<Gate>,
}

/// The routes of the API, open to every caller.
pub fn router(app: Arc<App>) -> Router {
    router_with(app, ApiOptions::default(), Arc::new(ohf_app::SystemClock))
}

/// The routes of the API with authentication and rate limits; `clock` paces the limits.
pub fn router_with(app: Arc<App>, options: ApiOptions, clock: Arc<dyn ohf_app::Clock>) -> Router {
    gated_router(app, Arc::new(Gate::new(options, clock)))
}

/// The routes of the API behind a gate shared with other ingresses.
pub fn gated_router(app: Arc<App>, gate: Arc<Gate>) -> Router {
    Router::new().route("/rpc", post(rpc)).with_state(Arc::new(Api { app, gate }))
}

fn method_not_found(method: &str) -> ApiError {
    let mut e = ApiError::new(ErrorCode::MethodNotFound, format!("method '{method}' not found"));
    let available: Vec<&str> = METHODS.iter().chain(ohf_app::STRATEGY_METHODS.iter()).copied().collect();
    e.details = json!({"method": method, "availableMethods": available});
    e
}

/// The largest body a call may send.
pub const MAX_BODY_BYTES: usize = 1 << 20;

async fn rpc(State(api): State<Arc<Api>>, headers: HeaderMap, body: axum::body::Body) -> Response {
    match answer(&api, &headers, body).await {
        Ok(result) => (StatusCode::OK, axum::Json(json!({"result": result}))).into_response(),
        Err(e) => error_response(&e),
    }
}

/// Reads a call's body, at most `MAX_BODY_BYTES`.
pub async fn read_body(body: axum::body::Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| {
        let mut e = invalid("body", format!("larger than the limit of {MAX_BODY_BYTES} bytes"));
        e.details["limit"] = json!(MAX_BODY_BYTES);
        e
    })
}

async fn answer(api: &Api, headers: &HeaderMap, body: axum::body::Body) -> Result<Value, ApiError> {
    let presented = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    // Unauthenticated callers learn nothing about the body, and it is not even read.
    api.gate.knows(presented)?;
    let body = read_body(body).await?;
    let call: Value = serde_json::from_slice(&body).map_err(|e| invalid("body", format!("not valid JSON: {e}")))?;
    let Some(method) = call.get("method").and_then(Value::as_str) else {
        return Err(invalid("method", "a call is {\"method\": …, \"params\": {…}}"));
    };
    let params = match call.get("params") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(p @ Value::Object(_)) => p.clone(),
        Some(_) => return Err(invalid("params", "must be an object")),
    };
    // A method that does not exist is said so to anyone admitted at all; the roles of the
    // methods that do exist are the gate's.
    if !METHODS.contains(&method) && !ohf_app::STRATEGY_METHODS.contains(&method) {
        return Err(method_not_found(method));
    }
    let client = api.gate.admit(presented, method)?;
    tracing::debug!(method, client = %client, "rpc");
    call_method(&api.app, method, &params).await
}

/// Runs one method of the API on `app`: the JSON API without its transport, for in-process
/// callers that want the same answers.
pub async fn call_method(app: &App, method: &str, p: &Value) -> Result<Value, ApiError> {
    match method {
        "requestMachines" => request_machines(app, p).await,
        "requestReturnMachines" => request_return(app, p).await,
        "getRequestStatus" => request_status(app, p).await,
        "getReturnRequests" => return_requests(app, p).await,
        "cancelRequest" => Ok(request_view(&app.cancel(&text(p, "requestId")?).await?)),
        "listRequests" => list_requests(app, p).await,
        "watchRequest" => watch_request(app, p).await,
        "getAvailableTemplates" => {
            let list = app.available_templates().await?;
            Ok(json!({"templates": list.iter().map(template_view).collect::<Vec<_>>()}))
        }
        "getTemplate" => Ok(template_view(&app.template_info(&text(p, "templateId")?).await?)),
        "validateTemplate" => validate_template(app, p).await,
        "getRequestHistory" => {
            let id = text(p, "requestId")?;
            let events = app.history(&id).await?;
            Ok(json!({"requestId": id, "events": events.iter().map(event_view).collect::<Vec<_>>()}))
        }
        "getResilienceStatus" => resilience_status(app).await,
        "reconcile" => Ok(reconcile_view(&app.reconcile(None).await)),
        m if ohf_app::STRATEGY_METHODS.contains(&m) => Ok(app.provider_call(m, p).await?),
        "purgeHistory" => {
            let days = integer(p, "keepDays")?.ok_or_else(|| invalid("keepDays", "is required"))?;
            let days = u32::try_from(days)
                .map_err(|_| invalid("keepDays", format!("must be from 0 to {}, got {days}", u32::MAX)))?;
            Ok(json!({"deleted": app.purge_history(days).await?, "keepDays": days}))
        }
        "sweepOrphans" => {
            let defaults = ohf_app::SweepOptions::default();
            let options = ohf_app::SweepOptions {
                min_age_secs: integer(p, "minAgeSeconds")?.unwrap_or(defaults.min_age_secs).max(0),
                dry_run: p.get("dryRun").and_then(Value::as_bool).unwrap_or(false),
                max_terminations: integer(p, "maxTerminations")?
                    .map_or(defaults.max_terminations, |n| usize::try_from(n.max(0)).unwrap_or(usize::MAX)),
                max_share_percent: integer(p, "maxSharePercent")?
                    .map_or(defaults.max_share_percent, |n| n.clamp(0, 100) as u32),
            };
            Ok(sweep_view(&app.sweep_orphans(&options).await))
        }
        other => Err(method_not_found(other)),
    }
}

/// Every circuit breaker as the store holds it: shared by every process, so this is the state
/// the next call of any of them meets.
async fn resilience_status(app: &App) -> Result<Value, ApiError> {
    let breakers: Vec<Value> = app
        .shared_state("breaker/")
        .await?
        .into_iter()
        .map(|(key, state)| {
            let mut parts = key.splitn(3, '/').skip(1);
            let mut view = json!({"provider": parts.next(), "service": parts.next()});
            if let (Value::Object(v), Value::Object(fields)) = (&mut view, state) {
                v.extend(fields);
            }
            view
        })
        .collect();
    // Counters are per process: through a daemon, the daemon's.
    let providers: Vec<Value> = app
        .provider_reports()
        .into_iter()
        .map(|(name, report)| {
            let mut v = json!({"provider": name});
            if let (Value::Object(v), Value::Object(fields)) = (&mut v, report) {
                v.extend(fields);
            }
            v
        })
        .collect();
    Ok(json!({"breakers": breakers, "providers": providers}))
}

async fn watch_request(app: &App, p: &Value) -> Result<Value, ApiError> {
    let id = text(p, "requestId")?;
    let from = integer(p, "fromSeq")?.unwrap_or(0);
    if from < 0 {
        return Err(invalid("fromSeq", "must not be negative"));
    }
    let wait = match integer(p, "waitSeconds")? {
        Some(w) if w < 0 => return Err(invalid("waitSeconds", "must not be negative")),
        Some(w) => Duration::from_secs(w as u64).min(MAX_WATCH_WAIT),
        None => Duration::from_secs(20),
    };
    let (request, events) = app.changes(&id, from as u64, wait, Duration::from_millis(500)).await?;
    let next = events.last().map_or(from as u64, |e| e.seq + 1);
    let done = request.state().is_terminal() && !request.needs_work() && next >= request.seq();
    Ok(json!({
        "request": request_view(&request),
        "events": events.iter().map(event_view).collect::<Vec<_>>(),
        "nextSeq": next,
        "final": done,
    }))
}

async fn validate_template(app: &App, p: &Value) -> Result<Value, ApiError> {
    let raw = match p.get("template") {
        Some(t @ Value::Object(_)) => t,
        _ => return Err(invalid("template", "is required: one template object")),
    };
    Ok(match app.validate_template(raw).await? {
        TemplateCheck::Valid(t) => {
            json!({"valid": true, "templateId": t.id().as_str(), "problems": [], "template": t.to_hf()})
        }
        TemplateCheck::Invalid { field, message } => {
            let id = raw.get("templateId").and_then(Value::as_str).unwrap_or_default();
            json!({"valid": false, "templateId": id, "problems": [{"field": field, "message": message}]})
        }
    })
}

fn text(p: &Value, field: &str) -> Result<String, ApiError> {
    match p.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        Some(Value::Null) | None => Err(invalid(field, "is required")),
        Some(_) => Err(invalid(field, "must be a string")),
    }
}

fn optional_text(p: &Value, field: &str) -> Result<Option<String>, ApiError> {
    match p.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => text(p, field).map(Some),
    }
}

fn integer(p: &Value, field: &str) -> Result<Option<i64>, ApiError> {
    match p.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| invalid(field, format!("must be a whole number, got {v}"))),
    }
}

fn string_map(p: &Value, field: &str) -> Result<BTreeMap<String, String>, ApiError> {
    match p.get(field) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                Value::Number(n) => Ok((k.clone(), n.to_string())),
                Value::Bool(b) => Ok((k.clone(), b.to_string())),
                _ => Err(invalid(field, format!("the value of '{k}' must be a string"))),
            })
            .collect(),
        Some(_) => Err(invalid(field, "must be an object")),
    }
}

async fn request_machines(app: &App, p: &Value) -> Result<Value, ApiError> {
    let metadata: BTreeMap<String, Value> = match p.get("metadata") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(m)) => m.clone().into_iter().collect(),
        Some(_) => return Err(invalid("metadata", "must be an object")),
    };
    let zones = match p.get("placement").and_then(|pl| pl.get("availabilityZones").or_else(|| pl.get("zones"))) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(z)) => z.iter().filter_map(Value::as_str).map(String::from).collect(),
        Some(_) => return Err(invalid("placement", "availabilityZones must be a list")),
    };
    let cmd = RequestMachines {
        template_id: text(p, "templateId")?,
        count: integer(p, "machineCount")?.ok_or_else(|| invalid("machineCount", "is required"))?,
        request_id: optional_text(p, "requestId")?,
        timeout: integer(p, "timeout")?,
        tags: string_map(p, "tags")?,
        metadata,
        priority: optional_text(p, "priority")?,
        zones,
        provider: optional_text(p, "provider")?,
    };
    Ok(request_view(&app.request_machines(cmd).await?))
}

async fn request_return(app: &App, p: &Value) -> Result<Value, ApiError> {
    let list = |field: &str| -> Result<Vec<String>, ApiError> {
        match p.get(field) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(String::from).ok_or_else(|| invalid(field, "must list strings")))
                .collect(),
            Some(_) => Err(invalid(field, "must be a list of strings")),
        }
    };
    let ids = list("machineIds")?;
    let names = list("machineNames")?;
    if ids.is_empty() && names.is_empty() {
        return Err(invalid("machineIds", "is required: a list of machine ids (or machineNames: host names)"));
    }
    let machines = ids
        .into_iter()
        .map(|id| MachineRef { id: Some(id), name: None })
        .chain(names.into_iter().map(|name| MachineRef { id: None, name: Some(name) }))
        .collect();
    let force = p.get("force").and_then(Value::as_bool).unwrap_or(false);
    let cmd =
        RequestReturn { machines, request_id: optional_text(p, "requestId")?, force, timeout: integer(p, "timeout")? };
    Ok(request_view(&app.request_return(cmd).await?))
}

async fn request_status(app: &App, p: &Value) -> Result<Value, ApiError> {
    if let Some(Value::Array(ids)) = p.get("requestIds") {
        let ids: Vec<String> = ids.iter().filter_map(Value::as_str).map(String::from).collect();
        let found = app.request_status(&ids).await?;
        let requests: Vec<Value> = found
            .iter()
            .map(|(id, r)| match r {
                Some(r) => request_view(r),
                None => json!({"requestId": id, "error": {"code": "REQUEST_NOT_FOUND", "message": format!("request '{id}' not found")}}),
            })
            .collect();
        return Ok(json!({"requests": requests}));
    }
    let id = text(p, "requestId")?;
    match app.request_status(std::slice::from_ref(&id)).await?.pop() {
        Some((_, Some(r))) => Ok(request_view(&r)),
        _ => Err(DomainError::RequestNotFound { request_id: id }.into()),
    }
}

async fn return_requests(app: &App, p: &Value) -> Result<Value, ApiError> {
    // The seed asks after one return request by id; Host Factory asks which hosts the cloud takes back.
    if p.get("requestId").is_some() {
        let status = request_status(app, p).await?;
        if status["kind"] != RequestKind::Return.as_str() {
            return Err(invalid("requestId", "names a provision request, not a return request"));
        }
        return Ok(status);
    }
    let known = match p.get("machines") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .map(|m| MachineRef {
                id: m.get("machineId").and_then(Value::as_str).map(String::from),
                name: m.get("name").and_then(Value::as_str).map(String::from),
            })
            .collect(),
        Some(_) => return Err(invalid("machines", "must be a list")),
    };
    let notices = app.return_notices(&known).await?;
    let requests: Vec<Value> = notices
        .iter()
        .map(|n| json!({"machine": n.machine, "machineId": n.machine_id.as_str(), "gracePeriod": n.grace_period}))
        .collect();
    Ok(json!({"requests": requests}))
}

async fn list_requests(app: &App, p: &Value) -> Result<Value, ApiError> {
    let states = match p.get("status") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).map(String::from).collect(),
        Some(_) => return Err(invalid("status", "must be a state or a list of states")),
    }
    .iter()
    .map(|s| RequestState::parse(s).ok_or_else(|| invalid("status", format!("'{s}' is not a request state"))))
    .collect::<Result<Vec<_>, _>>()?;
    let limit = integer(p, "limit")?.map(|l| l.clamp(1, 10_000) as u32).or(Some(100));
    let kind = match optional_text(p, "kind")?.as_deref() {
        None => None,
        Some("provision") => Some(RequestKind::Provision),
        Some("return") => Some(RequestKind::Return),
        Some(other) => return Err(invalid("kind", format!("'{other}' is not provision or return"))),
    };
    let list = app.list_requests(&RequestFilter { states, kind, limit, ..Default::default() }).await?;
    Ok(json!({"requests": list.iter().map(request_view).collect::<Vec<_>>()}))
}
