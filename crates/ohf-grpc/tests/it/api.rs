//! The gRPC API over a real socket, driven with the generated Rust client.

use std::sync::Arc;
use std::time::Duration;

use ohf_api::access::{ApiOptions, ApiToken, Gate, RateLimit};
use ohf_app::memory::{ManualClock, MemoryStore, SequentialIds, StaticCatalog};
use ohf_app::{App, AppSettings, Clock, EventBus, SystemClock};
use ohf_cloud_sim::{SimCloud, SimConfig};
use ohf_domain::{ProviderName, Template};
use ohf_grpc::pb;
use ohf_grpc::pb::request_service_client::RequestServiceClient;
use ohf_grpc::pb::template_service_client::TemplateServiceClient;
use serde_json::json;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

struct Daemon {
    addr: String,
    store: Arc<MemoryStore>,
}

fn templates() -> Vec<Template> {
    [
        json!({"templateId": "standard-compute", "maxNumber": 50, "imageId": "ami-1", "vmType": "m5.large"}),
        json!({"templateId": "high-memory", "maxNumber": 5, "imageId": "ami-1", "vmType": "r5.large"}),
    ]
    .iter()
    .map(|t| Template::from_json(t).unwrap())
    .collect()
}

/// An app on the simulated cloud, advanced in the background as a daemon would, served over
/// gRPC on a free loopback port.
async fn daemon(options: ApiOptions, clock: Arc<dyn Clock>, launch_latency_ms: u64) -> Daemon {
    let store = Arc::new(MemoryStore::new());
    let sim = SimCloud::in_memory(
        ProviderName::new("sim-1").unwrap(),
        SimConfig { launch_latency_ms, shutdown_latency_ms: 0, ..SimConfig::default() },
        Arc::new(SystemClock),
    );
    let app = Arc::new(
        App::builder(store.clone(), Arc::new(StaticCatalog(templates())))
            .provider(Arc::new(sim))
            .clock(Arc::new(SystemClock))
            .ids(Arc::new(SequentialIds::default()))
            .bus(EventBus::default())
            .settings(AppSettings::default())
            .build()
            .unwrap(),
    );
    let worker = app.clone();
    tokio::spawn(async move {
        loop {
            worker.reconcile(None).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let routes = ohf_grpc::routes(app, Arc::new(Gate::new(options, clock))).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder().add_routes(routes).serve_with_incoming(ohf_grpc::incoming(listener)),
    );
    Daemon { addr, store }
}

async fn open() -> Daemon {
    daemon(ApiOptions::default(), Arc::new(SystemClock), 200).await
}

/// Machines take long to boot: requests stay in progress for the whole test.
async fn slow() -> Daemon {
    daemon(ApiOptions::default(), Arc::new(SystemClock), 60_000).await
}

impl Daemon {
    async fn requests(&self) -> RequestServiceClient<Channel> {
        RequestServiceClient::connect(self.addr.clone()).await.unwrap()
    }
    async fn templates(&self) -> TemplateServiceClient<Channel> {
        TemplateServiceClient::connect(self.addr.clone()).await.unwrap()
    }
}

fn create(template: &str, count: u32) -> pb::RequestMachinesRequest {
    pb::RequestMachinesRequest { template_id: template.into(), machine_count: count, ..Default::default() }
}

fn as_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// The ohf code, from the ErrorInfo detail and from the trailer; they must agree.
fn ohf_code(s: &Status) -> String {
    let info = s.get_details_error_info().expect("an ErrorInfo detail");
    assert_eq!(info.domain, "ohf");
    let trailer = s.metadata().get("ohf-error-code").unwrap().to_str().unwrap();
    assert_eq!(info.reason, trailer);
    info.reason
}

/// Watches a request to its end; answers its last state and every event type seen.
async fn watch(client: &mut RequestServiceClient<Channel>, id: &str) -> (pb::Request, Vec<String>) {
    let mut stream = client
        .watch_request(pb::WatchRequestRequest { request_id: id.into(), from_seq: 0 })
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while let Some(update) = tokio::time::timeout_at(deadline, stream.next()).await.expect("the stream ends") {
        let update = update.unwrap();
        if let Some(e) = update.event {
            events.push(e.r#type);
        }
        last = update.request;
    }
    (last.unwrap(), events)
}

#[tokio::test]
async fn create_watch_list_return_and_cancel() {
    let d = open().await;
    let mut client = d.requests().await;
    let created = client.request_machines(create("standard-compute", 3)).await.unwrap().into_inner();
    assert_eq!(created.machine_count, 3);
    assert_eq!(created.template_id, "standard-compute");

    let (done, events) = watch(&mut client, &created.request_id).await;
    assert_eq!(done.status(), pb::RequestState::Completed);
    assert_eq!(done.machines.len(), 3);
    assert!(done.machines.iter().all(|m| m.status == "running" && m.result == "succeed"), "{done:?}");
    assert_eq!(events.first().map(String::as_str), Some("created"), "the history is replayed from 0");
    assert!(events.iter().any(|e| e == "machines_launched"), "{events:?}");
    assert!(events.iter().any(|e| e == "state_changed"), "{events:?}");

    let listed = client.list_requests(pb::ListRequestsRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.requests.len(), 1);
    let completed = pb::ListRequestsRequest { states: vec![pb::RequestState::Completed as i32], ..Default::default() };
    assert_eq!(client.list_requests(completed).await.unwrap().into_inner().requests.len(), 1);

    let ids: Vec<String> = done.machines.iter().map(|m| m.machine_id.clone()).collect();
    let ret = client
        .request_return_machines(pb::RequestReturnMachinesRequest { machine_ids: ids, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ret.kind(), pb::RequestKind::Return);
    let (back, _) = watch(&mut client, &ret.request_id).await;
    assert_eq!(back.status(), pb::RequestState::Completed);
    assert!(back.machines.iter().all(|m| m.status == "terminated"), "{back:?}");

    let slow = slow().await;
    let mut client = slow.requests().await;
    let second = client.request_machines(create("standard-compute", 2)).await.unwrap().into_inner();
    let cancelled = client
        .cancel_request(pb::CancelRequestRequest { request_id: second.request_id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.status(), pb::RequestState::Cancelled, "the answer is the request's state, not a bare ok");
    let (after, _) = watch(&mut client, &second.request_id).await;
    assert_eq!(after.status(), pb::RequestState::Cancelled);

    let status = client
        .get_request_status(pb::GetRequestStatusRequest { request_ids: vec![second.request_id.clone(), "nope".into()] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.requests.len(), 1);
    assert_eq!(status.missing, vec!["nope".to_owned()]);
    let history = client
        .get_request_history(pb::GetRequestHistoryRequest { request_id: second.request_id })
        .await
        .unwrap()
        .into_inner();
    assert!(history.events.iter().any(|e| e.r#type == "state_changed"
        && e.data.as_ref().unwrap().fields["to"].kind
            == Some(prost_types::value::Kind::StringValue("CANCELLED".into()))));
}

#[tokio::test]
async fn each_error_arrives_with_its_code_and_details() {
    let d = open().await;
    let mut client = d.requests().await;

    let e = client.request_machines(create("nope", 1)).await.unwrap_err();
    assert_eq!((e.code(), ohf_code(&e).as_str()), (Code::NotFound, "TEMPLATE_NOT_FOUND"));
    let info = e.get_details_error_info().unwrap();
    assert_eq!(info.metadata["templateId"], "nope");
    assert!(info.metadata["availableTemplates"].contains("high-memory"), "{:?}", info.metadata);

    let e = client.request_machines(create("standard-compute", 0)).await.unwrap_err();
    assert_eq!((e.code(), ohf_code(&e).as_str()), (Code::InvalidArgument, "VALIDATION_ERROR"));

    let e = client.request_machines(create("high-memory", 6)).await.unwrap_err();
    assert_eq!((e.code(), ohf_code(&e).as_str()), (Code::ResourceExhausted, "INSUFFICIENT_CAPACITY"));
    assert_eq!(e.get_details_error_info().unwrap().metadata["availableCapacity"], "5");

    let mut first = create("standard-compute", 1);
    first.request_id = "mine-1".into();
    client.request_machines(first.clone()).await.unwrap();
    assert_eq!(client.request_machines(first.clone()).await.unwrap().into_inner().request_id, "mine-1", "idempotent");
    first.machine_count = 2;
    let e = client.request_machines(first).await.unwrap_err();
    assert_eq!((e.code(), ohf_code(&e).as_str()), (Code::AlreadyExists, "DUPLICATE_REQUEST"));

    let e = client.cancel_request(pb::CancelRequestRequest { request_id: "ghost".into() }).await.unwrap_err();
    assert_eq!((e.code(), ohf_code(&e).as_str()), (Code::NotFound, "REQUEST_NOT_FOUND"));

    let (done, _) = watch(&mut client, "mine-1").await;
    assert_eq!(done.status(), pb::RequestState::Completed);
    let e = client.cancel_request(pb::CancelRequestRequest { request_id: "mine-1".into() }).await.unwrap_err();
    assert_eq!((e.code(), ohf_code(&e).as_str()), (Code::FailedPrecondition, "ILLEGAL_TRANSITION"));

    let e =
        client.watch_request(pb::WatchRequestRequest { request_id: "ghost".into(), from_seq: 0 }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    let mut templates = d.templates().await;
    let e = templates.get_template(pb::GetTemplateRequest { template_id: "nope".into() }).await.unwrap_err();
    assert_eq!((e.code(), ohf_code(&e).as_str()), (Code::NotFound, "TEMPLATE_NOT_FOUND"));
}

#[tokio::test]
async fn templates_list_get_and_validate() {
    let d = open().await;
    let mut client = d.templates().await;
    let list = client.list_templates(pb::ListTemplatesRequest {}).await.unwrap().into_inner();
    let ids: Vec<&str> = list.templates.iter().map(|t| t.template_id.as_str()).collect();
    assert_eq!(ids, ["standard-compute", "high-memory"]);
    let one = client.get_template(pb::GetTemplateRequest { template_id: "high-memory".into() }).await.unwrap();
    let one = one.into_inner();
    assert_eq!((one.max_number, one.available_number), (5, 5));
    let fields = &one.template.unwrap().fields;
    assert_eq!(fields["imageId"].kind, Some(prost_types::value::Kind::StringValue("ami-1".into())));
    assert!(fields.contains_key("attributes"), "derived attributes are filled in");

    let doc = |v: serde_json::Value| {
        let serde_json::Value::Object(m) = v else { unreachable!() };
        pb::ValidateTemplateRequest {
            template: Some(prost_types::Struct {
                fields: m
                    .into_iter()
                    .map(|(k, v)| {
                        let kind = match v {
                            serde_json::Value::String(s) => prost_types::value::Kind::StringValue(s),
                            serde_json::Value::Number(n) => prost_types::value::Kind::NumberValue(n.as_f64().unwrap()),
                            other => panic!("{other}"),
                        };
                        (k, prost_types::Value { kind: Some(kind) })
                    })
                    .collect(),
            }),
        }
    };
    let ok = client
        .validate_template(doc(json!({"templateId": "t", "maxNumber": 3, "imageId": "ami-1", "vmType": "c5.large"})))
        .await
        .unwrap()
        .into_inner();
    assert!(ok.valid, "{ok:?}");
    let bad = client
        .validate_template(doc(json!({"templateId": "t", "maxNumber": -7, "imageId": "ami-1", "vmType": "c5.large"})))
        .await
        .unwrap()
        .into_inner();
    assert!(!bad.valid);
    assert_eq!(bad.problems[0].field, "maxNumber of template 't'");
}

#[tokio::test]
async fn a_busy_request_is_unavailable_with_retry_after_and_succeeds_later() {
    let d = slow().await;
    let mut client = d.requests().await;
    let created = client.request_machines(create("standard-compute", 1)).await.unwrap().into_inner();
    d.store.set_contended(true);
    let e =
        client.cancel_request(pb::CancelRequestRequest { request_id: created.request_id.clone() }).await.unwrap_err();
    assert_eq!((e.code(), ohf_code(&e).as_str()), (Code::Unavailable, "RESOURCE_BUSY"));
    let wait: u64 = e.metadata().get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert_eq!(e.get_details_retry_info().unwrap().retry_delay, Some(Duration::from_secs(wait)));
    d.store.set_contended(false);
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let r = client.cancel_request(pb::CancelRequestRequest { request_id: created.request_id }).await;
    assert_eq!(r.unwrap().into_inner().status(), pb::RequestState::Cancelled);
}

fn tokens() -> Vec<ApiToken> {
    serde_json::from_value(json!([
        {"name": "dashboard", "token": "read-token", "role": "reader"},
        {"name": "scheduler", "token": "ops-token", "role": "operator"}
    ]))
    .unwrap()
}

#[tokio::test]
async fn tokens_and_roles_decide_who_may_call_what() {
    let d = daemon(ApiOptions { tokens: tokens(), ..Default::default() }, Arc::new(SystemClock), 200).await;
    let mut client = d.requests().await;
    let list = pb::ListRequestsRequest::default;
    let e = client.list_requests(list()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = client.list_requests(as_token(list(), "wrong")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = client.request_machines(as_token(create("standard-compute", 1), "read-token")).await.unwrap_err();
    assert_eq!((e.code(), ohf_code(&e).as_str()), (Code::PermissionDenied, "PERMISSION_DENIED"));
    client.list_requests(as_token(list(), "read-token")).await.unwrap();
    client.request_machines(as_token(create("standard-compute", 1), "ops-token")).await.unwrap();
    let listed = client.list_requests(as_token(list(), "read-token")).await.unwrap().into_inner();
    assert_eq!(listed.requests.len(), 1, "only the operator's request was stored");
    let mut templates = d.templates().await;
    assert_eq!(templates.list_templates(pb::ListTemplatesRequest {}).await.unwrap_err().code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_client_over_its_rate_is_exhausted_with_retry_after_and_succeeds_after_the_wait() {
    let clock = Arc::new(ManualClock::new(ohf_domain::testing::T0));
    let options =
        ApiOptions { tokens: tokens(), rate_limit: Some(RateLimit { per_sec: 0.5, burst: 2.0 }), ..Default::default() };
    let d = daemon(options, clock.clone(), 200).await;
    let mut client = d.requests().await;
    let list = || as_token(pb::ListRequestsRequest::default(), "read-token");
    client.list_requests(list()).await.unwrap();
    client.list_requests(list()).await.unwrap();
    let e = client.list_requests(list()).await.unwrap_err();
    assert_eq!((e.code(), ohf_code(&e).as_str()), (Code::ResourceExhausted, "RATE_LIMITED"));
    assert_eq!(e.metadata().get("retry-after").unwrap(), "2", "one call refills in 2 s at 0.5/s");
    client.list_requests(as_token(pb::ListRequestsRequest::default(), "ops-token")).await.unwrap();
    clock.advance_secs(2);
    client.list_requests(list()).await.unwrap();
}

#[tokio::test]
async fn health_and_reflection_answer() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let d = open().await;
    let channel = Channel::from_shared(d.addr.clone()).unwrap().connect().await.unwrap();
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "ohf.v1.RequestService", "ohf.v1.TemplateService", "ohf.v1.ProviderStrategyService"] {
        let check = tonic_health::pb::HealthCheckRequest { service: service.into() };
        assert_eq!(health.check(check).await.unwrap().into_inner().status(), ServingStatus::Serving, "{service}");
    }
    let mut reflection = ServerReflectionClient::new(channel);
    let ask = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection.server_reflection_info(tokio_stream::iter([ask])).await.unwrap().into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) = answers.next().await.unwrap().unwrap().message_response
    else {
        panic!("not a service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"ohf.v1.RequestService".to_owned()), "{names:?}");
    assert!(names.contains(&"ohf.v1.TemplateService".to_owned()), "{names:?}");
    assert!(names.contains(&"ohf.v1.ProviderStrategyService".to_owned()), "{names:?}");
}

#[tokio::test]
async fn provider_strategy_methods_answer_the_seeds_documents_and_refuse_bad_fields() {
    use ohf_grpc::pb::provider_strategy_service_client::ProviderStrategyServiceClient;

    let d = open().await;
    let mut client = ProviderStrategyServiceClient::connect(d.addr.clone()).await.unwrap();
    let executed = client
        .execute_provider_operation(pb::ExecuteProviderOperationRequest {
            operation_type: "CREATE_INSTANCES".into(),
            parameters: Some(pb::OperationParameters {
                template_id: Some("standard-compute".into()),
                count: Some(2),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(executed.provider_name, "sim-1", "{executed:?}");
    assert_eq!(executed.operation_type, "CREATE_INSTANCES");
    let Some(pb::operation_outcome::Result::InstancesRequested(accepted)) = &executed.result else {
        panic!("not a launch: {executed:?}")
    };
    assert!(accepted.request_id.starts_with("req-"), "{accepted:?}");
    assert_eq!(accepted.machine_count, 2);

    let status = client
        .execute_provider_operation(pb::ExecuteProviderOperationRequest {
            operation_type: "GET_INSTANCE_STATUS".into(),
            parameters: Some(pb::OperationParameters {
                request_id: Some(accepted.request_id.clone()),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let Some(pb::operation_outcome::Result::Instances(list)) = &status.result else {
        panic!("not an instance list: {status:?}")
    };
    assert!(list.instances.iter().all(|i| i.provider_name == "sim-1"), "{list:?}");

    let listed = client.list_available_providers(pb::ProviderQuery::default()).await.unwrap().into_inner();
    assert_eq!(listed.providers[0].strategy_name, "sim-1", "{listed:?}");
    assert_eq!(listed.count, 1);
    assert_eq!(listed.providers[0].is_healthy, Some(true));
    let metrics = client
        .get_provider_metrics(pb::ProviderQuery { include_operation_breakdown: true, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(metrics.providers[0].operations["CREATE_INSTANCES"].total_operations, 1, "{metrics:?}");
    let updated = client
        .update_provider_health(pb::UpdateProviderHealthRequest {
            provider_name: "sim-1".into(),
            health_status: Some(pb::HealthStatus {
                is_healthy: false,
                status_message: "maintenance".into(),
                error_details: Some(pb::HealthErrorDetails { error_code: "MAINT".into(), retry_after: Some(60) }),
            }),
            source: "ops".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let health = updated.health_status.unwrap();
    assert_eq!(health.status_message, "maintenance");
    assert!(!health.is_healthy);
    assert_eq!(health.error_code.as_deref(), Some("MAINT"));
    assert!(health.unhealthy_until.is_some());
    let configured = client
        .configure_provider_strategy(pb::ConfigureProviderStrategyRequest {
            health_check_interval: Some(120),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let configuration = configured.configuration.unwrap();
    assert_eq!(configuration.health_check_interval, 120);
    // Parts not given keep their values.
    assert_eq!(configuration.default_selection_policy, "FIRST_AVAILABLE");
    assert_eq!(configuration.selection_criteria.unwrap().require_healthy, Some(true));

    let e = client
        .update_provider_health(pb::UpdateProviderHealthRequest {
            provider_name: "nobody".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!((e.code(), ohf_code(&e).as_str()), (Code::InvalidArgument, "VALIDATION_ERROR"));
    let e = client
        .configure_provider_strategy(pb::ConfigureProviderStrategyRequest {
            default_selection_policy: Some("CHEAPEST".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("CHEAPEST"), "{}", e.message());
    let e = client
        .select_provider_strategy(pb::SelectProviderStrategyRequest {
            operation_type: "REBOOT".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn routing_requests_route_read_list_unroute_and_refuse_bad_fields() {
    use ohf_grpc::pb::routing_service_client::RoutingServiceClient;
    let d = daemon(ApiOptions { tokens: tokens(), ..Default::default() }, Arc::new(SystemClock), 200).await;
    let mut client = RoutingServiceClient::connect(d.addr.clone()).await.unwrap();
    let form = || pb::RouteRequestRequest {
        workloads: vec![pb::WorkloadSpec {
            name: Some("now-vm".into()),
            catalog_spec: Some("standard-compute".into()),
            count: Some(2),
            disks: vec![pb::Disk { size_gb: 30, volume_type: Some("gp3".into()), pref_datastore: None }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let e = client.route_request(as_token(form(), "read-token")).await.unwrap_err();
    assert_eq!(ohf_code(&e), "PERMISSION_DENIED");
    let made = client.route_request(as_token(form(), "ops-token")).await.unwrap().into_inner();
    assert_eq!(made.status, "PLACED");
    assert_eq!(made.requester, "scheduler", "the caller routes it");
    assert_eq!(made.href, format!("/routing-requests/{}", made.id));
    let w = &made.workloads[0];
    assert_eq!((w.count, w.status.as_str(), w.disks[0].size_gb), (2, "PLACED", 30));
    let placement = w.placement.as_ref().unwrap();
    assert_eq!((placement.venue.as_str(), placement.provider.as_str()), ("sim-1", "sim-1"));

    let got = client
        .get_routing_request(as_token(
            pb::GetRoutingRequestRequest { id: made.id.clone(), recheck_host: true },
            "read-token",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, made);
    let listed = client
        .list_routing_requests(as_token(
            pb::ListRoutingRequestsRequest { status: Some("PLACED".into()), requester: None },
            "read-token",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.routing_requests.len(), 1);
    let capacity = client
        .get_available_capacity(as_token(
            pb::GetAvailableCapacityRequest { catalog_spec: Some("high-memory".into()), ..Default::default() },
            "read-token",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(capacity.venues.len(), 1);
    assert_eq!(capacity.venues[0].available_today, None, "a venue without quotas sets no limit");

    let bad = pb::RouteRequestRequest { mode: Some("fastest".into()), ..form() };
    let e = client.route_request(as_token(bad, "ops-token")).await.unwrap_err();
    assert_eq!((e.code(), ohf_code(&e).as_str()), (Code::InvalidArgument, "VALIDATION_ERROR"));
    let unknown = pb::UnrouteRequestRequest { id: "missing".into(), ..Default::default() };
    let e = client.unroute_request(as_token(unknown, "ops-token")).await.unwrap_err();
    assert_eq!((e.code(), ohf_code(&e).as_str()), (Code::NotFound, "REQUEST_NOT_FOUND"));
    let gone = client
        .unroute_request(as_token(pb::UnrouteRequestRequest { id: made.id.clone(), ..Default::default() }, "ops-token"))
        .await
        .unwrap()
        .into_inner();
    assert!(gone.deleted && gone.remaining.is_none());
}
