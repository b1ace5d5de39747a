//! Operator commands.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use ohf_app::view::{event_view, request_view};
use ohf_app::{App, MachineRef, RequestFilter, RequestMachines, RequestReturn};
use ohf_domain::{MachineId, Request, RequestId, RequestState, Template};
use serde_json::json;

use crate::cli::{Command, CreateArgs, Global, Output, RequestCmd, ReturnArgs, SimCmd, TemplatesCmd};
use crate::output::{self, machines_table, print_json, requests_table, templates_table, up_count};
use crate::settings::{Overrides, Resolved};
use crate::wiring::{self, Runtime};

pub fn overrides(g: &Global) -> Overrides {
    Overrides {
        config: g.config.clone(),
        confdir: g.confdir.clone(),
        workdir: g.workdir.clone(),
        logdir: g.logdir.clone(),
        database_url: g.database_url.clone(),
    }
}

pub async fn run(global: &Global, command: Command) -> ExitCode {
    output::log_to_stderr(global.verbose);
    match dispatch(global, command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::print_error(global.output, &e);
            ExitCode::from(1)
        }
    }
}

async fn dispatch(global: &Global, command: Command) -> anyhow::Result<()> {
    if let Command::Quickstart(args) = &command {
        return crate::quickstart::run(global, args).await;
    }
    if let Command::Templates(TemplatesCmd::Validate { file: Some(file) }) = &command {
        return validate_file(global.output, file);
    }
    let settings = Resolved::load(&overrides(global))?;
    let rt = wiring::build(&settings).await?;
    let out = global.output;
    match command {
        Command::Templates(TemplatesCmd::List) => {
            let list = rt.app.available_templates().await?;
            match out {
                Output::Json => print_json(&json!(
                    list.iter()
                        .map(|a| json!({
                            "templateId": a.template.id().as_str(),
                            "maxNumber": a.template.max_number().map_or(-1, i64::from),
                            "availableNumber": a.available,
                            "template": a.template,
                        }))
                        .collect::<Vec<_>>()
                )),
                Output::Table => println!("{}", templates_table(&list)),
            }
        }
        Command::Templates(TemplatesCmd::Validate { file }) => {
            validate_file(out, file.as_deref().unwrap_or(&settings.templates_file))?
        }
        Command::Request(cmd) => request(&rt, out, cmd, settings.advance_on_poll).await?,
        Command::Return(args) => return_machines(&rt, out, args, settings.advance_on_poll).await?,
        Command::Reconcile => {
            let report = rt.app.reconcile(None).await;
            match out {
                Output::Json => print_json(&json!({
                    "examined": report.examined, "changed": report.changed, "describeCalls": report.describe_calls,
                    "launchCalls": report.launch_calls, "terminateCalls": report.terminate_calls,
                    "conflicts": report.conflicts, "errors": report.errors,
                })),
                Output::Table => println!(
                    "examined {} requests, changed {}, {} describe, {} launch and {} terminate calls, {} conflicts",
                    report.examined,
                    report.changed,
                    report.describe_calls,
                    report.launch_calls,
                    report.terminate_calls,
                    report.conflicts
                ),
            }
            if !report.errors.is_empty() {
                bail!("reconcile met errors: {}", report.errors.join("; "));
            }
        }
        Command::Sim(cmd) => sim(&rt, out, cmd).await?,
        Command::Sweep { min_age } => {
            let report = rt.app.sweep_orphans(min_age as i64).await;
            match out {
                Output::Json => print_json(&json!({
                    "examined": report.examined,
                    "terminated": report.terminated.iter().map(|(id, why)| json!({"machineId": id.as_str(), "reason": why})).collect::<Vec<_>>(),
                    "errors": report.errors,
                })),
                Output::Table => {
                    println!("examined {} machines, terminated {}", report.examined, report.terminated.len());
                    for (id, why) in &report.terminated {
                        println!("  {id}: {why}");
                    }
                }
            }
            if !report.errors.is_empty() {
                bail!("sweep met errors: {}", report.errors.join("; "));
            }
        }
        Command::Hf(_) | Command::Quickstart(_) | Command::Serve(_) => unreachable!("dispatched elsewhere"),
    }
    Ok(())
}

