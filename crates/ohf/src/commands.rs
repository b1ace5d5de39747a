//! Operator commands. Each goes through the JSON API's methods: in-process on the local store,
//! or over the wire to a daemon (`--server`), with the same output either way.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use ohf_domain::{MachineId, Template};
use serde_json::{Value, json};

use crate::cli::{
    Command, ConfigCmd, CreateArgs, Global, Output, RequestCmd, ResilienceCmd, ReturnArgs, SimCmd, TemplatesCmd,
};
use crate::output::{self, Reported, machines_table, print_json, requests_table, templates_table, up_count};
use ohf_server::{Backend, Overrides, Resolved, Runtime};

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
    report(global, dispatch(global, command).await)
}

/// The exit code of an operator command, its error printed as `-o` asks.
pub fn report(global: &Global, done: anyhow::Result<()>) -> ExitCode {
    match done {
        Ok(()) => ExitCode::SUCCESS,
        // The command printed its own answer, failures included.
        Err(e) if e.downcast_ref::<Reported>().is_some() => ExitCode::from(1),
        Err(e) => {
            output::print_error(global.output, &e);
            ExitCode::from(1)
        }
    }
}

pub async fn backend(global: &Global) -> anyhow::Result<Backend> {
    match global.client_options() {
        Some(options) => Backend::remote(&options),
        None => Backend::local(&Resolved::load(&overrides(global))?).await,
    }
}

async fn dispatch(global: &Global, command: Command) -> anyhow::Result<()> {
    if let Command::Templates(TemplatesCmd::Validate { file: Some(file) }) = &command {
        return validate_file(global.output, file);
    }
    if let Command::Config(ConfigCmd::Show) = &command {
        let settings = ohf_server::Resolved::explain(&overrides(global))?;
        match global.output {
            Output::Json => print_json(&serde_json::to_value(&settings)?),
            Output::Table => println!("{}", output::settings_table(&settings)),
        }
        return Ok(());
    }
    if let Command::Doctor = &command {
        return doctor(global).await;
    }
    if let Command::Init(args) = &command {
        return init(global, args).await;
    }
    if let Command::Templates(TemplatesCmd::Generate(args)) = &command {
        // The templates file itself, whatever the output format.
        print_json(&ohf_server::init::generate(&account(args)).await?);
        return Ok(());
    }
    if let Command::Templates(TemplatesCmd::Validate { file: None }) = &command {
        let settings = Resolved::load(&overrides(global))?;
        return validate_file(global.output, &settings.templates_file);
    }
    // The retention of ohf.toml when the command names none.
    let command = match command {
        Command::Retention { days: None } => {
            Command::Retention { days: Some(Resolved::load(&overrides(global))?.retention.days) }
        }
        other => other,
    };
    let backend = backend(global).await?;
    let done = act(&backend, global.output, command).await;
    backend.finish().await;
    done
}

