//! The provider scripts driven exactly as Host Factory drives them.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{FAST_SIM, HfEnv};

fn status(env: &HfEnv, id: &str) -> Value {
    let (out, doc) = env.script("getRequestStatus", &json!({"requests": [{"requestId": id}]}));
    assert!(out.status.success(), "{doc}");
    doc["requests"][0].clone()
}

fn wait_status(env: &HfEnv, id: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = status(env, id);
        if r["status"] == want {
            return r;
        }
        assert!(Instant::now() < deadline, "{id} never became {want}: {r}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn request(env: &HfEnv, template: &str, count: i64) -> String {
    let (out, doc) =
        env.script("requestMachines", &json!({"template": {"templateId": template, "machineCount": count}}));
    assert!(out.status.success(), "{doc}");
    doc["requestId"].as_str().unwrap().to_owned()
}

#[test]
fn the_host_factory_flow_provisions_and_returns_machines() {
    let env = HfEnv::new(FAST_SIM);

    let (out, doc) = env.script("getAvailableTemplates", &json!({}));
    assert!(out.status.success());
    let templates = doc["templates"].as_array().unwrap();
    assert_eq!(templates.len(), 2);
    for t in templates {
        assert!(t["templateId"].is_string() && t["maxNumber"].is_number());
        for attr in ["type", "ncpus", "nram"] {
            let pair = t["attributes"][attr].as_array().unwrap_or_else(|| panic!("{attr} missing in {t}"));
            assert_eq!(pair.len(), 2);
            assert!(pair[1].is_string(), "attribute values are strings: {t}");
        }
    }
    assert_eq!(templates[0]["attributes"]["nram"], json!(["Numeric", "8192"]), "derived from m5.large");

    let id = request(&env, "OnDemand-Minimal", 3);
    assert!(id.starts_with("req-"), "{id}");
    let first = status(&env, &id);
    assert!(first["status"] == "running" || first["status"] == "complete", "{first}");
    let done = wait_status(&env, &id, "complete");
    let machines = done["machines"].as_array().unwrap();
    assert_eq!(machines.len(), 3);
    for m in machines {
        assert_eq!(m["result"], "succeed", "{m}");
        assert_eq!(m["status"], "running");
        assert!(m["name"].as_str().is_some_and(|n| n.ends_with(".ec2.internal")), "{m}");
        assert!(m["privateIpAddress"].is_string());
        assert!(m["launchtime"].is_i64(), "launchtime is integer epoch seconds: {m}");
        assert_eq!(m["instanceTags"], "team=abc");
        for field in ["machineId", "publicIpAddress", "message", "instanceType", "priceType", "cloudHostId"] {
            assert!(m.get(field).is_some(), "{field} missing in {m}");
        }
    }
    let (_, t) = env.script("getAvailableTemplates", &json!({}));
    assert_eq!(t["templates"][0]["availableNumber"], 7);

    // Host Factory sends the list form; return by name only for one of them.
    let to_return: Vec<Value> =
        machines
            .iter()
            .enumerate()
            .map(|(n, m)| {
                if n == 0 {
                    json!({"name": m["name"]})
                } else {
                    json!({"name": m["name"], "machineId": m["machineId"]})
                }
            })
            .collect();
    let (out, doc) = env.script("requestReturnMachines", &json!({"machines": to_return}));
    assert!(out.status.success(), "{doc}");
    let ret = doc["requestId"].as_str().unwrap().to_owned();
    assert!(ret.starts_with("ret-"));
    let back = wait_status(&env, &ret, "complete");
    let returned = back["machines"].as_array().unwrap();
    assert_eq!(returned.len(), 3);
    assert!(returned.iter().all(|m| m["result"] == "succeed" && m["status"] == "terminated"), "{back}");
    let (_, t) = env.script("getAvailableTemplates", &json!({}));
    assert_eq!(t["templates"][0]["availableNumber"], 10, "returned machines free the template");
}

#[test]
fn interrupted_and_stopped_machines_are_reported_for_return() {
    let env = HfEnv::new(FAST_SIM);
    let id = request(&env, "Spot-Compute", 3);
    let done = wait_status(&env, &id, "complete");
    let m: Vec<&Value> = done["machines"].as_array().unwrap().iter().collect();
    let (out, doc) = env.script("getReturnRequests", &json!({}));
    assert!(out.status.success());
    assert_eq!(doc["requests"], json!([]), "nothing to return yet");

    let out =
        env.ohf().args(["sim", "interrupt", m[0]["machineId"].as_str().unwrap(), "--notice", "120"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = env.ohf().args(["sim", "stop", m[1]["machineId"].as_str().unwrap()]).output().unwrap();
    assert!(out.status.success());

    let known: Vec<Value> = m.iter().map(|m| json!({"name": m["name"], "machineId": m["machineId"]})).collect();
    let (out, doc) = env.script("getReturnRequests", &json!({"machines": known}));
    assert!(out.status.success(), "{doc}");
    assert_eq!(doc["status"], "complete");
    let list = doc["requests"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{doc}");
    let interrupted = list.iter().find(|r| r["machine"] == m[0]["name"]).expect("the interrupted machine");
    let grace = interrupted["gracePeriod"].as_i64().unwrap();
    assert!((100..=120).contains(&grace), "seconds left of the notice: {grace}");
    let stopped = list.iter().find(|r| r["machine"] == m[1]["name"]).expect("the stopped machine");
    assert_eq!(stopped["gracePeriod"], 0);
}

#[test]
fn every_input_form_and_flag_is_accepted() {
    let env = HfEnv::new(FAST_SIM);
    let id = request(&env, "OnDemand-Minimal", 1);
    let input = json!({"requests": {"requestId": id}}).to_string();
    let file = env.path("single.json");
    std::fs::write(&file, &input).unwrap();
    for flag in ["-f", "--f", "--file"] {
        let out = env.script_cmd("getRequestStatus").arg(flag).arg(&file).output().unwrap();
        assert!(out.status.success(), "{flag}: {}", String::from_utf8_lossy(&out.stdout));
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["requests"][0]["requestId"], id.as_str(), "{flag}");
    }
    let mut child = env
        .script_cmd("getRequestStatus")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["requests"][0]["requestId"], id.as_str(), "standard input");

    let (out, doc) = env.script("requestMachines", &json!({"template": {"templateId": "OnDemand-Minimal", "machineCount": "2", "rc_account": "acct-7", "userData": "x"}}));
    assert!(out.status.success(), "{doc}");
    let (_, unknown) = env.script("getRequestStatus", &json!({"requests": [{"requestId": "req-unknown"}]}));
    assert_eq!(unknown["requests"][0]["status"], "complete_with_error");
    assert!(unknown["requests"][0]["message"].as_str().unwrap().contains("not found"));
}

#[test]
fn bad_requests_are_refused_and_change_nothing() {
    let env = HfEnv::new(FAST_SIM);
    let keep = request(&env, "OnDemand-Minimal", 2);
    let before = env.stored_requests();

    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "requestMachines",
            json!({"template": {"templateId": "Nope", "machineCount": 1}}),
            "available: OnDemand-Minimal, Spot-Compute",
        ),
        (
            "requestMachines",
            json!({"template": {"templateId": "OnDemand-Minimal", "machineCount": 0}}),
            "must be positive",
        ),
        (
            "requestMachines",
            json!({"template": {"templateId": "Spot-Compute", "machineCount": 101}}),
            "cannot exceed 100",
        ),
        (
            "requestMachines",
            json!({"template": {"templateId": "OnDemand-Minimal", "machineCount": 9}}),
            "requested 9, available 8",
        ),
        ("requestMachines", json!({"template": {"machineCount": 1}}), "templateId"),
        ("requestMachines", json!({}), "template"),
        ("requestReturnMachines", json!({"machines": []}), "at least one machine"),
        ("getRequestStatus", json!({"requests": []}), "at least one request"),
    ];
    for (op, input, expect) in cases {
        let (out, doc) = env.script(op, &input);
        assert!(!out.status.success(), "{op} {input} should fail");
        let message = doc["message"].as_str().unwrap_or_else(|| panic!("{op}: {doc}"));
        assert!(message.contains(expect), "{op} {input}: '{message}' should say '{expect}'");
    }
    for op in ["requestMachines", "getRequestStatus", "requestReturnMachines"] {
        let file = env.path("bad.json");
        std::fs::write(&file, "{\"template\": ").unwrap();
        let out = env.script_cmd(op).arg("-f").arg(&file).output().unwrap();
        assert!(!out.status.success());
        let doc: Value = serde_json::from_slice(&out.stdout).expect("even a failure answers in JSON");
        assert!(doc["message"].as_str().unwrap().contains("not valid JSON"), "{doc}");
    }
    let out = env.script_cmd("getRequestStatus").arg("--bogus").output().unwrap();
    assert!(!out.status.success());
    assert!(serde_json::from_slice::<Value>(&out.stdout).unwrap()["message"].is_string());

    assert_eq!(env.stored_requests(), before, "nothing stored changed");
    assert_eq!(status(&env, &keep)["machines"].as_array().unwrap().len(), 2);
}

