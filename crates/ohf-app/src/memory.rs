//! In-memory adapters: a request store, a template catalog, a hand-driven clock and
//! sequential ids; providers for tests and benchmarks (a faulty wrapper, an instant cloud). For
//! tests and for services that embed ohf without persistence.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use ohf_domain::{
    EventEnvelope, MachineId, MachineObservation, MachineStatus, ProviderName, Request, RequestId, RequestKind,
    RequestState, Template, TemplateId, Timestamp,
};

use crate::ports::{
    CatalogError, ClaimSpan, Clock, CloudError, CloudErrorKind, CloudProvider, DescribeQuery, Fence, IdGenerator,
    LaunchRequest, LaunchResult, Limits, OwnedMachine, Ownership, ProviderCapacity, Refusal, RequestFilter, Requests,
    SharedState, StoreError, TemplateCatalog, Usage, WorkClaims,
};

#[derive(Default)]
struct Entry {
    request: Option<Request>,
    history: Vec<EventEnvelope>,
    /// The worker holding the request and until when.
    claim: Option<(String, Timestamp)>,
    spans: Vec<ClaimSpan>,
}

impl Entry {
    fn held_by_other(&self, worker: &str, now: Timestamp) -> bool {
        self.claim.as_ref().is_some_and(|(w, until)| w != worker && *until >= now)
    }
}

#[derive(Default)]
struct Inner {
    entries: HashMap<RequestId, Entry>,
    leases: HashMap<String, (String, Timestamp)>,
    shared: std::collections::BTreeMap<String, (String, i64)>,
}

/// A request store in memory.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    contended: std::sync::atomic::AtomicBool,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// While on, every change to a stored request conflicts, as when other writers keep
    /// changing it (new requests still save): for tests of busy answers.
    pub fn set_contended(&self, on: bool) {
        self.contended.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    fn all(&self) -> Vec<Request> {
        self.lock().entries.values().filter_map(|e| e.request.clone()).collect()
    }
}

#[async_trait]
impl Requests for MemoryStore {
    async fn save(&self, batch: &[&Request], fence: Option<&Fence>) -> Result<(), StoreError> {
        if self.contended.load(std::sync::atomic::Ordering::SeqCst) && batch.iter().all(|r| r.version() > 0) {
            return Err(StoreError::Conflict { request_id: batch[0].id().to_string() });
        }
        save_locked(&mut self.lock(), batch, fence)
    }

    async fn create_within(
        &self,
        request: &Request,
        limits: &Limits,
        also: Option<(&str, &str)>,
    ) -> Result<Option<Usage>, StoreError> {
        // One lock over the judgement and the inserts: nothing comes in between.
        let mut inner = self.lock();
        if let Some((key, _)) = also
            && inner.shared.contains_key(key)
        {
            return Err(StoreError::Conflict { request_id: key.to_owned() });
        }
        if limits.any() {
            let mut held = HashMap::new();
            for r in inner.entries.values().filter_map(|e| e.request.as_ref()) {
                if let Some(t) = r.template() {
                    *held.entry(t.id().clone()).or_insert(0u32) += r.capacity_held();
                }
            }
            let usage = limits.usage(&held);
            if !limits.fit(usage, request.capacity_held()) {
                return Ok(Some(usage));
            }
        }
        save_locked(&mut inner, &[request], None)?;
        if let Some((key, value)) = also {
            inner.shared.insert(key.to_owned(), (value.to_owned(), 1));
        }
        Ok(None)
    }

    async fn get(&self, id: &RequestId) -> Result<Option<Request>, StoreError> {
        Ok(self.lock().entries.get(id).and_then(|e| e.request.clone()))
    }

    async fn get_many(&self, ids: &[RequestId]) -> Result<Vec<Request>, StoreError> {
        let inner = self.lock();
        Ok(ids.iter().filter_map(|id| inner.entries.get(id).and_then(|e| e.request.clone())).collect())
    }

