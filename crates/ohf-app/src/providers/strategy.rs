//! The provider-strategy seed's use cases: choosing a provider for an operation (policy,
//! criteria, health, figures), failing a launch over to another provider, registering and
//! configuring providers (kept in the store), health updates and checks, figures and
//! capabilities. The commands and queries take the seed's documents as typed messages and
//! answer with the typed answers of [`super::answers`].

use std::collections::BTreeMap;
use std::sync::Arc;

use ohf_domain::{DomainError, PriceType, ProviderApi, ProviderName, Request, Template};
use ohf_provider_strategy::config::{self, ConfigError, Origin, validate_criteria};
use ohf_provider_strategy::metrics::{self, Bucket, HOUR_MS, OperationType, Summary};
use ohf_provider_strategy::{Candidate, Criteria, Health, ProviderEntry, Selection, SelectionPolicy, StrategyConfig};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::answers::{
    BreakerView, HealthProbe, HealthView, InstanceSeen, OperationOutcome, OperationResult, ProviderCapabilities,
    ProviderCapabilitiesReport, ProviderFigures, ProviderHealth, ProviderHealthReport, ProviderHealthUpdated,
    ProviderListing, ProviderMetricsReport, ProviderRegistered, ProviderView, RequestAccepted, SelectionMade,
    StrategyConfigured, TemplateVerdict, figures,
};
use crate::bus::SystemEvent;
use crate::commands::{ConfigureProviderStrategy, CriteriaChanges, ExecuteProviderOperation, UpdateProviderHealth};
use crate::ports::{CloudError, CloudProvider, DescribeQuery};
use crate::providers::{Measured, Slot, keys};
use crate::queries::{GetRequestStatus, ProviderQuery};
use crate::shared::{Breaker, CircuitState};
use crate::{App, AppError, MachineRef, RequestMachines, RequestReturn, shared};

/// The longest an outside verdict may hold a provider unhealthy.
const MAX_RETRY_AFTER: u64 = 7 * 24 * 3600;
/// How long a selection weighing by capacity waits for a provider to say its capacity.
const CAPACITY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// What a provider knows how to do beyond its capabilities, for `include_limitations`.
fn limitations(kind: &str) -> Vec<&'static str> {
    match kind {
        "aws" => vec![
            "at most 1000 instance ids per describe or terminate call",
            "EC2 API request rates per account and region (client-side buckets: RunInstances 5 burst, 2/s)",
            "Spot Fleet needs an IAM fleet role (fleetRole)",
        ],
        "sim" => vec!["simulated: machines exist only in the simulation's state file"],
        _ => Vec::new(),
    }
}

fn invalid(e: ConfigError) -> AppError {
    DomainError::validation(&e.field, e.message).into()
}

/// A seed method's document as the typed message `T`: a field that does not fit is a
/// VALIDATION_ERROR naming it (an absent document is an empty one).
pub fn parse_document<T: for<'de> Deserialize<'de>>(p: &Value, what: &str) -> Result<T, AppError> {
    let p = if p.is_null() { &Value::Object(Map::new()) } else { p };
    config::parse(p, what).map_err(invalid)
}

/// The capabilities a template needs of the provider that launches it.
fn needed_capabilities(t: &Template) -> Vec<String> {
    let mut needed = vec!["instances".to_owned()];
    if t.price_type() != PriceType::Ondemand {
        needed.push("spot_instances".into());
    }
    match t.provider_api() {
        ProviderApi::Ec2Fleet | ProviderApi::SpotFleet => needed.push("fleets".into()),
        ProviderApi::Asg => needed.push("auto_scaling".into()),
        ProviderApi::RunInstances => {}
    }
    needed
}

/// Whether an operation's failure is the provider's (worth another provider), rather than
/// the request's own.
pub(crate) fn fails_over(e: &CloudError) -> bool {
    e.kind.is_provider_failure()
}

