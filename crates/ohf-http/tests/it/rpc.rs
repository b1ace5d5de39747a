use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ohf_app::memory::{MemoryStore, SequentialIds, StaticCatalog};
use ohf_app::{App, AppSettings, EventBus, SystemClock};
use ohf_cloud_sim::{SimCloud, SimConfig};
use ohf_domain::{ProviderName, Template};
use serde_json::{Value, json};
use tower::ServiceExt;

pub(crate) struct Api {
    app: Arc<App>,
    store: Arc<MemoryStore>,
}

pub(crate) fn api(settings: AppSettings) -> Api {
    let templates = vec![
        Template::from_json(
            &json!({"templateId": "standard-compute", "maxNumber": 50, "imageId": "ami-1", "vmType": "m5.large"}),
        )
        .unwrap(),
        Template::from_json(
            &json!({"templateId": "high-memory", "maxNumber": 5, "imageId": "ami-1", "vmType": "r5.large"}),
        )
        .unwrap(),
    ];
    let store = Arc::new(MemoryStore::new());
    let sim = SimCloud::in_memory(
        ProviderName::new("sim-1").unwrap(),
        SimConfig { launch_latency_ms: 0, shutdown_latency_ms: 0, ..SimConfig::default() },
        Arc::new(SystemClock),
    );
    let app = App::builder(store.clone(), Arc::new(StaticCatalog(templates)))
        .provider(Arc::new(sim))
        .clock(Arc::new(SystemClock))
        .ids(Arc::new(SequentialIds::default()))
        .bus(EventBus::default())
        .settings(settings)
        .build()
        .unwrap();
    Api { app: Arc::new(app), store }
}

impl Api {
    pub(crate) async fn call_raw(&self, body: &str) -> (StatusCode, Option<String>, Value) {
        let router = ohf_http::router(self.app.clone());
        let req =
            Request::post("/rpc").header("content-type", "application/json").body(Body::from(body.to_owned())).unwrap();
        let resp = router.oneshot(req).await.unwrap();
        let status = resp.status();
        let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, retry, serde_json::from_slice(&bytes).unwrap())
    }

    async fn call(&self, method: &str, params: Value) -> (StatusCode, Value) {
        let (s, _, v) = self.call_raw(&json!({"method": method, "params": params}).to_string()).await;
        (s, v)
    }
}