    async fn list(&self, filter: &RequestFilter) -> Result<Vec<Request>, StoreError> {
        let mut list: Vec<Request> = self
            .all()
            .into_iter()
            .filter(|r| {
                if filter.states.is_empty() {
                    r.state() != ohf_domain::RequestState::Rejected
                } else {
                    filter.states.contains(&r.state())
                }
            })
            .filter(|r| filter.kind.is_none_or(|k| r.kind() == k))
            .filter(|r| filter.template.as_ref().is_none_or(|t| r.template().map(Template::id) == Some(t)))
            .filter(|r| !filter.holding || r.capacity_held() > 0)
            .filter(|r| !filter.unfinished || r.needs_work())
            .filter(|r| filter.created_since.is_none_or(|t| r.created_at() >= t))
            .collect();
        list.sort_by(|a, b| b.created_at().cmp(&a.created_at()).then_with(|| b.id().cmp(a.id())));
        if let Some(limit) = filter.limit {
            list.truncate(limit as usize);
        }
        Ok(list)
    }

    async fn needing_work(&self, ids: Option<&[RequestId]>) -> Result<Vec<Request>, StoreError> {
        let all = match ids {
            Some(ids) => self.get_many(ids).await?,
            None => self.all(),
        };
        Ok(all.into_iter().filter(Request::needs_work).collect())
    }

    async fn find_holders(&self, ids: &[MachineId], names: &[String]) -> Result<Vec<Request>, StoreError> {
        Ok(self
            .all()
            .into_iter()
            .filter(|r| r.kind() == RequestKind::Provision)
            .filter(|r| {
                r.machines()
                    .iter()
                    .any(|m| ids.contains(m.id()) || m.name().is_some_and(|n| names.iter().any(|x| x == n)))
            })
            .collect())
    }

    async fn count_by_state(&self) -> Result<Vec<(RequestKind, RequestState, u64)>, StoreError> {
        let mut counts: std::collections::BTreeMap<(&'static str, &'static str), (RequestKind, RequestState, u64)> =
            std::collections::BTreeMap::new();
        for r in self.all() {
            counts.entry((r.kind().as_str(), r.state().as_str())).or_insert((r.kind(), r.state(), 0)).2 += 1;
        }
        Ok(counts.into_values().collect())
    }

    async fn capacity_held(&self) -> Result<HashMap<TemplateId, u32>, StoreError> {
        let mut held = HashMap::new();
        for r in self.all() {
            if let Some(t) = r.template() {
                *held.entry(t.id().clone()).or_insert(0) += r.capacity_held();
            }
        }
        Ok(held)
    }

    async fn work_by_provider(&self) -> Result<HashMap<ProviderName, u64>, StoreError> {
        let mut work = HashMap::new();
        for r in self.all().into_iter().filter(Request::needs_work) {
            if let Some(p) = r.provider() {
                *work.entry(p.clone()).or_insert(0) += 1;
            }
        }
        Ok(work)
    }

    async fn history(&self, id: &RequestId) -> Result<Vec<EventEnvelope>, StoreError> {
        Ok(self.lock().entries.get(id).map(|e| e.history.clone()).unwrap_or_default())
    }

    async fn delete_finished(&self, before: Timestamp, limit: u32) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let mut old: Vec<(Timestamp, RequestId)> = inner
            .entries
            .iter()
            .filter_map(|(id, e)| e.request.as_ref().map(|r| (id, r)))
            .filter(|(_, r)| !r.needs_work() && r.capacity_held() == 0 && r.updated_at() < before)
            .map(|(id, r)| (r.updated_at(), id.clone()))
            .collect();
        old.sort();
        old.truncate(limit as usize);
        for (_, id) in &old {
            inner.entries.remove(id);
        }
        Ok(old.len() as u64)
    }
}

