//! `Resilient`: a cloud provider with every call protected. Per operation: the circuit breaker
//! of the provider's service (state in the store, shared by every process), a client-side rate
//! limit shared by every call of the process, a deadline that bounds the whole operation, and
//! retries of transient failures with exponential backoff and jitter, honouring `Retry-After`.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ohf_app::shared;
use ohf_app::{
    CallName, Clock, CloudError, CloudErrorKind, CloudProvider, DescribeQuery, EventBus, LaunchRequest, LaunchResult,
    OwnedMachine, Ownership, ProviderCall, ProviderCapacity, Refusal, SharedState, SystemEvent,
};
use ohf_domain::instance_types::InstanceTypeInfo;
use ohf_domain::{MachineObservation, Priority, ProviderName, RequestId, Template};
use serde::Serialize;
use tokio::time::Instant;

use crate::breaker::{Admission, Breaker, BreakerRules, CircuitState};
use crate::config::ResilienceConfig;

pub use ohf_app::ports::operations::*;

/// Whether a failure is worth another attempt within the operation. Capacity shortfalls are
/// not: the request's lifecycle retries the launch on a later cycle, where it can change
/// subnet or type, without holding up the rest of the cycle.
pub fn retryable(e: &CloudError) -> bool {
    matches!(
        e.kind,
        CloudErrorKind::Throttling
            | CloudErrorKind::Unavailable
            | CloudErrorKind::Internal
            | CloudErrorKind::Timeout
            | CloudErrorKind::Busy
    ) && e.code != CIRCUIT_OPEN
}

/// Whether a failure says the service is unwell (and counts toward opening its breaker); the
/// caller's own mistakes (validation, auth, not found), capacity shortfalls and busy resources
/// do not.
pub fn unhealthy(e: &CloudError) -> bool {
    retryable(e) && e.kind != CloudErrorKind::Busy
}

pub const CIRCUIT_OPEN: &str = "CircuitOpen";

/// Counters of one operation in this process.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OpMetrics {
    pub calls: u64,
    pub successes: u64,
    pub failures: u64,
    pub retries: u64,
    pub timeouts: u64,
    /// Refused at once by an open breaker.
    pub rejected: u64,
    /// Times a call waited for the client-side rate limit.
    pub rate_limited: u64,
    pub total_latency_ms: u64,
    /// How long each call took, whatever its outcome (timeouts too).
    #[serde(skip)]
    pub latency: ohf_app::figures::Histogram,
    /// Failures by the provider's error code.
    pub errors: BTreeMap<String, u64>,
}

impl OpMetrics {
    pub fn success_rate(&self) -> Option<f64> {
        let done = self.successes + self.failures;
        (done > 0).then(|| self.successes as f64 / done as f64)
    }
}

pub struct Resilient {
    inner: Arc<dyn CloudProvider>,
    config: ResilienceConfig,
    store: Arc<dyn SharedState>,
    clock: Arc<dyn Clock>,
    buckets: Mutex<HashMap<&'static str, Bucket>>,
    metrics: Mutex<BTreeMap<&'static str, OpMetrics>>,
    seed: Mutex<u64>,
    bus: Option<EventBus>,
}

/// One operation's client-side token bucket, with the calls waiting on it by priority rank
/// (0 high, 1 normal, 2 low).
struct Bucket {
    tokens: f64,
    last: Instant,
    waiting: [u32; 3],
}

/// A call that has waited this long for a token goes as if it were high priority: a burst of
/// urgent work delays the rest, never starves it.
const AGING: Duration = Duration::from_secs(30);

/// How often a call that lets a higher-priority one go first looks again.
const YIELD: Duration = Duration::from_millis(20);

/// Takes a waiting call off its bucket's queue however the wait ends (a token, the deadline, a
/// cancelled future).
struct Waiting<'a> {
    buckets: &'a Mutex<HashMap<&'static str, Bucket>>,
    op: &'static str,
    rank: usize,
    registered: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.registered {
            let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(b) = buckets.get_mut(self.op) {
                b.waiting[self.rank] = b.waiting[self.rank].saturating_sub(1);
            }
        }
    }
}

