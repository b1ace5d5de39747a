//! Routing requests through the application: venues configured on simulated providers, a
//! hand-driven clock for bookings, the store's shared state under the routing lease.

use std::collections::BTreeMap;
use std::sync::Arc;

use ohf_app::commands::{RouteRequest, UnrouteRequest, UpdateProviderHealth, WorkloadSpec};
use ohf_app::memory::{ManualClock, MemoryStore, SequentialIds, StaticCatalog};
use ohf_app::placement::{Disk, RoutingSettings, RoutingStatus, WorkloadStatus};
use ohf_app::queries::{GetAvailableCapacity, GetRequestStatus, GetRoutingRequest, ListRoutingRequests};
use ohf_app::{App, AppError, AppSettings, CloudProvider, EventBus, SharedState};
use ohf_cloud_sim::{SimCloud, SimConfig};
use ohf_domain::testing::{T0, hf_templates};
use ohf_domain::{ErrorCode, ProviderName};
use ohf_placement::{Datastore, Scope, Subnet, Venue};

const DAY_SECS: u64 = 86_400;

struct Routing {
    app: Arc<App>,
    clock: Arc<ManualClock>,
    store: Arc<MemoryStore>,
    sims: Vec<Arc<SimCloud>>,
}

fn venue(name: &str, provider: &str, zone: &str, vcpus: u64, group: &str) -> Venue {
    let mut v = Venue::unlimited(name, "east", provider);
    v.zone = Some(zone.into());
    v.groups = vec![group.into()];
    v.vcpus = Some(vcpus);
    v.subnets = vec![Subnet { id: SimConfig::subnet_of(zone), free_ips: None }];
    v
}

/// Two simulated providers; venues `a` (8 vCPUs, Prod) and `b` (4 vCPUs, Dev) on `sim-1`,
/// `c` (6 vCPUs, Prod) on `sim-2`, unless `venues` says otherwise.
fn routing(venues: Option<Vec<Venue>>, sim: SimConfig) -> Routing {
    routing_on(venues, [sim.clone(), sim])
}

/// As `routing`, each simulated provider with its own configuration.
fn routing_on(venues: Option<Vec<Venue>>, sims: [SimConfig; 2]) -> Routing {
    let clock = Arc::new(ManualClock::new(T0));
    let store = Arc::new(MemoryStore::new());
    let sims: Vec<Arc<SimCloud>> = ["sim-1", "sim-2"]
        .iter()
        .zip(sims)
        .map(|(n, sim)| Arc::new(SimCloud::in_memory(ProviderName::new(*n).unwrap(), sim, clock.clone())))
        .collect();
    let venues = venues.unwrap_or_else(|| {
        vec![
            venue("a", "sim-1", "sim-east-1a", 8, "Prod"),
            venue("b", "sim-1", "sim-east-1b", 4, "Dev"),
            venue("c", "sim-2", "sim-east-1c", 6, "Prod"),
        ]
    });
    let settings =
        AppSettings { routing: RoutingSettings { venues, ..RoutingSettings::default() }, ..AppSettings::default() };
    let app = App::builder(store.clone(), Arc::new(StaticCatalog(hf_templates())))
        .providers(sims.iter().map(|s| s.clone() as Arc<dyn CloudProvider>))
        .clock(clock.clone())
        .ids(Arc::new(SequentialIds::default()))
        .bus(EventBus::default())
        .settings(settings)
        .build()
        .unwrap();
    Routing { app: Arc::new(app), clock, store, sims }
}

impl Routing {
    /// A second process on the same store, clouds and clock: it has turns and a lease cache
    /// of its own.
    fn another_process(&self, venues: Vec<Venue>) -> Arc<App> {
        let settings =
            AppSettings { routing: RoutingSettings { venues, ..RoutingSettings::default() }, ..AppSettings::default() };
        let app = App::builder(self.store.clone(), Arc::new(StaticCatalog(hf_templates())))
            .providers(self.sims.iter().map(|s| s.clone() as Arc<dyn CloudProvider>))
            .clock(self.clock.clone())
            .settings(settings)
            .build()
            .unwrap();
        Arc::new(app)
    }
}

