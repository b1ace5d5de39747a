//! `ohf quickstart`: the main job end to end on the embedded default, no credentials.

use std::time::Instant;

use anyhow::Context;
use serde_json::{Value, json};

use crate::cli::{Global, Output, QuickstartArgs};
use crate::commands::watch;
use crate::output::{machines_table, print_json, templates_table};
use ohf_server::Backend;
use ohf_server::{Overrides, Resolved};

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
    let backend = Backend::local(&Resolved { advance_on_poll: true, ..settings }).await?;
    let table = global.output == Output::Table;
    let say = |s: String| {
        if table {
            println!("{s}");
        }
    };
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();

    say(format!("ohf quickstart: SQLite and the simulated cloud in {}\n", dir.display()));
    let templates = backend.call("getAvailableTemplates", json!({})).await?;
    say(format!("templates:\n{}\n", templates_table(templates["templates"].as_array().map_or(&[], Vec::as_slice))));

    let started = Instant::now();
    let r =
        backend.call("requestMachines", json!({"templateId": "OnDemand-Minimal", "machineCount": args.count})).await?;
    say(format!("requested {} machines of OnDemand-Minimal: {}", r["machineCount"], text(&r["requestId"])));
    let up = watch(&backend, &text(&r["requestId"]), table).await?;
    let provision_secs = started.elapsed().as_secs_f64();
    say(format!(
        "\n{} is {} after {provision_secs:.1} s:\n{}\n",
        text(&up["requestId"]),
        text(&up["status"]),
        machines_table(&up)
    ));
    anyhow::ensure!(
        up["status"] == "COMPLETED",
        "request ended {}: {}",
        text(&up["status"]),
        text(&up["errorMessage"])
    );

    let started = Instant::now();
    let ids: Vec<Value> = up["machines"].as_array().into_iter().flatten().map(|m| m["machineId"].clone()).collect();
    let count = ids.len();
    let ret = backend.call("requestReturnMachines", json!({"machineIds": ids})).await?;
    say(format!("returning them: {}", text(&ret["requestId"])));
    let back = watch(&backend, &text(&ret["requestId"]), table).await?;
    let return_secs = started.elapsed().as_secs_f64();
    say(format!(
        "\n{} is {} after {return_secs:.1} s:\n{}\n",
        text(&back["requestId"]),
        text(&back["status"]),
        machines_table(&back)
    ));
    anyhow::ensure!(back["status"] == "COMPLETED", "return ended {}", text(&back["status"]));

    if table {
        println!("done: {count} machines provisioned and returned.");
        println!("try the Host Factory interface on the same state:");
        println!(
            "  echo '{{}}' | ohf --confdir {} --workdir {} hf getAvailableTemplates",
            confdir.display(),
            dir.join("work").display()
        );
    } else {
        print_json(&json!({
            "dir": dir.display().to_string(),
            "provisionRequest": up,
            "returnRequest": back,
            "provisionSeconds": provision_secs,
            "returnSeconds": return_secs,
        }));
    }
    Ok(())
}