#[tokio::test]
async fn the_seed_examples_work_as_written() {
    let api = api(AppSettings::default());
    let (s, v) =
        api.call("requestMachines", json!({"templateId": "standard-compute", "machineCount": 3, "timeout": 600})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let id = v["result"]["requestId"].as_str().unwrap().to_owned();
    assert_eq!(v["result"]["machineCount"], 3);

    let (s, v) = api
        .call(
            "requestMachines",
            json!({
                "templateId": "standard-compute", "machineCount": 5, "requestId": "custom-req-12345", "timeout": 1200,
                "tags": {"project": "data-processing", "environment": "production", "owner": "team-alpha", "cost-center": "engineering"},
                "metadata": {"jobId": "job-789", "priority": "high", "requester": "user@company.com"},
                "priority": "high"
            }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["result"]["requestId"], "custom-req-12345");
    assert_eq!(v["result"]["tags"]["owner"], "team-alpha");
    assert_eq!(v["result"]["metadata"]["jobId"], "job-789");
    let (_, again) = api
        .call(
            "requestMachines",
            json!({"templateId": "standard-compute", "machineCount": 5, "requestId": "custom-req-12345"}),
        )
        .await;
    assert_eq!(again["result"]["requestId"], "custom-req-12345", "idempotent by client id");

    api.app.reconcile(None).await;
    let (s, v) = api.call("getRequestStatus", json!({"requestId": id})).await;
    assert_eq!(s, StatusCode::OK);
    let r = &v["result"];
    assert_eq!(r["status"], "COMPLETED");
    assert_eq!(r["templateId"], "standard-compute");
    assert_eq!(r["machines"].as_array().unwrap().len(), 3);
    for field in
        ["machineId", "status", "privateIpAddress", "publicIpAddress", "instanceType", "availabilityZone", "launchTime"]
    {
        assert!(r["machines"][0].get(field).is_some(), "{field}");
    }
    for field in ["createdAt", "updatedAt", "completedAt", "errorMessage", "tags", "metadata"] {
        assert!(r.get(field).is_some(), "{field}");
    }

    let ids: Vec<Value> = r["machines"].as_array().unwrap().iter().map(|m| m["machineId"].clone()).collect();
    let (s, v) = api
        .call("requestReturnMachines", json!({"machineIds": ids, "requestId": "return-req-12345", "force": false}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["result"]["requestId"], "return-req-12345");
    api.app.reconcile(None).await;
    let (s, v) = api.call("getReturnRequests", json!({"requestId": "return-req-12345"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["result"]["status"], "COMPLETED");
    assert!(v["result"]["machines"].as_array().unwrap().iter().all(|m| m["status"] == "terminated"));

    let (_, v) = api.call("listRequests", json!({"status": "COMPLETED"})).await;
    assert_eq!(v["result"]["requests"].as_array().unwrap().len(), 3);
    let (_, v) = api.call("getRequestHistory", json!({"requestId": id})).await;
    assert_eq!(v["result"]["events"][0]["event"]["type"], "created");
}

#[tokio::test]
async fn each_error_arrives_with_its_code_status_and_details() {
    let api = api(AppSettings { account_limit: Some(8), ..AppSettings::default() });
    let (s, v) = api.call("requestMachines", json!({"templateId": "invalid-template", "machineCount": 1})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["code"], "TEMPLATE_NOT_FOUND");
    assert_eq!(
        v["error"]["details"],
        json!({"templateId": "invalid-template", "availableTemplates": ["standard-compute", "high-memory"]})
    );

    let (s, v) = api.call("requestMachines", json!({"templateId": "high-memory", "machineCount": 6})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("INSUFFICIENT_CAPACITY")));
    assert_eq!(v["error"]["details"]["requestedCount"], 6);
    assert_eq!(v["error"]["details"]["availableCapacity"], 5);

    api.call("requestMachines", json!({"templateId": "standard-compute", "machineCount": 5})).await;
    let (s, v) = api.call("requestMachines", json!({"templateId": "standard-compute", "machineCount": 4})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("QUOTA_EXCEEDED")));
    assert_eq!(v["error"]["details"], json!({"currentUsage": 5, "requestedAdditional": 4, "accountLimit": 8}));

    for (params, field) in [
        (json!({"templateId": "standard-compute", "machineCount": 0}), "machineCount"),
        (json!({"templateId": "standard-compute", "machineCount": 101}), "machineCount"),
        (json!({"templateId": "standard-compute", "machineCount": 1, "timeout": 59}), "timeout"),
        (json!({"templateId": "standard-compute", "machineCount": 1, "tags": {"k": "v".repeat(257)}}), "tags"),
        (json!({"templateId": "standard-compute"}), "machineCount"),
        (json!({"templateId": "standard-compute", "machineCount": "three"}), "machineCount"),
    ] {
        let (s, v) = api.call("requestMachines", params.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{params}");
        assert_eq!(v["error"]["code"], "VALIDATION_ERROR");
        assert_eq!(v["error"]["details"]["field"], field, "{v}");
    }
    let (s, v) = api.call("getRequestStatus", json!({"requestId": "req-unknown"})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("REQUEST_NOT_FOUND")));
    let (s, v) = api.call("launchRockets", json!({})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("METHOD_NOT_FOUND")));
    assert!(v["error"]["details"]["availableMethods"].as_array().unwrap().contains(&json!("requestMachines")));
    let (s, _, v) = api.call_raw("{\"method\": ").await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("VALIDATION_ERROR")));
    let (s, _, v) = api.call_raw(r#"{"method": "listRequests", "params": [1]}"#).await;
    assert_eq!((s, v["error"]["details"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("params")));
}

#[tokio::test]
async fn a_busy_request_answers_423_with_retry_after_and_succeeds_later() {
    let api = api(AppSettings::default());
    let (_, v) = api.call("requestMachines", json!({"templateId": "standard-compute", "machineCount": 2})).await;
    let id = v["result"]["requestId"].as_str().unwrap().to_owned();
    api.store.set_contended(true);
    let (s, retry, v) =
        api.call_raw(&json!({"method": "cancelRequest", "params": {"requestId": id}}).to_string()).await;
    assert_eq!(s, StatusCode::LOCKED, "{v}");
    assert_eq!(retry.as_deref(), Some("1"));
    assert_eq!(v["error"]["code"], "RESOURCE_BUSY");
    assert_eq!(v["error"]["details"]["retryAfter"], 1);
    api.store.set_contended(false);
    let (s, v) = api.call("cancelRequest", json!({"requestId": id})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["result"]["status"], "CANCELLED", "an accepted mutation answers with the state");
    let (s, v) = api.call("cancelRequest", json!({"requestId": id})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("ILLEGAL_TRANSITION")));
}

async fn call_as(
    router: &axum::Router,
    token: Option<&str>,
    method: &str,
    params: Value,
) -> (StatusCode, Option<String>, Value) {
    let mut req = Request::post("/rpc").header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req.body(Body::from(json!({"method": method, "params": params}).to_string())).unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, retry, serde_json::from_slice(&bytes).unwrap())
}

