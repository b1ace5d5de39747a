//! The composition root: builds the application from resolved settings.

use std::sync::Arc;

use anyhow::Context;
use ohf_app::{App, CloudProvider, EventBus, RequestStore, SystemClock, UuidIds};
use ohf_cloud_aws::AwsProvider;
use ohf_cloud_sim::SimCloud;
use ohf_resilience::Resilient;
use ohf_store_sql::{PostgresStore, SqliteStore};

use crate::catalog::FileCatalog;
use crate::settings::{ProviderSpec, Resolved};

pub struct Runtime {
    pub app: App,
    pub sims: Vec<Arc<SimCloud>>,
    /// Every provider as the app calls it: behind its breaker, retries, deadlines and limits.
    pub resilient: Vec<Arc<Resilient>>,
}

pub async fn build(settings: &Resolved) -> anyhow::Result<Runtime> {
    let store: Arc<dyn RequestStore> = if settings.database_url.starts_with("sqlite:") {
        Arc::new(
            SqliteStore::open_url(&settings.database_url)
                .await
                .with_context(|| format!("cannot open the store at {}", settings.database_url))?,
        )
    } else {
        let store = PostgresStore::open(
            &settings.database_url,
            settings.database_schema.as_deref(),
            settings.database_max_connections,
        )
        .await
        .context("cannot open the postgres store")?;
        Arc::new(store)
    };
    let clock = Arc::new(SystemClock);
    let mut providers: Vec<Arc<dyn CloudProvider>> = Vec::new();
    let mut sims = Vec::new();
    for spec in &settings.providers {
        match spec {
            ProviderSpec::Sim { name, config, state_file } => {
                let sim =
                    Arc::new(SimCloud::persistent(name.clone(), config.clone(), clock.clone(), state_file.clone()));
                sims.push(sim.clone());
                providers.push(sim);
            }
            ProviderSpec::Aws { name, config } => {
                let mut config = config.clone();
                if settings.resilience.retry.enabled {
                    // ohf retries; the SDK's own retries would multiply with them.
                    config.request_attempts = 1;
                }
                let aws = AwsProvider::connect(name.clone(), &config)
                    .await
                    .map_err(|e| anyhow::anyhow!("provider '{name}': {e}"))?;
                providers.push(Arc::new(aws));
            }
        }
    }
    let bus = EventBus::default();
    let resilient: Vec<Arc<Resilient>> = providers
        .into_iter()
        .map(|p| {
            let mut config = settings.resilience.clone();
            // The client-side buckets are EC2's; the simulated cloud has its own throttling.
            config.rate_limit.enabled &= p.kind() == "aws";
            Arc::new(Resilient::new(p, config, store.clone(), clock.clone()).with_bus(bus.clone()))
        })
        .collect();
    let providers = resilient.iter().map(|r| r.clone() as Arc<dyn CloudProvider>).collect();
    let app = App::new(
        store,
        Arc::new(FileCatalog::new(settings.templates_file.clone())),
        providers,
        clock,
        Arc::new(UuidIds),
        bus,
        settings.app.clone(),
    )?;
    Ok(Runtime { app, sims, resilient })
}
