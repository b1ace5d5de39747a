//! Routing decisions over hand-made venues: scores, strategies, bookings, force, lockout.

use std::collections::BTreeSet;

use ohf_placement::assess::Criteria;
use ohf_placement::{
    Control, Datastore, Day, Demand, DiskNeed, Hold, Mode, RouteInput, RouteOutcome, Scope, SensorType, Strategies,
    Subnet, Venue, Workload, available, route,
};

fn venue(name: &str, env: &str, vcpus: u64) -> Venue {
    let mut v = Venue::unlimited(name, env, "aws");
    v.vcpus = Some(vcpus);
    v.memory_mib = Some(vcpus * 4096);
    v.on_demand_prices.insert("m5.large".into(), 0.096);
    v
}

fn workload(id: &str, day: i64, machines: u32) -> Workload {
    Workload {
        id: id.into(),
        name: id.into(),
        day: Day(day),
        demand: Demand {
            instance_type: "m5.large".into(),
            count: machines,
            vcpus: 2 * u64::from(machines),
            memory_mib: 8192 * u64::from(machines),
            spot: false,
            disks: vec![],
        },
    }
}

fn run(venues: &[Venue], holds: &[Hold], workloads: &[Workload], criteria: Criteria, scopes: &[Scope]) -> RouteOutcome {
    route(&RouteInput { venues, holds, workloads, criteria, scopes, provider_rank: &[], base: None })
}

fn placed(outcome: RouteOutcome) -> Vec<ohf_placement::Placement> {
    match outcome {
        RouteOutcome::Placed(p) => p,
        RouteOutcome::Rejected(r) => panic!("expected a placement, got {r:?}"),
    }
}

#[test]
fn each_mode_picks_its_venue() {
    let mut roomy = venue("roomy", "east", 100);
    roomy.on_demand_prices.insert("m5.large".into(), 0.2);
    let cheap = venue("cheap", "east", 20);
    let venues = [roomy, cheap];
    let w = [workload("w", 0, 2)];
    let pick = |mode| placed(run(&venues, &[], &w, Criteria { mode, ..Criteria::default() }, &[]))[0].venue.clone();
    assert_eq!(pick(Mode::CapacitySensitive), "roomy");
    assert_eq!(pick(Mode::CostSensitive), "cheap");
    // roomy: capacity 96, cost 48 → 72; cheap: capacity 80, cost 100 → 90.
    assert_eq!(pick(Mode::CostAndCapacity), "cheap");
}

#[test]
fn one_workload_that_does_not_fit_rejects_the_request_and_says_why() {
    let venues = [venue("small", "east", 8)];
    let outcome = run(&venues, &[], &[workload("a", 0, 2), workload("b", 0, 3)], Criteria::default(), &[]);
    let RouteOutcome::Rejected(refused) = outcome else { panic!("placed over capacity") };
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].workload, "b");
    assert!(refused[0].reason.contains("cpu: needs 6, 4 free"), "{}", refused[0].reason);
}

#[test]
fn a_booking_next_week_counts_against_a_placement_today_and_the_reverse() {
    let venues = [venue("v", "east", 10)];
    let booked = placed(run(&venues, &[], &[workload("later", 7, 4)], Criteria::default(), &[]));
    let holds: Vec<Hold> = booked.iter().map(|p| p.hold.clone()).collect();
    // 8 vCPUs next week; only 2 are left for anything that stays from today.
    assert!(matches!(
        run(&venues, &holds, &[workload("now", 0, 2)], Criteria::default(), &[]),
        RouteOutcome::Rejected(_)
    ));
    assert!(matches!(
        run(&venues, &holds, &[workload("now", 0, 1)], Criteria::default(), &[]),
        RouteOutcome::Placed(_)
    ));
    // A hold released before the booking's day leaves it room.
    let mut short = placed(run(&venues, &[], &[workload("short", 0, 5)], Criteria::default(), &[]))[0].hold.clone();
    short.until = Some(Day(7));
    assert!(matches!(
        run(&venues, &[short.clone()], &[workload("later", 7, 5)], Criteria::default(), &[]),
        RouteOutcome::Placed(_)
    ));
    assert!(matches!(
        run(&venues, &[short], &[workload("earlier", 6, 1)], Criteria::default(), &[]),
        RouteOutcome::Rejected(_)
    ));
}

