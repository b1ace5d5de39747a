//! The provider registry: every provider instance with its registration (type, capabilities,
//! priority, weight, enabled), each behind `Measured`, which records every operation's figures
//! and the provider's health in the store's shared state, so that every process sharing the
//! store chooses from the same picture.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ohf_domain::instance_types::InstanceTypeInfo;
use ohf_domain::{MachineObservation, ProviderName, RequestId, Template};
use ohf_provider_strategy::metrics::{self, Bucket, OperationType};
use ohf_provider_strategy::{Health, ProviderEntry, StrategyConfig};

use crate::bus::{EventBus, SystemEvent};
use crate::ports::{
    Clock, CloudError, CloudProvider, DescribeQuery, LaunchRequest, LaunchResult, OwnedMachine, Ownership,
    ProviderCapacity, Refusal, RequestStore,
};
use crate::shared;

pub use crate::shared::keys;

/// Builds the provider a registration describes (with whatever the composition root puts
/// around providers), for providers registered at run time and after a restart.
#[async_trait]
pub trait ProviderFactory: Send + Sync + 'static {
    /// The provider `entry` describes, or why it cannot be built.
    async fn build(&self, entry: &ProviderEntry) -> Result<Arc<dyn CloudProvider>, String>;
}

/// One provider instance: its registration and the provider, measured.
#[derive(Clone)]
pub struct Slot {
    /// Its registration.
    pub entry: ProviderEntry,
    /// The provider, measured.
    pub provider: Arc<Measured>,
}

/// The provider instances of the app, in registration order.
pub(crate) struct Registry {
    slots: RwLock<Vec<Slot>>,
    pub(crate) config: Arc<RwLock<StrategyConfig>>,
    pub(crate) factory: Option<Arc<dyn ProviderFactory>>,
}

impl Registry {
    pub(crate) fn new(config: StrategyConfig) -> Self {
        Self { slots: RwLock::new(Vec::new()), config: Arc::new(RwLock::new(config)), factory: None }
    }

    pub(crate) fn slots(&self) -> Vec<Slot> {
        self.slots.read().map(|s| s.clone()).unwrap_or_default()
    }

    pub(crate) fn slot(&self, name: &str) -> Option<Slot> {
        self.slots.read().ok()?.iter().find(|s| s.entry.strategy_name == name).cloned()
    }

    /// Every provider, as the app calls them.
    pub(crate) fn providers(&self) -> Vec<Arc<dyn CloudProvider>> {
        self.slots().into_iter().map(|s| s.provider as Arc<dyn CloudProvider>).collect()
    }

    /// Adds or replaces the instance named by `slot.entry`.
    pub(crate) fn put(&self, slot: Slot) {
        if let Ok(mut slots) = self.slots.write() {
            match slots.iter_mut().find(|s| s.entry.strategy_name == slot.entry.strategy_name) {
                Some(s) => *s = slot,
                None => slots.push(slot),
            }
        }
    }

    pub(crate) fn config(&self) -> StrategyConfig {
        self.config.read().map(|c| c.clone()).unwrap_or_default()
    }

    pub(crate) fn set_config(&self, config: StrategyConfig) {
        if let Ok(mut c) = self.config.write() {
            *c = config;
        }
    }
}

/// Figures gathered in this process and not yet added to the store's.
#[derive(Default)]
struct Pending {
    since: Option<Instant>,
    buckets: BTreeMap<(OperationType, i64), Bucket>,
}

/// How long figures wait in a process before they reach the store (queries and the end of a
/// command send them at once).
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// A provider whose every operation is counted, timed and fed into its health.
pub struct Measured {
    inner: Arc<dyn CloudProvider>,
    store: Arc<dyn RequestStore>,
    clock: Arc<dyn Clock>,
    bus: EventBus,
    config: Arc<RwLock<StrategyConfig>>,
    active: AtomicU32,
    /// Last seen health had no failures: a success then needs no write.
    clean: AtomicBool,
    pending: Mutex<Pending>,
}

