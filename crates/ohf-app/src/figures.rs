//! Figures a process keeps about itself for its metrics: latency histograms and what the bus
//! saw requests take. Plain data; the daemon's exporter turns them into the Prometheus format.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use ohf_domain::{
    EventEnvelope, MachineId, ProviderName, Request, RequestEvent, RequestId, RequestKind, RequestState, TemplateId,
    Timestamp,
};

use crate::bus::EventHandler;
use crate::ports::{
    ClaimSpan, Fence, Limits, RequestFilter, RequestStore, Requests, SharedState, StoreError, Usage, WorkClaims,
};

/// Upper bounds, in seconds, of the buckets of every latency histogram (calls, cycles, API).
pub const LATENCY_BOUNDS: [f64; 15] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Upper bounds, in seconds, of the buckets of request durations (request to COMPLETED).
pub const REQUEST_BOUNDS: [f64; 12] =
    [5.0, 15.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0];

/// A histogram with fixed buckets: each bucket counts the observations above the bound before
/// it and at most its own; the last one counts what lies above every bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    /// An empty histogram over `bounds` (ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        Self { bounds, counts: vec![0; bounds.len() + 1], sum: 0.0, count: 0 }
    }

    /// An empty latency histogram ([`LATENCY_BOUNDS`]).
    pub fn latency() -> Self {
        Self::new(&LATENCY_BOUNDS)
    }

    /// Counts one observation of `value` (seconds); a value that is not a number is left out.
    pub fn observe(&mut self, value: f64) {
        if value.is_nan() {
            return;
        }
        let value = value.max(0.0);
        let slot = self.bounds.iter().position(|b| value <= *b).unwrap_or(self.bounds.len());
        self.counts[slot] += 1;
        self.sum += value;
        self.count += 1;
    }

    /// Each bucket's upper bound with its own count (not cumulative); the last bound is
    /// `f64::MAX`, standing for +Inf.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        self.bounds.iter().copied().chain([f64::MAX]).zip(self.counts.iter().copied()).collect()
    }

    /// The sum of the observations.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// How many observations.
    pub fn count(&self) -> u64 {
        self.count
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::latency()
    }
}

/// How long requests took from their creation to COMPLETED, per template, as this process saw
/// them complete; a subscriber of the bus. A request made by another process (a Host Factory
/// script, another daemon) is read once from the store when it completes here.
pub struct Completions {
    store: Arc<dyn RequestStore>,
    state: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// Requests made here that have not ended: their template and creation time.
    open: HashMap<String, (String, Timestamp)>,
    by_template: BTreeMap<String, Histogram>,
}

/// Requests made here that are remembered at most; past this the oldest entries are read back
/// from the store instead.
const OPEN_KEPT: usize = 100_000;

impl Completions {
    /// A subscriber reading requests it did not see made from `store`.
    pub fn new(store: Arc<dyn RequestStore>) -> Self {
        Self { store, state: Mutex::default() }
    }

    /// Per template, the time from request to COMPLETED.
    pub fn snapshot(&self) -> BTreeMap<String, Histogram> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).by_template.clone()
    }

    fn record(&self, template: String, secs: f64) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.by_template.entry(template).or_insert_with(|| Histogram::new(&REQUEST_BOUNDS)).observe(secs);
    }
}

#[async_trait]
impl EventHandler for Completions {
    fn name(&self) -> &str {
        "completions"
    }

