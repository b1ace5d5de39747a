//! The background worker of `ohf serve`: claims requests with work left, reconciles them under
//! its claims, and runs periodic jobs under leases so that one worker of many runs each.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ohf_domain::{RequestEvent, RequestId, Timestamp};
use serde::Serialize;
use tokio::sync::watch;

use crate::App;
use crate::lifecycle::SweepOptions;

/// How often a daemon takes in provider registrations and strategy changes other processes stored.
const RELOAD_EVERY: Duration = Duration::from_secs(30);
/// How often the retention job runs.
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// How often the daemon moves due bookings on (PLACED on their day, EXPIRED after).
const BOOKINGS_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
/// How a daemon's worker runs.
pub struct WorkerConfig {
    /// Unique among the workers sharing a store.
    pub id: String,
    /// Time between cycles when nothing wakes the worker.
    pub interval: Duration,
    /// How long a claim lasts without renewal; a dead worker's requests move after this.
    pub claim_ttl: Duration,
    /// Most requests claimed per cycle.
    pub batch: u32,
    /// Time between orphan sweeps (one worker of many runs each); `None` disables them.
    pub sweep_interval: Option<Duration>,
    /// How sweeps act: minimum age, cap, the share of orphans believed.
    pub sweep: SweepOptions,
    /// Days finished requests are kept; `None` keeps them for ever. One worker of many
    /// deletes older ones, hourly.
    pub retention_days: Option<u32>,
}

/// What the worker has done, for health checks and `ohf serve` status.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerStatus {
    /// The worker's id.
    pub worker: String,
    /// Cycles run since start.
    pub cycles: u64,
    /// When the last cycle ended (RFC 3339).
    pub last_cycle_at: Option<String>,
    #[serde(skip)]
    /// When the last cycle ended.
    pub last_cycle: Option<Timestamp>,
    /// The last cycle's error, if it had one.
    pub last_error: Option<String>,
    #[serde(skip)]
    /// When the last cycle without an error ended.
    pub last_success: Option<Timestamp>,
    #[serde(skip)]
    /// How long each cycle took.
    pub cycle_seconds: crate::figures::Histogram,
    /// Requests it holds claims on.
    pub held: usize,
    /// Launch calls made since start.
    pub launches: u64,
    /// Writes lost to another writer since start.
    pub conflicts: u64,
    /// Orphans terminated by its sweeps since start.
    pub swept: u64,
    /// It was asked to stop.
    pub stopping: bool,
}

/// The daemon's background loop: claims requests, advances them, renews its claims, runs the leased jobs (sweep, retention, health checks).
pub struct Worker {
    app: Arc<App>,
    config: WorkerConfig,
    status: Mutex<WorkerStatus>,
}

impl Worker {
    /// A worker over `app`.
    pub fn new(app: Arc<App>, config: WorkerConfig) -> Self {
        let status = WorkerStatus { worker: config.id.clone(), ..WorkerStatus::default() };
        Self { app, config, status: Mutex::new(status) }
    }