/// `count` m5.large machines (2 vCPUs each) of OnDemand-Minimal.
fn workload(name: &str, count: i64) -> WorkloadSpec {
    WorkloadSpec {
        name: Some(name.into()),
        catalog_spec: Some("OnDemand-Minimal".into()),
        count: Some(count),
        ..WorkloadSpec::default()
    }
}

fn route(workloads: Vec<WorkloadSpec>) -> RouteRequest {
    RouteRequest { workloads, requester: Some("alice".into()), ..RouteRequest::default() }
}

fn code(e: AppError) -> ErrorCode {
    e.code()
}

fn venues_of(r: &ohf_app::placement::RoutingRequest) -> Vec<String> {
    r.workloads.iter().map(|w| w.placement.as_ref().map(|p| p.venue.clone()).unwrap_or_default()).collect()
}

#[tokio::test]
async fn a_request_goes_to_the_roomiest_venue_and_what_it_holds_counts_for_the_next() {
    let r = routing(None, SimConfig::default());
    let first = r.app.execute(route(vec![workload("w1", 2)])).await.unwrap();
    assert_eq!(first.status, RoutingStatus::Placed);
    assert_eq!(venues_of(&first), ["a"], "a keeps 50% of its vCPUs, c 33%, b none");
    assert_eq!(first.control_environment(), Some("east"));
    assert_eq!(first.infrastructure_group(), Some("Prod"));
    let second = r.app.execute(route(vec![workload("w2", 2)])).await.unwrap();
    assert_eq!(venues_of(&second), ["c"], "a now keeps none after 2 more; c keeps 33%");
    let fits = r.app.ask(GetAvailableCapacity { catalog_spec: Some("OnDemand-Minimal".into()), ..Default::default() });
    let fits: BTreeMap<String, Option<u64>> =
        fits.await.unwrap().into_iter().map(|c| (c.venue, c.available_today)).collect();
    assert_eq!(fits, BTreeMap::from([("a".into(), Some(2)), ("b".into(), Some(2)), ("c".into(), Some(1))]));
}

#[tokio::test]
async fn a_request_whose_workloads_do_not_all_fit_is_rejected_whole_and_holds_nothing() {
    let r = routing(None, SimConfig::default());
    let rejected = r.app.execute(route(vec![workload("fits", 4), workload("too-big", 5)])).await.unwrap();
    assert_eq!(rejected.status, RoutingStatus::Rejected);
    assert!(rejected.workloads.iter().all(|w| w.status == WorkloadStatus::Rejected));
    let reasons: Vec<&str> = rejected.workloads.iter().filter_map(|w| w.status_reason.as_deref()).collect();
    assert!(reasons[0].contains("rejected with its request"), "{reasons:?}");
    assert!(reasons[1].contains("cpu: needs 10"), "{reasons:?}");
    // Nothing was reserved: the first workload alone still fits where it would have gone.
    let alone = r.app.execute(route(vec![workload("fits", 4)])).await.unwrap();
    assert_eq!(venues_of(&alone), ["a"]);
    let listed = r.app.ask(ListRoutingRequests { status: Some("rejected".into()), ..Default::default() }).await;
    assert_eq!(listed.unwrap().len(), 1);
}

