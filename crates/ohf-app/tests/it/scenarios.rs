//! The application on in-memory adapters and the simulated cloud, with a hand-driven clock.

use std::collections::BTreeMap;

use ohf_app::{
    AppError, AppSettings, CloudProvider, DescribeQuery, MachineRef, RequestFilter, RequestMachines, RequestReturn,
    Requests, WorkClaims,
};
use ohf_cloud_sim::SimConfig;
use ohf_domain::{ErrorCode, LifecyclePolicy, MachineStatus, PartialPolicy, Request, RequestId, RequestState};

use ohf_app::memory::Faulty;

use crate::harness::{harness, harness_with};

fn ask(template: &str, count: i64) -> RequestMachines {
    RequestMachines { template_id: template.into(), count, ..Default::default() }
}

fn code(e: AppError) -> ErrorCode {
    e.code()
}

async fn cycle(h: &crate::harness::Harness, secs: u64) {
    h.clock.advance_secs(secs);
    h.app.reconcile(None).await;
}

async fn get(h: &crate::harness::Harness, id: &RequestId) -> Request {
    h.store.get(id).await.unwrap().unwrap()
}

/// What the cloud itself holds for a request, asked outside ohf (retrying injected faults).
async fn sim_machines(h: &crate::harness::Harness, id: &RequestId) -> Vec<ohf_domain::MachineObservation> {
    let q = DescribeQuery { request_ids: vec![id.clone()], ..Default::default() };
    for _ in 0..50 {
        if let Ok(found) = h.sim.describe(&q).await {
            return found;
        }
    }
    panic!("describe kept failing")
}

#[tokio::test]
async fn a_request_completes_and_its_events_form_the_audit_trail() {
    let h = harness(SimConfig::default(), AppSettings::default());
    let mut live = h.app.bus().subscribe();
    let r = h.app.execute(ask("OnDemand-Minimal", 3)).await.unwrap();
    assert_eq!(r.state(), RequestState::InProgress, "the first launch is made at once");
    cycle(&h, 3).await;
    let done = get(&h, r.id()).await;
    assert_eq!(done.state(), RequestState::Completed);
    assert_eq!(done.machines().len(), 3);
    let history = h.app.ask(ohf_app::queries::GetRequestHistory { request_id: r.id().to_string() }).await.unwrap();
    assert_eq!(Request::replay(&history).unwrap().state(), RequestState::Completed);
    let mut published = 0;
    while live.try_recv().is_ok() {
        published += 1;
    }
    assert_eq!(published, history.len(), "every stored event was published");
}

#[tokio::test]
async fn validation_refuses_before_anything_is_stored() {
    let settings = AppSettings { account_limit: Some(12), ..AppSettings::default() };
    let h = harness(SimConfig::default(), settings);
    h.app.execute(ask("Spot-Compute", 5)).await.unwrap();
    let refused = [
        (ask("Missing", 1), ErrorCode::TemplateNotFound),
        (ask("OnDemand-Minimal", 0), ErrorCode::ValidationError),
        (ask("OnDemand-Minimal", 101), ErrorCode::ValidationError),
        (ask("OnDemand-Minimal", 11), ErrorCode::InsufficientCapacity),
        (ask("Spot-Compute", 8), ErrorCode::QuotaExceeded),
        (RequestMachines { timeout: Some(59), ..ask("OnDemand-Minimal", 1) }, ErrorCode::ValidationError),
        (RequestMachines { timeout: Some(3601), ..ask("OnDemand-Minimal", 1) }, ErrorCode::ValidationError),
        (
            RequestMachines { tags: BTreeMap::from([("k".repeat(129), "v".into())]), ..ask("OnDemand-Minimal", 1) },
            ErrorCode::ValidationError,
        ),
        (RequestMachines { priority: Some("urgent".into()), ..ask("OnDemand-Minimal", 1) }, ErrorCode::ValidationError),
        (RequestMachines { provider: Some("aws-9".into()), ..ask("OnDemand-Minimal", 1) }, ErrorCode::ValidationError),
    ];
    for (cmd, expected) in refused {
        let shown = format!("{cmd:?}");
        let err = h.app.execute(cmd).await.unwrap_err();
        assert_eq!(code(err), expected, "{shown}");
    }
    let all = h.app.ask(ohf_app::queries::ListRequests { filter: RequestFilter::default() }).await.unwrap();
    assert_eq!(all.len(), 1, "only the first request is stored");
    let over = h.app.execute(ask("OnDemand-Minimal", 11)).await.unwrap_err();
    assert_eq!(over.details()["availableCapacity"], 10);
    let q = h.app.execute(ask("Spot-Compute", 8)).await.unwrap_err();
    assert_eq!(q.details()["currentUsage"], 5);
    assert_eq!(q.details()["requestedAdditional"], 8);
    assert_eq!(q.details()["accountLimit"], 12);
}