    /// What it has done so far, for `/status` and `/readyz`.
    pub fn status(&self) -> WorkerStatus {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut WorkerStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Runs the worker on a task of its own until `shutdown` turns true (as [`Worker::run`]).
    pub fn spawn(self: &Arc<Self>, shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let worker = self.clone();
        tokio::spawn(async move { worker.run(shutdown).await })
    }

    /// Runs until `shutdown` turns true. A cycle under way is finished (the caller bounds how
    /// long it may take); then the worker's claims are released so others take over at once.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let mut events = self.app.bus().subscribe();
        let mut held: Vec<RequestId> = Vec::new();
        let mut last_sweep: Option<tokio::time::Instant> = None;
        let mut last_check: Option<tokio::time::Instant> = None;
        let mut last_reload: Option<tokio::time::Instant> = None;
        let mut last_purge: Option<tokio::time::Instant> = None;
        let mut last_refresh: Option<tokio::time::Instant> = None;
        let mut last_bookings: Option<tokio::time::Instant> = None;
        loop {
            held = self.cycle(held).await;
            // Registrations and configuration other processes stored since.
            if last_reload.is_none_or(|t| t.elapsed() >= RELOAD_EVERY) {
                last_reload = Some(tokio::time::Instant::now());
                if let Err(e) = self.app.load_registered().await {
                    tracing::warn!(worker = %self.config.id, error = %e, "provider registrations not reloaded");
                }
            }
            // Read each time: configureProviderStrategy may change it while the daemon runs.
            let every = Duration::from_secs(self.app.health_check_interval());
            if last_check.is_none_or(|t| t.elapsed() >= every) {
                last_check = Some(tokio::time::Instant::now());
                self.app.check_providers_when_due(&self.config.id).await;
            }
            if let Some(every) = self.config.sweep_interval
                && last_sweep.is_none_or(|t| t.elapsed() >= every)
            {
                last_sweep = Some(tokio::time::Instant::now());
                self.sweep(every).await;
            }
            let every = Duration::from_secs(self.app.settings.routing.refresh_interval_secs.max(1));
            if last_refresh.is_none_or(|t| t.elapsed() >= every) {
                last_refresh = Some(tokio::time::Instant::now());
                self.refresh_venues(every).await;
            }
            if last_bookings.is_none_or(|t| t.elapsed() >= BOOKINGS_EVERY) {
                last_bookings = Some(tokio::time::Instant::now());
                match self.app.tend_placements().await {
                    Ok((0, 0)) => {}
                    Ok((advanced, released)) => {
                        tracing::info!(worker = %self.config.id, advanced, released, "placements tended")
                    }
                    Err(e) => tracing::warn!(worker = %self.config.id, error = %e, "placements not tended"),
                }
            }
            if let Some(days) = self.config.retention_days
                && last_purge.is_none_or(|t| t.elapsed() >= PURGE_EVERY)
            {
                last_purge = Some(tokio::time::Instant::now());
                self.purge(days).await;
            }
            if *shutdown.borrow() {
                break;
            }
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep(self.config.interval) => {}
                // New and cancelled requests are worked at once, not at the next tick.
                Ok(e) = events.recv() => {
                    let urgent = matches!(&e.event, RequestEvent::Created { .. })
                        || matches!(&e.event, RequestEvent::StateChanged { to: ohf_domain::RequestState::Cancelled, .. });
                    if !urgent {
                        continue;
                    }
                }
            }
        }
        self.update(|s| s.stopping = true);
        let now = self.app.store_now();
        if let Err(e) = self.app.store.release(&self.config.id, &held, now).await {
            tracing::warn!(worker = %self.config.id, error = %e, "claims not released; they expire by themselves");
        }
        tracing::info!(worker = %self.config.id, released = held.len(), "worker stopped");
    }

    async fn cycle(&self, held: Vec<RequestId>) -> Vec<RequestId> {
        let started = std::time::Instant::now();
        // Claims, renewals, fences and leases are judged by the store's clock where daemons on
        // several hosts share it; one reading a cycle keeps the offset.
        self.app.sync_store_clock().await;
        let now = self.app.store_now();
        let ttl = self.config.claim_ttl.as_millis() as i64;
        let claimed = match self.app.store.claim(&self.config.id, now, ttl, self.config.batch).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(worker = %self.config.id, error = %e, "claim failed");
                self.update(|s| {
                    s.last_error = Some(e.to_string());
                    s.cycle_seconds.observe(started.elapsed().as_secs_f64());
                });
                return held;
            }
        };
        let ids: Vec<RequestId> = claimed.iter().map(|r| r.id().clone()).collect();
        // A cycle may outlast the claim (throttling, slow calls): renew it every third of its
        // life while the cycle runs, so no other worker takes a request still being worked.
        let work = self.app.reconcile_claimed(claimed, &self.config.id);
        tokio::pin!(work);
        let mut renewals = tokio::time::interval((self.config.claim_ttl / 3).max(Duration::from_millis(10)));
        renewals.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        renewals.tick().await;
        let report = loop {
            tokio::select! {
                report = &mut work => break report,
                _ = renewals.tick() => {
                    let now = self.app.store_now();
                    if let Err(e) = self.app.store.renew(&self.config.id, &ids, now, ttl).await {
                        tracing::warn!(worker = %self.config.id, error = %e, "claims not renewed");
                    }
                }
            }
        };
        let done_at = self.app.clock.now();
        self.update(|s| {
            s.cycles += 1;
            s.last_cycle = Some(done_at);
            s.last_cycle_at = Some(done_at.to_rfc3339());
            s.held = ids.len();
            s.launches += report.launch_calls as u64;
            s.conflicts += report.conflicts as u64;
            s.last_error = report.errors.first().cloned();
            if report.errors.is_empty() {
                s.last_success = Some(done_at);
            }
            s.cycle_seconds.observe(started.elapsed().as_secs_f64());
        });
        if !report.errors.is_empty() {
            tracing::warn!(worker = %self.config.id, errors = ?report.errors, "cycle met errors");
        }
        ids
    }

    /// Deletes what retention no longer keeps, by one worker of many per hour.
    async fn purge(&self, days: u32) {
        let now = self.app.store_now();
        match self.app.store.lead("retention", &self.config.id, now, PURGE_EVERY.as_millis() as i64 * 9 / 10).await {
            Ok(true) => {
                if let Err(e) = self.app.execute(crate::commands::PurgeHistory { keep_days: days }).await {
                    tracing::warn!(worker = %self.config.id, error = %e, "retention failed");
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(worker = %self.config.id, error = %e, "retention lease failed"),
        }
    }

    /// Health checks of every provider, by one worker of many per interval.
    /// The seed's sensor recalculation of every venue, by one worker of many per interval.
    async fn refresh_venues(&self, every: Duration) {
        let now = self.app.store_now();
        let ttl = (every.as_millis() as i64 * 9 / 10).max(1);
        match self.app.store.lead("venue-refresh", &self.config.id, now, ttl).await {
            Ok(true) => {
                let outcome = self.app.refresh_venues().await;
                tracing::debug!(worker = %self.config.id, ?outcome, "venues recalculated");
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(worker = %self.config.id, error = %e, "venue refresh lease failed"),
        }
    }

    async fn sweep(&self, every: Duration) {
        let now = self.app.store_now();
        match self.app.store.lead("orphan-sweep", &self.config.id, now, every.as_millis() as i64).await {
            Ok(true) => {
                let report = self.app.sweep_orphans(&self.config.sweep).await;
                self.update(|s| s.swept += report.terminated.len() as u64);
                if !report.terminated.is_empty() || !report.errors.is_empty() || report.refused.is_some() {
                    tracing::info!(worker = %self.config.id, terminated = report.terminated.len(), refused = ?report.refused, errors = ?report.errors, "orphan sweep");
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(worker = %self.config.id, error = %e, "sweep lease failed"),
        }
    }
}