impl Measured {
    pub(crate) fn new(
        inner: Arc<dyn CloudProvider>,
        store: Arc<dyn RequestStore>,
        clock: Arc<dyn Clock>,
        bus: EventBus,
        config: Arc<RwLock<StrategyConfig>>,
    ) -> Self {
        Self {
            inner,
            store,
            clock,
            bus,
            config,
            active: AtomicU32::new(0),
            clean: AtomicBool::new(false),
            pending: Mutex::default(),
        }
    }

    /// Operations in flight on this provider in this process.
    pub fn active_operations(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }

    async fn measure<T>(
        &self,
        op: OperationType,
        call: impl Future<Output = Result<T, CloudError>>,
    ) -> Result<T, CloudError> {
        self.active.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let out = call.await;
        self.active.fetch_sub(1, Ordering::Relaxed);
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.record(op, ms, out.as_ref().err()).await;
        out
    }

    /// Adds one operation to the figures and, when it speaks of the provider, to its health.
    /// Figures gather in the process and reach the store at most a second later; a failure
    /// reaches the health at once. The store being unavailable loses figures, never the
    /// operation.
    pub(crate) async fn record(&self, op: OperationType, ms: u64, error: Option<&CloudError>) {
        let now = self.clock.now().unix_millis();
        let code = error.map(|e| e.code.as_str());
        if self.gather(op, now, ms, code) {
            self.flush().await;
        }
        // A refused template or an unknown machine says nothing about the provider's health.
        let speaks = error.is_none_or(|e| e.kind.is_provider_failure());
        if !speaks || (error.is_none() && self.clean.load(Ordering::Relaxed)) {
            return;
        }
        let breaker = self.config.read().map(|c| c.circuit_breaker_config.clone()).unwrap_or_default();
        self.change_health(|h| {
            h.record_operation(op.as_str(), code, now, &breaker);
        })
        .await;
    }

    /// Adds one operation to the figures gathered in this process; answers whether they have
    /// waited long enough to go to the store.
    fn gather(&self, op: OperationType, now: i64, ms: u64, code: Option<&str>) -> bool {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let since = *pending.since.get_or_insert_with(Instant::now);
        pending.buckets.entry((op, metrics::hour_of(now))).or_default().add(now, ms, code);
        since.elapsed() >= FLUSH_EVERY
    }

    /// Adds the figures gathered in this process to the store's.
    pub(crate) async fn flush(&self) {
        let buckets = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.since = None;
            std::mem::take(&mut pending.buckets)
        };
        let name = self.inner.name().as_str();
        for ((op, hour), delta) in buckets {
            let key = keys::metrics(name, op.as_str(), metrics::slot_of(hour));
            if let Err(e) = shared::update(&*self.store, &key, Bucket::default, |b| b.absorb(&delta)).await {
                tracing::warn!(provider = name, error = %e, "provider figures not stored");
            }
        }
    }

    /// Changes the stored health and publishes a change of verdict.
    pub(crate) async fn change_health(&self, change: impl FnMut(&mut Health)) -> Option<Health> {
        let now = self.clock.now().unix_millis();
        let name = self.inner.name().as_str();
        match shared::update(&*self.store, &keys::health(name), || Health::unknown(now), change).await {
            Ok((before, after)) => {
                self.clean.store(after.is_healthy && after.consecutive_failures == 0, Ordering::Relaxed);
                if before.healthy_at(now) != after.healthy_at(now) {
                    if !after.healthy_at(now) {
                        tracing::warn!(provider = name, message = %after.status_message, "provider unhealthy");
                    } else {
                        tracing::info!(provider = name, message = %after.status_message, "provider healthy");
                    }
                    self.bus.publish_system(SystemEvent::ProviderHealthChanged {
                        provider: name.to_owned(),
                        healthy: after.healthy_at(now),
                        source: after.source.clone(),
                        message: after.status_message.clone(),
                        at: self.clock.now(),
                    });
                }
                Some(after)
            }
            Err(e) => {
                tracing::warn!(provider = name, error = %e, "provider health not stored");
                None
            }
        }
    }

    /// Runs a health check now and records its verdict.
    pub(crate) async fn check_health(&self) -> (Result<(), CloudError>, u64) {
        let started = Instant::now();
        let out = self.inner.health_check().await;
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let now = self.clock.now().unix_millis();
        // A check is rare and asked for: its figures go at once.
        self.gather(OperationType::HealthCheck, now, ms, out.as_ref().err().map(|e| e.code.as_str()));
        self.flush().await;
        let verdict = out.as_ref().map(|_| ()).map_err(|e| (e.code.clone(), e.message.clone()));
        self.change_health(|h| {
            h.record_check(verdict.clone(), now);
        })
        .await;
        (out, ms)
    }
}