#[tokio::test]
async fn a_booking_reserves_capacity_turns_placed_on_its_day_and_launches_when_asked() {
    let r = routing(Some(vec![venue("a", "sim-1", "sim-east-1a", 8, "Prod")]), SimConfig::default());
    let in_two_days = T0.unix_millis() + 2 * 86_400_000;
    let booking =
        RouteRequest { expected_date: Some(in_two_days), provision: true, ..route(vec![workload("later", 3)]) };
    let booked = r.app.execute(booking).await.unwrap();
    assert_eq!(booked.status, RoutingStatus::Booked);
    assert_eq!(booked.workloads[0].status, WorkloadStatus::Booked);
    assert!(booked.workloads[0].provision_request.is_none());
    // Today only 2 vCPUs are left for anything that stays: the booking counts.
    let refused = r.app.execute(route(vec![workload("now", 2)])).await.unwrap();
    assert_eq!(refused.status, RoutingStatus::Rejected);
    assert_eq!(r.app.execute(route(vec![workload("now", 1)])).await.unwrap().status, RoutingStatus::Placed);

    r.clock.advance_secs(2 * DAY_SECS);
    let read = r.app.ask(GetRoutingRequest { id: booked.id.clone(), recheck_host: false }).await.unwrap();
    assert_eq!(read.status, RoutingStatus::Placed);
    assert_eq!(read.workloads[0].status, WorkloadStatus::Placed);
    let provision = read.workloads[0].provision_request.clone().expect("machines asked for");
    let status = r.app.ask(GetRequestStatus { request_ids: vec![provision.clone()] }).await.unwrap();
    let request = status[0].1.as_ref().expect("the provision request exists");
    assert_eq!(request.count(), 3);
    assert_eq!(request.provider().map(|p| p.as_str()), Some("sim-1"));
    // Read again: placed once, launched once.
    let again = r.app.ask(GetRoutingRequest { id: booked.id.clone(), recheck_host: false }).await.unwrap();
    assert_eq!(again.workloads[0].provision_request.as_deref(), Some(provision.as_str()));
}

#[tokio::test]
async fn a_booking_not_used_within_its_validity_expires_and_releases_its_capacity() {
    let r = routing(Some(vec![venue("a", "sim-1", "sim-east-1a", 8, "Prod")]), SimConfig::default());
    let tomorrow = T0.unix_millis() + 86_400_000;
    let booked = r
        .app
        .execute(RouteRequest { expected_date: Some(tomorrow), ..route(vec![workload("later", 4)]) })
        .await
        .unwrap();
    assert_eq!(r.app.execute(route(vec![workload("now", 1)])).await.unwrap().status, RoutingStatus::Rejected);
    r.clock.advance_secs(3 * DAY_SECS);
    let read = r.app.ask(GetRoutingRequest { id: booked.id.clone(), recheck_host: false }).await.unwrap();
    assert_eq!(read.status, RoutingStatus::Expired);
    assert_eq!(read.workloads[0].status, WorkloadStatus::Expired);
    assert_eq!(r.app.execute(route(vec![workload("now", 4)])).await.unwrap().status, RoutingStatus::Placed);
}

