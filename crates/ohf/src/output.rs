//! Logging set-up and operator output: tables, JSON, progress bars.

use std::fs::OpenOptions;
use std::sync::Mutex;

use comfy_table::{Table, presets};
use ohf_api::ApiError;
use ohf_app::AppError;
use serde_json::{Value, json};
use tracing_subscriber::EnvFilter;

use crate::cli::Output;
use ohf_server::Resolved;
use ohf_server::settings::{LogFormat, TelemetrySettings};

/// `OHF_LOG` (a tracing filter), else Host Factory's `HF_LOG_LEVEL` (DEBUG, INFO, WARN,
/// ERROR), else `default`.
fn filter(default: &str) -> EnvFilter {
    EnvFilter::try_from_env("OHF_LOG").unwrap_or_else(|_| {
        let hf = std::env::var("HF_LOG_LEVEL").ok().map(|l| l.trim().to_ascii_lowercase());
        let level = match hf.as_deref() {
            Some(l @ ("trace" | "debug" | "info" | "warn" | "error")) => l,
            Some("warning") => "warn",
            Some("critical") => "error",
            _ => default,
        };
        EnvFilter::new(level)
    })
}

/// Host Factory mode: append to `ohf.log` in the log dir (rotated first when it has grown past
/// `log_max_bytes`), or stderr when that fails.
pub fn log_to_dir(settings: &Resolved, verbose: u8) -> Option<()> {
    let level = match verbose {
        0 => settings.log_level.as_str(),
        1 => "info",
        _ => "debug",
    };
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let path = settings.logdir.join("ohf.log");
    rotate(&path, settings.log_max_bytes, settings.log_keep);
    // Logs name machines, requests and callers: this user's alone (0600, folder 0700).
    let file = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&settings.logdir)
        .and_then(|_| OpenOptions::new().create(true).append(true).mode(0o600).open(&path));
    let json = settings.log_format == LogFormat::Json;
    let telemetry = Some(&settings.telemetry);
    match file {
        Ok(f) => init(level, json, false, Mutex::new(f), telemetry),
        Err(_) => init(level, json, false, std::io::stderr, telemetry),
    }
}

/// Shifts `ohf.log` to `ohf.log.1` (and `.1` to `.2`, … up to `keep`) when it is larger than
/// `max_bytes`. Every Host Factory call is a process of its own, so the check at open suffices;
/// two processes rotating at once lose nothing (renames are atomic), they keep one file fewer.
fn rotate(path: &std::path::Path, max_bytes: u64, keep: u32) {
    if max_bytes == 0 || std::fs::metadata(path).map_or(true, |m| m.len() <= max_bytes) {
        return;
    }
    let numbered = |n: u32| path.with_file_name(format!("ohf.log.{n}"));
    if keep == 0 {
        let _ = std::fs::remove_file(path);
        return;
    }
    let _ = std::fs::remove_file(numbered(keep));
    for n in (1..keep).rev() {
        let _ = std::fs::rename(numbered(n), numbered(n + 1));
    }
    let _ = std::fs::rename(path, numbered(1));
}

/// Operator mode: warnings on stderr, more with -v.
pub fn log_to_stderr(verbose: u8) {
    log_to_stderr_as(verbose, LogFormat::Text, None);
}

/// Logs on stderr in `format`: warnings, more with -v; spans to an OTLP collector when
/// `telemetry` names one.
pub fn log_to_stderr_as(verbose: u8, format: LogFormat, telemetry: Option<&TelemetrySettings>) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let ansi = format == LogFormat::Text && std::io::IsTerminal::is_terminal(&std::io::stderr());
    init(level, format == LogFormat::Json, ansi, std::io::stderr, telemetry);
}

fn init<W>(level: &str, json: bool, ansi: bool, writer: W, telemetry: Option<&TelemetrySettings>) -> Option<()>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let lines = tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(writer);
    let lines = if json { lines.json().with_current_span(true).with_span_list(false).boxed() } else { lines.boxed() };
    let registry = tracing_subscriber::registry().with(filter(level));
    let traces = telemetry.and_then(crate::telemetry::layer);
    registry.with(traces).with(lines).try_init().ok()
}

pub fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()));
}

