//! The application service: command and query handlers over the ports.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use ohf_domain::instance_types::InstanceTypeInfo;
use ohf_domain::{DomainError, LifecyclePolicy, MachineCount, ProviderName, Request, Template, TimeoutSecs};

use ohf_provider_strategy::{Origin, ProviderEntry, StrategyConfig};

use crate::AppError;
use crate::bus::EventBus;
use crate::ports::{
    CallbackSender, Clock, CloudProvider, Fence, IdGenerator, Limits, Ownership, RequestStore, StoreError, SystemClock,
    TemplateCatalog, Usage, UuidIds,
};
use crate::providers::{ProviderFactory, Registry, Slot};

/// The rules of the application, from configuration.
#[derive(Debug, Clone)]
pub struct AppSettings {
    /// How launches are retried, partial results taken and requests timed out.
    pub policy: LifecyclePolicy,
    /// Most machines one request may ask for.
    pub max_machines_per_request: u32,
    /// How long a provision request may take when it names no timeout.
    pub default_timeout: TimeoutSecs,
    /// How long a return request may take when it names no timeout.
    pub return_timeout: TimeoutSecs,
    /// Most machines held across all templates (the account quota), when set.
    pub account_limit: Option<u32>,
    /// This installation's name, tagged on every machine (`ohf:cluster`).
    pub cluster: String,
    /// How long a creation may wait on the cloud before it answers: the request is stored
    /// first, and a launch still under way at the deadline goes on in the next reconcile step
    /// (the same client token, so never twice).
    pub answer_within: std::time::Duration,
    /// Hourly prices for the cost estimates of reports and the cost of venues.
    pub prices: crate::queries::PriceTable,
    /// Venues, modes, strategies, bookings and profiles of placement.
    pub routing: crate::placement::RoutingSettings,
}

impl Default for AppSettings {
    fn default() -> Self {
        Self {
            policy: LifecyclePolicy::default(),
            max_machines_per_request: MachineCount::DEFAULT_MAX,
            default_timeout: TimeoutSecs::DEFAULT,
            return_timeout: TimeoutSecs::DEFAULT,
            account_limit: None,
            cluster: "default".into(),
            answer_within: std::time::Duration::from_secs(5),
            prices: crate::queries::PriceTable::default(),
            routing: crate::placement::RoutingSettings::default(),
        }
    }
}

/// The application: every use case of ohf, over its ports.
pub struct App {
    pub(crate) store: Arc<dyn RequestStore>,
    pub(crate) catalog: Arc<dyn TemplateCatalog>,
    pub(crate) registry: Registry,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) ids: Arc<dyn IdGenerator>,
    pub(crate) bus: EventBus,
    pub(crate) settings: AppSettings,
    /// The store's identity, read once.
    pub(crate) installation: tokio::sync::OnceCell<String>,
    /// How far the store's clock runs ahead of this process's (ms), as the worker last read
    /// it: claims and fences are stamped in the store's time.
    pub(crate) store_offset_ms: std::sync::atomic::AtomicI64,
    /// Posts callbacks to the URLs requests name (none: callbacks fail and are given up).
    pub(crate) callbacks: Option<Arc<dyn CallbackSender>>,
    /// This process's side of the routing lease: its tasks' turns, the lease kept between
    /// them, what it last knew is held (`placement::state`).
    pub(crate) routing: crate::placement::LeaseTurns,
    /// The venues as the last decision saw them, and what they were made from.
    pub(crate) venue_view: std::sync::Mutex<Option<crate::placement::VenueView>>,
    /// The price table as placement reads it, made once.
    pub(crate) price_list: std::sync::OnceLock<std::sync::Arc<ohf_placement::Prices>>,
}

/// Builds an [`App`]. The store, the catalog and at least one provider are needed; the clock
/// (the system's), ids (UUIDs), the bus (no subscribers) and the settings (defaults) may be
/// given.
///
/// ```
/// use std::sync::Arc;
/// use ohf_app::App;
/// use ohf_app::memory::{MemoryStore, StaticCatalog};
/// # fn demo(provider: Arc<dyn ohf_app::CloudProvider>) -> Result<(), ohf_app::AppError> {
/// let app = App::builder(Arc::new(MemoryStore::new()), Arc::new(StaticCatalog(Vec::new())))
///     .provider(provider)
///     .build()?;
/// # let _ = app; Ok(()) }
/// ```
pub struct AppBuilder {
    store: Arc<dyn RequestStore>,
    catalog: Arc<dyn TemplateCatalog>,
    providers: Vec<Arc<dyn CloudProvider>>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    bus: EventBus,
    settings: AppSettings,
    strategy: Option<(Vec<ProviderEntry>, StrategyConfig)>,
    factory: Option<Arc<dyn ProviderFactory>>,
    callbacks: Option<Arc<dyn CallbackSender>>,
}

impl AppBuilder {
    /// Who posts the callbacks requests ask for (`metadata.callback_url`).
    pub fn callbacks(mut self, sender: Arc<dyn CallbackSender>) -> Self {
        self.callbacks = Some(sender);
        self
    }

