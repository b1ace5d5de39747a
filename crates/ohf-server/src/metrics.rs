//! `/metrics` in the Prometheus text format: every provider's call counters in this process,
//! the breakers every process shares, request
//! events by kind and the bus's subscriber problems.

use std::fmt::Write;
use std::sync::Arc;

use ohf_app::queries::{GetResilienceStatus, StoredBreaker};
use ohf_app::shared::CircuitState;
use ohf_app::{App, CloudProvider, EventCounts};
use ohf_resilience::{OpMetrics, Resilient};

/// What `/metrics` reads.
pub struct Metrics {
    pub app: Arc<App>,
    pub providers: Vec<Arc<Resilient>>,
    /// Stored request events by kind, from a subscriber of the bus.
    pub events: Arc<EventCounts>,
}

type Counter = (&'static str, &'static str, fn(&OpMetrics) -> u64);

const COUNTERS: [Counter; 7] = [
    ("ohf_cloud_calls_total", "cloud calls made", |o| o.calls),
    ("ohf_cloud_successes_total", "cloud operations that succeeded", |o| o.successes),
    ("ohf_cloud_failures_total", "cloud calls that failed", |o| o.failures),
    ("ohf_cloud_retries_total", "retries after transient failures", |o| o.retries),
    ("ohf_cloud_timeouts_total", "calls cut off by their deadline", |o| o.timeouts),
    ("ohf_cloud_rejected_total", "calls refused by an open circuit breaker", |o| o.rejected),
    ("ohf_cloud_rate_limited_total", "calls that waited for the client-side rate limit", |o| o.rate_limited),
];

impl Metrics {
    /// The exposition text.
    pub async fn render(&self) -> String {
        let mut out = String::new();
        let all: Vec<_> = self.providers.iter().map(|p| (p.name().to_string(), p.metrics())).collect();
        for (name, help, get) in COUNTERS {
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
        let breakers = match self.app.ask(GetResilienceStatus).await {
            Ok(status) => status.breakers,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: cannot read the breakers");
                Vec::new()
            }
        };
        for StoredBreaker { provider, service, breaker } in breakers {
            let state = match breaker.state {
                CircuitState::Open => 2,
                CircuitState::HalfOpen => 1,
                CircuitState::Closed => 0,
            };
            let _ = writeln!(out, "ohf_circuit_breaker_state{{provider=\"{provider}\",service=\"{service}\"}} {state}");
        }
        let _ = writeln!(
            out,
            "# HELP ohf_request_events_total request events stored by this process, by kind\n# TYPE ohf_request_events_total counter"
        );
        for (event, n) in self.events.snapshot() {
            let _ = writeln!(out, "ohf_request_events_total{{event=\"{event}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP ohf_event_subscriber_problems_total events a bus subscriber failed, timed out on or dropped\n# TYPE ohf_event_subscriber_problems_total counter"
        );
        for (subscriber, f) in self.app.bus().figures() {
            for (kind, n) in [("failed", f.failed), ("timed_out", f.timed_out), ("dropped", f.dropped)] {
                let _ = writeln!(
                    out,
                    "ohf_event_subscriber_problems_total{{subscriber=\"{subscriber}\",kind=\"{kind}\"}} {n}"
                );
            }
        }
        out
    }
}
