use ohf_domain::testing::{T0, created, given, observed, provider};
use ohf_domain::{
    LifecyclePolicy, Machine, MachineId, MachineResult, MachineStatus, PartialPolicy, Request, RequestEvent,
    RequestState, ReturnedMachine, TimeoutSecs,
};

fn policy() -> LifecyclePolicy {
    LifecyclePolicy::default()
}

fn launch_started(attempt: u32, count: u32) -> RequestEvent {
    let id = ohf_domain::RequestId::new("req-1").unwrap();
    RequestEvent::LaunchStarted {
        attempt,
        count,
        token: ohf_domain::ClientToken::for_launch(&id, attempt),
        provider: provider(),
    }
}

fn launched(attempt: u32, ids: &[&str], status: MachineStatus) -> RequestEvent {
    RequestEvent::MachinesLaunched {
        attempt,
        machines: ids.iter().map(|id| observed(id, "req-1", status)).collect(),
        shortfall: None,
        filling: None,
    }
}

fn in_progress() -> RequestEvent {
    RequestEvent::StateChanged { from: RequestState::Pending, to: RequestState::InProgress, error: None }
}

#[test]
fn first_step_starts_progress_and_orders_a_launch() {
    let then = given(vec![created("req-1", 3)])
        .when(|r| r.reconcile(&[], &[provider()], T0, &policy()))
        .then_events(&["state_changed", "launch_started"])
        .then_state(RequestState::InProgress);
    let order = then.outcome.launch.expect("a launch");
    assert_eq!((order.attempt, order.count), (1, 3));
    assert_eq!(then.request.hf_status(), "running");
}

#[test]
fn an_unrecorded_launch_is_repeated_with_the_same_token() {
    let first = given(vec![created("req-1", 3)]).when(|r| r.reconcile(&[], &[provider()], T0, &policy()));
    let token = first.outcome.launch.unwrap().token;
    let again = given(vec![created("req-1", 3), in_progress(), launch_started(1, 3)])
        .when(|r| r.reconcile(&[], &[provider()], T0.plus_secs(5), &policy()))
        .then_events(&[]);
    assert_eq!(again.outcome.launch.unwrap().token, token);
}

#[test]
fn machines_found_by_tag_are_adopted_not_launched_again() {
    let found = [
        observed("i-1", "req-1", MachineStatus::Running),
        observed("i-2", "req-1", MachineStatus::Running),
        observed("i-3", "req-1", MachineStatus::Running),
        observed("i-9", "req-other", MachineStatus::Running),
    ];
    let then = given(vec![created("req-1", 3), in_progress(), launch_started(1, 3)])
        .when(|r| r.reconcile(&found, &[provider()], T0.plus_secs(5), &policy()))
        .then_events(&["machine_adopted", "machine_adopted", "machine_adopted", "state_changed"])
        .then_state(RequestState::Completed);
    assert!(then.outcome.launch.is_none());
    assert_eq!(then.request.machines().len(), 3);
    assert_eq!(then.request.hf_status(), "complete");
}

#[test]
fn completes_when_every_machine_runs() {
    let running = [observed("i-1", "req-1", MachineStatus::Running), observed("i-2", "req-1", MachineStatus::Running)];
    let then = given(vec![
        created("req-1", 2),
        in_progress(),
        launch_started(1, 2),
        launched(1, &["i-1", "i-2"], MachineStatus::Pending),
    ])
    .when(|r| r.reconcile(&running, &[provider()], T0.plus_secs(5), &policy()))
    .then_events(&["machine_changed", "machine_changed", "state_changed"])
    .then_state(RequestState::Completed);
    for m in then.request.machines() {
        assert_eq!(then.request.hf_machine_result(m).0, MachineResult::Succeed);
    }
    assert!(then.request.completed_at().is_some());
}