async fn act(backend: &Backend, out: Output, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Templates(TemplatesCmd::List) => {
            let list = backend.call("getAvailableTemplates", json!({})).await?;
            let list = list["templates"].as_array().cloned().unwrap_or_default();
            match out {
                Output::Json => print_json(&Value::Array(list)),
                Output::Table => println!("{}", templates_table(&list)),
            }
        }
        Command::Request(cmd) => request(backend, out, cmd).await?,
        Command::Metrics => print!("{}", backend.metrics().await?),
        Command::Return(args) => return_machines(backend, out, args).await?,
        Command::Route(cmd) => crate::route::route(backend, out, cmd).await?,
        Command::Reconcile => {
            let report = backend.call("reconcile", json!({})).await?;
            match out {
                Output::Json => print_json(&report),
                Output::Table => println!(
                    "examined {} requests, changed {}, {} describe, {} launch and {} terminate calls, {} conflicts",
                    report["examined"],
                    report["changed"],
                    report["describeCalls"],
                    report["launchCalls"],
                    report["terminateCalls"],
                    report["conflicts"]
                ),
            }
            errors_of(&report, "reconcile")?;
        }
        Command::Report { period } => {
            let report = backend.call("getRequestReport", json!({"periodHours": period})).await?;
            match out {
                Output::Json => print_json(&report),
                Output::Table => println!("{}", output::report_table(&report)),
            }
        }
        Command::Failures { period } => {
            let report = backend.call("getRequestReport", json!({"periodHours": period})).await?;
            match out {
                Output::Json => print_json(
                    &json!({"since": report["since"], "until": report["until"], "failures": report["failures"]}),
                ),
                Output::Table => println!("{}", output::failures_table(&report["failures"])),
            }
        }
        Command::Queue => {
            let report = backend.call("getRequestReport", json!({"periodHours": 1})).await?;
            let list =
                backend.call("listRequests", json!({"status": ["PENDING", "IN_PROGRESS"], "limit": 10000})).await?;
            let mut waiting = list["requests"].as_array().cloned().unwrap_or_default();
            let rank = |r: &Value| match r["priority"].as_str() {
                Some("high") => 0,
                Some("low") => 2,
                _ => 1,
            };
            waiting
                .sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| text(&a["createdAt"]).cmp(&text(&b["createdAt"]))));
            match out {
                Output::Json => print_json(&json!({"backlog": report["backlog"], "requests": waiting})),
                Output::Table => {
                    println!("{}", output::backlog_line(&report["backlog"]));
                    if !waiting.is_empty() {
                        println!("\n{}", output::requests_table(&waiting));
                    }
                }
            }
        }
        Command::Capacity { template } => {
            let found = backend.call("getTemplate", json!({"templateId": template})).await?;
            let report = backend.call("getRequestReport", json!({"periodHours": 1})).await?;
            let held: Vec<Value> = report["held"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|h| h["templateId"] == found["templateId"])
                .cloned()
                .collect();
            // What the venues fit, when any of them knows a limit (routing's capacity view).
            let venues = backend.call("getAvailableCapacity", json!({"catalog_spec": found["templateId"]})).await?;
            let limited = venues.as_array().is_some_and(|all| all.iter().any(|v| !v["available_today"].is_null()));
            let venues = if limited { venues } else { json!([]) };
            match out {
                Output::Json => print_json(&json!({"template": found, "held": held, "venues": venues})),
                Output::Table if limited => println!(
                    "{}\n\n{}",
                    output::capacity_table(&found, &held),
                    output::venue_capacity_table(&venues, false)
                ),
                Output::Table => println!("{}", output::capacity_table(&found, &held)),
            }
        }
        Command::Usage { detailed } => {
            let report = backend.call("getRequestReport", json!({"periodHours": 24})).await?;
            match out {
                Output::Json if detailed => print_json(&json!({"held": report["held"], "cost": report["cost"]})),
                Output::Json => print_json(&json!({"held": report["held"]})),
                Output::Table => {
                    println!("{}", output::held_table(&report["held"]));
                    if detailed {
                        println!("\n{}", output::cost_tables(&report["cost"]));
                    }
                }
            }
        }
        Command::Resilience(ResilienceCmd::Status) => {
            let status = backend.call("getResilienceStatus", json!({})).await?;
            let breakers = status["breakers"].as_array().cloned().unwrap_or_default();
            let providers = status["providers"].as_array().cloned().unwrap_or_default();
            match out {
                Output::Json => print_json(&status),
                Output::Table => {
                    println!("{}", output::breakers_table(&breakers));
                    if providers.iter().any(|p| p["operations"].as_object().is_some_and(|o| !o.is_empty())) {
                        println!("\n{}", output::operations_table(&providers));
                    }
                }
            }
        }
        Command::Sim(cmd) => match backend.runtime() {
            Some(rt) => sim(rt, out, cmd).await?,
            None => {
                bail!("sim commands change the simulated cloud's own state file; run them without --server")
            }
        },
        Command::Retention { days } => {
            let days = days.unwrap_or_default();
            if days == 0 {
                println!("retention is off (0 days): nothing deleted");
                return Ok(());
            }
            let report = backend.call("purgeHistory", json!({"keepDays": days})).await?;
            match out {
                Output::Json => print_json(&report),
                Output::Table => println!("deleted {} finished requests older than {days} days", report["deleted"]),
            }
        }
        Command::Sweep { min_age, dry_run, max, max_share } => {
            let params = json!({"minAgeSeconds": min_age, "dryRun": dry_run, "maxTerminations": max, "maxSharePercent": max_share});
            let report = backend.call("sweepOrphans", params).await?;
            match out {
                Output::Json => print_json(&report),
                Output::Table => {
                    let orphans = report["orphans"].as_array().cloned().unwrap_or_default();
                    let terminated = report["terminated"].as_array().cloned().unwrap_or_default();
                    println!(
                        "examined {} machines of this installation ({} of other installations left alone), {} orphaned, terminated {}{}",
                        report["examined"],
                        report["foreign"],
                        orphans.len(),
                        terminated.len(),
                        if dry_run { " (dry run)" } else { "" }
                    );
                    for t in &orphans {
                        println!("  {}: {}", text(&t["machineId"]), text(&t["reason"]));
                    }
                    if let Some(why) = report["refused"].as_str() {
                        println!("refused: {why}");
                    }
                }
            }
            errors_of(&report, "sweep")?;
            if let Some(why) = report["refused"].as_str() {
                bail!("sweep refused: {why}");
            }
        }
        Command::GetAvailableTemplates => print_json(&backend.call("getAvailableTemplates", json!({})).await?),
        Command::RequestMachines(args) => {
            let doc = camel_case(method_document(&args)?);
            print_json(&backend.call("requestMachines", doc).await?);
        }
        Command::GetRequestStatus { request_ids } => {
            print_json(&backend.call("getRequestStatus", json!({"requestIds": request_ids})).await?);
        }
        Command::ExecuteProviderOperation(_)
        | Command::SelectProviderStrategy(_)
        | Command::RegisterProviderStrategy(_)
        | Command::ConfigureProviderStrategy(_)
        | Command::UpdateProviderHealth(_)
        | Command::GetProviderHealth(_)
        | Command::ListAvailableProviders(_)
        | Command::GetProviderMetrics(_)
        | Command::GetProviderCapabilities(_) => {
            let (method, args) = command.strategy_method().expect("a provider-strategy method");
            let answer = backend.call(method, method_document(args)?).await?;
            print_json(&answer);
        }
        Command::Hf(_)
        | Command::Quickstart(_)
        | Command::Serve(_)
        | Command::Completions { .. }
        | Command::Config(_)
        | Command::Doctor
        | Command::Init(_)
        | Command::Mcp { .. }
        | Command::Man
        | Command::Templates(TemplatesCmd::Validate { .. } | TemplatesCmd::Generate(_)) => {
            unreachable!("dispatched elsewhere")
        }
    }
    Ok(())
}

