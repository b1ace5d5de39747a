use std::collections::BTreeMap;
use std::sync::Arc;

use ohf_app::memory::ManualClock;
use ohf_app::{CloudErrorKind, CloudProvider, DescribeQuery, LaunchRequest, OwnedMachine, Ownership};
use ohf_cloud_sim::{SimCloud, SimConfig};
use ohf_domain::testing::{T0, template};
use ohf_domain::{ClientToken, MachineStatus, ProviderName, RequestId, Tags};

fn sim(config: SimConfig) -> (SimCloud, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    (SimCloud::in_memory(ProviderName::new("sim-1").unwrap(), config, clock.clone()), clock)
}

fn launch(request: &str, count: u32, attempt: u32) -> LaunchRequest {
    let id = RequestId::new(request).unwrap();
    let tags = Tags::new(BTreeMap::from([
        ("ohf:request-id".to_owned(), request.to_owned()),
        ("ohf:cluster".to_owned(), "sim".to_owned()),
    ]))
    .unwrap();
    LaunchRequest {
        token: ClientToken::for_launch(&id, attempt),
        request_id: id,
        template: template(100),
        count,
        tags,
        zones: vec![],
        following: None,
        started_at: ohf_domain::testing::T0,
        priority: ohf_domain::Priority::Normal,
    }
}

fn by_request(request: &str) -> DescribeQuery {
    DescribeQuery { request_ids: vec![RequestId::new(request).unwrap()], ..Default::default() }
}

#[tokio::test]
async fn machines_are_pending_then_running_after_the_latency() {
    let (cloud, clock) = sim(SimConfig { launch_latency_ms: 2000, ..SimConfig::default() });
    let out = cloud.launch(&launch("req-1", 2, 1)).await.unwrap();
    assert!(out.machines.iter().all(|m| m.status == MachineStatus::Pending));
    clock.advance_secs(2);
    let seen = cloud.describe(&by_request("req-1")).await.unwrap();
    assert!(seen.iter().all(|m| m.status == MachineStatus::Running));
    assert!(
        seen.iter().all(|m| m.name.as_deref().is_some_and(|n| n.starts_with("ip-10-") && n.ends_with(".ec2.internal")))
    );
}

#[tokio::test]
async fn capacity_is_limited_per_type_and_zone() {
    let config = SimConfig {
        zones: vec!["z1".into()],
        capacity: BTreeMap::from([("m5.large".into(), 2)]),
        ..SimConfig::default()
    };
    let (cloud, _) = sim(config);
    let cap = cloud.capacity(&template(100)).await.unwrap().unwrap();
    assert_eq!((cap.available, cap.instance_type.as_str()), (2, "m5.large"));
    let out = cloud.launch(&launch("req-1", 3, 1)).await.unwrap();
    assert_eq!(out.machines.len(), 2);
    let short = out.shortfall.expect("a shortfall");
    assert_eq!(short.code, "InsufficientInstanceCapacity");
    let err = cloud.launch(&launch("req-1", 1, 2)).await.unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::Capacity);
    let machines: Vec<_> = out
        .machines
        .iter()
        .map(|m| OwnedMachine { id: m.id.clone(), request_id: RequestId::new("req-1").unwrap() })
        .collect();
    let owner = Ownership { cluster: "sim".into(), installation: "i".into() };
    assert!(cloud.terminate(&machines, &owner).await.unwrap().is_empty());
    assert_eq!(cloud.capacity(&template(100)).await.unwrap().unwrap().available, 0, "shutting down still occupies");
}