#[tokio::test]
async fn template_capacity_and_cloud_capacity_carry_figures() {
    let sim = SimConfig {
        zones: vec!["z1".into()],
        capacity: BTreeMap::from([("c5.xlarge".into(), 4)]),
        ..SimConfig::default()
    };
    let h = harness(sim, AppSettings::default());
    h.app.execute(ask("OnDemand-Minimal", 8)).await.unwrap();
    let err = h.app.execute(ask("OnDemand-Minimal", 3)).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InsufficientCapacity);
    assert_eq!(err.details()["availableCapacity"], 2);
    assert_eq!(err.details()["templateId"], "OnDemand-Minimal");
    let err = h.app.execute(ask("Spot-Compute", 5)).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InsufficientCapacity);
    assert_eq!(err.details()["instanceType"], "c5.xlarge");
    assert_eq!(err.details()["region"], "sim-east-1");
    assert_eq!(err.details()["requestedCount"], 5);
}

#[tokio::test]
async fn a_client_request_id_makes_creation_idempotent() {
    let h = harness(SimConfig::default(), AppSettings::default());
    let with_id = || RequestMachines { request_id: Some("custom-req-12345".into()), ..ask("OnDemand-Minimal", 2) };
    let a = h.app.execute(with_id()).await.unwrap();
    let b = h.app.execute(with_id()).await.unwrap();
    assert_eq!(a.id(), b.id());
    assert_eq!(a.id().as_str(), "custom-req-12345");
    assert_eq!(sim_machines(&h, a.id()).await.len(), 2, "launched once");
    let other = RequestMachines { request_id: Some("custom-req-12345".into()), ..ask("OnDemand-Minimal", 3) };
    assert_eq!(h.app.execute(other).await.unwrap_err().code(), ErrorCode::DuplicateRequest);
}

#[tokio::test]
async fn machines_that_never_come_up_time_out_and_are_terminated() {
    let h = harness(SimConfig { stuck_rate: 1.0, ..SimConfig::default() }, AppSettings::default());
    let r = h.app.execute(RequestMachines { timeout: Some(120), ..ask("OnDemand-Minimal", 2) }).await.unwrap();
    cycle(&h, 60).await;
    assert_eq!(get(&h, r.id()).await.state(), RequestState::InProgress);
    cycle(&h, 61).await;
    let timed_out = get(&h, r.id()).await;
    assert_eq!(timed_out.state(), RequestState::Timeout);
    assert_eq!(timed_out.hf_status(), "complete_with_error");
    cycle(&h, 5).await;
    let cloud = sim_machines(&h, r.id()).await;
    assert_eq!(cloud.len(), 2);
    assert!(cloud.iter().all(|m| m.status == MachineStatus::Terminated), "{cloud:?}");
    let after = get(&h, r.id()).await;
    assert!(!after.needs_work(), "cleanup is confirmed and finished");
}

#[tokio::test]
async fn cancelling_terminates_what_was_launched() {
    let h = harness(SimConfig::default(), AppSettings::default());
    let r = h.app.execute(ask("OnDemand-Minimal", 2)).await.unwrap();
    let c = h
        .app
        .execute(ohf_app::commands::CancelRequest { request_id: r.id().to_string(), requester: None })
        .await
        .unwrap();
    assert_eq!(c.state(), RequestState::Cancelled);
    cycle(&h, 5).await;
    assert!(sim_machines(&h, r.id()).await.iter().all(|m| m.status == MachineStatus::Terminated));
    assert_eq!(
        h.app
            .execute(ohf_app::commands::CancelRequest { request_id: r.id().to_string(), requester: None })
            .await
            .unwrap_err()
            .code(),
        ErrorCode::IllegalTransition
    );
    assert_eq!(
        h.app
            .execute(ohf_app::commands::CancelRequest { request_id: "req-none".to_string(), requester: None })
            .await
            .unwrap_err()
            .code(),
        ErrorCode::RequestNotFound
    );
}