fn validate_file(out: Output, file: &std::path::Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let templates =
        Template::parse_file(&text).map_err(ohf_app::AppError::from).with_context(|| file.display().to_string())?;
    match out {
        Output::Json => print_json(&json!({
            "valid": true,
            "file": file.display().to_string(),
            "templates": templates.iter().map(|t| t.id().as_str()).collect::<Vec<_>>(),
        })),
        Output::Table => println!("{}: {} templates valid", file.display(), templates.len()),
    }
    Ok(())
}

fn parse_tags(raw: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    raw.iter()
        .map(|t| match t.split_once('=') {
            Some((k, v)) => Ok((k.trim().to_owned(), v.trim().to_owned())),
            None => bail!("--tag '{t}' is not KEY=VALUE"),
        })
        .collect()
}

fn show(out: Output, requests: &[Request]) {
    match out {
        Output::Json => print_json(&json!(requests.iter().map(request_view).collect::<Vec<_>>())),
        Output::Table => {
            println!("{}", requests_table(requests));
            for r in requests.iter().filter(|r| !r.machines().is_empty()) {
                println!("\n{}:\n{}", r.id(), machines_table(r));
            }
        }
    }
}

fn show_one(out: Output, r: &Request) {
    match out {
        Output::Json => print_json(&request_view(r)),
        Output::Table => show(out, std::slice::from_ref(r)),
    }
}

async fn create(rt: &Runtime, out: Output, args: CreateArgs, advance: bool) -> anyhow::Result<()> {
    let cmd = RequestMachines {
        template_id: args.template,
        count: args.count,
        request_id: args.request_id,
        timeout: args.timeout,
        tags: parse_tags(&args.tags)?,
        metadata: BTreeMap::new(),
        priority: args.priority,
        zones: args.zones,
        provider: args.provider,
    };
    let r = rt.app.request_machines(cmd).await?;
    if args.wait {
        if out == Output::Table {
            println!(
                "{}: {} machines of {} requested",
                r.id(),
                r.count(),
                r.template().map(|t| t.id().as_str()).unwrap_or("-")
            );
        }
        let done = watch(&rt.app, r.id(), out == Output::Table, advance).await?;
        show_one(out, &done);
    } else {
        show_one(out, &r);
    }
    Ok(())
}

