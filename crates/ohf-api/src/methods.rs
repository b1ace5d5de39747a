//! The JSON API's methods without a transport: the request-management seed's names and
//! fields, each turned into its typed command or query and its answer into the seed's JSON.
//! HTTP (`POST /rpc`), the command line (in process or through a daemon) and the metrics page
//! call these; gRPC maps its own messages onto the same commands and queries.

use std::collections::BTreeMap;
use std::time::Duration;

use ohf_app::commands::{CancelRequest, PurgeHistory, ValidateTemplate};
use ohf_app::queries::{
    GetAvailableTemplates, GetRequestHistory, GetRequestStatus, GetResilienceStatus, GetReturnNotices, GetTemplate,
    ListRequests, WatchRequest,
};
use ohf_app::{App, AppError, MachineRef, RequestFilter, RequestMachines, RequestReturn, TemplateCheck};
use ohf_domain::{DomainError, ErrorCode, RequestKind, RequestState};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::fields::{optional_text, text};
use crate::view::{event_view, reconcile_view, request_view, sweep_view, template_view};

/// Every method of the API but the provider-strategy and routing ones.
pub const METHODS: [&str; 18] = [
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
    "getRequestReport",
    "getOverview",
    "checkInstallation",
    "reconcile",
    "sweepOrphans",
    "purgeHistory",
];

/// The longest window a report covers: 90 days.
const MAX_REPORT_HOURS: f64 = 2160.0;

/// The longest a `watchRequest` call waits for a change.
const MAX_WATCH_WAIT: Duration = Duration::from_secs(60);

/// The provider-strategy seed's nine methods, by name.
pub const PROVIDER_METHODS: [&str; 9] = [
    "executeProviderOperation",
    "selectProviderStrategy",
    "registerProviderStrategy",
    "configureProviderStrategy",
    "updateProviderHealth",
    "getProviderHealth",
    "listAvailableProviders",
    "getProviderMetrics",
    "getProviderCapabilities",
];

/// Runs one of the provider-strategy seed's methods on its JSON document: the document becomes
/// the method's typed command or query (a bad one is a VALIDATION_ERROR naming the field), and
/// the answer is the seed's document. Every front end (HTTP, gRPC, the CLI) calls this.
pub async fn provider_method(app: &App, method: &str, p: &Value) -> Result<Value, AppError> {
    use ohf_app::commands::*;
    use ohf_app::providers::parse_document as parse;
    use ohf_app::queries::*;
    fn document(answer: impl serde::Serialize) -> Result<Value, AppError> {
        serde_json::to_value(answer).map_err(|e| AppError::Configuration(format!("answer not serializable: {e}")))
    }
    match method {
        "executeProviderOperation" => document(app.execute(parse::<ExecuteProviderOperation>(p, "data")?).await?),
        "selectProviderStrategy" => document(app.ask(parse::<SelectProviderStrategy>(p, "data")?).await?),
        "registerProviderStrategy" => {
            document(app.execute(RegisterProviderStrategy { entry: parse(p, "data")? }).await?)
        }
        "configureProviderStrategy" => document(app.execute(parse::<ConfigureProviderStrategy>(p, "data")?).await?),
        "updateProviderHealth" => document(app.execute(parse::<UpdateProviderHealth>(p, "data")?).await?),
        "getProviderHealth" => document(app.ask(GetProviderHealth(parse(p, "data")?)).await?),
        "listAvailableProviders" => document(app.ask(ListAvailableProviders(parse(p, "data")?)).await?),
        "getProviderMetrics" => document(app.ask(GetProviderMetrics(parse(p, "data")?)).await?),
        "getProviderCapabilities" => document(app.ask(GetProviderCapabilities(parse(p, "data")?)).await?),
        other => Err(DomainError::validation("method", format!("'{other}' is not a provider-strategy method")).into()),
    }
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid(field, message)
}

/// Whether `method` is a method of the API (the seed's or the provider strategy's).
pub fn is_method(method: &str) -> bool {
    known_method(method).is_some()
}

/// The method table's own name of `method`, when it is one.
pub fn known_method(method: &str) -> Option<&'static str> {
    METHODS.iter().chain(PROVIDER_METHODS.iter()).chain(crate::routing::METHODS.iter()).copied().find(|m| *m == method)
}

/// The answer to a method that does not exist: METHOD_NOT_FOUND with every method there is.
pub fn method_not_found(method: &str) -> ApiError {
    let mut e = ApiError::new(ErrorCode::MethodNotFound, format!("method '{method}' not found"));
    let available: Vec<&str> =
        METHODS.iter().chain(PROVIDER_METHODS.iter()).chain(crate::routing::METHODS.iter()).copied().collect();
    e.details = json!({"method": method, "availableMethods": available});
    e
}

