use std::sync::Arc;
use std::time::Duration;

use ohf_app::contract::cloud_contract;
use ohf_app::{CloudProvider, SystemClock};
use ohf_cloud_sim::{SimCloud, SimConfig};
use ohf_domain::ProviderName;

fn fast() -> SimConfig {
    SimConfig { launch_latency_ms: 300, shutdown_latency_ms: 200, ..SimConfig::default() }
}

#[tokio::test]
async fn in_memory_sim_passes_the_cloud_contract() {
    let make = || async {
        Arc::new(SimCloud::in_memory(ProviderName::new("sim-1").unwrap(), fast(), Arc::new(SystemClock)))
            as Arc<dyn CloudProvider>
    };
    cloud_contract(make, ohf_domain::testing::template(10), Duration::from_secs(10)).await;
}

#[tokio::test]
async fn file_backed_sim_passes_the_cloud_contract() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sim.json");
    let make = || {
        let path = path.clone();
        async move {
            Arc::new(SimCloud::persistent(ProviderName::new("sim-1").unwrap(), fast(), Arc::new(SystemClock), path))
                as Arc<dyn CloudProvider>
        }
    };
    cloud_contract(make, ohf_domain::testing::template(10), Duration::from_secs(10)).await;
}