#[test]
fn a_broken_template_file_is_an_error_not_an_empty_list() {
    let env = HfEnv::new(FAST_SIM);
    std::fs::write(env.path("conf/awsprov_templates.json"), "{\"templates\": [{\"templateId\": \"x\"}]}").unwrap();
    let (out, doc) = env.script("getAvailableTemplates", &json!({}));
    assert!(!out.status.success());
    assert!(doc.get("templates").is_none());
    assert!(doc["message"].as_str().unwrap().contains("maxNumber"), "{doc}");
    std::fs::remove_file(env.path("conf/awsprov_templates.json")).unwrap();
    let (out, doc) = env.script("getAvailableTemplates", &json!({}));
    assert!(!out.status.success());
    assert!(doc["message"].as_str().unwrap().contains("awsprov_templates.json"), "{doc}");
}

#[test]
fn a_bad_config_is_a_clear_error() {
    let env = HfEnv::new("[request]\nmax_machines_per_request = \"many\"\n");
    let (out, doc) = env.script("getAvailableTemplates", &json!({}));
    assert!(!out.status.success());
    assert!(doc["message"].as_str().unwrap().contains("max_machines_per_request"), "{doc}");
    let env = HfEnv::new("[[providers]]\nname = \"p\"\ntype = \"sim\"\nthrottle_rate = 2.0\n");
    let (_, doc) = env.script("getAvailableTemplates", &json!({}));
    assert!(doc["message"].as_str().unwrap().contains("throttle_rate"), "{doc}");
    let env = HfEnv::new("[[providers]]\nname = \"p\"\ntype = \"sim\"\nlaunch_latncy_ms = 1\n");
    let (_, doc) = env.script("getAvailableTemplates", &json!({}));
    assert!(doc["message"].as_str().unwrap().contains("launch_latncy_ms"), "{doc}");
}

