//! `ohf quickstart`: the main job end to end on the embedded default, no credentials.

use std::time::Instant;

use anyhow::Context;
use ohf_app::{MachineRef, RequestMachines, RequestReturn};
use serde_json::json;

use crate::cli::{Global, Output, QuickstartArgs};
use crate::commands::watch;
use crate::output::{machines_table, print_json, templates_table};
use crate::settings::{Overrides, Resolved};
use crate::wiring;

const CONFIG: &str = r#"# ohf configuration written by `ohf quickstart`.
[request]
default_timeout_secs = 600

[[providers]]
name = "sim-1"
type = "sim"
launch_latency_ms = 1500
shutdown_latency_ms = 800
"#;

fn templates() -> serde_json::Value {
    json!({"templates": [
        {"templateId": "OnDemand-Minimal", "maxNumber": 10, "imageId": "ami-sim", "vmType": "m5.large",
         "instanceTags": "team=quickstart", "priceType": "ondemand"},
        {"templateId": "Spot-Compute", "maxNumber": 50, "imageId": "ami-sim",
         "vmTypes": {"c5.xlarge": 1, "c5.2xlarge": 2}, "priceType": "spot", "providerApi": "EC2Fleet"}
    ]})
}

pub async fn run(global: &Global, args: &QuickstartArgs) -> anyhow::Result<()> {
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("ohf-quickstart-{}", std::process::id())),
    };
    let confdir = dir.join("conf");
    std::fs::create_dir_all(&confdir).with_context(|| format!("cannot create {}", confdir.display()))?;
    std::fs::write(confdir.join("ohf.toml"), CONFIG)?;
    std::fs::write(confdir.join("awsprov_templates.json"), serde_json::to_string_pretty(&templates())?)?;
    let settings = Resolved::load(&Overrides {
        config: Some(confdir.join("ohf.toml")),
        confdir: Some(confdir.clone()),
        workdir: Some(dir.join("work")),
        logdir: Some(dir.join("log")),
        database_url: None,
    })?;
    let rt = wiring::build(&settings).await?;
    let app = &rt.app;
    let table = global.output == Output::Table;
    let say = |s: String| {
        if table {
            println!("{s}");
        }
    };

    say(format!("ohf quickstart: SQLite and the simulated cloud in {}\n", dir.display()));
    let templates = app.available_templates().await?;
    say(format!("templates:\n{}\n", templates_table(&templates)));

    let started = Instant::now();
    let r = app
        .request_machines(RequestMachines {
            template_id: "OnDemand-Minimal".into(),
            count: args.count,
            ..Default::default()
        })
        .await?;
    say(format!("requested {} machines of OnDemand-Minimal: {}", r.count(), r.id()));
    let up = watch(app, r.id(), table, true).await?;
    let provision_secs = started.elapsed().as_secs_f64();
    say(format!("\n{} is {} after {provision_secs:.1} s:\n{}\n", up.id(), up.state(), machines_table(&up)));
    anyhow::ensure!(
        up.state() == ohf_domain::RequestState::Completed,
        "request ended {}: {}",
        up.state(),
        up.error().unwrap_or_default()
    );

    let started = Instant::now();
    let machines = up
        .machines()
        .iter()
        .map(|m| MachineRef { id: Some(m.id().to_string()), name: m.name().map(String::from) })
        .collect();
    let ret = app.request_return(RequestReturn { machines, ..Default::default() }).await?;
    say(format!("returning them: {}", ret.id()));
    let back = watch(app, ret.id(), table, true).await?;
    let return_secs = started.elapsed().as_secs_f64();
    say(format!("\n{} is {} after {return_secs:.1} s:\n{}\n", back.id(), back.state(), machines_table(&back)));
    anyhow::ensure!(back.state() == ohf_domain::RequestState::Completed, "return ended {}", back.state());

    if table {
        println!("done: {} machines provisioned and returned.", up.machines().len());
        println!("try the Host Factory interface on the same state:");
        println!(
            "  echo '{{}}' | ohf --confdir {} --workdir {} hf getAvailableTemplates",
            confdir.display(),
            dir.join("work").display()
        );
    } else {
        print_json(&json!({
            "dir": dir.display().to_string(),
            "provisionRequest": ohf_app::view::request_view(&up),
            "returnRequest": ohf_app::view::request_view(&back),
            "provisionSeconds": provision_secs,
            "returnSeconds": return_secs,
        }));
    }
    Ok(())
}