#[tokio::test]
async fn unrouting_releases_capacity_and_record_placement_keeps_the_datastore_for_the_next_route() {
    let mut v = venue("a", "sim-1", "sim-east-1a", 64, "Prod");
    v.datastores = vec![
        Datastore { name: "big".into(), volume_type: "gp3".into(), tier: 1, capacity_gib: 1000 },
        Datastore { name: "small".into(), volume_type: "gp3".into(), tier: 1, capacity_gib: 200 },
    ];
    let r = routing(Some(vec![v]), SimConfig::default());
    let disk = Disk { size_gb: 50, volume_type: Some("gp3".into()), pref_datastore: None };
    let first = r
        .app
        .execute(route(vec![
            WorkloadSpec { disks: vec![disk.clone()], ..workload("keep", 2) },
            WorkloadSpec { disks: vec![disk], ..workload("other", 1) },
        ]))
        .await
        .unwrap();
    let keep = first.workloads[0].clone();
    assert_eq!(keep.placement.as_ref().unwrap().datastores, ["big"]);

    let wrong = r
        .app
        .execute(UnrouteRequest { id: "no-such".into(), workload_id: Some(keep.id.clone()), record_placement: false })
        .await
        .unwrap_err();
    assert_eq!(code(wrong), ErrorCode::RequestNotFound);
    let second = r.app.execute(route(vec![workload("elsewhere", 1)])).await.unwrap();
    let foreign = r
        .app
        .execute(UnrouteRequest { id: second.id.clone(), workload_id: Some(keep.id.clone()), record_placement: false })
        .await
        .unwrap_err();
    assert_eq!(code(foreign), ErrorCode::ValidationError, "a workload of another request");

    let left = r
        .app
        .execute(UnrouteRequest { id: first.id.clone(), workload_id: Some(keep.id.clone()), record_placement: true })
        .await
        .unwrap()
        .expect("one workload remains");
    assert_eq!(left.workloads.len(), 1);
    // Fill "big" so that balance alone would now choose "small"; the preferred one still wins.
    let filler = WorkloadSpec {
        disks: vec![Disk { size_gb: 850, volume_type: Some("gp3".into()), pref_datastore: None }],
        ..workload("filler", 1)
    };
    r.app.execute(route(vec![filler])).await.unwrap();
    let rerouted = r
        .app
        .execute(route(vec![WorkloadSpec { id: Some(keep.id.clone()), ..WorkloadSpec::default() }]))
        .await
        .unwrap();
    assert_eq!(rerouted.status, RoutingStatus::Placed);
    assert_eq!(rerouted.workloads[0].id, keep.id);
    assert_eq!(rerouted.workloads[0].disks[0].pref_datastore.as_deref(), Some("big"));
    assert_eq!(rerouted.workloads[0].placement.as_ref().unwrap().datastores, ["big"]);
    // Routed again, it is no longer unrouted.
    let twice = r.app.execute(route(vec![WorkloadSpec { id: Some(keep.id.clone()), ..WorkloadSpec::default() }]));
    assert_eq!(code(twice.await.unwrap_err()), ErrorCode::ValidationError);

    // Deleting the last workload deletes the request.
    let last = left.workloads[0].id.clone();
    let gone = r.app.execute(UnrouteRequest { id: first.id.clone(), workload_id: Some(last), record_placement: false });
    assert!(gone.await.unwrap().is_none());
    let read = r.app.ask(GetRoutingRequest { id: first.id.clone(), recheck_host: false }).await.unwrap_err();
    assert_eq!(code(read), ErrorCode::RequestNotFound);
}

#[tokio::test]
async fn recheck_host_moves_placed_workloads_off_an_unhealthy_venue() {
    let r = routing(None, SimConfig::default());
    let placed = r.app.execute(route(vec![workload("w", 1)])).await.unwrap();
    assert_eq!(venues_of(&placed), ["a"]);
    let unhealthy: UpdateProviderHealth = serde_json::from_value(serde_json::json!({
        "provider_name": "sim-1", "health_status": {"is_healthy": false, "status_message": "down"}
    }))
    .unwrap();
    r.app.execute(unhealthy).await.unwrap();
    let plain = r.app.ask(GetRoutingRequest { id: placed.id.clone(), recheck_host: false }).await.unwrap();
    assert_eq!(venues_of(&plain), ["a"], "without recheckHost nothing moves");
    let moved = r.app.ask(GetRoutingRequest { id: placed.id.clone(), recheck_host: true }).await.unwrap();
    assert_eq!(venues_of(&moved), ["c"]);
    assert!(moved.workloads[0].status_reason.as_deref().unwrap().contains("moved from 'a'"));
    // New requests avoid the unhealthy venues too.
    assert_eq!(venues_of(&r.app.execute(route(vec![workload("n", 1)])).await.unwrap()), ["c"]);
}

