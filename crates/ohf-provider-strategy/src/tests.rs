#![allow(clippy::unwrap_used)]

use super::*;

fn provider(name: &str, priority: i32) -> Candidate {
    Candidate {
        name: name.into(),
        provider_type: "aws".into(),
        capabilities: ["instances"].map(String::from).into(),
        priority,
        weight: 1,
        enabled: true,
        healthy: true,
        active_operations: 0,
        available_capacity: None,
        response_time_ms: None,
        success_rate: None,
    }
}

fn three() -> Vec<Candidate> {
    let mut a = provider("aws-primary", 1);
    a.capabilities.insert("spot_instances".into());
    a.weight = 3;
    a.active_operations = 7;
    a.response_time_ms = Some(250.0);
    a.success_rate = Some(97.0);
    let mut b = provider("aws-secondary", 2);
    b.weight = 1;
    b.active_operations = 2;
    b.response_time_ms = Some(120.0);
    b.success_rate = Some(99.5);
    let mut c = provider("aws-backup", 3);
    c.capabilities.insert("spot_instances".into());
    c.active_operations = 4;
    c.response_time_ms = Some(900.0);
    c.success_rate = Some(80.0);
    vec![c, a, b]
}

fn pick(policy: SelectionPolicy, criteria: &Criteria, cursor: u64, draw: f64) -> String {
    select(&three(), policy, criteria, cursor, draw).unwrap().selected
}

#[test]
fn first_available_takes_the_first_by_priority() {
    let s = select(&three(), SelectionPolicy::FirstAvailable, &Criteria::default(), 0, 0.0).unwrap();
    assert_eq!(s.selected, "aws-primary");
    assert_eq!(s.passed_over.len(), 2, "the others are listed with why");
}

#[test]
fn round_robin_rotates_in_priority_order() {
    let picks: Vec<String> = (0..4).map(|i| pick(SelectionPolicy::RoundRobin, &Criteria::default(), i, 0.0)).collect();
    assert_eq!(picks, ["aws-primary", "aws-secondary", "aws-backup", "aws-primary"]);
}

#[test]
fn weighted_round_robin_gives_each_its_weight_of_turns_interleaved() {
    let picks: Vec<String> =
        (0..5).map(|i| pick(SelectionPolicy::WeightedRoundRobin, &Criteria::default(), i, 0.0)).collect();
    assert_eq!(picks, ["aws-primary", "aws-secondary", "aws-primary", "aws-backup", "aws-primary"]);
    let turns = |candidates: &[Candidate], n: u64| {
        let mut count = std::collections::BTreeMap::<String, u64>::new();
        for k in 0..n {
            let s = select(candidates, SelectionPolicy::WeightedRoundRobin, &Criteria::default(), k, 0.0).unwrap();
            *count.entry(s.selected).or_default() += 1;
        }
        count
    };
    let count = turns(&three(), 500);
    assert_eq!((count["aws-primary"], count["aws-secondary"], count["aws-backup"]), (300, 100, 100), "{count:?}");

    // Weighed by available capacity: 90 to 30 to none; all without capacity, by weight again.
    let mut by_capacity = three();
    for (c, cap) in by_capacity.iter_mut().zip([0, 90, 30]) {
        c.available_capacity = Some(cap);
    }
    let count = turns(&by_capacity, 400);
    assert!(!count.contains_key("aws-backup"), "no capacity, no turn: {count:?}");
    assert!((295..=305).contains(&count["aws-primary"]) && (95..=105).contains(&count["aws-secondary"]), "{count:?}");
    let s = select(&by_capacity, SelectionPolicy::WeightedRoundRobin, &Criteria::default(), 0, 0.0).unwrap();
    assert!(s.reason.starts_with("available capacity 90 of 120"), "{}", s.reason);
    for c in by_capacity.iter_mut() {
        c.available_capacity = Some(0);
    }
    assert_eq!(turns(&by_capacity, 500)["aws-primary"], 300);
}

#[test]
fn least_connections_fastest_and_most_successful() {
    let none = Criteria::default();
    assert_eq!(pick(SelectionPolicy::LeastConnections, &none, 0, 0.0), "aws-secondary");
    assert_eq!(pick(SelectionPolicy::FastestResponse, &none, 0, 0.0), "aws-secondary");
    assert_eq!(pick(SelectionPolicy::HighestSuccessRate, &none, 0, 0.0), "aws-secondary");
    let mut fresh = three();
    fresh.iter_mut().for_each(|c| c.success_rate = None);
    let s = select(&fresh, SelectionPolicy::HighestSuccessRate, &none, 0, 0.0).unwrap();
    assert_eq!(s.selected, "aws-primary", "without figures: the first by priority");
}

