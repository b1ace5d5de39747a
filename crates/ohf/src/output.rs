//! Logging set-up and operator output: tables, JSON, progress bars.

use std::fs::OpenOptions;
use std::sync::Mutex;

use comfy_table::{Table, presets};
use ohf_app::AppError;
use ohf_domain::{MachineStatus, Request, RequestKind};
use serde_json::{Value, json};
use tracing_subscriber::EnvFilter;

use crate::cli::Output;
use crate::settings::Resolved;

fn filter(default: &str) -> EnvFilter {
    EnvFilter::try_from_env("OHF_LOG").unwrap_or_else(|_| EnvFilter::new(default))
}

/// Host Factory mode: append to `ohf.log` in the log dir, or stderr when that fails.
pub fn log_to_dir(settings: &Resolved, verbose: u8) -> Option<()> {
    let level = match verbose {
        0 => settings.log_level.as_str(),
        1 => "info",
        _ => "debug",
    };
    let file = std::fs::create_dir_all(&settings.logdir)
        .and_then(|_| OpenOptions::new().create(true).append(true).open(settings.logdir.join("ohf.log")));
    let builder = tracing_subscriber::fmt().with_env_filter(filter(level)).with_ansi(false);
    match file {
        Ok(f) => builder.with_writer(Mutex::new(f)).try_init().ok(),
        Err(_) => builder.with_writer(std::io::stderr).try_init().ok(),
    }
}

/// Operator mode: warnings on stderr, more with -v.
pub fn log_to_stderr(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter(level))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()));
}

/// Prints a failure: `{"error": {code, message, details}}` in JSON mode, a line on stderr otherwise.
pub fn print_error(output: Output, e: &anyhow::Error) {
    let app = e.downcast_ref::<AppError>();
    let code = app.map(|a| a.code().as_str()).unwrap_or("ERROR");
    match output {
        Output::Json => print_json(&json!({"error": {
            "code": code,
            "message": format!("{e:#}"),
            "details": app.map(AppError::details).unwrap_or(json!({})),
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

pub fn up_count(r: &Request) -> u64 {
    let done = |s: MachineStatus| match r.kind() {
        RequestKind::Provision => s == MachineStatus::Running,
        RequestKind::Return => s == MachineStatus::Terminated,
    };
    r.machines().iter().filter(|m| m.failure().is_none() && done(m.status())).count() as u64
}

pub fn requests_table(list: &[Request]) -> String {
    let mut t = table(&["REQUEST", "KIND", "STATE", "TEMPLATE", "MACHINES", "CREATED", "MESSAGE"]);
    for r in list {
        t.add_row(vec![
            r.id().to_string(),
            r.kind().as_str().to_owned(),
            r.state().to_string(),
            r.template().map(|t| t.id().to_string()).unwrap_or_else(|| "-".into()),
            format!("{}/{}", up_count(r), r.count()),
            r.created_at().to_rfc3339(),
            r.error().unwrap_or_default().to_owned(),
        ]);
    }
    t.to_string()
}

pub fn machines_table(r: &Request) -> String {
    let mut t = table(&["MACHINE", "NAME", "STATUS", "RESULT", "PRIVATE IP", "TYPE", "ZONE", "MESSAGE"]);
    for m in r.machines() {
        let (result, message) = r.hf_machine_result(m);
        t.add_row(vec![
            m.id().to_string(),
            m.name().unwrap_or("-").to_owned(),
            m.status().to_string(),
            result.as_str().to_owned(),
            m.private_ip().unwrap_or("-").to_owned(),
            m.instance_type().unwrap_or("-").to_owned(),
            m.zone().unwrap_or("-").to_owned(),
            message,
        ]);
    }
    t.to_string()
}

pub fn templates_table(list: &[ohf_app::TemplateAvailability]) -> String {
    let mut t = table(&["TEMPLATE", "MAX", "AVAILABLE", "TYPES", "PRICE", "API", "NCPUS", "NRAM"]);
    for a in list {
        let tpl = &a.template;
        let attr = |k: &str| tpl.attributes().get(k).map(|v| v.value.clone()).unwrap_or_default();
        t.add_row(vec![
            tpl.id().to_string(),
            tpl.max_number().map_or("unlimited".into(), |n| n.to_string()),
            a.available.map_or("unlimited".into(), |n| n.to_string()),
            tpl.vm_types().keys().cloned().collect::<Vec<_>>().join(","),
            tpl.price_type().to_string(),
            tpl.provider_api().as_str().to_owned(),
            attr("ncpus"),
            attr("nram"),
        ]);
    }
    t.to_string()
}
