//! Properties of the request state machine under any sequence of cloud answers, launches,
//! failures, cancellations and time, and of every parser of outside input under any input.

use proptest::prelude::*;

use ohf_domain::testing::{T0, observed, provider, provision_spec};
use ohf_domain::{LifecyclePolicy, MachineStatus, Request, RequestState, Tags, Template};

#[derive(Debug, Clone)]
enum Step {
    /// The cloud reports machine `n` (of a small pool) in a status.
    See(u8, MachineStatus),
    /// The outstanding launch produced `n` machines.
    Launched(u8),
    LaunchFailed(bool),
    Cancel,
    Wait(u16),
}

fn status() -> impl Strategy<Value = MachineStatus> {
    prop_oneof![
        Just(MachineStatus::Pending),
        Just(MachineStatus::Running),
        Just(MachineStatus::Stopping),
        Just(MachineStatus::Stopped),
        Just(MachineStatus::ShuttingDown),
        Just(MachineStatus::Terminated),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..6, status()).prop_map(|(n, s)| Step::See(n, s)),
        (0u8..4).prop_map(Step::Launched),
        any::<bool>().prop_map(Step::LaunchFailed),
        Just(Step::Cancel),
        (0u16..900).prop_map(Step::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever happens: every recorded transition is legal, a final state never changes, the
    /// stored events replay to the request, and a completed request holds its count.
    #[test]
    fn the_state_machine_keeps_its_invariants(count in 1u32..4, steps in proptest::collection::vec(step(), 1..40)) {
        let policy = LifecyclePolicy::default();
        let mut r = Request::provision(provision_spec("req-p", count), T0);
        let mut now = T0;
        let mut seen: Vec<ohf_domain::MachineObservation> = Vec::new();
        let mut final_state: Option<RequestState> = None;
        for s in steps {
            let decision = match s {
                Step::See(n, st) => {
                    let o = observed(&format!("i-{n}"), "req-p", st);
                    seen.retain(|x| x.id != o.id);
                    seen.push(o);
                    r.reconcile(&seen, &[provider()], now, &policy)
                }
                Step::Launched(n) => {
                    if let Some((attempt, _)) = r.reconcile(&seen, &[provider()], now, &policy).launch.map(|o| (o.attempt, o.count)) {
                        let machines: Vec<_> = (0..n).map(|i| observed(&format!("i-{}", i + 3 * attempt as u8), "req-p", MachineStatus::Pending)).collect();
                        seen.extend(machines.iter().cloned());
                        r.record_launch(attempt, machines, None, now);
                    }
                    Default::default()
                }
                Step::LaunchFailed(retryable) => {
                    if let Some(order) = r.reconcile(&seen, &[provider()], now, &policy).launch {
                        r.record_launch_failure(order.attempt, "InsufficientInstanceCapacity".into(), "none".into(), retryable, now, &policy);
                    }
                    Default::default()
                }
                Step::Cancel => {
                    let _ = r.cancel(now);
                    Default::default()
                }
                Step::Wait(secs) => {
                    now = now.plus_secs(i64::from(secs));
                    r.reconcile(&seen, &[provider()], now, &policy)
                }
            };
            let _ = decision;
            if let Some(f) = final_state {
                prop_assert_eq!(r.state(), f, "a final state never changes");
            } else if r.state().is_terminal() {
                final_state = Some(r.state());
            }
        }
        let history = r.uncommitted().to_vec();
        for e in &history {
            if let ohf_domain::RequestEvent::StateChanged { from, to, .. } = &e.event {
                prop_assert!(from.can_become(*to), "{} -> {} is not legal", from, to);
            }
        }
        let replayed = Request::replay(&history).expect("history starts with Created");
        prop_assert_eq!(replayed.state(), r.state());
        prop_assert_eq!(replayed.machines(), r.machines());
        prop_assert!(r.updated_at() >= T0 && r.updated_at() <= now);
        // No more machines are held than asked for once it is done launching.
        if r.state() == RequestState::Completed {
            prop_assert!(r.capacity_held() <= count.max(r.machines().len() as u32));
        }
    }

    /// Any JSON as a template or a templates file, any text as a templates file or Host
    /// Factory tags: an answer or an error, no panic.
    #[test]
    fn template_and_tag_parsers_never_panic(doc in json_value(), text in ".{0,200}") {
        let _ = Template::from_json(&doc);
        let _ = Template::parse_file(&doc.to_string());
        let _ = Template::parse_file(&serde_json::json!({"templates": [doc.clone()]}).to_string());
        let _ = Template::parse_file(&text);
        let _ = Tags::parse_hf(&text);
        let _ = ohf_domain::RequestId::new(text.clone());
        let _ = ohf_domain::MachineId::new(text);
    }

    /// A template document built from the known fields with arbitrary values never panics.
    #[test]
    fn templates_with_arbitrary_field_values_never_panic(fields in proptest::collection::btree_map(
        prop_oneof![
            Just("templateId"), Just("maxNumber"), Just("imageId"), Just("vmType"), Just("vmTypes"),
            Just("priceType"), Just("percentOnDemand"), Just("subnetId"), Just("instanceTags"),
            Just("providerApi"), Just("fleetType"), Just("attributes"), Just("maxSpotPrice"),
            Just("spotFleetRequestExpiry"), Just("rootDeviceVolumeSize"), Just("vmTypesPriority"),
        ],
        json_value(),
        0..12,
    )) {
        let doc = serde_json::Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect());
        let _ = Template::from_json(&doc);
    }
}

/// Arbitrary JSON, a few levels deep.
pub fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