#[tokio::test]
async fn partial_capacity_ends_in_partial_success_or_cleanup() {
    for (partial, expected, running) in
        [(PartialPolicy::Keep, RequestState::PartialSuccess, 2), (PartialPolicy::Cleanup, RequestState::Failed, 0)]
    {
        let sim = SimConfig {
            zones: vec!["z1".into()],
            capacity: BTreeMap::from([("m5.large".into(), 2)]),
            ..SimConfig::default()
        };
        let settings = AppSettings {
            policy: LifecyclePolicy { max_launch_attempts: 3, partial, ..LifecyclePolicy::default() },
            ..AppSettings::default()
        };
        let h = harness_with(sim, settings, |p| {
            std::sync::Arc::new(Faulty { inner: p, lose_launch_answers: false, hide_capacity: true })
        });
        let r = h.app.execute(ask("OnDemand-Minimal", 3)).await.unwrap();
        for _ in 0..6 {
            cycle(&h, 60).await;
        }
        let end = get(&h, r.id()).await;
        assert_eq!(end.state(), expected, "{partial:?}: {:?}", end.error());
        assert_eq!(end.launch_attempts(), 3);
        assert!(end.error().unwrap().contains("InsufficientInstanceCapacity"), "{:?}", end.error());
        assert_eq!(end.hf_status(), "complete_with_error");
        let up = sim_machines(&h, r.id()).await.iter().filter(|m| m.status == MachineStatus::Running).count();
        assert_eq!(up, running, "{partial:?}");
    }
}

#[tokio::test]
async fn a_launch_whose_answer_was_lost_is_adopted_not_repeated() {
    let h = harness_with(SimConfig::default(), AppSettings::default(), |p| {
        std::sync::Arc::new(Faulty { inner: p, lose_launch_answers: true, hide_capacity: false })
    });
    let r = h.app.execute(ask("OnDemand-Minimal", 3)).await.unwrap();
    assert!(r.machines().is_empty(), "the answer never arrived");
    for _ in 0..4 {
        cycle(&h, 10).await;
    }
    let done = get(&h, r.id()).await;
    assert_eq!(done.state(), RequestState::Completed, "{:?}", done.error());
    assert_eq!(done.machines().len(), 3);
    assert_eq!(sim_machines(&h, r.id()).await.len(), 3, "no second set of machines in the cloud");
}

#[tokio::test]
async fn throttling_and_internal_errors_are_ridden_out() {
    let sim = SimConfig { throttle_rate: 0.3, internal_error_rate: 0.1, seed: 3, ..SimConfig::default() };
    let settings = AppSettings {
        policy: LifecyclePolicy { max_launch_attempts: 20, ..LifecyclePolicy::default() },
        ..AppSettings::default()
    };
    let h = harness(sim, settings);
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(h.app.execute(ask("Spot-Compute", 3)).await.unwrap().id().clone());
    }
    for _ in 0..40 {
        cycle(&h, 30).await;
    }
    for id in &ids {
        let r = get(&h, id).await;
        assert_eq!(r.state(), RequestState::Completed, "{id}: {:?}", r.error());
        assert_eq!(sim_machines(&h, id).await.len(), 3, "exactly its machines, none twice");
    }
}

#[tokio::test]
async fn returns_terminate_and_name_only_returns_resolve() {
    let h = harness(SimConfig::default(), AppSettings::default());
    let r = h.app.execute(ask("OnDemand-Minimal", 2)).await.unwrap();
    cycle(&h, 3).await;
    let up = get(&h, r.id()).await;
    let refs = vec![
        MachineRef { id: None, name: up.machines()[0].name().map(String::from) },
        MachineRef { id: Some(up.machines()[1].id().to_string()), name: None },
        MachineRef { id: None, name: Some("ip-10-99-99-99.ec2.internal".into()) },
    ];
    let ret = h.app.execute(RequestReturn { machines: refs, ..Default::default() }).await.unwrap();
    cycle(&h, 3).await;
    let done = get(&h, ret.id()).await;
    assert_eq!(done.state(), RequestState::Failed, "one machine was unknown");
    let results: Vec<_> = done.machines().iter().map(|m| done.hf_machine_result(m).0.as_str()).collect();
    assert_eq!(results, ["succeed", "succeed", "fail"]);
    assert!(sim_machines(&h, r.id()).await.iter().all(|m| m.status == MachineStatus::Terminated));
    let holder = get(&h, r.id()).await;
    assert!(holder.machines().iter().all(|m| m.returned_by() == Some(ret.id())));
    assert_eq!(h.app.ask(ohf_app::queries::GetAvailableTemplates).await.unwrap()[0].available, Some(10));
}

