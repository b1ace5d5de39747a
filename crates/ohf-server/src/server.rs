//! The daemon as a value: [`Server::build`] opens the store, builds the providers and binds
//! the listener; [`Server::run_until_stopped`] runs the worker and serves until the shutdown
//! future resolves. A worker advances every request in the background under claims, so
//! several daemons on one Postgres share the work. One listener (TLS optional) serves the gRPC
//! API (ohf-grpc, with health and reflection), the HTTP JSON API (`POST /rpc`, ohf-http), the
//! Host Factory operations for scripts in client mode (`POST /hf/{operation}`) and /healthz,
//! /readyz, /status, /metrics and the status page at `/`. On shutdown the cycle under way finishes (within the grace
//! period) and claims are released.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use ohf_app::{App, Worker, WorkerConfig};
use ohf_hostfactory::{HfError, Operation, parse_input};
use serde_json::json;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::settings::{Resolved, TlsSettings};
use crate::wiring;

struct Health {
    worker: Arc<Worker>,
    interval: Duration,
    clock: Arc<dyn ohf_app::Clock>,
}

/// What the command line may say over the settings.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Address to listen on instead of `serve.listen` (`127.0.0.1:0` picks a free port).
    pub listen: Option<String>,
    /// This daemon's name in claims instead of `serve.worker_id` (default: host and pid).
    pub worker_id: Option<String>,
}

