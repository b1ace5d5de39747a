//! The composition root: builds the application from resolved settings.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use ohf_app::alerts::{Alerter, Rule, RuleName};
use ohf_app::{
    App, Clock, CloudProvider, EventBus, EventCounts, EventLog, ProviderFactory, RequestStore, SystemClock, UuidIds,
};
use ohf_cloud_aws::AwsProvider;
use ohf_cloud_sim::SimCloud;
use ohf_provider_strategy::ProviderEntry;
use ohf_resilience::{ResilienceConfig, Resilient};
use ohf_store_sql::{PostgresStore, SqliteStore};

use crate::catalog::FileCatalog;
use crate::settings::{AdminSettings, ProviderKind, ProviderSpec, Resolved, provider_spec};

/// What the process [`build`] wires is for; it sizes the store's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// A daemon (`ohf serve`): many callers at once.
    Daemon,
    /// One call (a Host Factory operation, an `ohf` command) whose statements run one after
    /// another: one connection, opened once (a connection costs a thread, a read of the schema,
    /// on Postgres a TLS handshake).
    Call,
}

pub struct Runtime {
    pub app: Arc<App>,
    pub sims: Vec<Arc<SimCloud>>,
    /// Every configured provider as the app calls it: behind its breaker, retries, deadlines
    /// and limits.
    pub resilient: Vec<Arc<Resilient>>,
    /// Stored request events by kind, counted by a subscriber of the bus.
    pub events: Arc<EventCounts>,
    /// The alerts: a subscriber of the bus; the daemon also feeds it system events and time.
    pub alerter: Arc<Alerter>,
    /// Time from request to COMPLETED per template, measured by a subscriber of the bus.
    pub completions: Arc<ohf_app::figures::Completions>,
    /// The store as the app calls it, timing each call.
    pub store: Arc<ohf_app::figures::MeasuredStore>,
}

/// Builds providers, each behind its resilience wrapper: the configured ones at start, the
/// registered ones (`registerProviderStrategy`) whenever they come.
struct Builder {
    store: Arc<dyn RequestStore>,
    clock: Arc<dyn Clock>,
    bus: EventBus,
    resilience: ResilienceConfig,
    workdir: PathBuf,
    /// What registrations through the API may reach.
    admin: AdminSettings,
}

impl Builder {
    async fn build(&self, spec: &ProviderSpec) -> anyhow::Result<(Arc<Resilient>, Option<Arc<SimCloud>>)> {
        let (provider, sim): (Arc<dyn CloudProvider>, _) = match &spec.kind {
            ProviderKind::Sim { config, state_file } => {
                let sim = Arc::new(SimCloud::persistent(
                    spec.name.clone(),
                    config.clone(),
                    self.clock.clone(),
                    state_file.clone(),
                ));
                (sim.clone(), Some(sim))
            }
            ProviderKind::Aws { config } => {
                let mut config = config.clone();
                if self.resilience.retry.enabled {
                    // ohf retries; the SDK's own retries would multiply with them.
                    config.request_attempts = 1;
                }
                let aws = AwsProvider::connect(spec.name.clone(), &config)
                    .await
                    .map_err(|e| anyhow::anyhow!("provider '{}': {e}", spec.name))?;
                (Arc::new(aws), None)
            }
        };
        let mut config = self.resilience.clone();
        // The client-side buckets are EC2's; the simulated cloud has its own throttling.
        config.rate_limit.enabled &= provider.kind() == "aws";
        let resilient =
            Resilient::new(provider, config, self.store.clone(), self.clock.clone()).with_bus(self.bus.clone());
        Ok((Arc::new(resilient), sim))
    }
}