#[tokio::test]
async fn return_notices_name_interrupted_and_vanished_machines() {
    let h = harness(SimConfig::default(), AppSettings::default());
    let r = h.app.execute(ask("Spot-Compute", 3)).await.unwrap();
    cycle(&h, 3).await;
    let up = get(&h, r.id()).await;
    assert!(h.app.ask(ohf_app::queries::GetReturnNotices { known: Vec::new() }).await.unwrap().is_empty());
    h.sim.interrupt(up.machines()[0].id(), 120).await.unwrap();
    let owner = h.app.ownership().await.unwrap();
    let machine = ohf_app::OwnedMachine { id: up.machines()[1].id().clone(), request_id: r.id().clone() };
    assert!(h.sim.terminate(&[machine], &owner).await.unwrap().is_empty());
    h.clock.advance_secs(20);
    let notices = h.app.ask(ohf_app::queries::GetReturnNotices { known: Vec::new() }).await.unwrap();
    assert_eq!(notices.len(), 2);
    let interrupted = notices.iter().find(|n| &n.machine_id == up.machines()[0].id()).unwrap();
    assert_eq!(interrupted.grace_period, 100);
    assert_eq!(interrupted.machine, up.machines()[0].name().unwrap());
    let gone = notices.iter().find(|n| &n.machine_id == up.machines()[1].id()).unwrap();
    assert_eq!(gone.grace_period, 0);
}

#[tokio::test]
async fn the_sweep_terminates_only_this_installations_unaccounted_machines() {
    use ohf_app::{CloudProvider, SweepOptions};
    let h = harness(SimConfig { launch_latency_ms: 0, ..SimConfig::default() }, AppSettings::default());
    let installation = h.app.ownership().await.unwrap().installation;
    let stray = |request: &str, cluster: &str| stray_of(request, cluster, &installation);
    let done = h.app.execute(ask("OnDemand-Minimal", 1)).await.unwrap();
    cycle(&h, 1).await;
    assert_eq!(get(&h, done.id()).await.state(), RequestState::Completed);
    let busy = h.app.execute(RequestMachines { timeout: Some(3600), ..ask("OnDemand-Minimal", 1) }).await.unwrap();
    assert_eq!(get(&h, busy.id()).await.state(), RequestState::InProgress);
    let ghost = h.sim.launch(&stray("req-ghost", "default")).await.unwrap().machines[0].id.clone();
    let leaked = h.sim.launch(&stray(done.id().as_str(), "default")).await.unwrap().machines[0].id.clone();
    let foreign = h.sim.launch(&stray("req-other", "another-cluster")).await.unwrap().machines[0].id.clone();
    let adoptable = h.sim.launch(&stray(busy.id().as_str(), "default")).await.unwrap().machines[0].id.clone();
    // Same cluster name, another store: never this sweep's to judge.
    let stranger = h.sim.launch(&stray_of("req-stranger", "default", "another-installation")).await.unwrap().machines
        [0]
    .id
    .clone();

    let options = SweepOptions::default();
    assert!(h.app.sweep_orphans(&options).await.terminated.is_empty(), "young machines are left alone");
    h.clock.advance_secs(601);
    let dry = h.app.sweep_orphans(&SweepOptions { dry_run: true, ..options.clone() }).await;
    assert_eq!(dry.orphans.len(), 2, "{dry:?}");
    assert!(dry.terminated.is_empty(), "a dry run terminates nothing");
    let report = h.app.sweep_orphans(&options).await;
    let mut gone: Vec<_> = report.terminated.iter().map(|(id, _)| id.clone()).collect();
    gone.sort();
    let mut expected = vec![ghost.clone(), leaked.clone()];
    expected.sort();
    assert_eq!(gone, expected, "{report:?}");
    assert_eq!(report.foreign, 1, "another installation's machine is counted apart");
    assert!(report.terminated.iter().any(|(id, why)| id == &ghost && why.contains("unknown")));
    let alive = h
        .sim
        .describe(&DescribeQuery { machine_ids: vec![foreign, adoptable, stranger], ..Default::default() })
        .await
        .unwrap();
    assert!(
        alive.iter().all(|m| m.status == MachineStatus::Running),
        "another cluster's, another installation's and an in-progress request's machines stay"
    );
}

