//! `/metrics` and `ohf metrics` after a scripted flow, read back by a strict parser of the
//! exposition; the dashboard and alert rules in `deploy/` name only metrics that exist; and
//! traces reach an OTLP collector stand-in.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use crate::support::{Daemon, HfEnv};

const CONFIG: &str = r#"advance_on_poll = false
[serve]
interval_ms = 100

[[providers]]
name = "sim-1"
type = "sim"
launch_latency_ms = 200
shutdown_latency_ms = 100
"#;

/// One sample: its name, labels and value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed exposition: each family's type, and the samples.
struct Exposition {
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

impl Exposition {
    /// Parses OpenMetrics text, failing on anything out of form: a sample of no declared family,
    /// a counter sample without `_total`, a histogram whose buckets are not cumulative or do not
    /// end in `+Inf` equal to `_count`, a missing `# EOF`.
    fn parse(text: &str) -> Exposition {
        let mut types = BTreeMap::new();
        let mut samples = Vec::new();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.last().copied(), Some("# EOF"), "the exposition ends with # EOF");
        for line in &lines[..lines.len() - 1] {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("a TYPE line without a type: {line}"));
                assert!(types.insert(name.to_owned(), kind.to_owned()).is_none(), "{name} declared twice");
                continue;
            }
            if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
                continue;
            }
            assert!(!line.starts_with('#'), "an unknown comment: {line}");
            samples.push(sample(line));
        }
        for s in &samples {
            let family = family_of(&s.name, &types).unwrap_or_else(|| panic!("{} has no declared family", s.name));
            let suffix = &s.name[family.len()..];
            let allowed: &[&str] = match types[&family].as_str() {
                "counter" => &["_total", "_created"],
                "histogram" => &["_bucket", "_count", "_sum", "_created"],
                "info" => &["_info"],
                _ => &[""],
            };
            assert!(allowed.contains(&suffix), "{} does not fit its {} family {family}", s.name, types[&family]);
            assert!(s.value.is_finite() && s.value >= 0.0, "{} = {}", s.name, s.value);
        }
        let exposition = Exposition { types, samples };
        exposition.check_histograms();
        exposition
    }

    fn check_histograms(&self) {
        let histograms: Vec<&String> = self.types.iter().filter(|(_, t)| *t == "histogram").map(|(n, _)| n).collect();
        for family in histograms {
            let mut series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
            for s in self.samples.iter().filter(|s| s.name == format!("{family}_bucket")) {
                let mut key = s.labels.clone();
                let le = key.remove("le").unwrap_or_else(|| panic!("a bucket of {family} without le"));
                let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() };
                series.entry(key).or_default().push((bound, s.value));
            }
            for (key, buckets) in series {
                assert!(
                    buckets.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
                    "{family} {key:?}: {buckets:?}"
                );
                let (last, total) = *buckets.last().unwrap();
                assert_eq!(last, f64::INFINITY, "{family} {key:?} ends in +Inf");
                assert_eq!(Some(total), self.value(&format!("{family}_count"), &key), "{family} {key:?}");
            }
        }
    }

    /// The value of the sample `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &BTreeMap<String, String>) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| s.value)
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.value(name, &labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }

    /// Every sample name there may be: `_total`, `_bucket`, … included.
    fn names(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = self.samples.iter().map(|s| s.name.clone()).collect();
        for (family, kind) in &self.types {
            let suffixes: &[&str] = match kind.as_str() {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_count", "_sum"],
                "info" => &["_info"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|s| format!("{family}{s}")));
        }
        names
    }
}

fn family_of(name: &str, types: &BTreeMap<String, String>) -> Option<String> {
    types.keys().filter(|f| name.starts_with(f.as_str())).max_by_key(|f| f.len()).cloned()
}

fn sample(line: &str) -> Sample {
    let (head, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("a sample without a value: {line}"));
    let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number in: {line}"));
    let (name, labels) = match head.split_once('{') {
        None => (head, BTreeMap::new()),
        Some((name, rest)) => {
            let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line}"));
            let mut labels = BTreeMap::new();
            let mut rest = body;
            while !rest.is_empty() {
                let (key, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("a label without a value: {line}"));
                let end = after.find('"').unwrap_or_else(|| panic!("an unclosed label value: {line}"));
                labels.insert(key.to_owned(), after[..end].to_owned());
                rest = after[end + 1..].trim_start_matches(',');
            }
            (name, labels)
        }
    };
    assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "a bad metric name: {name}");
    Sample { name: name.to_owned(), labels, value }
}