#[tokio::test]
async fn a_recalculation_measures_the_venues_and_locks_out_requests_that_require_its_sensors() {
    let mut sim = SimConfig { subnet_size: 3, ..SimConfig::default() };
    sim.offerings.insert("sim-east-1b".into(), vec!["c5.xlarge".into()]);
    let r = routing(None, sim);
    // Two machines running in zone a leave its subnet one free address.
    r.sims[0]
        .launch(&ohf_app::LaunchRequest {
            token: ohf_domain::ClientToken::for_launch(&ohf_domain::RequestId::new("req-x").unwrap(), 1),
            request_id: ohf_domain::RequestId::new("req-x").unwrap(),
            template: hf_templates()[0].clone(),
            count: 2,
            tags: ohf_domain::Tags::default(),
            zones: vec!["sim-east-1a".into()],
            following: None,
            started_at: T0,
            priority: ohf_domain::Priority::Normal,
        })
        .await
        .unwrap();
    let outcome = r.app.refresh_venues().await;
    assert!(outcome.iter().all(|(_, result)| result.is_ok()), "{outcome:?}");
    let reading: serde_json::Value =
        serde_json::from_str(&r.store.load_shared("venue-reading/a").await.unwrap().0.unwrap()).unwrap();
    assert_eq!(reading["subnets"], serde_json::json!([{"id": "subnet-sim-east-1a", "free_ips": 1}]));
    assert_eq!(reading["offerings"], serde_json::json!(["c5.xlarge", "m5.large"]));
    assert!(reading["spot_prices"]["m5.large"].as_f64().is_some());
    // a: one free address; b: m5.large not offered; c: fits.
    let placed = r.app.execute(route(vec![workload("two", 2)])).await.unwrap();
    assert_eq!(venues_of(&placed), ["c"]);
    let refused = r
        .app
        .execute(RouteRequest {
            scopes: vec![Scope { control_environment: None, infrastructure_groups: vec!["Dev".into()] }],
            ..route(vec![workload("dev", 1)])
        })
        .await
        .unwrap();
    assert!(refused.workloads[0].status_reason.as_deref().unwrap().contains("m5.large is not offered"));

    // While c's data is being recalculated, a request that requires its IP data skips it.
    let mark = serde_json::json!({"sensors": ["ipaddresspools"], "until": T0.unix_millis() + 60_000}).to_string();
    let (_, version) = r.store.load_shared("venue-refresh/c").await.unwrap();
    assert!(r.store.store_shared("venue-refresh/c", &mark, version).await.unwrap());
    let locked =
        RouteRequest { required_sensor_types: vec!["ipaddresspools".into()], ..route(vec![workload("one", 1)]) };
    assert_eq!(venues_of(&r.app.execute(locked).await.unwrap()), ["a"]);
    assert_eq!(venues_of(&r.app.execute(route(vec![workload("one", 1)])).await.unwrap()), ["c"]);
}

#[tokio::test]
async fn addresses_taken_by_machines_of_held_placements_count_once_after_a_recalculation() {
    let r = routing(None, SimConfig { subnet_size: 3, launch_latency_ms: 0, ..SimConfig::default() });
    let fits_in_a = || async {
        let all =
            r.app.ask(GetAvailableCapacity { catalog_spec: Some("OnDemand-Minimal".into()), ..Default::default() });
        all.await.unwrap().into_iter().find(|c| c.venue == "a").and_then(|c| c.available_today)
    };
    r.app.refresh_venues().await;
    assert_eq!(fits_in_a().await, Some(3), "three free addresses in a's subnet");
    // Two machines placed on a, launched: the subnet has one address left, and the ledger
    // holds two for the placement.
    let made = r.app.execute(RouteRequest { provision: true, ..route(vec![workload("w", 2)]) }).await.unwrap();
    assert_eq!(venues_of(&made), ["a"]);
    r.app.reconcile(None).await;
    assert_eq!(fits_in_a().await, Some(1), "before the recalculation: 3 measured, 2 held");
    r.app.refresh_venues().await;
    let reading: serde_json::Value =
        serde_json::from_str(&r.store.load_shared("venue-reading/a").await.unwrap().0.unwrap()).unwrap();
    assert_eq!(reading["subnets"][0]["free_ips"], 1);
    assert_eq!(reading["held_addresses"], serde_json::json!({"subnet-sim-east-1a": 2}));
    // One measured free and the two taken by the held placement's machines, less its hold.
    assert_eq!(fits_in_a().await, Some(1), "the launched machines count once, as held");
}

