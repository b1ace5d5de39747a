//! Routing state in the store's shared state: open requests (they hold capacity), closed ones,
//! unrouted workloads, all changed under one lease so that two processes never decide on the
//! same capacity at once.

use std::sync::atomic::{AtomicUsize, Ordering};
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
/// How long a process keeps the lease for its own tasks before it gives it back to let other
/// processes decide.
const BURST_MS: i64 = 250;
/// The time a lease must have left to be handed on to, or used by, the next turn.
const LEASE_MARGIN_MS: i64 = 3_000;
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
struct LedgerCache {
    epoch: u64,
    ledger: Arc<Ledger>,
}

/// The lease as a process keeps it between two of its tasks' turns.
struct Kept {
    version: i64,
    epoch: u64,
    until: i64,
    since: i64,
}

/// This process's side of the routing lease.
pub(crate) struct LeaseTurns {
    /// Tasks take turns here, first come first served (only the one whose turn it is asks the
    /// store); between turns, the lease when it was handed on rather than given back.
    turn: tokio::sync::Mutex<Option<Kept>>,
    /// Tasks waiting for a turn: while any wait, the lease is handed on, so that concurrent
    /// decisions of one process take and give back the lease once between them.
    waiting: AtomicUsize,
    /// Provision requests of this process on their way to a turn (reading the venues): the
    /// lease is kept for them too, within a burst.
    coming: AtomicUsize,
    /// This process keeps the lease between turns (a burst is under way): its placements see
    /// the venues as read at most 250 ms before.
    pub(crate) bursting: std::sync::atomic::AtomicBool,
    /// What this process last knew is held.
    cache: Mutex<Option<LedgerCache>>,
    /// Counts the holds forgotten unstored: a turn that began before one was forgotten does
    /// not keep the ledger it knew (it counted that hold).
    forgotten: std::sync::atomic::AtomicU64,
    /// Placements decided under the lease whose records go into the store with their
    /// requests (`PendingHold`): counted in every ledger of this process, and the lease is
    /// not given back until none is left.
    pending: Mutex<std::collections::BTreeMap<String, Vec<ohf_placement::Hold>>>,
    /// This process's name on the lease.
    holder: String,
}

impl Default for LeaseTurns {
    fn default() -> Self {
        Self {
            turn: tokio::sync::Mutex::new(None),
            waiting: AtomicUsize::new(0),
            coming: AtomicUsize::new(0),
            bursting: std::sync::atomic::AtomicBool::new(false),
            cache: Mutex::new(None),
            forgotten: std::sync::atomic::AtomicU64::new(0),
            pending: Mutex::new(std::collections::BTreeMap::new()),
            holder: uuid::Uuid::new_v4().to_string(),
        }
    }
}

/// A placement decided under the lease whose record is to be stored with its request, in one
/// transaction (`Requests::create_within`); [`App::settle`] says how that went. One dropped
/// unsettled (its caller went away) is forgotten as one not stored.
pub(crate) struct PendingHold<'a> {
    /// The record's key in shared state.
    pub key: String,
    /// The record.
    pub value: String,
    turns: &'a LeaseTurns,
    settled: bool,
}

impl PendingHold<'_> {
    /// No longer pending; when not stored, what this process knows is held is read again.
    fn forget(&mut self, stored: bool) {
        self.settled = true;
        if let Ok(mut pending) = self.turns.pending.lock() {
            pending.remove(&self.key);
        }
        if !stored {
            self.turns.forgotten.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut cache) = self.turns.cache.lock() {
                *cache = None;
            }
        }
    }
}

impl Drop for PendingHold<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.forget(false);
        }
    }
}

impl LeaseTurns {
    fn pending_count(&self) -> usize {
        self.pending.lock().map_or(0, |p| p.len())
    }

    /// Whether a lease taken at `since` stays with this process at `now`: while placements
    /// decided under it are not stored, always; while other tasks of this process wait for a
    /// turn or are on their way to one, within a burst (then it goes back, so other processes
    /// get their turn).
    fn keeps(&self, since: i64, now: i64) -> bool {
        self.pending_count() > 0
            || ((self.waiting.load(Ordering::SeqCst) > 0 || self.coming.load(Ordering::SeqCst) > 0)
                && now - since < BURST_MS)
    }

    /// Counts a provision request on its way to a turn, until the guard goes.
    pub(crate) fn coming(&self) -> Coming<'_> {
        self.coming.fetch_add(1, Ordering::SeqCst);
        Coming(&self.coming)
    }
}