async fn request(rt: &Runtime, out: Output, cmd: RequestCmd, advance: bool) -> anyhow::Result<()> {
    let app = &rt.app;
    match cmd {
        RequestCmd::Create(args) => create(rt, out, args, advance).await?,
        RequestCmd::Status { ids } => {
            let valid: Vec<RequestId> = ids
                .iter()
                .map(|i| RequestId::new(i.clone()))
                .collect::<Result<_, _>>()
                .map_err(ohf_app::AppError::from)?;
            if advance {
                app.reconcile(Some(&valid)).await;
            }
            let found = app.request_status(&ids).await?;
            if let Some((missing, _)) = found.iter().find(|(_, r)| r.is_none()) {
                return Err(ohf_app::AppError::from(ohf_domain::DomainError::RequestNotFound {
                    request_id: missing.clone(),
                })
                .into());
            }
            let list: Vec<Request> = found.into_iter().filter_map(|(_, r)| r).collect();
            show(out, &list);
        }
        RequestCmd::Watch { id } => {
            let id = RequestId::new(id).map_err(ohf_app::AppError::from)?;
            if app.request_status(&[id.to_string()]).await?[0].1.is_none() {
                return Err(ohf_app::AppError::from(ohf_domain::DomainError::RequestNotFound {
                    request_id: id.to_string(),
                })
                .into());
            }
            let r = watch(app, &id, out == Output::Table, advance).await?;
            show_one(out, &r);
        }
        RequestCmd::Cancel { id } => {
            let r = app.cancel(&id).await?;
            show_one(out, &r);
        }
        RequestCmd::List { state, limit } => {
            let states = state
                .iter()
                .map(|s| RequestState::parse(s).with_context(|| format!("unknown state '{s}'")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            if advance {
                app.reconcile(None).await;
            }
            let list = app.list_requests(&RequestFilter { states, limit: Some(limit), ..Default::default() }).await?;
            match out {
                Output::Json => print_json(&json!(list.iter().map(request_view).collect::<Vec<_>>())),
                Output::Table => println!("{}", requests_table(&list)),
            }
        }
        RequestCmd::History { id } => {
            let events = app.history(&id).await?;
            match out {
                Output::Json => print_json(&json!(events.iter().map(event_view).collect::<Vec<_>>())),
                Output::Table => {
                    for e in &events {
                        println!(
                            "{:>4}  {}  {:<22} {}",
                            e.seq,
                            e.at,
                            e.event.name(),
                            serde_json::to_string(&e.event).unwrap_or_default()
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

async fn return_machines(rt: &Runtime, out: Output, args: ReturnArgs, advance: bool) -> anyhow::Result<()> {
    let machines = args
        .machines
        .iter()
        .map(|m| {
            // EC2-style ids are ids; anything else is a host name.
            if m.starts_with("i-") {
                MachineRef { id: Some(m.clone()), name: None }
            } else {
                MachineRef { id: None, name: Some(m.clone()) }
            }
        })
        .collect();
    let r = rt
        .app
        .request_return(RequestReturn { machines, request_id: args.request_id, force: args.force, timeout: None })
        .await?;
    let r = if args.wait { watch(&rt.app, r.id(), out == Output::Table, advance).await? } else { r };
    show_one(out, &r);
    Ok(())
}

async fn sim(rt: &Runtime, out: Output, cmd: SimCmd) -> anyhow::Result<()> {
    let (machine, provider) = match &cmd {
        SimCmd::Interrupt { machine, provider, .. } | SimCmd::Stop { machine, provider } => (machine, provider),
    };
    let sim = match provider {
        Some(p) => rt.sims.iter().find(|s| ohf_app::CloudProvider::name(&***s).as_str() == p),
        None => rt.sims.first(),
    }
    .context("no such simulated provider is configured")?;
    let id = MachineId::new(machine.clone()).map_err(ohf_app::AppError::from)?;
    let done = match cmd {
        SimCmd::Interrupt { notice, .. } => sim.interrupt(&id, notice).await,
        SimCmd::Stop { .. } => sim.stop(&id).await,
    }
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    if !done {
        bail!("machine {id} is not running on the simulated cloud");
    }
    match out {
        Output::Json => print_json(&json!({"machineId": id.as_str(), "done": true})),
        Output::Table => println!("{id}: done"),
    }
    Ok(())
}

/// Follows `id` until it finishes, showing machines up out of machines asked; advances it on
/// each look when `advance` (no daemon does).
pub async fn watch(app: &App, id: &RequestId, progress: bool, advance: bool) -> anyhow::Result<Request> {
    let bar = if progress { ProgressBar::new(0) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(id.to_string());
    loop {
        if advance {
            app.reconcile(Some(std::slice::from_ref(id))).await;
        }
        let r = app
            .request_status(&[id.to_string()])
            .await?
            .pop()
            .and_then(|(_, r)| r)
            .with_context(|| format!("request {id} disappeared"))?;
        bar.set_length(u64::from(r.count()));
        bar.set_position(up_count(&r));
        let noun = if r.kind() == ohf_domain::RequestKind::Return { "terminated" } else { "up" };
        bar.set_message(format!("{noun} · {}", r.state()));
        if r.state().is_terminal() {
            bar.finish();
            return Ok(r);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        bar.tick();
    }
}
