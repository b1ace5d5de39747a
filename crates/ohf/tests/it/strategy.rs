//! Several providers: selection, failover, health, figures, registration and the seed's
//! commands, in process on a hand clock and through the `ohf` binary.

use std::sync::Arc;

use ohf_app::memory::{ManualClock, MemoryStore, SequentialIds, StaticCatalog};
use ohf_app::{App, CloudProvider, DescribeQuery, MachineRef, RequestMachines, RequestReturn};
use ohf_app::{Requests, SystemEvent};
use ohf_cloud_sim::{SimCloud, SimConfig};
use ohf_domain::testing::T0;
use ohf_domain::{MachineStatus, ProviderName, RequestState};
use serde_json::{Value, json};

use crate::support::{HfEnv, templates};

struct Two {
    app: App,
    clock: Arc<ManualClock>,
    store: Arc<MemoryStore>,
    bad: Arc<SimCloud>,
    good: Arc<SimCloud>,
}

/// `sim-bad` (first by priority) answers every launch with InsufficientInstanceCapacity.
fn two() -> Two {
    two_with(0)
}

/// [`two`], with `sim-good`'s machines running `latency_ms` after their launch.
fn two_with(latency_ms: u64) -> Two {
    let clock = Arc::new(ManualClock::new(T0));
    let sim = |name: &str, capacity_error_rate: f64, launch_latency_ms: u64| {
        let config = SimConfig { capacity_error_rate, launch_latency_ms, ..SimConfig::default() };
        Arc::new(SimCloud::in_memory(ProviderName::new(name).unwrap(), config, clock.clone()))
    };
    let (bad, good) = (sim("sim-bad", 1.0, 0), sim("sim-good", 0.0, latency_ms));
    let store = Arc::new(MemoryStore::new());
    let app = App::builder(store.clone(), Arc::new(StaticCatalog(templates())))
        .providers([bad.clone() as Arc<dyn CloudProvider>, good.clone()])
        .clock(clock.clone())
        .ids(Arc::new(SequentialIds::default()))
        .build()
        .unwrap();
    Two { app, clock, store, bad, good }
}

async fn call(app: &App, method: &str, doc: Value) -> Value {
    ohf_api::provider_method(app, method, &doc).await.unwrap_or_else(|e| panic!("{method}: {e}"))
}

#[tokio::test]
async fn a_failed_launch_moves_to_the_healthy_provider_and_three_failures_make_the_other_unhealthy() {
    let t = two();
    call(
        &t.app,
        "configureProviderStrategy",
        json!({"circuit_breaker_config": {"failure_threshold": 3, "recovery_timeout": 600}}),
    )
    .await;
    let mut system = t.app.bus().subscribe_system();
    let mut ids = Vec::new();
    for _ in 0..5 {
        let r = t
            .app
            .execute(RequestMachines { template_id: "OnDemand-Minimal".into(), count: 2, ..Default::default() })
            .await
            .unwrap();
        ids.push(r.id().clone());
        for _ in 0..3 {
            t.clock.advance_secs(1);
            t.app.reconcile(None).await;
        }
    }
    for (i, id) in ids.iter().enumerate() {
        let r = t.store.get(id).await.unwrap().unwrap();
        assert_eq!(r.state(), RequestState::Completed, "request {i}");
        assert!(r.machines().iter().all(|m| m.provider().as_str() == "sim-good"), "request {i}");
        let history = t.app.ask(ohf_app::queries::GetRequestHistory { request_id: id.to_string() }).await.unwrap();
        let moved = history.iter().filter(|e| e.event.name() == "provider_changed").count();
        // The first three meet sim-bad; then it is unhealthy and no longer chosen.
        assert_eq!(
            moved,
            usize::from(i < 3),
            "request {i}: {:?}",
            history.iter().map(|e| e.event.name()).collect::<Vec<_>>()
        );
    }
    assert_eq!(t.bad.call_counts().await.unwrap().launch, 3, "sim-bad saw exactly three launches");
    assert_eq!(t.good.call_counts().await.unwrap().launch, 5);

    let metrics = call(&t.app, "getProviderMetrics", json!({"provider_name": "sim-bad", "time_range_hours": 1, "include_operation_breakdown": true, "include_error_details": true})).await;
    let launches = &metrics["providers"][0]["operations"]["CREATE_INSTANCES"];
    assert_eq!(launches["failed_operations"], 3, "{metrics}");
    assert_eq!(launches["success_rate"], 0.0);
    assert_eq!(launches["errors"]["InsufficientInstanceCapacity"], 3);
    let health = call(&t.app, "getProviderHealth", json!({"provider_name": "sim-bad"})).await;
    assert_eq!(health["providers"][0]["is_healthy"], false, "{health}");
    assert_eq!(health["providers"][0]["error_code"], "InsufficientInstanceCapacity");
    let healthy = call(&t.app, "listAvailableProviders", json!({"healthy_only": true})).await;
    let names: Vec<&str> =
        healthy["providers"].as_array().unwrap().iter().filter_map(|p| p["strategy_name"].as_str()).collect();
    assert_eq!(names, ["sim-good"]);

    let mut seen = Vec::new();
    while let Ok(e) = system.try_recv() {
        seen.push(e);
    }
    let failovers = seen.iter().filter(|e| matches!(e, SystemEvent::ProviderFailover { .. })).count();
    assert_eq!(failovers, 3);
    assert!(seen.iter().any(
        |e| matches!(e, SystemEvent::ProviderHealthChanged { provider, healthy: false, .. } if provider == "sim-bad")
    ));
    assert!(seen.iter().any(|e| matches!(e, SystemEvent::ProviderSelected { provider, .. } if provider == "sim-good")));
}