fn stray_of(request: &str, cluster: &str, installation: &str) -> ohf_app::LaunchRequest {
    use ohf_domain::{ClientToken, Tags};
    let id = RequestId::new(request).unwrap();
    let tags = Tags::new(BTreeMap::from([
        ("ohf:request-id".to_owned(), request.to_owned()),
        ("ohf:cluster".to_owned(), cluster.to_owned()),
        ("ohf:installation".to_owned(), installation.to_owned()),
    ]))
    .unwrap();
    ohf_app::LaunchRequest {
        token: ClientToken::for_launch(&id, 99),
        request_id: id,
        template: ohf_domain::testing::hf_templates()[0].clone(),
        count: 1,
        tags,
        zones: vec![],
        following: None,
        started_at: ohf_domain::testing::T0,
        priority: ohf_domain::Priority::Normal,
    }
}

#[tokio::test]
async fn a_return_of_machines_ohf_did_not_launch_touches_nothing() {
    use ohf_app::CloudProvider;
    let h = harness(SimConfig { launch_latency_ms: 0, ..SimConfig::default() }, AppSettings::default());
    // Someone else's instance in the same account: no ohf tags at all.
    let theirs = h.sim.launch(&stray_of("req-not-ours", "x", "y")).await.unwrap().machines[0].id.clone();
    let mine = h.app.execute(ask("OnDemand-Minimal", 1)).await.unwrap();
    cycle(&h, 1).await;
    let held = get(&h, mine.id()).await.machines()[0].clone();
    let refs = vec![
        MachineRef { id: Some(theirs.to_string()), name: None },
        MachineRef { id: None, name: Some("ip-10-9-9-9.ec2.internal".into()) },
        MachineRef { id: Some(held.id().to_string()), name: None },
    ];
    let ret = h.app.execute(RequestReturn { machines: refs, ..Default::default() }).await.unwrap();
    cycle(&h, 2).await;
    let ret = get(&h, ret.id()).await;
    let failed: Vec<_> = ret.machines().iter().filter(|m| m.failure().is_some()).collect();
    assert_eq!(failed.len(), 2, "both unknown machines fail in the return: {:?}", ret.machines());
    assert!(failed.iter().all(|m| m.failure().unwrap().contains("not launched by this ohf installation")));
    let seen =
        h.sim.describe(&DescribeQuery { machine_ids: vec![theirs.clone()], ..Default::default() }).await.unwrap();
    assert_eq!(seen[0].status, MachineStatus::Running, "the foreign instance is untouched");
    let mine_now = sim_machines(&h, mine.id()).await;
    assert!(mine_now.iter().all(|m| m.status.is_going()), "ohf's own machine is returned");
    assert_eq!(ret.state(), RequestState::Failed, "a return that could not return everything says so");
}

#[tokio::test]
async fn a_machine_whose_tags_do_not_prove_ownership_is_refused_at_the_cloud() {
    // The store says the machine is a request's, the cloud's tags say another's: the cloud wins.
    use ohf_app::CloudProvider;
    let h = harness(SimConfig { launch_latency_ms: 0, ..SimConfig::default() }, AppSettings::default());
    let installation = h.app.ownership().await.unwrap().installation;
    let r = h.app.execute(ask("OnDemand-Minimal", 1)).await.unwrap();
    // A machine tagged for another request of this installation, which the request adopts
    // because describe finds it by id only after the store records it: planted directly.
    let other =
        h.sim.launch(&stray_of("req-someone-else", "default", &installation)).await.unwrap().machines[0].clone();
    cycle(&h, 1).await;
    let owner = h.app.ownership().await.unwrap();
    let refused = h
        .sim
        .terminate(&[ohf_app::OwnedMachine { id: other.id.clone(), request_id: r.id().clone() }], &owner)
        .await
        .unwrap();
    assert_eq!(refused.len(), 1);
    assert!(refused[0].reason.contains("req-someone-else"), "{}", refused[0].reason);
}