#[tokio::test]
async fn the_accounts_vcpu_quota_bounds_each_venue_after_a_recalculation() {
    // sim-1's account lets 6 vCPUs run on demand, sim-2's does not say.
    let quota = SimConfig { vcpu_quota: Some(6), ..SimConfig::default() };
    let mut unlimited = venue("u", "sim-1", "sim-east-1c", 0, "Dev");
    unlimited.vcpus = None;
    let venues = vec![
        venue("a", "sim-1", "sim-east-1a", 8, "Prod"),
        venue("b", "sim-1", "sim-east-1b", 4, "Dev"),
        unlimited,
        venue("c", "sim-2", "sim-east-1c", 6, "Prod"),
    ];
    let r = routing_on(Some(venues), [quota, SimConfig::default()]);
    let fits = || async {
        let all =
            r.app.ask(GetAvailableCapacity { catalog_spec: Some("OnDemand-Minimal".into()), ..Default::default() });
        all.await.unwrap().into_iter().map(|c| (c.venue, c.available_today)).collect::<BTreeMap<String, Option<u64>>>()
    };
    let before = fits().await;
    assert_eq!((before["a"], before["b"], before["u"], before["c"]), (Some(4), Some(2), None, Some(3)));
    r.app.refresh_venues().await;
    let after = fits().await;
    // a: 8 configured, 6 read: 3 machines of 2 vCPUs; b keeps its lower 4; u takes the 6;
    // c's provider reads no quota and keeps its own.
    assert_eq!((after["a"], after["b"], after["u"], after["c"]), (Some(3), Some(2), Some(3), Some(3)));
    let reading: serde_json::Value =
        serde_json::from_str(&r.store.load_shared("venue-reading/a").await.unwrap().0.unwrap()).unwrap();
    assert_eq!(reading["vcpu_quota"], 6);
}

#[tokio::test]
async fn placed_workloads_launch_on_their_venues_provider_and_zone() {
    let r = routing(None, SimConfig { launch_latency_ms: 0, ..SimConfig::default() });
    let made = r.app.execute(RouteRequest { provision: true, ..route(vec![workload("w", 2)]) }).await.unwrap();
    let id = made.workloads[0].provision_request.clone().expect("launched");
    r.app.reconcile(None).await;
    let status = r.app.ask(GetRequestStatus { request_ids: vec![id] }).await.unwrap();
    let request = status[0].1.as_ref().unwrap();
    assert_eq!(request.provider().map(|p| p.as_str()), Some("sim-1"));
    assert_eq!(request.machines().len(), 2);
    assert!(request.machines().iter().all(|m| m.zone() == Some("sim-east-1a")), "{:?}", request.machines());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_routes_never_over_commit_a_venue() {
    let venues = vec![venue("a", "sim-1", "sim-east-1a", 8, "Prod")];
    let r = routing(Some(venues.clone()), SimConfig::default());
    let apps = [r.app.clone(), r.another_process(venues)];
    let mut tasks = Vec::new();
    for i in 0..24 {
        let app = apps[i % 2].clone();
        tasks.push(tokio::spawn(async move { app.execute(route(vec![workload(&format!("w{i}"), 1)])).await }));
    }
    let mut placed = 0;
    for t in tasks {
        if t.await.unwrap().unwrap().status == RoutingStatus::Placed {
            placed += 1;
        }
    }
    assert_eq!(placed, 4, "8 vCPUs hold four 2-vCPU machines, whichever process asked");
    // Once every turn is over the lease is given back, not kept by either process.
    let lease: serde_json::Value =
        serde_json::from_str(&r.store.load_shared("routing/lease").await.unwrap().0.unwrap()).unwrap();
    assert_eq!(lease["until"], 0, "{lease}");
}

#[tokio::test]
async fn bad_routing_input_is_refused_with_the_field_named_and_nothing_stored() {
    let r = routing(None, SimConfig::default());
    let cases = [
        (RouteRequest { requester: Some("__UNKNOWN__".into()), ..route(vec![workload("w", 1)]) }, "requester"),
        (route(vec![]), "workloads"),
        (RouteRequest { mode: Some("fastest".into()), ..route(vec![workload("w", 1)]) }, "mode"),
        (
            RouteRequest { required_sensor_types: vec!["gpu".into()], ..route(vec![workload("w", 1)]) },
            "required_sensor_types",
        ),
        (RouteRequest { force: true, ..route(vec![workload("w", 1)]) }, "force"),
        (route(vec![WorkloadSpec { workload_profile: Some("Nope".into()), ..workload("w", 1) }]), "workload_profile"),
        (route(vec![workload("w", 0)]), "machineCount"),
        (
            RouteRequest {
                expected_date: Some(T0.unix_millis()),
                ..route(vec![WorkloadSpec { expected_date: Some(T0.unix_millis() + 86_400_000), ..workload("w", 1) }])
            },
            "expected_date",
        ),
    ];
    for (cmd, field) in cases {
        let e = r.app.execute(cmd).await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::ValidationError, "{field}: {e}");
        assert!(e.to_string().contains(field), "{field}: {e}");
    }
    assert!(r.app.ask(ListRoutingRequests::default()).await.unwrap().is_empty());
}

