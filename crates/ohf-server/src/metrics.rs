//! `/metrics` (and `ohf metrics`) in the OpenMetrics text format, encoded by
//! `prometheus-client`. Each scrape reads what every process shares from the store (requests
//! by state, the backlog, machines held, breakers, provider health) and adds what this process
//! measured itself (cloud calls and their latency, API calls, worker cycles, events, alerts).
//! `deploy/grafana/ohf.json` and `deploy/prometheus/ohf-rules.yml` are built on these names.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ohf_app::alerts::Alerter;
use ohf_app::figures::{Completions, Histogram, MeasuredStore, StoreCallFigures};
use ohf_app::queries::{GetOperatingFigures, GetProviderHealth, OperatingFigures};
use ohf_app::shared::CircuitState;
use ohf_app::{App, CloudProvider, EventCounts, HandlerFigures, Worker, WorkerStatus};
use ohf_resilience::{OpMetrics, Resilient};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the exporter reads.
pub struct Metrics {
    app: Arc<App>,
    providers: Vec<Arc<Resilient>>,
    events: Arc<EventCounts>,
    completions: Arc<Completions>,
    alerter: Arc<Alerter>,
    store: Arc<MeasuredStore>,
    worker: Option<Arc<Worker>>,
    api: ApiFigures,
}

/// API calls answered by this daemon: latency by method, then code. Keyed in two levels so a
/// call of a method and code seen before allocates nothing.
#[derive(Default)]
pub struct ApiFigures(Mutex<BTreeMap<String, BTreeMap<String, Histogram>>>);

impl ApiFigures {
    /// Counts one answered call.
    pub fn observe(&self, method: &str, code: &str, seconds: f64) {
        let mut calls = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let codes = match calls.get_mut(method) {
            Some(codes) => codes,
            None => calls.entry(method.to_owned()).or_default(),
        };
        match codes.get_mut(code) {
            Some(h) => h.observe(seconds),
            None => codes.entry(code.to_owned()).or_default().observe(seconds),
        }
    }

    fn snapshot(&self) -> Vec<((String, String), Histogram)> {
        let calls = self.0.lock().unwrap_or_else(|p| p.into_inner());
        calls
            .iter()
            .flat_map(|(m, codes)| codes.iter().map(move |(c, h)| ((m.clone(), c.clone()), h.clone())))
            .collect()
    }
}

impl Metrics {
    /// An exporter over a built runtime; `worker` is the daemon's (none for `ohf metrics`).
    pub fn new(runtime: &crate::wiring::Runtime, worker: Option<Arc<Worker>>) -> Self {
        Self {
            app: runtime.app.clone(),
            providers: runtime.resilient.clone(),
            events: runtime.events.clone(),
            completions: runtime.completions.clone(),
            alerter: runtime.alerter.clone(),
            store: runtime.store.clone(),
            worker,
            api: ApiFigures::default(),
        }
    }

    /// Where the listener counts its calls.
    pub fn api(&self) -> &ApiFigures {
        &self.api
    }

    /// The exposition text: reads the shared figures, then encodes them with this process's.
    pub async fn render(&self) -> String {
        let started = Instant::now();
        let operating = self.app.ask(GetOperatingFigures).await;
        let store_seconds = started.elapsed().as_secs_f64();
        let store_up = operating.is_ok();
        let operating = operating.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "metrics: the store's figures were not read");
            OperatingFigures::default()
        });
        // One read gives each provider's health and its breakers.
        let providers = match self.app.ask(GetProviderHealth::default()).await {
            Ok(report) => report.providers,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: provider health was not read");
                Vec::new()
            }
        };
        let breakers = providers
            .iter()
            .flat_map(|p| {
                p.circuit_breakers.iter().map(|b| (p.provider_name.clone(), b.service.clone(), b.breaker.state))
            })
            .collect();
        let health = providers.into_iter().map(|p| (p.provider_name, p.health.is_healthy)).collect();
        let scrape = Scrape {
            cloud: self
                .providers
                .iter()
                .flat_map(|p| {
                    let name = p.name().to_string();
                    p.metrics().into_iter().map(move |(op, m)| (name.clone(), op, m))
                })
                .collect(),
            breakers,
            health,
            operating,
            store_up,
            store_seconds,
            events: self.events.snapshot(),
            subscribers: self.app.bus().figures(),
            completions: self.completions.snapshot(),
            alerts: self.alerter.deliveries(),
            store_calls: self.store.snapshot(),
            worker: self.worker.as_ref().map(|w| w.status()),
            api: self.api.snapshot(),
        };
        let mut registry = Registry::default();
        registry.register_collector(Box::new(scrape));
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::warn!(error = %e, "metrics: not encoded");
        }
        out
    }
}

