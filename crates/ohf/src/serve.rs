//! `ohf serve`: the daemon. A worker advances every request in the background under claims,
//! so several daemons on one Postgres share the work. One listener (TLS optional) serves the
//! gRPC API (ohf-grpc, with health and reflection), the HTTP JSON API (`POST /rpc`, ohf-http),
//! the Host Factory operations for scripts in client mode (`POST /hf/{operation}`) and /healthz,
//! /readyz, /status. SIGTERM or SIGINT stops it cleanly: the cycle under way finishes (within
//! the grace period), claims are released, and the process exits 0.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use ohf_app::{Worker, WorkerConfig};
use ohf_hostfactory::{HfError, Operation, parse_input};
use serde_json::json;
use tokio::sync::watch;

use crate::cli::{Global, ServeArgs};
use crate::commands::overrides;
use crate::settings::{Resolved, TlsSettings};
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

/// Sweeps run every `sweep_interval_secs`, but not under the default cluster name unless asked:
/// stores that share a name by accident must not judge each other's machines.
fn sweep_interval(settings: &Resolved) -> Option<Duration> {
    let s = &settings.serve;
    if s.sweep_interval_secs == 0 {
        return None;
    }
    if settings.app.cluster == "default" && !s.sweep_default_cluster {
        tracing::info!("orphan sweeps are off: set `cluster` (or serve.sweep_default_cluster = true) to turn them on");
        return None;
    }
    Some(Duration::from_secs(s.sweep_interval_secs))
}