#[async_trait]
impl CloudProvider for Measured {
    fn call_name(&self, call: crate::ports::ProviderCall<'_>) -> crate::ports::CallName {
        self.inner.call_name(call)
    }
    fn name(&self) -> &ProviderName {
        self.inner.name()
    }
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn capabilities(&self) -> &'static [&'static str] {
        self.inner.capabilities()
    }
    async fn health_check(&self) -> Result<(), CloudError> {
        self.check_health().await.0
    }
    async fn instance_types(&self, names: &[String]) -> Result<Vec<(String, InstanceTypeInfo)>, CloudError> {
        self.inner.instance_types(names).await
    }
    async fn check_template(&self, template: &Template) -> Result<(), CloudError> {
        self.measure(OperationType::ValidateTemplate, self.inner.check_template(template)).await
    }
    async fn spot_prices(
        &self,
        instance_types: &[String],
    ) -> Result<std::collections::BTreeMap<String, f64>, CloudError> {
        self.inner.spot_prices(instance_types).await
    }
    async fn check_zones(&self, template: &Template, zones: &[String]) -> Result<(), CloudError> {
        self.measure(OperationType::ValidateTemplate, self.inner.check_zones(template, zones)).await
    }
    async fn identity(&self) -> Result<Option<String>, CloudError> {
        self.inner.identity().await
    }
    async fn inspect(&self, template: &Template) -> Result<Vec<String>, CloudError> {
        self.inner.inspect(template).await
    }
    async fn measure_venue(&self, venue: &crate::ports::VenueQuery) -> Result<crate::ports::VenueReading, CloudError> {
        self.inner.measure_venue(venue).await
    }
    async fn capacity(&self, template: &Template) -> Result<Option<ProviderCapacity>, CloudError> {
        self.inner.capacity(template).await
    }
    async fn launch(&self, request: &LaunchRequest) -> Result<LaunchResult, CloudError> {
        self.measure(OperationType::CreateInstances, self.inner.launch(request)).await
    }
    async fn follow(&self, launches: &[LaunchRequest]) -> Result<Vec<Result<LaunchResult, CloudError>>, CloudError> {
        // Each followed launch counts as the launch it stands for, taking the batch's time.
        self.active.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let out = self.inner.follow(launches).await;
        self.active.fetch_sub(1, Ordering::Relaxed);
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match &out {
            Ok(answers) => {
                for answer in answers {
                    self.record(OperationType::CreateInstances, ms, answer.as_ref().err()).await;
                }
            }
            Err(e) => self.record(OperationType::CreateInstances, ms, Some(e)).await,
        }
        out
    }
    async fn describe(&self, query: &DescribeQuery) -> Result<Vec<MachineObservation>, CloudError> {
        self.measure(OperationType::GetInstanceStatus, self.inner.describe(query)).await
    }
    async fn terminate(&self, machines: &[OwnedMachine], owner: &Ownership) -> Result<Vec<Refusal>, CloudError> {
        self.measure(OperationType::TerminateInstances, self.inner.terminate(machines, owner)).await
    }
    async fn release(&self, resource: &str, request: &RequestId, owner: &Ownership) -> Result<(), CloudError> {
        self.measure(OperationType::TerminateInstances, self.inner.release(resource, request, owner)).await
    }
    async fn prune(&self, keep: &[Template], owner: &Ownership) -> Result<Vec<String>, CloudError> {
        self.inner.prune(keep, owner).await
    }
    fn report(&self) -> Option<serde_json::Value> {
        self.inner.report()
    }
}
