//! Routing state in the store's shared state: open requests (they hold capacity), closed ones,
//! unrouted workloads, all changed under one lease so that two processes never decide on the
//! same capacity at once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ohf_placement::Ledger;
use serde::{Deserialize, Serialize};

use super::{RoutedWorkload, RoutingRequest};
use crate::keys;
use crate::ports::{RequestStore, StoreError};
use crate::{App, AppError};

/// How long a lease lasts if its holder dies before giving it back.
const LEASE_TTL_MS: i64 = 10_000;
/// How long a change waits for the lease before it answers busy.
const LEASE_WAIT: Duration = Duration::from_secs(10);

#[derive(Serialize, Deserialize)]
struct LeaseValue {
    holder: String,
    until: i64,
    /// Counts the times the lease was taken: a process whose cache is of the epoch it finds
    /// knows nobody changed routing state since.
    #[serde(default)]
    epoch: u64,
}

/// What a process knows is held, as of the lease epoch it gave the lease back at.
pub(crate) struct LedgerCache {
    epoch: u64,
    ledger: Arc<Ledger>,
}

/// The routing lease, held: every change to routing state is made with it.
pub(crate) struct RoutingState<'a> {
    store: &'a dyn RequestStore,
    holder: String,
    version: i64,
    epoch: u64,
    cache: &'a Mutex<Option<LedgerCache>>,
    /// What is held, while it is known: from the cache, or built once under this lease, and
    /// kept up to date by `put_new`; dropped by any other change.
    ledger: Mutex<Option<Arc<Ledger>>>,
}