/// Prints a failure: `{"error": {code, message, details}}` in JSON mode, a line on stderr otherwise.
pub fn print_error(output: Output, e: &anyhow::Error) {
    let api = e
        .downcast_ref::<ApiError>()
        .cloned()
        .or_else(|| e.downcast_ref::<AppError>().map(|a| ApiError::from(a.clone())));
    let code = api.as_ref().map(|a| a.code.as_str()).unwrap_or("ERROR");
    match output {
        Output::Json => print_json(&json!({"error": {
            "code": code,
            "message": format!("{e:#}"),
            "details": api.as_ref().map(|a| a.details.clone()).unwrap_or(json!({})),
        }})),
        Output::Table => eprintln!("error [{code}]: {e:#}"),
    }
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_header(header.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    t
}

/// A field of a view as table text: `-` when absent.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Machines of a request view that are up (provision) or gone (return).
pub fn up_count(r: &Value) -> u64 {
    let done = if r["kind"] == "return" { "terminated" } else { "running" };
    r["machines"].as_array().map_or(0, |m| m.iter().filter(|m| m["status"] == done).count() as u64)
}

pub fn requests_table(list: &[Value]) -> String {
    let mut t = table(&["REQUEST", "KIND", "STATE", "TEMPLATE", "MACHINES", "CREATED", "MESSAGE"]);
    for r in list {
        t.add_row(vec![
            cell(&r["requestId"]),
            cell(&r["kind"]),
            cell(&r["status"]),
            cell(&r["templateId"]),
            format!("{}/{}", up_count(r), cell(&r["machineCount"])),
            cell(&r["createdAt"]),
            r["errorMessage"].as_str().unwrap_or_default().to_owned(),
        ]);
    }
    t.to_string()
}

pub fn machines_table(r: &Value) -> String {
    let mut t = table(&["MACHINE", "NAME", "STATUS", "RESULT", "PRIVATE IP", "TYPE", "ZONE", "MESSAGE"]);
    for m in r["machines"].as_array().into_iter().flatten() {
        t.add_row(vec![
            cell(&m["machineId"]),
            cell(&m["name"]),
            cell(&m["status"]),
            cell(&m["result"]),
            cell(&m["privateIpAddress"]),
            cell(&m["instanceType"]),
            cell(&m["availabilityZone"]),
            m["message"].as_str().unwrap_or_default().to_owned(),
        ]);
    }
    t.to_string()
}

/// The effective settings: key, value, source.
pub fn settings_table(list: &[ohf_server::settings::Explained]) -> String {
    let mut t = table(&["SETTING", "VALUE", "SOURCE"]);
    for e in list {
        let value = match &e.value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        t.add_row(vec![e.key.clone(), value, e.source.clone()]);
    }
    t.to_string()
}

pub fn templates_table(list: &[Value]) -> String {
    let mut t = table(&["TEMPLATE", "MAX", "AVAILABLE", "TYPES", "PRICE", "API", "NCPUS", "NRAM"]);
    let limit = |v: &Value| if v.as_i64() == Some(-1) { "unlimited".to_owned() } else { cell(v) };
    for a in list {
        let tpl = &a["template"];
        let attr = |k: &str| tpl["attributes"][k].get(1).map(cell).unwrap_or_default();
        let types =
            tpl["vmTypes"].as_object().map(|m| m.keys().cloned().collect::<Vec<_>>().join(",")).unwrap_or_default();
        t.add_row(vec![
            cell(&a["templateId"]),
            limit(&a["maxNumber"]),
            limit(&a["availableNumber"]),
            types,
            cell(&tpl["priceType"]),
            cell(&tpl["providerApi"]),
            attr("ncpus"),
            attr("nram"),
        ]);
    }
    t.to_string()
}

pub fn breakers_table(list: &[Value]) -> String {
    let mut t = table(&["PROVIDER", "SERVICE", "STATE", "FAILURES", "OPENED", "SINCE", "LAST FAILURE"]);
    let time = |v: &Value| {
        v.as_i64().map(|ms| ohf_domain::Timestamp::from_unix_millis(ms).to_rfc3339()).unwrap_or_else(|| "-".into())
    };
    for b in list {
        t.add_row(vec![
            cell(&b["provider"]),
            cell(&b["service"]),
            cell(&b["state"]),
            cell(&b["failures"]),
            cell(&b["opened"]),
            time(&b["changed_at"]),
            time(&b["last_failure_at"]),
        ]);
    }
    t.to_string()
}

/// Calls per provider and operation in the process that answered (the daemon, with --server).
pub fn operations_table(providers: &[Value]) -> String {
    let mut t = table(&["PROVIDER", "OPERATION", "CALLS", "SUCCESS RATE", "RETRIES", "TIMEOUTS", "REFUSED", "ERRORS"]);
    for p in providers {
        for (op, m) in p["operations"].as_object().into_iter().flatten() {
            let rate = m["successRate"].as_f64().map_or("-".into(), |r| format!("{:.1}%", r * 100.0));
            let errors = m["errors"]
                .as_object()
                .map(|e| e.iter().map(|(k, n)| format!("{k}={n}")).collect::<Vec<_>>().join(" "))
                .unwrap_or_default();
            t.add_row(vec![
                cell(&p["provider"]),
                op.clone(),
                cell(&m["calls"]),
                rate,
                cell(&m["retries"]),
                cell(&m["timeouts"]),
                cell(&m["rejected"]),
                errors,
            ]);
        }
    }
    t.to_string()
}

/// The completion script of `shell` for the whole command line, on stdout.
pub fn completions(shell: clap_complete::Shell) -> std::process::ExitCode {
    let mut command = <crate::cli::Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut command, "ohf", &mut std::io::stdout());
    std::process::ExitCode::SUCCESS
}