#[test]
fn pending_machines_are_executing() {
    let pending = [observed("i-1", "req-1", MachineStatus::Pending)];
    let then = given(vec![
        created("req-1", 1),
        in_progress(),
        launch_started(1, 1),
        launched(1, &["i-1"], MachineStatus::Pending),
    ])
    .when(|r| r.reconcile(&pending, &[provider()], T0.plus_secs(1), &policy()))
    .then_events(&[])
    .then_state(RequestState::InProgress);
    let m = &then.request.machines()[0];
    assert_eq!(then.request.hf_machine_result(m).0, MachineResult::Executing);
}

#[test]
fn a_timed_out_request_terminates_what_it_launched() {
    let pending = [observed("i-1", "req-1", MachineStatus::Pending)];
    let late = T0.plus_secs(i64::from(TimeoutSecs::DEFAULT.get()));
    let then = given(vec![
        created("req-1", 1),
        in_progress(),
        launch_started(1, 1),
        launched(1, &["i-1"], MachineStatus::Pending),
    ])
    .when(|r| r.reconcile(&pending, &[provider()], late, &policy()))
    .then_events(&["state_changed", "termination_requested"])
    .then_state(RequestState::Timeout);
    assert_eq!(then.outcome.terminate, vec![(provider(), MachineId::new("i-1").unwrap())]);
    assert_eq!(then.request.hf_status(), "complete_with_error");
    let (result, message) = then.request.hf_machine_result(&then.request.machines()[0]);
    assert_eq!(result, MachineResult::Fail);
    assert!(message.contains("timed out"));
    assert!(then.request.error().unwrap().contains("0 of 1"));
    assert!(then.request.needs_work(), "cleanup goes on until the machine is terminated");
}

#[test]
fn cleanup_ends_when_the_cloud_confirms_termination() {
    let late = T0.plus_secs(600);
    let mut r = given(vec![
        created("req-1", 1),
        in_progress(),
        launch_started(1, 1),
        launched(1, &["i-1"], MachineStatus::Pending),
    ])
    .when(|r| r.reconcile(&[], &[], late, &policy()))
    .request;
    let down = [observed("i-1", "req-1", MachineStatus::Terminated)];
    let d = r.reconcile(&down, &[provider()], late.plus_secs(30), &policy());
    assert!(d.is_empty());
    assert!(!r.needs_work());
}

#[test]
fn cancelling_terminates_launched_machines_and_is_final() {
    let then = given(vec![
        created("req-1", 2),
        in_progress(),
        launch_started(1, 2),
        launched(1, &["i-1", "i-2"], MachineStatus::Running),
    ])
    .when(|r| r.cancel(T0.plus_secs(3)))
    .then_events(&["state_changed", "termination_requested"])
    .then_state(RequestState::Cancelled);
    assert!(then.outcome.is_ok());
    let mut r = then.request;
    assert!(r.cancel(T0.plus_secs(4)).is_err(), "a cancelled request cannot be cancelled again");
    let d = r.reconcile(&[], &[], T0.plus_secs(5), &policy());
    assert_eq!(d.terminate.len(), 2);
}

#[test]
fn a_shortfall_is_launched_again_after_the_backoff() {
    let one = [observed("i-1", "req-1", MachineStatus::Running)];
    let mut r = given(vec![created("req-1", 3), in_progress(), launch_started(1, 3)])
        .when(|r| {
            r.record_launch(1, one.to_vec(), Some("InsufficientInstanceCapacity: 2 short".into()), T0);
        })
        .request;
    let d = r.reconcile(&one, &[provider()], T0.plus_secs(1), &policy());
    let order = d.launch.expect("relaunch of the remainder");
    assert_eq!((order.attempt, order.count), (2, 2));
    r.record_launch_failure(
        2,
        "InsufficientInstanceCapacity".into(),
        "none left".into(),
        true,
        T0.plus_secs(1),
        &policy(),
    );
    assert!(r.reconcile(&one, &[provider()], T0.plus_secs(2), &policy()).launch.is_none(), "inside the backoff");
    assert!(
        r.reconcile(&one, &[provider()], T0.plus_secs(10), &policy()).launch.is_none(),
        "backoff of attempt 2 is 10 s"
    );
    let later = r.reconcile(&one, &[provider()], T0.plus_secs(11), &policy());
    assert_eq!(later.launch.map(|o| o.attempt), Some(3));
}

