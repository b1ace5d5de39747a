//! The HTTP transport of ohf's JSON API (the methods are `ohf-api`'s), in the shape of the
//! request-management seed:
//! `POST /rpc` with `{"method": "requestMachines", "params": {…}}` answers `{"result": …}` or
//! `{"error": {"code": "TEMPLATE_NOT_FOUND", "message": …, "details": …}}`. Statuses come from
//! the one table in `ohf_api::error`; a busy request answers 423 and a client over its rate limit
//! 429, both with `Retry-After`.
//!
//! An accepted mutation answers with the request's state at that moment, not a bare "ok": the
//! change itself happens in the background, so clients poll `getRequestStatus` or long-poll
//! `watchRequest` until it shows.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use ohf_api::access::{ApiOptions, Gate};
use ohf_api::{ApiError, call_method, method_not_found};
use ohf_app::App;
use serde_json::{Map, Value, json};

pub mod routing;

/// An error as an HTTP response: the seed's body, the table's status, `Retry-After` when given.
pub fn error_response(e: &ApiError) -> Response {
    error_response_with(e, e.to_json())
}

/// An error answered with `body`: the table's status, the code in `ohf-error-code`, and
/// `Retry-After` where waiting helps.
pub fn error_response_with(e: &ApiError, body: serde_json::Value) -> Response {
    let status = StatusCode::from_u16(e.wire().http).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert("ohf-error-code", HeaderValue::from_static(e.code.as_str()));
    if let Some(secs) = e.retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
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
    Router::new()
        .route("/rpc", post(rpc))
        .with_state(Arc::new(Api { app: app.clone(), gate: gate.clone() }))
        .merge(routing::routes(app, gate))
}

/// The largest body a call may send.
pub const MAX_BODY_BYTES: usize = 1 << 20;

async fn rpc(State(api): State<Arc<Api>>, headers: HeaderMap, body: axum::body::Body) -> Response {
    let mut called = None;
    let mut response = match answer(&api, &headers, body, &mut called).await {
        Ok(result) => (StatusCode::OK, axum::Json(json!({"result": result}))).into_response(),
        Err(e) => error_response(&e),
    };
    if let Some(method) = called {
        response.extensions_mut().insert(ohf_api::CalledMethod(method));
    }
    response
}

/// Reads a call's body, at most `MAX_BODY_BYTES`.
pub async fn read_body(body: axum::body::Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| {
        let mut e = invalid("body", format!("larger than the limit of {MAX_BODY_BYTES} bytes"));
        e.details["limit"] = json!(MAX_BODY_BYTES);
        e
    })
}

/// Answers one call; `called` learns the method once it is known to exist.
async fn answer(
    api: &Api,
    headers: &HeaderMap,
    body: axum::body::Body,
    called: &mut Option<&'static str>,
) -> Result<Value, ApiError> {
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
    let Some(known) = ohf_api::known_method(method) else {
        return Err(method_not_found(method));
    };
    *called = Some(known);
    let client = api.gate.admit(presented, method)?;
    tracing::debug!(method, client = %client, "rpc");
    let mut params = params;
    ohf_api::default_requester(method, &mut params, &client);
    call_method(&api.app, method, &params).await
}