/// The top-level fields of `doc` in the JSON API's camelCase (`template_id` → `templateId`).
fn camel_case(doc: Value) -> Value {
    let Value::Object(fields) = doc else { return doc };
    let camel = |k: &str| {
        let mut out = String::new();
        let mut upper = false;
        for c in k.chars() {
            match c {
                '_' => upper = true,
                c if upper => {
                    out.extend(c.to_uppercase());
                    upper = false;
                }
                c => out.push(c),
            }
        }
        out
    };
    Value::Object(fields.into_iter().map(|(k, v)| (camel(&k), v)).collect())
}

/// `text` without `#` comments that run to the end of a line outside strings (the seed's
/// examples carry such notes inside their JSON).
fn without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let (mut in_string, mut escaped) = (false, false);
        let mut end = line.len();
        for (i, c) in line.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if in_string => escaped = true,
                '"' => in_string = !in_string,
                '#' if !in_string => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        out.push_str(&line[..end]);
        out.push('\n');
    }
    out
}

/// The document of `--data` or `--file`; bad JSON is a validation error naming where it was.
fn method_document(args: &crate::cli::MethodArgs) -> anyhow::Result<Value> {
    let (text, field) = match (&args.data, &args.file) {
        (Some(d), _) => (d.clone(), "data".to_owned()),
        (None, Some(f)) => (
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?,
            format!("file {}", f.display()),
        ),
        (None, None) => return Ok(json!({})),
    };
    let parsed =
        serde_json::from_str::<Value>(&text).or_else(|e| serde_json::from_str(&without_comments(&text)).map_err(|_| e));
    match parsed {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(ohf_api::ApiError::invalid(&field, "must be a JSON object").into()),
        Err(e) => Err(ohf_api::ApiError::invalid(&field, format!("not valid JSON: {e}")).into()),
    }
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

fn errors_of(report: &Value, what: &str) -> anyhow::Result<()> {
    let errors: Vec<String> = report["errors"].as_array().map(|e| e.iter().map(text).collect()).unwrap_or_default();
    if !errors.is_empty() {
        bail!("{what} met errors: {}", errors.join("; "));
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
    raw.iter().map(|t| pair("--tag", t)).collect()
}

/// `--meta KEY=VALUE` pairs: a value that reads as a JSON list or object is one (as
/// `callback_events` needs), anything else a string.
fn parse_metadata(raw: &[String]) -> anyhow::Result<BTreeMap<String, Value>> {
    raw.iter()
        .map(|m| {
            let (k, v) = pair("--meta", m)?;
            let value = match v.chars().next() {
                Some('[' | '{') => serde_json::from_str(&v).with_context(|| format!("--meta {k}: {v} is not JSON"))?,
                _ => Value::String(v),
            };
            Ok((k, value))
        })
        .collect()
}

fn pair(flag: &str, given: &str) -> anyhow::Result<(String, String)> {
    match given.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => bail!("{flag} '{given}' is not KEY=VALUE"),
    }
}

fn show(out: Output, requests: &[Value]) {
    match out {
        Output::Json => print_json(&json!(requests)),
        Output::Table => {
            println!("{}", requests_table(requests));
            for r in requests.iter().filter(|r| r["machines"].as_array().is_some_and(|m| !m.is_empty())) {
                println!("\n{}:\n{}", text(&r["requestId"]), machines_table(r));
            }
        }
    }
}

fn show_one(out: Output, r: &Value) {
    match out {
        Output::Json => print_json(r),
        Output::Table => show(out, std::slice::from_ref(r)),
    }
}

async fn create(backend: &Backend, out: Output, args: CreateArgs) -> anyhow::Result<()> {
    let mut params = json!({
        "templateId": args.template,
        "machineCount": args.count,
        "tags": parse_tags(&args.tags)?,
        "placement": {"availabilityZones": args.zones},
    });
    if !args.metadata.is_empty() {
        params["metadata"] = json!(parse_metadata(&args.metadata)?);
    }
    for (field, value) in [("requestId", args.request_id), ("priority", args.priority), ("provider", args.provider)] {
        if let Some(v) = value {
            params[field] = json!(v);
        }
    }
    if let Some(t) = args.timeout {
        params["timeout"] = json!(t);
    }
    let r = backend.call("requestMachines", params).await?;
    if args.wait {
        if out == Output::Table {
            println!(
                "{}: {} machines of {} requested",
                text(&r["requestId"]),
                r["machineCount"],
                r["templateId"].as_str().unwrap_or("-")
            );
        }
        let done = watch(backend, &text(&r["requestId"]), out == Output::Table).await?;
        show_one(out, &done);
    } else {
        show_one(out, &r);
    }
    Ok(())
}

async fn request(backend: &Backend, out: Output, cmd: RequestCmd) -> anyhow::Result<()> {
    match cmd {
        RequestCmd::Create(args) => create(backend, out, args).await?,
        RequestCmd::Status { ids } => {
            let found = backend.call("getRequestStatus", json!({"requestIds": ids})).await?;
            let list = found["requests"].as_array().cloned().unwrap_or_default();
            if let Some(missing) = list.iter().find(|r| r.get("error").is_some()) {
                let id = text(&missing["requestId"]);
                return Err(ohf_app::AppError::from(ohf_domain::DomainError::RequestNotFound { request_id: id }).into());
            }
            show(out, &list);
        }
        RequestCmd::Watch { id } => {
            let r = watch(backend, &id, out == Output::Table).await?;
            show_one(out, &r);
        }
        RequestCmd::Cancel { id } => {
            let r = backend.call("cancelRequest", json!({"requestId": id})).await?;
            show_one(out, &r);
        }
        RequestCmd::List { state, limit } => {
            let found = backend.call("listRequests", json!({"status": state, "limit": limit})).await?;
            let list = found["requests"].as_array().cloned().unwrap_or_default();
            match out {
                Output::Json => print_json(&Value::Array(list)),
                Output::Table => println!("{}", requests_table(&list)),
            }
        }
        RequestCmd::History { id } => {
            let found = backend.call("getRequestHistory", json!({"requestId": id})).await?;
            let events = found["events"].as_array().cloned().unwrap_or_default();
            match out {
                Output::Json => print_json(&Value::Array(events)),
                Output::Table => {
                    for e in &events {
                        let name = e["event"]["type"].as_str().unwrap_or("-");
                        let by = e["by"].as_str().unwrap_or("-");
                        println!("{:>4}  {}  {:<22} {:<12} {}", e["seq"], text(&e["at"]), name, by, e["event"]);
                    }
                }
            }
        }
    }
    Ok(())
}

async fn return_machines(backend: &Backend, out: Output, args: ReturnArgs) -> anyhow::Result<()> {
    // EC2-style ids are ids; anything else is a host name.
    let (ids, names): (Vec<String>, Vec<String>) = args.machines.iter().cloned().partition(|m| m.starts_with("i-"));
    let mut params = json!({"machineIds": ids, "machineNames": names, "force": args.force});
    if let Some(id) = args.request_id {
        params["requestId"] = json!(id);
    }
    if let Some(secs) = args.drain_timeout {
        params["drainTimeout"] = json!(secs);
    }
    let r = backend.call("requestReturnMachines", params).await?;
    let r = if args.wait { watch(backend, &text(&r["requestId"]), out == Output::Table).await? } else { r };
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

/// Follows a request until it finishes, showing machines up out of machines asked: one
/// long-poll after another on a daemon, a look every half second on the local store (each look
/// advances it when no daemon does).
pub async fn watch(backend: &Backend, id: &str, progress: bool) -> anyhow::Result<Value> {
    let bar = if progress { ProgressBar::new(0) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(id.to_owned());
    let wait = if backend.is_local() { 0 } else { 20 };
    let mut from = 0u64;
    loop {
        let update =
            backend.call("watchRequest", json!({"requestId": id, "fromSeq": from, "waitSeconds": wait})).await?;
        let r = &update["request"];
        bar.set_length(r["machineCount"].as_u64().unwrap_or(0));
        bar.set_position(up_count(r));
        let noun = if r["kind"] == "return" { "terminated" } else { "up" };
        bar.set_message(format!("{noun} · {}", text(&r["status"])));
        if update["final"] == true {
            bar.finish();
            return Ok(r.clone());
        }
        from = update["nextSeq"].as_u64().unwrap_or(from);
        if backend.is_local() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        bar.tick();
    }
}

/// `ohf doctor`: the configuration first (a configuration that does not load is the finding),
/// then the installation's own checks.
/// Asks on the terminal, one line per question.
struct Terminal;

impl ohf_server::init::Ask for Terminal {
    fn ask(&self, question: &str, default: &str) -> anyhow::Result<String> {
        use std::io::Write;
        eprint!("{question} [{default}]: ");
        std::io::stderr().flush()?;
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        let line = line.trim();
        Ok(if line.is_empty() { default.to_owned() } else { line.to_owned() })
    }
}

/// The account flags as `ohf init` and `ohf templates generate` take them.
fn account(a: &crate::cli::AccountArgs) -> ohf_server::init::Account {
    let region = a.region.clone().unwrap_or_else(|| {
        ["AWS_REGION", "AWS_DEFAULT_REGION"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|r| !r.is_empty()))
            .unwrap_or_else(|| "us-east-1".into())
    });
    ohf_server::init::Account {
        region,
        profile: a.profile.clone(),
        endpoint_url: a.endpoint_url.clone(),
        vpc: a.vpc.clone(),
        subnets: a.subnets.clone(),
        security_groups: a.security_groups.clone(),
        image: a.image.clone(),
        instance_types: a.instance_types.clone(),
        max_number: a.max_number,
    }
}

async fn init(global: &Global, a: &crate::cli::InitArgs) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let options = ohf_server::init::InitOptions {
        confdir: Resolved::confdir(&overrides(global)),
        provider: a.provider_name.clone(),
        account: account(&a.account),
        cluster: a.cluster.clone(),
        force: a.force,
        hostfactory: a.hostfactory.clone(),
        instance: a.instance.clone(),
    };
    let interactive = !a.yes && std::io::stdin().is_terminal();
    let ask: &dyn ohf_server::init::Ask = if interactive { &Terminal } else { &ohf_server::init::Defaults };
    let written = ohf_server::init::run(&options, ask).await?;
    match global.output {
        Output::Json => print_json(&json!({
            "written": written.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
            "notes": written.notes,
            "confdir": written.confdir.display().to_string(),
        })),
        Output::Table => {
            for note in &written.notes {
                println!("{note}");
            }
            for file in &written.files {
                println!("wrote {}", file.display());
            }
            println!("next: ohf --confdir {} doctor", written.confdir.display());
        }
    }
    Ok(())
}

/// Whether a Postgres store's connection must be encrypted: a finding unless the URL asks for
/// TLS (`sslmode=require`, `verify-ca`, `verify-full`) or the server is on this host.
fn postgres_tls(url: &str) -> Option<Value> {
    let rest = url.strip_prefix("postgres://").or_else(|| url.strip_prefix("postgresql://"))?;
    let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
    let host = authority.rsplit('@').next().unwrap_or_default().split('/').next().unwrap_or_default();
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h).trim_matches(['[', ']']);
    let mode = query.split('&').find_map(|kv| kv.strip_prefix("sslmode=")).unwrap_or("prefer");
    let local =
        host.is_empty() || host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    let (ok, detail) = match mode {
        "require" | "verify-ca" | "verify-full" => (true, format!("encrypted (sslmode={mode})")),
        _ if local => (true, format!("on this host ({host}); not encrypted")),
        _ => (
            false,
            format!(
                "sslmode={mode} does not require encryption to {host}; fix: add sslmode=verify-full&sslrootcert=<the server's CA> to database_url"
            ),
        ),
    };
    Some(json!({"check": "postgres tls", "ok": ok, "detail": detail}))
}