/// The manual page (roff) of the whole command line, its subcommands included, on stdout.
pub fn manual() -> std::process::ExitCode {
    let command = <crate::cli::Cli as clap::CommandFactory>::command();
    let mut page = Vec::new();
    let rendered = clap_mangen::Man::new(command.clone()).render(&mut page).and_then(|()| {
        // Each subcommand as a section of the one page.
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
            page.extend_from_slice(format!(".SH \"OHF {}\"\n", sub.get_name().to_uppercase()).as_bytes());
            clap_mangen::Man::new(sub.clone()).render_description_section(&mut page)?;
            clap_mangen::Man::new(sub.clone()).render_options_section(&mut page)?;
        }
        Ok(())
    });
    match rendered.and_then(|()| std::io::Write::write_all(&mut std::io::stdout(), &page)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write the manual: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

/// Seconds as `1h 02m`, `3m 05s` or `42s`.
fn duration(v: &Value) -> String {
    let Some(secs) = v.as_f64() else { return "-".into() };
    let secs = secs.round() as i64;
    match secs {
        s if s >= 3600 => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
        s if s >= 60 => format!("{}m {:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

fn dollars(v: &Value) -> String {
    match v.as_f64() {
        None => "-".into(),
        Some(d) if d != 0.0 && d.abs() < 1.0 => format!("${d:.4}"),
        Some(d) => format!("${d:.2}"),
    }
}

/// The backlog in one line.
pub fn backlog_line(b: &Value) -> String {
    let oldest = match (b["oldestRequestId"].as_str(), b["oldestAgeSecs"].as_i64()) {
        (Some(id), Some(age)) => format!("; oldest {id}, waiting {}", duration(&Value::from(age))),
        _ => String::new(),
    };
    let by_priority: Vec<String> =
        b["byPriority"].as_object().into_iter().flatten().map(|(p, n)| format!("{n} {p}")).collect();
    let priorities = if by_priority.is_empty() { String::new() } else { format!(" ({})", by_priority.join(", ")) };
    format!("backlog: {} pending, {} in progress{priorities}{oldest}", cell(&b["pending"]), cell(&b["inProgress"]))
}

pub fn report_table(r: &Value) -> String {
    let mut t = table(&["", ""]);
    let states: Vec<String> = r["byState"].as_object().into_iter().flatten().map(|(s, n)| format!("{s} {n}")).collect();
    let ttc = &r["timeToComplete"];
    let peaks: Vec<String> = r["peakHours"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| format!("{:02}:00 ({})", p[0].as_u64().unwrap_or(0), cell(&p[1])))
        .collect();
    let failures: u64 = r["failures"].as_array().into_iter().flatten().filter_map(|f| f["count"].as_u64()).sum();
    t.add_row(vec!["window".into(), format!("{} to {}", cell(&r["since"]), cell(&r["until"]))]);
    t.add_row(vec!["requests".into(), format!("{} ({})", cell(&r["total"]), states.join(", "))]);
    t.add_row(vec![
        "success rate".into(),
        r["successRate"].as_f64().map_or_else(|| "-".into(), |p| format!("{p:.1}%")),
    ]);
    t.add_row(vec![
        "time to complete".into(),
        format!(
            "average {}, p50 {}, p95 {} ({} completed)",
            duration(&ttc["averageSecs"]),
            duration(&ttc["p50Secs"]),
            duration(&ttc["p95Secs"]),
            cell(&ttc["completed"])
        ),
    ]);
    t.add_row(vec!["failures".into(), failures.to_string()]);
    t.add_row(vec!["peak hours (UTC)".into(), if peaks.is_empty() { "-".into() } else { peaks.join(", ") }]);
    t.add_row(vec!["backlog".into(), backlog_line(&r["backlog"]).trim_start_matches("backlog: ").to_owned()]);
    t.add_row(vec!["estimated cost".into(), dollars(&r["cost"]["totalUsd"])]);
    t.to_string()
}

pub fn failures_table(list: &Value) -> String {
    let mut t = table(&["CATEGORY", "CODE", "COUNT", "LATEST MESSAGE"]);
    for f in list.as_array().into_iter().flatten() {
        t.add_row(vec![cell(&f["category"]), cell(&f["code"]), cell(&f["count"]), cell(&f["example"])]);
    }
    t.to_string()
}

pub fn held_table(list: &Value) -> String {
    let mut t = table(&["TEMPLATE", "PROVIDER", "TYPE", "MACHINES", "PER HOUR"]);
    for h in list.as_array().into_iter().flatten() {
        t.add_row(vec![
            cell(&h["templateId"]),
            cell(&h["provider"]),
            cell(&h["instanceType"]),
            cell(&h["machines"]),
            dollars(&h["hourlyUsd"]),
        ]);
    }
    t.to_string()
}

pub fn capacity_table(template: &Value, held: &[Value]) -> String {
    let limit = |v: &Value| if v.as_i64() == Some(-1) { "unlimited".to_owned() } else { cell(v) };
    let total: u64 = held.iter().filter_map(|h| h["machines"].as_u64()).sum();
    let mut t = table(&["", ""]);
    t.add_row(vec!["template".into(), cell(&template["templateId"])]);
    t.add_row(vec!["maxNumber".into(), limit(&template["maxNumber"])]);
    t.add_row(vec!["held now".into(), total.to_string()]);
    t.add_row(vec!["available".into(), limit(&template["availableNumber"])]);
    let mut out = t.to_string();
    if !held.is_empty() {
        out += &format!("\n\n{}", held_table(&Value::Array(held.to_vec())));
    }
    out
}

pub fn cost_tables(cost: &Value) -> String {
    let mut requests = table(&["REQUEST", "ESTIMATED COST (24 H)"]);
    for pair in cost["perRequest"].as_array().into_iter().flatten() {
        requests.add_row(vec![cell(&pair[0]), dollars(&pair[1])]);
    }
    let mut tags = table(&["TAG", "ESTIMATED COST (24 H)"]);
    for (tag, usd) in cost["perTag"].as_object().into_iter().flatten() {
        tags.add_row(vec![tag.clone(), dollars(usd)]);
    }
    let unpriced = cost["unpricedTypes"].as_array().map(|l| l.iter().map(cell).collect::<Vec<_>>()).unwrap_or_default();
    let mut out = format!("{requests}\n\n{tags}\n\ntotal {}", dollars(&cost["totalUsd"]));
    if !unpriced.is_empty() {
        out += &format!(" (no price for {}: add it to prices.json)", unpriced.join(", "));
    }
    out
}

pub fn checks_table(list: &[Value]) -> String {
    let mut t = table(&["CHECK", "STATUS", "DETAIL"]);
    for c in list {
        let status = if c["ok"] == true { "ok" } else { "FAIL" };
        t.add_row(vec![cell(&c["check"]), status.to_owned(), cell(&c["detail"])]);
    }
    t.to_string()
}

/// Days since the epoch of a view's milliseconds, as YYYY-MM-DD.
fn day_text(v: &Value) -> String {
    let Some(ms) = v.as_i64() else { return cell(v) };
    // Civil date from days, after Howard Hinnant's algorithm.
    let z = ms.div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// A routing request and its workloads' placements.
pub fn routing_table(r: &Value) -> String {
    let mut t = table(&["", ""]);
    t.add_row(vec!["id".into(), cell(&r["id"])]);
    t.add_row(vec!["status".into(), cell(&r["status"])]);
    if !r["status_reason"].is_null() {
        t.add_row(vec!["reason".into(), cell(&r["status_reason"])]);
    }
    t.add_row(vec!["expected date".into(), day_text(&r["expected_date"])]);
    t.add_row(vec!["requester".into(), cell(&r["requester"])]);
    t.add_row(vec!["mode".into(), cell(&r["mode"])]);
    t.add_row(vec!["environment".into(), cell(&r["control_environment"])]);
    t.add_row(vec!["group".into(), cell(&r["infrastructure_group"])]);
    let mut w = table(&["WORKLOAD", "ID", "STATUS", "VENUE", "SCORE", "REASON"]);
    for d in r["status_details"]["workloads"].as_array().into_iter().flatten() {
        w.add_row(vec![
            cell(&d["name"]),
            cell(&d["id"]),
            cell(&d["status"]),
            cell(&d["venue"]),
            cell(&d["hosting_score"]),
            cell(&d["status_reason"]),
        ]);
    }
    format!("{t}\n\n{w}")
}

/// Routing requests, one line each.
pub fn routing_list(all: &Value) -> String {
    let mut t = table(&["ID", "STATUS", "EXPECTED", "REQUESTER", "WORKLOADS", "ENVIRONMENT"]);
    for r in all.as_array().into_iter().flatten() {
        t.add_row(vec![
            cell(&r["id"]),
            cell(&r["status"]),
            day_text(&r["expected_date"]),
            cell(&r["requester"]),
            r["workloads"].as_array().map_or(0, Vec::len).to_string(),
            cell(&r["control_environment"]),
        ]);
    }
    t.to_string()
}

/// Workloads with their placements.
pub fn workloads_table(all: &Value) -> String {
    let mut t = table(&["WORKLOAD", "TEMPLATE", "COUNT", "STATUS", "VENUE", "ZONE", "SUBNET", "DATASTORES"]);
    for w in all.as_array().into_iter().flatten() {
        let p = &w["placement"];
        let stores = p["datastores"].as_array().map(|d| d.iter().map(cell).collect::<Vec<_>>().join(","));
        t.add_row(vec![
            cell(&w["name"]),
            cell(&w["catalog_spec"]),
            cell(&w["count"]),
            cell(&w["status"]),
            cell(&p["venue"]),
            cell(&p["zone"]),
            cell(&p["subnet"]),
            stores.filter(|s| !s.is_empty()).unwrap_or_else(|| "-".into()),
        ]);
    }
    t.to_string()
}

/// Machines that fit per venue and template.
pub fn venue_capacity_table(all: &Value, with_date: bool) -> String {
    let fit = |v: &Value| if v.is_null() { "no limit".to_owned() } else { cell(v) };
    let mut header = vec!["VENUE", "ENVIRONMENT", "PROVIDER", "TEMPLATE", "TODAY"];
    if with_date {
        header.push("ON DATE");
    }
    let mut t = table(&header);
    for c in all.as_array().into_iter().flatten() {
        let mut row =
            vec![cell(&c["venue"]), cell(&c["control_environment"]), cell(&c["provider"]), cell(&c["catalog_spec"])];
        row.push(fit(&c["available_today"]));
        if with_date {
            row.push(fit(&c["available_on_date"]));
        }
        t.add_row(row);
    }
    t.to_string()
}

/// A failure the command has already shown in its answer: the exit code says it, nothing more
/// is printed.
#[derive(Debug)]
pub struct Reported;

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("failed; see the answer above")
    }
}

impl std::error::Error for Reported {}
