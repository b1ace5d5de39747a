//! The service implementations: each call passes the gate, runs on the application, and maps
//! its errors through the one table.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ohf_api::ApiError;
use ohf_api::access::Gate;
use ohf_app::{App, MachineRef, RequestFilter, RequestMachines, RequestReturn, TemplateCheck};
use serde_json::Value;
use tokio_stream::Stream;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::convert;
use crate::pb;
use ohf_app::commands::{CancelRequest, ValidateTemplate};
use ohf_app::queries::{
    GetAvailableTemplates, GetRequestHistory, GetRequestStatus, GetReturnNotices, GetTemplate, ListRequests,
    WatchRequest,
};

/// An API error as a gRPC status: the table's code, the ohf code as ErrorInfo (with the details
/// flattened into its metadata) and in the `ohf-error-code` trailer, and `retry-after` with a
/// RetryInfo when waiting helps.
pub fn status(e: &ApiError) -> Status {
    let code = Code::from_i32(e.wire().grpc as i32);
    let metadata: std::collections::HashMap<String, String> = match &e.details {
        Value::Object(fields) => {
            fields.iter().map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned))).collect()
        }
        _ => Default::default(),
    };
    let mut details = ErrorDetails::new();
    details.set_error_info(e.code.as_str(), "ohf", metadata);
    let mut headers = MetadataMap::new();
    if let Ok(v) = MetadataValue::try_from(e.code.as_str()) {
        headers.insert("ohf-error-code", v);
    }
    if let Some(secs) = e.retry_after {
        details.set_retry_info(Some(Duration::from_secs(secs)));
        headers.insert("retry-after", MetadataValue::from(secs));
    }
    Status::with_error_details_and_metadata(code, e.message.clone(), details, headers)
}

pub(crate) fn fail(e: impl Into<ApiError>) -> Status {
    status(&e.into())
}

/// Admits a call by its method name in the JSON API (same roles and limits everywhere).
/// Answers the caller's name (a token's, or `anonymous`).
pub(crate) fn admit<T>(gate: &Gate, request: &Request<T>, method: &str) -> Result<String, Status> {
    let authorization = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
    gate.admit(authorization, method).map_err(|e| status(&e))
}

fn required(value: &str, field: &str) -> Result<String, Status> {
    match value.trim() {
        "" => Err(fail(ApiError::invalid(field, "is required"))),
        v => Ok(v.to_owned()),
    }
}

pub(crate) fn optional(value: &str) -> Option<String> {
    Some(value.trim().to_owned()).filter(|v| !v.is_empty())
}

fn seconds(value: u32) -> Option<i64> {
    (value > 0).then_some(i64::from(value))
}

pub struct RequestApi {
    app: Arc<App>,
    gate: Arc<Gate>,
    /// How often a watch looks at the store for changes made by other processes.
    poll: Duration,
}

impl RequestApi {
    pub fn new(app: Arc<App>, gate: Arc<Gate>) -> Self {
        Self { app, gate, poll: Duration::from_millis(500) }
    }
}

type UpdateStream = Pin<Box<dyn Stream<Item = Result<pb::RequestUpdate, Status>> + Send>>;

#[tonic::async_trait]
impl pb::request_service_server::RequestService for RequestApi {
    async fn request_machines(
        &self,
        request: Request<pb::RequestMachinesRequest>,
    ) -> Result<Response<pb::Request>, Status> {
        let client = admit(&self.gate, &request, "requestMachines")?;
        let r = request.into_inner();
        let metadata: BTreeMap<String, Value> = match r.metadata.as_ref().map(convert::from_struct) {
            Some(Value::Object(m)) => m.into_iter().collect(),
            _ => BTreeMap::new(),
        };
        let cmd = RequestMachines {
            template_id: required(&r.template_id, "templateId")?,
            count: i64::from(r.machine_count),
            request_id: optional(&r.request_id),
            timeout: seconds(r.timeout_seconds),
            tags: r.tags.into_iter().collect(),
            metadata,
            priority: optional(&r.priority),
            zones: r.availability_zones,
            provider: optional(&r.provider),
            requester: optional(&r.requester).or(Some(client)),
        };
        let created = self.app.execute(cmd).await.map_err(fail)?;
        Ok(Response::new(convert::request(&created)))
    }