/// Where breakers live in the store's shared state: `breaker/<provider>/<service>`.
pub const BREAKER_PREFIX: &str = ohf_app::shared::keys::BREAKERS;

/// The store key of a provider's breaker for one service.
pub fn breaker_key(provider: &str, service: &str) -> String {
    ohf_app::shared::keys::breaker(provider, service)
}

impl Resilient {
    pub fn new(
        inner: Arc<dyn CloudProvider>,
        config: ResilienceConfig,
        store: Arc<dyn SharedState>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let seed = clock.now().unix_millis() as u64 ^ u64::from(std::process::id()).rotate_left(32);
        Self {
            inner,
            config,
            store,
            clock,
            buckets: Mutex::default(),
            metrics: Mutex::default(),
            seed: Mutex::new(seed | 1),
            bus: None,
        }
    }

    /// Publishes every breaker change this wrapper makes on `bus`.
    pub fn with_bus(mut self, bus: EventBus) -> Self {
        self.bus = Some(bus);
        self
    }

    /// The breaker name of one service of this provider: `aws_ec2`, `aws_autoscaling`, …
    pub fn service(&self, service: &str) -> String {
        format!("{}_{service}", self.inner.kind())
    }

    /// This process's counters per operation.
    pub fn metrics(&self) -> BTreeMap<&'static str, OpMetrics> {
        self.metrics.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn count(&self, op: &'static str, f: impl FnOnce(&mut OpMetrics)) {
        f(self.metrics.lock().unwrap_or_else(|p| p.into_inner()).entry(op).or_default());
    }