#[tokio::test]
async fn every_provision_request_is_placed_and_holds_its_venue_until_it_holds_no_machines() {
    use ohf_app::RequestMachines;
    use ohf_app::commands::CancelRequest;
    use ohf_app::queries::GetAvailableTemplates;
    let r = routing(None, SimConfig { launch_latency_ms: 0, ..SimConfig::default() });
    let ask = |count: i64| RequestMachines { template_id: "OnDemand-Minimal".into(), count, ..Default::default() };
    let first = r.app.execute(ask(3)).await.unwrap();
    assert_eq!(first.provider().map(|p| p.as_str()), Some("sim-1"));
    r.app.reconcile(None).await;
    let status = r.app.ask(GetRequestStatus { request_ids: vec![first.id().to_string()] }).await.unwrap();
    let machines = status[0].1.as_ref().unwrap().machines().to_vec();
    assert_eq!(machines.len(), 3);
    assert!(machines.iter().all(|m| m.zone() == Some("sim-east-1a")), "placed in venue a's zone");

    // a keeps 2 vCPUs, b 4, c 6: 1 + 2 + 3 more machines fit, under maxNumber's 7.
    let templates = r.app.ask(GetAvailableTemplates).await.unwrap();
    let minimal = templates.iter().find(|t| t.template.id().as_str() == "OnDemand-Minimal").unwrap();
    assert_eq!(minimal.available, Some(6));

    // Four machines fit nowhere: refused, and nothing is held for the refusal.
    let refused = r.app.execute(ask(4)).await.unwrap_err();
    assert_eq!(refused.code(), ErrorCode::InsufficientCapacity);
    assert!(refused.to_string().contains("no venue fits"), "{refused}");
    let second = r.app.execute(ask(3)).await.unwrap();
    assert_eq!(second.provider().map(|p| p.as_str()), Some("sim-2"), "c is the one venue with room for 3");

    // A request that holds no machines any more gives its venue back.
    r.app.execute(CancelRequest { request_id: second.id().to_string(), requester: None }).await.unwrap();
    for _ in 0..5 {
        r.clock.advance_secs(30);
        r.app.reconcile(None).await;
    }
    assert_eq!(r.app.tend_placements().await.unwrap(), (0, 1));
    let third = r.app.execute(ask(3)).await.unwrap();
    assert_eq!(third.provider().map(|p| p.as_str()), Some("sim-2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creations_of_two_processes_never_over_commit_and_a_refusal_holds_nothing() {
    use ohf_app::RequestMachines;
    let venues = vec![venue("a", "sim-1", "sim-east-1a", 8, "Prod")];
    let r = routing(Some(venues.clone()), SimConfig { launch_latency_ms: 0, ..SimConfig::default() });
    let apps = [r.app.clone(), r.another_process(venues)];
    let ask = |count: i64| RequestMachines { template_id: "OnDemand-Minimal".into(), count, ..Default::default() };
    let mut tasks = Vec::new();
    for i in 0..24 {
        let app = apps[i % 2].clone();
        tasks.push(tokio::spawn(async move { app.execute(ask(1)).await }));
    }
    let mut made = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(request) => made.push(request.id().to_string()),
            Err(e) => assert_eq!(e.code(), ErrorCode::InsufficientCapacity, "{e}"),
        }
    }
    assert_eq!(made.len(), 4, "8 vCPUs hold four 2-vCPU machines, whichever process asked");
    // Each admitted request's hold is stored with it; the refused ones left none.
    let holds = r.store.list_shared("routing/open/").await.unwrap();
    assert_eq!(holds.len(), 4, "{holds:?}");
    assert!(made.iter().all(|id| holds.iter().any(|(k, _, _)| k.ends_with(id.as_str()))));
    let lease: serde_json::Value =
        serde_json::from_str(&r.store.load_shared("routing/lease").await.unwrap().0.unwrap()).unwrap();
    assert_eq!(lease["until"], 0, "given back once every hold is stored: {lease}");

    // A creation refused after its placement (the venue has room for it, the template's
    // maxNumber of 10 has not beside the five held) keeps nothing: the next fits as before.
    let roomy = vec![venue("a", "sim-1", "sim-east-1a", 24, "Prod")];
    let r = routing(Some(roomy), SimConfig { launch_latency_ms: 0, ..SimConfig::default() });
    r.app.execute(ask(5)).await.unwrap();
    let refused = r.app.execute(ask(6)).await.unwrap_err();
    assert_eq!(refused.code(), ErrorCode::InsufficientCapacity, "{refused}");
    assert!(!refused.to_string().contains("no venue fits"), "refused by the limit, after placing: {refused}");
    assert_eq!(r.store.list_shared("routing/open/").await.unwrap().len(), 1);
    r.app.execute(ask(5)).await.expect("10 of a's 14 free vCPUs: the refused placement holds none");
}