    async fn request_return_machines(
        &self,
        request: Request<pb::RequestReturnMachinesRequest>,
    ) -> Result<Response<pb::Request>, Status> {
        let client = admit(&self.gate, &request, "requestReturnMachines")?;
        let r = request.into_inner();
        if r.machine_ids.is_empty() {
            return Err(fail(ApiError::invalid("machineIds", "is required: a list of machine ids")));
        }
        let cmd = RequestReturn {
            machines: r.machine_ids.into_iter().map(|id| MachineRef { id: Some(id), name: None }).collect(),
            request_id: optional(&r.request_id),
            force: r.force,
            timeout: seconds(r.timeout_seconds),
            drain_timeout: seconds(r.drain_timeout_seconds),
            requester: optional(&r.requester).or(Some(client)),
        };
        let created = self.app.execute(cmd).await.map_err(fail)?;
        Ok(Response::new(convert::request(&created)))
    }

    async fn get_request_status(
        &self,
        request: Request<pb::GetRequestStatusRequest>,
    ) -> Result<Response<pb::GetRequestStatusResponse>, Status> {
        admit(&self.gate, &request, "getRequestStatus")?;
        let ids = request.into_inner().request_ids;
        if ids.is_empty() {
            return Err(fail(ApiError::invalid("requestIds", "name at least one request")));
        }
        let found = self.app.ask(GetRequestStatus { request_ids: ids.to_vec() }).await.map_err(fail)?;
        let mut answer = pb::GetRequestStatusResponse::default();
        for (id, r) in found {
            match r {
                Some(r) => answer.requests.push(convert::request(&r)),
                None => answer.missing.push(id),
            }
        }
        Ok(Response::new(answer))
    }