#[test]
fn balance_takes_the_emptiest_subnet_and_fill_the_fullest_that_fits() {
    let mut v = venue("v", "east", 100);
    v.subnets = vec![
        Subnet { id: "subnet-a".into(), free_ips: Some(10) },
        Subnet { id: "subnet-b".into(), free_ips: Some(50) },
        Subnet { id: "subnet-c".into(), free_ips: Some(3) },
    ];
    let venues = [v];
    let subnet = |entries: &[&str]| {
        let (strategies, _) = Strategies::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        placed(run(&venues, &[], &[workload("w", 0, 4)], Criteria { strategies, ..Criteria::default() }, &[]))[0]
            .subnet
            .clone()
    };
    assert_eq!(subnet(&[]).as_deref(), Some("subnet-b"));
    assert_eq!(subnet(&["ipaddresspools-fill"]).as_deref(), Some("subnet-a"));
    assert_eq!(subnet(&["ipaddresspools-bogus"]).as_deref(), Some("subnet-b"));
}

#[test]
fn a_preferred_datastore_overrides_the_strategy_and_force_falls_to_a_lower_tier() {
    let mut v = venue("v", "east", 100);
    v.groups = vec!["Prod".into()];
    v.datastores = vec![
        Datastore { name: "fast-1".into(), volume_type: "io2".into(), tier: 1, capacity_gib: 100 },
        Datastore { name: "fast-2".into(), volume_type: "io2".into(), tier: 1, capacity_gib: 500 },
        Datastore { name: "slow".into(), volume_type: "gp3".into(), tier: 2, capacity_gib: 1000 },
    ];
    let venues = [v];
    let mut w = workload("w", 0, 1);
    w.demand.disks = vec![DiskNeed { size_gib: 80, volume_type: Some("io2".into()), pref_datastore: None }];
    assert_eq!(placed(run(&venues, &[], &[w.clone()], Criteria::default(), &[]))[0].datastores, ["fast-2"]);
    w.demand.disks[0].pref_datastore = Some("fast-1".into());
    assert_eq!(placed(run(&venues, &[], &[w.clone()], Criteria::default(), &[]))[0].datastores, ["fast-1"]);
    w.demand.disks[0].size_gib = 600;
    assert!(matches!(run(&venues, &[], &[w.clone()], Criteria::default(), &[]), RouteOutcome::Rejected(_)));
    let prod = [Scope { control_environment: None, infrastructure_groups: vec!["Prod".into()] }];
    let forced = placed(run(&venues, &[], &[w], Criteria { force: true, ..Criteria::default() }, &prod));
    assert!(forced[0].forced);
    assert_eq!(forced[0].datastores, ["slow"]);
}

#[test]
fn force_places_over_capacity_on_the_least_full_venue_and_the_next_assessment_sees_it() {
    let mut a = venue("a", "east", 4);
    a.groups = vec!["Prod".into()];
    let mut b = venue("b", "east", 6);
    b.groups = vec!["Prod".into()];
    let venues = [a, b];
    let prod = [Scope { control_environment: Some("east".into()), infrastructure_groups: vec!["Prod".into()] }];
    let big = [workload("big", 0, 5)];
    let forced = placed(run(&venues, &[], &big, Criteria { force: true, ..Criteria::default() }, &prod));
    assert_eq!((forced[0].venue.as_str(), forced[0].forced), ("b", true));
    let holds = [forced[0].hold.clone()];
    let after = available(&venues, &holds, &workload("one", 0, 1).demand, Day(0));
    assert_eq!(after["b"], Some(0));
    assert_eq!(after["a"], Some(2));
    let next = placed(run(&venues, &holds, &[workload("n", 0, 1)], Criteria::default(), &[]));
    assert_eq!(next[0].venue, "a");
}

