//! Creations per second through the application, without venues (as before placement) and
//! with 50 venues (every request placed), on the memory store and the simulated cloud; then
//! with 10,000 bookings held (`cargo bench -p ohf-app --bench placement`, also run by
//! `cargo xtask bench`).

#![allow(clippy::unwrap_used)] // a benchmark fails by panicking

use std::sync::Arc;
use std::time::{Duration, Instant};

use ohf_app::commands::{RouteRequest, WorkloadSpec};
use ohf_app::memory::{MemoryStore, StaticCatalog};
use ohf_app::placement::RoutingSettings;
use ohf_app::{App, AppSettings, RequestMachines};
use ohf_cloud_sim::{SimCloud, SimConfig};
use ohf_domain::ProviderName;
use ohf_placement::{Subnet, Venue};

fn app(venues: Vec<Venue>) -> App {
    let sim = SimCloud::in_memory(
        ProviderName::new("sim-1").unwrap(),
        SimConfig { launch_latency_ms: 0, capacity_per_zone: 1_000_000, ..SimConfig::default() },
        Arc::new(ohf_app::SystemClock),
    );
    let mut templates = ohf_domain::testing::hf_templates();
    templates.truncate(1);
    let unlimited = ohf_domain::Template::from_json(&serde_json::json!({
        "templateId": "Bench", "maxNumber": -1, "imageId": "ami-1", "vmType": "m5.large"
    }))
    .unwrap();
    templates.push(unlimited);
    let settings =
        AppSettings { routing: RoutingSettings { venues, ..RoutingSettings::default() }, ..AppSettings::default() };
    App::builder(Arc::new(MemoryStore::new()), Arc::new(StaticCatalog(templates)))
        .provider(Arc::new(sim))
        .settings(settings)
        .build()
        .unwrap()
}

fn venues() -> Vec<Venue> {
    (0..50)
        .map(|i| {
            let mut v = Venue::unlimited(&format!("venue-{i:02}"), &format!("env-{}", i % 5), "sim-1");
            v.zone = Some(format!("sim-east-1{}", ['a', 'b', 'c'][i % 3]));
            v.vcpus = Some(1_000_000);
            v.memory_mib = Some(4_000_000_000);
            v.subnets = vec![Subnet { id: format!("subnet-{i}"), free_ips: Some(1_000_000) }];
            v
        })
        .collect()
}

async fn creations(app: &App, n: usize) -> f64 {
    let started = Instant::now();
    for _ in 0..n {
        app.execute(RequestMachines { template_id: "Bench".into(), count: 1, ..Default::default() }).await.unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

async fn book(app: &App, requests: usize) -> Duration {
    let started = Instant::now();
    for i in 0..requests {
        let workloads = (0..10)
            .map(|w| WorkloadSpec {
                name: Some(format!("r{i}-w{w}")),
                catalog_spec: Some("Bench".into()),
                ..WorkloadSpec::default()
            })
            .collect();
        app.execute(RouteRequest { workloads, requester: Some("bench".into()), ..RouteRequest::default() })
            .await
            .unwrap();
    }
    started.elapsed()
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let n = 500;
        let plain = creations(&app(Vec::new()), n).await;
        let placed_app = app(venues());
        let placed = creations(&placed_app, n).await;
        println!(
            "creations: {plain:.0}/s without venues, {placed:.0}/s with 50 venues ({:.0}% of the rate)",
            100.0 * placed / plain
        );
        let loaded = app(venues());
        let took = book(&loaded, 1000).await;
        let last_ms = book(&loaded, 1).await.as_secs_f64() * 1000.0;
        println!(
            "routing 1,000 requests of 10 workloads: {:.1} s; the next with 10,000 bookings held: {last_ms:.1} ms",
            took.as_secs_f64()
        );
        let with_bookings = creations(&loaded, 200).await;
        println!(
            "creations with 10,000 bookings held: {with_bookings:.0}/s ({:.0}% of the rate without venues)",
            100.0 * with_bookings / plain
        );
    });
}