    async fn list_requests(
        &self,
        request: Request<pb::ListRequestsRequest>,
    ) -> Result<Response<pb::ListRequestsResponse>, Status> {
        admit(&self.gate, &request, "listRequests")?;
        let r = request.into_inner();
        let states = r
            .states
            .iter()
            .map(|s| {
                pb::RequestState::try_from(*s)
                    .ok()
                    .and_then(convert::state_from)
                    .ok_or_else(|| fail(ApiError::invalid("states", format!("{s} is not a request state"))))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let kind = match pb::RequestKind::try_from(r.kind) {
            Ok(pb::RequestKind::Unspecified) => None,
            Ok(pb::RequestKind::Provision) => Some(ohf_domain::RequestKind::Provision),
            Ok(pb::RequestKind::Return) => Some(ohf_domain::RequestKind::Return),
            Err(_) => return Err(fail(ApiError::invalid("kind", format!("{} is not a request kind", r.kind)))),
        };
        let limit = Some(if r.limit == 0 { 100 } else { r.limit.min(10_000) });
        let filter = RequestFilter { states, kind, limit, ..Default::default() };
        let list = self.app.ask(ListRequests { filter: filter.clone() }).await.map_err(fail)?;
        Ok(Response::new(pb::ListRequestsResponse { requests: list.iter().map(convert::request).collect() }))
    }

    async fn cancel_request(
        &self,
        request: Request<pb::CancelRequestRequest>,
    ) -> Result<Response<pb::Request>, Status> {
        let client = admit(&self.gate, &request, "cancelRequest")?;
        let id = required(&request.into_inner().request_id, "requestId")?;
        let cmd = CancelRequest { request_id: id.to_string(), requester: Some(client) };
        let cancelled = self.app.execute(cmd).await.map_err(fail)?;
        Ok(Response::new(convert::request(&cancelled)))
    }

    type WatchRequestStream = UpdateStream;

    async fn watch_request(
        &self,
        request: Request<pb::WatchRequestRequest>,
    ) -> Result<Response<Self::WatchRequestStream>, Status> {
        admit(&self.gate, &request, "watchRequest")?;
        let r = request.into_inner();
        let id = required(&r.request_id, "requestId")?;
        // The first answer (the request now, or not found) comes before the stream opens.
        let (now, _) = self
            .app
            .ask(WatchRequest { request_id: id.to_string(), from_seq: u64::MAX, wait: Duration::ZERO, poll: self.poll })
            .await
            .map_err(fail)?;
        let mut from = r.from_seq;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let app = self.app.clone();
        let poll = self.poll;
        tokio::spawn(async move {
            let first = pb::RequestUpdate { event: None, request: Some(convert::request(&now)) };
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            loop {
                let changes = tokio::select! {
                    c = app.ask(WatchRequest { request_id: id.to_string(), from_seq: from, wait: Duration::from_secs(30), poll }) => c,
                    () = tx.closed() => return,
                };
                let (request, events) = match changes {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(Err(fail(e))).await;
                        return;
                    }
                };
                for e in &events {
                    from = e.seq + 1;
                    let update =
                        pb::RequestUpdate { event: Some(convert::event(e)), request: Some(convert::request(&request)) };
                    if tx.send(Ok(update)).await.is_err() {
                        return;
                    }
                }
                if request.state().is_terminal() && !request.needs_work() && from >= request.seq() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn get_request_history(
        &self,
        request: Request<pb::GetRequestHistoryRequest>,
    ) -> Result<Response<pb::GetRequestHistoryResponse>, Status> {
        admit(&self.gate, &request, "getRequestHistory")?;
        let id = required(&request.into_inner().request_id, "requestId")?;
        let events = self.app.ask(GetRequestHistory { request_id: id.to_string() }).await.map_err(fail)?;
        Ok(Response::new(pb::GetRequestHistoryResponse { events: events.iter().map(convert::event).collect() }))
    }

    async fn get_return_requests(
        &self,
        request: Request<pb::GetReturnRequestsRequest>,
    ) -> Result<Response<pb::GetReturnRequestsResponse>, Status> {
        admit(&self.gate, &request, "getReturnRequests")?;
        let known: Vec<MachineRef> =
            request.into_inner().machine_ids.into_iter().map(|id| MachineRef { id: Some(id), name: None }).collect();
        let notices = self.app.ask(GetReturnNotices { known: known.to_vec() }).await.map_err(fail)?;
        Ok(Response::new(pb::GetReturnRequestsResponse {
            notices: notices
                .into_iter()
                .map(|n| pb::ReturnNotice {
                    machine: n.machine,
                    machine_id: n.machine_id.to_string(),
                    grace_period: n.grace_period,
                })
                .collect(),
        }))
    }
}

pub struct TemplateApi {
    app: Arc<App>,
    gate: Arc<Gate>,
}

impl TemplateApi {
    pub fn new(app: Arc<App>, gate: Arc<Gate>) -> Self {
        Self { app, gate }
    }
}

#[tonic::async_trait]
impl pb::template_service_server::TemplateService for TemplateApi {
    async fn list_templates(
        &self,
        request: Request<pb::ListTemplatesRequest>,
    ) -> Result<Response<pb::ListTemplatesResponse>, Status> {
        admit(&self.gate, &request, "getAvailableTemplates")?;
        let list = self.app.ask(GetAvailableTemplates).await.map_err(fail)?;
        Ok(Response::new(pb::ListTemplatesResponse { templates: list.iter().map(convert::template).collect() }))
    }

    async fn get_template(
        &self,
        request: Request<pb::GetTemplateRequest>,
    ) -> Result<Response<pb::TemplateInfo>, Status> {
        admit(&self.gate, &request, "getTemplate")?;
        let id = required(&request.into_inner().template_id, "templateId")?;
        let info = self.app.ask(GetTemplate { template_id: id.to_string() }).await.map_err(fail)?;
        Ok(Response::new(convert::template(&info)))
    }

    async fn validate_template(
        &self,
        request: Request<pb::ValidateTemplateRequest>,
    ) -> Result<Response<pb::ValidateTemplateResponse>, Status> {
        admit(&self.gate, &request, "validateTemplate")?;
        let Some(raw) = request.into_inner().template.as_ref().map(convert::from_struct) else {
            return Err(fail(ApiError::invalid("template", "is required: one template object")));
        };
        let id = raw.get("templateId").and_then(Value::as_str).unwrap_or_default().to_owned();
        let answer = match self.app.execute(ValidateTemplate { template: raw.clone() }).await.map_err(fail)? {
            TemplateCheck::Valid(t) => pb::ValidateTemplateResponse {
                valid: true,
                template_id: t.id().to_string(),
                problems: Vec::new(),
                template: Some(convert::object(&t.to_hf())),
            },
            TemplateCheck::Invalid { field, message } => pb::ValidateTemplateResponse {
                valid: false,
                template_id: id,
                problems: vec![pb::ValidationProblem { field, message }],
                template: None,
            },
        };
        Ok(Response::new(answer))
    }
}