#[async_trait]
impl ProviderFactory for Builder {
    async fn build(&self, entry: &ProviderEntry) -> Result<Arc<dyn CloudProvider>, String> {
        let spec =
            provider_spec(entry.clone(), entry.strategy_config.clone(), &self.workdir).map_err(|e| format!("{e:#}"))?;
        if let Some(why) = self.admin.refusal(&spec, &entry.strategy_config) {
            return Err(format!("provider '{}': {why}", spec.name));
        }
        let (provider, _) = Builder::build(self, &spec).await.map_err(|e| format!("{e:#}"))?;
        Ok(provider)
    }
}

pub async fn build(settings: &Resolved, lifetime: Lifetime) -> anyhow::Result<Runtime> {
    let store: Arc<dyn RequestStore> = if settings.database_url.starts_with("sqlite:") {
        let connections = match lifetime {
            Lifetime::Daemon => SqliteStore::CONNECTIONS,
            Lifetime::Call => 1,
        };
        Arc::new(
            SqliteStore::open_url_with(&settings.database_url, connections)
                .await
                .with_context(|| format!("cannot open the store at {}", settings.database_url))?,
        )
    } else {
        let connections = match lifetime {
            Lifetime::Daemon => settings.database_max_connections,
            Lifetime::Call => 1,
        };
        let store = PostgresStore::open(&settings.database_url, settings.database_schema.as_deref(), connections)
            .await
            .context("cannot open the postgres store")?;
        Arc::new(store)
    };
    // Every store call timed, its errors counted, for /metrics.
    let measured = Arc::new(ohf_app::figures::MeasuredStore::new(store));
    let store: Arc<dyn RequestStore> = measured.clone();
    let clock = Arc::new(SystemClock);
    // The bus's subscribers: the structured event log, the metrics exporter's counts and
    // request durations, and the alerts.
    let events = Arc::new(EventCounts::default());
    let completions = Arc::new(ohf_app::figures::Completions::new(store.clone()));
    let alerter = Arc::new(alerter(settings, clock.clone())?.shared(store.clone()));
    let bus = EventBus::new(vec![Arc::new(EventLog), events.clone(), completions.clone(), alerter.clone()]);
    let builder = Arc::new(Builder {
        store: store.clone(),
        clock: clock.clone(),
        bus: bus.clone(),
        resilience: settings.resilience.clone(),
        workdir: settings.workdir.clone(),
        admin: settings.admin.clone(),
    });
    let mut sims = Vec::new();
    let mut resilient = Vec::new();
    for spec in &settings.providers {
        let (provider, sim) = builder.build(spec).await?;
        sims.extend(sim);
        resilient.push(provider);
    }
    let app = App::builder(store, Arc::new(FileCatalog::new(settings.templates_file.clone())))
        .providers(resilient.iter().map(|r| r.clone() as Arc<dyn CloudProvider>))
        .clock(clock)
        .ids(Arc::new(UuidIds))
        .bus(bus)
        .settings(settings.app.clone())
        .strategy(settings.providers.iter().map(|p| p.entry.clone()).collect(), settings.provider_strategy.clone())
        .factory(builder)
        .callbacks(Arc::new(crate::callbacks::HttpCallbacks::new(settings.callbacks.secret.clone())?))
        .build()?;
    app.load_registered().await.context("cannot read the registered providers")?;
    Ok(Runtime { app: Arc::new(app), sims, resilient, events, alerter, completions, store: measured })
}

/// The alerter of `[alerts]` (its state shared through the store by the caller); the resilience seed's `alert_on_circuit_breaker_open` and
/// `max_consecutive_failures_before_alert` apply unless `[alerts.rules]` says otherwise.
fn alerter(settings: &Resolved, clock: Arc<SystemClock>) -> anyhow::Result<Alerter> {
    let mut rules = settings.alerts.rules();
    let handling = &settings.resilience.error_handling;
    if !handling.alert_on_circuit_breaker_open {
        rules.rules.entry(RuleName::BreakerOpen).or_insert(Rule { enabled: false, ..Rule::default() });
    }
    Ok(Alerter::new(rules, settings.alerts.build()?, clock, handling.max_consecutive_failures_before_alert))
}