async fn doctor(global: &Global) -> anyhow::Result<()> {
    let mut checks = Vec::new();
    let loaded = Resolved::load(&overrides(global));
    checks.push(match &loaded {
        Ok(s) => json!({"check": "configuration", "ok": true, "detail": s.config_file.as_ref().map_or_else(
            || "defaults and environment (no ohf.toml)".to_owned(),
            |f| format!("{} loads", f.display()),
        )}),
        Err(e) => json!({"check": "configuration", "ok": false, "detail": format!("{e:#}")}),
    });
    if let Ok(settings) = &loaded
        && global.server.is_none()
        && let Some(tls) = postgres_tls(&settings.database_url)
    {
        checks.push(tls);
    }
    if loaded.is_ok() {
        match backend(global).await {
            Ok(backend) => {
                match backend.call("checkInstallation", json!({})).await {
                    Ok(found) => {
                        if let Some(server) = &global.server {
                            checks
                                .push(json!({"check": "daemon", "ok": true, "detail": format!("answers at {server}")}));
                        }
                        checks.extend(found["checks"].as_array().cloned().unwrap_or_default())
                    }
                    Err(e) => checks.push(json!({"check": "installation", "ok": false, "detail": format!("{e:#}")})),
                }
                backend.finish().await;
            }
            Err(e) => checks.push(json!({"check": "store and providers", "ok": false, "detail": format!("{e:#}")})),
        }
    }
    let ok = checks.iter().all(|c| c["ok"] == true);
    match global.output {
        Output::Json => print_json(&json!({"ok": ok, "checks": checks})),
        Output::Table => println!("{}", output::checks_table(&checks)),
    }
    if ok { Ok(()) } else { Err(Reported.into()) }
}

