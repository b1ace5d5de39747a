use ohf_cloud_sim::SimConfig;

fn fast() -> SimConfig {
    SimConfig { launch_latency_ms: 300, shutdown_latency_ms: 200, ..SimConfig::default() }
}

mod in_memory {
    use std::sync::Arc;
    use std::time::Duration;

    use ohf_app::{CloudProvider, SystemClock};
    use ohf_cloud_sim::SimCloud;
    use ohf_domain::ProviderName;

    ohf_app::cloud_contract_tests!(
        || async {
            Arc::new(SimCloud::in_memory(ProviderName::new("sim-1").unwrap(), super::fast(), Arc::new(SystemClock)))
                as Arc<dyn CloudProvider>
        },
        ohf_domain::testing::template(10),
        Duration::from_secs(10)
    );
}

mod file_backed {
    use std::sync::Arc;
    use std::time::Duration;

    use ohf_app::{CloudProvider, SystemClock};
    use ohf_cloud_sim::SimCloud;
    use ohf_domain::ProviderName;

    ohf_app::cloud_contract_tests!(
        {
            let dir = tempfile::tempdir().unwrap();
            move || {
                let path = dir.path().join("sim.json");
                async move {
                    Arc::new(SimCloud::persistent(
                        ProviderName::new("sim-1").unwrap(),
                        super::fast(),
                        Arc::new(SystemClock),
                        path,
                    )) as Arc<dyn CloudProvider>
                }
            }
        },
        ohf_domain::testing::template(10),
        Duration::from_secs(10)
    );
}
