//! Client mode: operator commands and the Host Factory scripts through a running daemon
//! (`--server URL` or `OHF_SERVER`), over its HTTP JSON API, so the daemon's claims and
//! breakers serve every call. The answers are the same documents the standalone commands print.
//!
//! The client keeps the api-busyness seed's rules: a busy answer (423, 429, or 503 with
//! `Retry-After`) is tried again after the wait the server names (10 s when it names none),
//! within a budget, and then fails with the server's code; a mutation that succeeded is read
//! back before its answer is trusted.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use ohf_api::ApiError;
use ohf_domain::ErrorCode;
use reqwest::header::{AUTHORIZATION, RETRY_AFTER};
use serde_json::{Value, json};

/// How to reach the daemon.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub server: String,
    pub token: Option<String>,
    /// CA certificate (PEM) to trust instead of the system's, for a daemon with its own CA.
    pub ca_cert: Option<PathBuf>,
    /// Client certificate and key (PEM) for a daemon that requires mutual TLS.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Longest one call may take, answer included.
    pub timeout: Duration,
    /// Longest to keep trying a call the server answers busy, waits included (zero: never).
    pub retry_budget: Duration,
}

pub struct Remote {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
    retry_budget: Duration,
}

/// The wait before trying again when the server names none: the seed's "once every 10 seconds".
const DEFAULT_BUSY_WAIT: u64 = 10;

/// The JSON API's mutations: each answers the request it changed, read back before it is trusted.
const MUTATIONS: [&str; 3] = ["requestMachines", "requestReturnMachines", "cancelRequest"];

/// How long to wait before trying a call again, when the answer says the server is busy: 423
/// (a request mid-change) and 429 (a rate limit) refuse before acting; a 503 is tried again only
/// when the server names a wait (an open breaker, a throttled provider), as a plain 503 may have
/// acted.
fn busy_wait(status: reqwest::StatusCode, retry_after: Option<u64>) -> Option<Duration> {
    let secs = match status.as_u16() {
        423 | 429 => retry_after.unwrap_or(DEFAULT_BUSY_WAIT),
        503 => retry_after?,
        _ => return None,
    };
    Some(Duration::from_secs(secs.max(1)))
}

fn read(path: &PathBuf, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read the {what} {}", path.display()))
}

