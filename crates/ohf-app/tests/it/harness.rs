//! The application on in-memory adapters and a simulated cloud, with a hand-driven clock.

use std::sync::Arc;

use ohf_app::memory::{ManualClock, MemoryStore, SequentialIds, StaticCatalog};
use ohf_app::{App, AppSettings, CloudProvider, EventBus};
use ohf_cloud_sim::{SimCloud, SimConfig};
use ohf_domain::ProviderName;
use ohf_domain::testing::{T0, hf_templates as templates};

/// An application on in-memory adapters and a simulated cloud, with a hand-driven clock.
pub struct Harness {
    pub app: App,
    pub clock: Arc<ManualClock>,
    pub sim: Arc<SimCloud>,
    pub store: Arc<MemoryStore>,
}

pub fn harness(sim: SimConfig, settings: AppSettings) -> Harness {
    harness_with(sim, settings, |p| p)
}

/// As `harness`, with the provider wrapped by `wrap`.
pub fn harness_with(
    sim: SimConfig,
    settings: AppSettings,
    wrap: impl FnOnce(Arc<dyn CloudProvider>) -> Arc<dyn CloudProvider>,
) -> Harness {
    let clock = Arc::new(ManualClock::new(T0));
    let sim = Arc::new(SimCloud::in_memory(ProviderName::new("sim-1").unwrap(), sim, clock.clone()));
    let store = Arc::new(MemoryStore::new());
    let app = App::builder(store.clone(), Arc::new(StaticCatalog(templates())))
        .provider(wrap(sim.clone()))
        .clock(clock.clone())
        .ids(Arc::new(SequentialIds::default()))
        .bus(EventBus::default())
        .settings(settings)
        .build()
        .unwrap();
    Harness { app, clock, sim, store }
}