fn scrape(daemon: &Daemon) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", daemon.port)).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.to_ascii_lowercase().contains("content-type: application/openmetrics-text"), "{head}");
    // A body without chunked framing (the exporter answers one buffer).
    body.to_owned()
}

fn run_ok(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn metrics_after_a_scripted_flow_show_calls_requests_machines_and_the_worker() {
    let env = HfEnv::new(CONFIG);
    let daemon = Daemon::start(&env);
    let ohf = |args: &[&str]| run_ok(env.ohf().args(["--server", &daemon.url()]).args(args));
    let created: Value =
        serde_json::from_str(&ohf(&["request", "create", "-t", "OnDemand-Minimal", "-n", "2", "--wait", "-o", "json"]))
            .unwrap();
    assert_eq!(created["status"], "COMPLETED", "{created}");
    let template = "OnDemand-Minimal";

    let held = Exposition::parse(&scrape(&daemon));
    let info = held.samples.iter().find(|s| s.name == "ohf_build_info").expect("ohf_build_info");
    assert_eq!(info.labels["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(held.get("ohf_machines_held", &[("provider", "sim-1"), ("template", template)]), Some(2.0));
    assert_eq!(held.get("ohf_requests", &[("kind", "provision"), ("state", "COMPLETED")]), Some(1.0));
    assert!(held.get("ohf_requests", &[("kind", "return")]).is_none(), "no return request yet");

    let machines: Vec<String> =
        created["machines"].as_array().unwrap().iter().map(|m| m["machineId"].as_str().unwrap().to_owned()).collect();
    let mut args = vec!["return", "--wait", "-o", "json"];
    args.extend(machines.iter().map(String::as_str));
    let back: Value = serde_json::from_str(&ohf(&args)).unwrap();
    assert_eq!(back["status"], "COMPLETED", "{back}");

    let m = Exposition::parse(&scrape(&daemon));
    // Cloud calls with their latency.
    let launches = [("provider", "sim-1"), ("operation", "ec2_run_instances")];
    assert!(m.get("ohf_cloud_calls_total", &launches).unwrap() >= 1.0);
    assert_eq!(
        m.get("ohf_cloud_call_duration_seconds_count", &launches),
        m.get("ohf_cloud_calls_total", &launches),
        "every launch call is timed"
    );
    // The API by method and code.
    assert!(
        m.get("ohf_api_call_duration_seconds_count", &[("method", "requestMachines"), ("code", "200")]).unwrap() >= 1.0
    );
    assert!(
        m.get("ohf_api_call_duration_seconds_count", &[("method", "getRequestStatus"), ("code", "200")]).unwrap()
            >= 1.0
    );
    // Requests by state, the backlog, time to COMPLETED, machines held (none now).
    assert_eq!(m.get("ohf_requests", &[("kind", "provision"), ("state", "COMPLETED")]), Some(1.0));
    assert_eq!(m.get("ohf_requests", &[("kind", "return"), ("state", "COMPLETED")]), Some(1.0));
    assert_eq!(m.get("ohf_backlog_requests", &[("state", "PENDING")]), Some(0.0));
    assert_eq!(m.get("ohf_backlog_oldest_age_seconds", &[]), Some(0.0));
    assert_eq!(m.get("ohf_request_duration_seconds_count", &[("template", template)]), Some(1.0));
    assert!(m.get("ohf_machines_held", &[("template", template)]).is_none(), "{:?}", m.get("ohf_machines_held", &[]));
    // Shared state: the breaker as one series per state, provider health.
    assert_eq!(m.get("ohf_provider_healthy", &[("provider", "sim-1")]), Some(1.0));
    // The worker.
    assert!(m.get("ohf_worker_cycles_total", &[]).unwrap() >= 1.0);
    assert!(m.get("ohf_worker_cycle_duration_seconds_count", &[]).unwrap() >= 1.0);
    assert!(m.get("ohf_worker_last_success_timestamp_seconds", &[]).unwrap() > 1.7e9);
    assert!(m.get("ohf_request_events_total", &[("event", "created")]).unwrap() >= 2.0);
    assert_eq!(m.get("ohf_store_up", &[]), Some(1.0));
    assert!(m.get("ohf_store_call_duration_seconds_count", &[("operation", "save")]).unwrap() >= 1.0);
    assert!(m.get("ohf_store_call_duration_seconds_count", &[("operation", "claim")]).unwrap() >= 1.0);
    // A path nobody serves is one series, whatever was asked.
    for path in ["/nope-1", "/nope-2"] {
        let _ = reqwest_get(&daemon, path);
    }
    let m = Exposition::parse(&scrape(&daemon));
    assert_eq!(m.get("ohf_api_call_duration_seconds_count", &[("method", "unknown"), ("code", "404")]), Some(2.0));

    // Without the daemon, `ohf metrics` reads what the store shares (as Host Factory's scripts run).
    assert!(daemon.stop().success());
    let local = Exposition::parse(&run_ok(env.ohf().arg("metrics")));
    assert_eq!(local.get("ohf_requests", &[("kind", "provision"), ("state", "COMPLETED")]), Some(1.0));
    assert!(local.get("ohf_worker_cycles_total", &[]).is_none(), "no worker runs in a script");
}

fn reqwest_get(daemon: &Daemon, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", daemon.port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

/// Metric names in a text: every `ohf_…` word.
fn named_metrics(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("ohf_") {
        let start = i + at;
        let boundary = start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end =
            text[start..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(text.len(), |n| start + n);
        if boundary {
            names.insert(text[start..end].to_owned());
        }
        i = end;
    }
    names
}

#[test]
fn the_dashboard_and_the_alert_rules_name_only_metrics_that_exist() {
    let env = HfEnv::new(CONFIG);
    let daemon = Daemon::start(&env);
    let _ = reqwest_get(&daemon, "/healthz");
    let exposed = Exposition::parse(&scrape(&daemon)).names();
    assert!(daemon.stop().success());
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    let dashboard = std::fs::read_to_string(deploy.join("grafana/ohf.json")).unwrap();
    let board: Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    assert!(board["panels"].as_array().is_some_and(|p| p.len() >= 8), "a dashboard with panels");
    let rules = std::fs::read_to_string(deploy.join("prometheus/ohf-rules.yml")).unwrap();
    assert!(rules.contains("groups:") && rules.contains("alert:"), "Prometheus alerting rules");
    for (file, text) in [("grafana/ohf.json", &dashboard), ("prometheus/ohf-rules.yml", &rules)] {
        let named = named_metrics(text);
        assert!(named.len() >= 5, "{file} names metrics: {named:?}");
        let missing: Vec<&String> = named.iter().filter(|n| !exposed.contains(*n)).collect();
        assert!(missing.is_empty(), "{file} names metrics ohf does not export: {missing:?}\nexported: {exposed:?}");
    }
}

#[test]
fn traces_of_api_calls_cycles_and_cloud_calls_reach_an_otlp_collector() {
    let collector = crate::support::Receiver::start(vec![200]);
    let endpoint = collector.url.trim_end_matches("/hook").to_owned();
    let env = HfEnv::new(&format!(
        "{CONFIG}\n[telemetry]\notlp_endpoint = \"{endpoint}\"\nservice_name = \"ohf-under-test\"\n"
    ));
    let log = std::fs::File::create(env.path("log/serve.log")).unwrap();
    let daemon = Daemon::spawn_with(&env, &[], log);
    let created = run_ok(env.ohf().args([
        "--server",
        &daemon.url(),
        "request",
        "create",
        "-t",
        "OnDemand-Minimal",
        "-n",
        "1",
        "--wait",
        "-o",
        "json",
    ]));
    let created: Value = serde_json::from_str(&created).unwrap();
    assert_eq!(created["status"], "COMPLETED", "{created}");
    // SIGTERM: the daemon sends what it has batched before it exits.
    assert!(daemon.stop().success());
    let hits = collector.wait_for(1, std::time::Duration::from_secs(10));
    assert!(!hits.is_empty(), "no traces arrived");
    assert!(hits.iter().all(|h| h.headers.get("content-type").is_some_and(|t| t == "application/x-protobuf")));
    let sent: Vec<u8> = hits.iter().flat_map(|h| h.body.clone()).collect();
    let contains = |needle: &str| sent.windows(needle.len()).any(|w| w == needle.as_bytes());
    for name in ["ohf-under-test", "call", "reconcile", "request_step", "cloud_call", "ec2_run_instances"] {
        assert!(contains(name), "{name} is not in the exported spans");
    }
    let id = created["requestId"].as_str().unwrap();
    assert!(contains(id), "the request id is on the spans");
}