/// A built daemon: bound, not yet serving.
pub struct Server {
    app: Arc<App>,
    worker: Arc<Worker>,
    alerter: Arc<ohf_app::alerts::Alerter>,
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    routes: tonic::service::Routes,
    transport: tonic::transport::Server,
    grace: Duration,
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

impl Server {
    /// Opens the store, builds the application and binds the listener.
    pub async fn build(settings: &Resolved, options: ServeOptions) -> anyhow::Result<Server> {
        let s = &settings.serve;
        let config = WorkerConfig {
            id: options.worker_id.or(s.worker_id.clone()).unwrap_or_else(default_worker_id),
            interval: Duration::from_millis(s.interval_ms),
            claim_ttl: Duration::from_secs(s.claim_ttl_secs),
            batch: s.batch,
            sweep_interval: sweep_interval(settings),
            sweep: ohf_app::SweepOptions {
                min_age_secs: i64::try_from(s.sweep_min_age_secs).unwrap_or(i64::MAX),
                dry_run: false,
                max_terminations: s.sweep_max_terminations,
                max_share_percent: s.sweep_max_share_percent.min(100),
            },
            retention_days: (settings.retention.days > 0).then_some(settings.retention.days),
        };
        let listen = options.listen.unwrap_or_else(|| s.listen.clone());
        let runtime = wiring::build(settings, wiring::Lifetime::Daemon).await?;
        let alerter = runtime.alerter.clone();
        let app = runtime.app.clone();
        let worker = Arc::new(Worker::new(app.clone(), config.clone()));
        let metrics = Arc::new(Metrics::new(&runtime, Some(worker.clone())));
        let health = Arc::new(Health {
            worker: worker.clone(),
            interval: config.interval,
            clock: Arc::new(ohf_app::SystemClock),
        });
        let listener =
            tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        // Without tokens, only this host's callers are admins (a loopback listener).
        let anonymous = s.anonymous_role.unwrap_or(if addr.ip().is_loopback() {
            ohf_api::access::Role::Admin
        } else {
            ohf_api::access::Role::Operator
        });
        let gate = Arc::new(ohf_api::access::Gate::new(
            ohf_api::access::ApiOptions {
                tokens: s.tokens.clone(),
                rate_limit: s.rate_limit,
                anonymous_role: anonymous,
            },
            Arc::new(ohf_app::SystemClock),
        ));
        let hf = Arc::new(HostFactory {
            app: app.clone(),
            gate: gate.clone(),
            options: ohf_hostfactory::Options { advance_on_poll: settings.advance_on_poll, requester: None },
        });
        let http = Router::new()
            .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
            .route("/readyz", get(ready))
            .route("/status", get(|State(h): State<Arc<Health>>| async move { Json(h.worker.status()) }))
            .with_state(health)
            .route("/hf/{operation}", post(host_factory).with_state(hf))
            .route("/metrics", get(prometheus).with_state(metrics.clone()))
            .merge(crate::page::routes())
            .merge(ohf_http::gated_router(app.clone(), gate.clone()));
        let grpc = ohf_grpc::routes(app.clone(), gate).await.context("cannot set up the gRPC services")?;
        let router = grpc
            .into_axum_router()
            .merge(http)
            .fallback(not_found)
            .layer(axum::middleware::from_fn_with_state(metrics, measure))
            .layer(axum::middleware::from_fn(request_id))
            // Bounded work per call: a body limit before anything buffers it, a deadline (a watch
            // waits at most 60 s), and a cap on calls in flight.
            .layer(tower_http::limit::RequestBodyLimitLayer::new(ohf_http::MAX_BODY_BYTES))
            .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, CALL_DEADLINE))
            .layer(tower::limit::GlobalConcurrencyLimitLayer::new(MAX_CALLS_IN_FLIGHT));
        let routes = tonic::service::Routes::from(router);
        let mut transport = tonic::transport::Server::builder()
            .accept_http1(true)
            .http2_max_header_list_size(MAX_HEADER_BYTES)
            .max_concurrent_streams(MAX_CALLS_IN_FLIGHT as u32);
        if let Some(tls) = &s.tls {
            transport = transport.tls_config(tls_config(tls)?).context("invalid TLS settings")?;
        }
        tracing::info!(worker = %config.id, %addr, tls = s.tls.is_some(), store = store_kind(settings), "serving");
        if s.tokens.is_empty() && !addr.ip().is_loopback() {
            tracing::warn!(role = ?anonymous, "the APIs have no tokens and listen beyond loopback: anyone who reaches them has this role");
        }
        Ok(Server {
            app,
            worker,
            alerter,
            listener,
            addr,
            routes,
            transport,
            grace: Duration::from_secs(s.shutdown_grace_secs),
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port the listener is bound to (the one picked when the settings said port 0).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The application the daemon serves, for embedders that also call it directly.
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Serves and runs the worker until `shutdown` resolves; then finishes the cycle under way
    /// (within the grace period), stops the listener and writes the figures out.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Server { app, worker, alerter, listener, routes, mut transport, grace, .. } = self;
        let (stop, stopped) = watch::channel(false);
        let worker_task = worker.spawn(stopped.clone());
        let alerts_task = tokio::spawn(watch_alerts(app.clone(), alerter, stopped.clone()));
        let mut server_stop = stopped.clone();
        let incoming = ohf_grpc::incoming(listener);
        let server = tokio::spawn(async move {
            transport
                .add_routes(routes)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = server_stop.wait_for(|s| *s).await;
                })
                .await
        });
        shutdown.await;
        tracing::info!("stopping: finishing the cycle under way");
        let _ = stop.send(true);
        match tokio::time::timeout(grace, worker_task).await {
            Ok(_) => {}
            // Every step is stored before its cloud calls, so an unfinished one resumes elsewhere.
            Err(_) => {
                tracing::warn!(
                    grace_secs = grace.as_secs(),
                    "cycle still running after the grace period; left resumable"
                )
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), alerts_task).await;
        app.flush_figures().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The header carrying a call's id: taken from the caller when it sends a usable one, else
/// made; answered back, and on every log line the call causes (HTTP, `/hf/{op}` and gRPC,
/// whose metadata are headers).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

async fn request_id(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use tracing::Instrument;
    let given = request.headers().get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()).filter(|id| {
        !id.is_empty()
            && id.len() <= 128
            && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    });
    let id = given.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let span = tracing::info_span!("call", request_id = %id, path = %request.uri().path());
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = header::HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// How often the alerter sends its digests.
const ALERT_TICK: Duration = Duration::from_secs(5);
/// Every how many ticks it looks for long-running requests (once a minute).
const LONG_RUNNING_EVERY: u64 = 12;

/// Feeds the alerter what the bus does not carry as stored events: system events (breakers,
/// provider health) as they come, and time (digests of held-back alerts, long-running requests).
async fn watch_alerts(app: Arc<App>, alerter: Arc<ohf_app::alerts::Alerter>, mut stopped: watch::Receiver<bool>) {
    let mut system = app.bus().subscribe_system();
    let mut tick = tokio::time::interval(ALERT_TICK);
    // Long-running requests are looked for every LONG_RUNNING_EVERY ticks, not every tick: the
    // listing reads every unfinished request.
    let mut ticks: u64 = 0;
    while !*stopped.borrow() {
        tokio::select! {
            changed = stopped.changed() => if changed.is_err() { break },
            event = system.recv() => match event {
                Ok(event) => alerter.on_system(&event).await,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "the alerter fell behind the system events");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            _ = tick.tick() => {
                alerter.tick().await;
                ticks += 1;
                if alerter.watches_long_running() && ticks % LONG_RUNNING_EVERY == 1 {
                    let filter = ohf_app::RequestFilter::waiting(None);
                    if let Ok(running) = app.ask(ohf_app::queries::ListRequests { filter }).await {
                        let running: Vec<_> = running.iter().map(|r| (r.id().to_string(), r.created_at())).collect();
                        alerter.long_running(&running).await;
                    }
                }
            }
        }
    }
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
        "details": {"routes": ["GET /", "POST /rpc", "POST /hf/{operation}", "GET /healthz", "GET /readyz", "GET /status", "GET /metrics", "GET|POST /routing-requests", "GET|DELETE /routing-requests/{id}", "GET /routing-requests/{id}/workloads", "DELETE /routing-requests/{id}/{workload_id}", "GET /workloads/{id}", "GET /available-capacity"]},
    }});
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