    /// Adds a provider; the first added is the default.
    pub fn provider(mut self, provider: Arc<dyn CloudProvider>) -> Self {
        self.providers.push(provider);
        self
    }

    /// Adds providers, in order.
    pub fn providers(mut self, providers: impl IntoIterator<Item = Arc<dyn CloudProvider>>) -> Self {
        self.providers.extend(providers);
        self
    }

    /// The clock every timestamp comes from.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Where new request ids come from.
    pub fn ids(mut self, ids: Arc<dyn IdGenerator>) -> Self {
        self.ids = ids;
        self
    }

    /// The bus events are published on after commit.
    pub fn bus(mut self, bus: EventBus) -> Self {
        self.bus = bus;
        self
    }

    /// The rules of the application.
    pub fn settings(mut self, settings: AppSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The registrations of the providers added (capabilities, priority, weight, enabled) and
    /// the strategy configuration the store does not override.
    pub fn strategy(mut self, entries: Vec<ProviderEntry>, config: StrategyConfig) -> Self {
        self.strategy = Some((entries, config));
        self
    }

    /// Builds providers registered at run time.
    pub fn factory(mut self, factory: Arc<dyn ProviderFactory>) -> Self {
        self.factory = Some(factory);
        self
    }

    /// The application; an error when no provider was added.
    pub fn build(self) -> Result<App, AppError> {
        if self.providers.is_empty() {
            return Err(AppError::Configuration("at least one provider must be configured".into()));
        }
        let mut app = App {
            store: self.store,
            catalog: self.catalog,
            registry: Registry::new(StrategyConfig::default()),
            clock: self.clock,
            ids: self.ids,
            bus: self.bus,
            settings: self.settings,
            installation: tokio::sync::OnceCell::new(),
            store_offset_ms: std::sync::atomic::AtomicI64::new(0),
            callbacks: self.callbacks,
            routing: crate::placement::LeaseTurns::default(),
            venue_view: std::sync::Mutex::new(None),
            price_list: std::sync::OnceLock::new(),
        };
        for (i, p) in self.providers.into_iter().enumerate() {
            let entry = ProviderEntry {
                strategy_name: p.name().to_string(),
                provider_type: p.kind().to_owned(),
                strategy_config: serde_json::Map::new(),
                capabilities: BTreeMap::new(),
                priority: i32::try_from(i).unwrap_or(i32::MAX),
                weight: 1,
                enabled: true,
                origin: Origin::Config,
            };
            app.add_provider(entry, p);
        }
        if let Some((entries, config)) = self.strategy {
            for entry in entries {
                if let Some(slot) = app.registry.slot(&entry.strategy_name) {
                    app.registry.put(Slot { entry, provider: slot.provider });
                }
            }
            app.registry.set_config(config);
        }
        app.registry.factory = self.factory;
        Ok(app)
    }
}

impl App {
    /// Starts an [`AppBuilder`] over a store and a template catalog.
    pub fn builder(store: Arc<dyn RequestStore>, catalog: Arc<dyn TemplateCatalog>) -> AppBuilder {
        AppBuilder {
            store,
            catalog,
            providers: Vec::new(),
            clock: Arc::new(SystemClock),
            ids: Arc::new(UuidIds),
            bus: EventBus::default(),
            settings: AppSettings::default(),
            strategy: None,
            factory: None,
            callbacks: None,
        }
    }

    /// Every provider, as the app calls them.
    pub(crate) fn providers(&self) -> Vec<Arc<dyn CloudProvider>> {
        self.registry.providers()
    }

    /// The bus events are published on.
    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    /// The rules the application runs by.
    pub fn settings(&self) -> &AppSettings {
        &self.settings
    }