fn now_draw() -> f64 {
    (uuid::Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64
}

/// A provider's health as a choice sees it: the stored record, the verdict now (an OPEN
/// breaker counts), and its breakers as stored.
struct HealthNow {
    stored: Health,
    healthy: bool,
    breakers: Vec<BreakerView>,
}

pub(crate) fn operation(name: &str) -> Result<OperationType, AppError> {
    OperationType::parse(name).ok_or_else(|| {
        let known: Vec<&str> = OperationType::ALL.iter().map(|o| o.as_str()).collect();
        DomainError::validation("operation_type", format!("'{name}' is not known; known: {}", known.join(", "))).into()
    })
}

impl App {
    /// The configured criteria with the fields a call gives put over them.
    pub(crate) fn criteria_with(&self, given: Option<CriteriaChanges>) -> Result<Criteria, AppError> {
        let configured = self.registry.config().selection_criteria;
        let Some(given) = given else { return Ok(configured) };
        let criteria = given.over(configured);
        validate_criteria(&criteria, "selection_criteria").map_err(invalid)?;
        Ok(criteria)
    }

    fn slot_named(&self, name: &str, field: &str) -> Result<Slot, AppError> {
        self.registry.slot(name).ok_or_else(|| {
            let known: Vec<String> = self.registry.slots().into_iter().map(|s| s.entry.strategy_name).collect();
            DomainError::validation(field, format!("'{name}' is not registered; registered: {}", known.join(", ")))
                .into()
        })
    }

    fn slots_asked(&self, name: Option<&str>) -> Result<Vec<Slot>, AppError> {
        match name {
            Some(n) => Ok(vec![self.slot_named(n, "provider_name")?]),
            None => Ok(self.registry.slots()),
        }
    }

    /// Health as the store holds it, with an OPEN circuit breaker counted as unhealthy for
    /// the recovery timeout after it opened.
    async fn healths(&self) -> Result<BTreeMap<String, HealthNow>, AppError> {
        let mut lists = self.store.list_shared_many(&[keys::HEALTH, keys::BREAKERS]).await?.into_iter();
        let (health, breakers) = (lists.next().unwrap_or_default(), lists.next().unwrap_or_default());
        Ok(self.healths_of(health, breakers))
    }

    /// Whether each provider is healthy, from the stored health and breaker entries (read with
    /// other shared state).
    pub(crate) fn health_verdicts(
        &self,
        health: Vec<(String, String, i64)>,
        breakers: Vec<(String, String, i64)>,
    ) -> BTreeMap<String, bool> {
        self.healths_of(health, breakers).into_iter().map(|(name, h)| (name, h.healthy)).collect()
    }

    /// Health from the stored health and breaker entries.
    fn healths_of(
        &self,
        health: Vec<(String, String, i64)>,
        breaker_entries: Vec<(String, String, i64)>,
    ) -> BTreeMap<String, HealthNow> {
        let now = self.clock.now().unix_millis();
        let recovery =
            i64::try_from(self.registry.config().circuit_breaker_config.recovery_timeout).unwrap_or(60) * 1000;
        let mut stored: BTreeMap<String, Health> = BTreeMap::new();
        for (key, value, _) in health {
            if let Ok(h) = serde_json::from_str(&value) {
                stored.insert(key.trim_start_matches(keys::HEALTH).to_owned(), h);
            }
        }
        let mut breakers: BTreeMap<String, Vec<BreakerView>> = BTreeMap::new();
        let mut open_since: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for (key, value, _) in breaker_entries {
            let Some((provider, service)) = keys::breaker_of(&key) else { continue };
            let Ok(breaker) = serde_json::from_str::<Breaker>(&value) else { continue };
            if breaker.state == CircuitState::Open {
                open_since.entry(provider.to_owned()).or_default().push(breaker.changed_at);
            }
            breakers.entry(provider.to_owned()).or_default().push(BreakerView { service: service.to_owned(), breaker });
        }
        let mut out = BTreeMap::new();
        for slot in self.registry.slots() {
            let name = slot.entry.strategy_name.clone();
            let health = stored.remove(&name).unwrap_or_else(|| Health::unknown(now));
            let theirs = breakers.remove(&name).unwrap_or_default();
            let open = open_since.get(&name).is_some_and(|opened| opened.iter().any(|t| now - t < recovery));
            let healthy = health.healthy_at(now) && !open;
            out.insert(name, HealthNow { stored: health, healthy, breakers: theirs });
        }
        out
    }

    /// Sends the figures every provider gathered in this process to the store. Host Factory
    /// calls and CLI commands do it before they exit; queries do it before they read.
    pub async fn flush_figures(&self) {
        for slot in self.registry.slots() {
            slot.provider.flush().await;
        }
    }

    /// The figures of `op` on `provider` over the last `since_ms`.
    async fn figures(&self, provider: &str, op: OperationType, since: i64) -> Result<Summary, AppError> {
        let now = self.clock.now().unix_millis();
        let hours = ((now - since) / HOUR_MS + 1).clamp(1, metrics::KEPT_HOURS);
        let buckets: Vec<Bucket> = if hours <= 2 {
            let mut list = Vec::new();
            for h in 0..hours {
                let key = keys::metrics(provider, op.as_str(), metrics::slot_of(now - h * HOUR_MS));
                list.push(shared::load(&*self.store, &key, Bucket::default).await?.0);
            }
            list
        } else {
            let prefix = format!("{}{provider}/{}/", keys::METRICS, op.as_str());
            self.store.list_shared(&prefix).await?.iter().filter_map(|(_, v, _)| serde_json::from_str(v).ok()).collect()
        };
        // A ring slot may hold an hour a week old: only hours inside the range count.
        let buckets: Vec<Bucket> = buckets.into_iter().filter(|b| b.hour <= now).collect();
        Ok(metrics::summarize(&buckets, since))
    }

    /// Every registered provider as a selection sees it. For LEAST_CONNECTIONS the operations in
    /// flight are the requests with work left on each provider in the store, so every process
    /// sharing it sees the same counts; otherwise (and when the store cannot say) this
    /// process's calls in flight. `by_capacity`: the template whose available capacity each
    /// provider is asked for (WEIGHTED_ROUND_ROBIN weighing by capacity).
    async fn candidates(
        &self,
        op: OperationType,
        policy: SelectionPolicy,
        by_capacity: Option<&Template>,
    ) -> Result<Vec<Candidate>, AppError> {
        self.flush_figures().await;
        let healths = self.healths().await?;
        let in_flight = if policy == SelectionPolicy::LeastConnections {
            match self.store.work_by_provider().await {
                Ok(work) => Some(work),
                Err(e) => {
                    tracing::warn!(error = %e, "work in flight not known; this process's calls count");
                    None
                }
            }
        } else {
            None
        };
        let since = self.clock.now().unix_millis() - HOUR_MS;
        let mut list = Vec::new();
        for slot in self.registry.slots() {
            let name = slot.entry.strategy_name.clone();
            let figures = self.figures(&name, op, since).await?;
            let available_capacity = match by_capacity {
                Some(t) => available_capacity(&slot.provider, t).await,
                None => None,
            };
            list.push(Candidate {
                provider_type: slot.entry.provider_type.clone(),
                capabilities: slot.entry.capabilities_with(slot.provider.capabilities()),
                priority: slot.entry.priority,
                weight: slot.entry.weight,
                enabled: slot.entry.enabled,
                healthy: healths.get(&name).is_none_or(|h| h.healthy),
                active_operations: match &in_flight {
                    Some(work) => {
                        let stored = work.get(slot.provider.name()).copied().unwrap_or(0);
                        u32::try_from(stored).unwrap_or(u32::MAX)
                    }
                    None => slot.provider.active_operations(),
                },
                available_capacity,
                response_time_ms: figures.average_response_time_ms,
                success_rate: figures.success_rate,
                name,
            });
        }
        Ok(list)
    }

    /// Chooses a provider for `op`: the call's criteria (else the configured ones) plus what
    /// `template` needs, under the call's policy (else the configured one), never one of
    /// `exclude`.
    pub(crate) async fn select_provider(
        &self,
        op: OperationType,
        criteria: Option<&Criteria>,
        policy: Option<SelectionPolicy>,
        template: Option<&Template>,
        exclude: &[ProviderName],
    ) -> Result<Selection, AppError> {
        let config = self.registry.config();
        let mut criteria = criteria.cloned().unwrap_or(config.selection_criteria);
        if let Some(t) = template {
            for c in needed_capabilities(t) {
                if !criteria.required_capabilities.contains(&c) {
                    criteria.required_capabilities.push(c);
                }
            }
        }
        criteria.exclude_strategies.extend(exclude.iter().map(|p| p.to_string()));
        let policy = policy.unwrap_or(config.default_selection_policy);
        let by_capacity =
            template.filter(|_| policy == SelectionPolicy::WeightedRoundRobin && config.weight_by_capacity);
        let candidates = self.candidates(op, policy, by_capacity).await?;
        let cursor = if matches!(policy, SelectionPolicy::RoundRobin | SelectionPolicy::WeightedRoundRobin) {
            shared::update(&*self.store, keys::CURSOR, || 0u64, |c| *c = c.wrapping_add(1)).await?.0
        } else {
            0
        };
        let selection =
            ohf_provider_strategy::select(&candidates, policy, &criteria, cursor, now_draw()).map_err(|e| {
                AppError::NoProvider {
                    message: e.to_string(),
                    passed_over: serde_json::to_value(&e.passed_over).unwrap_or_default(),
                }
            })?;
        tracing::debug!(operation = op.as_str(), provider = %selection.selected, reason = %selection.reason, "provider selected");
        self.bus.publish_system(SystemEvent::ProviderSelected {
            operation: op.as_str().into(),
            provider: selection.selected.clone(),
            policy: policy.as_str().into(),
            reason: selection.reason.clone(),
            at: self.clock.now(),
        });
        Ok(selection)
    }

    /// The provider a new request goes to: the one asked for, else the template's, else the
    /// only one, else the selection's.
    pub(crate) async fn choose_provider(
        &self,
        template: &Template,
        asked: Option<&str>,
    ) -> Result<Arc<Measured>, AppError> {
        let wanted = asked.or(template.provider().map(ProviderName::as_str));
        if let Some(wanted) = wanted {
            let slot = self.slot_named(wanted, "provider")?;
            if !slot.entry.enabled {
                return Err(DomainError::validation("provider", format!("'{wanted}' is disabled")).into());
            }
            return Ok(slot.provider);
        }
        let slots = self.registry.slots();
        if let [only] = slots.as_slice() {
            return Ok(only.provider.clone());
        }
        let s = self.select_provider(OperationType::CreateInstances, None, None, Some(template), &[]).await?;
        Ok(self.slot_named(&s.selected, "provider")?.provider)
    }

    /// Where a request whose launch on its provider just failed with `error` goes next: the
    /// configured fallbacks in order, else the selection among the others; never a provider
    /// the request already tried, a disabled or unhealthy one, or one that refuses the
    /// template.
    pub(crate) async fn failover_target(
        &self,
        request: &Request,
        error: &CloudError,
    ) -> Option<(ProviderName, String)> {
        let template = request.template()?;
        let current = request.provider()?;
        if !fails_over(error) || self.registry.slots().len() < 2 {
            return None;
        }
        let tried: Vec<ProviderName> = request.providers_tried().iter().chain([current]).cloned().collect();
        let config = self.registry.config();
        let healths = self.healths().await.ok()?;
        let fits = |slot: &Slot| {
            let caps = slot.entry.capabilities_with(slot.provider.capabilities());
            slot.entry.enabled
                && !tried.iter().any(|t| t.as_str() == slot.entry.strategy_name)
                && healths.get(&slot.entry.strategy_name).is_none_or(|h| h.healthy)
                && needed_capabilities(template).iter().all(|c| caps.contains(c))
        };
        let mut order: Vec<Slot> = Vec::new();
        // With venues, the next-best venue among the untried providers' decides.
        let next_venue = self.next_venue_provider(request, &tried).await;
        if let Some(slot) = next_venue.and_then(|name| self.registry.slot(&name)) {
            order.push(slot);
        } else if config.fallback_strategies.is_empty() {
            if let Ok(s) =
                self.select_provider(OperationType::CreateInstances, None, None, Some(template), &tried).await
                && let Some(slot) = self.registry.slot(&s.selected)
            {
                order.push(slot);
            }
        } else {
            order = config.fallback_strategies.iter().filter_map(|n| self.registry.slot(n)).collect();
        }
        for slot in order.into_iter().filter(|s| fits(s)) {
            if slot.provider.check_template(template).await.is_ok() {
                let reason = format!("launch on {current} failed: {error}");
                return Some((slot.provider.name().clone(), reason));
            }
        }
        None
    }

    pub(crate) async fn execute_provider_operation(
        &self,
        q: ExecuteProviderOperation,
    ) -> Result<OperationOutcome, AppError> {
        let op = operation(&q.operation_type)?;
        let criteria = self.criteria_with(q.selection_criteria)?;
        let params = q.parameters;
        let started = std::time::Instant::now();
        let template = match &params.template_id {
            Some(id) => Some(self.template(id).await?),
            None => None,
        };
        // The provider: the override, else the selection.
        let (provider, selection) = match &q.strategy_override {
            Some(name) => (self.slot_named(name, "strategy_override")?.provider, None),
            None if op == OperationType::HealthCheck => (self.registry.slots()[0].provider.clone(), None),
            None => {
                let s = self.select_provider(op, Some(&criteria), q.selection_policy, template.as_ref(), &[]).await?;
                (self.slot_named(&s.selected, "provider")?.provider, Some(s))
            }
        };
        let accepted = |request: &Request, machine_count: usize| RequestAccepted {
            request_id: request.id().to_string(),
            status: request.state().as_str().to_owned(),
            machine_count: machine_count as u64,
        };
        let result = match op {
            OperationType::CreateInstances => {
                let Some(template) = &template else {
                    return Err(DomainError::validation("parameters.template_id", "is required").into());
                };
                let count = params.count.ok_or_else(|| {
                    AppError::from(DomainError::validation("parameters.count", "is required: a whole number"))
                })?;
                let request = self
                    .execute(RequestMachines {
                        template_id: template.id().to_string(),
                        count,
                        request_id: params.request_id.clone(),
                        provider: Some(provider.name().to_string()),
                        ..RequestMachines::default()
                    })
                    .await?;
                OperationResult::InstancesRequested(accepted(&request, request.count() as usize))
            }
            OperationType::TerminateInstances => {
                let ids = id_list(params.instance_ids.clone())?;
                let request = self
                    .execute(RequestReturn {
                        machines: ids.into_iter().map(|id| MachineRef { id: Some(id), name: None }).collect(),
                        ..RequestReturn::default()
                    })
                    .await?;
                OperationResult::ReturnRequested(accepted(&request, request.machines().len()))
            }
            OperationType::GetInstanceStatus => {
                // A request's machines, or the instances named; each asked of the provider that
                // holds it (instances ohf does not know, of the chosen one).
                let holders = match &params.request_id {
                    Some(id) => {
                        let found = self
                            .ask(GetRequestStatus { request_ids: vec![id.clone()] })
                            .await?
                            .pop()
                            .and_then(|(_, r)| r);
                        vec![found.ok_or(DomainError::RequestNotFound { request_id: id.clone() })?]
                    }
                    None => Vec::new(),
                };
                let ids: Vec<ohf_domain::MachineId> = match holders.first() {
                    Some(r) => r.machines().iter().map(|m| m.id().clone()).collect(),
                    None => id_list(params.instance_ids.clone())?
                        .into_iter()
                        .map(ohf_domain::MachineId::new)
                        .collect::<Result<_, _>>()
                        .map_err(AppError::from)?,
                };
                let holders = if holders.is_empty() { self.store.find_holders(&ids, &[]).await? } else { holders };
                let held_by = |id: &ohf_domain::MachineId| {
                    holders.iter().flat_map(|r| r.machines()).find(|m| m.id() == id).map(|m| m.provider().clone())
                };
                let mut instances = Vec::new();
                for slot in self.registry.slots() {
                    let theirs: Vec<ohf_domain::MachineId> = ids
                        .iter()
                        .filter(|id| {
                            held_by(id).map_or(slot.provider.name() == provider.name(), |p| &p == slot.provider.name())
                        })
                        .cloned()
                        .collect();
                    if theirs.is_empty() {
                        continue;
                    }
                    let found = slot
                        .provider
                        .describe(&DescribeQuery { machine_ids: theirs, ..Default::default() })
                        .await
                        .map_err(|error| AppError::Cloud { provider: slot.entry.strategy_name.clone(), error })?;
                    instances.extend(found.into_iter().map(|o| InstanceSeen {
                        instance_id: o.id.to_string(),
                        status: o.status.to_string(),
                        instance_type: o.instance_type,
                        private_ip: o.private_ip,
                        host_name: o.name,
                        zone: o.zone,
                        provider_name: o.provider.to_string(),
                    }));
                }
                OperationResult::Instances { instances }
            }
            OperationType::ValidateTemplate => {
                let Some(template) = &template else {
                    return Err(DomainError::validation("parameters.template_id", "is required").into());
                };
                let reason = provider.check_template(template).await.err().map(|e| e.to_string());
                OperationResult::TemplateChecked(TemplateVerdict {
                    valid: reason.is_none(),
                    template_id: template.id().to_string(),
                    reason,
                })
            }
            OperationType::GetAvailableTemplates => {
                let mut templates = Vec::new();
                for t in self.templates().await?.0 {
                    if provider.check_template(&t).await.is_ok() {
                        templates.push(t.id().to_string());
                    }
                }
                OperationResult::Templates { templates }
            }
            OperationType::HealthCheck => {
                let slots = match &q.strategy_override {
                    Some(_) => vec![self.slot_named(provider.name().as_str(), "strategy_override")?],
                    None => self.registry.slots(),
                };
                let mut providers = Vec::new();
                for slot in slots {
                    let (out, ms) = slot.provider.check_health().await;
                    providers.push(HealthProbe {
                        provider_name: slot.entry.strategy_name,
                        is_healthy: out.is_ok(),
                        response_time_ms: ms,
                        error: out.err().map(|e| e.to_string()),
                    });
                }
                OperationResult::HealthChecks { providers }
            }
        };
        Ok(OperationOutcome {
            success: true,
            operation_type: op,
            provider_name: provider.name().to_string(),
            selection: selection.map(|s| selection_made(op, s)),
            execution_time_ms: started.elapsed().as_millis() as u64,
            result,
        })
    }

    pub(crate) async fn register_provider(&self, mut entry: ProviderEntry) -> Result<ProviderRegistered, AppError> {
        entry.validate().map_err(invalid)?;
        entry.origin = Origin::Registered;
        if let Some(existing) = self.registry.slot(&entry.strategy_name)
            && existing.entry.origin == Origin::Config
        {
            return Err(DomainError::validation(
                "strategy_name",
                format!("'{}' comes from the config file; change it there", entry.strategy_name),
            )
            .into());
        }
        let Some(factory) = self.registry.factory.clone() else {
            return Err(AppError::Configuration("this process cannot build providers at run time".into()));
        };
        let provider = factory.build(&entry).await.map_err(|m| DomainError::validation("strategy_config", m))?;
        let text = serde_json::to_string(&entry).map_err(|e| AppError::Configuration(e.to_string()))?;
        let key = format!("{}{}", keys::ENTRY, entry.strategy_name);
        let (_, version) = self.store.load_shared(&key).await?;
        if !self.store.store_shared(&key, &text, version).await? {
            return Err(AppError::Busy { request_id: entry.strategy_name.clone(), retry_after_secs: 1 });
        }
        let view = provider_view(&entry, provider.capabilities());
        self.add_provider(entry, provider);
        Ok(ProviderRegistered { registered: true, provider: view })
    }

    /// Adds a provider instance, measured, to the registry.
    pub(crate) fn add_provider(&self, entry: ProviderEntry, provider: Arc<dyn CloudProvider>) {
        let measured = Arc::new(Measured::new(
            provider,
            self.store.clone(),
            self.clock.clone(),
            self.bus.clone(),
            self.registry.config.clone(),
        ));
        self.registry.put(Slot { entry, provider: measured });
    }

    /// Takes in the registrations and strategy configuration kept in the store: a restarted
    /// process (every Host Factory call is one) sees what was registered and configured, and a
    /// daemon calling it now and then sees what other processes registered since.
    pub async fn load_registered(&self) -> Result<(), AppError> {
        let (raw, _) = self.store.load_shared(keys::CONFIG).await?;
        // A stored row this version cannot read (an unknown field, damage) is a poison row: it
        // is logged and passed over, and the configured strategy serves.
        match raw.map(|raw| serde_json::from_str::<StrategyConfig>(&raw)) {
            Some(Ok(stored)) => self.registry.set_config(stored),
            Some(Err(e)) => {
                tracing::error!(key = keys::CONFIG, error = %e, "stored strategy configuration unreadable; the configured one serves")
            }
            None => {}
        }
        let Some(factory) = self.registry.factory.clone() else { return Ok(()) };
        for (key, value, _) in self.store.list_shared(keys::ENTRY).await? {
            let entry: ProviderEntry = match serde_json::from_str(&value) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(key, error = %e, "stored provider registration unreadable; skipped");
                    continue;
                }
            };
            // A name from the config file stays as configured; an unchanged registration keeps
            // the provider it has.
            if self
                .registry
                .slot(&entry.strategy_name)
                .is_some_and(|s| s.entry.origin == Origin::Config || s.entry == entry)
            {
                continue;
            }
            match factory.build(&entry).await {
                Ok(p) => self.add_provider(entry, p),
                Err(e) => tracing::warn!(provider = %entry.strategy_name, error = %e, "registered provider not built"),
            }
        }
        Ok(())
    }

    pub(crate) async fn configure_strategy(
        &self,
        changes: ConfigureProviderStrategy,
    ) -> Result<StrategyConfigured, AppError> {
        // Fields not given keep their current values.
        let config = changes.over(self.registry.config());
        config.validate().map_err(invalid)?;
        for name in &config.fallback_strategies {
            self.slot_named(name, "fallback_strategies")?;
        }
        let text = serde_json::to_string(&config).map_err(|e| AppError::Configuration(e.to_string()))?;
        let (_, version) = self.store.load_shared(keys::CONFIG).await?;
        if !self.store.store_shared(keys::CONFIG, &text, version).await? {
            return Err(AppError::Busy { request_id: keys::CONFIG.into(), retry_after_secs: 1 });
        }
        self.registry.set_config(config.clone());
        Ok(StrategyConfigured { configured: true, configuration: config })
    }

    pub(crate) async fn update_provider_health(
        &self,
        u: UpdateProviderHealth,
    ) -> Result<ProviderHealthUpdated, AppError> {
        let slot = self.slot_named(&u.provider_name, "provider_name")?;
        let source = u.source.unwrap_or_else(|| "external".into());
        let now = self.clock.now().unix_millis();
        let status = u.health_status;
        let message = status
            .status_message
            .unwrap_or_else(|| if status.is_healthy { "healthy".into() } else { "unhealthy".into() });
        let (code, retry_after) = status.error_details.map_or((None, None), |d| (d.error_code, d.retry_after));
        if retry_after.is_some_and(|s| s > MAX_RETRY_AFTER) {
            let message = format!("must be at most {MAX_RETRY_AFTER} seconds (a week)");
            return Err(DomainError::validation("health_status.error_details.retry_after", message).into());
        }
        let after = slot
            .provider
            .change_health(|h| {
                h.record_update(status.is_healthy, message.clone(), code.clone(), retry_after, &source, now);
            })
            .await
            .ok_or_else(|| AppError::Configuration("the health could not be stored".into()))?;
        Ok(ProviderHealthUpdated {
            provider_name: u.provider_name,
            updated: true,
            health_status: health_view(&after, after.healthy_at(now), now),
        })
    }

    pub(crate) async fn provider_health(&self, q: &ProviderQuery) -> Result<ProviderHealthReport, AppError> {
        let slots = self.slots_asked(q.provider_name.as_deref())?;
        let mut healths = self.healths().await?;
        let now = self.clock.now().unix_millis();
        let providers: Vec<ProviderHealth> = slots
            .iter()
            .filter_map(|s| healths.remove(&s.entry.strategy_name).map(|h| (s, h)))
            .map(|(s, HealthNow { stored, healthy, breakers })| ProviderHealth {
                provider_name: s.entry.strategy_name.clone(),
                health: health_view(&stored, healthy, now),
                circuit_breakers: breakers,
            })
            .collect();
        let healthy = providers.iter().filter(|p| p.health.is_healthy).count() as u64;
        Ok(ProviderHealthReport {
            healthy_count: healthy,
            unhealthy_count: providers.len() as u64 - healthy,
            providers,
        })
    }

    pub(crate) async fn list_available_providers(&self, q: &ProviderQuery) -> Result<ProviderListing, AppError> {
        let healths = self.healths().await?;
        let providers: Vec<ProviderView> = self
            .registry
            .slots()
            .iter()
            .filter(|s| q.provider_type.as_ref().is_none_or(|t| &s.entry.provider_type == t))
            .map(|s| (s, healths.get(&s.entry.strategy_name).is_none_or(|h| h.healthy)))
            .filter(|(s, healthy)| !q.healthy_only || (*healthy && s.entry.enabled))
            .map(|(s, healthy)| ProviderView {
                is_healthy: Some(healthy),
                ..provider_view(&s.entry, s.provider.capabilities())
            })
            .collect();
        Ok(ProviderListing {
            count: providers.len() as u64,
            providers,
            selection_policy: self.registry.config().default_selection_policy,
        })
    }

    pub(crate) async fn provider_metrics(&self, q: &ProviderQuery) -> Result<ProviderMetricsReport, AppError> {
        let hours = q.time_range_hours.unwrap_or(24.0);
        if !(hours > 0.0 && hours <= metrics::KEPT_HOURS as f64) {
            return Err(DomainError::validation("time_range_hours", "must be more than 0 and at most 168").into());
        }
        let since = self.clock.now().unix_millis() - (hours * HOUR_MS as f64) as i64;
        self.flush_figures().await;
        let mut providers = Vec::new();
        for slot in self.slots_asked(q.provider_name.as_deref())? {
            let name = &slot.entry.strategy_name;
            let mut all: Vec<Bucket> = Vec::new();
            let mut breakdown = BTreeMap::new();
            let prefix = format!("{}{name}/", keys::METRICS);
            let now = self.clock.now().unix_millis();
            let stored = self.store.list_shared(&prefix).await?;
            for op in OperationType::ALL {
                let of_op = format!("{prefix}{}/", op.as_str());
                let buckets: Vec<Bucket> = stored
                    .iter()
                    .filter(|(k, _, _)| k.starts_with(&of_op))
                    .filter_map(|(_, v, _)| serde_json::from_str(v).ok())
                    .filter(|b: &Bucket| b.hour <= now)
                    .collect();
                let s = metrics::summarize(&buckets, since);
                if s.total_operations > 0 {
                    breakdown.insert(op, figures(s, q.include_error_details));
                }
                all.extend(buckets);
            }
            providers.push(ProviderFigures {
                provider_name: name.clone(),
                active_operations: u64::from(slot.provider.active_operations()),
                total: figures(metrics::summarize(&all, since), q.include_error_details),
                operations: q.include_operation_breakdown.then_some(breakdown),
            });
        }
        Ok(ProviderMetricsReport { time_range_hours: hours, providers })
    }

    pub(crate) async fn provider_capabilities(
        &self,
        q: &ProviderQuery,
    ) -> Result<ProviderCapabilitiesReport, AppError> {
        let mut providers = Vec::new();
        let since = self.clock.now().unix_millis() - 24 * HOUR_MS;
        self.flush_figures().await;
        for slot in self.slots_asked(q.provider_name.as_deref())? {
            let caps = slot.entry.capabilities_with(slot.provider.capabilities());
            let mut all: BTreeMap<String, bool> = slot.entry.capabilities.clone();
            for c in &caps {
                all.insert(c.clone(), true);
            }
            let performance_metrics = if q.include_performance_metrics {
                let mut perf = BTreeMap::new();
                for op in [
                    OperationType::CreateInstances,
                    OperationType::GetInstanceStatus,
                    OperationType::TerminateInstances,
                ] {
                    perf.insert(op, figures(self.figures(&slot.entry.strategy_name, op, since).await?, true));
                }
                Some(perf)
            } else {
                None
            };
            providers.push(ProviderCapabilities {
                provider_name: slot.entry.strategy_name.clone(),
                provider_type: slot.entry.provider_type.clone(),
                capabilities: all,
                supported_operations: OperationType::ALL.to_vec(),
                limitations: q
                    .include_limitations
                    .then(|| limitations(&slot.entry.provider_type).into_iter().map(str::to_owned).collect()),
                performance_metrics,
            });
        }
        Ok(ProviderCapabilitiesReport { providers })
    }

    /// Runs every provider's health check (the daemon does, at `health_check_interval`).
    pub(crate) async fn check_providers(&self) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        for slot in self.registry.slots().into_iter().filter(|s| s.entry.enabled) {
            let (result, _) = slot.provider.check_health().await;
            out.push((slot.entry.strategy_name, result.is_ok()));
        }
        out
    }

    /// Seconds between health checks.
    pub(crate) fn health_check_interval(&self) -> u64 {
        self.registry.config().health_check_interval
    }
}

