//! Any input to any Host Factory operation answers a document Host Factory can read.

use std::sync::Arc;

use ohf_app::App;
use ohf_app::memory::{ManualClock, MemoryStore, SequentialIds, StaticCatalog};
use ohf_cloud_sim::{SimCloud, SimConfig};
use ohf_domain::ProviderName;
use ohf_domain::testing::T0;
use proptest::prelude::*;
use serde_json::Value;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop_oneof![Just("OnDemand-Minimal".to_owned()), ".{0,24}"].prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("template".to_owned()),
                    Just("templateId".to_owned()),
                    Just("machineCount".to_owned()),
                    Just("machines".to_owned()),
                    Just("requests".to_owned()),
                    Just("requestId".to_owned()),
                    Just("machineId".to_owned()),
                    Just("name".to_owned()),
                    Just("rc_account".to_owned()),
                    Just("userData".to_owned()),
                    ".{0,8}",
                ],
                inner,
                0..5,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Any input text to any Host Factory operation answers a document or an error that
    /// Host Factory can read, and never panics.
    #[test]
    fn any_input_to_any_operation_answers(text in ".{0,200}", doc in json_value()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let app = app();
            let _ = ohf_hostfactory::parse_input(&text);
            for op in ohf_hostfactory::Operation::ALL {
                let options = ohf_hostfactory::Options { advance_on_poll: true, requester: None };
                match ohf_hostfactory::run(&app, op, &doc, options).await {
                    Ok(answer) => prop_assert!(answer.is_object(), "{:?}: {}", op, answer),
                    Err(e) => prop_assert!(e.to_json()["message"].is_string(), "{:?}", op),
                }
            }
            Ok(())
        })?;
    }
}

/// The application on memory and an instant simulated cloud.
fn app() -> App {
    let clock = Arc::new(ManualClock::new(T0));
    let sim = SimConfig { launch_latency_ms: 0, ..SimConfig::default() };
    let sim = Arc::new(SimCloud::in_memory(ProviderName::new("sim-1").unwrap(), sim, clock.clone()));
    App::builder(Arc::new(MemoryStore::new()), Arc::new(StaticCatalog(crate::support::templates())))
        .provider(sim)
        .clock(clock)
        .ids(Arc::new(SequentialIds::default()))
        .build()
        .unwrap()
}
