#![allow(clippy::unwrap_used)]

use serde_json::json;

use crate::config::{self, HealthBreaker};
use crate::health::{Health, sources};
use crate::metrics::{Bucket, HOUR_MS, summarize};
use crate::{ProviderEntry, SelectionPolicy, StrategyConfig};

const BREAKER: HealthBreaker = HealthBreaker { failure_threshold: 3, recovery_timeout: 60 };

#[test]
fn failures_in_a_row_make_a_provider_unhealthy_until_the_recovery_timeout() {
    let mut h = Health::unknown(0);
    const LAUNCH: &str = "CREATE_INSTANCES";
    assert!(!h.record_operation(LAUNCH, Some("InsufficientInstanceCapacity"), 1_000, &BREAKER));
    // A success resets the streak.
    h.record_operation(LAUNCH, None, 2_000, &BREAKER);
    h.record_operation(LAUNCH, Some("X"), 3_000, &BREAKER);
    h.record_operation(LAUNCH, Some("X"), 4_000, &BREAKER);
    // Another operation's success leaves the launch streak alone.
    h.record_operation("GET_INSTANCE_STATUS", None, 4_500, &BREAKER);
    assert!(h.healthy_at(4_500));
    assert_eq!(h.consecutive_failures, 2);
    assert!(h.record_operation(LAUNCH, Some("InternalError"), 5_000, &BREAKER), "the third in a row flips it");
    assert!(!h.healthy_at(5_000));
    // Other operations succeeding do not heal a provider whose launches keep failing.
    h.record_operation("GET_INSTANCE_STATUS", None, 5_500, &BREAKER);
    assert!(!h.healthy_at(5_500));
    assert_eq!(h.error_code.as_deref(), Some("InternalError"));
    assert_eq!(h.source, sources::OPERATIONS);
    assert!(h.status_message.contains("CREATE_INSTANCES failed 3 times in a row"), "{}", h.status_message);
    assert!(!h.healthy_at(64_999));
    assert!(h.healthy_at(65_000), "tried again after the recovery timeout");
    // On probation one more failure makes it unhealthy again.
    assert!(h.record_operation(LAUNCH, Some("InternalError"), 66_000, &BREAKER));
    assert!(!h.healthy_at(66_000));
    // A success after the timeout heals it for good.
    assert!(h.record_operation(LAUNCH, None, 200_000, &BREAKER) || h.healthy_at(200_000));
    assert!(h.is_healthy);
    assert_eq!(h.consecutive_failures, 0);
}

#[test]
fn an_outside_update_holds_for_its_retry_after_and_a_passing_check_does_not_undo_it() {
    let mut h = Health::unknown(0);
    assert!(h.record_update(
        false,
        "Rate limit exceeded".into(),
        Some("RATE_LIMIT".into()),
        Some(300),
        "monitoring_system",
        1_000
    ));
    assert!(!h.record_check(Ok(()), 2_000));
    assert!(!h.healthy_at(2_000));
    assert_eq!(h.source, "monitoring_system");
    assert!(h.healthy_at(301_000));
    // Without a retry_after it holds until someone says otherwise.
    h.record_update(false, "down".into(), None, None, "ops", 400_000);
    assert!(!h.healthy_at(10_000_000));
    assert!(h.record_update(true, "back".into(), None, None, "ops", 10_000_000));
    // The longest wait there is does not overflow.
    h.record_update(false, "gone".into(), None, Some(u64::MAX), "ops", 10_000_000);
    assert!(!h.healthy_at(i64::MAX - 1));
}

#[test]
fn a_failed_check_makes_a_provider_unhealthy_and_a_passing_one_heals_it() {
    let mut h = Health::unknown(0);
    assert!(h.record_check(Err(("Unavailable".into(), "connection refused".into())), 1_000));
    assert!(!h.healthy_at(1_000_000));
    assert_eq!(h.last_check, Some(1_000));
    assert!(h.record_check(Ok(()), 2_000));
    assert!(h.is_healthy);
}