/// Everything one scrape shows, read before encoding.
#[derive(Debug)]
struct Scrape {
    cloud: Vec<(String, &'static str, OpMetrics)>,
    breakers: Vec<(String, String, CircuitState)>,
    health: Vec<(String, bool)>,
    operating: OperatingFigures,
    store_up: bool,
    store_seconds: f64,
    events: BTreeMap<&'static str, u64>,
    subscribers: BTreeMap<String, HandlerFigures>,
    completions: BTreeMap<String, Histogram>,
    alerts: Vec<((String, &'static str), u64)>,
    store_calls: Vec<(&'static str, StoreCallFigures)>,
    worker: Option<WorkerStatus>,
    api: Vec<((String, String), Histogram)>,
}

type Labels = Vec<(&'static str, String)>;
type Fmt = Result<(), std::fmt::Error>;

/// Writes one family: its descriptor, then each sample under its labels.
struct Family<'a, 'b> {
    encoder: &'a mut DescriptorEncoder<'b>,
}

impl<'b> Family<'_, 'b> {
    fn counters(&mut self, name: &str, help: &str, samples: impl IntoIterator<Item = (Labels, u64)>) -> Fmt {
        let mut family = self.encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (labels, v) in samples {
            family.encode_family(&labels)?.encode_counter::<NoLabelSet, _, u64>(&v, None)?;
        }
        Ok(())
    }

    fn gauges<V: prometheus_client::encoding::EncodeGaugeValue>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels, V)>,
    ) -> Fmt {
        let mut family = self.encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (labels, v) in samples {
            family.encode_family(&labels)?.encode_gauge(&v)?;
        }
        Ok(())
    }

    fn histograms<'h>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels, &'h Histogram)>,
    ) -> Fmt {
        let mut family = self.encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
        for (labels, h) in samples {
            family.encode_family(&labels)?.encode_histogram::<NoLabelSet>(h.sum(), h.count(), &h.buckets(), None)?;
        }
        Ok(())
    }
}

fn held_labels(h: &ohf_app::queries::Held) -> Labels {
    labels([
        ("provider", h.provider.as_str()),
        ("template", h.template_id.as_str()),
        ("instance_type", h.instance_type.as_str()),
    ])
}

