//! Routing requests end to end on the sample configuration (`deploy/placement`): the seed's
//! REST resource on `ohf serve`, the command line, and Host Factory's requestMachines placed
//! by the same engine.

use std::io::{Read, Write};
use std::path::Path;

use serde_json::{Value, json};

use crate::support::{Daemon, HfEnv};

/// A Host Factory environment with the sample placement configuration and its templates.
fn sample() -> HfEnv {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/placement");
    let config = std::fs::read_to_string(deploy.join("ohf.toml")).unwrap();
    let env = HfEnv::new(&format!("advance_on_poll = false\n{config}"));
    std::fs::copy(deploy.join("awsprov_templates.json"), env.path("conf/awsprov_templates.json")).unwrap();
    env
}

/// One HTTP/1.1 call: (status, headers as text, JSON body or null).
fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String, Value) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer.split_whitespace().nth(1).unwrap().parse().unwrap();
    let (head, rest) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (status, head.to_owned(), serde_json::from_str(rest).unwrap_or(Value::Null))
}

fn venue_of(r: &Value, i: usize) -> String {
    r["status_details"]["workloads"][i]["venue"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn the_seeds_examples_run_on_the_sample_configuration() {
    let env = sample();
    let daemon = Daemon::start(&env);
    let port = daemon.port;
    // Example: routing a simple immediate placement.
    let (status, head, simple) = http(
        port,
        "POST",
        "/routing-requests/",
        r#"{"workloads": [{"name": "now-vm", "catalog_spec": "lin-small-2gb"}]}"#,
    );
    assert_eq!(status, 201, "{simple}");
    let id = simple["id"].as_str().unwrap().to_owned();
    assert!(head.to_ascii_lowercase().contains(&format!("location: /routing-requests/{id}")), "{head}");
    assert_eq!(simple["status"], "PLACED");
    assert_eq!(simple["href"], format!("/routing-requests/{id}"));
    assert_eq!(simple["requester"], "anonymous");
    assert_eq!(simple["workloads"][0]["name"], "now-vm");
    assert!(simple["control_environment"].is_string() && simple["infrastructure_group"].is_string(), "{simple}");
    // A simple booking: four workloads of a profile, as one unit. Its date (2016) has passed,
    // so it is due today.
    let booking = json!({"expected_date": 1458518806000_i64, "workloads": (1..=4).map(|i| json!({
        "name": format!("group-vm-0{i}"), "catalog_spec": "lin-medium-4gb", "workload_profile": "Medium_Utilization"
    })).collect::<Vec<_>>()});
    let (status, _, booked) = http(port, "POST", "/routing-requests", &booking.to_string());
    assert_eq!((status, booked["status"].as_str()), (201, Some("PLACED")), "{booked}");
    assert_eq!(booked["workloads"].as_array().unwrap().len(), 4);
    // Selecting among environments: Boston anywhere, London's Prod and Dev.
    let scoped = r#"{"scopes": [{"control_environment": "Boston"}, {"control_environment": "London", "infrastructure_groups": ["Prod", "Dev"]}],
        "workloads": [{"name": "group-vm", "catalog_spec": "lin-medium-4gb", "workload_profile": "Memory_Intensive"}]}"#;
    let (status, _, r) = http(port, "POST", "/routing-requests", scoped);
    assert_eq!((status, r["status"].as_str()), (201, Some("PLACED")), "{r}");
    // A sensor placement strategy, and sensor lockout.
    let strategy = r#"{"scopes": [{"control_environment": "Boston"}], "workloads": [{"name": "group-vm", "catalog_spec": "lin-medium-4gb", "workload_profile": "Memory_Intensive"}],
        "sensor_placement_strategy": ["datastore-fill", "ipaddresspools-balance"]}"#;
    let (status, _, r) = http(port, "POST", "/routing-requests", strategy);
    assert_eq!((status, r["control_environment"].as_str()), (201, Some("Boston")), "{r}");
    let lockout = r#"{"scopes": [{"control_environment": "Boston"}], "workloads": [{"name": "group-vm", "catalog_spec": "lin-medium-4gb"}],
        "required_sensor_types": ["datastore", "ipaddresspools"]}"#;
    let (status, _, r) = http(port, "POST", "/routing-requests", lockout);
    assert_eq!((status, r["status"].as_str()), (201, Some("PLACED")), "{r}");

    // The collection, one request, its workloads with details.
    let (status, _, all) = http(port, "GET", "/routing-requests", "");
    assert_eq!(status, 200);
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id.as_str() && r["href"] == format!("/routing-requests/{id}"))
    );
    let (_, _, one) = http(port, "GET", &format!("/routing-requests/{id}"), "");
    assert_eq!(one["id"], id.as_str());
    let (_, _, brief) = http(port, "GET", &format!("/routing-requests/{id}/workloads"), "");
    assert_eq!(brief[0]["name"], "now-vm");
    assert!(brief[0]["placement"].is_null(), "details only when asked");
    let (_, _, detailed) = http(port, "GET", &format!("/routing-requests/{id}/workloads?details=true"), "");
    let placement = &detailed[0]["placement"];
    assert_eq!(placement["venue"], venue_of(&simple, 0));
    assert!(placement["zone"].is_string() && placement["subnet"].is_string(), "{detailed}");
    let href = detailed[0]["href"].as_str().unwrap();
    let (status, _, w) = http(port, "GET", href, "");
    assert_eq!((status, w["catalog_spec"].as_str()), (200, Some("lin-small-2gb")));

    // Unrouted, it is gone.
    let (status, _, _) = http(port, "DELETE", &format!("/routing-requests/{id}"), "");
    assert_eq!(status, 204);
    let (status, _, gone) = http(port, "GET", &format!("/routing-requests/{id}"), "");
    assert_eq!((status, gone["error"]["code"].as_str()), (404, Some("REQUEST_NOT_FOUND")));
    assert!(daemon.stop().success());
}