#[tokio::test]
async fn a_sweep_from_a_store_that_knows_too_little_terminates_nothing() {
    use ohf_app::{CloudProvider, SweepOptions};
    let h = harness(SimConfig { launch_latency_ms: 0, ..SimConfig::default() }, AppSettings::default());
    let installation = h.app.ownership().await.unwrap().installation;
    // Machines of this installation whose requests the store no longer has (a restored backup).
    let mut strays = Vec::new();
    for i in 0..5 {
        strays.push(h.sim.launch(&stray_of(&format!("req-lost-{i}"), "default", &installation)).await.unwrap());
    }
    let kept = h.app.execute(ask("OnDemand-Minimal", 2)).await.unwrap();
    cycle(&h, 1).await;
    h.clock.advance_secs(601);
    let report = h.app.sweep_orphans(&SweepOptions::default()).await;
    assert_eq!(report.orphans.len(), 5);
    assert!(report.terminated.is_empty(), "5 of 7 is an implausible share: {report:?}");
    assert!(report.refused.as_deref().is_some_and(|r| r.contains("%")), "{report:?}");
    let capped =
        h.app.sweep_orphans(&SweepOptions { max_terminations: 3, max_share_percent: 100, ..Default::default() }).await;
    assert!(capped.terminated.is_empty() && capped.refused.as_deref().is_some_and(|r| r.contains("more than the 3")));
    let allowed = h.app.sweep_orphans(&SweepOptions { max_share_percent: 100, ..SweepOptions::default() }).await;
    assert_eq!(allowed.terminated.len(), 5, "an operator who raised the guard gets the sweep: {allowed:?}");
    assert!(sim_machines(&h, kept.id()).await.iter().all(|m| m.status == MachineStatus::Running));
}

#[tokio::test]
async fn a_creation_answers_by_its_deadline_whatever_the_cloud_does_and_never_launches_twice() {
    let settings = AppSettings { answer_within: std::time::Duration::from_millis(300), ..AppSettings::default() };
    let slow = SimConfig { api_latency_ms: 60_000, launch_latency_ms: 0, ..SimConfig::default() };
    let h = harness(slow, settings);
    let started = std::time::Instant::now();
    let r = tokio::time::timeout(std::time::Duration::from_secs(30), h.app.execute(ask("OnDemand-Minimal", 3)))
        .await
        .expect("the creation answers long before the cloud does")
        .unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let stored = get(&h, r.id()).await;
    assert_eq!(stored.launch_attempts(), 1, "the launch is stored as started");
    assert!(stored.machines().is_empty());
}

/// A cycle that outlasts the claim (a cloud call slower than the claim's life) renews the claim
/// while it runs: another worker cannot take the request in the meantime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_cycle_keeps_its_claims() {
    use ohf_app::{Clock, Worker, WorkerConfig};
    use std::sync::Arc;
    use std::time::Duration;
    let slow = SimConfig { api_latency_ms: 30_000, launch_latency_ms: 0, ..SimConfig::default() };
    let settings = AppSettings { answer_within: Duration::from_millis(100), ..AppSettings::default() };
    let h = harness(slow, settings);
    // The first launch is cut off at the answer deadline; the daemon's cycle makes it again.
    let r = h.app.execute(ask("OnDemand-Minimal", 1)).await.unwrap();
    let store = h.store.clone();
    let clock = h.clock.clone();
    let app = Arc::new(h.app);
    let ttl = Duration::from_millis(300);
    let config = WorkerConfig {
        id: "worker-a".into(),
        interval: Duration::from_secs(60),
        claim_ttl: ttl,
        batch: 10,
        sweep_interval: None,
        sweep: ohf_app::SweepOptions::default(),
        retention_days: None,
    };
    let worker = Arc::new(Worker::new(app.clone(), config));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = worker.spawn(stopped);
    // Worker A has claimed the request and waits on the cloud.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(store.claim_history(r.id()).await.unwrap().len(), 1, "worker A holds it");
    // Time passes, well beyond the claim's life, while the cycle is still under way.
    for _ in 0..8 {
        clock.advance_millis(100);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let taken = store.claim("worker-b", clock.now(), 300, 10).await.unwrap();
    assert!(taken.is_empty(), "the claim was renewed mid-cycle; worker B takes nothing: {taken:?}");
    let _ = stop.send(true);
    running.abort();
}