/// A request that failed over is searched for on the provider it left, for machines a launch
/// there made as it failed, until that provider answers a search made a minute after the
/// failover; then it is asked of the provider it left no more.
#[tokio::test]
async fn a_request_that_failed_over_is_searched_for_where_it_left_until_a_search_there_after_a_minute() {
    // sim-good's machines stay pending for ten minutes: the request keeps being reconciled.
    let t = two_with(600_000);
    let r = t
        .app
        .execute(RequestMachines {
            template_id: "OnDemand-Minimal".into(),
            count: 1,
            provider: Some("sim-bad".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut asked = Vec::new();
    for _ in 0..12 {
        t.clock.advance_secs(10);
        let before = t.bad.call_counts().await.unwrap().describe;
        t.app.reconcile(None).await;
        asked.push(t.bad.call_counts().await.unwrap().describe - before);
    }
    let request = t.store.get(r.id()).await.unwrap().unwrap();
    assert!(!request.state().is_terminal(), "its machine is still pending on sim-good");
    assert_eq!(request.provider().map(|p| p.as_str()), Some("sim-good"));
    let history = t.app.ask(ohf_app::queries::GetRequestHistory { request_id: r.id().to_string() }).await.unwrap();
    let at = |name: &str| history.iter().find(|e| e.event.name() == name).map(|e| e.at);
    let (moved, searched) = (at("provider_changed").unwrap(), at("former_provider_searched").expect("searched"));
    assert!(searched.unix_millis() - moved.unix_millis() >= 60_000, "{moved:?} {searched:?}");
    assert_eq!(history.iter().filter(|e| e.event.name() == "former_provider_searched").count(), 1);
    // Asked every cycle (10 s apart) for the first minute, then never again.
    let last = asked.iter().rposition(|n| *n > 0).expect("sim-bad was searched");
    assert!(asked[..=last].iter().all(|n| *n == 1), "{asked:?}");
    assert!((5..8).contains(&last), "{asked:?}");
    assert!(asked[last + 1..].iter().all(|n| *n == 0), "{asked:?}");
}

#[tokio::test]
async fn a_return_of_machines_on_two_providers_reaches_each_provider_that_holds_them() {
    let t = two();
    let ask = |provider: &str| RequestMachines {
        template_id: "OnDemand-Minimal".into(),
        count: 1,
        provider: Some(provider.into()),
        ..Default::default()
    };
    let a = t.app.execute(ask("sim-good")).await.unwrap();
    t.clock.advance_secs(1);
    t.app.reconcile(None).await;
    let held_good = t.store.get(a.id()).await.unwrap().unwrap().machines()[0].id().clone();
    // A second request pinned to sim-bad fails over to sim-good; its machines are there too.
    let b = t.app.execute(ask("sim-bad")).await.unwrap();
    for _ in 0..3 {
        t.clock.advance_secs(1);
        t.app.reconcile(None).await;
    }
    let b = t.store.get(b.id()).await.unwrap().unwrap();
    assert_eq!(b.state(), RequestState::Completed);
    let held_b = b.machines()[0].clone();
    assert_eq!(held_b.provider().as_str(), "sim-good");
    // Status is asked of the provider holding the machines, whatever provider the call names.
    let status = call(
        &t.app,
        "executeProviderOperation",
        json!({"operation_type": "GET_INSTANCE_STATUS", "parameters": {"request_id": b.id().as_str()}, "strategy_override": "sim-bad"}),
    )
    .await;
    let seen = &status["result"]["instances"];
    assert_eq!(seen.as_array().unwrap().len(), 1, "{status}");
    assert_eq!(
        (seen[0]["instance_id"].as_str(), seen[0]["provider_name"].as_str()),
        (Some(held_b.id().as_str()), Some("sim-good"))
    );
    assert_eq!(seen[0]["status"], "running");

    let ret = t
        .app
        .execute(RequestReturn {
            machines: [held_good.clone(), held_b.id().clone()]
                .into_iter()
                .map(|id| MachineRef { id: Some(id.to_string()), name: None })
                .collect(),
            ..Default::default()
        })
        .await
        .unwrap();
    for _ in 0..5 {
        t.clock.advance_secs(2);
        t.app.reconcile(None).await;
    }
    assert_eq!(t.store.get(ret.id()).await.unwrap().unwrap().state(), RequestState::Completed);
    let on_good = t
        .good
        .describe(&DescribeQuery { machine_ids: vec![held_good, held_b.id().clone()], ..Default::default() })
        .await
        .unwrap();
    assert!(on_good.iter().all(|o| o.status == MachineStatus::Terminated), "{on_good:?}");
    assert_eq!(t.bad.call_counts().await.unwrap().terminate, 0, "nothing of sim-bad's was asked back");
}

#[tokio::test]
async fn each_policy_picks_as_the_figures_say_and_the_answer_names_the_providers_passed_over() {
    let t = two();
    // Make sim-good the faster and surer one.
    let select = |policy: &str, criteria: Value| json!({"operation_type": "CREATE_INSTANCES", "selection_policy": policy, "selection_criteria": criteria});
    let first = call(&t.app, "selectProviderStrategy", select("FIRST_AVAILABLE", json!({}))).await;
    assert_eq!(first["selected_strategy"], "sim-bad");
    assert_eq!(first["passed_over"][0]["name"], "sim-good");
    let excluded =
        call(&t.app, "selectProviderStrategy", select("FIRST_AVAILABLE", json!({"exclude_strategies": ["sim-bad"]})))
            .await;
    assert_eq!(excluded["selected_strategy"], "sim-good");
    assert_eq!(excluded["passed_over"][0]["reason"], "excluded");
    let a = call(&t.app, "selectProviderStrategy", select("ROUND_ROBIN", json!({}))).await;
    let b = call(&t.app, "selectProviderStrategy", select("ROUND_ROBIN", json!({}))).await;
    assert_ne!(a["selected_strategy"], b["selected_strategy"], "round robin takes turns across calls");
    // A launch on sim-bad fails: its success rate falls below sim-good's.
    let r = t
        .app
        .execute(RequestMachines { template_id: "OnDemand-Minimal".into(), count: 1, ..Default::default() })
        .await
        .unwrap();
    t.clock.advance_secs(1);
    t.app.reconcile(None).await;
    assert!(t.store.get(r.id()).await.unwrap().unwrap().machines().iter().all(|m| m.provider().as_str() == "sim-good"));
    let best = call(&t.app, "selectProviderStrategy", select("HIGHEST_SUCCESS_RATE", json!({}))).await;
    assert_eq!(best["selected_strategy"], "sim-good", "{best}");
    let strict =
        call(&t.app, "selectProviderStrategy", select("FIRST_AVAILABLE", json!({"min_success_rate": 95.0}))).await;
    assert_eq!(strict["selected_strategy"], "sim-good");
    assert!(strict["passed_over"][0]["reason"].as_str().unwrap().contains("success rate 0.0%"), "{strict}");
    let none = ohf_api::provider_method(
        &t.app,
        "selectProviderStrategy",
        &select("FIRST_AVAILABLE", json!({"required_capabilities": ["load_balancers"]})),
    )
    .await
    .unwrap_err();
    assert_eq!(none.code().as_str(), "PROVIDER_ERROR");
    assert!(none.to_string().contains("lacks load_balancers"), "{none}");
}

fn two_sims_env() -> HfEnv {
    HfEnv::new(
        r#"
[[providers]]
name = "sim-bad"
type = "sim"
capacity_error_rate = 1.0
launch_latency_ms = 0

[[providers]]
name = "sim-good"
type = "sim"
launch_latency_ms = 0
shutdown_latency_ms = 0

[provider_strategy.circuit_breaker_config]
failure_threshold = 2
recovery_timeout = 600
"#,
    )
}

fn ohf_json(env: &HfEnv, args: &[&str]) -> (bool, Value) {
    let out = env.ohf().args(args).output().unwrap();
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), doc)
}

#[test]
fn host_factory_requests_complete_on_the_healthy_provider_and_the_cli_shows_the_failures() {
    let env = two_sims_env();
    for i in 0..4 {
        let (_, created) =
            env.script("requestMachines", &json!({"template": {"templateId": "OnDemand-Minimal", "machineCount": 2}}));
        let id = created["requestId"].as_str().unwrap_or_else(|| panic!("{created}")).to_owned();
        let mut status = Value::Null;
        for _ in 0..20 {
            status = env.script("getRequestStatus", &json!({"requests": [{"requestId": id}]})).1;
            if status["requests"][0]["status"] == "complete" {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        assert_eq!(status["requests"][0]["status"], "complete", "request {i}: {status}");
        assert_eq!(status["requests"][0]["machines"].as_array().unwrap().len(), 2);
    }
    let (ok, metrics) = ohf_json(
        &env,
        &[
            "getProviderMetrics",
            "--data",
            r#"{"provider_name": "sim-bad", "time_range_hours": 1, "include_operation_breakdown": true, "include_error_details": true}"#,
        ],
    );
    assert!(ok);
    assert_eq!(metrics["providers"][0]["operations"]["CREATE_INSTANCES"]["failed_operations"], 2, "{metrics}");
    let (_, health) = ohf_json(&env, &["getProviderHealth", "--data", r#"{"provider_name": "sim-bad"}"#]);
    assert_eq!(health["providers"][0]["is_healthy"], false, "{health}");
    let (_, good) = ohf_json(
        &env,
        &["getProviderMetrics", "--data", r#"{"provider_name": "sim-good", "include_operation_breakdown": true}"#],
    );
    assert_eq!(good["providers"][0]["operations"]["CREATE_INSTANCES"]["successful_operations"], 4, "{good}");
}

#[test]
fn every_seed_example_runs_as_written_and_answers_with_the_seeds_fields() {
    let env = HfEnv::new(
        r#"
[[providers]]
name = "aws-primary"
type = "sim"
launch_latency_ms = 0

[[providers]]
name = "aws-backup"
type = "sim"

[[providers]]
name = "aws-secondary"
type = "sim"
"#,
    );
    let mut t: Value =
        serde_json::from_str(&std::fs::read_to_string(env.path("conf/awsprov_templates.json")).unwrap()).unwrap();
    t["templates"]
        .as_array_mut()
        .unwrap()
        .push(json!({"templateId": "web-server", "maxNumber": 10, "imageId": "ami-1", "vmType": "m5.large"}));
    std::fs::write(env.path("conf/awsprov_templates.json"), t.to_string()).unwrap();

    let run = |method: &str, data: &str| {
        let (ok, doc) = ohf_json(&env, &[method, "--data", data]);
        assert!(ok, "{method}: {doc}");
        doc
    };
    let created = run(
        "executeProviderOperation",
        r#"{
"operation_type": "CREATE_INSTANCES",
"parameters": {
"template_id": "web-server",
"count": 2
}
}"#,
    );
    assert_eq!(created["success"], true);
    assert_eq!(created["operation_type"], "CREATE_INSTANCES");
    assert_eq!(created["selection"]["selected_strategy"], "aws-primary");
    assert!(created["result"]["request_id"].as_str().unwrap().starts_with("req-"));
    let pinned = run(
        "executeProviderOperation",
        r#"{
"operation_type": "CREATE_INSTANCES",
"parameters": {
"template_id": "web-server",
"count": 2
},
"strategy_override": "aws-primary"
}"#,
    );
    assert_eq!(pinned["provider_name"], "aws-primary");
    assert!(pinned["selection"].is_null());
    let configured = run(
        "configureProviderStrategy",
        r#"{
"default_selection_policy": "CAPABILITY_BASED",
"selection_criteria": {
"min_success_rate": 95.0,
"require_healthy": true
},
"fallback_strategies": ["aws-backup", "aws-secondary"],
"health_check_interval": 300,
"circuit_breaker_config": {
"failure_threshold": 5,
"recovery_timeout": 60
}
}"#,
    );
    assert_eq!(configured["configuration"]["default_selection_policy"], "CAPABILITY_BASED");
    assert_eq!(configured["configuration"]["fallback_strategies"], json!(["aws-backup", "aws-secondary"]));
    let registered = run(
        "registerProviderStrategy",
        r#"{
"strategy_name": "aws-west",
"provider_type": "aws",
"strategy_config": {
"region": "us-west-2",
"profile": "production"
},
"capabilities": {
"instances": true,
"spot_instances": true,
"load_balancers": false
},
"priority": 1
}"#,
    );
    assert_eq!(registered["provider"]["strategy_name"], "aws-west");
    assert_eq!(registered["provider"]["origin"], "registered");
    let updated = run(
        "updateProviderHealth",
        r#"{
"provider_name": "aws-primary",
"health_status": {
"is_healthy": false,
"status_message": "Rate limit exceeded",
"error_details": {
"error_code": "RATE_LIMIT",
"retry_after": 300
}
},
"source": "monitoring_system"
}"#,
    );
    assert_eq!(updated["health_status"]["is_healthy"], false);
    assert_eq!(updated["health_status"]["source"], "monitoring_system");
    assert!(updated["health_status"]["unhealthy_until"].is_string());
    let selected = run(
        "selectProviderStrategy",
        r#"{
"operation_type": "CREATE_INSTANCES",
"selection_criteria": {
"required_capabilities": ["spot_instances"],
"max_response_time_ms": 3000,
"prefer_strategies": ["aws-spot"]
}
}"#,
    );
    // aws-primary is unhealthy (configured require_healthy holds), aws-west comes next by priority.
    assert_eq!(selected["selection_policy"], "CAPABILITY_BASED");
    let passed: Vec<(String, String)> = selected["passed_over"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_owned(), p["reason"].as_str().unwrap().to_owned()))
        .collect();
    assert!(passed.contains(&("aws-primary".into(), "unhealthy".into())), "{selected}");
    assert_ne!(selected["selected_strategy"], "aws-primary");
    let metrics = run(
        "getProviderMetrics",
        r#"{
"provider_name": "aws-primary",
"time_range_hours": 24,
"include_operation_breakdown": true
}"#,
    );
    assert_eq!(metrics["providers"][0]["provider_name"], "aws-primary");
    assert_eq!(metrics["providers"][0]["operations"]["CREATE_INSTANCES"]["total_operations"], 2, "{metrics}");
    let all = run(
        "getProviderMetrics",
        r#"{
"time_range_hours": 1,
"include_operation_breakdown": true,
"include_error_details": true
}"#,
    );
    assert_eq!(all["providers"].as_array().unwrap().len(), 4);
    let caps = run(
        "getProviderCapabilities",
        r#"{
"provider_name": "aws-primary",
"include_performance_metrics": true,
"include_limitations": true
}"#,
    );
    assert_eq!(caps["providers"][0]["capabilities"]["instances"], true);
    assert!(caps["providers"][0]["limitations"].is_array());
    assert!(caps["providers"][0]["performance_metrics"]["CREATE_INSTANCES"].is_object());
    let listed = run("listAvailableProviders", "{}");
    assert_eq!(listed["count"], 4);
    let health = run("getProviderHealth", "{}");
    assert_eq!(health["unhealthy_count"], 1, "{health}");
    let checked = run(
        "executeProviderOperation",
        r#"{"operation_type": "HEALTH_CHECK", "parameters": {}, "strategy_override": "aws-backup"}"#,
    );
    assert_eq!(checked["result"]["providers"][0]["is_healthy"], true);
    // Without a document: {}.
    let out = env.ohf().arg("listAvailableProviders").output().unwrap();
    assert!(out.status.success());
    // The troubleshooting example carries a note after '#' inside its JSON.
    let relaxed = run(
        "selectProviderStrategy",
        r#"{
"operation_type": "CREATE_INSTANCES",
"selection_criteria": {
"require_healthy": false # Relax health requirement
}
}"#,
    );
    assert_eq!(relaxed["selected_strategy"], "aws-primary", "unhealthy, yet chosen once health is not required");

    // The existing operations, as the seed runs them.
    let (ok, templates) = ohf_json(&env, &["getAvailableTemplates"]);
    assert!(ok && templates["templates"].as_array().unwrap().iter().any(|t| t["templateId"] == "web-server"));
    let (ok, created) =
        ohf_json(&env, &["requestMachines", "--data", r#"{"template_id": "web-server", "machine_count": 2}"#]);
    assert!(ok, "{created}");
    let id = created["requestId"].as_str().unwrap().to_owned();
    let (ok, status) = ohf_json(&env, &["getRequestStatus", "--request-id", &id]);
    assert!(ok);
    assert_eq!(status["requests"][0]["requestId"], id.as_str());
    let (_, missing) = ohf_json(&env, &["getRequestStatus", "--request-id", "req-12345"]);
    assert_eq!(missing["requests"][0]["error"]["code"], "REQUEST_NOT_FOUND");
}

#[test]
fn registrations_and_configuration_survive_restarts_and_bad_documents_change_nothing() {
    let env = two_sims_env();
    let (ok, _) = ohf_json(
        &env,
        &[
            "registerProviderStrategy",
            "--data",
            r#"{"strategy_name": "sim-extra", "provider_type": "sim", "strategy_config": {"launch_latency_ms": 0}, "priority": 7, "weight": 3}"#,
        ],
    );
    assert!(ok);
    let (ok, _) = ohf_json(
        &env,
        &[
            "configureProviderStrategy",
            "--data",
            r#"{"default_selection_policy": "ROUND_ROBIN", "fallback_strategies": ["sim-extra"]}"#,
        ],
    );
    assert!(ok);

    // Each is refused with the field named, and stores nothing.
    for (method, data, field) in [
        ("configureProviderStrategy", r#"{"default_selection_policy": "CHEAPEST"}"#, "CHEAPEST"),
        ("configureProviderStrategy", r#"{"health_check_interval": 1}"#, "health_check_interval"),
        ("configureProviderStrategy", r#"{"fallback_strategies": ["nobody"]}"#, "fallback_strategies"),
        ("configureProviderStrategy", r#"{"colour": "red"}"#, "colour"),
        ("registerProviderStrategy", r#"{"strategy_name": "x", "provider_type": "gcp"}"#, "provider_type"),
        ("registerProviderStrategy", r#"{"strategy_name": "sim-good", "provider_type": "sim"}"#, "config file"),
        (
            "registerProviderStrategy",
            r#"{"strategy_name": "y", "provider_type": "sim", "strategy_config": {"throttle_rate": 7}}"#,
            "throttle_rate",
        ),
        ("updateProviderHealth", r#"{"provider_name": "nobody", "health_status": {"is_healthy": false}}"#, "nobody"),
        ("getProviderMetrics", r#"{"time_range_hours": 0}"#, "time_range_hours"),
        (
            "updateProviderHealth",
            r#"{"provider_name": "sim-good", "health_status": {"is_healthy": false, "error_details": {"retry_after": 18446744073709551615}}}"#,
            "retry_after",
        ),
        ("executeProviderOperation", r#"{"operation_type": "REBOOT"}"#, "REBOOT"),
        ("selectProviderStrategy", "{not json", "data"),
        ("selectProviderStrategy", "[1]", "data"),
    ] {
        let (ok, doc) = ohf_json(&env, &[method, "--data", data, "-o", "json"]);
        assert!(!ok, "{method} {data}");
        assert_eq!(doc["error"]["code"], "VALIDATION_ERROR", "{method} {data}: {doc}");
        assert!(doc["error"]["message"].as_str().unwrap().contains(field), "{method} {data}: {doc}");
    }

    let (_, listed) = ohf_json(&env, &["listAvailableProviders"]);
    assert_eq!(listed["selection_policy"], "ROUND_ROBIN");
    let extra = listed["providers"].as_array().unwrap().iter().find(|p| p["strategy_name"] == "sim-extra").cloned();
    let extra = extra.unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(
        (extra["priority"].clone(), extra["weight"].clone(), extra["origin"].clone()),
        (json!(7), json!(3), json!("registered"))
    );
    // The registered provider serves requests in later processes.
    let (ok, created) = ohf_json(
        &env,
        &[
            "executeProviderOperation",
            "--data",
            r#"{"operation_type": "CREATE_INSTANCES", "parameters": {"template_id": "OnDemand-Minimal", "count": 1}, "strategy_override": "sim-extra"}"#,
        ],
    );
    assert!(ok, "{created}");
    let id = created["result"]["request_id"].as_str().unwrap().to_owned();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let status = env.script("getRequestStatus", &json!({"requests": [{"requestId": id}]})).1;
    assert_eq!(status["requests"][0]["status"], "complete", "{status}");
}

#[test]
fn through_a_daemon_the_methods_answer_the_same_and_a_registration_serves_at_once() {
    let env = two_sims_env();
    let daemon = crate::support::Daemon::start(&env);
    let url = daemon.url();
    let remote = |args: &[&str]| {
        let mut all = vec!["--server", url.as_str()];
        all.extend_from_slice(args);
        ohf_json(&env, &all)
    };
    let (ok, listed) = remote(&["listAvailableProviders"]);
    assert!(ok, "{listed}");
    assert_eq!(listed["count"], 2);
    let (ok, registered) = remote(&[
        "registerProviderStrategy",
        "--data",
        r#"{"strategy_name": "sim-late", "provider_type": "sim", "strategy_config": {"launch_latency_ms": 0}}"#,
    ]);
    assert!(ok, "{registered}");
    let (ok, created) = remote(&[
        "executeProviderOperation",
        "--data",
        r#"{"operation_type": "CREATE_INSTANCES", "parameters": {"template_id": "OnDemand-Minimal", "count": 1}, "strategy_override": "sim-late"}"#,
    ]);
    assert!(ok, "{created}");
    assert_eq!(created["provider_name"], "sim-late");
    let (ok, refused) = remote(&[
        "updateProviderHealth",
        "--data",
        r#"{"provider_name": "ghost", "health_status": {"is_healthy": true}}"#,
        "-o",
        "json",
    ]);
    assert!(!ok);
    assert_eq!(refused["error"]["code"], "VALIDATION_ERROR", "{refused}");
    // A later local process sees the registration through the store.
    let (_, local) = ohf_json(&env, &["listAvailableProviders"]);
    assert_eq!(local["count"], 3, "{local}");
}

/// Registrations through the API reach only what `[admin]` of ohf.toml allows: no state file
/// outside the work dir, no endpoint, proxy or credentials file not listed, no static keys
/// (they would be stored); a listed endpoint is taken.
#[test]
fn registrations_reach_only_what_the_admin_allows() {
    let env = two_sims_env();
    let mut toml = std::fs::read_to_string(env.path("conf/ohf.toml")).unwrap();
    toml = format!("[admin]\nallowed_endpoints = [\"http://127.0.0.1:4566\"]\nallowed_profiles = [\"hpc\"]\n{toml}");
    std::fs::write(env.path("conf/ohf.toml"), toml).unwrap();
    for (data, said) in [
        (
            r#"{"strategy_name": "s1", "provider_type": "sim", "strategy_config": {"state_file": "../../escape.json"}}"#,
            "plain file name",
        ),
        (
            r#"{"strategy_name": "s2", "provider_type": "sim", "strategy_config": {"state_file": "/etc/ohf-escape.json"}}"#,
            "plain file name",
        ),
        (
            r#"{"strategy_name": "a1", "provider_type": "aws", "strategy_config": {"region": "us-east-1", "endpoint": "http://10.1.2.3:80"}}"#,
            "allowed_endpoints",
        ),
        (
            r#"{"strategy_name": "a2", "provider_type": "aws", "strategy_config": {"region": "us-east-1", "proxy_url": "http://evil:3128"}}"#,
            "allowed_proxies",
        ),
        (
            r#"{"strategy_name": "a3", "provider_type": "aws", "strategy_config": {"region": "us-east-1", "access_key_id": "AKIA", "secret_access_key": "s3cret"}}"#,
            "static keys",
        ),
        (
            r#"{"strategy_name": "a4", "provider_type": "aws", "strategy_config": {"region": "us-east-1", "profile": "root-account"}}"#,
            "allowed_profiles",
        ),
        (
            r#"{"strategy_name": "a5", "provider_type": "aws", "strategy_config": {"region": "us-east-1", "credentials_file": "/root/.aws/credentials"}}"#,
            "allowed_credential_files",
        ),
    ] {
        let (ok, doc) = ohf_json(&env, &["registerProviderStrategy", "--data", data, "-o", "json"]);
        assert!(!ok, "{data}: {doc}");
        assert_eq!(doc["error"]["code"], "VALIDATION_ERROR", "{data}: {doc}");
        assert!(doc["error"]["message"].as_str().unwrap().contains(said), "{data}: {doc}");
    }
    assert!(!env.path("escape.json").exists() && !std::path::Path::new("/etc/ohf-escape.json").exists());
    let (_, listed) = ohf_json(&env, &["listAvailableProviders"]);
    assert_eq!(listed["count"], 2, "nothing refused was stored: {listed}");
    let (ok, doc) = ohf_json(
        &env,
        &[
            "registerProviderStrategy",
            "--data",
            r#"{"strategy_name": "aws-lab", "provider_type": "aws", "strategy_config": {"region": "us-east-1", "endpoint": "http://127.0.0.1:4566", "profile": "hpc"}}"#,
        ],
    );
    assert!(ok, "an allowed endpoint and profile are taken: {doc}");
}

/// A stored strategy configuration this version cannot read does not stop the process: it is
/// passed over and the configured strategy serves.
#[test]
fn an_unreadable_stored_configuration_is_passed_over() {
    let env = two_sims_env();
    let (ok, _) =
        ohf_json(&env, &["configureProviderStrategy", "--data", r#"{"default_selection_policy": "ROUND_ROBIN"}"#]);
    assert!(ok);
    let db = env.path("work/ohf.db");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", db.display())).await.unwrap();
        let changed =
            sqlx::query("UPDATE shared_state SET value = '{\"colour\": \"red\"}' WHERE key = 'strategy/config'")
                .execute(&pool)
                .await
                .unwrap();
        assert_eq!(changed.rows_affected(), 1);
    });
    let (ok, listed) = ohf_json(&env, &["listAvailableProviders"]);
    assert!(ok, "the process still starts and answers: {listed}");
    assert_eq!(listed["count"], 2);
}

#[test]
fn without_a_daemon_the_polling_processes_take_turns_at_the_health_checks() {
    let env = HfEnv::new(
        r#"
[[providers]]
name = "sim-up"
type = "sim"
launch_latency_ms = 0

[[providers]]
name = "sim-down"
type = "sim"
internal_error_rate = 1.0

[provider_strategy]
health_check_interval = 3600
"#,
    );
    let health = |env: &HfEnv| ohf_json(env, &["getProviderHealth", "--data", r#"{"provider_name": "sim-down"}"#]).1;
    assert!(health(&env)["providers"][0]["last_check"].is_null(), "nothing checked yet: {}", health(&env));
    // Host Factory polls; no daemon runs. The poll that finds a check due makes it.
    let (out, doc) = env.script("getRequestStatus", &json!({"requests": [{"requestId": "req-none"}]}));
    assert!(out.status.success(), "{doc}");
    let first = health(&env);
    let checked = &first["providers"][0];
    assert_eq!(checked["is_healthy"], false, "{first}");
    assert!(!checked["last_check"].is_null(), "{first}");
    // The next polls, inside the interval, leave the checks to the next one due.
    for _ in 0..2 {
        let (out, _) = env.script("getRequestStatus", &json!({"requests": [{"requestId": "req-none"}]}));
        assert!(out.status.success());
    }
    assert_eq!(health(&env)["providers"][0]["last_check"], checked["last_check"], "one check per interval");
}

#[tokio::test]
async fn weighted_round_robin_can_weigh_providers_by_their_available_capacity() {
    let clock = Arc::new(ManualClock::new(T0));
    let sim = |name: &str, capacity_per_zone: u32| {
        let config = SimConfig { capacity_per_zone, launch_latency_ms: 0, ..SimConfig::default() };
        Arc::new(SimCloud::in_memory(ProviderName::new(name).unwrap(), config, clock.clone())) as Arc<dyn CloudProvider>
    };
    let store = Arc::new(MemoryStore::new());
    let app = App::builder(store.clone(), Arc::new(StaticCatalog(templates())))
        .providers([sim("sim-big", 300), sim("sim-small", 100)])
        .clock(clock.clone())
        .ids(Arc::new(SequentialIds::default()))
        .build()
        .unwrap();
    let landed = |n: usize| {
        let app = &app;
        async move {
            let mut on = std::collections::BTreeMap::<String, usize>::new();
            for _ in 0..n {
                let cmd = RequestMachines { template_id: "Spot-Compute".into(), count: 1, ..Default::default() };
                let r = app.execute(cmd).await.unwrap();
                *on.entry(r.provider().unwrap().to_string()).or_default() += 1;
            }
            on
        }
    };
    let configure = |by_capacity: bool| json!({"default_selection_policy": "WEIGHTED_ROUND_ROBIN", "weight_by_capacity": by_capacity});
    let answer = call(&app, "configureProviderStrategy", configure(false)).await;
    assert_eq!(answer["configuration"]["weight_by_capacity"], false, "{answer}");
    let even = landed(40).await;
    assert!((18..=22).contains(&even["sim-big"]), "equal weights take about equal turns: {even:?}");

    let answer = call(&app, "configureProviderStrategy", configure(true)).await;
    assert_eq!(answer["configuration"]["weight_by_capacity"], true, "{answer}");
    let weighed = landed(40).await;
    assert!(
        (27..=33).contains(&weighed["sim-big"]),
        "about three of four to the provider with 3x the room: {weighed:?}"
    );
}

#[tokio::test]
async fn least_connections_counts_the_work_in_flight_of_every_process_sharing_the_store() {
    let clock = Arc::new(ManualClock::new(T0));
    let store = Arc::new(MemoryStore::new());
    // Two processes over one store: machines take long to start, so requests stay in flight.
    let process = || {
        let sim = |name: &str| {
            let config = SimConfig { launch_latency_ms: 600_000, ..SimConfig::default() };
            Arc::new(SimCloud::in_memory(ProviderName::new(name).unwrap(), config, clock.clone()))
                as Arc<dyn CloudProvider>
        };
        App::builder(store.clone(), Arc::new(StaticCatalog(templates())))
            .providers([sim("sim-a"), sim("sim-b")])
            .clock(clock.clone())
            .build()
            .unwrap()
    };
    let (one, two) = (process(), process());
    for app in [&one, &two] {
        call(app, "configureProviderStrategy", json!({"default_selection_policy": "LEAST_CONNECTIONS"})).await;
    }
    let mut on = std::collections::BTreeMap::<String, usize>::new();
    for n in 0..6 {
        let app = if n % 2 == 0 { &one } else { &two };
        let cmd = RequestMachines { template_id: "OnDemand-Minimal".into(), count: 1, ..Default::default() };
        let r = app.execute(cmd).await.unwrap();
        *on.entry(r.provider().unwrap().to_string()).or_default() += 1;
    }
    assert_eq!((on["sim-a"], on["sim-b"]), (3, 3), "each process sees the other's requests in flight: {on:?}");
    let chosen = call(&two, "selectProviderStrategy", json!({"operation_type": "CREATE_INSTANCES"})).await;
    assert!(chosen["selection_reason"].as_str().unwrap().contains("fewest operations in flight (3)"), "{chosen}");
}
