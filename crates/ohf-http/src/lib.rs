//! The HTTP JSON API of `ohf serve`, in the shape of the request-management seed:
//! `POST /rpc` with `{"method": "requestMachines", "params": {…}}` answers `{"result": …}` or
//! `{"error": {"code": "TEMPLATE_NOT_FOUND", "message": …, "details": …}}`. One table maps every
//! error code to an HTTP status; a busy request answers 423 with `Retry-After`.
//!
//! An accepted mutation answers with the request's state at that moment, not a bare "ok": the
//! change itself happens in the background, so clients poll `getRequestStatus` (or watch)
//! until it shows.

mod access;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use ohf_app::view::{event_view, request_view};
use ohf_app::{App, AppError, MachineRef, RequestFilter, RequestMachines, RequestReturn};
use ohf_domain::{DomainError, ErrorCode, RequestKind, RequestState};
use serde_json::{Map, Value, json};

/// Every method of the API.
pub const METHODS: [&str; 8] = [
    "requestMachines",
    "requestReturnMachines",
    "getRequestStatus",
    "getReturnRequests",
    "cancelRequest",
    "listRequests",
    "getAvailableTemplates",
    "getRequestHistory",
];

/// The one table from error codes to HTTP statuses.
pub fn http_status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::ValidationError => StatusCode::BAD_REQUEST,
        ErrorCode::TemplateNotFound | ErrorCode::RequestNotFound => StatusCode::NOT_FOUND,
        ErrorCode::DuplicateRequest | ErrorCode::IllegalTransition => StatusCode::CONFLICT,
        ErrorCode::InsufficientCapacity => StatusCode::CONFLICT,
        ErrorCode::QuotaExceeded => StatusCode::FORBIDDEN,
        ErrorCode::ProviderIncompatible => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::ResourceBusy => StatusCode::LOCKED,
        ErrorCode::ProviderError => StatusCode::BAD_GATEWAY,
        ErrorCode::StoreError => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::ConfigurationError | ErrorCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An answer of the API: a result, or an error with its status and optional retry hint.
enum Answer {
    Result(Value),
    Error { status: StatusCode, code: String, message: String, details: Value, retry_after: Option<u64> },
}

impl From<AppError> for Answer {
    fn from(e: AppError) -> Self {
        let retry_after = match &e {
            AppError::Busy { retry_after_secs, .. } => Some(*retry_after_secs),
            _ => None,
        };
        Answer::Error {
            status: http_status(e.code()),
            code: e.code().as_str().to_owned(),
            message: e.to_string(),
            details: e.details(),
            retry_after,
        }
    }
}

impl From<DomainError> for Answer {
    fn from(e: DomainError) -> Self {
        AppError::from(e).into()
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        match self {
            Answer::Result(result) => (StatusCode::OK, axum::Json(json!({"result": result}))).into_response(),
            Answer::Error { status, code, message, details, retry_after } => {
                let body = json!({"error": {"code": code, "message": message, "details": details}});
                let mut response = (status, axum::Json(body)).into_response();
                if let Some(secs) = retry_after {
                    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
                }
                response
            }
        }
    }
}

fn invalid(field: &str, message: impl Into<String>) -> Answer {
    DomainError::validation(field, message).into()
}

pub use access::{ApiToken, RateLimit, Role};

/// Who may call, and how often.
#[derive(Debug, Clone, Default)]
pub struct ApiOptions {
    /// Bearer tokens; none configured means every caller is an admin (listen on loopback).
    pub tokens: Vec<ApiToken>,
    pub rate_limit: Option<RateLimit>,
}

struct Api {
    app: Arc<App>,
    tokens: Vec<ApiToken>,
    limiter: Option<access::Limiter>,
}

/// The routes of the API, open to every caller.
pub fn router(app: Arc<App>) -> Router {
    router_with(app, ApiOptions::default(), Arc::new(ohf_app::SystemClock))
}

/// The routes of the API with authentication and rate limits; `clock` paces the limits.
pub fn router_with(app: Arc<App>, options: ApiOptions, clock: Arc<dyn ohf_app::Clock>) -> Router {
    let limiter = options.rate_limit.map(|l| access::Limiter::new(l, clock));
    let api = Arc::new(Api { app, tokens: options.tokens, limiter });
    Router::new().route("/rpc", post(rpc)).with_state(api)
}

fn refuse(status: StatusCode, code: &str, message: &str, retry_after: Option<u64>) -> Response {
    Answer::Error { status, code: code.into(), message: message.into(), details: json!({}), retry_after }
        .into_response()
}

async fn rpc(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Response {
    let presented = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let (client, role) = if api.tokens.is_empty() {
        ("anonymous".to_owned(), Role::Admin)
    } else {
        match access::authenticate(&api.tokens, presented) {
            Some(t) => (t.name.clone(), t.role),
            None => {
                return refuse(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "a valid bearer token is required", None);
            }
        }
    };
    if let Some(limiter) = &api.limiter
        && let Err(wait) = limiter.take(&client)
    {
        return refuse(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", "too many calls; retry later", Some(wait));
    }
    let app = &api.app;
    let call: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return invalid("body", format!("not valid JSON: {e}")).into_response(),
    };
    let Some(method) = call.get("method").and_then(Value::as_str) else {
        return invalid("method", "a call is {\"method\": …, \"params\": {…}}").into_response();
    };
    let params = match call.get("params") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(p @ Value::Object(_)) => p.clone(),
        Some(_) => return invalid("params", "must be an object").into_response(),
    };
    if role < access::needed(method) {
        return refuse(StatusCode::FORBIDDEN, "PERMISSION_DENIED", &format!("'{client}' may not call {method}"), None);
    }
    tracing::debug!(method, client = %client, "rpc");
    dispatch(app, method, &params).await.into_response()
}