impl Remote {
    pub fn new(o: &ClientOptions) -> anyhow::Result<Self> {
        let base = o.server.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            anyhow::bail!("--server '{}' must be an http:// or https:// URL", o.server);
        }
        let mut builder =
            reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).timeout(o.timeout).no_proxy();
        if let Some(ca) = &o.ca_cert {
            let cert = reqwest::Certificate::from_pem(&read(ca, "CA certificate")?)
                .with_context(|| format!("{} is not a PEM certificate", ca.display()))?;
            builder = builder.tls_certs_only([cert]);
        }
        match (&o.client_cert, &o.client_key) {
            (Some(cert), Some(key)) => {
                let mut pem = read(cert, "client certificate")?;
                pem.push(b'\n');
                pem.extend(read(key, "client key")?);
                let identity =
                    reqwest::Identity::from_pem(&pem).context("the client certificate and key are not valid PEM")?;
                builder = builder.identity(identity);
            }
            (None, None) => {}
            _ => anyhow::bail!("--client-cert and --client-key go together"),
        }
        let http = builder.build().context("cannot set up the HTTP client")?;
        Ok(Self { base, http, token: o.token.clone(), retry_budget: o.retry_budget })
    }

    /// Posts `body`, trying again while the server answers busy and the budget lasts; the last
    /// answer otherwise.
    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(reqwest::StatusCode, Option<u64>, Value)> {
        let started = Instant::now();
        loop {
            let (status, retry_after, answer) = self.post_once(path, body).await?;
            let Some(wait) = busy_wait(status, retry_after) else { return Ok((status, retry_after, answer)) };
            if started.elapsed() + wait > self.retry_budget {
                return Ok((status, retry_after, answer));
            }
            tracing::info!(path, %status, wait_secs = wait.as_secs(), "the server is busy; trying again");
            tokio::time::sleep(wait).await;
        }
    }

    async fn post_once(&self, path: &str, body: &Value) -> anyhow::Result<(reqwest::StatusCode, Option<u64>, Value)> {
        let url = format!("{}{path}", self.base);
        let mut call = self.http.post(&url).json(body);
        if let Some(t) = &self.token {
            call = call.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        let response = call.send().await.map_err(|e| anyhow!("cannot reach the ohf server at {}: {e}", self.base))?;
        let status = response.status();
        let retry_after =
            response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        let text = response.text().await.map_err(|e| anyhow!("the ohf server at {} broke off: {e}", self.base))?;
        let body = serde_json::from_str(&text)
            .map_err(|_| anyhow!("the ohf server at {} answered {status} with no JSON: {text:.200}", self.base))?;
        Ok((status, retry_after, body))
    }

    /// Calls one method of the JSON API; an error answer becomes an [`ApiError`]. A mutation's
    /// answer is the request read back after it.
    pub async fn call(&self, method: &str, params: &Value) -> anyhow::Result<Value> {
        let result = self.call_once(method, params).await?;
        match result.get("requestId").and_then(Value::as_str) {
            Some(id) if MUTATIONS.contains(&method) => self.read_back(method, id).await.map(|r| r.unwrap_or(result)),
            _ => Ok(result),
        }
    }

    /// The request a mutation answered with, as the server now holds it: `None` when it cannot
    /// say (the answer stands), an error when the request is not there.
    async fn read_back(&self, method: &str, id: &str) -> anyhow::Result<Option<Value>> {
        match self.call_once("getRequestStatus", &json!({"requestId": id})).await {
            Ok(view) => Ok(Some(view)),
            Err(e) => match e.downcast_ref::<ApiError>() {
                Some(api) if api.code == ErrorCode::RequestNotFound => Err(ApiError::new(
                    ErrorCode::StoreError,
                    format!("{method} answered request '{id}', but the server does not hold it"),
                )
                .into()),
                _ => {
                    tracing::warn!(method, request = id, error = %e, "the answer could not be read back");
                    Ok(None)
                }
            },
        }
    }

    async fn call_once(&self, method: &str, params: &Value) -> anyhow::Result<Value> {
        let (status, retry_after, body) = self.post("/rpc", &json!({"method": method, "params": params})).await?;
        if let Some(result) = body.get("result") {
            return Ok(result.clone());
        }
        let e = &body["error"];
        let code = e["code"].as_str().and_then(ErrorCode::parse).unwrap_or(ErrorCode::InternalError);
        let message = e["message"].as_str().map_or_else(|| format!("the server answered {status}"), str::to_owned);
        Err(ApiError { code, message, details: e["details"].clone(), retry_after }.into())
    }

    /// The daemon's `/metrics` text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let mut call = self.http.get(format!("{}/metrics", self.base));
        if let Some(t) = &self.token {
            call = call.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        let response = call.send().await.map_err(|e| anyhow!("cannot reach the ohf server at {}: {e}", self.base))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| anyhow!("the ohf server at {} broke off: {e}", self.base))?;
        if !status.is_success() {
            anyhow::bail!("the ohf server at {} answered {status} for /metrics: {text:.200}", self.base);
        }
        Ok(text)
    }

    /// Runs a Host Factory operation on the daemon: its document, and whether it succeeded.
    pub async fn host_factory(&self, operation: &str, input: &Value) -> anyhow::Result<(Value, bool)> {
        let (status, _, body) = self.post(&format!("/hf/{operation}"), input).await?;
        if let Some(e) = body.get("error") {
            // Refused before the operation ran (token, role, rate limit).
            return Ok((json!({"message": e["message"]}), false));
        }
        if status.is_success()
            && MUTATIONS.contains(&operation)
            && let Some(id) = body.get("requestId").and_then(Value::as_str)
            && let Err(e) = self.read_back(operation, id).await
        {
            return Ok((json!({"message": format!("{e:#}")}), false));
        }
        Ok((body, status.is_success()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;

    use super::*;

    /// An answer: HTTP status, `Retry-After`, body.
    type Scripted = (u16, Option<u64>, Value);
    /// The answers of each method, in turn.
    type Answers = Vec<(String, Vec<Scripted>)>;

    /// A scripted server: each call takes the next answer for its method (the last one repeats)
    /// and is logged.
    #[derive(Clone, Default)]
    struct Script {
        answers: Arc<Mutex<Answers>>,
        calls: Arc<Mutex<Vec<String>>>,
    }

    impl Script {
        fn on(self, method: &str, answers: Vec<Scripted>) -> Self {
            self.answers.lock().unwrap().push((method.to_owned(), answers));
            self
        }

        fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
    }

    async fn answer(State(script): State<Script>, body: axum::Json<Value>) -> Response {
        let method = body["method"].as_str().unwrap_or_default().to_owned();
        script.calls.lock().unwrap().push(method.clone());
        let mut all = script.answers.lock().unwrap();
        let Some((_, list)) = all.iter_mut().find(|(m, _)| *m == method) else {
            return (StatusCode::NOT_FOUND, axum::Json(json!({"error": {"code": "METHOD_NOT_FOUND"}}))).into_response();
        };
        let (status, retry_after, doc) = if list.len() > 1 { list.remove(0) } else { list[0].clone() };
        let mut headers = HeaderMap::new();
        if let Some(secs) = retry_after {
            headers.insert(RETRY_AFTER, secs.into());
        }
        (StatusCode::from_u16(status).unwrap(), headers, axum::Json(doc)).into_response()
    }

    async fn serve(script: Script, budget: Duration) -> Remote {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route("/rpc", post(answer)).with_state(script);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Remote::new(&ClientOptions {
            server: format!("http://{addr}"),
            token: None,
            ca_cert: None,
            client_cert: None,
            client_key: None,
            timeout: Duration::from_secs(10),
            retry_budget: budget,
        })
        .unwrap()
    }

    fn busy(code: &str) -> Value {
        json!({"error": {"code": code, "message": "busy", "details": {}}})
    }

    fn code(e: &anyhow::Error) -> ErrorCode {
        e.downcast_ref::<ApiError>().map(|a| a.code).unwrap_or(ErrorCode::InternalError)
    }

    #[tokio::test]
    async fn a_busy_answer_is_tried_again_after_the_wait_the_server_names() {
        let script = Script::default().on(
            "listRequests",
            vec![
                (423, Some(1), busy("RESOURCE_BUSY")),
                (429, Some(1), busy("RATE_LIMITED")),
                (200, None, json!({"result": {"requests": []}})),
            ],
        );
        let remote = serve(script.clone(), Duration::from_secs(30)).await;
        let started = Instant::now();
        let answer = remote.call("listRequests", &json!({})).await.unwrap();
        assert_eq!(answer, json!({"requests": []}));
        assert_eq!(script.calls().len(), 3);
        assert!(started.elapsed() >= Duration::from_secs(2), "waited {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn past_the_budget_the_servers_code_stands() {
        let script = Script::default().on("listRequests", vec![(423, Some(2), busy("RESOURCE_BUSY"))]);
        let remote = serve(script.clone(), Duration::from_secs(3)).await;
        let e = remote.call("listRequests", &json!({})).await.unwrap_err();
        assert_eq!(code(&e), ErrorCode::ResourceBusy);
        assert_eq!(script.calls().len(), 2, "one wait of 2 s fits in 3 s, a second does not");

        let script = Script::default().on("listRequests", vec![(423, Some(1), busy("RESOURCE_BUSY"))]);
        let remote = serve(script.clone(), Duration::ZERO).await;
        assert_eq!(code(&remote.call("listRequests", &json!({})).await.unwrap_err()), ErrorCode::ResourceBusy);
        assert_eq!(script.calls().len(), 1, "a zero budget never tries again");
    }

    #[tokio::test]
    async fn a_503_is_tried_again_only_when_the_server_names_a_wait() {
        let script = Script::default().on("listRequests", vec![(503, None, busy("STORE_ERROR"))]);
        let remote = serve(script.clone(), Duration::from_secs(30)).await;
        assert_eq!(code(&remote.call("listRequests", &json!({})).await.unwrap_err()), ErrorCode::StoreError);
        assert_eq!(script.calls().len(), 1);

        let script = Script::default()
            .on("listRequests", vec![(503, Some(1), busy("PROVIDER_UNAVAILABLE")), (200, None, json!({"result": {}}))]);
        let remote = serve(script.clone(), Duration::from_secs(30)).await;
        remote.call("listRequests", &json!({})).await.unwrap();
        assert_eq!(script.calls().len(), 2);
    }

    #[tokio::test]
    async fn a_mutation_is_read_back_before_its_answer_is_trusted() {
        let accepted = json!({"result": {"requestId": "req-1", "state": "PENDING"}});
        let script = Script::default().on("requestMachines", vec![(200, None, accepted.clone())]).on(
            "getRequestStatus",
            vec![(200, None, json!({"result": {"requestId": "req-1", "state": "IN_PROGRESS"}}))],
        );
        let remote = serve(script.clone(), Duration::from_secs(30)).await;
        let answer = remote.call("requestMachines", &json!({})).await.unwrap();
        assert_eq!(answer["state"], "IN_PROGRESS", "the request as the server holds it now");
        assert_eq!(script.calls(), ["requestMachines", "getRequestStatus"]);

        let script = Script::default()
            .on("requestMachines", vec![(200, None, accepted)])
            .on("getRequestStatus", vec![(404, None, busy("REQUEST_NOT_FOUND"))]);
        let remote = serve(script, Duration::from_secs(30)).await;
        let e = remote.call("requestMachines", &json!({})).await.unwrap_err();
        assert_eq!(code(&e), ErrorCode::StoreError, "{e:#}");
        assert!(format!("{e:#}").contains("req-1"), "{e:#}");

        // A query is not read back.
        let script = Script::default().on("getRequestStatus", vec![(200, None, json!({"result": {"requestId": "r"}}))]);
        let remote = serve(script.clone(), Duration::from_secs(30)).await;
        remote.call("getRequestStatus", &json!({"requestId": "r"})).await.unwrap();
        assert_eq!(script.calls().len(), 1);
    }
}