#[tokio::test]
async fn a_creation_whose_caller_goes_away_after_its_placement_holds_nothing() {
    use ohf_app::RequestMachines;
    // Every cloud call takes a second: the creation is placed, then waits on the provider.
    let slow = SimConfig { launch_latency_ms: 0, api_latency_ms: 1000, ..SimConfig::default() };
    let r = routing(Some(vec![venue("a", "sim-1", "sim-east-1a", 8, "Prod")]), slow);
    let ask = |count: i64| RequestMachines { template_id: "OnDemand-Minimal".into(), count, ..Default::default() };
    let gone = tokio::time::timeout(std::time::Duration::from_millis(300), r.app.execute(ask(4))).await;
    assert!(gone.is_err(), "the caller went away before the provider answered");
    assert!(r.store.list_shared("routing/open/").await.unwrap().is_empty(), "nothing stored for it");
    // The four machines it was placed for fit again.
    let made = r.app.execute(ask(4)).await.expect("venue a's 8 vCPUs are free again");
    assert_eq!(made.zones(), ["sim-east-1a"]);
}

#[tokio::test]
async fn a_placed_request_that_fails_over_moves_to_the_next_best_venue_and_its_zone() {
    use ohf_app::RequestMachines;
    let broken = SimConfig { launch_latency_ms: 0, capacity_error_rate: 1.0, ..SimConfig::default() };
    let fine = SimConfig { launch_latency_ms: 0, ..SimConfig::default() };
    let r = routing_on(None, [broken, fine]);
    let made = r
        .app
        .execute(RequestMachines { template_id: "OnDemand-Minimal".into(), count: 1, ..Default::default() })
        .await
        .unwrap();
    for _ in 0..4 {
        r.clock.advance_secs(30);
        r.app.reconcile(None).await;
    }
    let status = r.app.ask(GetRequestStatus { request_ids: vec![made.id().to_string()] }).await.unwrap();
    let request = status[0].1.as_ref().unwrap();
    assert_eq!(request.provider().map(|p| p.as_str()), Some("sim-2"), "{:?}", request.state());
    assert!(!request.machines().is_empty());
    assert!(request.machines().iter().all(|m| m.zone() == Some("sim-east-1c")), "venue c's zone");
    let placements = r.app.ask(ListRoutingRequests::default()).await.unwrap();
    let record = placements.iter().find(|p| p.workloads[0].name == made.id().as_str()).unwrap();
    assert_eq!(venues_of(record), ["c"]);
    assert!(record.workloads[0].status_reason.as_deref().unwrap().contains("failed over from 'a' to 'c'"));
}
