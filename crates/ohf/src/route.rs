//! `ohf route`: the routing-requests resource from the command line.

use std::io::Read;

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};

use crate::cli::{Output, RouteArgs, RouteCmd};
use crate::output::{self, print_json};
use ohf_server::Backend;

pub async fn route(backend: &Backend, out: Output, cmd: RouteCmd) -> anyhow::Result<()> {
    match cmd {
        RouteCmd::Create(args) => {
            let form = form(args)?;
            let made = backend.call("routeRequest", form).await?;
            show(out, &made);
            if made["status"] == "REJECTED" {
                return Err(output::Reported.into());
            }
        }
        RouteCmd::Get { id, recheck_host } => {
            show(out, &backend.call("getRoutingRequest", json!({"id": id, "recheckHost": recheck_host})).await?);
        }
        RouteCmd::List { status, requester } => {
            let all = backend
                .call("listRoutingRequests", json!({"status": status, "requester": requester, "details": true}))
                .await?;
            match out {
                Output::Json => print_json(&all),
                Output::Table => println!("{}", output::routing_list(&all)),
            }
        }
        RouteCmd::Workloads { id, recheck_host } => {
            let all = backend
                .call("getRoutingWorkloads", json!({"id": id, "details": true, "recheckHost": recheck_host}))
                .await?;
            match out {
                Output::Json => print_json(&all),
                Output::Table => println!("{}", output::workloads_table(&all)),
            }
        }
        RouteCmd::Delete { id, workload, record_placement } => {
            let left = backend
                .call("unrouteRequest", json!({"id": id, "workloadId": workload, "recordPlacement": record_placement}))
                .await?;
            match out {
                Output::Json => print_json(&left),
                Output::Table if left["deleted"] == true => println!("routing request {id} deleted"),
                Output::Table => println!("workload unrouted; routing request {id} remains"),
            }
        }
        RouteCmd::Capacity { template, date, profile } => {
            let all = backend
                .call(
                    "getAvailableCapacity",
                    json!({"catalog_spec": template, "expected_date": date, "workload_profile": profile}),
                )
                .await?;
            match out {
                Output::Json => print_json(&all),
                Output::Table => println!("{}", output::venue_capacity_table(&all, date.is_some())),
            }
        }
    }
    Ok(())
}

fn show(out: Output, request: &Value) {
    match out {
        Output::Json => print_json(request),
        Output::Table => println!("{}", output::routing_table(request)),
    }
}

/// The routing-request form: the file's, with the flags' workloads and options over it.
fn form(args: RouteArgs) -> anyhow::Result<Value> {
    let mut form: Map<String, Value> = match &args.file {
        None => Map::new(),
        Some(path) => {
            let text = if path.as_os_str() == "-" {
                let mut text = String::new();
                std::io::stdin().read_to_string(&mut text).context("cannot read standard input")?;
                text
            } else {
                std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
            };
            match serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))? {
                Value::Object(m) => m,
                _ => bail!("{}: a routing request is a JSON object", path.display()),
            }
        }
    };
    let mut workloads = form.remove("workloads").and_then(|w| w.as_array().cloned()).unwrap_or_default();
    for spec in &args.workloads {
        let Some((name, rest)) = spec.split_once('=') else {
            bail!("--workload {spec}: expected NAME=TEMPLATE or NAME=TEMPLATE:COUNT")
        };
        let (template, count) = match rest.split_once(':') {
            Some((t, c)) => (
                t,
                c.parse::<i64>().ok().filter(|c| *c > 0).with_context(|| format!("--workload {spec}: bad count"))?,
            ),
            None => (rest, 1),
        };
        let mut w = json!({"name": name, "catalog_spec": template, "count": count});
        if let Some(p) = &args.profile {
            w["workload_profile"] = json!(p);
        }
        workloads.push(w);
    }
    if workloads.is_empty() {
        bail!("no workloads: give --workload NAME=TEMPLATE or a form with --file");
    }
    form.insert("workloads".into(), Value::Array(workloads));
    if let Some(d) = args.date {
        form.insert("expected_date".into(), json!(d));
    }
    let mut scopes = form.remove("scopes").and_then(|s| s.as_array().cloned()).unwrap_or_default();
    for scope in &args.scopes {
        let (env, groups) = scope.split_once(':').unwrap_or((scope, ""));
        let mut s = Map::new();
        if !env.is_empty() {
            s.insert("control_environment".into(), json!(env));
        }
        let groups: Vec<&str> = groups.split(',').filter(|g| !g.is_empty()).collect();
        if !groups.is_empty() {
            s.insert("infrastructure_groups".into(), json!(groups));
        }
        if s.is_empty() {
            bail!("--scope {scope}: expected ENV, ENV:GROUP[,GROUP] or :GROUP");
        }
        scopes.push(Value::Object(s));
    }
    if !scopes.is_empty() {
        form.insert("scopes".into(), Value::Array(scopes));
    }
    if let Some(m) = args.mode {
        form.insert("mode".into(), json!(m));
    }
    if !args.strategies.is_empty() {
        form.insert("sensor_placement_strategy".into(), json!(args.strategies));
    }
    if !args.required.is_empty() {
        form.insert("required_sensor_types".into(), json!(args.required));
    }
    if args.force {
        form.insert("force".into(), json!(true));
    }
    if args.provision {
        form.insert("provision".into(), json!(true));
    }
    Ok(Value::Object(form))
}