#[cfg(test)]
mod doctor_tests {
    use super::postgres_tls;

    #[test]
    fn a_remote_postgres_must_require_tls_and_a_local_one_need_not() {
        let ok = |url: &str| postgres_tls(url).map(|v| v["ok"] == true);
        assert_eq!(ok("sqlite:/tmp/ohf.db"), None, "not a Postgres store");
        assert_eq!(ok("postgres://ohf@db.example.com/ohf"), Some(false));
        assert_eq!(ok("postgres://ohf:pw@db.example.com:5432/ohf?sslmode=prefer"), Some(false));
        assert_eq!(ok("postgres://ohf@db.example.com/ohf?application_name=x&sslmode=verify-full"), Some(true));
        assert_eq!(ok("postgresql://ohf@10.0.0.5/ohf?sslmode=require"), Some(true));
        assert_eq!(ok("postgres://postgres@127.0.0.1:5432/test"), Some(true), "on this host");
        assert_eq!(ok("postgres://postgres@[::1]:5432/test"), Some(true));
        assert_eq!(ok("postgres://postgres@localhost/test"), Some(true));
        let finding = postgres_tls("postgres://ohf@db.example.com/ohf").unwrap();
        assert!(finding["detail"].as_str().unwrap().contains("fix: add sslmode=verify-full"), "{finding}");
    }
}
