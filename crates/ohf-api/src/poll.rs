//! Without a daemon, nothing advances requests in the background: a process that answers a
//! poll (Host Factory's getRequestStatus, `ohf request status|list|watch`) first makes the
//! step the daemon would have made for what it reads. `advance_on_poll = false` turns this off
//! where daemons own the lifecycle.

use std::time::Duration;

use ohf_app::App;
use ohf_domain::RequestId;
use serde_json::Value;

/// The longest a poll's step may take before the answer goes out with the last stored state
/// (every step is stored before its cloud calls, so the next poll goes on from there).
pub const POLL_STEP_WITHIN: Duration = Duration::from_secs(60);

/// Advances `ids` (all active requests when `None`), within [`POLL_STEP_WITHIN`]. The provider
/// health checks, when due, are made first: without a daemon, polling processes take turns.
pub async fn advance(app: &App, ids: Option<&[RequestId]>) {
    let step = async {
        app.check_providers_when_due(&poller()).await;
        app.reconcile(ids).await
    };
    match tokio::time::timeout(POLL_STEP_WITHIN, step).await {
        Ok(report) if !report.errors.is_empty() => {
            tracing::warn!(errors = ?report.errors, "reconcile met errors; status shows the last known state");
        }
        Ok(_) => {}
        Err(_) => {
            tracing::warn!(secs = POLL_STEP_WITHIN.as_secs(), "the poll's step ran out of time; the next poll goes on")
        }
    }
}

/// This process, as the holder of the leased jobs a poll runs.
fn poller() -> String {
    static STARTED: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let started = STARTED
        .get_or_init(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    format!("poll-{}-{started:x}", std::process::id())
}

/// Advances what a JSON method is about to read: the requests a status or watch names, or
/// every active request for a list. Other methods read nothing that moves.
pub async fn advance_before(app: &App, method: &str, params: &Value) {
    let ids = |field: &str| -> Vec<RequestId> {
        match &params[field] {
            Value::String(id) => vec![id.clone()],
            Value::Array(list) => list.iter().filter_map(Value::as_str).map(String::from).collect(),
            _ => Vec::new(),
        }
        .into_iter()
        .filter_map(|id| RequestId::new(id).ok())
        .collect()
    };
    match method {
        "getRequestStatus" | "watchRequest" => {
            let mut wanted = ids("requestId");
            wanted.extend(ids("requestIds"));
            if !wanted.is_empty() {
                advance(app, Some(&wanted)).await;
            }
        }
        "listRequests" => advance(app, None).await,
        _ => {}
    }
}
