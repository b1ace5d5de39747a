//! In-memory adapters: a request store, a template catalog, a hand-driven clock and
//! sequential ids. For tests and for services that embed ohf without persistence.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use ohf_domain::{EventEnvelope, MachineId, Request, RequestId, RequestKind, Template, TemplateId, Timestamp};

use crate::ports::{CatalogError, Clock, IdGenerator, RequestFilter, RequestStore, StoreError, TemplateCatalog};

#[derive(Default)]
struct Entry {
    request: Option<Request>,
    history: Vec<EventEnvelope>,
}

/// A request store in memory.
#[derive(Default)]
pub struct MemoryStore {
    entries: Mutex<HashMap<RequestId, Entry>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RequestId, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn all(&self) -> Vec<Request> {
        self.lock().values().filter_map(|e| e.request.clone()).collect()
    }
}

#[async_trait]
impl RequestStore for MemoryStore {
    async fn save(&self, batch: &[&Request]) -> Result<(), StoreError> {
        let mut entries = self.lock();
        for r in batch {
            let stored = entries.get(r.id()).and_then(|e| e.request.as_ref()).map(Request::version).unwrap_or(0);
            if stored != r.version() {
                return Err(StoreError::Conflict { request_id: r.id().to_string() });
            }
        }
        for r in batch {
            let mut copy = (*r).clone();
            copy.mark_committed(r.version() + 1);
            let entry = entries.entry(r.id().clone()).or_default();
            entry.history.extend(r.uncommitted().iter().cloned());
            entry.request = Some(copy);
        }
        Ok(())
    }

    async fn get(&self, id: &RequestId) -> Result<Option<Request>, StoreError> {
        Ok(self.lock().get(id).and_then(|e| e.request.clone()))
    }

    async fn get_many(&self, ids: &[RequestId]) -> Result<Vec<Request>, StoreError> {
        let entries = self.lock();
        Ok(ids.iter().filter_map(|id| entries.get(id).and_then(|e| e.request.clone())).collect())
    }

    async fn list(&self, filter: &RequestFilter) -> Result<Vec<Request>, StoreError> {
        let mut list: Vec<Request> = self
            .all()
            .into_iter()
            .filter(|r| filter.states.is_empty() || filter.states.contains(&r.state()))
            .filter(|r| filter.kind.is_none_or(|k| r.kind() == k))
            .filter(|r| filter.template.as_ref().is_none_or(|t| r.template().map(Template::id) == Some(t)))
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

    async fn capacity_held(&self) -> Result<HashMap<TemplateId, u32>, StoreError> {
        let mut held = HashMap::new();
        for r in self.all() {
            if let Some(t) = r.template() {
                *held.entry(t.id().clone()).or_insert(0) += r.capacity_held();
            }
        }
        Ok(held)
    }

    async fn history(&self, id: &RequestId) -> Result<Vec<EventEnvelope>, StoreError> {
        Ok(self.lock().get(id).map(|e| e.history.clone()).unwrap_or_default())
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
    pub fn new(start: Timestamp) -> Self {
        Self(AtomicU64::new(start.unix_millis() as u64))
    }

    pub fn advance_secs(&self, secs: u64) {
        self.0.fetch_add(secs * 1000, Ordering::SeqCst);
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