#[test]
fn capability_based_takes_only_providers_with_every_required_capability() {
    let spot = Criteria { required_capabilities: vec!["spot_instances".into()], ..Default::default() };
    let s = select(&three(), SelectionPolicy::CapabilityBased, &spot, 0, 0.0).unwrap();
    assert_eq!(s.selected, "aws-primary");
    assert!(s.passed_over.iter().any(|p| p.name == "aws-secondary" && p.reason == "lacks spot_instances"));
    let lb = Criteria { required_capabilities: vec!["load_balancers".into()], ..Default::default() };
    let e = select(&three(), SelectionPolicy::CapabilityBased, &lb, 0, 0.0).unwrap_err();
    assert_eq!(e.passed_over.len(), 3);
    assert!(e.to_string().contains("lacks load_balancers"));
}

#[test]
fn health_based_and_require_healthy_skip_unhealthy_providers() {
    let mut list = three();
    list.iter_mut().find(|c| c.name == "aws-primary").unwrap().healthy = false;
    let s = select(&list, SelectionPolicy::HealthBased, &Criteria::default(), 0, 0.0).unwrap();
    assert_eq!(s.selected, "aws-secondary");
    assert!(s.passed_over.iter().any(|p| p.name == "aws-primary" && p.reason == "unhealthy"));
    let healthy = Criteria { require_healthy: true, ..Default::default() };
    assert_eq!(select(&list, SelectionPolicy::FirstAvailable, &healthy, 0, 0.0).unwrap().selected, "aws-secondary");
    assert_eq!(
        select(&list, SelectionPolicy::FirstAvailable, &Criteria::default(), 0, 0.0).unwrap().selected,
        "aws-primary",
        "without require_healthy, FIRST_AVAILABLE does not look at health"
    );
}

#[test]
fn random_picks_by_the_draw() {
    let none = Criteria::default();
    assert_eq!(pick(SelectionPolicy::Random, &none, 0, 0.0), "aws-primary");
    assert_eq!(pick(SelectionPolicy::Random, &none, 0, 0.5), "aws-secondary");
    assert_eq!(pick(SelectionPolicy::Random, &none, 0, 0.99), "aws-backup");
}

#[test]
fn min_success_rate_and_max_response_time_filter() {
    let strict = Criteria { min_success_rate: Some(95.0), max_response_time_ms: Some(200.0), ..Default::default() };
    let s = select(&three(), SelectionPolicy::FirstAvailable, &strict, 0, 0.0).unwrap();
    assert_eq!(s.selected, "aws-secondary");
    let why: Vec<&str> = s.passed_over.iter().map(|p| p.reason.as_str()).collect();
    assert!(why.contains(&"response time 250 ms above 200 ms"), "{why:?}");
    assert!(why.contains(&"success rate 80.0% below 95.0%"), "{why:?}");
}

#[test]
fn exclude_and_prefer() {
    let exclude = Criteria { exclude_strategies: vec!["aws-primary".into()], ..Default::default() };
    assert_eq!(pick(SelectionPolicy::FirstAvailable, &exclude, 0, 0.0), "aws-secondary");
    let prefer = Criteria { prefer_strategies: vec!["aws-backup".into()], ..Default::default() };
    assert_eq!(pick(SelectionPolicy::FirstAvailable, &prefer, 0, 0.0), "aws-backup");
    let prefer_missing = Criteria {
        prefer_strategies: vec!["aws-backup".into()],
        exclude_strategies: vec!["aws-backup".into()],
        ..Default::default()
    };
    assert_eq!(
        pick(SelectionPolicy::FirstAvailable, &prefer_missing, 0, 0.0),
        "aws-primary",
        "a preference for an ineligible provider falls back to the rest"
    );
}

#[test]
fn disabled_providers_are_never_chosen() {
    let mut list = three();
    list.iter_mut().for_each(|c| c.enabled = c.name == "aws-backup");
    for policy in SelectionPolicy::ALL {
        assert_eq!(select(&list, policy, &Criteria::default(), 3, 0.4).unwrap().selected, "aws-backup", "{policy:?}");
    }
}

#[test]
fn policies_and_criteria_read_the_seed_names() {
    let p: SelectionPolicy = serde_json::from_str("\"WEIGHTED_ROUND_ROBIN\"").unwrap();
    assert_eq!(p, SelectionPolicy::WeightedRoundRobin);
    let c: Criteria = serde_json::from_value(serde_json::json!({
        "required_capabilities": ["instances", "load_balancers"], "min_success_rate": 95.0,
        "max_response_time_ms": 5000, "require_healthy": true, "exclude_strategies": ["aws-backup"],
        "prefer_strategies": ["aws-primary"]
    }))
    .unwrap();
    assert_eq!(c.prefer_strategies, ["aws-primary"]);
    assert!(serde_json::from_value::<Criteria>(serde_json::json!({"min_rate": 1})).is_err());
}
