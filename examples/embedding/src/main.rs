//! A service that embeds ohf instead of running the `ohf` binary: it brings its own store
//! (here in memory; `ohf_store_sql::SqliteStore` or `PostgresStore` for durable state), a cloud
//! provider (the simulated cloud; `ohf_cloud_aws::AwsProvider` for EC2), a template catalog and
//! a clock, then sends a command, asks a query, and listens on the event bus.
//!
//! `cargo run -p ohf-example-embedding` prints what happens and exits 0 when the machines came
//! up and went back; `cargo xtask test` runs it.

use std::process::ExitCode;
use std::sync::Arc;

use ohf_app::memory::{MemoryStore, StaticCatalog};
use ohf_app::queries::GetRequestStatus;
use ohf_app::{App, AppSettings, EventBus, MachineRef, RequestMachines, RequestReturn, SystemClock, UuidIds};
use ohf_cloud_sim::{SimCloud, SimConfig};
use ohf_domain::{ProviderName, RequestState, Template};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("embedding example failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    // The ports: a store, a catalog, providers, a clock, ids, and the bus.
    let template = Template::parse_file(
        r#"{"templates": [{"templateId": "web", "maxNumber": 10, "imageId": "ami-1", "vmType": "m5.large"}]}"#,
    )
    .map_err(|e| e.to_string())?;
    let clock = Arc::new(SystemClock);
    let sim = SimCloud::in_memory(
        ProviderName::new("sim-1").map_err(|e| e.to_string())?,
        SimConfig { launch_latency_ms: 0, shutdown_latency_ms: 0, ..SimConfig::default() },
        clock.clone(),
    );
    let bus = EventBus::default();
    let app = App::builder(Arc::new(MemoryStore::new()), Arc::new(StaticCatalog(template)))
        .provider(Arc::new(sim))
        .clock(clock)
        .ids(Arc::new(UuidIds))
        .bus(bus.clone())
        .settings(AppSettings::default())
        .build()
        .map_err(|e| e.to_string())?;

    // A subscriber: every event of every request, after it is stored.
    let mut events = bus.subscribe();
    let listener = tokio::spawn(async move {
        let mut seen = 0;
        while let Ok(e) = events.recv().await {
            println!("event: {} {}", e.request_id, e.event.name());
            seen += 1;
        }
        seen
    });

    // A command: two machines of "web".
    let ask = RequestMachines { template_id: "web".into(), count: 2, ..Default::default() };
    let request = app.execute(ask).await.map_err(|e| e.to_string())?;
    println!("requested {} ({})", request.id(), request.state());

    // The lifecycle: what a daemon's worker does in the background, one step here.
    app.reconcile(None).await;

    // A query: the request's status with its machines.
    let status =
        app.ask(GetRequestStatus { request_ids: vec![request.id().to_string()] }).await.map_err(|e| e.to_string())?;
    let Some(done) = status.into_iter().next().and_then(|(_, r)| r) else {
        return Err("the request is not stored".into());
    };
    println!("{}: {} with {} machines", done.id(), done.state(), done.machines().len());
    if done.state() != RequestState::Completed || done.machines().len() != 2 {
        return Err(format!("expected 2 running machines, got {done:?}"));
    }

    // Another command: give the machines back.
    let machines = done.machines().iter().map(|m| MachineRef { id: Some(m.id().to_string()), name: None }).collect();
    let back = app.execute(RequestReturn { machines, ..Default::default() }).await.map_err(|e| e.to_string())?;
    app.reconcile(None).await;
    let back =
        app.ask(GetRequestStatus { request_ids: vec![back.id().to_string()] }).await.map_err(|e| e.to_string())?;
    let state = back.first().and_then(|(_, r)| r.as_ref()).map(|r| r.state());
    println!("returned: {state:?}");
    if state != Some(RequestState::Completed) {
        return Err(format!("the return did not complete: {state:?}"));
    }

    drop(app);
    drop(bus);
    let seen = listener.await.map_err(|e| e.to_string())?;
    println!("the subscriber saw {seen} events");
    if seen == 0 {
        return Err("the subscriber saw nothing".into());
    }
    Ok(())
}
