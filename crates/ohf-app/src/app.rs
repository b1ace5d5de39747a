//! The application service: command and query handlers over the ports.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use ohf_domain::instance_types::InstanceTypeInfo;
use ohf_domain::limits;
use ohf_domain::{
    DomainError, LifecyclePolicy, Machine, MachineCount, MachineId, MachineStatus, Priority, ProviderName,
    ProvisionSpec, Request, RequestId, RequestKind, ReturnedMachine, Tags, Template, TimeoutSecs,
};
use serde_json::Value;

use ohf_provider_strategy::{Origin, ProviderEntry, StrategyConfig};

use crate::bus::EventBus;
use crate::ports::{
    Clock, CloudProvider, DescribeQuery, Fence, IdGenerator, Ownership, RequestFilter, RequestStore, StoreError,
    TemplateCatalog, find_machine,
};
use crate::providers::{ProviderFactory, Registry, Slot};
use crate::reconcile::Doomed;
use crate::{AppError, ReconcileReport};

/// The rules of the application, from configuration.
#[derive(Debug, Clone)]
pub struct AppSettings {
    pub policy: LifecyclePolicy,
    /// Most machines one request may ask for.
    pub max_machines_per_request: u32,
    pub default_timeout: TimeoutSecs,
    pub return_timeout: TimeoutSecs,
    /// Most machines held across all templates (the account quota), when set.
    pub account_limit: Option<u32>,
    /// This installation's name, tagged on every machine (`ohf:cluster`).
    pub cluster: String,
    /// How long a creation may wait on the cloud before it answers: the request is stored
    /// first, and a launch still under way at the deadline goes on in the next reconcile step
    /// (the same client token, so never twice).
    pub answer_within: std::time::Duration,
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
        }
    }
}

/// Command: provision machines of a template. Fields are raw input; the handler validates them.
#[derive(Debug, Clone, Default)]
pub struct RequestMachines {
    pub template_id: String,
    pub count: i64,
    pub request_id: Option<String>,
    pub timeout: Option<i64>,
    pub tags: BTreeMap<String, String>,
    pub metadata: BTreeMap<String, Value>,
    pub priority: Option<String>,
    pub zones: Vec<String>,
    pub provider: Option<String>,
}

/// A machine named by its id, its host name, or both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MachineRef {
    pub id: Option<String>,
    pub name: Option<String>,
}

/// Command: return machines to the cloud.
#[derive(Debug, Clone, Default)]
pub struct RequestReturn {
    pub machines: Vec<MachineRef>,
    pub request_id: Option<String>,
    pub force: bool,
    pub timeout: Option<i64>,
}

/// A template and how many more machines it may have; `None` is unlimited.
#[derive(Debug, Clone)]
pub struct TemplateAvailability {
    pub template: Template,
    pub available: Option<u32>,
}

impl TemplateAvailability {
    /// `template` with what its `maxNumber` leaves beside the machines `held` per template.
    fn of(template: Template, held: &HashMap<ohf_domain::TemplateId, u32>) -> Self {
        let used = held.get(template.id()).copied().unwrap_or(0);
        let available = template.max_number().map(|max| max.saturating_sub(used));
        Self { template, available }
    }
}

/// The verdict on a template document.
#[derive(Debug, Clone)]
pub enum TemplateCheck {
    Valid(Box<Template>),
    Invalid { field: String, message: String },
}

/// A machine the cloud is taking back, with the seconds left before it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnNotice {
    pub machine: String,
    pub machine_id: MachineId,
    pub grace_period: i64,
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
}

