//! Resilience across processes: the breaker lives in the store, so one-shot Host Factory
//! processes see the state the ones before them left.

use serde_json::{Value, json};

use crate::support::HfEnv;

const FAILING_SIM: &str = r#"
[resilience.retry]
enabled = false

[resilience.circuit_breaker.services.sim_ec2]
failure_threshold = 3
reset_timeout = 600

[[providers]]
name = "sim-1"
type = "sim"
launch_latency_ms = 0
internal_error_rate = 1.0
"#;

fn breakers(env: &HfEnv) -> Vec<Value> {
    let out = env.ohf().args(["resilience", "status", "-o", "json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    status["breakers"].as_array().unwrap().clone()
}

#[test]
fn host_factory_processes_in_a_row_share_one_breaker() {
    let env = HfEnv::new(FAILING_SIM);
    assert!(breakers(&env).is_empty(), "no breaker before the first call");

    let (out, doc) =
        env.script("requestMachines", &json!({"template": {"templateId": "OnDemand-Minimal", "machineCount": 1}}));
    assert!(out.status.success(), "{doc}");
    let id = doc["requestId"].as_str().unwrap().to_owned();
    let after_first = breakers(&env);
    assert_eq!(after_first.len(), 1);
    assert_eq!(
        (after_first[0]["provider"].as_str(), after_first[0]["service"].as_str()),
        (Some("sim-1"), Some("sim_ec2"))
    );
    assert_eq!((after_first[0]["state"].as_str(), after_first[0]["failures"].as_u64()), (Some("CLOSED"), Some(1)));

    // Each poll is a new process; the failures add up across them until the breaker opens.
    let mut failures = 1;
    let mut polls = 0;
    while breakers(&env)[0]["state"] == "CLOSED" {
        env.script("getRequestStatus", &json!({"requests": [{"requestId": id}]}));
        let now = breakers(&env)[0]["failures"].as_u64().unwrap();
        assert!(
            now > failures || breakers(&env)[0]["state"] == "OPEN",
            "process {polls} started from the stored count"
        );
        failures = now;
        polls += 1;
        assert!(polls <= 2, "the third failure in all opens it");
    }
    let open = breakers(&env);
    assert_eq!((open[0]["state"].as_str(), open[0]["opened"].as_u64()), (Some("OPEN"), Some(1)));

    // The next process meets the open breaker: it fails fast, and changes nothing.
    env.script("getRequestStatus", &json!({"requests": [{"requestId": id}]}));
    assert_eq!(breakers(&env), open, "an open breaker lets no call through that could change it");

    let table = env.ohf().args(["resilience", "status"]).output().unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("sim_ec2") && text.contains("OPEN"), "{text}");
}

#[test]
fn the_seed_block_is_read_from_a_json_config_and_bad_values_are_named() {
    let env = HfEnv::new("");
    let seed_block = json!({
        "resilience": {
            "circuit_breaker": {"enabled": true, "default_failure_threshold": 5, "default_reset_timeout": 60,
                "default_half_open_timeout": 30,
                "services": {"aws_ec2": {"failure_threshold": 3, "reset_timeout": 30, "half_open_timeout": 15}}},
            "retry": {"enabled": true, "default_max_attempts": 3, "default_base_delay": 1.0, "default_max_delay": 60.0,
                "default_exponential_base": 2.0, "default_jitter": true,
                "operations": {"ec2_run_instances": {"max_attempts": 5, "base_delay": 2.0, "max_delay": 120.0}}},
            "timeout": {"default_timeout": 30, "operations": {"ec2_run_instances": 180, "ec2_terminate_instances": 60,
                "ec2_describe_instances": 30}},
            "error_handling": {"log_retries": true, "log_circuit_breaker_state_changes": true,
                "alert_on_circuit_breaker_open": true, "max_consecutive_failures_before_alert": 10}
        },
        "providers": [{"name": "sim-1", "type": "sim", "launch_latency_ms": 0}]
    });
    let file = env.path("conf/ohf.json");
    std::fs::write(&file, seed_block.to_string()).unwrap();
    let out = env
        .ohf()
        .arg("--config")
        .arg(&file)
        .args(["request", "create", "-t", "OnDemand-Minimal", "-n", "1", "--wait", "-o", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));

    let bad = env
        .ohf()
        .arg("--config")
        .arg(&file)
        .env("OHF_RESILIENCE__RETRY__DEFAULT_MAX_ATTEMPTS", "0")
        .args(["request", "list"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("resilience.retry.default.max_attempts"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
