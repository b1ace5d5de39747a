//! Client mode: operator commands and the Host Factory scripts through a running daemon
//! (`--server URL` or `OHF_SERVER`), over its HTTP JSON API, so the daemon's claims and
//! breakers serve every call. The answers are the same documents the standalone commands print.

use std::path::PathBuf;
use std::time::Duration;

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
}

pub struct Remote {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
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
        Ok(Self { base, http, token: o.token.clone() })
    }

    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(reqwest::StatusCode, Option<u64>, Value)> {
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

    /// Calls one method of the JSON API; an error answer becomes an [`ApiError`].
    pub async fn call(&self, method: &str, params: &Value) -> anyhow::Result<Value> {
        let (status, retry_after, body) = self.post("/rpc", &json!({"method": method, "params": params})).await?;
        if let Some(result) = body.get("result") {
            return Ok(result.clone());
        }
        let e = &body["error"];
        let code = e["code"].as_str().and_then(ErrorCode::parse).unwrap_or(ErrorCode::InternalError);
        let message = e["message"].as_str().map_or_else(|| format!("the server answered {status}"), str::to_owned);
        Err(ApiError { code, message, details: e["details"].clone(), retry_after }.into())
    }

    /// Runs a Host Factory operation on the daemon: its document, and whether it succeeded.
    pub async fn host_factory(&self, operation: &str, input: &Value) -> anyhow::Result<(Value, bool)> {
        let (status, _, body) = self.post(&format!("/hf/{operation}"), input).await?;
        if let Some(e) = body.get("error") {
            // Refused before the operation ran (token, role, rate limit).
            return Ok((json!({"message": e["message"]}), false));
        }
        Ok((body, status.is_success()))
    }
}