#[test]
fn bookings_force_unrouting_and_bad_input_over_http() {
    let env = sample();
    let daemon = Daemon::start(&env);
    let port = daemon.port;
    let tomorrow =
        (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64) + 86_400_000;
    let body = json!({"expected_date": tomorrow.to_string(), "requester": "bob",
        "scopes": [{"control_environment": "London", "infrastructure_groups": ["Dev"]}],
        "workloads": [{"name": "later", "catalog_spec": "lin-small-2gb", "count": 4}]});
    let (status, _, booked) = http(port, "POST", "/routing-requests", &body.to_string());
    assert_eq!((status, booked["status"].as_str()), (201, Some("BOOKED")), "{booked}");
    assert_eq!(booked["requester"], "bob");
    assert_eq!(venue_of(&booked, 0), "london-dev-c");
    // london-dev-c has 16 vCPUs; 8 are booked for tomorrow, so 5 machines more do not fit today.
    let dev = json!({"scopes": [{"control_environment": "London", "infrastructure_groups": ["Dev"]}],
        "workloads": [{"name": "now", "catalog_spec": "lin-small-2gb", "count": 5}]});
    let (_, _, refused) = http(port, "POST", "/routing-requests", &dev.to_string());
    assert_eq!(refused["status"], "REJECTED", "{refused}");
    assert!(refused["status_details"]["workloads"][0]["status_reason"].as_str().unwrap().contains("cpu"), "{refused}");
    let (_, _, capacity) = http(port, "GET", "/available-capacity?catalog_spec=lin-small-2gb", "");
    let dev_c = capacity.as_array().unwrap().iter().find(|c| c["venue"] == "london-dev-c").unwrap().clone();
    assert_eq!(dev_c["available_today"], 4, "{capacity}");

    // Forced into the group over capacity.
    let (status, _, forced) = http(port, "POST", "/routing-requests?force=true", &dev.to_string());
    assert_eq!((status, forced["status"].as_str()), (201, Some("PLACED")), "{forced}");
    assert_eq!(forced["status_reason"], "Force to place");
    let (_, _, capacity) = http(port, "GET", "/available-capacity?catalog_spec=lin-small-2gb", "");
    let dev_c = capacity.as_array().unwrap().iter().find(|c| c["venue"] == "london-dev-c").unwrap().clone();
    assert_eq!(dev_c["available_today"], 0, "the forced placement is counted: {capacity}");

    // A workload of another request is refused; its own is unrouted, and the last one takes
    // the request with it.
    let booked_id = booked["id"].as_str().unwrap();
    let forced_workload = forced["workloads"][0]["id"].as_str().unwrap();
    let (status, _, e) = http(port, "DELETE", &format!("/routing-requests/{booked_id}/{forced_workload}"), "");
    assert_eq!((status, e["error"]["code"].as_str()), (400, Some("VALIDATION_ERROR")), "{e}");
    let own = booked["workloads"][0]["id"].as_str().unwrap();
    let (status, _, _) =
        http(port, "DELETE", &format!("/routing-requests/{booked_id}/{own}?record_placement=true"), "");
    assert_eq!(status, 204);
    assert_eq!(http(port, "GET", &format!("/routing-requests/{booked_id}"), "").0, 404);

    // Bad input of every kind: the field is named, nothing is stored.
    let before = http(port, "GET", "/routing-requests", "").2.as_array().unwrap().len();
    for (path, body, field) in [
        ("/routing-requests", "{not json", "body"),
        (
            "/routing-requests",
            r#"{"workloads": [{"name": "x", "catalog_spec": "lin-small-2gb"}], "colour": 1}"#,
            "colour",
        ),
        ("/routing-requests", r#"{"workloads": []}"#, "workloads"),
        (
            "/routing-requests",
            r#"{"requester": "__Unknown__", "workloads": [{"name": "x", "catalog_spec": "lin-small-2gb"}]}"#,
            "requester",
        ),
        (
            "/routing-requests?mode=fastest",
            r#"{"workloads": [{"name": "x", "catalog_spec": "lin-small-2gb"}]}"#,
            "mode",
        ),
        (
            "/routing-requests?force=maybe",
            r#"{"workloads": [{"name": "x", "catalog_spec": "lin-small-2gb"}]}"#,
            "force",
        ),
        ("/routing-requests?bogus=1", r#"{"workloads": [{"name": "x", "catalog_spec": "lin-small-2gb"}]}"#, "bogus"),
        (
            "/routing-requests",
            r#"{"expected_date": "soon", "workloads": [{"name": "x", "catalog_spec": "lin-small-2gb"}]}"#,
            "body",
        ),
    ] {
        let (status, _, e) = http(port, "POST", path, body);
        assert_eq!((status, e["error"]["code"].as_str()), (400, Some("VALIDATION_ERROR")), "{path} {body}: {e}");
        assert_eq!(e["error"]["details"]["field"], field, "{e}");
    }
    let (status, _, e) =
        http(port, "POST", "/routing-requests", r#"{"workloads": [{"name": "x", "catalog_spec": "nope"}]}"#);
    assert_eq!((status, e["error"]["code"].as_str()), (404, Some("TEMPLATE_NOT_FOUND")));
    assert_eq!(http(port, "GET", "/routing-requests", "").2.as_array().unwrap().len(), before);
    assert!(daemon.stop().success());
}

#[test]
fn the_command_line_routes_lists_and_unroutes() {
    let env = sample();
    let run = |args: &[&str]| {
        let out = env.ohf().args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, out, err) = run(&[
        "route",
        "create",
        "-w",
        "web=lin-small-2gb:2",
        "-w",
        "db=lin-medium-4gb",
        "--scope",
        "London:Prod",
        "-o",
        "json",
    ]);
    assert!(ok, "{out} {err}");
    let made: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(made["status"], "PLACED");
    assert_eq!(made["control_environment"], "London");
    assert!(made["requester"].as_str().is_some_and(|r| r != "anonymous"), "the OS user asks: {made}");
    let id = made["id"].as_str().unwrap().to_owned();
    let (ok, table, _) = run(&["route", "get", &id]);
    assert!(ok && table.contains("PLACED") && table.contains("web") && table.contains("london-prod"), "{table}");
    let (ok, list, _) = run(&["route", "list", "-o", "json"]);
    assert!(ok);
    assert_eq!(serde_json::from_str::<Value>(&list).unwrap()[0]["id"], id.as_str());
    let (ok, capacity, _) = run(&["route", "capacity", "--template", "lin-small-2gb", "--date", "2099-01-01"]);
    assert!(ok && capacity.contains("boston-prod-a") && capacity.contains("ON DATE"), "{capacity}");
    let (ok, _, err) = run(&["route", "capacity", "--date", "2099-02-30"]);
    assert!(!ok && err.contains("YYYY-MM-DD"), "{err}");
    // The template's own capacity view shows what each venue fits beside maxNumber and held.
    let (ok, table, _) = run(&["capacity", "lin-small-2gb"]);
    assert!(ok && table.contains("maxNumber") && table.contains("boston-prod-a"), "{table}");
    let (ok, doc, _) = run(&["capacity", "lin-small-2gb", "-o", "json"]);
    let doc: Value = serde_json::from_str(&doc).unwrap();
    assert!(ok && doc["venues"].as_array().is_some_and(|v| v.len() >= 5), "{doc}");
    // Nowhere to go: REJECTED, exit 1, the reason shown.
    let (ok, out, _) = run(&["route", "create", "-w", "huge=lin-medium-4gb:90"]);
    assert!(!ok && out.contains("REJECTED"), "{out}");
    let (ok, out, err) = run(&["route", "delete", &id]);
    assert!(ok && out.contains("deleted"), "{out} {err}");
    let (ok, _, err) = run(&["route", "get", &id]);
    assert!(!ok && err.contains("REQUEST_NOT_FOUND"), "{err}");
}

#[test]
fn host_factory_requests_are_placed_by_the_same_engine() {
    let env = sample();
    let (out, doc) =
        env.script("requestMachines", &json!({"template": {"templateId": "lin-medium-4gb", "machineCount": 30}}));
    assert!(out.status.success(), "{doc}");
    let id = doc["requestId"].as_str().unwrap().to_owned();
    let listed = env.ohf().args(["route", "list", "-o", "json"]).output().unwrap();
    let all: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let placed = all.as_array().unwrap().iter().find(|r| r["workloads"][0]["name"] == id.as_str()).cloned();
    let placed = placed.unwrap_or_else(|| panic!("no placement for {id}: {all}"));
    // 30 machines of 2 vCPUs: only boston-prod-a (64 vCPUs) holds them.
    assert_eq!(venue_of(&placed, 0), "boston-prod-a");
    let stored = env.stored_requests();
    let request = stored.iter().find(|r| r["requestId"] == id.as_str()).unwrap();
    assert_eq!(request["provider"], "sim-boston");
    // The templates say what still fits.
    let (_, templates) = env.script("getAvailableTemplates", &json!({}));
    let medium = templates["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["templateId"] == "lin-medium-4gb")
        .unwrap()
        .clone();
    // boston-prod-a 2, boston-dev-b 16, london-prod-a/b 24 each, london-dev-c 8.
    assert_eq!(medium["availableNumber"], 74, "{medium}");
}