#[test]
fn partial_success_keeps_or_cleans_up_per_policy() {
    let one = [observed("i-1", "req-1", MachineStatus::Running)];
    let history = || {
        vec![
            created("req-1", 3),
            in_progress(),
            launch_started(1, 3),
            launched(1, &["i-1"], MachineStatus::Running),
            launch_started(2, 2),
            RequestEvent::LaunchFailed {
                attempt: 2,
                code: "InvalidAMIID.NotFound".into(),
                message: "no such image".into(),
                retryable: false,
                retry_at: None,
            },
        ]
    };
    let keep = given(history())
        .when(|r| r.reconcile(&one, &[provider()], T0.plus_secs(5), &policy()))
        .then_state(RequestState::PartialSuccess);
    assert!(keep.outcome.terminate.is_empty());
    assert!(keep.request.error().unwrap().contains("InvalidAMIID.NotFound"));
    assert_eq!(keep.request.hf_status(), "complete_with_error");

    let cleanup = LifecyclePolicy { partial: PartialPolicy::Cleanup, ..policy() };
    let clean = given(history())
        .when(|r| r.reconcile(&one, &[provider()], T0.plus_secs(5), &cleanup))
        .then_state(RequestState::Failed);
    assert_eq!(clean.outcome.terminate.len(), 1);
}

#[test]
fn a_refused_launch_with_nothing_up_fails_the_request() {
    let then = given(vec![
        created("req-1", 2),
        in_progress(),
        launch_started(1, 2),
        RequestEvent::LaunchFailed {
            attempt: 1,
            code: "UnauthorizedOperation".into(),
            message: "denied".into(),
            retryable: false,
            retry_at: None,
        },
    ])
    .when(|r| r.reconcile(&[], &[provider()], T0.plus_secs(1), &policy()))
    .then_state(RequestState::Failed);
    assert!(then.request.error().unwrap().contains("UnauthorizedOperation"));
}

#[test]
fn attempts_are_bounded() {
    let policy = LifecyclePolicy { max_launch_attempts: 1, ..policy() };
    let then = given(vec![
        created("req-1", 1),
        in_progress(),
        launch_started(1, 1),
        RequestEvent::LaunchFailed {
            attempt: 1,
            code: "RequestLimitExceeded".into(),
            message: "slow down".into(),
            retryable: true,
            retry_at: None,
        },
    ])
    .when(|r| r.reconcile(&[], &[provider()], T0.plus_secs(60), &policy))
    .then_state(RequestState::Failed);
    assert!(then.outcome.launch.is_none());
}

#[test]
fn a_machine_lost_before_completion_is_failed_and_replaced() {
    let obs = [observed("i-1", "req-1", MachineStatus::Running), observed("i-2", "req-1", MachineStatus::Terminated)];
    let then = given(vec![
        created("req-1", 2),
        in_progress(),
        launch_started(1, 2),
        launched(1, &["i-1", "i-2"], MachineStatus::Pending),
    ])
    .when(|r| r.reconcile(&obs, &[provider()], T0.plus_secs(5), &policy()))
    .then_events(&["machine_changed", "machine_changed", "machine_failed", "launch_started"]);
    assert_eq!(then.outcome.launch.map(|o| o.count), Some(1));
}

