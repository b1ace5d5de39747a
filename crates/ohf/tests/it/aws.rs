//! The Host Factory flow on the AWS adapter against the emulator (`cargo xtask test` starts
//! one and sets OHF_TEST_AWS_ENDPOINT).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::HfEnv;

pub fn endpoint() -> String {
    std::env::var("OHF_TEST_AWS_ENDPOINT")
        .expect("OHF_TEST_AWS_ENDPOINT names the AWS emulator; `cargo xtask test` starts one and sets it")
}

async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint())
        .credentials_provider(aws_sdk_ec2::config::Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await
}

pub async fn ec2() -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::new(&sdk_config().await)
}

/// Whether the emulator serves Auto Scaling: moto does, LocalStack's community edition does not
/// (`cargo xtask test --emulator localstack` sets `OHF_TEST_AWS_EMULATOR` and runs only the
/// EC2 cases there).
fn emulator_has_auto_scaling() -> bool {
    std::env::var("OHF_TEST_AWS_EMULATOR").as_deref() != Ok("localstack")
}

async fn autoscaling() -> aws_sdk_autoscaling::Client {
    aws_sdk_autoscaling::Client::new(&sdk_config().await)
}

/// A provider instance on the emulator, its templates using an image the emulator knows.
async fn aws_env(cluster: &str) -> HfEnv {
    aws_env_at(cluster, &endpoint(), "").await
}

/// As `aws_env`, reaching the emulator at `url` (a proxy in front of it, say), with more
/// settings in `extra`.
pub async fn aws_env_at(cluster: &str, url: &str, extra: &str) -> HfEnv {
    let image =
        ec2().await.describe_images().owners("amazon").send().await.unwrap().images()[0].image_id().unwrap().to_owned();
    let toml = format!(
        "cluster = \"{cluster}\"\n{extra}\n[[providers]]\nname = \"aws-test\"\ntype = \"aws\"\nregion = \"us-east-1\"\n\
         endpoint_url = \"{url}\"\naccess_key_id = \"testing\"\nsecret_access_key = \"testing\"\n",
    );
    let env = HfEnv::new(&toml);
    let templates = json!({"templates": [
        {"templateId": "Aws-OnDemand", "maxNumber": 20, "imageId": image, "vmType": "t3.micro", "instanceTags": "team=abc"},
        {"templateId": "Aws-Fleet", "maxNumber": 20, "imageId": image, "vmTypes": {"t3.micro": 1, "t3.small": 1},
         "providerApi": "EC2Fleet", "fleetType": "instant", "instanceTags": "team=abc"},
        {"templateId": "Aws-FleetRequest", "maxNumber": 20, "imageId": image, "vmTypes": {"t3.micro": 1},
         "providerApi": "EC2Fleet", "fleetType": "request", "instanceTags": "team=abc"},
        {"templateId": "Aws-FleetMaintain", "maxNumber": 20, "imageId": image, "vmTypes": {"t3.micro": 1},
         "providerApi": "EC2Fleet", "fleetType": "maintain", "instanceTags": "team=abc"},
        {"templateId": "Aws-SpotFleet", "maxNumber": 20, "imageId": image, "vmTypes": {"t3.micro": 1},
         "priceType": "spot", "providerApi": "SpotFleet", "fleetType": "request", "allocationStrategy": "lowestPrice",
         "fleetRole": "arn:aws:iam::123456789012:role/aws-ec2-spot-fleet-tagging-role", "instanceTags": "team=abc"},
        {"templateId": "Aws-Asg", "maxNumber": 20, "imageId": image, "vmTypes": {"t3.micro": 1},
         "providerApi": "ASG", "instanceTags": "team=abc"},
        {"templateId": "Aws-Hetero", "maxNumber": 20, "imageId": image, "vmTypes": {"t3.micro": 1},
         "priceType": "heterogeneous", "providerApi": "EC2Fleet", "fleetType": "request",
         "spotFleetRequestExpiry": 1, "instanceTags": "team=abc"}
    ]});
    std::fs::write(env.path("conf/awsprov_templates.json"), templates.to_string()).unwrap();
    env
}