    /// A number in [0, 1) for jitter (xorshift; quality is beside the point).
    fn draw(&self) -> f64 {
        let mut s = self.seed.lock().unwrap_or_else(|p| p.into_inner());
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        (*s >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Applies `change` to the shared breaker and stores it when it changed; another process
    /// writing first makes it read and apply again. A store that cannot be reached leaves the
    /// breaker closed (the cloud call itself is the better judge then).
    async fn breaker<T>(&self, service: &str, change: impl Fn(&mut Breaker) -> T) -> T {
        let key = breaker_key(self.inner.name().as_str(), service);
        let now = self.clock.now();
        let mut out = None;
        match shared::update(&*self.store, &key, || Breaker::new(now), |b| out = Some(change(b))).await {
            Ok((before, after)) => {
                if after.state != before.state {
                    self.log_transition(service, &before, &after);
                }
            }
            Err(e) => tracing::warn!(error = %e, key, "breaker state not read or not stored"),
        }
        // Unread: a closed breaker. Unstored: what the last read said.
        out.unwrap_or_else(|| change(&mut Breaker::new(now)))
    }

    fn log_transition(&self, service: &str, before: &Breaker, after: &Breaker) {
        let provider = self.inner.name().as_str();
        let (from, to) = (before.state.as_str(), after.state.as_str());
        if let Some(bus) = &self.bus {
            bus.publish_system(SystemEvent::BreakerChanged {
                provider: provider.to_owned(),
                service: service.to_owned(),
                from: from.to_owned(),
                to: to.to_owned(),
                failures: after.failures,
                at: self.clock.now(),
            });
        }
        if !self.config.error_handling.log_circuit_breaker_state_changes {
            return;
        }
        match after.state {
            CircuitState::Open if self.config.error_handling.alert_on_circuit_breaker_open => {
                tracing::error!(provider, service, from, to, failures = after.failures, "circuit breaker opened")
            }
            _ => tracing::warn!(provider, service, from, to, "circuit breaker changed state"),
        }
    }

    /// Takes one call from the operation's bucket, waiting for it unless that would pass
    /// `deadline`.
    /// Calls of higher priority (lower `rank`) waiting on the same bucket go first.
    async fn take_token(&self, op: &'static str, deadline: Instant, rank: usize) -> Result<(), CloudError> {
        let Some(bucket) = self.config.rate_limit.operations.get(op).filter(|_| self.config.rate_limit.enabled) else {
            return Ok(());
        };
        let rank = rank.min(2);
        let started = Instant::now();
        let mut queued = Waiting { buckets: &self.buckets, op, rank, registered: false };
        loop {
            let wait = {
                let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let b = buckets.entry(op).or_insert(Bucket { tokens: bucket.burst, last: now, waiting: [0; 3] });
                b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * bucket.per_sec).min(bucket.burst);
                b.last = now;
                let standing = if now.duration_since(started) >= AGING { 0 } else { rank };
                let ahead = b.waiting[..standing].iter().any(|n| *n > 0);
                if b.tokens >= 1.0 && !ahead {
                    b.tokens -= 1.0;
                    None
                } else {
                    if !queued.registered {
                        b.waiting[rank] += 1;
                        queued.registered = true;
                    }
                    Some(if b.tokens >= 1.0 {
                        YIELD
                    } else {
                        Duration::from_secs_f64((1.0 - b.tokens) / bucket.per_sec)
                    })
                }
            };
            let Some(wait) = wait else { return Ok(()) };
            if Instant::now() + wait > deadline {
                return Err(CloudError::new(
                    CloudErrorKind::Throttling,
                    "ClientRateLimit",
                    format!("{op}: the client-side rate limit leaves no call before the deadline"),
                ));
            }
            self.count(op, |m| m.rate_limited += 1);
            tokio::time::sleep(wait).await;
        }
    }

    /// Runs one operation under the breaker, the rate limit, the deadline and retries.
    pub async fn run<T, F, Fut>(&self, name: CallName, call: F) -> Result<T, CloudError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, CloudError>>,
    {
        self.run_ranked(name, Priority::Normal, call).await
    }

    /// [`Resilient::run`] for a call made for work of `priority`: it waits for a rate-limit
    /// token behind no call of lower priority.
    pub async fn run_ranked<T, F, Fut>(&self, name: CallName, priority: Priority, call: F) -> Result<T, CloudError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, CloudError>>,
    {
        use tracing::Instrument;
        let span = tracing::info_span!(
            "cloud_call",
            provider = %self.inner.name(),
            service = name.service,
            operation = name.operation
        );
        self.run_in_span(name, priority, call).instrument(span).await
    }

    async fn run_in_span<T, F, Fut>(&self, name: CallName, priority: Priority, call: F) -> Result<T, CloudError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, CloudError>>,
    {
        let rank = usize::try_from(priority.rank()).unwrap_or(2);
        let op = name.operation;
        let retry = self.config.retry.policy(op);
        let service = self.service(name.service);
        let breaker = self.config.circuit_breaker.policy(&service);
        let budget = self.config.timeout.of(op);
        let deadline = Instant::now() + budget;
        let mut attempt = 0u32;
        loop {
            if self.config.circuit_breaker.enabled
                && let Admission::Refused { retry_after } =
                    self.breaker(&service, |b| b.admit(self.clock.now(), &breaker)).await
            {
                self.count(op, |m| m.rejected += 1);
                let mut e = CloudError::new(
                    CloudErrorKind::Unavailable,
                    CIRCUIT_OPEN,
                    format!(
                        "the circuit breaker of {} on provider '{}' is open after repeated failures; calls fail fast for {} s",
                        service,
                        self.inner.name(),
                        retry_after.as_secs().max(1)
                    ),
                );
                e.retry_after = Some(retry_after);
                return Err(e);
            }
            self.take_token(op, deadline, rank).await?;
            self.count(op, |m| m.calls += 1);
            let started = Instant::now();
            let left = deadline.saturating_duration_since(started);
            let outcome = match tokio::time::timeout(left, ohf_app::ports::within_deadline(deadline, call())).await {
                Ok(r) => r,
                Err(_) => {
                    self.count(op, |m| m.timeouts += 1);
                    Err(CloudError::new(
                        CloudErrorKind::Timeout,
                        "Timeout",
                        format!("{op} did not finish within its {} s deadline", budget.as_secs_f64()),
                    ))
                }
            };
            let took = started.elapsed();
            let ms = took.as_millis() as u64;
            match outcome {
                Ok(v) => {
                    self.count(op, |m| {
                        m.successes += 1;
                        m.total_latency_ms += ms;
                        m.latency.observe(took.as_secs_f64());
                    });
                    if self.config.circuit_breaker.enabled {
                        self.breaker(&service, |b| b.on_success(self.clock.now())).await;
                    }
                    return Ok(v);
                }
                Err(e) => {
                    self.count(op, |m| {
                        m.failures += 1;
                        m.total_latency_ms += ms;
                        m.latency.observe(took.as_secs_f64());
                        *m.errors.entry(e.code.clone()).or_default() += 1;
                    });
                    if self.config.circuit_breaker.enabled && unhealthy(&e) {
                        self.breaker(&service, |b| b.on_failure(self.clock.now(), &breaker)).await;
                    }
                    attempt += 1;
                    if !retryable(&e) || attempt >= retry.max_attempts {
                        return Err(e);
                    }
                    let mut pause = retry.delay(attempt - 1, self.draw());
                    if let Some(asked) = e.retry_after {
                        pause = pause.max(asked);
                    }
                    if Instant::now() + pause >= deadline {
                        return Err(e);
                    }
                    if self.config.error_handling.log_retries {
                        tracing::info!(provider = %self.inner.name(), op, attempt, pause_ms = pause.as_millis() as u64, error = %e, "retrying");
                    }
                    self.count(op, |m| m.retries += 1);
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}

#[async_trait]
impl CloudProvider for Resilient {
    fn name(&self) -> &ProviderName {
        self.inner.name()
    }
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn capabilities(&self) -> &'static [&'static str] {
        self.inner.capabilities()
    }
    fn call_name(&self, call: ProviderCall<'_>) -> CallName {
        self.inner.call_name(call)
    }
    async fn health_check(&self) -> Result<(), CloudError> {
        // Through the breaker: an open one answers at once, a half-open one takes it as a probe.
        self.run(self.inner.call_name(ProviderCall::Describe), || self.inner.health_check()).await
    }
    async fn instance_types(&self, names: &[String]) -> Result<Vec<(String, InstanceTypeInfo)>, CloudError> {
        self.run(self.inner.call_name(ProviderCall::InstanceTypes), || self.inner.instance_types(names)).await
    }
    async fn check_template(&self, template: &Template) -> Result<(), CloudError> {
        self.inner.check_template(template).await
    }
    async fn spot_prices(
        &self,
        instance_types: &[String],
    ) -> Result<std::collections::BTreeMap<String, f64>, CloudError> {
        // A describe of the spot market, under the same breaker, deadline and retries.
        self.run(self.inner.call_name(ProviderCall::Describe), || self.inner.spot_prices(instance_types)).await
    }
    async fn check_zones(&self, template: &Template, zones: &[String]) -> Result<(), CloudError> {
        // A describe of subnets or zones, under the same breaker, deadline and retries.
        self.run(self.inner.call_name(ProviderCall::Describe), || self.inner.check_zones(template, zones)).await
    }
    async fn identity(&self) -> Result<Option<String>, CloudError> {
        // A doctor's question, asked once: no breaker, no retries beyond the SDK's.
        self.inner.identity().await
    }
    async fn inspect(&self, template: &Template) -> Result<Vec<String>, CloudError> {
        // Describes, under the same breaker, deadline and retries.
        self.run(self.inner.call_name(ProviderCall::Describe), || self.inner.inspect(template)).await
    }
    async fn measure_venue(
        &self,
        venue: &ohf_app::ports::VenueQuery,
    ) -> Result<ohf_app::ports::VenueReading, CloudError> {
        // Describes too: subnets, offerings and prices, under the same breaker.
        self.run(self.inner.call_name(ProviderCall::Describe), || self.inner.measure_venue(venue)).await
    }
    async fn capacity(&self, template: &Template) -> Result<Option<ProviderCapacity>, CloudError> {
        self.inner.capacity(template).await
    }
    async fn launch(&self, request: &LaunchRequest) -> Result<LaunchResult, CloudError> {
        // Repeating a launch is safe: its client token returns the machines of the first try.
        let name = self.inner.call_name(ProviderCall::Launch(&request.template));
        self.run_ranked(name, request.priority, || self.inner.launch(request)).await
    }
    async fn follow(&self, launches: &[LaunchRequest]) -> Result<Vec<Result<LaunchResult, CloudError>>, CloudError> {
        // One protected call per operation (a fleet's breaker never answers for a group's),
        // for the most urgent of its launches; a launch whose own answer failed on a passing
        // fault goes again on its own, under the same protection as any launch.
        let mut out: Vec<Option<Result<LaunchResult, CloudError>>> = launches.iter().map(|_| None).collect();
        let mut kinds: Vec<(CallName, Vec<usize>)> = Vec::new();
        for (i, launch) in launches.iter().enumerate() {
            let name = self.inner.call_name(ProviderCall::Launch(&launch.template));
            match kinds.iter_mut().find(|(n, _)| n.operation == name.operation) {
                Some((_, of)) => of.push(i),
                None => kinds.push((name, vec![i])),
            }
        }
        for (name, of) in kinds {
            let batch: Vec<LaunchRequest> = of.iter().map(|&i| launches[i].clone()).collect();
            let priority = batch.iter().map(|l| l.priority).min_by_key(|p| p.rank()).unwrap_or(Priority::Normal);
            let answers = match self.run_ranked(name, priority, || self.inner.follow(&batch)).await {
                Ok(answers) if answers.len() == batch.len() => answers,
                Ok(answers) => {
                    let e = CloudError::unanswered(self.inner.name(), answers.len(), batch.len());
                    batch.iter().map(|_| Err(e.clone())).collect()
                }
                Err(e) => {
                    // The call itself failed with its retries spent: nothing goes again now.
                    for &i in &of {
                        out[i] = Some(Err(e.clone()));
                    }
                    continue;
                }
            };
            for ((&i, answer), launch) in of.iter().zip(answers).zip(&batch) {
                out[i] = Some(match answer {
                    Err(e) if retryable(&e) => self.launch(launch).await,
                    answer => answer,
                });
            }
        }
        let missing = CloudError::unanswered(self.inner.name(), 0, 1);
        Ok(out.into_iter().map(|a| a.unwrap_or_else(|| Err(missing.clone()))).collect())
    }
    async fn release(&self, resource: &str, request: &RequestId, owner: &Ownership) -> Result<(), CloudError> {
        self.run(self.inner.call_name(ProviderCall::Release(resource)), || self.inner.release(resource, request, owner))
            .await
    }
    async fn describe(&self, query: &DescribeQuery) -> Result<Vec<MachineObservation>, CloudError> {
        self.run(self.inner.call_name(ProviderCall::Describe), || self.inner.describe(query)).await
    }
    async fn terminate(&self, machines: &[OwnedMachine], owner: &Ownership) -> Result<Vec<Refusal>, CloudError> {
        self.run(self.inner.call_name(ProviderCall::Terminate), || self.inner.terminate(machines, owner)).await
    }
    async fn prune(&self, keep: &[Template], owner: &Ownership) -> Result<Vec<String>, CloudError> {
        // A deletion, like every other call: under the breaker, the deadline and retries.
        self.run(self.inner.call_name(ProviderCall::Prune), || self.inner.prune(keep, owner)).await
    }
    fn report(&self) -> Option<serde_json::Value> {
        let operations: serde_json::Map<String, serde_json::Value> = self
            .metrics()
            .into_iter()
            .map(|(op, m)| {
                let mut v = serde_json::to_value(&m).unwrap_or_default();
                v["successRate"] = serde_json::json!(m.success_rate());
                (op.to_owned(), v)
            })
            .collect();
        Some(serde_json::json!({"service": self.service("ec2"), "operations": operations}))
    }
}

/// Every breaker in the store, by key, as every process sharing the store sees them.
pub async fn breakers(store: &dyn SharedState) -> Result<Vec<(String, Breaker)>, ohf_app::StoreError> {
    Ok(store
        .list_shared(BREAKER_PREFIX)
        .await?
        .into_iter()
        .filter_map(|(k, v, _)| serde_json::from_str(&v).ok().map(|b| (k, b)))
        .collect())
}