#[async_trait]
impl WorkClaims for MemoryStore {
    async fn claim(&self, worker: &str, now: Timestamp, ttl_ms: i64, limit: u32) -> Result<Vec<Request>, StoreError> {
        let mut inner = self.lock();
        let until = now.plus_millis(ttl_ms);
        // High before normal before low; within a priority, what was claimed longest ago
        // (never or released: first), then the least recently changed.
        let mut candidates: Vec<(i64, Option<Timestamp>, Timestamp, RequestId)> = inner
            .entries
            .iter()
            .filter_map(|(id, e)| e.request.as_ref().map(|r| (id, r, e)))
            .filter(|(_, r, e)| r.needs_work() && !e.held_by_other(worker, now))
            .map(|(id, r, e)| {
                (r.effective_priority().rank(), e.claim.as_ref().map(|c| c.1), r.updated_at(), id.clone())
            })
            .collect();
        candidates.sort();
        candidates.truncate(limit as usize);
        let mut claimed = Vec::new();
        for (_, _, _, id) in candidates {
            let Some(e) = inner.entries.get_mut(&id) else { continue };
            let renewing = e.claim.as_ref().is_some_and(|(w, u)| w == worker && *u >= now);
            match e.spans.last_mut() {
                Some(span) if renewing => span.until = until,
                _ => e.spans.push(ClaimSpan { worker: worker.to_owned(), since: now, until }),
            }
            e.claim = Some((worker.to_owned(), until));
            claimed.extend(e.request.clone());
        }
        Ok(claimed)
    }

    async fn renew(&self, worker: &str, ids: &[RequestId], now: Timestamp, ttl_ms: i64) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let until = now.plus_millis(ttl_ms);
        let mut renewed = 0;
        for id in ids {
            if let Some(e) = inner.entries.get_mut(id)
                && let Some((w, held_until)) = e.claim.as_mut()
                && w == worker
                && *held_until >= now
            {
                *held_until = until;
                if let Some(span) = e.spans.last_mut().filter(|s| s.worker == worker) {
                    span.until = until;
                }
                renewed += 1;
            }
        }
        Ok(renewed)
    }

    async fn release(&self, worker: &str, ids: &[RequestId], now: Timestamp) -> Result<(), StoreError> {
        let mut inner = self.lock();
        for id in ids {
            if let Some(e) = inner.entries.get_mut(id)
                && e.claim.as_ref().is_some_and(|(w, _)| w == worker)
            {
                e.claim = None;
                if let Some(span) = e.spans.last_mut().filter(|s| s.worker == worker && s.until > now) {
                    span.until = now;
                }
            }
        }
        Ok(())
    }

    async fn lead(&self, job: &str, worker: &str, now: Timestamp, ttl_ms: i64) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let free = inner.leases.get(job).is_none_or(|(w, until)| w == worker || *until < now);
        if free {
            inner.leases.insert(job.to_owned(), (worker.to_owned(), now.plus_millis(ttl_ms)));
        }
        Ok(free)
    }

    async fn claim_history(&self, id: &RequestId) -> Result<Vec<ClaimSpan>, StoreError> {
        Ok(self.lock().entries.get(id).map(|e| e.spans.clone()).unwrap_or_default())
    }
}

#[async_trait]
impl SharedState for MemoryStore {
    async fn load_shared(&self, key: &str) -> Result<(Option<String>, i64), StoreError> {
        Ok(self.lock().shared.get(key).map_or((None, 0), |(v, n)| (Some(v.clone()), *n)))
    }

    async fn store_shared(&self, key: &str, value: &str, expected: i64) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let current = inner.shared.get(key).map_or(0, |(_, n)| *n);
        if current != expected {
            return Ok(false);
        }
        inner.shared.insert(key.to_owned(), (value.to_owned(), current + 1));
        Ok(true)
    }

    async fn list_shared(&self, prefix: &str) -> Result<Vec<(String, String, i64)>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .shared
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, (v, n))| (k.clone(), v.clone(), *n))
            .collect())
    }

    async fn remove_shared(&self, key: &str, expected: i64) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        if inner.shared.get(key).is_none_or(|(_, n)| *n != expected) {
            return Ok(false);
        }
        inner.shared.remove(key);
        Ok(true)
    }
}