#[test]
fn machines_the_cloud_no_longer_knows_are_gone() {
    let then = given(vec![
        created("req-1", 1),
        in_progress(),
        launch_started(1, 1),
        launched(1, &["i-1"], MachineStatus::Pending),
    ])
    .when(|r| r.reconcile(&[], &[provider()], T0.plus_secs(5), &policy()))
    .then_events(&["machine_gone", "machine_failed", "launch_started"]);
    assert_eq!(then.request.machines()[0].status(), MachineStatus::Terminated);
}

#[test]
fn pending_too_long_is_terminated_and_failed() {
    let policy = LifecyclePolicy { pending_timeout_secs: Some(120), ..policy() };
    let pending = [observed("i-1", "req-1", MachineStatus::Pending)];
    let then = given(vec![
        created("req-1", 1),
        in_progress(),
        launch_started(1, 1),
        launched(1, &["i-1"], MachineStatus::Pending),
    ])
    .when(|r| r.reconcile(&pending, &[provider()], T0.plus_secs(121), &policy))
    .then_events(&["termination_requested", "launch_started"]);
    assert_eq!(then.outcome.terminate.len(), 1);
    let (result, message) = then.request.hf_machine_result(&then.request.machines()[0]);
    assert_eq!(result, MachineResult::Fail);
    assert!(message.contains("pending after 120 s"));
}

#[test]
fn surplus_machines_are_terminated() {
    let obs = [observed("i-1", "req-1", MachineStatus::Running), observed("i-2", "req-1", MachineStatus::Running)];
    let then = given(vec![created("req-1", 1), in_progress(), launch_started(1, 1)])
        .when(|r| r.reconcile(&obs, &[provider()], T0.plus_secs(5), &policy()))
        .then_state(RequestState::Completed);
    assert_eq!(then.outcome.terminate.len(), 1);
}

fn returned(id: &str, holder: Option<&str>) -> ReturnedMachine {
    let m = Machine::from_observation(&observed(id, "req-1", MachineStatus::Running));
    ReturnedMachine { machine: m, holder: holder.map(|h| ohf_domain::RequestId::new(h).unwrap()), refusal: None }
}

#[test]
fn a_return_completes_when_every_machine_is_terminated() {
    let id = ohf_domain::RequestId::new("ret-1").unwrap();
    let mut r = Request::return_machines(
        id,
        vec![returned("i-1", Some("req-1")), returned("i-2", Some("req-1"))],
        TimeoutSecs::DEFAULT,
        false,
        None,
        None,
        T0,
    )
    .unwrap();
    let d = r.reconcile(&[], &[], T0, &policy());
    assert_eq!(d.terminate.len(), 2);
    assert_eq!(r.hf_status(), "running");
    assert_eq!(r.hf_machine_result(&r.machines()[0]).0, MachineResult::Executing);
    let down =
        [observed("i-1", "req-1", MachineStatus::ShuttingDown), observed("i-2", "req-1", MachineStatus::Terminated)];
    let d = r.reconcile(&down, &[provider()], T0.plus_secs(2), &policy());
    assert!(d.terminate.is_empty(), "shutting-down needs no second call");
    assert_eq!(r.state(), RequestState::InProgress);
    let gone = [observed("i-2", "req-1", MachineStatus::Terminated)];
    r.reconcile(&gone, &[provider()], T0.plus_secs(4), &policy());
    assert_eq!(r.state(), RequestState::Completed);
    assert!(r.machines().iter().all(|m| r.hf_machine_result(m).0 == MachineResult::Succeed));
}