fn labels<const N: usize>(pairs: [(&'static str, &str); N]) -> Labels {
    pairs.into_iter().map(|(k, v)| (k, v.to_owned())).collect()
}

/// The cloud-call counters of one operation: name, help, figure.
type CloudCounter = (&'static str, &'static str, fn(&OpMetrics) -> u64);

const CLOUD_COUNTERS: [CloudCounter; 7] = [
    ("ohf_cloud_calls", "cloud calls made", |o| o.calls),
    ("ohf_cloud_successes", "cloud operations that succeeded", |o| o.successes),
    ("ohf_cloud_failures", "cloud calls that failed", |o| o.failures),
    ("ohf_cloud_retries", "retries after transient failures", |o| o.retries),
    ("ohf_cloud_timeouts", "calls cut off by their deadline", |o| o.timeouts),
    ("ohf_cloud_rejected", "calls refused by an open circuit breaker", |o| o.rejected),
    ("ohf_cloud_rate_limited", "calls that waited for the client-side rate limit", |o| o.rate_limited),
];

const BREAKER_STATES: [(CircuitState, &str); 3] =
    [(CircuitState::Closed, "closed"), (CircuitState::HalfOpen, "half_open"), (CircuitState::Open, "open")];

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Fmt {
        let mut f = Family { encoder: &mut encoder };
        let mut info = f.encoder.encode_descriptor("ohf_build", "the running ohf", None, MetricType::Info)?;
        info.encode_info(&labels([("version", env!("CARGO_PKG_VERSION"))]))?;

        // Cloud calls of this process.
        for (name, help, get) in CLOUD_COUNTERS {
            f.counters(
                name,
                help,
                self.cloud.iter().map(|(p, op, m)| (labels([("provider", p.as_str()), ("operation", op)]), get(m))),
            )?;
        }
        f.histograms(
            "ohf_cloud_call_duration_seconds",
            "how long each cloud call took, by provider and operation",
            self.cloud.iter().map(|(p, op, m)| (labels([("provider", p.as_str()), ("operation", op)]), &m.latency)),
        )?;
        // What every process shares.
        f.gauges(
            "ohf_circuit_breaker_state",
            "1 for the state each provider's breaker of a service is in, 0 for the others",
            self.breakers.iter().flat_map(|(p, s, state)| {
                BREAKER_STATES.iter().map(move |(st, name)| {
                    (
                        labels([("provider", p.as_str()), ("service", s.as_str()), ("state", name)]),
                        i64::from(st == state),
                    )
                })
            }),
        )?;
        f.gauges(
            "ohf_provider_healthy",
            "1 when the provider is healthy now",
            self.health.iter().map(|(p, ok)| (labels([("provider", p.as_str())]), i64::from(*ok))),
        )?;
        f.gauges(
            "ohf_requests",
            "requests in the store, by kind and state",
            self.operating.requests.iter().map(|(k, s, n)| (labels([("kind", k.as_str()), ("state", s.as_str())]), *n)),
        )?;
        let backlog = &self.operating.backlog;
        f.gauges(
            "ohf_backlog_requests",
            "provision requests not finished, by state",
            [
                (labels([("state", "PENDING")]), backlog.pending),
                (labels([("state", "IN_PROGRESS")]), backlog.in_progress),
            ],
        )?;
        f.gauges(
            "ohf_backlog_oldest_age_seconds",
            "how long the oldest unfinished provision request has waited (0 when none)",
            [(Labels::new(), backlog.oldest_age_secs.unwrap_or(0))],
        )?;
        f.gauges(
            "ohf_machines_held",
            "machines held now, by provider, template and instance type",
            self.operating.held.iter().map(|h| (held_labels(h), h.machines)),
        )?;
        f.gauges(
            "ohf_machines_hourly_cost_usd",
            "what the machines held cost per hour, where the price table knows their type",
            self.operating.held.iter().filter_map(|h| h.hourly_usd.map(|usd| (held_labels(h), usd))),
        )?;
        f.gauges("ohf_store_up", "1 when the store answered this scrape", [(Labels::new(), i64::from(self.store_up))])?;
        f.gauges(
            "ohf_store_read_duration_seconds",
            "how long this scrape's read of the store's figures took",
            [(Labels::new(), self.store_seconds)],
        )?;
        f.histograms(
            "ohf_store_call_duration_seconds",
            "how long each call of this process to the store took, by operation",
            self.store_calls.iter().map(|(op, c)| (labels([("operation", op)]), &c.latency)),
        )?;
        f.counters(
            "ohf_store_errors",
            "store calls of this process that failed, by operation and kind (conflict, unavailable, corrupt)",
            self.store_calls.iter().flat_map(|(op, c)| {
                c.errors.iter().map(move |(kind, n)| (labels([("operation", op), ("kind", kind)]), *n))
            }),
        )?;
        // Requests and events seen by this process.
        f.histograms(
            "ohf_request_duration_seconds",
            "time from request to COMPLETED, by template, of the requests this process saw complete",
            self.completions.iter().map(|(t, h)| (labels([("template", t.as_str())]), h)),
        )?;
        f.counters(
            "ohf_request_events",
            "request events stored by this process, by kind",
            self.events.iter().map(|(e, n)| (labels([("event", e)]), *n)),
        )?;
        f.counters(
            "ohf_callbacks",
            "callbacks this process delivered or failed to deliver",
            [("delivered", "callback_delivered"), ("failed", "callback_failed")]
                .into_iter()
                .map(|(outcome, event)| (labels([("outcome", outcome)]), self.events.get(event).copied().unwrap_or(0))),
        )?;
        f.counters(
            "ohf_alerts",
            "alerts handed to each sink, by outcome",
            self.alerts
                .iter()
                .map(|((sink, outcome), n)| (labels([("sink", sink.as_str()), ("outcome", outcome)]), *n)),
        )?;
        f.counters(
            "ohf_event_subscriber_problems",
            "events a bus subscriber failed, timed out on or dropped",
            self.subscribers.iter().flat_map(|(s, fig)| {
                [("failed", fig.failed), ("timed_out", fig.timed_out), ("dropped", fig.dropped)]
                    .into_iter()
                    .map(move |(kind, n)| (labels([("subscriber", s.as_str()), ("kind", kind)]), n))
            }),
        )?;
        // The API and the worker of this daemon.
        f.histograms(
            "ohf_api_call_duration_seconds",
            "how long the daemon took to answer each call, by method and code",
            self.api.iter().map(|((m, c), h)| (labels([("method", m.as_str()), ("code", c.as_str())]), h)),
        )?;
        if let Some(w) = &self.worker {
            let worker = || labels([("worker", w.worker.as_str())]);
            f.counters("ohf_worker_cycles", "reconcile cycles run", [(worker(), w.cycles)])?;
            f.histograms(
                "ohf_worker_cycle_duration_seconds",
                "how long each reconcile cycle took",
                [(worker(), &w.cycle_seconds)],
            )?;
            f.gauges(
                "ohf_worker_last_success_timestamp_seconds",
                "when the last cycle without an error ended (unix seconds; 0 before the first)",
                [(worker(), w.last_success.map_or(0, |t| t.unix_secs()))],
            )?;
            f.gauges(
                "ohf_worker_claimed_requests",
                "requests the worker holds claims on",
                [(worker(), w.held as u64)],
            )?;
            f.counters("ohf_worker_launch_calls", "launch calls the worker made", [(worker(), w.launches)])?;
            f.counters("ohf_worker_conflicts", "writes the worker lost to another writer", [(worker(), w.conflicts)])?;
            f.counters("ohf_sweep_terminations", "orphans the worker's sweeps terminated", [(worker(), w.swept)])?;
        }
        Ok(())
    }
}