#[test]
fn lsf_environment_variables_are_honoured() {
    let env = HfEnv::new(FAST_SIM);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ohf"))
        .args(["hf", "getAvailableTemplates"])
        .env_remove("HF_PROVIDER_CONFDIR")
        .env_remove("HF_PROVIDER_WORKDIR")
        .env_remove("HF_PROVIDER_LOGDIR")
        .env("PRO_CONF_DIR", env.path("conf"))
        .env("PRO_DATA_DIR", env.path("work"))
        .env("PRO_LSF_LOGDIR", env.path("log"))
        .env("PROVIDER_NAME", "ohf")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let log = std::fs::read_to_string(env.path("log/ohf.log")).expect("logs go to the LSF log dir");
    assert!(log.contains("getAvailableTemplates"));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("INFO"), "no log line on stdout");
}

#[test]
fn script_processes_running_at_once_lose_no_update() {
    let env = HfEnv::new(FAST_SIM);
    let spawn = |op: &str, input: Value, n: usize| {
        let file = env.path(&format!("in-{op}-{n}.json"));
        std::fs::write(&file, input.to_string()).unwrap();
        env.script_cmd(op).arg("-f").arg(file).stdout(std::process::Stdio::piped()).spawn().unwrap()
    };
    let children: Vec<_> = (0..6)
        .map(|n| spawn("requestMachines", json!({"template": {"templateId": "Spot-Compute", "machineCount": 2}}), n))
        .collect();
    let ids: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
            let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
            doc["requestId"].as_str().unwrap().to_owned()
        })
        .collect();
    // Several pollers at once, each advancing every request.
    let all: Vec<Value> = ids.iter().map(|id| json!({"requestId": id})).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pollers: Vec<_> = (0..3).map(|n| spawn("getRequestStatus", json!({"requests": all}), n)).collect();
        let mut complete = true;
        for p in pollers {
            let out = p.wait_with_output().unwrap();
            assert!(out.status.success());
            let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
            complete &= doc["requests"].as_array().unwrap().iter().all(|r| r["status"] == "complete");
        }
        if complete {
            break;
        }
        assert!(Instant::now() < deadline, "requests did not complete");
    }
    let stored = env.stored_requests();
    assert_eq!(stored.len(), 6);
    let mut machines: Vec<String> = Vec::new();
    for r in &stored {
        assert_eq!(r["machines"].as_array().unwrap().len(), 2, "exactly its count: {r}");
        machines.extend(r["machines"].as_array().unwrap().iter().map(|m| m["machineId"].as_str().unwrap().to_owned()));
    }
    let total = machines.len();
    machines.sort();
    machines.dedup();
    assert_eq!(machines.len(), total, "no machine in two requests");
    assert_eq!(total, 12);
}