#[test]
fn a_return_of_an_unknown_machine_fails_that_machine() {
    let id = ohf_domain::RequestId::new("ret-2").unwrap();
    let mut bad = returned("ip-10-9-9-9.ec2.internal", None);
    bad.refusal = Some("machine 'ip-10-9-9-9.ec2.internal' is not known to ohf".into());
    let mut r = Request::return_machines(
        id,
        vec![bad, returned("i-1", Some("req-1"))],
        TimeoutSecs::DEFAULT,
        false,
        None,
        None,
        T0,
    )
    .unwrap();
    let d = r.reconcile(&[], &[], T0, &policy());
    assert_eq!(d.terminate.len(), 1);
    r.reconcile(&[observed("i-1", "req-1", MachineStatus::Terminated)], &[provider()], T0.plus_secs(3), &policy());
    assert_eq!(r.state(), RequestState::Failed);
    assert_eq!(r.hf_status(), "complete_with_error");
    let results: Vec<_> = r.machines().iter().map(|m| r.hf_machine_result(m).0).collect();
    assert_eq!(results, [MachineResult::Fail, MachineResult::Succeed]);
}

#[test]
fn an_empty_return_is_refused() {
    let id = ohf_domain::RequestId::new("ret-3").unwrap();
    assert!(Request::return_machines(id, vec![], TimeoutSecs::DEFAULT, false, None, None, T0).is_err());
}

#[test]
fn replaying_the_audit_trail_rebuilds_the_request() {
    let mut r = Request::provision(ohf_domain::testing::provision_spec("req-1", 2), T0);
    r.reconcile(&[], &[provider()], T0, &policy());
    r.record_launch(1, vec![observed("i-1", "req-1", MachineStatus::Pending)], Some("short".into()), T0.plus_secs(1));
    r.reconcile(&[observed("i-1", "req-1", MachineStatus::Running)], &[provider()], T0.plus_secs(2), &policy());
    let rebuilt = Request::replay(r.uncommitted()).unwrap();
    assert_eq!(rebuilt.state(), r.state());
    assert_eq!(rebuilt.machines(), r.machines());
    assert_eq!(rebuilt.launch_attempts(), r.launch_attempts());
    assert_eq!(rebuilt.seq(), r.seq());
}

#[test]
fn capacity_held_counts_reservations_then_live_machines() {
    let mut r = Request::provision(ohf_domain::testing::provision_spec("req-1", 3), T0);
    assert_eq!(r.capacity_held(), 3);
    r.reconcile(&[], &[provider()], T0, &policy());
    r.record_launch(1, vec![observed("i-1", "req-1", MachineStatus::Running)], None, T0);
    r.cancel(T0.plus_secs(1)).unwrap();
    assert_eq!(r.capacity_held(), 0);
}

#[test]
fn a_new_attempt_waits_until_the_cloud_has_been_seen() {
    // Attempt 1 failed as far as this copy knows; machines of it may exist all the same.
    let history = || {
        vec![
            created("req-1", 2),
            in_progress(),
            launch_started(1, 2),
            RequestEvent::LaunchFailed {
                attempt: 1,
                code: "RequestLimitExceeded".into(),
                message: "slow down".into(),
                retryable: true,
                retry_at: None,
            },
        ]
    };
    let blind = given(history()).when(|r| r.reconcile(&[], &[], T0.plus_secs(30), &policy()));
    assert!(blind.outcome.launch.is_none(), "no describe answered: no new launch");
    let found = [observed("i-1", "req-1", MachineStatus::Running), observed("i-2", "req-1", MachineStatus::Running)];
    let seen = given(history())
        .when(|r| r.reconcile(&found, &[provider()], T0.plus_secs(30), &policy()))
        .then_state(RequestState::Completed);
    assert!(seen.outcome.launch.is_none(), "the machines of attempt 1 are adopted instead");
    let empty = given(history()).when(|r| r.reconcile(&[], &[provider()], T0.plus_secs(30), &policy()));
    assert_eq!(empty.outcome.launch.map(|o| o.attempt), Some(2), "seen and nothing there: launch again");
}

fn filling(attempt: u32, ids: &[&str], resource: &str) -> RequestEvent {
    RequestEvent::MachinesLaunched {
        attempt,
        machines: ids.iter().map(|id| observed(id, "req-1", MachineStatus::Running)).collect(),
        shortfall: None,
        filling: Some(resource.into()),
    }
}

