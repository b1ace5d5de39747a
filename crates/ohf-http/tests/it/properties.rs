//! Any body sent to `/rpc`, and any parameters to any method, get a structured answer: a
//! result or the seed's error shape with a 4xx (or a busy 423/503), never a panic or a 500.

use ohf_app::AppSettings;
use proptest::prelude::*;
use serde_json::Value;

use crate::rpc::api;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        ".{0,30}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("templateId".to_owned()),
                    Just("machineCount".to_owned()),
                    Just("requestId".to_owned()),
                    Just("requestIds".to_owned()),
                    Just("machines".to_owned()),
                    Just("tags".to_owned()),
                    Just("timeout".to_owned()),
                    Just("metadata".to_owned()),
                    Just("machineId".to_owned()),
                    Just("name".to_owned()),
                    Just("states".to_owned()),
                    ".{0,8}".prop_map(|s| s),
                ],
                inner,
                0..6,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn method() -> impl Strategy<Value = String> {
    let known: Vec<String> =
        ohf_api::METHODS.iter().chain(ohf_api::PROVIDER_METHODS.iter()).map(|m| (*m).to_owned()).collect();
    prop_oneof![proptest::sample::select(known), ".{0,12}"]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn any_call_gets_a_structured_answer(method in method(), params in json_value(), raw in proptest::collection::vec(any::<u8>(), 0..200)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let api = api(AppSettings::default());
            let call = serde_json::json!({"method": method, "params": params}).to_string();
            for body in [call, String::from_utf8_lossy(&raw).into_owned()] {
                let (status, _, v) = api.call_raw(&body).await;
                prop_assert!(status.as_u16() < 500 || status.as_u16() == 503, "{} for {}: {}", status, body, v);
                prop_assert!(v.get("result").is_some() || v["error"]["code"].is_string(), "{}: {}", body, v);
            }
            Ok(())
        })?;
    }
}