#[test]
fn a_venue_being_recalculated_is_skipped_only_by_requests_that_require_its_sensors() {
    let mut busy = venue("busy", "east", 100);
    busy.refreshing = BTreeSet::from([SensorType::Datastore]);
    let quiet = venue("quiet", "east", 10);
    let venues = [busy, quiet];
    let w = [workload("w", 0, 1)];
    assert_eq!(placed(run(&venues, &[], &w, Criteria::default(), &[]))[0].venue, "busy");
    let locked = Criteria { required_sensors: BTreeSet::from([SensorType::Datastore]), ..Criteria::default() };
    assert_eq!(placed(run(&venues, &[], &w, locked, &[]))[0].venue, "quiet");
}

#[test]
fn non_control_venues_get_fit_for_purpose_only_and_a_score_of_100() {
    let mut guest = Venue::unlimited("guest", "west", "aws");
    guest.control = Control::Guest;
    guest.vcpus = Some(1);
    guest.offerings = Some(BTreeSet::from(["c5.large".to_string()]));
    let mut open = guest.clone();
    open.name = "open".into();
    open.offerings = None;
    let venues = [guest, open, venue("full", "east", 1000)];
    let p = placed(run(&venues, &[], &[workload("w", 0, 10)], Criteria::default(), &[]));
    assert_eq!((p[0].venue.as_str(), p[0].hosting_score), ("open", 100.0));
    assert_eq!(p[0].hold.vcpus, 0);
}

#[test]
fn scopes_and_the_provider_rank_narrow_and_break_ties() {
    let mut x = venue("x", "Boston", 10);
    x.provider = "aws-b".into();
    let mut y = venue("y", "London", 10);
    y.provider = "aws-a".into();
    let venues = [x, y];
    let w = [workload("w", 0, 1)];
    let rank = ["aws-a".to_string(), "aws-b".to_string()];
    let out = route(&RouteInput {
        venues: &venues,
        holds: &[],
        workloads: &w,
        criteria: Criteria::default(),
        scopes: &[],
        provider_rank: &rank,
        base: None,
    });
    assert_eq!(placed(out)[0].venue, "y");
    let boston = [Scope { control_environment: Some("Boston".into()), infrastructure_groups: vec![] }];
    assert_eq!(placed(run(&venues, &[], &w, Criteria::default(), &boston))[0].venue, "x");
    let nowhere = [Scope { control_environment: Some("Paris".into()), infrastructure_groups: vec![] }];
    let RouteOutcome::Rejected(r) = run(&venues, &[], &w, Criteria::default(), &nowhere) else { panic!() };
    assert_eq!(r[0].reason, "no hosting venue in the scopes");
}

#[test]
fn venues_without_prices_fall_back_on_the_price_table_and_spot_on_spot_prices() {
    let mut dear = venue("dear", "east", 100);
    dear.on_demand_prices.clear();
    let mut cheap_spot = venue("cheap-spot", "east", 100);
    cheap_spot.on_demand_prices.clear();
    cheap_spot.spot_prices.insert("m5.large".into(), 0.02);
    let venues = [dear, cheap_spot];
    let prices = std::sync::Arc::new(ohf_placement::Prices {
        on_demand: [("m5.large".to_string(), 0.096)].into(),
        spot: [("m5.large".to_string(), 0.05)].into(),
    });
    let mut w = workload("w", 0, 1);
    let criteria = || Criteria { mode: Mode::CostSensitive, prices: prices.clone(), ..Criteria::default() };
    let assessed =
        ohf_placement::assess(&venues.iter().collect::<Vec<_>>(), &ohf_placement::Ledger::default(), &w, &criteria());
    assert!(assessed.iter().all(|a| a.hourly_cost == Some(0.096)), "on-demand from the table: {assessed:?}");
    w.demand.spot = true;
    let placed = placed(run(&venues, &[], &[w], criteria(), &[]));
    assert_eq!(placed[0].venue, "cheap-spot", "0.02 against the table's 0.05");
}