#[test]
fn a_fleet_still_filling_is_followed_instead_of_launching_again() {
    let history = || vec![created("req-1", 3), in_progress(), launch_started(1, 3), filling(1, &["i-1"], "fleet-1")];
    let found = [observed("i-1", "req-1", MachineStatus::Running)];
    let step = given(history()).when(|r| r.reconcile(&found, &[provider()], T0.plus_secs(30), &policy()));
    let order = step.outcome.launch.clone().expect("the fleet is looked at again");
    assert_eq!((order.attempt, order.count, order.following.as_deref()), (1, 3, Some("fleet-1")));
    assert_eq!(step.then_state(RequestState::InProgress).request.launch_attempts(), 1, "no second fleet");

    // Looking again and finding nothing new records nothing.
    let same = given(history()).when(|r| r.record_filling(1, "fleet-1".into(), found.to_vec(), T0.plus_secs(31)));
    assert!(same.event_names().is_empty(), "{:?}", same.event_names());
    let more = vec![found[0].clone(), observed("i-2", "req-1", MachineStatus::Pending)];
    given(history()).when(|r| r.record_filling(1, "fleet-1".into(), more, T0)).then_events(&["machines_launched"]);
}

#[test]
fn a_fleet_filling_for_a_request_that_ended_is_released_once() {
    let history = || vec![created("req-1", 3), in_progress(), launch_started(1, 3), filling(1, &[], "fleet-1")];
    let late = T0.plus_secs(3600);
    let step = given(history()).when(|r| r.reconcile(&[], &[provider()], late, &policy()));
    let step = step.then_state(RequestState::Timeout);
    let release = step.outcome.release.clone().expect("the fleet is stopped");
    assert_eq!((release.attempt, release.resource.as_str()), (1, "fleet-1"));
    assert!(step.outcome.launch.is_none());
    let mut r = step.request.clone();
    assert!(r.needs_work(), "the release is work left");
    r.record_release(1, "fleet-1".into(), late);
    assert!(!r.needs_work());
    assert!(r.reconcile(&[], &[provider()], late, &policy()).release.is_none());
}

#[test]
fn a_completed_request_keeps_its_fleet() {
    let history = vec![created("req-1", 1), in_progress(), launch_started(1, 1), filling(1, &["i-1"], "fleet-1")];
    let found = [observed("i-1", "req-1", MachineStatus::Running)];
    let step = given(history).when(|r| r.reconcile(&found, &[provider()], T0.plus_secs(30), &policy()));
    let step = step.then_state(RequestState::Completed);
    assert!(step.outcome.release.is_none() && step.outcome.launch.is_none());
    assert!(!step.request.needs_work());
}

#[test]
fn urgent_metadata_raises_a_request_to_high_priority() {
    use ohf_domain::Priority;
    let with = |priority: Priority, key: &str, value: &str| {
        let mut spec = ohf_domain::testing::provision_spec("req-p", 1);
        spec.priority = priority;
        if !key.is_empty() {
            spec.metadata.insert(key.into(), serde_json::json!(value));
        }
        Request::provision(spec, T0).effective_priority()
    };
    assert_eq!(with(Priority::Low, "", ""), Priority::Low, "as asked without metadata");
    assert_eq!(with(Priority::Normal, "urgency", "critical"), Priority::High, "the seed's example");
    assert_eq!(with(Priority::Low, "urgency", "HIGH"), Priority::High);
    assert_eq!(with(Priority::Normal, "urgency", "whenever"), Priority::Normal);
    assert_eq!(with(Priority::Normal, "sla", "15-minutes"), Priority::High, "the seed's example");
    assert_eq!(with(Priority::Normal, "sla", "1-hour"), Priority::High);
    assert_eq!(with(Priority::Normal, "sla", "4 hours"), Priority::Normal);
    assert_eq!(with(Priority::Normal, "sla", "soon"), Priority::Normal);
    assert_eq!(with(Priority::Normal, "sla", "99999999999999999999-minutes"), Priority::Normal, "no overflow");
    assert!(Priority::High.rank() < Priority::Normal.rank() && Priority::Normal.rank() < Priority::Low.rank());
}