#[test]
fn operator_commands_show_tables_and_json() {
    let env = HfEnv::new(FAST_SIM);
    let out = env
        .ohf()
        .args(["request", "create", "-t", "OnDemand-Minimal", "-n", "2", "--tag", "project=x", "--wait"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("COMPLETED") && text.contains("2/2"), "{text}");
    let stored = env.stored_requests();
    let id = stored[0]["requestId"].as_str().unwrap();
    assert_eq!(stored[0]["status"], "COMPLETED");
    assert_eq!(stored[0]["tags"]["project"], "x");
    let out = env.ohf().args(["request", "history", id, "-o", "json"]).output().unwrap();
    let events: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(events[0]["event"]["type"], "created");
    assert!(events.iter().any(|e| e["event"]["type"] == "state_changed" && e["event"]["to"] == "COMPLETED"));
    let out = env.ohf().args(["request", "create", "-t", "Nope", "-n", "1", "-o", "json"]).output().unwrap();
    assert!(!out.status.success());
    let err: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(err["error"]["code"], "TEMPLATE_NOT_FOUND");
    assert_eq!(err["error"]["details"]["availableTemplates"], json!(["OnDemand-Minimal", "Spot-Compute"]));
    let out = env.ohf().args(["templates", "validate"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 templates valid"));
}

#[test]
fn environment_variables_override_the_config_file() {
    let env = HfEnv::new(FAST_SIM);
    let elsewhere = env.path("elsewhere/state.db");
    let run = |count: &str| {
        env.ohf()
            .env("OHF_REQUEST__MAX_MACHINES_PER_REQUEST", "2")
            .env("OHF_DATABASE_URL", format!("sqlite:{}", elsewhere.display()))
            .args(["request", "create", "-t", "OnDemand-Minimal", "-n", count, "-o", "json"])
            .output()
            .unwrap()
    };
    let refused = run("3");
    assert!(!refused.status.success());
    let err: Value = serde_json::from_slice(&refused.stdout).unwrap();
    assert!(err["error"]["message"].as_str().unwrap().contains("cannot exceed 2"), "{err}");
    assert!(run("2").status.success());
    assert!(elsewhere.exists(), "OHF_DATABASE_URL chose the store");
    let out = env.ohf().env("OHF_REQUEST__DEFAULT_TIMEOUT_SECS", "5").args(["request", "list"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("default_timeout_secs"), "a bad value names its key");
}

#[test]
fn the_shipped_sample_configuration_loads() {
    let conf = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/hostfactory/conf");
    let work = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ohf"))
        .arg("--confdir")
        .arg(&conf)
        .arg("--workdir")
        .arg(work.path())
        .args(["templates", "list", "-o", "json"])
        .env_remove("OHF_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.len(), 2);
}

/// The state ohf keeps (store, log, simulated cloud) is readable by its owner alone.
#[test]
fn state_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let env = HfEnv::new(crate::support::FAST_SIM);
    let id = request(&env, "OnDemand-Minimal", 1);
    wait_status(&env, &id, "complete");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let mut seen = 0;
    for dir in ["work", "log"] {
        for entry in std::fs::read_dir(env.path(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                assert_eq!(mode(&path), 0o600, "{} is private", path.display());
                seen += 1;
            }
        }
    }
    assert!(env.path("work/ohf.db").exists() && env.path("log/ohf.log").exists());
    assert!(seen >= 3, "the store, its WAL, the log and the sim state were looked at");
    // A work dir ohf makes itself is private too.
    let fresh = env.path("new-state/deeper");
    let out = env.ohf().arg("--workdir").arg(&fresh).args(["templates", "list", "-o", "json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(mode(&fresh.join("ohf.db")), 0o600);
    assert_eq!(mode(&fresh), 0o700);
}

/// A cloud that never answers: requestMachines still prints its request id promptly (by its
/// answer deadline) and the later polls go on with that one launch, never a second.
#[test]
fn request_machines_answers_while_the_cloud_does_not() {
    let env = HfEnv::new(
        "[request]\nanswer_within_ms = 500\n[[providers]]\nname = \"sim-1\"\ntype = \"sim\"\nlaunch_latency_ms = 0\napi_latency_ms = 600000\n",
    );
    let mut child = env
        .script_cmd("requestMachines")
        .arg("-f")
        .arg({
            let f = env.path("ask.json");
            std::fs::write(&f, json!({"template": {"templateId": "OnDemand-Minimal", "machineCount": 2}}).to_string())
                .unwrap();
            f
        })
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A guard against a hang, far above the answer deadline: not a timing target.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "requestMachines did not answer while the cloud hung");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(status.success(), "{out}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    let id = doc["requestId"].as_str().unwrap().to_owned();
    // The cloud recovers; the next polls finish the one launch.
    std::fs::write(
        env.path("conf/ohf.toml"),
        "[[providers]]\nname = \"sim-1\"\ntype = \"sim\"\nlaunch_latency_ms = 0\n",
    )
    .unwrap();
    let done = wait_status(&env, &id, "complete");
    assert_eq!(done["machines"].as_array().unwrap().len(), 2, "{done}");
    let listed = env.stored_requests();
    let mine = listed.iter().find(|r| r["requestId"] == id).unwrap();
    assert_eq!(mine["machines"].as_array().unwrap().len(), 2, "no second launch: {mine}");
}

#[test]
fn completions_and_the_manual_come_from_the_command_line() {
    let env = HfEnv::new(FAST_SIM);
    for (shell, marker) in [("bash", "complete -F"), ("zsh", "#compdef ohf"), ("fish", "complete -c ohf")] {
        let out = env.ohf().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}: {}", String::from_utf8_lossy(&out.stderr));
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(marker), "{shell}: {script:.200}");
        for sub in ["serve", "quickstart", "requestMachines", "sweep"] {
            assert!(script.contains(sub), "{shell} completes {sub}");
        }
    }
    let out = env.ohf().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "an unknown shell is a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("bash"), "it names the shells there are");

    let out = env.ohf().arg("man").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // roff writes a hyphen as `\-`.
    let page = String::from_utf8_lossy(&out.stdout).replace("\\-", "-");
    assert!(page.contains(".TH ohf"), "roff: {page:.200}");
    for section in ["OHF SERVE", "OHF SWEEP", "--dry-run", "--client-timeout"] {
        assert!(page.contains(section), "the manual has {section}");
    }
}

#[test]
fn config_show_names_each_value_and_where_it_came_from() {
    let toml = format!(
        "cluster = \"hpc\"\n[serve]\ntokens = [{{name = \"ops\", token = \"s3cret-token-value-123\", role = \"operator\"}}]\n{FAST_SIM}"
    );
    let env = HfEnv::new(&toml);
    let url = "postgres://ohf:hunter2@db.example:5432/ohf";
    let out = env
        .ohf()
        .env("OHF_LOG_LEVEL", "debug")
        .args(["--database-url", url, "config", "show", "-o", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!text.contains("hunter2") && !text.contains("s3cret-token-value-123"), "secrets are masked: {text}");
    let list: Vec<Value> = serde_json::from_str(&text).unwrap();
    let find = |key: &str| list.iter().find(|e| e["key"] == key).unwrap_or_else(|| panic!("{key} in {text}")).clone();
    assert_eq!(find("cluster")["value"], "hpc");
    assert!(find("cluster")["source"].as_str().unwrap().starts_with("file "), "{}", find("cluster"));
    assert_eq!(
        (find("log_level")["value"].clone(), find("log_level")["source"].clone()),
        (json!("debug"), json!("environment OHF_LOG_LEVEL"))
    );
    assert_eq!(find("serve.interval_ms")["source"], "default");
    assert_eq!(find("database_url")["source"], "flag --database-url");
    assert_eq!(find("database_url")["value"], "postgres://ohf:***@db.example:5432/ohf");
    assert_eq!(find("confdir")["source"], "environment HF_PROVIDER_CONFDIR");
    assert_eq!(find("serve.tokens")["value"][0]["token"], "***");
    assert_eq!(find("serve.tokens")["value"][0]["name"], "ops");

    let out = env.ohf().args(["config", "show"]).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && table.contains("SOURCE") && table.contains("serve.batch"), "{table}");

    std::fs::write(env.path("conf/ohf.toml"), "[serve]\nbatch = 0\n").unwrap();
    let out = env.ohf().args(["config", "show"]).output().unwrap();
    assert!(!out.status.success(), "a bad configuration is refused, not shown");
    assert!(String::from_utf8_lossy(&out.stderr).contains("serve.batch"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `ohf` with `args` and `-o json` on `env`: its document.
fn ohf_json(env: &HfEnv, args: &[&str]) -> Value {
    let out = env.ohf().args(args).args(["-o", "json"]).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_reports_count_requests_failures_backlog_holdings_and_cost() {
    // sim-2 has no capacity when it launches: a request sent there fails at its one launch.
    let env = HfEnv::new(
        "[request]\nmax_launch_attempts = 1\n[[providers]]\nname = \"sim-1\"\ntype = \"sim\"\nlaunch_latency_ms = 0\n\
         [[providers]]\nname = \"sim-2\"\ntype = \"sim\"\ncapacity_error_rate = 1.0\n",
    );
    std::fs::write(env.path("conf/prices.json"), r#"{"onDemand": {"m5.large": 1.0}}"#).unwrap();
    for (provider, n) in [("sim-1", "2"), ("sim-1", "3"), ("sim-2", "1")] {
        let out = env
            .ohf()
            .args(["request", "create", "-t", "OnDemand-Minimal", "-n", n, "--tag", "team=hpc", "--provider", provider])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // Polls move them on.
    env.stored_requests();
    let out = env.ohf().args(["request", "list", "-o", "json"]).output().unwrap();
    assert!(out.status.success());

    let report = ohf_json(&env, &["report", "--period", "1h"]);
    assert_eq!(report["total"], 3, "{report}");
    assert_eq!(report["byState"]["COMPLETED"], 2, "{report}");
    assert_eq!(report["byState"]["FAILED"], 1, "{report}");
    assert!((report["successRate"].as_f64().unwrap() - 66.66).abs() < 0.1, "{report}");
    assert_eq!(report["timeToComplete"]["completed"], 2);
    assert_eq!(report["peakHours"].as_array().unwrap().len(), 1);

    let failures = ohf_json(&env, &["failures", "--period", "24h"]);
    let f = &failures["failures"][0];
    assert_eq!((f["category"].as_str(), f["count"].as_u64()), (Some("FAILED"), Some(1)), "{failures}");
    assert_eq!(f["code"], "InsufficientInstanceCapacity", "{failures}");

    let usage = ohf_json(&env, &["usage", "--detailed"]);
    let held = &usage["held"][0];
    assert_eq!((held["instanceType"].as_str(), held["machines"].as_u64()), (Some("m5.large"), Some(5)), "{usage}");
    assert_eq!(held["hourlyUsd"], 5.0, "prices.json's price, five machines: {usage}");
    assert!(usage["cost"]["perTag"]["team=hpc"].as_f64().is_some(), "{usage}");

    let capacity = ohf_json(&env, &["capacity", "OnDemand-Minimal"]);
    assert_eq!(capacity["template"]["availableNumber"], 5, "{capacity}");
    assert_eq!(capacity["held"][0]["machines"], 5);
    assert_eq!(capacity["venues"], serde_json::json!([]), "no venues configured, no limits they know: {capacity}");

    let queue = ohf_json(&env, &["queue"]);
    assert_eq!(queue["backlog"]["pending"], 0, "{queue}");

    // The tables say the same for people.
    let out = env.ohf().args(["report", "--period", "1h"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("COMPLETED 2") && text.contains("FAILED 1"), "{text}");
    let bad = env.ohf().args(["report", "--period", "forever"]).output().unwrap();
    assert!(!bad.status.success());
}

#[test]
fn a_price_table_that_does_not_read_is_refused_by_name() {
    let env = HfEnv::new("[[providers]]\nname = \"sim-1\"\ntype = \"sim\"\n");
    std::fs::write(env.path("conf/prices.json"), r#"{"onDemand": {"m5.large": -1}}"#).unwrap();
    let out = env.ohf().args(["report"]).output().unwrap();
    assert!(!out.status.success());
    let shown = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("prices.json") && shown.contains("m5.large"), "{shown}");
}

#[test]
fn doctor_checks_the_installation_and_names_what_is_wrong() {
    let env = HfEnv::new("[[providers]]\nname = \"sim-1\"\ntype = \"sim\"\n");
    let out = env.ohf().args(["doctor"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for line in ["configuration", "store", "provider sim-1", "template OnDemand-Minimal on sim-1"] {
        assert!(text.lines().any(|l| l.contains(line) && l.contains(" ok ")), "{line}: {text}");
    }
    let doc = ohf_json(&env, &["doctor"]);
    assert_eq!(doc["ok"], true, "{doc}");

    // A configuration that does not load is the finding, named.
    std::fs::write(env.path("conf/ohf.toml"), "[serve]\nnot_a_setting = 1\n").unwrap();
    let out = env.ohf().args(["doctor", "-o", "json"]).output().unwrap();
    assert!(!out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (doc["checks"][0]["check"].as_str(), doc["checks"][0]["ok"].as_bool()),
        (Some("configuration"), Some(false)),
        "{doc}"
    );
    assert!(doc["checks"][0]["detail"].as_str().unwrap().contains("not_a_setting"), "{doc}");
}

#[test]
fn a_refused_request_is_kept_as_rejected_for_history_and_figures() {
    let env = HfEnv::new("[[providers]]\nname = \"sim-1\"\ntype = \"sim\"\n");
    // OnDemand-Minimal allows 10 machines: 11 are refused.
    let out =
        env.ohf().args(["request", "create", "-t", "OnDemand-Minimal", "-n", "11", "-o", "json"]).output().unwrap();
    assert!(!out.status.success());
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["error"]["code"], "INSUFFICIENT_CAPACITY", "the refusal is the answer: {answer}");

    assert!(env.stored_requests().is_empty(), "listings show requests, not refusals");
    let listed = ohf_json(&env, &["request", "list", "--state", "REJECTED"]);
    let rejected = listed.as_array().unwrap();
    assert_eq!(rejected.len(), 1, "{listed}");
    let r = &rejected[0];
    assert_eq!(
        (r["status"].as_str(), r["templateId"].as_str(), r["machineCount"].as_u64()),
        (Some("REJECTED"), Some("OnDemand-Minimal"), Some(11))
    );
    assert!(r["errorMessage"].as_str().unwrap().starts_with("INSUFFICIENT_CAPACITY:"), "{r}");
    assert_eq!(r["machines"].as_array().unwrap().len(), 0);

    let report = ohf_json(&env, &["report"]);
    assert_eq!(report["byState"]["REJECTED"], 1, "{report}");
    assert_eq!(report["failures"][0]["category"], "REJECTED", "{report}");
    assert_eq!(report["failures"][0]["code"], "INSUFFICIENT_CAPACITY", "{report}");
    let id = r["requestId"].as_str().unwrap();
    let history = ohf_json(&env, &["request", "history", id]);
    let created = &history.as_array().unwrap()[0]["event"];
    assert!(created["creation"]["refusal"].as_str().unwrap().starts_with("INSUFFICIENT_CAPACITY"), "{history}");
}

#[test]
fn a_refused_return_is_kept_as_rejected_and_changes_nothing() {
    let env = HfEnv::new(FAST_SIM);
    let id = request(&env, "OnDemand-Minimal", 1);
    let machine = wait_status(&env, &id, "complete")["machines"][0]["machineId"].as_str().unwrap().to_owned();
    // A drain as long as the return's timeout is refused.
    let out = env.ohf().args(["return", &machine, "--drain-timeout", "999999", "-o", "json"]).output().unwrap();
    assert!(!out.status.success());
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["error"]["code"], "VALIDATION_ERROR", "{answer}");

    let rejected = ohf_json(&env, &["request", "list", "--state", "REJECTED"]);
    let rejected = rejected.as_array().unwrap();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    let r = &rejected[0];
    assert!(r["requestId"].as_str().unwrap().starts_with("ret-"), "kept as a return: {r}");
    assert_eq!(r["machineCount"], 1, "{r}");
    assert!(r["errorMessage"].as_str().unwrap().starts_with("VALIDATION_ERROR:"), "{r}");
    // The machine is still held, and Host Factory's list of returns has nothing new.
    assert_eq!(status(&env, &id)["machines"][0]["status"], "running");
    let (_, returns) = env.script("getReturnRequests", &json!({"machines": []}));
    assert_eq!(returns["requests"], json!([]), "{returns}");
}

#[test]
fn a_template_of_instance_requirements_is_offered_with_the_smallest_match_and_launches_matching_types() {
    let env = HfEnv::new(FAST_SIM);
    let templates = json!({"templates": [{
        "templateId": "ByFigures", "maxNumber": 10, "imageId": "ami-1", "providerApi": "EC2Fleet",
        "instanceRequirements": {"vCpuCount": {"min": 4, "max": 8}, "memoryMiB": {"min": 16384},
                                 "allowedInstanceTypes": ["m5.*", "c5.*", "r5.*"]}
    }]});
    std::fs::write(env.path("conf/awsprov_templates.json"), templates.to_string()).unwrap();
    let (out, doc) = env.script("getAvailableTemplates", &json!({}));
    assert!(out.status.success(), "{doc}");
    let t = &doc["templates"][0];
    assert_eq!(t["templateId"], "ByFigures");
    // m5.xlarge: 4 vCPUs on 2 cores, 16 GiB — the smallest type the requirements admit.
    assert_eq!(t["attributes"]["ncpus"], json!(["Numeric", "2"]), "{t}");
    assert_eq!(t["attributes"]["nram"], json!(["Numeric", "16384"]), "{t}");
    let (out, doc) =
        env.script("requestMachines", &json!({"template": {"templateId": "ByFigures", "machineCount": 2}}));
    assert!(out.status.success(), "{doc}");
    let id = doc["requestId"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let machines = loop {
        let (_, status) = env.script("getRequestStatus", &json!({"requests": [{"requestId": id}]}));
        if status["requests"][0]["status"] == "complete" {
            break status["requests"][0]["machines"].as_array().unwrap().clone();
        }
        assert!(std::time::Instant::now() < deadline, "{status}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(machines.len(), 2);
    let stored = env.stored_requests();
    for m in stored[0]["machines"].as_array().unwrap() {
        let kind = m["instanceType"].as_str().unwrap();
        assert!(["m5.", "c5.", "r5."].iter().any(|f| kind.starts_with(f)), "{kind} meets the requirements");
    }
}

#[test]
fn zones_a_template_cannot_reach_are_refused_at_creation_and_kept_as_rejected() {
    let env = HfEnv::new(FAST_SIM);
    let out = env
        .ohf()
        .args(["request", "create", "-t", "OnDemand-Minimal", "-n", "1", "--zones", "mars-1a", "-o", "json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["error"]["code"], "VALIDATION_ERROR", "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("placement.availabilityZones") && message.contains("mars-1a"), "{message}");
    assert!(env.stored_requests().is_empty(), "nothing was launched or held");
    let rejected = ohf_json(&env, &["request", "list", "--state", "REJECTED"]);
    assert_eq!(rejected.as_array().unwrap().len(), 1, "{rejected}");

    // A zone the cloud has is accepted, and the machine is placed there.
    let created =
        ohf_json(&env, &["request", "create", "-t", "OnDemand-Minimal", "-n", "1", "--zones", "sim-east-1b", "--wait"]);
    let id = created["requestId"].as_str().unwrap();
    let done = wait_status(&env, id, "complete");
    assert_eq!(done["machines"].as_array().unwrap().len(), 1, "{done}");
    let shown = &ohf_json(&env, &["request", "status", id])[0];
    assert_eq!(shown["machines"][0]["availabilityZone"], "sim-east-1b", "{shown}");
}

#[test]
fn a_requests_own_spot_price_limit_applies_to_its_launches() {
    // c5.xlarge costs $0.05 an hour on the simulated spot market.
    let env = HfEnv::new(
        "[request]\nmax_launch_attempts = 1\n[[providers]]\nname = \"sim-1\"\ntype = \"sim\"\nlaunch_latency_ms = 0\n",
    );
    let cheap =
        ohf_json(&env, &["request", "create", "-t", "Spot-Compute", "-n", "1", "--meta", "max-spot-price=0.01"]);
    let failed = wait_status(&env, cheap["requestId"].as_str().unwrap(), "complete_with_error");
    let shown = &ohf_json(&env, &["request", "status", cheap["requestId"].as_str().unwrap()])[0];
    assert!(shown["errorMessage"].as_str().unwrap().contains("SpotMaxPriceTooLow"), "{shown} {failed}");

    let enough =
        ohf_json(&env, &["request", "create", "-t", "Spot-Compute", "-n", "1", "--meta", "max-spot-price=0.10"]);
    let done = wait_status(&env, enough["requestId"].as_str().unwrap(), "complete");
    assert_eq!(done["machines"].as_array().unwrap().len(), 1, "{done}");

    // Not a price, or a limit on a template that launches no spot machines: refused, naming the field.
    for (template, price) in [("Spot-Compute", "cheap"), ("OnDemand-Minimal", "0.10")] {
        let out = env
            .ohf()
            .args([
                "request",
                "create",
                "-t",
                template,
                "-n",
                "1",
                "--meta",
                &format!("max-spot-price={price}"),
                "-o",
                "json",
            ])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(answer["error"]["code"], "VALIDATION_ERROR", "{answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains("metadata.max-spot-price"), "{answer}");
    }
}

#[test]
fn without_a_daemon_each_host_factory_call_sends_its_alerts_under_one_shared_rate_limit() {
    let hook = crate::support::Receiver::start(vec![200]);
    let env = HfEnv::new(&format!(
        "[request]\nmax_launch_attempts = 1\n\
         [alerts]\nwindow_secs = 15\nmax_per_window = 2\n\
         [alerts.sinks.hook]\ntype = \"webhook\"\nurl = \"{}\"\n\
         [alerts.rules.provider_unhealthy]\nenabled = false\n\
         [[providers]]\nname = \"sim-1\"\ntype = \"sim\"\ncapacity_error_rate = 1.0\n",
        hook.url
    ));
    // Five requests fail, each made and polled by its own short-lived process.
    let began = std::time::Instant::now();
    for _ in 0..5 {
        let (out, doc) =
            env.script("requestMachines", &json!({"template": {"templateId": "OnDemand-Minimal", "machineCount": 1}}));
        assert!(out.status.success(), "{doc}");
        let id = doc["requestId"].as_str().unwrap().to_owned();
        wait_status(&env, &id, "complete_with_error");
    }
    // Each process delivered before it exited; together they kept to the window's share.
    let hits = hook.hits();
    assert_eq!(hits.len(), 2, "{:?}", hits.iter().map(|h| h.json()).collect::<Vec<_>>());
    assert!(hits.iter().all(|h| h.json()["alert"]["rule"] == "request_failed"));

    // Once the window has passed, the next process to end sends the digest of the three held back.
    assert!(began.elapsed() < Duration::from_secs(15), "the five fit in one window");
    while began.elapsed() < Duration::from_secs(16) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let (out, _) = env.script("getAvailableTemplates", &json!({}));
    assert!(out.status.success());
    let hits = hook.wait_for(3, Duration::from_secs(5));
    let digest = hits.get(2).map(|h| h.json()).unwrap_or_default();
    assert_eq!(digest["alert"]["suppressed"], 3, "{digest}");
    let (out, _) = env.script("getAvailableTemplates", &json!({}));
    assert!(out.status.success());
    assert_eq!(hook.hits().len(), 3, "a digest is sent once");
}

#[test]
fn reports_price_spot_machines_at_the_providers_current_spot_price_unless_the_table_says() {
    // The sim's spot market: c5.xlarge at $0.02 an hour (on demand it lists at $0.17).
    let env = HfEnv::new(
        "[[providers]]\nname = \"sim-1\"\ntype = \"sim\"\nlaunch_latency_ms = 0\nspot_prices = { \"c5.xlarge\" = 0.02 }\n",
    );
    let id = request(&env, "Spot-Compute", 3);
    wait_status(&env, &id, "complete");
    let usage = ohf_json(&env, &["usage", "--detailed"]);
    let held = usage["held"].as_array().unwrap().iter().find(|h| h["instanceType"] == "c5.xlarge").cloned();
    let hourly = held.as_ref().and_then(|h| h["hourlyUsd"].as_f64()).unwrap_or_default();
    assert!((hourly - 0.06).abs() < 1e-9, "three machines at the market's $0.02: {usage}");

    // A spot price in prices.json wins over the market's.
    std::fs::write(env.path("conf/prices.json"), r#"{"spot": {"c5.xlarge": 0.05}}"#).unwrap();
    let usage = ohf_json(&env, &["usage", "--detailed"]);
    let held = usage["held"].as_array().unwrap().iter().find(|h| h["instanceType"] == "c5.xlarge").cloned();
    let hourly = held.as_ref().and_then(|h| h["hourlyUsd"].as_f64()).unwrap_or_default();
    assert!((hourly - 0.15).abs() < 1e-9, "the table's price: {usage}");
}