    /// Reads the store's clock (where it has one of its own) and keeps how far it is from
    /// this process's; a store that cannot say leaves the last reading.
    pub(crate) async fn sync_store_clock(&self) {
        match self.store.now().await {
            Ok(Some(store)) => {
                let offset = store.unix_millis() - self.clock.now().unix_millis();
                self.store_offset_ms.store(offset, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "the store's clock was not read; the last reading serves"),
        }
    }

    /// Now in the store's time: what claims, renewals and fences are stamped with.
    pub(crate) fn store_now(&self) -> ohf_domain::Timestamp {
        self.clock.now().plus_millis(self.store_offset_ms.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// What proves a resource is this installation's: the cluster name and the store's identity.
    pub async fn ownership(&self) -> Result<Ownership, StoreError> {
        let installation = self.installation.get_or_try_init(|| self.store.installation()).await?;
        Ok(Ownership { cluster: self.settings.cluster.clone(), installation: installation.clone() })
    }

    pub(crate) fn provider(&self, name: &ProviderName) -> Option<Arc<dyn CloudProvider>> {
        self.registry.slot(name.as_str()).map(|s| s.provider as Arc<dyn CloudProvider>)
    }

    pub(crate) fn default_provider(&self) -> Arc<dyn CloudProvider> {
        self.providers().swap_remove(0)
    }

    /// Stores requests with their events, then publishes the events.
    pub(crate) async fn commit(&self, batch: &mut [&mut Request], fence: Option<&Fence>) -> Result<(), StoreError> {
        let view: Vec<&Request> = batch.iter().map(|r| &**r).collect();
        self.store.save(&view, fence).await?;
        self.committed(batch).await;
        Ok(())
    }

    /// [`App::commit`] of what the caller `who` of a command did: its events name `who`.
    pub(crate) async fn commit_as(&self, batch: &mut [&mut Request], who: Option<&str>) -> Result<(), StoreError> {
        for r in batch.iter_mut() {
            r.attribute_to(who);
        }
        self.commit(batch, None).await
    }

    /// Stores the new provision request `request` if it fits `limits` (judged in the insert's
    /// transaction) and publishes its events; `Some(usage)`: refused, nothing stored.
    pub(crate) async fn commit_new(
        &self,
        request: &mut Request,
        limits: &Limits,
        also: Option<(&str, &str)>,
    ) -> Result<Option<Usage>, StoreError> {
        if let Some(usage) = self.store.create_within(request, limits, also).await? {
            return Ok(Some(usage));
        }
        self.committed(&mut [request]).await;
        Ok(None)
    }

    /// Marks a stored batch committed and publishes its events.
    async fn committed(&self, batch: &mut [&mut Request]) {
        let events: Vec<_> = batch.iter().flat_map(|r| r.uncommitted().to_vec()).collect();
        for r in batch.iter_mut() {
            let v = r.version() + 1;
            r.mark_committed(v);
        }
        self.bus.publish(&events).await;
    }

    pub(crate) async fn template(&self, id: &str) -> Result<Template, AppError> {
        let (templates, refused) = self.templates().await?;
        if let Some((_, e)) = refused.into_iter().find(|(t, _)| t.id().as_str() == id) {
            return Err(e.into());
        }
        match templates.iter().find(|t| t.id().as_str() == id) {
            Some(t) => Ok(t.clone()),
            None => Err(DomainError::TemplateNotFound {
                template_id: id.to_owned(),
                available: templates.iter().map(|t| t.id().to_string()).collect(),
            }
            .into()),
        }
    }

    /// The catalog's templates, with the instance-type figures they lack filled in, beside
    /// those whose types nobody knows (with why).
    pub(crate) async fn templates(&self) -> Result<(Vec<Template>, Vec<(Template, DomainError)>), AppError> {
        let mut templates = self.catalog.templates().await?;
        let known = self.type_figures(&templates).await;
        let mut refused = Vec::new();
        let mut ready = Vec::new();
        for mut t in templates.drain(..) {
            if t.unresolved_types().is_empty() {
                ready.push(t);
                continue;
            }
            match t.resolve_types(&known) {
                Ok(()) => ready.push(t),
                Err(e) => {
                    tracing::warn!(template_id = %t.id(), error = %e, "template left out");
                    refused.push((t, e));
                }
            }
        }
        Ok((ready, refused))
    }

    /// The figures of the instance types `templates` need and the built-in table lacks: from
    /// the store's cache, else from the providers (then cached for every process).
    pub(crate) async fn type_figures(&self, templates: &[Template]) -> HashMap<String, InstanceTypeInfo> {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Figures {
            vcpus: u32,
            threads_per_core: u32,
            memory_mib: u64,
            arch: String,
        }
        let wanted: BTreeSet<String> = templates.iter().flat_map(Template::unresolved_types).collect();
        let mut known = HashMap::new();
        let key = crate::shared::keys::instance_type;
        for name in &wanted {
            if let Ok((Some(raw), _)) = self.store.load_shared(&key(name)).await
                && let Ok(f) = serde_json::from_str::<Figures>(&raw)
                && let Some(arch) = InstanceTypeInfo::arch_of(&f.arch)
            {
                let info = InstanceTypeInfo {
                    vcpus: f.vcpus,
                    threads_per_core: f.threads_per_core,
                    memory_mib: f.memory_mib,
                    arch,
                };
                known.insert(name.clone(), info);
            }
        }
        for provider in self.providers() {
            let missing: Vec<String> = wanted.iter().filter(|n| !known.contains_key(*n)).cloned().collect();
            if missing.is_empty() {
                break;
            }
            match provider.instance_types(&missing).await {
                Ok(found) => {
                    for (name, info) in found {
                        let figures = Figures {
                            vcpus: info.vcpus,
                            threads_per_core: info.threads_per_core,
                            memory_mib: info.memory_mib,
                            arch: info.arch.to_owned(),
                        };
                        if let Ok(text) = serde_json::to_string(&figures) {
                            // Another process may have cached it first; its figures are the same.
                            let _ = self.store.store_shared(&key(&name), &text, 0).await;
                        }
                        known.insert(name, info);
                    }
                }
                Err(e) => tracing::warn!(provider = %provider.name(), error = %e, "instance types not described"),
            }
        }
        known
    }
}
