//! The daemon's APIs from the outside: the Host Factory scripts and operator commands in client
//! mode, a Python client generated from `proto/`, TLS and mutual TLS.

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Daemon, HfEnv};

const OPERATOR: &str = "operator-token-0123456789";
const READER: &str = "reader-token-0123456789";

fn config(extra: &str) -> String {
    format!(
        r#"advance_on_poll = false
[serve]
interval_ms = 100
tokens = [
  {{ name = "scheduler", token = "{OPERATOR}", role = "operator" }},
  {{ name = "dashboard", token = "{READER}", role = "reader" }},
]
{extra}
[[providers]]
name = "sim-1"
type = "sim"
launch_latency_ms = 300
shutdown_latency_ms = 200

[[providers]]
name = "sim-slow"
type = "sim"
launch_latency_ms = 600000
"#
    )
}

/// A Host Factory script's output, standalone (`server` None) or through the daemon.
fn script(env: &HfEnv, server: Option<(&str, &str)>, op: &str, input: &Value) -> Output {
    let file = tempfile::NamedTempFile::new_in(env.dir.path()).unwrap();
    std::fs::write(file.path(), input.to_string()).unwrap();
    let mut cmd = env.script_cmd(op);
    if let Some((url, token)) = server {
        cmd.env("OHF_SERVER", url).env("OHF_TOKEN", token);
    }
    cmd.arg("-f").arg(file.path()).output().unwrap()
}

