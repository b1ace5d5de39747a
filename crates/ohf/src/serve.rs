//! `ohf serve`: the daemon. A worker advances every request in the background under claims,
//! so several daemons on one Postgres share the work; /healthz, /readyz and /status report on
//! it, and POST /rpc is the HTTP JSON API (ohf-http). SIGTERM or SIGINT stops it cleanly: the cycle under way finishes (within the grace
//! period), claims are released, and the process exits 0.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use ohf_app::{Worker, WorkerConfig};
use serde_json::json;
use tokio::sync::watch;

use crate::cli::{Global, ServeArgs};
use crate::commands::overrides;
use crate::settings::Resolved;
use crate::wiring;

struct Health {
    worker: Arc<Worker>,
    interval: Duration,
    clock: Arc<dyn ohf_app::Clock>,
}

pub async fn run(global: &Global, args: &ServeArgs) -> ExitCode {
    crate::output::log_to_stderr(global.verbose.max(1));
    match serve(global, args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "serve failed");
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    format!("{host}-{}", std::process::id())
}

async fn serve(global: &Global, args: &ServeArgs) -> anyhow::Result<()> {
    let settings = Resolved::load(&overrides(global))?;
    let s = &settings.serve;
    let config = WorkerConfig {
        id: args.worker_id.clone().or(s.worker_id.clone()).unwrap_or_else(default_worker_id),
        interval: Duration::from_millis(s.interval_ms),
        claim_ttl: Duration::from_secs(s.claim_ttl_secs),
        batch: s.batch,
        sweep_interval: (s.sweep_interval_secs > 0).then(|| Duration::from_secs(s.sweep_interval_secs)),
        sweep_min_age: Duration::from_secs(s.sweep_min_age_secs),
    };
    let listen = args.listen.clone().unwrap_or_else(|| s.listen.clone());
    let grace = Duration::from_secs(s.shutdown_grace_secs);
    let runtime = wiring::build(&settings).await?;
    let app = Arc::new(runtime.app);
    let worker = Arc::new(Worker::new(app.clone(), config.clone()));
    let health =
        Arc::new(Health { worker: worker.clone(), interval: config.interval, clock: Arc::new(ohf_app::SystemClock) });
    let router = Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(ready))
        .route("/status", get(|State(h): State<Arc<Health>>| async move { Json(h.worker.status()) }))
        .with_state(health)
        .merge(ohf_http::router_with(
            app,
            ohf_http::ApiOptions { tokens: s.tokens.clone(), rate_limit: s.rate_limit },
            Arc::new(ohf_app::SystemClock),
        ));
    let listener =
        tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(worker = %config.id, addr = %listener.local_addr()?, store = store_kind(&settings), "serving");
    if s.tokens.is_empty() && !listener.local_addr()?.ip().is_loopback() {
        tracing::warn!("the HTTP API has no tokens and listens beyond loopback: anyone who reaches it may call it");
    }

    let (stop, stopped) = watch::channel(false);
    let worker_task = tokio::spawn({
        let worker = worker.clone();
        let stopped = stopped.clone();
        async move { worker.run(stopped).await }
    });
    let mut server_stop = stopped.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = server_stop.wait_for(|s| *s).await;
            })
            .await
    });

    let signal = shutdown_signal().await?;
    tracing::info!(signal, "stopping: finishing the cycle under way");
    let _ = stop.send(true);
    match tokio::time::timeout(grace, worker_task).await {
        Ok(_) => {}
        // Every step is stored before its cloud calls, so an unfinished one resumes elsewhere.
        Err(_) => {
            tracing::warn!(grace_secs = grace.as_secs(), "cycle still running after the grace period; left resumable")
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    tracing::info!("stopped");
    Ok(())
}

fn store_kind(settings: &Resolved) -> &'static str {
    if settings.database_url.starts_with("sqlite:") { "sqlite" } else { "postgres" }
}

async fn ready(State(h): State<Arc<Health>>) -> impl IntoResponse {
    let status = h.worker.status();
    let window = (h.interval * 3).max(Duration::from_secs(10));
    let fresh = status.last_cycle.is_some_and(|t| h.clock.now().secs_since(t) <= window.as_secs() as i64);
    let code = if fresh && !status.stopping { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(json!({"ready": code == StatusCode::OK, "worker": status})))
}

async fn shutdown_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}