/// A fixed list of templates.
pub struct StaticCatalog(pub Vec<Template>);

#[async_trait]
impl TemplateCatalog for StaticCatalog {
    async fn templates(&self) -> Result<Vec<Template>, CatalogError> {
        Ok(self.0.clone())
    }
}

/// A clock that moves only when told to.
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self(AtomicU64::new(start.unix_millis() as u64))
    }

    /// Moves the clock `secs` seconds on.
    pub fn advance_secs(&self, secs: u64) {
        self.0.fetch_add(secs * 1000, Ordering::SeqCst);
    }

    /// Moves the clock `millis` milliseconds on.
    pub fn advance_millis(&self, millis: u64) {
        self.0.fetch_add(millis, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_millis(self.0.load(Ordering::SeqCst) as i64)
    }
}

/// `req-1`, `req-2`, … and `ret-1`, …
#[derive(Default)]
pub struct SequentialIds(AtomicU64);

impl IdGenerator for SequentialIds {
    fn next(&self, kind: RequestKind) -> RequestId {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        let prefix = if kind == RequestKind::Provision { "req" } else { "ret" };
        RequestId::new(format!("{prefix}-{n}")).expect("sequential ids are valid")
    }
}

/// A provider with faults a real cloud shows: answers lost after a launch (as when the process
/// is killed right after the call), or no capacity figures (as on AWS).
pub struct Faulty {
    /// The provider that does the work.
    pub inner: std::sync::Arc<dyn CloudProvider>,
    /// Every launch happens, but its answer is lost.
    pub lose_launch_answers: bool,
    /// The provider says nothing of its capacity.
    pub hide_capacity: bool,
}

#[async_trait]
impl CloudProvider for Faulty {
    fn name(&self) -> &ProviderName {
        self.inner.name()
    }
    fn kind(&self) -> &'static str {
        "sim"
    }
    async fn check_template(&self, t: &Template) -> Result<(), CloudError> {
        self.inner.check_template(t).await
    }
    async fn check_zones(&self, t: &Template, zones: &[String]) -> Result<(), CloudError> {
        self.inner.check_zones(t, zones).await
    }
    async fn capacity(&self, t: &Template) -> Result<Option<ProviderCapacity>, CloudError> {
        if self.hide_capacity { Ok(None) } else { self.inner.capacity(t).await }
    }
    async fn launch(&self, r: &LaunchRequest) -> Result<LaunchResult, CloudError> {
        let out = self.inner.launch(r).await?;
        if self.lose_launch_answers {
            return Err(CloudError::new(CloudErrorKind::Unavailable, "ConnectionReset", "the answer was lost"));
        }
        Ok(out)
    }
    async fn describe(&self, q: &DescribeQuery) -> Result<Vec<MachineObservation>, CloudError> {
        self.inner.describe(q).await
    }
    async fn terminate(&self, machines: &[OwnedMachine], owner: &Ownership) -> Result<Vec<Refusal>, CloudError> {
        self.inner.terminate(machines, owner).await
    }
}

/// [`Requests::save`] under the store's lock.
fn save_locked(inner: &mut Inner, batch: &[&Request], fence: Option<&Fence>) -> Result<(), StoreError> {
    for r in batch {
        let entry = inner.entries.get(r.id());
        let stored = entry.and_then(|e| e.request.as_ref()).map(Request::version).unwrap_or(0);
        let fenced_out = match (fence, entry) {
            (Some(f), Some(e)) if r.version() > 0 => {
                !e.claim.as_ref().is_some_and(|(w, until)| *w == f.worker && *until >= f.now)
            }
            _ => false,
        };
        if stored != r.version() || fenced_out {
            return Err(StoreError::Conflict { request_id: r.id().to_string() });
        }
    }
    for r in batch {
        let mut copy = (*r).clone();
        copy.mark_committed(r.version() + 1);
        let entry = inner.entries.entry(r.id().clone()).or_default();
        entry.history.extend(r.uncommitted().iter().cloned());
        if !copy.needs_work() {
            entry.claim = None;
        }
        entry.request = Some(copy);
    }
    Ok(())
}