/// The instance ids of TERMINATE_INSTANCES and GET_INSTANCE_STATUS.
fn id_list(ids: Option<Vec<String>>) -> Result<Vec<String>, AppError> {
    match ids {
        Some(ids) if !ids.is_empty() => Ok(ids),
        _ => Err(DomainError::validation("parameters.instance_ids", "is required: a list of ids").into()),
    }
}

pub(crate) fn selection_made(op: OperationType, s: Selection) -> SelectionMade {
    SelectionMade {
        operation_type: op,
        selected_strategy: s.selected,
        selection_policy: s.policy,
        selection_reason: s.reason,
        passed_over: s.passed_over,
    }
}

fn provider_view(e: &ProviderEntry, of_type: &[&str]) -> ProviderView {
    // Keys and passwords never leave the store.
    let strategy_config: Map<String, Value> = e
        .strategy_config
        .iter()
        .map(|(k, v)| {
            let secret = ["secret", "password", "token"].iter().any(|s| k.to_ascii_lowercase().contains(s));
            (k.clone(), if secret { json!("***") } else { v.clone() })
        })
        .collect();
    ProviderView {
        strategy_name: e.strategy_name.clone(),
        provider_type: e.provider_type.clone(),
        strategy_config,
        capabilities: e.capabilities_with(of_type),
        priority: e.priority,
        weight: e.weight,
        enabled: e.enabled,
        origin: e.origin,
        is_healthy: None,
    }
}

fn health_view(h: &Health, healthy: bool, now: i64) -> HealthView {
    let at = ohf_domain::Timestamp::from_unix_millis;
    HealthView {
        is_healthy: healthy,
        status_message: h.status_message.clone(),
        source: h.source.clone(),
        error_code: h.error_code.clone(),
        consecutive_failures: h.consecutive_failures,
        since: at(h.since),
        unhealthy_until: h.unhealthy_until.filter(|t| *t > now).map(at),
        last_check: h.last_check.map(at),
    }
}

/// The machines of `template` `provider` says it can still launch; `None` when it does not
/// say, fails, or takes longer than a selection should wait.
async fn available_capacity(provider: &Measured, template: &Template) -> Option<u32> {
    match tokio::time::timeout(CAPACITY_WAIT, provider.capacity(template)).await {
        Ok(Ok(Some(cap))) => Some(cap.available),
        Ok(Ok(None)) => None,
        Ok(Err(e)) => {
            tracing::debug!(provider = %provider.name(), error = %e, "capacity not known; its weight counts");
            None
        }
        Err(_) => None,
    }
}