fn doc(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn wait_done(env: &HfEnv, server: (&str, &str), id: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = script(env, Some(server), "getRequestStatus", &json!({"requests": [{"requestId": id}]}));
        let status = doc(&out);
        if status["requests"][0]["status"] == want {
            return status;
        }
        assert!(Instant::now() < deadline, "{id} never became {want}: {status}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn host_factory_scripts_answer_byte_for_byte_the_same_through_the_daemon() {
    let env = HfEnv::new(&config(""));
    let daemon = Daemon::start(&env);
    let url = daemon.url();
    let through = (url.as_str(), OPERATOR);

    let out = script(
        &env,
        Some(through),
        "requestMachines",
        &json!({"template": {"templateId": "OnDemand-Minimal", "machineCount": 2}}),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let id = doc(&out)["requestId"].as_str().unwrap().to_owned();
    let status = wait_done(&env, through, &id, "complete");
    let machines: Vec<Value> = status["requests"][0]["machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| json!({"name": m["name"], "machineId": m["machineId"]}))
        .collect();

    let same = |op: &str, input: Value| {
        let alone = script(&env, None, op, &input);
        let remote = script(&env, Some(through), op, &input);
        assert_eq!(
            String::from_utf8_lossy(&alone.stdout),
            String::from_utf8_lossy(&remote.stdout),
            "{op} {input} answers differently through the daemon"
        );
        assert_eq!(alone.status.code(), remote.status.code(), "{op}");
        remote
    };
    same("getAvailableTemplates", json!({}));
    same("getRequestStatus", json!({"requests": [{"requestId": id}]}));
    same("getReturnRequests", json!({"machines": machines}));
    let refused = same("requestMachines", json!({"template": {"templateId": "Nope", "machineCount": 1}}));
    assert!(!refused.status.success());
    assert!(doc(&refused)["message"].as_str().unwrap().contains("Nope"));

    let out = script(&env, Some(through), "requestReturnMachines", &json!({"machines": machines}));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let ret = doc(&out)["requestId"].as_str().unwrap().to_owned();
    wait_done(&env, through, &ret, "complete");
    same("getRequestStatus", json!({"requests": [{"requestId": ret}]}));

    let denied = script(
        &env,
        Some((&url, READER)),
        "requestMachines",
        &json!({"template": {"templateId": "OnDemand-Minimal", "machineCount": 1}}),
    );
    assert!(!denied.status.success());
    assert!(doc(&denied)["message"].as_str().unwrap().contains("may not call requestMachines"), "{}", doc(&denied));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let gone =
        script(&env, Some((&format!("http://127.0.0.1:{closed}"), OPERATOR)), "getAvailableTemplates", &json!({}));
    assert!(!gone.status.success());
    assert!(doc(&gone)["message"].as_str().unwrap().contains("cannot reach the ohf server"), "{}", doc(&gone));
    assert!(daemon.stop().success());
}

#[test]
fn operator_commands_run_through_the_daemon_with_the_same_output() {
    let env = HfEnv::new(&config(""));
    let daemon = Daemon::start(&env);
    let remote = |token: &str, args: &[&str]| {
        env.ohf().args(["--server", &daemon.url(), "--token", token]).args(args).output().unwrap()
    };
    let out = remote(OPERATOR, &["request", "create", "-t", "OnDemand-Minimal", "-n", "2", "--wait", "-o", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created = doc(&out);
    assert_eq!(created["status"], "COMPLETED");
    let id = created["requestId"].as_str().unwrap();

    for args in [
        vec!["request", "list", "-o", "json"],
        vec!["request", "status", id, "-o", "json"],
        vec!["request", "history", id, "-o", "json"],
        vec!["templates", "list", "-o", "json"],
        vec!["request", "status", id],
    ] {
        let local = env.ohf().args(&args).output().unwrap();
        let through = remote(READER, &args);
        assert!(through.status.success(), "{args:?}: {}", String::from_utf8_lossy(&through.stderr));
        assert_eq!(String::from_utf8_lossy(&local.stdout), String::from_utf8_lossy(&through.stdout), "{args:?}");
    }

    let slow = remote(
        OPERATOR,
        &["request", "create", "-t", "OnDemand-Minimal", "-n", "1", "--provider", "sim-slow", "-o", "json"],
    );
    let slow_id = doc(&slow)["requestId"].as_str().unwrap().to_owned();
    let cancelled = remote(OPERATOR, &["request", "cancel", &slow_id, "-o", "json"]);
    assert_eq!(doc(&cancelled)["status"], "CANCELLED");

    let machines: Vec<String> =
        created["machines"].as_array().unwrap().iter().map(|m| m["machineId"].as_str().unwrap().to_owned()).collect();
    let mut args = vec!["return", "--wait", "-o", "json"];
    args.extend(machines.iter().map(String::as_str));
    let back = remote(OPERATOR, &args);
    assert_eq!(doc(&back)["status"], "COMPLETED", "{}", String::from_utf8_lossy(&back.stderr));

    // The daemon's own counters, through the query and as metrics.
    let status = doc(&remote(READER, &["resilience", "status", "-o", "json"]));
    let sim = status["providers"].as_array().unwrap().iter().find(|p| p["provider"] == "sim-1").unwrap().clone();
    assert_eq!(sim["service"], "sim_ec2");
    assert!(sim["operations"]["ec2_run_instances"]["calls"].as_u64().unwrap() >= 1, "{sim}");
    assert!(sim["operations"]["ec2_describe_instances"]["successRate"].as_f64().is_some(), "{sim}");
    let metrics = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", daemon.port)).unwrap();
        write!(s, "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    };
    assert!(metrics.contains("ohf_cloud_calls_total{provider=\"sim-1\",operation=\"ec2_run_instances\"}"), "{metrics}");

    let wrong = remote("not-a-token-at-all", &["request", "list", "-o", "json"]);
    assert!(!wrong.status.success());
    assert_eq!(doc(&wrong)["error"]["code"], "UNAUTHENTICATED");
    let denied = remote(OPERATOR, &["reconcile", "-o", "json"]);
    assert_eq!(doc(&denied)["error"]["code"], "PERMISSION_DENIED", "reconcile is for admins");
    let local_only = remote(OPERATOR, &["sim", "stop", &machines[0]]);
    assert!(!local_only.status.success());
    assert!(daemon.stop().success());
}

#[test]
fn a_python_client_generated_from_the_protos_drives_the_grpc_api() {
    let python = std::env::var("OHF_TEST_GRPC_PYTHON")
        .expect("OHF_TEST_GRPC_PYTHON names a Python with grpcio-tools; `cargo xtask test` installs one and sets it");
    let env = HfEnv::new(&config(""));
    let daemon = Daemon::start(&env);
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(python)
        .arg(here.join("tests/it/grpc_client.py"))
        .arg(here.join("../../proto"))
        .arg(format!("127.0.0.1:{}", daemon.port))
        .args([OPERATOR, READER])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["templates"], json!(["OnDemand-Minimal", "Spot-Compute"]));
    assert_eq!(
        seen["errors"],
        json!({
            "template": ["NOT_FOUND", "TEMPLATE_NOT_FOUND"],
            "count": ["INVALID_ARGUMENT", "VALIDATION_ERROR"],
            "missing": ["NOT_FOUND", "REQUEST_NOT_FOUND"],
            "final": ["FAILED_PRECONDITION", "ILLEGAL_TRANSITION"],
            "no_token": ["UNAUTHENTICATED", "UNAUTHENTICATED"],
            "wrong_token": ["UNAUTHENTICATED", "UNAUTHENTICATED"],
            "reader_mutates": ["PERMISSION_DENIED", "PERMISSION_DENIED"],
        })
    );
    assert!(daemon.stop().success());
}

struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names).unwrap().signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    Pki {
        ca: ca.pem(),
        server: leaf(vec!["localhost".into(), "127.0.0.1".into()]),
        client: leaf(vec!["scheduler".into()]),
    }
}

#[test]
fn tls_and_mutual_tls_guard_both_apis() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let ca = file("ca.pem", &pki.ca);
    let (server_cert, server_key) = (file("server.pem", &pki.server.0), file("server.key", &pki.server.1));
    let (client_cert, client_key) = (file("client.pem", &pki.client.0), file("client.key", &pki.client.1));
    let env = HfEnv::new(&config(&format!(
        "[serve.tls]\ncert_file = \"{server_cert}\"\nkey_file = \"{server_key}\"\nclient_ca_file = \"{ca}\"\n"
    )));
    let daemon = Daemon::start(&env);
    let url = format!("https://127.0.0.1:{}", daemon.port);
    let call = |extra: &[&str]| {
        env.ohf()
            .args(["--server", &url, "--token", READER, "--ca-cert", &ca])
            .args(extra)
            .args(["request", "list", "-o", "json"])
            .output()
            .unwrap()
    };
    let ok = call(&["--client-cert", &client_cert, "--client-key", &client_key]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));
    assert_eq!(doc(&ok), json!([]));
    let no_identity = call(&[]);
    assert!(!no_identity.status.success(), "mutual TLS refuses a client without a certificate");
    let plain = env
        .ohf()
        .args(["--server", &format!("http://127.0.0.1:{}", daemon.port), "--token", READER, "request", "list"])
        .output()
        .unwrap();
    assert!(!plain.status.success(), "plain HTTP is refused");

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        use ohf_grpc::pb;
        use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&pki.ca)).domain_name("localhost");
        let endpoint = Channel::from_shared(url.clone()).unwrap();
        let with_identity = tls.clone().identity(Identity::from_pem(&pki.client.0, &pki.client.1));
        let channel = endpoint.clone().tls_config(with_identity).unwrap().connect().await.unwrap();
        let mut client = pb::request_service_client::RequestServiceClient::new(channel);
        let mut list = tonic::Request::new(pb::ListRequestsRequest::default());
        list.metadata_mut().insert("authorization", format!("Bearer {READER}").parse().unwrap());
        assert!(client.list_requests(list).await.unwrap().into_inner().requests.is_empty());
        let refused = match endpoint.tls_config(tls).unwrap().connect().await {
            Err(_) => true,
            Ok(channel) => pb::request_service_client::RequestServiceClient::new(channel)
                .list_requests(pb::ListRequestsRequest::default())
                .await
                .is_err(),
        };
        assert!(refused, "gRPC without a client certificate is refused");
    });
    assert!(daemon.stop().success());
}

#[test]
fn tokens_never_reach_the_log() {
    let env = HfEnv::new(&config(""));
    let log_path = env.path("log/daemon.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let daemon = Daemon::spawn_with(&env, &["-vv"], log);
    let url = daemon.url();
    for token in [OPERATOR, READER, "a-wrong-token-0123456789"] {
        env.ohf().args(["--server", &url, "--token", token, "request", "list"]).output().unwrap();
        script(&env, Some((&url, token)), "getAvailableTemplates", &json!({}));
    }
    let created = env
        .ohf()
        .args(["--server", &url, "--token", OPERATOR, "request", "create", "-t", "OnDemand-Minimal", "-n", "1"])
        .output()
        .unwrap();
    assert!(created.status.success());
    assert!(daemon.stop().success());
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(text.contains("rpc") || text.contains("request"), "the daemon logged at debug: {text:.300}");
    for token in [OPERATOR, READER, "a-wrong-token-0123456789"] {
        assert!(!text.contains(token), "a token reached the log");
    }
}