async fn prometheus(State(m): State<Arc<Metrics>>) -> Response {
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], m.render().await).into_response()
}

/// Counts each call's latency by the method it named (the JSON method, the gRPC method, else
/// the route) and its code (the gRPC status, else the HTTP status). Unknown paths and methods
/// are one label, so callers cannot grow the series without bound.
async fn measure(
    State(m): State<Arc<Metrics>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let started = std::time::Instant::now();
    let grpc =
        request.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let route = request.extensions().get::<axum::extract::MatchedPath>().cloned();
    // A gRPC method is the path's last segment.
    let grpc_method = grpc.then(|| request.uri().path().rsplit('/').next().unwrap_or_default().to_owned());
    let response = next.run(request).await;
    let grpc_status = response.headers().get("grpc-status").and_then(|v| v.to_str().ok());
    let status = response.status();
    let http_code;
    let code = match (grpc, grpc_status) {
        (true, Some(code)) => code,
        (true, None) => "0",
        (false, _) => {
            http_code = status.as_u16().to_string();
            &http_code
        }
    };
    let method = match (response.extensions().get::<ohf_api::CalledMethod>(), &grpc_method, &route) {
        (Some(called), _, _) => called.0,
        (None, Some(name), Some(_)) if code != "12" => name.as_str(),
        (None, None, Some(route)) if status != StatusCode::NOT_FOUND => route.as_str(),
        _ => "unknown",
    };
    m.api().observe(method, code, started.elapsed().as_secs_f64());
    response
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
    app: Arc<App>,
    gate: Arc<ohf_api::access::Gate>,
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
    let mut response = host_factory_operation(&hf, op, authorization, body).await;
    response.extensions_mut().insert(ohf_api::CalledMethod(op.name()));
    response
}

async fn host_factory_operation(
    hf: &HostFactory,
    op: Operation,
    authorization: Option<&str>,
    body: axum::body::Body,
) -> Response {
    let client = match hf.gate.admit(authorization, op.name()) {
        Ok(client) => client,
        Err(e) => return ohf_http::error_response(&e),
    };
    let body = match ohf_http::read_body(body).await {
        Ok(body) => body,
        Err(e) => return (StatusCode::PAYLOAD_TOO_LARGE, Json(json!({"message": e.message}))).into_response(),
    };
    let input = match std::str::from_utf8(&body).map_err(|e| HfError::Input(e.to_string())).and_then(parse_input) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, Json(e.to_json())).into_response(),
    };
    let options = ohf_hostfactory::Options { requester: Some(client), ..hf.options.clone() };
    match ohf_hostfactory::run(&hf.app, op, &input, options).await {
        Ok(answer) => (StatusCode::OK, Json(answer)).into_response(),
        Err(e) => host_factory_failure(&e),
    }
}

/// A failed Host Factory operation: the document the script prints (`{"message"}`, as in local
/// mode), under the error table's HTTP status with `ohf-error-code` and, where waiting helps,
/// `Retry-After`, so a script in client mode knows whether to try again.
fn host_factory_failure(e: &HfError) -> Response {
    let api = match e {
        HfError::Input(message) => ohf_api::ApiError::invalid("input", message.clone()),
        HfError::App(app) => ohf_api::ApiError::from(app.clone()),
    };
    ohf_http::error_response_with(&api, e.to_json())
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

    #[tokio::test]
    async fn a_host_factory_failure_keeps_its_document_under_the_tables_status() {
        let busy = HfError::App(ohf_app::AppError::Busy { request_id: "req-1".into(), retry_after_secs: 3 });
        let response = host_factory_failure(&busy);
        assert_eq!(response.status(), StatusCode::LOCKED);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
        assert_eq!(response.headers()["ohf-error-code"], "RESOURCE_BUSY");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("body");
        let doc: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(doc, busy.to_json(), "the script prints what it prints in local mode");

        let response = host_factory_failure(&HfError::Input("not valid JSON".into()));
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
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