/// A cloud that launches at once from a counter, keeps each launch under its client token (a
/// repeated launch answers the same machines) and describes a request's machines, so that a
/// benchmark's figures are ohf's own. Machines start `Running`, or stay `Pending` (requests
/// stay active) when built with `start` false.
pub struct InstantCloud {
    name: ProviderName,
    start: bool,
    state: Mutex<InstantState>,
}

#[derive(Default)]
struct InstantState {
    next: u64,
    by_request: HashMap<RequestId, Vec<(u64, Option<String>)>>,
    by_token: HashMap<String, Vec<(u64, Option<String>)>>,
}

impl InstantCloud {
    /// A cloud named `name` whose machines start running when `start`.
    pub fn new(name: ProviderName, start: bool) -> Self {
        Self { name, start, state: Mutex::default() }
    }

    fn observe(&self, (n, zone): &(u64, Option<String>), request: &RequestId) -> MachineObservation {
        let octets = format!("{}-{}-{}", (n >> 16) & 255, (n >> 8) & 255, n & 255);
        MachineObservation {
            id: MachineId::new(format!("i-{n:017x}")).expect("a hex id is valid"),
            provider: self.name.clone(),
            status: if self.start { MachineStatus::Running } else { MachineStatus::Pending },
            name: Some(format!("ip-10-{octets}.ec2.internal")),
            private_ip: Some(format!("10.{}", octets.replace('-', "."))),
            public_ip: None,
            instance_type: Some("m5.large".into()),
            price_type: None,
            zone: zone.clone(),
            launch_time: Some(Timestamp::from_unix_secs(1_800_000_000)),
            request_id: Some(request.clone()),
            tags: Default::default(),
            interruption_at: None,
            cloud_host_id: None,
        }
    }
}

#[async_trait]
impl CloudProvider for InstantCloud {
    fn name(&self) -> &ProviderName {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "instant"
    }
    async fn check_template(&self, _: &Template) -> Result<(), CloudError> {
        Ok(())
    }
    async fn capacity(&self, _: &Template) -> Result<Option<ProviderCapacity>, CloudError> {
        Ok(None)
    }
    async fn launch(&self, r: &LaunchRequest) -> Result<LaunchResult, CloudError> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let machines = match s.by_token.get(r.token.as_str()) {
            Some(made) => made.clone(),
            None => {
                let zone = r.zones.first().cloned();
                let made: Vec<(u64, Option<String>)> =
                    (0..u64::from(r.count)).map(|i| (s.next + i, zone.clone())).collect();
                s.next += u64::from(r.count);
                s.by_token.insert(r.token.to_string(), made.clone());
                s.by_request.entry(r.request_id.clone()).or_default().extend(made.iter().cloned());
                made
            }
        };
        Ok(LaunchResult {
            machines: machines.iter().map(|m| self.observe(m, &r.request_id)).collect(),
            ..LaunchResult::default()
        })
    }
    async fn describe(&self, q: &DescribeQuery) -> Result<Vec<MachineObservation>, CloudError> {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Ok(q.request_ids
            .iter()
            .flat_map(|r| s.by_request.get(r).into_iter().flatten().map(move |m| self.observe(m, r)))
            .collect())
    }
    async fn terminate(&self, _: &[OwnedMachine], _: &Ownership) -> Result<Vec<Refusal>, CloudError> {
        Ok(Vec::new())
    }
}