impl App {
    /// Waits for the routing lease (another process's expires after 10 s).
    pub(crate) async fn routing_state(&self) -> Result<RoutingState<'_>, AppError> {
        let holder = uuid::Uuid::new_v4().to_string();
        let give_up = tokio::time::Instant::now() + LEASE_WAIT;
        let mut pause = Duration::from_millis(2);
        loop {
            let (value, version) = self.store.load_shared(keys::ROUTING_LEASE).await?;
            let now = self.clock.now().unix_millis();
            let found = value.as_deref().and_then(|v| serde_json::from_str::<LeaseValue>(v).ok());
            let held = found.as_ref().is_some_and(|l| l.until > now);
            if !held {
                let seen = found.map_or(0, |l| l.epoch);
                let epoch = seen.wrapping_add(1);
                let mine =
                    serde_json::to_string(&LeaseValue { holder: holder.clone(), until: now + LEASE_TTL_MS, epoch })
                        .unwrap_or_default();
                if self.store.store_shared(keys::ROUTING_LEASE, &mine, version).await? {
                    let cached = self.routing_cache.lock().map(|mut c| c.take()).unwrap_or(None);
                    let known = cached.filter(|c| c.epoch == seen).map(|c| c.ledger);
                    return Ok(RoutingState {
                        store: &*self.store,
                        holder,
                        version: version + 1,
                        epoch,
                        cache: &self.routing_cache,
                        ledger: Mutex::new(known),
                    });
                }
            }
            if tokio::time::Instant::now() >= give_up {
                return Err(AppError::Busy { request_id: "routing".into(), retry_after_secs: 1 });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// One routing request, open or closed.
    pub(crate) async fn routing_request(&self, id: &str) -> Result<Option<RoutingRequest>, AppError> {
        for prefix in [keys::ROUTING_OPEN, keys::ROUTING_CLOSED] {
            if let (Some(value), _) = self.store.load_shared(&format!("{prefix}{id}")).await? {
                return Ok(Some(decode(id, &value)?));
            }
        }
        Ok(None)
    }

    /// Every routing request, open ones first, each group by id.
    pub(crate) async fn routing_requests(&self, closed_too: bool) -> Result<Vec<RoutingRequest>, AppError> {
        let mut all = Vec::new();
        let prefixes: &[&str] =
            if closed_too { &[keys::ROUTING_OPEN, keys::ROUTING_CLOSED] } else { &[keys::ROUTING_OPEN] };
        for prefix in prefixes {
            for (key, value, _) in self.store.list_shared(prefix).await? {
                all.push(decode(key.trim_start_matches(prefix), &value)?);
            }
        }
        Ok(all)
    }
}

fn decode(id: &str, value: &str) -> Result<RoutingRequest, AppError> {
    serde_json::from_str(value)
        .map_err(|e| StoreError::Corrupt(format!("routing request '{id}' cannot be read: {e}")).into())
}

fn key_of(r: &RoutingRequest) -> String {
    let prefix = if r.status.holds() { keys::ROUTING_OPEN } else { keys::ROUTING_CLOSED };
    format!("{prefix}{}", r.id)
}

impl RoutingState<'_> {
    /// Every open routing request (they hold capacity).
    pub(crate) async fn open(&self) -> Result<Vec<RoutingRequest>, AppError> {
        let mut all = Vec::new();
        for (key, value, _) in self.store.list_shared(keys::ROUTING_OPEN).await? {
            all.push(decode(key.trim_start_matches(keys::ROUTING_OPEN), &value)?);
        }
        Ok(all)
    }

    /// What every open request holds, as a ledger (from this process's cache when nobody
    /// changed routing state since it last held the lease).
    pub(crate) async fn ledger(&self) -> Result<Arc<Ledger>, AppError> {
        if let Some(known) = self.ledger.lock().ok().and_then(|l| l.clone()) {
            return Ok(known);
        }
        let open = self.open().await?;
        let built = Arc::new(Ledger::new(open.iter().flat_map(RoutingRequest::holds)));
        if let Ok(mut l) = self.ledger.lock() {
            *l = Some(built.clone());
        }
        Ok(built)
    }

    /// Stores a request made under this lease (never stored before) and counts its holds.
    pub(crate) async fn put_new(&self, request: &RoutingRequest) -> Result<(), AppError> {
        // New: one insert, no earlier version to read and no other key to clear.
        let value = serde_json::to_string(request).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let key = key_of(request);
        if !self.store.store_shared(&key, &value, 0).await? {
            return Err(StoreError::Conflict { request_id: key }.into());
        }
        if let Ok(mut guard) = self.ledger.lock()
            && let Some(ledger) = guard.as_mut()
        {
            let ledger = Arc::make_mut(ledger);
            for hold in request.holds() {
                ledger.add(hold);
            }
        }
        Ok(())
    }

    /// Writes a changed request under the key its status belongs to, moving it when the status
    /// moved; what is held is read again next time.
    pub(crate) async fn put(&self, request: &RoutingRequest) -> Result<(), AppError> {
        self.forget_ledger();
        self.write_record(request).await
    }

    fn forget_ledger(&self) {
        if let Ok(mut l) = self.ledger.lock() {
            *l = None;
        }
    }

    async fn write_record(&self, request: &RoutingRequest) -> Result<(), AppError> {
        let value = serde_json::to_string(request).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let key = key_of(request);
        self.write(&key, &value).await?;
        for prefix in [keys::ROUTING_OPEN, keys::ROUTING_CLOSED] {
            let other = format!("{prefix}{}", request.id);
            if other != key {
                self.remove(&other).await?;
            }
        }
        Ok(())
    }

    /// Removes a routing request.
    pub(crate) async fn delete(&self, id: &str) -> Result<(), AppError> {
        self.forget_ledger();
        for prefix in [keys::ROUTING_OPEN, keys::ROUTING_CLOSED] {
            self.remove(&format!("{prefix}{id}")).await?;
        }
        Ok(())
    }

    /// Keeps a workload taken out of its request, to be routed again by id.
    pub(crate) async fn keep_unrouted(&self, workload: &RoutedWorkload) -> Result<(), AppError> {
        let value = serde_json::to_string(workload).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.write(&format!("{}{}", keys::ROUTING_UNROUTED, workload.id), &value).await
    }

    /// An unrouted workload, taken to be routed again.
    pub(crate) async fn take_unrouted(&self, id: &str) -> Result<Option<RoutedWorkload>, AppError> {
        let key = format!("{}{id}", keys::ROUTING_UNROUTED);
        let (Some(value), _) = self.store.load_shared(&key).await? else { return Ok(None) };
        let workload = serde_json::from_str(&value)
            .map_err(|e| StoreError::Corrupt(format!("unrouted workload '{id}' cannot be read: {e}")))?;
        Ok(Some(workload))
    }

    /// Forgets an unrouted workload once it is routed again.
    pub(crate) async fn forget_unrouted(&self, id: &str) -> Result<(), AppError> {
        self.remove(&format!("{}{id}", keys::ROUTING_UNROUTED)).await
    }

    async fn write(&self, key: &str, value: &str) -> Result<(), AppError> {
        let (_, version) = self.store.load_shared(key).await?;
        if self.store.store_shared(key, value, version).await? {
            Ok(())
        } else {
            Err(StoreError::Conflict { request_id: key.to_owned() }.into())
        }
    }

    async fn remove(&self, key: &str) -> Result<(), AppError> {
        let (value, version) = self.store.load_shared(key).await?;
        if value.is_some() && !self.store.remove_shared(key, version).await? {
            return Err(StoreError::Conflict { request_id: key.to_owned() }.into());
        }
        Ok(())
    }

    /// Gives the lease back, keeping what is held for this process's next lease.
    pub(crate) async fn release(self) {
        let free = serde_json::to_string(&LeaseValue { holder: self.holder.clone(), until: 0, epoch: self.epoch })
            .unwrap_or_default();
        match self.store.store_shared(keys::ROUTING_LEASE, &free, self.version).await {
            Ok(true) => {
                let known = self.ledger.lock().ok().and_then(|mut l| l.take());
                if let (Some(ledger), Ok(mut cache)) = (known, self.cache.lock()) {
                    *cache = Some(LedgerCache { epoch: self.epoch, ledger });
                }
            }
            Ok(false) => tracing::warn!("the routing lease expired before it was given back"),
            Err(e) => tracing::warn!(error = %e, "the routing lease could not be given back; it expires on its own"),
        }
    }
}