/// Runs one method of the API on `app`: the JSON API without its transport, for in-process
/// callers that want the same answers.
pub async fn call_method(app: &App, method: &str, p: &Value) -> Result<Value, ApiError> {
    match method {
        "requestMachines" => request_machines(app, p).await,
        "requestReturnMachines" => request_return(app, p).await,
        "getRequestStatus" => request_status(app, p).await,
        "getReturnRequests" => return_requests(app, p).await,
        "cancelRequest" => {
            let cmd = CancelRequest { request_id: text(p, "requestId")?, requester: optional_text(p, "requester")? };
            Ok(request_view(&app.execute(cmd).await?))
        }
        "listRequests" => list_requests(app, p).await,
        "watchRequest" => watch_request(app, p).await,
        "getAvailableTemplates" => {
            let list = app.ask(GetAvailableTemplates).await?;
            Ok(json!({"templates": list.iter().map(template_view).collect::<Vec<_>>()}))
        }
        "getTemplate" => Ok(template_view(&app.ask(GetTemplate { template_id: text(p, "templateId")? }).await?)),
        "validateTemplate" => validate_template(app, p).await,
        "getRequestHistory" => {
            let id = text(p, "requestId")?;
            let events = app.ask(GetRequestHistory { request_id: id.to_string() }).await?;
            Ok(json!({"requestId": id, "events": events.iter().map(event_view).collect::<Vec<_>>()}))
        }
        "getResilienceStatus" => resilience_status(app).await,
        "getOverview" => crate::overview::overview(app).await,
        "checkInstallation" => {
            let findings = app.ask(ohf_app::queries::CheckInstallation).await?;
            Ok(json!({"ok": findings.iter().all(|f| f.ok), "checks": findings}))
        }
        "getRequestReport" => {
            let hours = match p.get("periodHours") {
                None | Some(Value::Null) => 24.0,
                Some(v) => v.as_f64().ok_or_else(|| invalid("periodHours", "must be a number of hours"))?,
            };
            if !(hours > 0.0 && hours <= MAX_REPORT_HOURS) {
                return Err(invalid("periodHours", format!("must be more than 0 and at most {MAX_REPORT_HOURS}")));
            }
            let period = Duration::from_secs_f64(hours * 3600.0);
            let report = app.ask(ohf_app::queries::GetRequestReport { period }).await?;
            serde_json::to_value(report).map_err(|e| ApiError::new(ErrorCode::InternalError, e.to_string()))
        }
        "reconcile" => Ok(reconcile_view(&app.reconcile(None).await)),
        m if PROVIDER_METHODS.contains(&m) => Ok(provider_method(app, m, p).await?),
        m if crate::routing::METHODS.contains(&m) => crate::routing::call(app, m, p).await,
        "purgeHistory" => {
            let days = integer(p, "keepDays")?.ok_or_else(|| invalid("keepDays", "is required"))?;
            let days = u32::try_from(days)
                .map_err(|_| invalid("keepDays", format!("must be from 0 to {}, got {days}", u32::MAX)))?;
            Ok(json!({"deleted": app.execute(PurgeHistory { keep_days: days }).await?, "keepDays": days}))
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
/// the next call of any of them meets; and this process's call counters per provider.
async fn resilience_status(app: &App) -> Result<Value, ApiError> {
    let status = app.ask(GetResilienceStatus).await?;
    let breakers: Vec<Value> = status
        .breakers
        .into_iter()
        .map(|b| {
            let mut view = json!({"provider": b.provider, "service": b.service});
            if let (Value::Object(v), Ok(Value::Object(fields))) = (&mut view, serde_json::to_value(&b.breaker)) {
                v.extend(fields);
            }
            view
        })
        .collect();
    // Counters are per process: through a daemon, the daemon's.
    let providers: Vec<Value> = status
        .providers
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
    let (request, events) = app
        .ask(WatchRequest { request_id: id.to_string(), from_seq: from as u64, wait, poll: Duration::from_millis(500) })
        .await?;
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
    Ok(match app.execute(ValidateTemplate { template: raw.clone() }).await? {
        TemplateCheck::Valid(t) => {
            json!({"valid": true, "templateId": t.id().as_str(), "problems": [], "template": t.to_hf()})
        }
        TemplateCheck::Invalid { field, message } => {
            let id = raw.get("templateId").and_then(Value::as_str).unwrap_or_default();
            json!({"valid": false, "templateId": id, "problems": [{"field": field, "message": message}]})
        }
    })
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
        requester: optional_text(p, "requester")?,
    };
    Ok(request_view(&app.execute(cmd).await?))
}

/// Names `who` as the requester of a creation or cancel (`requestMachines`,
/// `requestReturnMachines`, `cancelRequest`, `routeRequest`) whose parameters name none: the caller the front end knows (a token's name, the OS user).
pub fn default_requester(method: &str, params: &mut Value, who: &str) {
    if matches!(method, "requestMachines" | "requestReturnMachines" | "cancelRequest" | "routeRequest")
        && let Value::Object(fields) = params
        && fields.get("requester").is_none_or(Value::is_null)
    {
        fields.insert("requester".into(), Value::String(who.to_owned()));
    }
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
    let cmd = RequestReturn {
        machines,
        request_id: optional_text(p, "requestId")?,
        force,
        timeout: integer(p, "timeout")?,
        drain_timeout: integer(p, "drainTimeout")?,
        requester: optional_text(p, "requester")?,
    };
    Ok(request_view(&app.execute(cmd).await?))
}

async fn request_status(app: &App, p: &Value) -> Result<Value, ApiError> {
    if let Some(Value::Array(ids)) = p.get("requestIds") {
        let ids: Vec<String> = ids.iter().filter_map(Value::as_str).map(String::from).collect();
        let found = app.ask(GetRequestStatus { request_ids: ids.to_vec() }).await?;
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
    match app.ask(GetRequestStatus { request_ids: vec![id.clone()] }).await?.pop() {
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
    let notices = app.ask(GetReturnNotices { known: known.to_vec() }).await?;
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
    let list = app.ask(ListRequests { filter: RequestFilter { states, kind, limit, ..Default::default() } }).await?;
    Ok(json!({"requests": list.iter().map(request_view).collect::<Vec<_>>()}))
}