/// A provision request on its way to a turn (see [`LeaseTurns::coming`]).
pub(crate) struct Coming<'a>(&'a AtomicUsize);

impl Drop for Coming<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The routing lease, held: every change to routing state is made with it.
pub(crate) struct RoutingState<'a> {
    store: &'a dyn RequestStore,
    clock: &'a dyn crate::ports::Clock,
    turns: &'a LeaseTurns,
    version: i64,
    epoch: u64,
    until: i64,
    /// When this process took the lease from the store.
    since: i64,
    /// Holds forgotten unstored when this turn began.
    forgotten: u64,
    /// What is held, while it is known: from the cache, or built once under this lease, and
    /// kept up to date by `put_new`; dropped by any other change.
    ledger: Mutex<Option<Arc<Ledger>>>,
    /// This process's turn, held as long as the lease.
    turn: tokio::sync::MutexGuard<'a, Option<Kept>>,
}

impl App {
    /// Waits for this process's turn, then for the routing lease (another process's expires
    /// after 10 s); a lease handed on by this process's last turn is used as it is.
    pub(crate) async fn routing_state(&self) -> Result<RoutingState<'_>, AppError> {
        let turns = &self.routing;
        let give_up = tokio::time::Instant::now() + LEASE_WAIT;
        turns.waiting.fetch_add(1, Ordering::SeqCst);
        let turn = tokio::time::timeout_at(give_up, turns.turn.lock()).await;
        turns.waiting.fetch_sub(1, Ordering::SeqCst);
        let Ok(mut turn) = turn else {
            return Err(AppError::Busy { request_id: "routing".into(), retry_after_secs: 1 });
        };
        let state = |turn, version, epoch, until, since, known| RoutingState {
            store: &*self.store,
            clock: &*self.clock,
            turns,
            version,
            epoch,
            until,
            since,
            forgotten: turns.forgotten.load(Ordering::SeqCst),
            ledger: Mutex::new(known),
            turn,
        };
        let cached = |epoch: u64| {
            let cached = turns.cache.lock().map(|mut c| c.take()).unwrap_or(None);
            cached.filter(|c| c.epoch == epoch).map(|c| c.ledger)
        };
        if let Some(kept) = turn.take()
            && kept.until > self.clock.now().unix_millis() + LEASE_MARGIN_MS
        {
            // Handed on by this process's last turn: still this process's, no one else's.
            let known = cached(kept.epoch);
            return Ok(state(turn, kept.version, kept.epoch, kept.until, kept.since, known));
        }
        let mut pause = Duration::from_millis(2);
        loop {
            let (value, version) = self.store.load_shared(keys::ROUTING_LEASE).await?;
            let now = self.clock.now().unix_millis();
            let found = value.as_deref().and_then(|v| serde_json::from_str::<LeaseValue>(v).ok());
            // Held by another process; this process's own (a turn that ended without giving
            // it back) is taken over.
            let held = found.as_ref().is_some_and(|l| l.until > now && l.holder != turns.holder);
            if !held {
                let seen = found.map_or(0, |l| l.epoch);
                let epoch = seen.wrapping_add(1);
                let until = now + LEASE_TTL_MS;
                let mine = serde_json::to_string(&LeaseValue { holder: turns.holder.clone(), until, epoch })
                    .unwrap_or_default();
                if self.store.store_shared(keys::ROUTING_LEASE, &mine, version).await? {
                    let known = cached(seen);
                    return Ok(state(turn, version + 1, epoch, until, now, known));
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

impl<'a> RoutingState<'a> {
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
        let mut built = Ledger::new(open.iter().flat_map(RoutingRequest::holds));
        // Decided here, not stored yet (or stored a moment ago: then listed above).
        if let Ok(pending) = self.turns.pending.lock() {
            for (key, holds) in pending.iter() {
                let id = key.trim_start_matches(keys::ROUTING_OPEN);
                if !open.iter().any(|r| r.id == id) {
                    holds.iter().for_each(|h| built.add(h));
                }
            }
        }
        let built = Arc::new(built);
        if let Ok(mut l) = self.ledger.lock() {
            *l = Some(built.clone());
        }
        Ok(built)
    }

    /// Counts the holds of a request made under this lease (never stored before) whose record
    /// the caller stores with its provision request; answers the record to store.
    pub(crate) fn hold_new(&self, request: &RoutingRequest) -> Result<PendingHold<'a>, AppError> {
        let value = serde_json::to_string(request).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let key = key_of(request);
        let holds: Vec<ohf_placement::Hold> = request.holds().cloned().collect();
        self.count(&holds);
        if let Ok(mut pending) = self.turns.pending.lock() {
            pending.insert(key.clone(), holds);
        }
        Ok(PendingHold { key, value, turns: self.turns, settled: false })
    }

    /// Stores a request made under this lease (never stored before) and counts its holds.
    pub(crate) async fn put_new(&self, request: &RoutingRequest) -> Result<(), AppError> {
        // New: one insert, no earlier version to read and no other key to clear.
        let value = serde_json::to_string(request).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let key = key_of(request);
        if !self.store.store_shared(&key, &value, 0).await? {
            return Err(StoreError::Conflict { request_id: key }.into());
        }
        self.count(request.holds());
        Ok(())
    }

    /// Adds `holds` to what this lease knows is held, while it knows it.
    fn count<'h>(&self, holds: impl IntoIterator<Item = &'h ohf_placement::Hold>) {
        if let Ok(mut guard) = self.ledger.lock()
            && let Some(ledger) = guard.as_mut()
        {
            let ledger = Arc::make_mut(ledger);
            holds.into_iter().for_each(|h| ledger.add(h));
        }
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

    /// Gives the lease back, keeping what is held for this process's next lease; hands it on
    /// instead while other tasks of this process wait for a turn or placements decided under
    /// it are not stored yet (renewed when little of it is left).
    pub(crate) async fn release(mut self) {
        let known = self.ledger.lock().ok().and_then(|mut l| l.take());
        self.keep_ledger(known);
        let now = self.clock.now().unix_millis();
        if self.turns.keeps(self.since, now) {
            if self.until > now + LEASE_MARGIN_MS || self.renew(now).await {
                *self.turn =
                    Some(Kept { version: self.version, epoch: self.epoch, until: self.until, since: self.since });
                self.turns.bursting.store(true, Ordering::SeqCst);
                return;
            }
            if self.turns.pending_count() > 0 {
                tracing::warn!("the routing lease ran out with placements not stored yet");
            }
        }
        self.give_back().await;
    }

    fn keep_ledger(&self, known: Option<Arc<Ledger>>) {
        if self.turns.forgotten.load(Ordering::SeqCst) != self.forgotten {
            return;
        }
        if let (Some(ledger), Ok(mut cache)) = (known, self.turns.cache.lock()) {
            *cache = Some(LedgerCache { epoch: self.epoch, ledger });
        }
    }

    /// Moves the lease's end on; false when it is no longer this process's.
    async fn renew(&mut self, now: i64) -> bool {
        let until = now + LEASE_TTL_MS;
        let value = serde_json::to_string(&LeaseValue { holder: self.turns.holder.clone(), until, epoch: self.epoch })
            .unwrap_or_default();
        match self.store.store_shared(keys::ROUTING_LEASE, &value, self.version).await {
            Ok(true) => {
                self.version += 1;
                self.until = until;
                true
            }
            _ => false,
        }
    }

    async fn give_back(&self) {
        self.turns.bursting.store(false, Ordering::SeqCst);
        let free =
            serde_json::to_string(&LeaseValue { holder: self.turns.holder.clone(), until: 0, epoch: self.epoch })
                .unwrap_or_default();
        match self.store.store_shared(keys::ROUTING_LEASE, &free, self.version).await {
            Ok(true) => {}
            Ok(false) => {
                // What this process knows may be missing another's change.
                if let Ok(mut cache) = self.turns.cache.lock() {
                    *cache = None;
                }
                tracing::warn!("the routing lease expired before it was given back");
            }
            Err(e) => tracing::warn!(error = %e, "the routing lease could not be given back; it expires on its own"),
        }
    }
}

impl App {
    /// Says how the store took a placement decided under the lease: stored with its request,
    /// or not (then it is forgotten, and what this process knows is held is read again). The
    /// last of a burst gives the lease back.
    pub(crate) async fn settle(&self, mut hold: PendingHold<'_>, stored: bool) {
        let turns = &self.routing;
        let mut turn = turns.turn.lock().await;
        hold.forget(stored);
        let now = self.clock.now().unix_millis();
        if let Some(kept) = turn.take() {
            if turns.keeps(kept.since, now) {
                *turn = Some(kept);
                return;
            }
            let state = RoutingState {
                store: &*self.store,
                clock: &*self.clock,
                turns,
                version: kept.version,
                epoch: kept.epoch,
                until: kept.until,
                since: kept.since,
                forgotten: turns.forgotten.load(Ordering::SeqCst),
                ledger: Mutex::new(None),
                turn,
            };
            state.give_back().await;
        }
    }
}
