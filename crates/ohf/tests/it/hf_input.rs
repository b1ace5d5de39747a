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
                    Ok(answer) => {
                        let doc = serde_json::to_value(&answer).expect("an answer is JSON");
                        prop_assert!(doc.is_object(), "{:?}: {}", op, doc)
                    }
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

/// getRequestStatus's answer is written straight from the requests: its text is the text of
/// the same answer as a JSON document (keys sorted as a JSON map sorts them), for provision and
/// return requests, user tags, and an id ohf does not know.
#[tokio::test]
async fn the_status_answer_prints_as_the_document_it_stands_for() {
    use ohf_hostfactory::{Operation, Options, run};
    let app = app();
    let call = |op, input: Value| {
        let app = &app;
        async move {
            let options = Options { advance_on_poll: true, requester: None };
            serde_json::to_value(run(app, op, &input, options).await.expect("answered")).expect("JSON")
        }
    };
    let ask = serde_json::json!({"template": {"templateId": "OnDemand-Minimal", "machineCount": 3}});
    let made = call(Operation::RequestMachines, ask).await["requestId"].as_str().unwrap().to_owned();
    let status = call(Operation::GetRequestStatus, serde_json::json!({"requests": [{"requestId": made}]})).await;
    let machine = status["requests"][0]["machines"][0]["machineId"].as_str().unwrap().to_owned();
    let returned = call(Operation::RequestReturnMachines, serde_json::json!({"machines": [{"machineId": machine}]}))
        .await["requestId"]
        .as_str()
        .unwrap()
        .to_owned();
    let asked = serde_json::json!({"requests": [
        {"requestId": made}, {"requestId": returned}, {"requestId": "req-unknown"}, {"requestId": made}
    ]});
    let options = Options { advance_on_poll: true, requester: None };
    let answer = run(&app, Operation::GetRequestStatus, &asked, options).await.expect("answered");
    let doc = serde_json::to_value(&answer).unwrap();
    assert_eq!(serde_json::to_string_pretty(&answer).unwrap(), serde_json::to_string_pretty(&doc).unwrap());
    assert_eq!(serde_json::to_string(&answer).unwrap(), doc.to_string());
    let requests = doc["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 4);
    assert_eq!(requests[0], requests[3]);
    let first = &requests[0]["machines"][0];
    assert_eq!(first["instanceTags"], "team=abc");
    assert_eq!(first["priceType"], "ondemand");
    assert_eq!(first["result"], "succeed");
    assert_eq!(requests[1]["machines"][0]["machineId"], machine.as_str());
    assert_eq!(requests[2]["status"], "complete_with_error");
    assert_eq!(requests[2]["message"], "request 'req-unknown' not found");
    assert_eq!(requests[2]["machines"], serde_json::json!([]));
}