#[tokio::test]
async fn faults_are_deterministic_under_a_seed() {
    let config = SimConfig { throttle_rate: 0.5, seed: 7, ..SimConfig::default() };
    let outcomes = |config: SimConfig| async move {
        let (cloud, _) = sim(config);
        let mut v = Vec::new();
        for n in 0..20 {
            v.push(
                cloud
                    .launch(&launch(&format!("req-{n}"), 1, 1))
                    .await
                    .map(|o| o.machines[0].id.clone())
                    .map_err(|e| e.code),
            );
        }
        v
    };
    let a = outcomes(config.clone()).await;
    let b = outcomes(config.clone()).await;
    assert_eq!(a, b);
    let throttled = a.iter().filter(|r| r.as_ref().is_err_and(|c| c == "RequestLimitExceeded")).count();
    assert!((3..=17).contains(&throttled), "about half throttled, got {throttled}");
    let c = outcomes(SimConfig { seed: 8, ..config }).await;
    assert_ne!(a, c, "another seed, another run");
}

#[tokio::test]
async fn stuck_machines_never_run() {
    let (cloud, clock) = sim(SimConfig { stuck_rate: 1.0, ..SimConfig::default() });
    cloud.launch(&launch("req-1", 1, 1)).await.unwrap();
    clock.advance_secs(3600);
    let seen = cloud.describe(&by_request("req-1")).await.unwrap();
    assert_eq!(seen[0].status, MachineStatus::Pending);
}

#[tokio::test]
async fn spot_interruptions_give_notice_then_terminate() {
    let (cloud, clock) = sim(SimConfig::default());
    let out = cloud.launch(&launch("req-1", 1, 1)).await.unwrap();
    let id = out.machines[0].id.clone();
    clock.advance_secs(5);
    assert!(cloud.interrupt(&id, 120).await.unwrap());
    let seen = cloud.describe(&by_request("req-1")).await.unwrap();
    assert_eq!(seen[0].status, MachineStatus::Running);
    assert_eq!(seen[0].interruption_at.unwrap().secs_since(T0.plus_secs(5)), 120);
    clock.advance_secs(121);
    let seen = cloud.describe(&by_request("req-1")).await.unwrap();
    assert_eq!(seen[0].status, MachineStatus::Terminated);
}

#[tokio::test]
async fn configured_spot_interruptions_hit_only_spot_machines() {
    let config = SimConfig { spot_interruption_rate: 1.0, interruption_after_secs: 60, ..SimConfig::default() };
    let (cloud, clock) = sim(config);
    cloud.launch(&launch("req-od", 1, 1)).await.unwrap();
    let mut spot = launch("req-spot", 1, 1);
    spot.template = ohf_domain::Template::from_json(&serde_json::json!({
        "templateId": "Spot", "maxNumber": 10, "imageId": "ami-1", "vmTypes": {"m5.large": 1}, "priceType": "spot"
    }))
    .unwrap();
    cloud.launch(&spot).await.unwrap();
    clock.advance_secs(3600);
    let od = cloud.describe(&by_request("req-od")).await.unwrap();
    let sp = cloud.describe(&by_request("req-spot")).await.unwrap();
    assert_eq!(od[0].status, MachineStatus::Running);
    assert_eq!(sp[0].status, MachineStatus::Terminated);
}

#[tokio::test]
async fn two_handles_on_one_file_share_the_cloud() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cloud.json");
    let clock = Arc::new(ManualClock::new(T0));
    let name = ProviderName::new("sim-1").unwrap();
    let a = SimCloud::persistent(name.clone(), SimConfig::default(), clock.clone(), path.clone());
    let b = SimCloud::persistent(name, SimConfig::default(), clock.clone(), path);
    let out = a.launch(&launch("req-1", 2, 1)).await.unwrap();
    assert_eq!(b.describe(&by_request("req-1")).await.unwrap().len(), 2);
    let again = b.launch(&launch("req-1", 2, 1)).await.unwrap();
    assert_eq!(again.machines.len(), 2);
    assert_eq!(again.machines[0].id, out.machines[0].id, "the token is remembered across handles");
    assert_eq!(a.call_counts().await.unwrap().launch, 2);
}

#[test]
fn bad_rates_are_refused() {
    let c = SimConfig { throttle_rate: 1.5, ..SimConfig::default() };
    assert!(c.validate().unwrap_err().contains("throttle_rate"));
    assert!(SimConfig::default().validate().is_ok());
}
