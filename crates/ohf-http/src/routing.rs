//! The routing-requests seed's REST resource: `/routing-requests` (GET the collection, POST a
//! request), `/routing-requests/{id}` (GET, DELETE), `/routing-requests/{id}/workloads` (GET),
//! `/routing-requests/{id}/{workload_id}` (DELETE), `/workloads/{id}` and
//! `/available-capacity`. Query options are the seed's (`force`, `mode`, `recheckHost`,
//! `details`, `record_placement`); each call is admitted by the gate as its JSON method.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ohf_api::ApiError;
use ohf_api::access::Gate;
use ohf_api::routing::flag;
use ohf_app::App;
use serde_json::{Map, Value, json};

use crate::{error_response, read_body};

struct Resource {
    app: Arc<App>,
    gate: Arc<Gate>,
}

/// The routes of the resource behind `gate`.
pub fn routes(app: Arc<App>, gate: Arc<Gate>) -> Router {
    Router::new()
        .route("/routing-requests", get(collection).post(create))
        .route("/routing-requests/", get(collection).post(create))
        .route("/routing-requests/{id}", get(one).delete(delete_request))
        .route("/routing-requests/{id}/workloads", get(workloads))
        .route("/routing-requests/{id}/{workload}", axum::routing::delete(delete_workload))
        .route("/workloads/{id}", get(workload))
        .route("/available-capacity", get(capacity))
        .with_state(Arc::new(Resource { app, gate }))
}

/// The query string as a JSON object of strings (`+` and `%XX` decoded).
fn query(uri: &Uri) -> Result<Map<String, Value>, ApiError> {
    let mut out = Map::new();
    for pair in uri.query().unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, "true"));
        let (k, v) = (decode(k)?, decode(v)?);
        out.insert(k, Value::String(v));
    }
    Ok(out)
}

fn decode(text: &str) -> Result<String, ApiError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
                let Some(byte) = byte else {
                    return Err(ApiError::invalid("query", format!("bad escape in '{text}'")));
                };
                out.push(byte);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| ApiError::invalid("query", "not UTF-8"))
}

/// Admits the caller for `method` and runs it with `params`.
async fn run(r: &Resource, headers: &HeaderMap, method: &str, mut params: Value) -> Result<Value, ApiError> {
    let presented = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let client = r.gate.admit(presented, method)?;
    ohf_api::default_requester(method, &mut params, &client);
    ohf_api::call_method(&r.app, method, &params).await
}

fn answer(result: Result<Value, ApiError>, ok: StatusCode) -> Response {
    match result {
        Ok(v) => (ok, axum::Json(v)).into_response(),
        Err(e) => error_response(&e),
    }
}

async fn collection(State(r): State<Arc<Resource>>, headers: HeaderMap, uri: Uri) -> Response {
    let params = match query(&uri) {
        Ok(q) => Value::Object(q),
        Err(e) => return error_response(&e),
    };
    answer(run(&r, &headers, "listRoutingRequests", params).await, StatusCode::OK)
}

async fn create(State(r): State<Arc<Resource>>, headers: HeaderMap, uri: Uri, body: axum::body::Body) -> Response {
    let result = async {
        let presented = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        r.gate.knows(presented)?;
        let body = read_body(body).await?;
        let mut form: Value = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            serde_json::from_slice(&body).map_err(|e| ApiError::invalid("body", format!("not valid JSON: {e}")))?
        };
        let Value::Object(fields) = &mut form else {
            return Err(ApiError::invalid("body", "a routing request is a JSON object"));
        };
        // The seed's options ride on the URI: `?force=true`, `?mode=cost_sensitive`.
        let options = Value::Object(query(&uri)?);
        for (k, v) in options.as_object().into_iter().flatten() {
            let value = match k.as_str() {
                "force" | "provision" => Value::Bool(flag(&options, k)?),
                "mode" => v.clone(),
                other => return Err(ApiError::invalid(other, "is not an option of POST /routing-requests")),
            };
            fields.insert(k.clone(), value);
        }
        run(&r, &headers, "routeRequest", form).await
    }
    .await;
    match result {
        Ok(v) => {
            let mut response = (StatusCode::CREATED, axum::Json(&v)).into_response();
            if let Some(Ok(location)) = v.get("href").and_then(Value::as_str).map(HeaderValue::from_str) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        Err(e) => error_response(&e),
    }
}

fn with_query(uri: &Uri, fields: Value) -> Result<Value, ApiError> {
    let mut q = query(uri)?;
    if let Value::Object(f) = fields {
        q.extend(f);
    }
    Ok(Value::Object(q))
}

async fn one(State(r): State<Arc<Resource>>, headers: HeaderMap, uri: Uri, Path(id): Path<String>) -> Response {
    let result = async { run(&r, &headers, "getRoutingRequest", with_query(&uri, json!({"id": id}))?).await }.await;
    answer(result, StatusCode::OK)
}

async fn workloads(State(r): State<Arc<Resource>>, headers: HeaderMap, uri: Uri, Path(id): Path<String>) -> Response {
    let result = async { run(&r, &headers, "getRoutingWorkloads", with_query(&uri, json!({"id": id}))?).await }.await;
    answer(result, StatusCode::OK)
}

async fn workload(State(r): State<Arc<Resource>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    answer(run(&r, &headers, "getWorkload", json!({"id": id})).await, StatusCode::OK)
}

async fn capacity(State(r): State<Arc<Resource>>, headers: HeaderMap, uri: Uri) -> Response {
    let result = async { run(&r, &headers, "getAvailableCapacity", with_query(&uri, json!({}))?).await }.await;
    answer(result, StatusCode::OK)
}

async fn delete_request(
    State(r): State<Arc<Resource>>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    unroute(&r, &headers, &uri, id, None).await
}

async fn delete_workload(
    State(r): State<Arc<Resource>>,
    headers: HeaderMap,
    uri: Uri,
    Path((id, workload)): Path<(String, String)>,
) -> Response {
    unroute(&r, &headers, &uri, id, Some(workload)).await
}

/// DELETE of a request or one of its workloads (`?record_placement=true`): 204.
async fn unroute(r: &Resource, headers: &HeaderMap, uri: &Uri, id: String, workload: Option<String>) -> Response {
    let result = async {
        let record = flag(&Value::Object(query(uri)?), "record_placement")?;
        let params = json!({"id": id, "workloadId": workload, "recordPlacement": record});
        run(r, headers, "unrouteRequest", params).await
    }
    .await;
    match result {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error_response(&e),
    }
}