    async fn handle(&self, event: &EventEnvelope) -> Result<(), String> {
        let id = event.request_id.as_str();
        match &event.event {
            RequestEvent::Created { creation } => {
                if let Some(template) = &creation.template {
                    let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                    if state.open.len() >= OPEN_KEPT {
                        state.open.clear();
                    }
                    state.open.insert(id.to_owned(), (template.id().as_str().to_owned(), event.at));
                }
                Ok(())
            }
            RequestEvent::StateChanged { to, .. } if to.is_terminal() => {
                let seen = self.state.lock().unwrap_or_else(|p| p.into_inner()).open.remove(id);
                if *to != RequestState::Completed {
                    return Ok(());
                }
                let made = match seen {
                    Some(made) => Some(made),
                    None => self
                        .store
                        .get(&event.request_id)
                        .await
                        .map_err(|e| e.to_string())?
                        .and_then(|r| r.template().map(|t| (t.id().as_str().to_owned(), r.created_at()))),
                };
                if let Some((template, created)) = made {
                    let millis = (event.at.unix_millis() - created.unix_millis()).max(0);
                    self.record(template, millis as f64 / 1000.0);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// What one store operation did in this process: its latency, and its errors by kind
/// (`conflict`, `unavailable`, `corrupt`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreCallFigures {
    /// How long each call took.
    pub latency: Histogram,
    /// Calls that failed, by kind.
    pub errors: BTreeMap<&'static str, u64>,
}

/// A store that times every call to the store it wraps and counts its errors, per operation.
pub struct MeasuredStore {
    inner: Arc<dyn RequestStore>,
    calls: Mutex<BTreeMap<&'static str, StoreCallFigures>>,
}

impl MeasuredStore {
    /// Measures `inner`.
    pub fn new(inner: Arc<dyn RequestStore>) -> Self {
        Self { inner, calls: Mutex::default() }
    }

    /// Every operation called so far with its figures.
    pub fn snapshot(&self) -> Vec<(&'static str, StoreCallFigures)> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(op, f)| (*op, f.clone())).collect()
    }

    async fn timed<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let out = call.await;
        let took = started.elapsed().as_secs_f64();
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let figures = calls.entry(op).or_default();
        figures.latency.observe(took);
        if let Err(e) = &out {
            let kind = match e {
                StoreError::Conflict { .. } => "conflict",
                StoreError::Unavailable(_) => "unavailable",
                StoreError::Corrupt(_) => "corrupt",
            };
            *figures.errors.entry(kind).or_default() += 1;
        }
        out
    }
}

#[async_trait]
impl Requests for MeasuredStore {
    async fn save(&self, batch: &[&Request], fence: Option<&Fence>) -> Result<(), StoreError> {
        self.timed("save", self.inner.save(batch, fence)).await
    }
    async fn create_within(
        &self,
        request: &Request,
        limits: &Limits,
        also: Option<(&str, &str)>,
    ) -> Result<Option<Usage>, StoreError> {
        self.timed("create_within", self.inner.create_within(request, limits, also)).await
    }
    async fn get(&self, id: &RequestId) -> Result<Option<Request>, StoreError> {
        self.timed("get", self.inner.get(id)).await
    }
    async fn get_many(&self, ids: &[RequestId]) -> Result<Vec<Request>, StoreError> {
        self.timed("get_many", self.inner.get_many(ids)).await
    }
    async fn list(&self, filter: &RequestFilter) -> Result<Vec<Request>, StoreError> {
        self.timed("list", self.inner.list(filter)).await
    }
    async fn needing_work(&self, ids: Option<&[RequestId]>) -> Result<Vec<Request>, StoreError> {
        self.timed("needing_work", self.inner.needing_work(ids)).await
    }
    async fn find_holders(&self, ids: &[MachineId], names: &[String]) -> Result<Vec<Request>, StoreError> {
        self.timed("find_holders", self.inner.find_holders(ids, names)).await
    }
    async fn count_by_state(&self) -> Result<Vec<(RequestKind, RequestState, u64)>, StoreError> {
        self.timed("count_by_state", self.inner.count_by_state()).await
    }
    async fn capacity_held(&self) -> Result<HashMap<TemplateId, u32>, StoreError> {
        self.timed("capacity_held", self.inner.capacity_held()).await
    }
    async fn work_by_provider(&self) -> Result<HashMap<ProviderName, u64>, StoreError> {
        self.timed("work_by_provider", self.inner.work_by_provider()).await
    }
    async fn history(&self, id: &RequestId) -> Result<Vec<EventEnvelope>, StoreError> {
        self.timed("history", self.inner.history(id)).await
    }
    async fn delete_finished(&self, before: Timestamp, limit: u32) -> Result<u64, StoreError> {
        self.timed("delete_finished", self.inner.delete_finished(before, limit)).await
    }
}

#[async_trait]
impl WorkClaims for MeasuredStore {
    async fn claim(&self, worker: &str, now: Timestamp, ttl_ms: i64, limit: u32) -> Result<Vec<Request>, StoreError> {
        self.timed("claim", self.inner.claim(worker, now, ttl_ms, limit)).await
    }
    async fn renew(&self, worker: &str, ids: &[RequestId], now: Timestamp, ttl_ms: i64) -> Result<u64, StoreError> {
        self.timed("renew", self.inner.renew(worker, ids, now, ttl_ms)).await
    }
    async fn now(&self) -> Result<Option<Timestamp>, StoreError> {
        self.timed("now", self.inner.now()).await
    }
    async fn release(&self, worker: &str, ids: &[RequestId], now: Timestamp) -> Result<(), StoreError> {
        self.timed("release", self.inner.release(worker, ids, now)).await
    }
    async fn lead(&self, job: &str, worker: &str, now: Timestamp, ttl_ms: i64) -> Result<bool, StoreError> {
        self.timed("lead", self.inner.lead(job, worker, now, ttl_ms)).await
    }
    async fn claim_history(&self, id: &RequestId) -> Result<Vec<ClaimSpan>, StoreError> {
        self.timed("claim_history", self.inner.claim_history(id)).await
    }
}

#[async_trait]
impl SharedState for MeasuredStore {
    async fn load_shared(&self, key: &str) -> Result<(Option<String>, i64), StoreError> {
        self.timed("load_shared", self.inner.load_shared(key)).await
    }
    async fn store_shared(&self, key: &str, value: &str, expected: i64) -> Result<bool, StoreError> {
        self.timed("store_shared", self.inner.store_shared(key, value, expected)).await
    }
    async fn list_shared(&self, prefix: &str) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.timed("list_shared", self.inner.list_shared(prefix)).await
    }
    async fn list_shared_many(&self, prefixes: &[&str]) -> Result<Vec<Vec<(String, String, i64)>>, StoreError> {
        self.timed("list_shared_many", self.inner.list_shared_many(prefixes)).await
    }
    async fn remove_shared(&self, key: &str, expected: i64) -> Result<bool, StoreError> {
        self.timed("remove_shared", self.inner.remove_shared(key, expected)).await
    }
    async fn installation(&self) -> Result<String, StoreError> {
        self.timed("installation", self.inner.installation()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_value_lands_in_the_first_bucket_that_holds_it() {
        let mut h = Histogram::new(&[0.1, 1.0]);
        for v in [0.05, 0.1, 0.5, 3.0, f64::NAN, -1.0] {
            h.observe(v);
        }
        assert_eq!(h.buckets(), vec![(0.1, 3), (1.0, 1), (f64::MAX, 1)]);
        assert_eq!(h.count(), 5);
        assert!((h.sum() - 3.65).abs() < 1e-9);
    }
}
