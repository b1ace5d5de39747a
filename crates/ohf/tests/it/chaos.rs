//! The Host Factory flow on the AWS emulator behind a fault-injecting proxy: calls throttled,
//! failed, slowed, dropped, answers lost, or the endpoint down altogether.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::aws::{aws_env_at, ec2, endpoint};
use crate::fault_proxy::FaultProxy;
use crate::support::HfEnv;

/// Quick retries and a breaker that recovers within seconds, so the test runs in seconds.
const FAST_RESILIENCE: &str = r#"
[resilience.retry]
default_base_delay = 0.2
default_max_delay = 1.0
[resilience.retry.operations.ec2_run_instances]
max_attempts = 5
base_delay = 0.2
max_delay = 1.0
[resilience.circuit_breaker.services.aws_ec2]
failure_threshold = 3
reset_timeout = 2
half_open_timeout = 10
"#;

fn status(env: &HfEnv, id: &str) -> Value {
    let (_, doc) = env.script("getRequestStatus", &json!({"requests": [{"requestId": id}]}));
    doc["requests"][0].clone()
}

fn wait_complete(env: &HfEnv, id: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let r = status(env, id);
        if r["status"] == "complete" {
            return r;
        }
        assert!(Instant::now() < deadline, "{id} did not complete: {r}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Instances per `ohf:request-id` of a cluster, by a describe of our own straight at the emulator.
async fn instances_by_request(cluster: &str) -> BTreeMap<String, usize> {
    let filter = aws_sdk_ec2::types::Filter::builder().name("tag:ohf:cluster").values(cluster).build();
    let seen = ec2().await.describe_instances().filters(filter).send().await.unwrap();
    let mut by = BTreeMap::new();
    for i in seen.reservations().iter().flat_map(|r| r.instances()) {
        let live = i.state().and_then(|s| s.name()).is_some_and(|n| n.as_str() == "running" || n.as_str() == "pending");
        let request = i.tags().iter().find(|t| t.key() == Some("ohf:request-id")).and_then(|t| t.value());
        if let (true, Some(request)) = (live, request) {
            *by.entry(request.to_owned()).or_default() += 1;
        }
    }
    by
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_30_percent_of_calls_failing_every_request_completes_without_duplicates() {
    let proxy = FaultProxy::start(&endpoint(), 0.3, 20_261_125);
    let cluster = format!("chaos-{}", uuid::Uuid::new_v4().simple());
    let env = aws_env_at(&cluster, &proxy.url, FAST_RESILIENCE).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let (out, doc) =
            env.script("requestMachines", &json!({"template": {"templateId": "Aws-OnDemand", "machineCount": 2}}));
        assert!(out.status.success(), "{doc}");
        ids.push(doc["requestId"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        let done = wait_complete(&env, id, Duration::from_secs(180));
        assert_eq!(done["machines"].as_array().unwrap().len(), 2, "{done}");
    }
    let seen = instances_by_request(&cluster).await;
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(seen.values().all(|&n| n == 2), "no request got a second set of machines: {seen:?}");
    let c = &proxy.counts;
    let calls = c.connections.load(Ordering::SeqCst);
    assert!(c.faults() * 5 >= calls, "faults were injected: {} of {calls}", c.faults());
    for (what, n) in [
        ("throttled", &c.throttled),
        ("internal", &c.internal),
        ("slow", &c.slow),
        ("dropped", &c.dropped),
        ("lost answers", &c.lost_answers),
    ] {
        assert!(n.load(Ordering::SeqCst) > 0, "no {what} were injected");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_endpoint_down_calls_fail_fast_and_recover_when_it_returns() {
    let proxy = FaultProxy::start(&endpoint(), 0.0, 1);
    let cluster = format!("down-{}", uuid::Uuid::new_v4().simple());
    let env = aws_env_at(&cluster, &proxy.url, FAST_RESILIENCE).await;
    proxy.set_down(true);
    let (out, doc) =
        env.script("requestMachines", &json!({"template": {"templateId": "Aws-OnDemand", "machineCount": 1}}));
    assert!(out.status.success(), "the request is accepted while the cloud is down: {doc}");
    let id = doc["requestId"].as_str().unwrap().to_owned();

    let breaker = || {
        let out = env.ohf().args(["resilience", "status", "-o", "json"]).output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["breakers"][0]["state"].as_str().unwrap_or("none").to_owned()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while breaker() != "OPEN" {
        status(&env, &id);
        assert!(Instant::now() < deadline, "the breaker never opened");
    }
    // The metrics show it as one series per state, read from the store by `ohf metrics`.
    let metrics = env.ohf().arg("metrics").output().unwrap();
    let text = String::from_utf8_lossy(&metrics.stdout).into_owned();
    for (state, value) in [("closed", 0), ("half_open", 0), ("open", 1)] {
        let line =
            format!("ohf_circuit_breaker_state{{provider=\"aws-test\",service=\"aws_ec2\",state=\"{state}\"}} {value}");
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }
    let before = proxy.counts.connections.load(Ordering::SeqCst);
    let started = Instant::now();
    let r = status(&env, &id);
    assert!(started.elapsed() < Duration::from_secs(2), "an open breaker fails fast");
    assert_ne!(r["status"], "complete");
    assert_eq!(proxy.counts.connections.load(Ordering::SeqCst), before, "and does not call the endpoint");

    proxy.set_down(false);
    let done = wait_complete(&env, &id, Duration::from_secs(60));
    assert_eq!(done["machines"].as_array().unwrap().len(), 1);
    assert_eq!(breaker(), "CLOSED", "a successful probe closed the breaker");
    assert_eq!(instances_by_request(&cluster).await.get(&id), Some(&1));
}

/// The Host Factory `requestMachines` process is killed right after its launch call reached the
/// cloud (the proxy holds the answer back); the next `getRequestStatus` adopts what was made.
async fn killed_after_the_launch_call(template: &str, action: &str) {
    let proxy = FaultProxy::start(&endpoint(), 0.0, 1);
    let cluster = format!("kill-{}", uuid::Uuid::new_v4().simple());
    let env = aws_env_at(&cluster, &proxy.url, "").await;
    proxy.hold(Some(action));
    let input = env.path("request.json");
    std::fs::write(&input, json!({"template": {"templateId": template, "machineCount": 3}}).to_string()).unwrap();
    let mut child = env.ohf().args(["hf", "requestMachines", "-f"]).arg(&input).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.counts.held.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the launch call never reached the cloud");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    proxy.hold(None);

    let stored = env.stored_requests();
    assert_eq!(stored.len(), 1, "{stored:?}");
    let id = stored[0]["requestId"].as_str().unwrap().to_owned();
    let done = wait_complete(&env, &id, Duration::from_secs(60));
    assert_eq!(done["machines"].as_array().unwrap().len(), 3, "{done}");
    let by = instances_by_request(&cluster).await;
    assert_eq!(by.get(&id), Some(&3), "exactly the machines of the killed launch: {by:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_after_run_instances_leaves_no_duplicate() {
    killed_after_the_launch_call("Aws-OnDemand", "RunInstances").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_after_placing_a_group_leaves_no_duplicate() {
    killed_after_the_launch_call("Aws-Asg", "CreateAutoScalingGroup").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_after_placing_a_fleet_leaves_no_duplicate() {
    killed_after_the_launch_call("Aws-FleetRequest", "CreateFleet").await;
}

/// A heterogeneous template whose spot fleet has not filled by `spotFleetRequestExpiry` (one
/// minute here): the fleet is stopped with what it holds and the rest is launched on demand.
/// The emulator fills fleets at once, so the fleet is placed by a process that is killed before
/// it sees the answer, and one of its machines is taken away before anyone follows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heterogeneous_fleet_unfilled_by_its_expiry_is_completed_on_demand() {
    let proxy = FaultProxy::start(&endpoint(), 0.0, 1);
    let cluster = format!("hetero-{}", uuid::Uuid::new_v4().simple());
    let env = aws_env_at(&cluster, &proxy.url, "").await;
    proxy.hold(Some("CreateFleet"));
    let input = env.path("request.json");
    std::fs::write(&input, json!({"template": {"templateId": "Aws-Hetero", "machineCount": 3}}).to_string()).unwrap();
    let mut child = env.ohf().args(["hf", "requestMachines", "-f"]).arg(&input).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.counts.held.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the fleet was never asked for");
        std::thread::sleep(Duration::from_millis(50));
    }
    let placed = Instant::now();
    child.kill().unwrap();
    child.wait().unwrap();
    proxy.hold(None);
    let id = env.stored_requests()[0]["requestId"].as_str().unwrap().to_owned();

    // The fleet holds 3 spot machines; one goes away before ohf follows the fleet.
    let client = ec2().await;
    let fleet = crate::aws::placements(&id).await;
    assert_eq!(fleet.len(), 1, "{fleet:?}");
    let fleet_id = fleet[0].split(' ').next().unwrap().to_owned();
    let held = client.describe_fleet_instances().fleet_id(&fleet_id).send().await.unwrap();
    let spot: Vec<String> = held.active_instances().iter().filter_map(|i| i.instance_id().map(String::from)).collect();
    assert_eq!(spot.len(), 3);
    client.terminate_instances().instance_ids(&spot[0]).send().await.unwrap();

    let early = status(&env, &id);
    assert_eq!(early["status"], "running", "before the expiry the fleet is followed: {early}");
    std::thread::sleep(Duration::from_secs(61).saturating_sub(placed.elapsed()));
    let done = wait_complete(&env, &id, Duration::from_secs(60));
    let machines = done["machines"].as_array().unwrap();
    assert_eq!(machines.len(), 3, "{done}");
    let on_demand: Vec<&Value> = machines.iter().filter(|m| m["priceType"] == "ondemand").collect();
    assert_eq!(on_demand.len(), 1, "{done}");
    assert!(!machines.iter().any(|m| m["machineId"] == spot[0].as_str()));
    assert!(crate::aws::placements(&id).await.is_empty(), "the fleet was stopped");
    assert_eq!(instances_by_request(&cluster).await.get(&id), Some(&3));
}

/// EC2's refusals the emulator never gives (no capacity, not authorized, a malformed image id)
/// reach the user through getRequestStatus with the AWS code and message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_the_emulator_cannot_give_reach_the_user_with_the_aws_code() {
    let fast = "[request]\nmax_launch_attempts = 2\nlaunch_backoff_base_secs = 1\nlaunch_backoff_max_secs = 1\n";
    for (http, code, message) in [
        (
            "500 Internal Server Error",
            "InsufficientInstanceCapacity",
            "We currently do not have sufficient t3.micro capacity in the Availability Zone you requested.",
        ),
        ("403 Forbidden", "UnauthorizedOperation", "You are not authorized to perform this operation."),
        ("400 Bad Request", "InvalidAMIID.Malformed", "Invalid id: \"ami-x\" (expecting \"ami-...\")"),
    ] {
        let proxy = FaultProxy::start(&endpoint(), 0.0, 1);
        let cluster = format!("refused-{}", uuid::Uuid::new_v4().simple());
        let env = aws_env_at(&cluster, &proxy.url, fast).await;
        proxy.refuse(Some(("RunInstances", http, code, message)));
        let (out, doc) =
            env.script("requestMachines", &json!({"template": {"templateId": "Aws-OnDemand", "machineCount": 1}}));
        assert!(out.status.success(), "{doc}");
        let id = doc["requestId"].as_str().unwrap().to_owned();
        let deadline = Instant::now() + Duration::from_secs(60);
        let last = loop {
            let r = status(&env, &id);
            if r["status"] != "running" {
                break r;
            }
            assert!(Instant::now() < deadline, "{code}: the request never ended: {r}");
            std::thread::sleep(Duration::from_millis(500));
        };
        assert_eq!(last["status"], "complete_with_error", "{code}: {last}");
        let said = last["message"].as_str().unwrap();
        assert!(said.contains(code) && said.contains(message.split('.').next().unwrap()), "{code}: {said}");
        assert_eq!(instances_by_request(&cluster).await.get(&id), None, "{code}: nothing was launched");
    }
}

/// Codes once read as permanent validation errors (a 500 with a code ohf did not know, a
/// skewed clock, a bare 5xx with an unknown code, a busy resource) are transient or busy now:
/// the request waits them out and completes when the cloud answers again, instead of failing
/// at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_and_busy_aws_codes_are_ridden_out_not_taken_as_final() {
    let fast = "[request]\nmax_launch_attempts = 5\nlaunch_backoff_base_secs = 1\nlaunch_backoff_max_secs = 1\n\
                [resilience.retry.operations.ec2_run_instances]\nmax_attempts = 2\nbase_delay = 0.1\nmax_delay = 0.2\n\
                [resilience.retry.operations.autoscaling_create_group]\nmax_attempts = 2\nbase_delay = 0.1\nmax_delay = 0.2\n";
    for (action, template, http, code) in [
        ("RunInstances", "Aws-OnDemand", "500 Internal Server Error", "InternalServerError"),
        ("RunInstances", "Aws-OnDemand", "503 Service Unavailable", "ServiceUnavailable"),
        ("RunInstances", "Aws-OnDemand", "400 Bad Request", "RequestTimeTooSkewed"),
        ("RunInstances", "Aws-OnDemand", "502 Bad Gateway", "SomethingNoTableKnows"),
        ("RunInstances", "Aws-OnDemand", "400 Bad Request", "ConcurrentTagAccess"),
        ("CreateAutoScalingGroup", "Aws-Asg", "400 Bad Request", "ResourceContention"),
    ] {
        let proxy = FaultProxy::start(&endpoint(), 0.0, 1);
        let cluster = format!("transient-{}", uuid::Uuid::new_v4().simple());
        let env = aws_env_at(&cluster, &proxy.url, fast).await;
        proxy.refuse(Some((action, http, code, "try again")));
        let (out, doc) =
            env.script("requestMachines", &json!({"template": {"templateId": template, "machineCount": 1}}));
        assert!(out.status.success(), "{doc}");
        let id = doc["requestId"].as_str().unwrap().to_owned();
        let r = status(&env, &id);
        assert_eq!(r["status"], "running", "{code} is not final: {r}");
        proxy.refuse(None);
        let done = wait_complete(&env, &id, Duration::from_secs(60));
        assert_eq!(done["machines"].as_array().unwrap().len(), 1, "{code}: {done}");
    }
}

/// A busy code on a return (the instance mid-change) is waited out: the return completes once
/// the cloud takes the call, and the machine is terminated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_codes_on_a_return_are_waited_out() {
    let fast =
        "[resilience.retry.operations.ec2_terminate_instances]\nmax_attempts = 2\nbase_delay = 0.1\nmax_delay = 0.2\n";
    let proxy = FaultProxy::start(&endpoint(), 0.0, 1);
    let cluster = format!("busy-{}", uuid::Uuid::new_v4().simple());
    let env = aws_env_at(&cluster, &proxy.url, fast).await;
    let (_, doc) =
        env.script("requestMachines", &json!({"template": {"templateId": "Aws-OnDemand", "machineCount": 1}}));
    let id = doc["requestId"].as_str().unwrap().to_owned();
    let up = wait_complete(&env, &id, Duration::from_secs(60));
    let machine = up["machines"][0].clone();
    proxy.refuse(Some(("TerminateInstances", "400 Bad Request", "IncorrectInstanceState", "the instance is busy")));
    let (out, doc) = env.script(
        "requestReturnMachines",
        &json!({"machines": [{"name": machine["name"], "machineId": machine["machineId"]}]}),
    );
    assert!(out.status.success(), "{doc}");
    let ret = doc["requestId"].as_str().unwrap().to_owned();
    assert_eq!(status(&env, &ret)["status"], "running", "a busy instance does not fail the return");
    proxy.refuse(None);
    let back = wait_complete(&env, &ret, Duration::from_secs(60));
    assert_eq!(back["machines"][0]["result"], "succeed", "{back}");
}