fn wait_status(env: &HfEnv, id: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (out, doc) = env.script("getRequestStatus", &json!({"requests": [{"requestId": id}]}));
        assert!(out.status.success(), "{doc}");
        if doc["requests"][0]["status"] == want {
            return doc["requests"][0].clone();
        }
        assert!(Instant::now() < deadline, "{id} never became {want}: {doc}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `placed`: the template's API places a fleet or group that holds the machines.
async fn provision_and_return(template: &str, placed: bool) {
    let cluster = format!("test-{}", uuid::Uuid::new_v4().simple());
    let env = aws_env(&cluster).await;
    let (out, doc) = env.script("requestMachines", &json!({"template": {"templateId": template, "machineCount": 3}}));
    assert!(out.status.success(), "{doc}");
    let id = doc["requestId"].as_str().unwrap().to_owned();
    let done = wait_status(&env, &id, "complete");
    let machines = done["machines"].as_array().unwrap();
    assert_eq!(machines.len(), 3);

    // A describe of our own, not through ohf.
    let ids: Vec<String> = machines.iter().map(|m| m["machineId"].as_str().unwrap().to_owned()).collect();
    let seen = ec2().await.describe_instances().set_instance_ids(Some(ids.clone())).send().await.unwrap();
    let instances: Vec<_> = seen.reservations().iter().flat_map(|r| r.instances()).collect();
    assert_eq!(instances.len(), 3);
    for i in &instances {
        assert_eq!(i.state().and_then(|s| s.name()).map(|n| n.as_str()), Some("running"));
        let tag = |k: &str| i.tags().iter().find(|t| t.key() == Some(k)).and_then(|t| t.value()).map(String::from);
        assert_eq!(tag("ohf:request-id").as_deref(), Some(id.as_str()));
        assert_eq!(tag("ohf:template-id").as_deref(), Some(template));
        assert_eq!(tag("ohf:provider").as_deref(), Some("aws-test"));
        assert_eq!(tag("ohf:cluster").as_deref(), Some(cluster.as_str()));
        assert_eq!(tag("team").as_deref(), Some("abc"));
        assert!(tag("Name").is_some());
    }
    for m in machines {
        assert_eq!(m["result"], "succeed");
        assert!(m["name"].as_str().is_some_and(|n| !n.is_empty()));
        assert!(m["launchtime"].is_i64());
    }

    // Running machines with no interruption notice: nothing to give back.
    let hosts: Vec<Value> = machines.iter().map(|m| json!({"name": m["name"], "machineId": m["machineId"]})).collect();
    let (out, notices) = env.script("getReturnRequests", &json!({"machines": hosts}));
    assert!(out.status.success(), "{notices}");
    assert_eq!(notices["requests"], json!([]), "{notices}");

    let holders = placements(&id).await;
    assert_eq!(holders.len(), usize::from(placed), "{holders:?}");

    let returns: Vec<Value> =
        machines.iter().map(|m| json!({"name": m["name"], "machineId": m["machineId"]})).collect();
    let (out, doc) = env.script("requestReturnMachines", &json!({"machines": returns}));
    assert!(out.status.success(), "{doc}");
    let ret = doc["requestId"].as_str().unwrap().to_owned();
    let back = wait_status(&env, &ret, "complete");
    assert!(back["machines"].as_array().unwrap().iter().all(|m| m["result"] == "succeed"));
    let seen = ec2().await.describe_instances().set_instance_ids(Some(ids)).send().await.unwrap();
    for i in seen.reservations().iter().flat_map(|r| r.instances()) {
        let state = i.state().and_then(|s| s.name()).map(|n| n.as_str().to_owned()).unwrap_or_default();
        assert!(state == "terminated" || state == "shutting-down", "{state}");
    }
    let left = placements(&id).await;
    assert!(left.is_empty(), "the request's fleet or group is gone after the return: {left:?}");
}

/// The fleets, spot fleets and groups tagged with `request` that are not deleted, through
/// calls of our own.
pub async fn placements(request: &str) -> Vec<String> {
    let tagged = |tags: Vec<(Option<String>, Option<String>)>| {
        tags.iter().any(|(k, v)| k.as_deref() == Some("ohf:request-id") && v.as_deref() == Some(request))
    };
    let mut left = Vec::new();
    let ec2 = ec2().await;
    for f in ec2.describe_fleets().send().await.unwrap().fleets() {
        let state = f.fleet_state().map(|s| s.as_str().to_owned()).unwrap_or_default();
        if tagged(f.tags().iter().map(|t| (t.key().map(String::from), t.value().map(String::from))).collect())
            && !state.starts_with("deleted")
        {
            left.push(format!("{} {state}", f.fleet_id().unwrap_or_default()));
        }
    }
    for f in ec2.describe_spot_fleet_requests().send().await.unwrap().spot_fleet_request_configs() {
        let state = f.spot_fleet_request_state().map(|s| s.as_str().to_owned()).unwrap_or_default();
        if tagged(f.tags().iter().map(|t| (t.key().map(String::from), t.value().map(String::from))).collect())
            && !state.starts_with("cancelled")
        {
            left.push(format!("{} {state}", f.spot_fleet_request_id().unwrap_or_default()));
        }
    }
    // LocalStack's community edition has no Auto Scaling: there are no groups to leave behind.
    let mut groups = Vec::new();
    if emulator_has_auto_scaling() {
        // Every page: other tests place groups in the same emulator.
        let client = autoscaling().await;
        let mut next = None;
        loop {
            let page = client.describe_auto_scaling_groups().set_next_token(next.take()).send().await.unwrap();
            groups.extend(page.auto_scaling_groups().iter().cloned());
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                _ => break,
            }
        }
    }
    for g in &groups {
        if tagged(g.tags().iter().map(|t| (t.key().map(String::from), t.value().map(String::from))).collect()) {
            left.push(g.auto_scaling_group_name().unwrap_or_default().to_owned());
        }
    }
    left
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_instances_flow_provisions_and_returns() {
    provision_and_return("Aws-OnDemand", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ec2_fleet_instant_flow_provisions_and_returns() {
    provision_and_return("Aws-Fleet", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ec2_fleet_request_flow_provisions_and_returns() {
    provision_and_return("Aws-FleetRequest", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ec2_fleet_maintain_flow_provisions_and_returns() {
    provision_and_return("Aws-FleetMaintain", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_fleet_flow_provisions_and_returns() {
    provision_and_return("Aws-SpotFleet", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_scaling_group_flow_provisions_and_returns() {
    provision_and_return("Aws-Asg", true).await;
}

/// Two AWS provider instances, the first by priority at an endpoint where nothing listens: the
/// Host Factory flow completes on the other, and the return reaches the provider holding the
/// machines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_aws_provider_dead_the_flow_completes_on_the_other_and_returns_reach_it() {
    let cluster = format!("test-{}", uuid::Uuid::new_v4().simple());
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let extra = format!(
        "[resilience.retry]\ndefault_max_attempts = 2\ndefault_base_delay = 0.1\ndefault_max_delay = 0.2\n\
         [resilience.retry.operations.ec2_run_instances]\nmax_attempts = 2\nbase_delay = 0.1\nmax_delay = 0.2\n\
         [[providers]]\nname = \"aws-dead\"\ntype = \"aws\"\nregion = \"us-east-1\"\n\
         endpoint_url = \"http://127.0.0.1:{dead}\"\naccess_key_id = \"testing\"\nsecret_access_key = \"testing\"\n"
    );
    let env = aws_env_at(&cluster, &endpoint(), &extra).await;
    let (out, doc) =
        env.script("requestMachines", &json!({"template": {"templateId": "Aws-OnDemand", "machineCount": 2}}));
    assert!(out.status.success(), "{doc}");
    let id = doc["requestId"].as_str().unwrap().to_owned();
    let done = wait_status(&env, &id, "complete");
    let machines = done["machines"].as_array().unwrap();
    assert_eq!(machines.len(), 2);
    let ids: Vec<String> = machines.iter().map(|m| m["machineId"].as_str().unwrap().to_owned()).collect();
    let seen = ec2().await.describe_instances().set_instance_ids(Some(ids.clone())).send().await.unwrap();
    for i in seen.reservations().iter().flat_map(|r| r.instances()) {
        let provider = i.tags().iter().find(|t| t.key() == Some("ohf:provider")).and_then(|t| t.value());
        assert_eq!(provider, Some("aws-test"));
    }
    let history = env.ohf().args(["request", "history", &id, "-o", "json"]).output().unwrap();
    let history: Value = serde_json::from_slice(&history.stdout).unwrap();
    let moved: Vec<&Value> =
        history.as_array().unwrap().iter().map(|e| &e["event"]).filter(|e| e["type"] == "provider_changed").collect();
    assert_eq!(moved.len(), 1, "{history}");
    assert_eq!((moved[0]["from"].as_str(), moved[0]["to"].as_str()), (Some("aws-dead"), Some("aws-test")));

    let returns: Vec<Value> =
        machines.iter().map(|m| json!({"name": m["name"], "machineId": m["machineId"]})).collect();
    let (out, doc) = env.script("requestReturnMachines", &json!({"machines": returns}));
    assert!(out.status.success(), "{doc}");
    wait_status(&env, doc["requestId"].as_str().unwrap(), "complete");
    let seen = ec2().await.describe_instances().set_instance_ids(Some(ids)).send().await.unwrap();
    for i in seen.reservations().iter().flat_map(|r| r.instances()) {
        let state = i.state().and_then(|s| s.name()).map(|n| n.as_str().to_owned()).unwrap_or_default();
        assert!(state == "terminated" || state == "shutting-down", "{state}");
    }
    let out = env.ohf().args(["getProviderHealth", "--data", r#"{"provider_name": "aws-dead"}"#]).output().unwrap();
    let health: Value = serde_json::from_slice(&out.stdout).unwrap();
    let metrics = env
        .ohf()
        .args(["getProviderMetrics", "--data", r#"{"provider_name": "aws-dead", "include_operation_breakdown": true}"#])
        .output()
        .unwrap();
    let metrics: Value = serde_json::from_slice(&metrics.stdout).unwrap();
    assert_eq!(metrics["providers"][0]["operations"]["CREATE_INSTANCES"]["failed_operations"], 1, "{metrics} {health}");
}

/// A type the built-in table lacks gets its figures from DescribeInstanceTypes, kept in the
/// store: later processes need no AWS call for them. A type nobody knows leaves its template
/// out, and a request for it is refused naming the type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures_of_types_the_table_lacks_come_from_describe_instance_types_once() {
    let cluster = format!("test-{}", uuid::Uuid::new_v4().simple());
    let env = aws_env(&cluster).await;
    let file = env.path("conf/awsprov_templates.json");
    let mut templates: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let image = templates["templates"][0]["imageId"].clone();
    let list = templates["templates"].as_array_mut().unwrap();
    list.push(json!({"templateId": "Aws-X2", "maxNumber": 2, "imageId": image, "vmType": "x2iedn.xlarge"}));
    list.push(json!({"templateId": "Aws-Nowhere", "maxNumber": 2, "imageId": image, "vmType": "zz9.huge"}));
    std::fs::write(&file, templates.to_string()).unwrap();

    let offered = |env: &HfEnv| {
        let (out, doc) = env.script("getAvailableTemplates", &json!({}));
        assert!(out.status.success(), "{doc}");
        doc["templates"].as_array().unwrap().clone()
    };
    let first = offered(&env);
    let x2 = first.iter().find(|t| t["templateId"] == "Aws-X2").unwrap_or_else(|| panic!("{first:?}"));
    // x2iedn.xlarge: 4 vCPUs at 2 threads per core, 128 GiB.
    assert_eq!(x2["attributes"]["ncpus"], json!(["Numeric", "2"]), "{x2}");
    assert_eq!(x2["attributes"]["nram"], json!(["Numeric", "131072"]));
    assert_eq!(x2["attributes"]["type"], json!(["String", "X86_64"]));
    assert!(first.iter().all(|t| t["templateId"] != "Aws-Nowhere"));
    let (out, doc) =
        env.script("requestMachines", &json!({"template": {"templateId": "Aws-Nowhere", "machineCount": 1}}));
    assert!(!out.status.success());
    assert!(doc["message"].as_str().unwrap().contains("zz9.huge"), "{doc}");

    // With AWS out of reach, the figures come from the store.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let toml = std::fs::read_to_string(env.path("conf/ohf.toml"))
        .unwrap()
        .replace(&endpoint(), &format!("http://127.0.0.1:{dead}"));
    std::fs::write(env.path("conf/ohf.toml"), toml).unwrap();
    let again = offered(&env);
    let x2 = again.iter().find(|t| t["templateId"] == "Aws-X2").unwrap_or_else(|| panic!("{again:?}"));
    assert_eq!(x2["attributes"]["nram"], json!(["Numeric", "131072"]));
}

/// `proxy_url` (AWS_PROXY_HOST/PORT in awsprov_config.json): every call goes through the
/// proxy, and the flow works through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_goes_through_the_configured_proxy() {
    let proxy = crate::fault_proxy::FaultProxy::start(&endpoint(), 0.0, 1);
    let cluster = format!("test-{}", uuid::Uuid::new_v4().simple());
    let env = aws_env(&cluster).await;
    let toml = std::fs::read_to_string(env.path("conf/ohf.toml")).unwrap();
    std::fs::write(env.path("conf/ohf.toml"), format!("{toml}proxy_url = \"{}\"\n", proxy.url)).unwrap();
    let (out, doc) =
        env.script("requestMachines", &json!({"template": {"templateId": "Aws-OnDemand", "machineCount": 1}}));
    assert!(out.status.success(), "{doc}");
    let id = doc["requestId"].as_str().unwrap().to_owned();
    wait_status(&env, &id, "complete");
    let forwarded = proxy.counts.forwarded.load(std::sync::atomic::Ordering::SeqCst);
    assert!(forwarded >= 2, "the launch and the describes went through the proxy: {forwarded}");
}

mod app_level {
    use std::sync::Arc;

    use ohf_app::memory::{MemoryStore, StaticCatalog};
    use ohf_app::{App, AppSettings, CloudProvider, EventBus, RequestMachines, Requests, SystemClock, UuidIds};
    use ohf_cloud_aws::{AwsConfig, AwsProvider, Secret};
    use ohf_domain::{ProviderName, RequestState, Template};
    use serde_json::json;

    use super::{ec2, endpoint};
    use ohf_app::memory::Faulty;

    async fn aws() -> Arc<AwsProvider> {
        let mut c = AwsConfig::new("us-east-1");
        c.endpoint_url = Some(endpoint());
        c.access_key_id = Some("testing".into());
        c.secret_access_key = Some(Secret::new("testing"));
        Arc::new(AwsProvider::connect(ProviderName::new("aws-test").unwrap(), &c).await.unwrap())
    }

    async fn app(provider: Arc<dyn CloudProvider>, store: Arc<MemoryStore>) -> App {
        app_with(provider, store, json!({"vmType": "t3.micro"})).await
    }

    /// An app whose one template, `Aws-App`, has the fields of `fields` too.
    async fn app_with(provider: Arc<dyn CloudProvider>, store: Arc<MemoryStore>, fields: serde_json::Value) -> App {
        let image = ec2().await.describe_images().owners("amazon").send().await.unwrap().images()[0]
            .image_id()
            .unwrap()
            .to_owned();
        let mut doc = json!({"templateId": "Aws-App", "maxNumber": -1, "imageId": image});
        doc.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
        let template = Template::from_json(&doc).unwrap();
        let settings =
            AppSettings { cluster: format!("test-{}", uuid::Uuid::new_v4().simple()), ..AppSettings::default() };
        App::builder(store, Arc::new(StaticCatalog(vec![template])))
            .provider(provider)
            .clock(Arc::new(SystemClock))
            .ids(Arc::new(UuidIds))
            .bus(EventBus::default())
            .settings(settings)
            .build()
            .unwrap()
    }

    /// One reconcile cycle following the fleets and groups of 75 requests (25 each of EC2 Fleet,
    /// Spot Fleet and Auto Scaling group, beside 25 RunInstances requests) asks for each kind
    /// of placement once, and for the instances of all of them in a fixed number of
    /// DescribeInstances calls, not once per request. The fleets' instances carry the tags AWS
    /// puts on them (`aws:ec2:fleet-id`, `aws:ec2spot:fleet-request-id`), set here where the
    /// emulator does not.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn following_many_fleets_and_groups_takes_one_describe_per_kind_a_cycle() {
        let provider = aws().await;
        let store = Arc::new(MemoryStore::new());
        let image = ec2().await.describe_images().owners("amazon").send().await.unwrap().images()[0]
            .image_id()
            .unwrap()
            .to_owned();
        let templates = [
            json!({"templateId": "Run", "vmType": "t3.micro"}),
            json!({"templateId": "Fleet", "vmTypes": {"t3.micro": 1}, "providerApi": "EC2Fleet", "fleetType": "request"}),
            json!({"templateId": "Spot", "vmTypes": {"t3.micro": 1}, "priceType": "spot", "providerApi": "SpotFleet",
                   "fleetType": "request", "allocationStrategy": "lowestPrice",
                   "fleetRole": "arn:aws:iam::123456789012:role/aws-ec2-spot-fleet-tagging-role"}),
            json!({"templateId": "Group", "vmTypes": {"t3.micro": 1}, "providerApi": "ASG"}),
        ]
        .map(|mut t| {
            t["imageId"] = json!(image);
            t["maxNumber"] = json!(-1);
            Template::from_json(&t).unwrap()
        });
        let settings =
            AppSettings { cluster: format!("test-{}", uuid::Uuid::new_v4().simple()), ..AppSettings::default() };
        let app = App::builder(store.clone(), Arc::new(StaticCatalog(templates.to_vec())))
            .provider(provider.clone())
            .clock(Arc::new(SystemClock))
            .ids(Arc::new(UuidIds))
            .bus(EventBus::default())
            .settings(settings)
            .build()
            .unwrap();
        let mut ids = Vec::new();
        for i in 0..100 {
            let template = ["Run", "Fleet", "Spot", "Group"][i % 4];
            let ask =
                RequestMachines { template_id: template.into(), count: 1, timeout: Some(600), ..Default::default() };
            ids.push(app.execute(ask).await.unwrap().id().clone());
        }
        // As AWS does, each fleet's instances name their fleet.
        let ec2 = ec2().await;
        for id in &ids {
            for placement in super::placements(id.as_str()).await {
                let fleet = placement.split(' ').next().unwrap().to_owned();
                let (key, instances) = if fleet.starts_with("sfr-") {
                    let out = ec2.describe_spot_fleet_instances().spot_fleet_request_id(&fleet).send().await.unwrap();
                    (
                        "aws:ec2spot:fleet-request-id",
                        out.active_instances()
                            .to_vec()
                            .iter()
                            .filter_map(|i| i.instance_id().map(String::from))
                            .collect::<Vec<_>>(),
                    )
                } else if fleet.starts_with("fleet-") {
                    let out = ec2.describe_fleet_instances().fleet_id(&fleet).send().await.unwrap();
                    (
                        "aws:ec2:fleet-id",
                        out.active_instances().iter().filter_map(|i| i.instance_id().map(String::from)).collect(),
                    )
                } else {
                    continue;
                };
                if !instances.is_empty() {
                    let tag = aws_sdk_ec2::types::Tag::builder().key(key).value(&fleet).build();
                    ec2.create_tags().set_resources(Some(instances)).tags(tag).send().await.unwrap();
                }
            }
        }
        let before = provider.calls();
        let report = app.reconcile(None).await;
        let after = provider.calls();
        let delta = |op: &str| after.get(op).copied().unwrap_or(0) - before.get(op).copied().unwrap_or(0);
        let made: Vec<_> =
            after.iter().map(|(k, v)| (k, v - before.get(k).copied().unwrap_or(0))).filter(|(_, n)| *n > 0).collect();
        println!("one cycle over {} requests (75 following a fleet or group): {made:?}", report.examined);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(delta("DescribeFleets"), 1, "{made:?}");
        assert_eq!(delta("DescribeSpotFleetRequests"), 1, "{made:?}");
        // A group tags its instances at launch: the cycle's own describe may adopt them all first.
        assert!(delta("DescribeAutoScalingGroups") <= 1, "{made:?}");
        assert_eq!(delta("DescribeFleetInstances") + delta("DescribeSpotFleetInstances"), 0, "{made:?}");
        // The cycle's own describe (by id and by request tag), each kind's instances: never one
        // per request.
        assert!(delta("DescribeInstances") <= 5, "{made:?}");
        // Tagging a fleet's new instances for their request is one write per request that has any.
        assert!(delta("CreateTags") <= 50, "{made:?}");
        for _ in 0..3 {
            if store.needing_work(None).await.unwrap().is_empty() {
                break;
            }
            app.reconcile(None).await;
        }
        for id in &ids {
            let r = store.get(id).await.unwrap().unwrap();
            assert_eq!(r.state(), RequestState::Completed, "{id}: {:?}", r.error());
            assert_eq!(r.machines().len(), 1, "{id}");
        }
    }

    fn ask(count: i64) -> RequestMachines {
        RequestMachines { template_id: "Aws-App".into(), count, timeout: Some(600), ..Default::default() }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_launch_whose_answer_was_lost_is_adopted_on_aws() {
        let store = Arc::new(MemoryStore::new());
        let lossy = Arc::new(Faulty { inner: aws().await, lose_launch_answers: true, hide_capacity: false });
        let app = app(lossy, store.clone()).await;
        let r = app.execute(ask(3)).await.unwrap();
        assert!(r.machines().is_empty(), "the launch answer was lost");
        app.reconcile(None).await;
        let done = store.get(r.id()).await.unwrap().unwrap();
        assert_eq!(done.state(), RequestState::Completed, "{:?}", done.error());
        assert_eq!(done.machines().len(), 3);
        let tagged = ec2()
            .await
            .describe_instances()
            .filters(aws_sdk_ec2::types::Filter::builder().name("tag:ohf:request-id").values(r.id().as_str()).build())
            .send()
            .await
            .unwrap();
        let count = tagged.reservations().iter().map(|x| x.instances().len()).sum::<usize>();
        assert_eq!(count, 3, "no second set of machines");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_cancelled_while_its_group_fills_stops_the_group_with_its_machines() {
        let store = Arc::new(MemoryStore::new());
        let fields = json!({"vmTypes": {"t3.micro": 1}, "providerApi": "ASG"});
        let app = app_with(aws().await, store.clone(), fields).await;
        let r = app.execute(ask(2)).await.unwrap();
        assert!(r.machines().is_empty(), "the group was placed; its machines come later");
        assert_eq!(super::placements(r.id().as_str()).await.len(), 1);
        app.execute(ohf_app::commands::CancelRequest { request_id: r.id().to_string(), requester: None })
            .await
            .unwrap();
        app.reconcile(None).await;
        let done = store.get(r.id()).await.unwrap().unwrap();
        assert_eq!(done.state(), RequestState::Cancelled);
        let names: Vec<_> = store.history(r.id()).await.unwrap().iter().map(|e| e.event.name()).collect();
        assert!(names.contains(&"launch_released"), "{names:?}");
        assert!(super::placements(r.id().as_str()).await.is_empty(), "the group is gone");
        let tagged = ec2()
            .await
            .describe_instances()
            .filters(aws_sdk_ec2::types::Filter::builder().name("tag:ohf:request-id").values(r.id().as_str()).build())
            .filters(aws_sdk_ec2::types::Filter::builder().name("instance-state-name").values("running").build())
            .send()
            .await
            .unwrap();
        assert_eq!(tagged.reservations().iter().map(|x| x.instances().len()).sum::<usize>(), 0, "nothing left running");
    }

    /// Describe calls per reconcile cycle do not grow with the number of requests (20 here,
    /// for time; the same two calls were measured for 100 requests of 10 machines).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reconcile_cycle_over_many_requests_makes_two_describe_calls() {
        let provider = aws().await;
        let store = Arc::new(MemoryStore::new());
        let app = app(provider.clone(), store.clone()).await;
        for _ in 0..20 {
            app.execute(ask(10)).await.unwrap();
        }
        let before = provider.calls();
        let report = app.reconcile(None).await;
        let after = provider.calls();
        let delta = |op: &str| after.get(op).copied().unwrap_or(0) - before.get(op).copied().unwrap_or(0);
        println!(
            "one cycle over {} requests x 10 machines: {:?}",
            report.examined,
            after.iter().map(|(k, v)| (k, v - before.get(k).copied().unwrap_or(0))).collect::<Vec<_>>()
        );
        assert_eq!(report.examined, 20);
        assert_eq!(delta("DescribeInstances"), 2, "one call by ids, one by request tag");
        assert_eq!(delta("RunInstances"), 0);
        let done = store.needing_work(None).await.unwrap();
        assert!(done.is_empty(), "every request completed in the cycle");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_graceful_return_terminates_nothing_on_aws_until_its_drain_ends() {
        let store = Arc::new(MemoryStore::new());
        let app = app(aws().await, store.clone()).await;
        let r = app.execute(ask(2)).await.unwrap();
        app.reconcile(None).await;
        let held = store.get(r.id()).await.unwrap().unwrap();
        assert_eq!(held.state(), RequestState::Completed, "{:?}", held.error());
        let ids: Vec<String> = held.machines().iter().map(|m| m.id().to_string()).collect();
        let running = |ids: Vec<String>| async move {
            let out = ec2().await.describe_instances().set_instance_ids(Some(ids)).send().await.unwrap();
            out.reservations()
                .iter()
                .flat_map(|x| x.instances())
                .filter(|i| i.state().and_then(|s| s.name()) == Some(&aws_sdk_ec2::types::InstanceStateName::Running))
                .count()
        };
        let ret = app
            .execute(ohf_app::RequestReturn {
                machines: ids.iter().map(|id| ohf_app::MachineRef { id: Some(id.clone()), name: None }).collect(),
                drain_timeout: Some(2),
                ..Default::default()
            })
            .await
            .unwrap();
        app.reconcile(None).await;
        assert_eq!(running(ids.clone()).await, 2, "nothing terminated while the drain lasts");
        tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
        app.reconcile(None).await;
        assert_eq!(running(ids.clone()).await, 0, "terminated once the drain ended");
        app.reconcile(None).await;
        let done = store.get(ret.id()).await.unwrap().unwrap();
        assert_eq!(done.state(), RequestState::Completed, "{:?}", done.error());
    }
}

/// This cluster's launch templates, by name, through a describe of our own.
async fn launch_templates(cluster: &str) -> Vec<String> {
    let filter = aws_sdk_ec2::types::Filter::builder().name("tag:ohf:cluster").values(cluster).build();
    let out = ec2().await.describe_launch_templates().filters(filter).send().await.unwrap();
    out.launch_templates().iter().filter_map(|lt| lt.launch_template_name()).map(String::from).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_templates_are_reused_and_deleted_once_no_template_needs_them() {
    let cluster = format!("test-{}", uuid::Uuid::new_v4().simple());
    let env = aws_env(&cluster).await;
    for _ in 0..2 {
        let (out, doc) =
            env.script("requestMachines", &json!({"template": {"templateId": "Aws-Fleet", "machineCount": 1}}));
        assert!(out.status.success(), "{doc}");
        wait_status(&env, doc["requestId"].as_str().unwrap(), "complete");
    }
    let made = launch_templates(&cluster).await;
    assert_eq!(made.len(), 1, "one launch template for both requests: {made:?}");
    assert!(made[0].starts_with("ohf-Aws-Fleet-"), "{made:?}");

    let sweep = || {
        let out = env.ohf().args(["sweep", "--min-age", "100000", "-o", "json"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    assert_eq!(sweep()["launchTemplatesDeleted"], json!([]), "still the current version");

    // The template changes: its old launch template is no longer made from anything.
    let file = env.path("conf/awsprov_templates.json");
    let changed = std::fs::read_to_string(&file).unwrap().replace("team=abc", "team=xyz");
    std::fs::write(&file, changed).unwrap();
    let report = sweep();
    assert_eq!(report["launchTemplatesDeleted"], json!(made), "{report}");
    assert_eq!(report["terminated"], json!([]), "machines are another matter");
    assert!(launch_templates(&cluster).await.is_empty());
}

/// A return of part of a fleet's or group's machines shrinks it: the rest keep running and
/// nothing replaces the returned one; returning the rest deletes it.
async fn partial_return_shrinks(template: &str) {
    let cluster = format!("test-{}", uuid::Uuid::new_v4().simple());
    let env = aws_env(&cluster).await;
    let (_, doc) = env.script("requestMachines", &json!({"template": {"templateId": template, "machineCount": 3}}));
    let id = doc["requestId"].as_str().unwrap().to_owned();
    let done = wait_status(&env, &id, "complete");
    let machines = done["machines"].as_array().unwrap().clone();
    let give_back = |ms: &[Value]| {
        let list: Vec<Value> = ms.iter().map(|m| json!({"name": m["name"], "machineId": m["machineId"]})).collect();
        let (out, doc) = env.script("requestReturnMachines", &json!({"machines": list}));
        assert!(out.status.success(), "{doc}");
        wait_status(&env, doc["requestId"].as_str().unwrap(), "complete");
    };
    give_back(&machines[..1]);
    assert_eq!(placements(&id).await.len(), 1, "the fleet or group stays for the other machines");
    let live = |ids: Vec<String>| async move {
        let seen = ec2().await.describe_instances().set_instance_ids(Some(ids)).send().await.unwrap();
        seen.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter(|i| i.state().and_then(|s| s.name()).is_some_and(|n| n.as_str() == "running"))
            .count()
    };
    let ids = |ms: &[Value]| ms.iter().map(|m| m["machineId"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(live(ids(&machines[1..])).await, 2, "the machines not returned keep running");
    assert_eq!(live(ids(&machines[..1])).await, 0);
    // Nothing replaced the returned machine.
    let filter = aws_sdk_ec2::types::Filter::builder().name("tag:ohf:cluster").values(&cluster).build();
    let running = aws_sdk_ec2::types::Filter::builder().name("instance-state-name").values("running").build();
    let all = ec2().await.describe_instances().filters(filter).filters(running).send().await.unwrap();
    assert_eq!(all.reservations().iter().map(|r| r.instances().len()).sum::<usize>(), 2);

    give_back(&machines[1..]);
    assert!(placements(&id).await.is_empty(), "returning the last machines deletes it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_return_shrinks_the_group() {
    partial_return_shrinks("Aws-Asg").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_return_shrinks_the_spot_fleet() {
    partial_return_shrinks("Aws-SpotFleet").await;
}

/// Someone else's instance and someone else's Auto Scaling group in the same account, returned
/// through the scripts: the return answers, each machine fails with the reason, and nothing is
/// terminated, shrunk or deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returning_what_ohf_did_not_launch_touches_nothing() {
    let cluster = format!("test-{}", uuid::Uuid::new_v4().simple());
    let env = aws_env(&cluster).await;
    let ec2 = ec2().await;
    let image = ec2.describe_images().owners("amazon").send().await.unwrap().images()[0].image_id().unwrap().to_owned();
    let theirs = ec2
        .run_instances()
        .image_id(&image)
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .unwrap()
        .instances()[0]
        .instance_id()
        .unwrap()
        .to_owned();
    let lt_name = format!("foreign-{}", uuid::Uuid::new_v4().simple());
    let lt = ec2
        .create_launch_template()
        .launch_template_name(&lt_name)
        .launch_template_data(
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                .image_id(&image)
                .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let group = format!("foreign-group-{}", uuid::Uuid::new_v4().simple());
    let asg = autoscaling().await;
    asg.create_auto_scaling_group()
        .auto_scaling_group_name(&group)
        .launch_template(
            aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                .launch_template_id(lt.launch_template().unwrap().launch_template_id().unwrap())
                .build(),
        )
        .min_size(0)
        .max_size(2)
        .desired_capacity(2)
        .availability_zones("us-east-1a")
        .send()
        .await
        .unwrap();
    let described = asg.describe_auto_scaling_groups().auto_scaling_group_names(&group).send().await.unwrap();
    let member = described.auto_scaling_groups()[0].instances()[0].instance_id().unwrap().to_owned();

    let returns =
        json!({"machines": [{"name": "ip-10-0-0-1.ec2.internal", "machineId": theirs}, {"machineId": member}]});
    let (out, doc) = env.script("requestReturnMachines", &returns);
    assert!(out.status.success(), "{doc}");
    let ret = doc["requestId"].as_str().unwrap().to_owned();
    let done = wait_status(&env, &ret, "complete_with_error");
    for m in done["machines"].as_array().unwrap() {
        assert_eq!(m["result"], "fail", "{done}");
        assert!(m["message"].as_str().unwrap().contains("not launched by this ohf installation"), "{done}");
    }
    let seen = ec2.describe_instances().instance_ids(&theirs).instance_ids(&member).send().await.unwrap();
    for i in seen.reservations().iter().flat_map(|r| r.instances()) {
        assert_eq!(i.state().and_then(|s| s.name()).map(|n| n.as_str()), Some("running"), "{:?}", i.instance_id());
    }
    let after = asg.describe_auto_scaling_groups().auto_scaling_group_names(&group).send().await.unwrap();
    let g = &after.auto_scaling_groups()[0];
    assert_eq!(
        (g.desired_capacity(), g.instances().len()),
        (Some(2), 2),
        "the foreign group is neither shrunk nor deleted"
    );
    asg.delete_auto_scaling_group().auto_scaling_group_name(&group).force_delete(true).send().await.unwrap();
    ec2.terminate_instances().instance_ids(&theirs).send().await.unwrap();
}