#[test]
fn a_callback_is_owed_on_each_state_asked_for_and_given_up_after_its_tries() {
    use ohf_domain::{CALLBACK_ATTEMPTS, RequestState};
    let mut spec = ohf_domain::testing::provision_spec("req-cb", 1);
    spec.metadata.insert("callback_url".into(), serde_json::json!("https://hooks.example/ohf"));
    let mut r = Request::provision(spec, T0);
    r.cancel(T0.plus_secs(1)).unwrap();
    assert!(r.pending_callbacks().is_empty(), "CANCELLED is not among the default states");

    let mut spec = ohf_domain::testing::provision_spec("req-cb2", 1);
    spec.metadata.insert("callback_url".into(), serde_json::json!("https://hooks.example/ohf"));
    spec.metadata.insert("callback_events".into(), serde_json::json!(["cancelled"]));
    let mut r = Request::provision(spec, T0);
    r.cancel(T0.plus_secs(1)).unwrap();
    assert!(!r.needs_cloud_work());
    assert!(r.needs_work(), "a callback owed keeps the request in the lifecycle");
    let owed = r.due_callbacks(T0.plus_secs(1));
    assert_eq!(owed.len(), 1);
    assert_eq!(owed[0].event, RequestState::Cancelled);

    let mut now = T0.plus_secs(1);
    for attempt in 1..=CALLBACK_ATTEMPTS {
        let due = r.due_callbacks(now);
        assert_eq!(due.len(), 1, "try {attempt} is due");
        r.record_callback(&due[0], "https://hooks.example/ohf", Err("refused".into()), now);
        if attempt < CALLBACK_ATTEMPTS {
            assert!(r.due_callbacks(now).is_empty(), "not again at once");
            now = r.pending_callbacks()[0].due_at;
        }
    }
    assert!(r.pending_callbacks().is_empty(), "given up after {CALLBACK_ATTEMPTS} tries");
    assert!(!r.needs_work());

    // A rebuilt request owes what the live one owes.
    let rebuilt = Request::replay(r.uncommitted()).unwrap();
    assert_eq!(rebuilt.pending_callbacks(), r.pending_callbacks());
}

#[test]
fn a_requests_spot_price_limit_lowers_the_templates_for_its_launches_only() {
    let with = |template_json: serde_json::Value, limit: Option<&str>| {
        let mut spec = ohf_domain::testing::provision_spec("req-s", 1);
        spec.template = ohf_domain::Template::from_json(&template_json).unwrap();
        if let Some(l) = limit {
            spec.metadata.insert(ohf_domain::MAX_SPOT_PRICE_KEY.into(), serde_json::json!(l));
        }
        let r = Request::provision(spec, T0);
        (r.template().unwrap().max_spot_price(), r.launch_template().unwrap().max_spot_price())
    };
    let spot = |price: Option<f64>| {
        let mut t = serde_json::json!({"templateId": "S", "maxNumber": 5, "imageId": "ami-1", "vmType": "c5.large", "priceType": "spot"});
        if let Some(p) = price {
            t["maxSpotPrice"] = serde_json::json!(p);
        }
        t
    };
    assert_eq!(with(spot(None), None), (None, None));
    assert_eq!(with(spot(None), Some("0.10")), (None, Some(0.10)), "the request sets a limit the template lacks");
    assert_eq!(with(spot(Some(0.25)), Some("0.10")), (Some(0.25), Some(0.10)), "the lower applies");
    assert_eq!(with(spot(Some(0.05)), Some("0.10")), (Some(0.05), Some(0.05)), "never above the template's");
}