async fn dispatch(app: &App, method: &str, p: &Value) -> Answer {
    let outcome = match method {
        "requestMachines" => request_machines(app, p).await,
        "requestReturnMachines" => request_return(app, p).await,
        "getRequestStatus" => request_status(app, p).await,
        "getReturnRequests" => return_requests(app, p).await,
        "cancelRequest" => match text(p, "requestId") {
            Ok(id) => app.cancel(&id).await.map(|r| request_view(&r)).map_err(Answer::from),
            Err(e) => Err(e),
        },
        "listRequests" => list_requests(app, p).await,
        "getAvailableTemplates" => app
            .available_templates()
            .await
            .map(|list| {
                let templates: Vec<Value> = list
                    .iter()
                    .map(|a| json!({"templateId": a.template.id().as_str(), "availableNumber": a.available, "template": a.template}))
                    .collect();
                json!({"templates": templates})
            })
            .map_err(Answer::from),
        "getRequestHistory" => match text(p, "requestId") {
            Ok(id) => app
                .history(&id)
                .await
                .map(|events| json!({"requestId": id, "events": events.iter().map(event_view).collect::<Vec<_>>()}))
                .map_err(Answer::from),
            Err(e) => Err(e),
        },
        other => Err(Answer::Error {
            status: StatusCode::NOT_FOUND,
            code: "METHOD_NOT_FOUND".into(),
            message: format!("method '{other}' not found"),
            details: json!({"method": other, "availableMethods": METHODS}),
            retry_after: None,
        }),
    };
    match outcome {
        Ok(result) => Answer::Result(result),
        Err(answer) => answer,
    }
}

fn text(p: &Value, field: &str) -> Result<String, Answer> {
    match p.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        Some(Value::Null) | None => Err(invalid(field, "is required")),
        Some(_) => Err(invalid(field, "must be a string")),
    }
}

fn optional_text(p: &Value, field: &str) -> Result<Option<String>, Answer> {
    match p.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => text(p, field).map(Some),
    }
}

fn integer(p: &Value, field: &str) -> Result<Option<i64>, Answer> {
    match p.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| invalid(field, format!("must be a whole number, got {v}"))),
    }
}

fn string_map(p: &Value, field: &str) -> Result<BTreeMap<String, String>, Answer> {
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

async fn request_machines(app: &App, p: &Value) -> Result<Value, Answer> {
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
    app.request_machines(cmd).await.map(|r| request_view(&r)).map_err(Answer::from)
}

async fn request_return(app: &App, p: &Value) -> Result<Value, Answer> {
    let ids = match p.get("machineIds") {
        Some(Value::Array(ids)) => ids
            .iter()
            .map(|v| v.as_str().map(String::from).ok_or_else(|| invalid("machineIds", "must list strings")))
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(invalid("machineIds", "is required: a list of machine ids")),
    };
    let machines = ids.into_iter().map(|id| MachineRef { id: Some(id), name: None }).collect();
    let force = p.get("force").and_then(Value::as_bool).unwrap_or(false);
    let cmd =
        RequestReturn { machines, request_id: optional_text(p, "requestId")?, force, timeout: integer(p, "timeout")? };
    app.request_return(cmd).await.map(|r| request_view(&r)).map_err(Answer::from)
}

async fn request_status(app: &App, p: &Value) -> Result<Value, Answer> {
    if let Some(Value::Array(ids)) = p.get("requestIds") {
        let ids: Vec<String> = ids.iter().filter_map(Value::as_str).map(String::from).collect();
        let found = app.request_status(&ids).await.map_err(Answer::from)?;
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
    match app.request_status(std::slice::from_ref(&id)).await.map_err(Answer::from)?.pop() {
        Some((_, Some(r))) => Ok(request_view(&r)),
        _ => Err(DomainError::RequestNotFound { request_id: id }.into()),
    }
}

async fn return_requests(app: &App, p: &Value) -> Result<Value, Answer> {
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
    let notices = app.return_notices(&known).await.map_err(Answer::from)?;
    let requests: Vec<Value> = notices
        .iter()
        .map(|n| json!({"machine": n.machine, "machineId": n.machine_id.as_str(), "gracePeriod": n.grace_period}))
        .collect();
    Ok(json!({"requests": requests}))
}

async fn list_requests(app: &App, p: &Value) -> Result<Value, Answer> {
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
    let list =
        app.list_requests(&RequestFilter { states, kind, limit, ..Default::default() }).await.map_err(Answer::from)?;
    Ok(json!({"requests": list.iter().map(request_view).collect::<Vec<_>>()}))
}