#[test]
fn figures_merge_over_the_asked_range_with_percentiles_and_errors() {
    let mut old = Bucket::default();
    old.add(0, 4_000, Some("Old"));
    let mut now = Bucket::default();
    let t = 5 * HOUR_MS + 10;
    for ms in [3, 8, 8, 40, 90, 90, 90, 200, 400, 2_000] {
        now.add(t, ms, None);
    }
    now.add(t, 30, Some("InsufficientInstanceCapacity"));
    now.add(t, 30, Some("InsufficientInstanceCapacity"));
    let s = summarize([&old, &now], t - HOUR_MS);
    assert_eq!(s.total_operations, 12);
    assert_eq!(s.failed_operations, 2);
    assert!((s.success_rate.unwrap() - 83.333).abs() < 0.01);
    // Sorted: 3 8 8 30 30 40 | 90 …: the sixth of twelve is 40, in the bucket up to 50.
    assert_eq!(s.p50_response_time_ms, Some(50));
    assert_eq!(s.p99_response_time_ms, Some(2_000), "capped at the slowest seen");
    assert_eq!(s.errors.get("InsufficientInstanceCapacity"), Some(&2));
    assert!(!s.errors.contains_key("Old"));
    let all = summarize([&old, &now], 0);
    assert_eq!(all.total_operations, 13);
    // The ring came round: an old hour starts again.
    let mut ring = old.clone();
    ring.add(168 * HOUR_MS, 1, None);
    assert_eq!(ring.count, 1);
    assert!(summarize([&Bucket::default()], 0).success_rate.is_none());
    // Figures gathered in a process are added to the stored hour; a stored hour a week old
    // gives way.
    let mut stored = now.clone();
    let mut delta = Bucket::default();
    delta.add(t, 7, Some("Throttling"));
    stored.absorb(&delta);
    assert_eq!((stored.count, stored.errors.get("Throttling")), (13, Some(&1)));
    let mut stale = old.clone();
    stale.absorb(&delta);
    assert_eq!((stale.hour, stale.count), (delta.hour, 1));
}

#[test]
fn the_seed_configuration_and_registration_read_as_written_and_bad_values_are_named() {
    let c: StrategyConfig = config::parse(
        &json!({
            "default_selection_policy": "CAPABILITY_BASED",
            "selection_criteria": {"min_success_rate": 95.0, "require_healthy": true},
            "fallback_strategies": ["aws-backup", "aws-secondary"],
            "health_check_interval": 300,
            "circuit_breaker_config": {"failure_threshold": 5, "recovery_timeout": 60}
        }),
        "configuration",
    )
    .unwrap();
    c.validate().unwrap();
    assert_eq!(c.default_selection_policy, SelectionPolicy::CapabilityBased);
    assert_eq!(c.fallback_strategies, ["aws-backup", "aws-secondary"]);
    let e =
        config::parse::<StrategyConfig>(&json!({"default_selection_policy": "CHEAPEST"}), "configuration").unwrap_err();
    assert!(e.message.contains("CHEAPEST"), "{e}");
    let mut c = StrategyConfig::default();
    c.selection_criteria.min_success_rate = Some(120.0);
    assert_eq!(c.validate().unwrap_err().field, "selection_criteria.min_success_rate");

    let r: ProviderEntry = config::parse(
        &json!({
            "strategy_name": "aws-west",
            "provider_type": "aws",
            "strategy_config": {"region": "us-west-2", "profile": "production"},
            "capabilities": {"instances": true, "spot_instances": true, "load_balancers": false},
            "priority": 1
        }),
        "registration",
    )
    .unwrap();
    r.validate().unwrap();
    let caps = r.capabilities_with(&["instances", "fleets", "load_balancers"]);
    assert!(caps.contains("spot_instances") && caps.contains("fleets") && !caps.contains("load_balancers"));
    assert_eq!((r.weight, r.enabled), (1, true));
    let mut bad = r.clone();
    bad.provider_type = "gcp".into();
    assert_eq!(bad.validate().unwrap_err().field, "provider_type");
    bad = r;
    bad.strategy_name = "a b".into();
    assert_eq!(bad.validate().unwrap_err().field, "strategy_name");
}

#[test]
fn a_passing_check_leaves_a_launch_streak_running() {
    let breaker = HealthBreaker { failure_threshold: 2, recovery_timeout: 600 };
    let mut h = Health::unknown(0);
    h.record_operation("CREATE_INSTANCES", Some("InsufficientInstanceCapacity"), 1_000, &breaker);
    // Describes work: the check passes, but says nothing of launches.
    h.record_check(Ok(()), 2_000);
    assert!(h.healthy_at(2_000));
    assert_eq!(h.streaks.get("CREATE_INSTANCES"), Some(&1));
    assert!(h.record_operation("CREATE_INSTANCES", Some("InsufficientInstanceCapacity"), 3_000, &breaker));
    assert!(!h.healthy_at(3_000), "the second launch failure in a row still trips it");
    assert!(!h.record_check(Ok(()), 4_000), "nor does a check undo the streak's verdict");
}