impl App {
    /// `providers` must not be empty; the first is the default.
    pub fn new(
        store: Arc<dyn RequestStore>,
        catalog: Arc<dyn TemplateCatalog>,
        providers: Vec<Arc<dyn CloudProvider>>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
        bus: EventBus,
        settings: AppSettings,
    ) -> Result<Self, AppError> {
        if providers.is_empty() {
            return Err(AppError::Configuration("at least one provider must be configured".into()));
        }
        let app = Self {
            store,
            catalog,
            registry: Registry::new(StrategyConfig::default()),
            clock,
            ids,
            bus,
            settings,
            installation: tokio::sync::OnceCell::new(),
            store_offset_ms: std::sync::atomic::AtomicI64::new(0),
        };
        for (i, p) in providers.into_iter().enumerate() {
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
        Ok(app)
    }

    /// Sets the registrations of configured providers (capabilities, priority, weight,
    /// enabled) and the strategy configuration the store does not override.
    pub fn with_strategy(self, entries: Vec<ProviderEntry>, config: StrategyConfig) -> Self {
        for entry in entries {
            if let Some(slot) = self.registry.slot(&entry.strategy_name) {
                self.registry.put(Slot { entry, provider: slot.provider });
            }
        }
        self.registry.set_config(config);
        self
    }

    /// Lets the app build providers registered at run time.
    pub fn with_factory(mut self, factory: Arc<dyn ProviderFactory>) -> Self {
        self.registry.factory = Some(factory);
        self
    }

    /// Every provider, as the app calls them.
    pub(crate) fn providers(&self) -> Vec<Arc<dyn CloudProvider>> {
        self.registry.providers()
    }

    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

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

    fn default_provider(&self) -> Arc<dyn CloudProvider> {
        self.providers().swap_remove(0)
    }

    /// Stores requests with their events, then publishes the events.
    pub(crate) async fn commit(&self, batch: &mut [&mut Request], fence: Option<&Fence>) -> Result<(), StoreError> {
        let view: Vec<&Request> = batch.iter().map(|r| &**r).collect();
        self.store.save(&view, fence).await?;
        let events: Vec<_> = batch.iter().flat_map(|r| r.uncommitted().to_vec()).collect();
        for r in batch.iter_mut() {
            let v = r.version() + 1;
            r.mark_committed(v);
        }
        self.bus.publish(&events).await;
        Ok(())
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
    async fn type_figures(&self, templates: &[Template]) -> HashMap<String, InstanceTypeInfo> {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Figures {
            vcpus: u32,
            threads_per_core: u32,
            memory_mib: u64,
            arch: String,
        }
        let wanted: BTreeSet<String> = templates.iter().flat_map(Template::unresolved_types).collect();
        let mut known = HashMap::new();
        let key = |name: &str| format!("instance-type/{name}");
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

    /// Validates and stores a provision request, then makes its first launch.
    pub async fn request_machines(&self, cmd: RequestMachines) -> Result<Request, AppError> {
        let deadline = tokio::time::Instant::now() + self.settings.answer_within;
        let template = self.template(&cmd.template_id).await?;
        let count = MachineCount::new(cmd.count, self.settings.max_machines_per_request)?;
        let timeout = cmd.timeout.map(TimeoutSecs::new).transpose()?.unwrap_or(self.settings.default_timeout);
        let tags = Tags::new(cmd.tags)?;
        let merged = template.instance_tags().merged(&tags).iter().count();
        if merged > limits::MAX_USER_TAGS {
            return Err(DomainError::validation(
                "tags",
                format!(
                    "the template's and the request's tags come to {merged}; at most {} (AWS allows {} per resource and ohf adds {} of its own)",
                    limits::MAX_USER_TAGS,
                    limits::AWS_TAGS_PER_RESOURCE,
                    limits::OWN_TAGS
                ),
            )
            .into());
        }
        let metadata_bytes = serde_json::to_string(&cmd.metadata).map_or(usize::MAX, |s| s.len());
        if metadata_bytes > limits::MAX_METADATA_BYTES {
            return Err(DomainError::validation(
                "metadata",
                format!("{metadata_bytes} bytes as JSON; at most {}", limits::MAX_METADATA_BYTES),
            )
            .into());
        }
        let priority = cmd.priority.as_deref().map(str::parse::<Priority>).transpose()?.unwrap_or_default();
        let client_id = cmd.request_id.map(RequestId::new).transpose()?;

        if let Some(id) = &client_id
            && let Some(existing) = self.store.get(id).await?
        {
            let same = existing.kind() == RequestKind::Provision
                && existing.template().map(Template::id) == Some(template.id())
                && existing.count() == count.get();
            return if same {
                Ok(existing)
            } else {
                Err(DomainError::DuplicateRequest { request_id: id.to_string() }.into())
            };
        }

        let provider = self.choose_provider(&template, cmd.provider.as_deref()).await?;
        provider.check_template(&template).await.map_err(|e| DomainError::ProviderIncompatible {
            template_id: template.id().to_string(),
            provider: provider.name().to_string(),
            reason: e.message,
        })?;
        self.check_limits(&template, count.get()).await?;
        // A provider too slow to say its capacity does not hold the answer up: a shortage
        // shows at launch.
        let capacity = match tokio::time::timeout_at(deadline, provider.capacity(&template)).await {
            Ok(answer) => answer.map_err(|error| AppError::Cloud { provider: provider.name().to_string(), error })?,
            Err(_) => {
                tracing::warn!(provider = %provider.name(), "capacity not known in time; checked at launch");
                None
            }
        };
        if let Some(cap) = capacity
            && cap.available < count.get()
        {
            return Err(DomainError::InsufficientCapacity {
                requested: count.get(),
                available: cap.available,
                template_id: None,
                instance_type: Some(cap.instance_type),
                region: cap.region,
            }
            .into());
        }

        let id = client_id.unwrap_or_else(|| self.ids.next(RequestKind::Provision));
        let spec = ProvisionSpec {
            id: id.clone(),
            template,
            count,
            timeout,
            tags,
            metadata: cmd.metadata,
            priority,
            zones: cmd.zones,
            provider: provider.name().clone(),
        };
        let now = self.clock.now();
        let mut request = Request::provision(spec, now);
        // A new request's first step needs no look at the cloud (nothing of it exists yet):
        // it is decided here and stored with the request, and the launch follows at once.
        let first = request.reconcile(&[], &[], now, &self.settings.policy);
        match self.commit(&mut [&mut request], None).await {
            Ok(()) => {}
            // Another caller created the same client id a moment ago: answer with theirs.
            Err(StoreError::Conflict { .. }) => {
                return self
                    .store
                    .get(&id)
                    .await?
                    .ok_or_else(|| DomainError::DuplicateRequest { request_id: id.to_string() }.into());
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(request_id = %id, count = count.get(), "provision request accepted");
        if let Some(order) = first.launch {
            let owner = self.ownership().await?;
            let mut report = ReconcileReport::default();
            let launch = self.launch(&mut request, order, &owner, None, &mut report);
            if tokio::time::timeout_at(deadline, launch).await.is_err() {
                tracing::info!(request_id = %id, "launch still under way at the answer's deadline; the next step goes on with it");
                // The stored request (its launch started, nothing recorded yet) is the answer.
                return Ok(self.store.get(&id).await?.unwrap_or(request));
            }
        }
        Ok(request)
    }

    async fn check_limits(&self, template: &Template, count: u32) -> Result<(), AppError> {
        let held = self.store.capacity_held().await?;
        if let Some(max) = template.max_number() {
            let used = held.get(template.id()).copied().unwrap_or(0);
            let available = max.saturating_sub(used);
            if count > available {
                return Err(DomainError::InsufficientCapacity {
                    requested: count,
                    available,
                    template_id: Some(template.id().to_string()),
                    instance_type: None,
                    region: None,
                }
                .into());
            }
        }
        if let Some(limit) = self.settings.account_limit {
            let used: u32 = held.values().sum();
            if used + count > limit {
                return Err(DomainError::QuotaExceeded {
                    current_usage: used,
                    requested_additional: count,
                    account_limit: limit,
                }
                .into());
            }
        }
        Ok(())
    }

    /// Stores a return request for the named machines and asks the cloud to terminate them.
    pub async fn request_return(&self, cmd: RequestReturn) -> Result<Request, AppError> {
        if cmd.machines.is_empty() {
            return Err(DomainError::validation("machines", "name at least one machine to return").into());
        }
        limits::check_len("machines", cmd.machines.len(), limits::MAX_ITEMS_PER_CALL)?;
        let timeout = cmd.timeout.map(TimeoutSecs::new).transpose()?.unwrap_or(self.settings.return_timeout);
        let client_id = cmd.request_id.map(RequestId::new).transpose()?;
        if let Some(id) = &client_id
            && let Some(existing) = self.store.get(id).await?
        {
            return if existing.kind() == RequestKind::Return {
                Ok(existing)
            } else {
                Err(DomainError::DuplicateRequest { request_id: id.to_string() }.into())
            };
        }
        let mut ids = Vec::new();
        let mut names = Vec::new();
        for m in &cmd.machines {
            match (&m.id, &m.name) {
                (None, None) => {
                    return Err(DomainError::validation("machines", "each machine needs a machineId or a name").into());
                }
                (id, name) => {
                    if let Some(id) = id {
                        ids.push(MachineId::new(id.clone())?);
                    }
                    if let Some(n) = name {
                        names.push(n.clone());
                    }
                }
            }
        }
        let mut holders = self.store.find_holders(&ids, &names).await?;
        let mut returned = Vec::new();
        for m in &cmd.machines {
            let id = m.id.clone().map(MachineId::new).transpose()?;
            let found = holders.iter().find_map(|h| {
                find_machine(h, id.as_ref(), m.name.as_deref()).map(|machine| (h.id().clone(), machine.for_return()))
            });
            // A machine no request of this store holds is not ohf's to terminate: it fails
            // in the return request, and nothing is asked of the cloud.
            returned.push(match (found, id) {
                (Some((holder, machine)), _) => ReturnedMachine { machine, holder: Some(holder), refusal: None },
                (None, id) => {
                    let label = id.as_ref().map(ToString::to_string).or_else(|| m.name.clone()).unwrap_or_default();
                    let id = match id {
                        Some(id) => id,
                        None => MachineId::new(label.clone())?,
                    };
                    ReturnedMachine {
                        machine: Machine::unknown(id, self.default_provider().name().clone(), m.name.clone()),
                        holder: None,
                        refusal: Some(format!(
                            "machine '{label}' was not launched by this ohf installation (no request holds it); \
                             nothing was terminated"
                        )),
                    }
                }
            });
        }
        let now = self.clock.now();
        let id = client_id.unwrap_or_else(|| self.ids.next(RequestKind::Return));
        let mut ret = Request::return_machines(id.clone(), returned, timeout, cmd.force, now)?;
        // Its first step (terminate every machine) is stored with it and made at once.
        let first = ret.reconcile(&[], &[], now, &self.settings.policy);
        for h in holders.iter_mut() {
            let mine: Vec<MachineId> =
                ret.holders().iter().filter(|(_, holder)| *holder == h.id()).map(|(m, _)| m.clone()).collect();
            for m in mine {
                h.mark_returned(&m, &id, now);
            }
        }
        let mut batch: Vec<&mut Request> = vec![&mut ret];
        batch.extend(holders.iter_mut().filter(|h| !h.uncommitted().is_empty()));
        self.commit(&mut batch, None).await?;
        tracing::info!(request_id = %id, machines = ret.count(), "return request accepted");
        let owner = self.ownership().await?;
        let doomed = Doomed::of(&ret, first.terminate);
        let refused = self.terminate(doomed, &owner, &mut ReconcileReport::default()).await;
        if self.record_refusals(&mut ret, &refused) {
            // The next cycle records them again if this write loses a race.
            let _ = self.commit(&mut [&mut ret], None).await;
        }
        Ok(ret)
    }

    /// Cancels a request and terminates what it launched.
    pub async fn cancel(&self, id: &str) -> Result<Request, AppError> {
        let id = RequestId::new(id)?;
        for _ in 0..3 {
            let mut request = self
                .store
                .get(&id)
                .await?
                .ok_or_else(|| DomainError::RequestNotFound { request_id: id.to_string() })?;
            request.cancel(self.clock.now())?;
            match self.commit(&mut [&mut request], None).await {
                Ok(()) => {
                    tracing::info!(request_id = %id, "request cancelled");
                    self.reconcile(Some(std::slice::from_ref(&id))).await;
                    return Ok(self.store.get(&id).await?.unwrap_or(request));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        // Another writer kept changing it: it is mid-transition. Say so rather than queue.
        Err(AppError::Busy { request_id: id.to_string(), retry_after_secs: 1 })
    }

    /// Deletes the requests that finished more than `keep_days` days ago and hold no machine,
    /// with their events and claim history (retention); answers how many went.
    pub async fn purge_history(&self, keep_days: u32) -> Result<u64, AppError> {
        const BATCH: u32 = 1000;
        let before = self.clock.now().plus_secs(-(i64::from(keep_days) * 86_400));
        let mut total = 0;
        loop {
            let gone = self.store.delete_finished(before, BATCH).await?;
            total += gone;
            if gone < u64::from(BATCH) {
                break;
            }
        }
        if total > 0 {
            tracing::info!(deleted = total, keep_days, "finished requests past retention deleted");
        }
        Ok(total)
    }

    /// Every template with how many more machines it may have.
    pub async fn available_templates(&self) -> Result<Vec<TemplateAvailability>, AppError> {
        let (templates, _) = self.templates().await?;
        let held = self.store.capacity_held().await?;
        Ok(templates.into_iter().map(|template| TemplateAvailability::of(template, &held)).collect())
    }

    /// One template with how many more machines it may have.
    pub async fn template_info(&self, id: &str) -> Result<TemplateAvailability, AppError> {
        let template = self.template(id).await?;
        let held = self.store.capacity_held().await?;
        Ok(TemplateAvailability::of(template, &held))
    }

    /// Checks one template document: ohf's rules, then the provider that would serve it. A
    /// template that breaks a rule is an answer, not an error.
    pub async fn validate_template(&self, raw: &Value) -> Result<TemplateCheck, AppError> {
        let invalid = |field: String, message: String| Ok(TemplateCheck::Invalid { field, message });
        let mut template = match Template::from_json(raw) {
            Ok(t) => t,
            Err(DomainError::Validation { field, message }) => return invalid(field, message),
            Err(e) => return invalid("template".into(), e.to_string()),
        };
        if !template.unresolved_types().is_empty() {
            let known = self.type_figures(std::slice::from_ref(&template)).await;
            if let Err(DomainError::Validation { field, message }) = template.resolve_types(&known) {
                return invalid(field, message);
            }
        }
        let provider = match self.choose_provider(&template, None).await {
            Ok(p) => p,
            Err(e) => return invalid("provider".into(), e.to_string()),
        };
        match provider.check_template(&template).await {
            Ok(()) => Ok(TemplateCheck::Valid(Box::new(template))),
            Err(e) => {
                invalid("template".into(), format!("provider '{}' cannot serve it: {}", provider.name(), e.message))
            }
        }
    }

    /// The events of a request from sequence number `from` on (a request's events are numbered
    /// from 0; its `seq()` is the next one), with the request after them. Waits up to `wait` for
    /// the first new event unless the request is final; events stored by other processes are
    /// seen within `poll`.
    pub async fn changes(
        &self,
        id: &str,
        from: u64,
        wait: std::time::Duration,
        poll: std::time::Duration,
    ) -> Result<(Request, Vec<ohf_domain::EventEnvelope>), AppError> {
        let id = RequestId::new(id)?;
        let mut live = self.bus.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let request = self
                .store
                .get(&id)
                .await?
                .ok_or_else(|| DomainError::RequestNotFound { request_id: id.to_string() })?;
            if request.seq() > from {
                let events: Vec<_> = self.store.history(&id).await?.into_iter().filter(|e| e.seq >= from).collect();
                // The request read above may be older than the history read after it.
                let request = if events.last().is_some_and(|e| e.seq >= request.seq()) {
                    self.store.get(&id).await?.unwrap_or(request)
                } else {
                    request
                };
                let next = request.seq();
                return Ok((request, events.into_iter().filter(|e| e.seq < next).collect()));
            }
            if request.state().is_terminal() && !request.needs_work() {
                return Ok((request, Vec::new()));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok((request, Vec::new()));
            }
            let nap = (deadline - now).min(poll);
            let mine = async {
                loop {
                    match live.recv().await {
                        Ok(e) if e.request_id == id => return,
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => std::future::pending().await,
                    }
                }
            };
            let _ = tokio::time::timeout(nap, mine).await;
        }
    }

    /// Each provider's own report of its calls in this process, by provider name.
    pub fn provider_reports(&self) -> Vec<(String, Value)> {
        self.providers().iter().filter_map(|p| p.report().map(|r| (p.name().to_string(), r))).collect()
    }

    /// Shared state other than requests whose key starts with `prefix` (such as `breaker/`),
    /// as every process on the store sees it.
    pub async fn shared_state(&self, prefix: &str) -> Result<Vec<(String, Value)>, AppError> {
        Ok(self
            .store
            .list_shared(prefix)
            .await?
            .into_iter()
            .map(|(k, v, _)| {
                let value = serde_json::from_str(&v).unwrap_or(Value::String(v));
                (k, value)
            })
            .collect())
    }

    /// The requests of `ids`, each with `None` when ohf does not know it.
    pub async fn request_status(&self, ids: &[String]) -> Result<Vec<(String, Option<Request>)>, AppError> {
        limits::check_len("requestIds", ids.len(), limits::MAX_ITEMS_PER_CALL)?;
        let parsed: Vec<RequestId> = ids.iter().filter_map(|i| RequestId::new(i.clone()).ok()).collect();
        let found = self.store.get_many(&parsed).await?;
        let by_id: HashMap<&str, &Request> = found.iter().map(|r| (r.id().as_str(), r)).collect();
        Ok(ids.iter().map(|i| (i.clone(), by_id.get(i.as_str()).map(|r| (*r).clone()))).collect())
    }

    pub async fn list_requests(&self, filter: &RequestFilter) -> Result<Vec<Request>, AppError> {
        Ok(self.store.list(filter).await?)
    }

    pub async fn history(&self, id: &str) -> Result<Vec<ohf_domain::EventEnvelope>, AppError> {
        let id = RequestId::new(id)?;
        if self.store.get(&id).await?.is_none() {
            return Err(DomainError::RequestNotFound { request_id: id.to_string() }.into());
        }
        Ok(self.store.history(&id).await?)
    }

    /// The machines the cloud is taking back: spot interruption notices (grace = seconds
    /// left) and machines stopped or terminated outside ohf (grace 0). `known` are the hosts
    /// the scheduler holds; empty means every machine ohf holds.
    pub async fn return_notices(&self, known: &[MachineRef]) -> Result<Vec<ReturnNotice>, AppError> {
        limits::check_len("machines", known.len(), limits::MAX_ITEMS_PER_CALL)?;
        let ids: Vec<MachineId> =
            known.iter().filter_map(|m| m.id.clone()).filter_map(|i| MachineId::new(i).ok()).collect();
        let names: Vec<String> = known.iter().filter_map(|m| m.name.clone()).collect();
        let holders = if known.is_empty() {
            // Only requests that still hold machines: the cost follows what is held, not history.
            let holding = RequestFilter { kind: Some(RequestKind::Provision), holding: true, ..Default::default() };
            self.store.list(&holding).await?
        } else {
            self.store.find_holders(&ids, &names).await?
        };
        let mut candidates: Vec<&Machine> = Vec::new();
        for h in &holders {
            for m in h.machines() {
                let asked = known.is_empty()
                    || known.iter().any(|k| {
                        k.id.as_deref() == Some(m.id().as_str()) || (k.name.is_some() && k.name.as_deref() == m.name())
                    });
                if asked && m.returned_by().is_none() && !m.is_terminating() && m.failure().is_none() {
                    candidates.push(m);
                }
            }
        }
        let now = self.clock.now();
        let mut notices = Vec::new();
        for provider in &self.providers() {
            let machine_ids: Vec<MachineId> =
                candidates.iter().filter(|m| m.provider() == provider.name()).map(|m| m.id().clone()).collect();
            if machine_ids.is_empty() {
                continue;
            }
            let query = DescribeQuery { machine_ids: machine_ids.clone(), ..Default::default() };
            let seen = provider
                .describe(&query)
                .await
                .map_err(|error| AppError::Cloud { provider: provider.name().to_string(), error })?;
            for id in &machine_ids {
                let machine = candidates.iter().find(|m| m.id() == id).expect("candidate");
                let label = machine.name().unwrap_or(id.as_str()).to_owned();
                let grace = match seen.iter().find(|o| &o.id == id) {
                    None => Some(0),
                    Some(o) if o.status != MachineStatus::Running && o.status != MachineStatus::Pending => Some(0),
                    Some(o) => o.interruption_at.map(|t| t.secs_since(now)),
                };
                if let Some(grace_period) = grace {
                    notices.push(ReturnNotice { machine: label, machine_id: id.clone(), grace_period });
                }
            }
        }
        Ok(notices)
    }
}