fn tokens() -> Vec<ohf_api::access::ApiToken> {
    serde_json::from_value(json!([
        {"name": "dashboard", "token": "read-token", "role": "reader"},
        {"name": "scheduler", "token": "ops-token", "role": "operator"}
    ]))
    .unwrap()
}

#[tokio::test]
async fn tokens_and_roles_decide_who_may_call_what() {
    let api = api(AppSettings::default());
    let options = ohf_api::access::ApiOptions { tokens: tokens(), ..Default::default() };
    let router = ohf_http::router_with(api.app.clone(), options, Arc::new(SystemClock));
    let create = json!({"templateId": "standard-compute", "machineCount": 1});
    let (s, _, v) = call_as(&router, None, "listRequests", json!({})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("UNAUTHENTICATED")));
    let (s, _, _) = call_as(&router, Some("wrong"), "listRequests", json!({})).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, v) = call_as(&router, Some("read-token"), "requestMachines", create.clone()).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("PERMISSION_DENIED")));
    let (s, _, _) = call_as(&router, Some("read-token"), "listRequests", json!({})).await;
    assert_eq!(s, StatusCode::OK, "readers query");
    let (s, _, v) = call_as(&router, Some("ops-token"), "requestMachines", create).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, _, v) = call_as(&router, Some("read-token"), "listRequests", json!({})).await;
    assert_eq!(v["result"]["requests"].as_array().unwrap().len(), 1, "only the operator's request was stored");
}

#[tokio::test]
async fn a_client_over_its_rate_answers_429_and_succeeds_after_the_wait() {
    let api = api(AppSettings::default());
    let clock = Arc::new(ohf_app::memory::ManualClock::new(ohf_domain::testing::T0));
    let options = ohf_api::access::ApiOptions {
        tokens: tokens(),
        rate_limit: Some(ohf_api::access::RateLimit { per_sec: 0.5, burst: 3.0 }),
        ..Default::default()
    };
    let router = ohf_http::router_with(api.app.clone(), options, clock.clone());
    for _ in 0..3 {
        assert_eq!(call_as(&router, Some("read-token"), "listRequests", json!({})).await.0, StatusCode::OK);
    }
    let (s, retry, v) = call_as(&router, Some("read-token"), "listRequests", json!({})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("RATE_LIMITED")));
    assert_eq!(retry.as_deref(), Some("2"), "one call refills in 2 s at 0.5/s");
    assert_eq!(
        call_as(&router, Some("ops-token"), "listRequests", json!({})).await.0,
        StatusCode::OK,
        "limits are per client"
    );
    clock.advance_secs(2);
    assert_eq!(
        call_as(&router, Some("read-token"), "listRequests", json!({})).await.0,
        StatusCode::OK,
        "after the wait"
    );
}