async fn serve(global: &Global, args: &ServeArgs) -> anyhow::Result<()> {
    let settings = Resolved::load(&overrides(global))?;
    let s = &settings.serve;
    let config = WorkerConfig {
        id: args.worker_id.clone().or(s.worker_id.clone()).unwrap_or_else(default_worker_id),
        interval: Duration::from_millis(s.interval_ms),
        claim_ttl: Duration::from_secs(s.claim_ttl_secs),
        batch: s.batch,
        sweep_interval: sweep_interval(&settings),
        sweep: ohf_app::SweepOptions {
            min_age_secs: i64::try_from(s.sweep_min_age_secs).unwrap_or(i64::MAX),
            dry_run: false,
            max_terminations: s.sweep_max_terminations,
            max_share_percent: s.sweep_max_share_percent.min(100),
        },
        retention_days: (settings.retention.days > 0).then_some(settings.retention.days),
    };
    let listen = args.listen.clone().unwrap_or_else(|| s.listen.clone());
    let grace = Duration::from_secs(s.shutdown_grace_secs);
    let runtime = wiring::build(&settings).await?;
    let app = Arc::new(runtime.app);
    let metrics = Arc::new(Metrics { app: app.clone(), providers: runtime.resilient, events: runtime.events });
    let worker = Arc::new(Worker::new(app.clone(), config.clone()));
    let health =
        Arc::new(Health { worker: worker.clone(), interval: config.interval, clock: Arc::new(ohf_app::SystemClock) });
    let listener =
        tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    // Without tokens, only this host's callers are admins (a loopback listener).
    let anonymous = s.anonymous_role.unwrap_or(if addr.ip().is_loopback() {
        ohf_http::Role::Admin
    } else {
        ohf_http::Role::Operator
    });
    let gate = Arc::new(ohf_http::Gate::new(
        ohf_http::ApiOptions { tokens: s.tokens.clone(), rate_limit: s.rate_limit, anonymous_role: anonymous },
        Arc::new(ohf_app::SystemClock),
    ));
    let hf = Arc::new(HostFactory {
        app: app.clone(),
        gate: gate.clone(),
        options: ohf_hostfactory::Options { advance_on_poll: settings.advance_on_poll },
    });
    let http = Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(ready))
        .route("/status", get(|State(h): State<Arc<Health>>| async move { Json(h.worker.status()) }))
        .with_state(health)
        .route("/hf/{operation}", post(host_factory).with_state(hf))
        .route("/metrics", get(prometheus).with_state(metrics))
        .merge(ohf_http::gated_router(app.clone(), gate.clone()));
    let grpc = ohf_grpc::routes(app.clone(), gate).await.context("cannot set up the gRPC services")?;
    let router = grpc
        .into_axum_router()
        .merge(http)
        .fallback(not_found)
        // Bounded work per call: a body limit before anything buffers it, a deadline (a watch
        // waits at most 60 s), and a cap on calls in flight.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(ohf_http::MAX_BODY_BYTES))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, CALL_DEADLINE))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(MAX_CALLS_IN_FLIGHT));
    let routes = tonic::service::Routes::from(router);
    let mut server = tonic::transport::Server::builder()
        .accept_http1(true)
        .http2_max_header_list_size(MAX_HEADER_BYTES)
        .max_concurrent_streams(MAX_CALLS_IN_FLIGHT as u32);
    if let Some(tls) = &s.tls {
        server = server.tls_config(tls_config(tls)?).context("invalid TLS settings")?;
    }
    tracing::info!(worker = %config.id, %addr, tls = s.tls.is_some(), store = store_kind(&settings), "serving");
    if s.tokens.is_empty() && !addr.ip().is_loopback() {
        tracing::warn!(role = ?anonymous, "the APIs have no tokens and listen beyond loopback: anyone who reaches them has this role");
    }

    let (stop, stopped) = watch::channel(false);
    let worker_task = tokio::spawn({
        let worker = worker.clone();
        let stopped = stopped.clone();
        async move { worker.run(stopped).await }
    });
    let mut server_stop = stopped.clone();
    let incoming = ohf_grpc::incoming(listener);
    let server = tokio::spawn(async move {
        server
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, async move {
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
    app.flush_figures().await;
    tracing::info!("stopped");
    Ok(())
}

/// The longest one API call may take (a watch waits at most 60 s).
const CALL_DEADLINE: Duration = Duration::from_secs(75);
/// Calls served at once; more wait their turn.
const MAX_CALLS_IN_FLIGHT: usize = 512;
/// The most header bytes an HTTP/2 call may send.
const MAX_HEADER_BYTES: u32 = 16 * 1024;

/// What a path that is no route answers: gRPC's UNIMPLEMENTED to a gRPC call, and to anything
/// else a plain 404 in the API's error shape, so no HTTP client mistakes it for success.
async fn not_found(request: axum::extract::Request) -> Response {
    let grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/grpc"));
    if grpc {
        return tonic::Status::unimplemented(format!("no method at {}", request.uri().path())).into_http();
    }
    let body = json!({"error": {
        "code": "NOT_FOUND",
        "message": format!("no route for {} {}", request.method(), request.uri().path()),
        "details": {"routes": ["POST /rpc", "POST /hf/{operation}", "GET /healthz", "GET /readyz", "GET /status", "GET /metrics"]},
    }});
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

/// What `/metrics` reports: every provider's call counters in this process, and the breakers
/// every process shares.
struct Metrics {
    app: Arc<ohf_app::App>,
    providers: Vec<Arc<ohf_resilience::Resilient>>,
    /// Stored request events by kind, from a subscriber of the bus.
    events: Arc<ohf_app::EventCounts>,
}

/// The Prometheus text format.
async fn prometheus(State(m): State<Arc<Metrics>>) -> Response {
    use std::fmt::Write;
    let mut out = String::new();
    type Counter = (&'static str, &'static str, fn(&ohf_resilience::OpMetrics) -> u64);
    let counters: [Counter; 7] = [
        ("ohf_cloud_calls_total", "cloud calls made", |o| o.calls),
        ("ohf_cloud_successes_total", "cloud operations that succeeded", |o| o.successes),
        ("ohf_cloud_failures_total", "cloud calls that failed", |o| o.failures),
        ("ohf_cloud_retries_total", "retries after transient failures", |o| o.retries),
        ("ohf_cloud_timeouts_total", "calls cut off by their deadline", |o| o.timeouts),
        ("ohf_cloud_rejected_total", "calls refused by an open circuit breaker", |o| o.rejected),
        ("ohf_cloud_rate_limited_total", "calls that waited for the client-side rate limit", |o| o.rate_limited),
    ];
    let all: Vec<_> =
        m.providers.iter().map(|p| (ohf_app::CloudProvider::name(&**p).to_string(), p.metrics())).collect();
    for (name, help, get) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (provider, ops) in &all {
            for (op, o) in ops {
                let _ = writeln!(out, "{name}{{provider=\"{provider}\",operation=\"{op}\"}} {}", get(o));
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP ohf_circuit_breaker_state 0 closed, 1 half open, 2 open\n# TYPE ohf_circuit_breaker_state gauge"
    );
    // The breakers as the JSON API shows them (one reading of the stored state).
    let status = ohf_http::call_method(&m.app, "getResilienceStatus", &json!({})).await.unwrap_or_default();
    for b in status["breakers"].as_array().into_iter().flatten() {
        let state = match b["state"].as_str() {
            Some("OPEN") => 2,
            Some("HALF_OPEN") => 1,
            _ => 0,
        };
        let (provider, service) =
            (b["provider"].as_str().unwrap_or_default(), b["service"].as_str().unwrap_or_default());
        let _ = writeln!(out, "ohf_circuit_breaker_state{{provider=\"{provider}\",service=\"{service}\"}} {state}");
    }
    let _ = writeln!(
        out,
        "# HELP ohf_request_events_total request events stored by this process, by kind\n# TYPE ohf_request_events_total counter"
    );
    for (event, n) in m.events.snapshot() {
        let _ = writeln!(out, "ohf_request_events_total{{event=\"{event}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP ohf_event_subscriber_problems_total events a bus subscriber failed, timed out on or dropped\n# TYPE ohf_event_subscriber_problems_total counter"
    );
    for (subscriber, f) in m.app.bus().figures() {
        for (kind, n) in [("failed", f.failed), ("timed_out", f.timed_out), ("dropped", f.dropped)] {
            let _ =
                writeln!(out, "ohf_event_subscriber_problems_total{{subscriber=\"{subscriber}\",kind=\"{kind}\"}} {n}");
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

fn tls_config(tls: &TlsSettings) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
    let read = |p: &std::path::Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let identity = tonic::transport::Identity::from_pem(read(&tls.cert_file)?, read(&tls.key_file)?);
    let mut config = tonic::transport::ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &tls.client_ca_file {
        config = config.client_ca_root(tonic::transport::Certificate::from_pem(read(ca)?));
    }
    Ok(config)
}

/// The Host Factory operations for scripts running in client mode.
struct HostFactory {
    app: Arc<ohf_app::App>,
    gate: Arc<ohf_http::Gate>,
    options: ohf_hostfactory::Options,
}

async fn host_factory(
    State(hf): State<Arc<HostFactory>>,
    Path(operation): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let Some(op) = Operation::parse(&operation) else {
        let known: Vec<_> = Operation::ALL.iter().map(|o| o.name()).collect();
        let message = format!("unknown operation '{operation}'; operations: {}", known.join(", "));
        return (StatusCode::NOT_FOUND, Json(json!({"message": message}))).into_response();
    };
    if let Err(e) = hf.gate.admit(authorization, op.name()) {
        return ohf_http::error_response(&e);
    }
    let body = match ohf_http::read_body(body).await {
        Ok(body) => body,
        Err(e) => return (StatusCode::PAYLOAD_TOO_LARGE, Json(json!({"message": e.message}))).into_response(),
    };
    let input = match std::str::from_utf8(&body).map_err(|e| HfError::Input(e.to_string())).and_then(parse_input) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, Json(e.to_json())).into_response(),
    };
    match ohf_hostfactory::run(&hf.app, op, &input, hf.options).await {
        Ok(doc) => (StatusCode::OK, Json(doc)).into_response(),
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, Json(e.to_json())).into_response(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Overrides;

    fn settings(toml: &str) -> Resolved {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("ohf.toml");
        std::fs::write(&file, toml).expect("write");
        let flags = Overrides {
            config: Some(file),
            confdir: Some(dir.path().to_path_buf()),
            workdir: Some(dir.path().join("work")),
            ..Overrides::default()
        };
        Resolved::load(&flags).expect("settings")
    }

    #[test]
    fn the_daemon_sweeps_only_under_a_cluster_name_of_its_own_unless_told_to() {
        assert_eq!(sweep_interval(&settings("")), None, "not under the default cluster");
        assert_eq!(sweep_interval(&settings("cluster = \"hpc\"\n")), Some(Duration::from_secs(300)));
        assert_eq!(
            sweep_interval(&settings("[serve]\nsweep_default_cluster = true\nsweep_interval_secs = 60\n")),
            Some(Duration::from_secs(60))
        );
        assert_eq!(sweep_interval(&settings("cluster = \"hpc\"\n[serve]\nsweep_interval_secs = 0\n")), None);
    }
}
