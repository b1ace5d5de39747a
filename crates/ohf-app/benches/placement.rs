//! Creations per second through the application, without venues (as before placement) and
//! with 50 venues (every request placed), on the memory store and the simulated cloud; then
//! with 10,000 bookings held; then the same comparison on SQLite and, when
//! `OHF_TEST_DATABASE_URL` names one, Postgres, in alternating rounds on one store
//! (`cargo bench -p ohf-app --bench placement`, also run by `cargo xtask bench`).

#![allow(clippy::unwrap_used)] // a benchmark fails by panicking

use std::sync::Arc;
use std::time::{Duration, Instant};

use ohf_app::commands::{RouteRequest, WorkloadSpec};
use ohf_app::memory::{InstantCloud, MemoryStore, StaticCatalog};
use ohf_app::placement::RoutingSettings;
use ohf_app::{App, AppSettings, RequestMachines, RequestStore};
use ohf_cloud_sim::{SimCloud, SimConfig};
use ohf_domain::{ProviderName, Template};
use ohf_placement::{Subnet, Venue};

fn app(venues: Vec<Venue>) -> App {
    app_on(Arc::new(MemoryStore::new()), venues)
}

/// The application on `store` over a cloud that costs nothing (its figures are ohf's own,
/// not the simulation's, whose zones count every machine they run), with `venues`.
fn fast_app_on(store: Arc<dyn RequestStore>, venues: Vec<Venue>) -> App {
    let cloud = InstantCloud::new(ProviderName::new("sim-1").unwrap(), true);
    let settings =
        AppSettings { routing: RoutingSettings { venues, ..RoutingSettings::default() }, ..AppSettings::default() };
    App::builder(store, Arc::new(StaticCatalog(vec![bench_template()])))
        .provider(Arc::new(cloud))
        .settings(settings)
        .build()
        .unwrap()
}

fn bench_template() -> Template {
    Template::from_json(&serde_json::json!({
        "templateId": "Bench", "maxNumber": -1, "imageId": "ami-1", "vmType": "m5.large"
    }))
    .unwrap()
}

fn app_on(store: Arc<dyn RequestStore>, venues: Vec<Venue>) -> App {
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
    App::builder(store, Arc::new(StaticCatalog(templates))).provider(Arc::new(sim)).settings(settings).build().unwrap()
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

/// Creations per second from `tasks` concurrent callers, 10 machines each (as the
/// application-layer figures of `cargo bench -p ohf --bench app` count them).
async fn concurrent(app: &Arc<App>, n: usize, tasks: usize) -> f64 {
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let app = app.clone();
        handles.push(tokio::spawn(async move {
            for _ in 0..n / tasks {
                app.execute(RequestMachines { template_id: "Bench".into(), count: 10, ..Default::default() })
                    .await
                    .unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    (n / tasks * tasks) as f64 / started.elapsed().as_secs_f64()
}

/// Without venues against 50 venues on one store, seven alternating rounds each (the
/// machine's noise falls on both); the medians.
async fn compare_on(label: &str, store: Arc<dyn RequestStore>, tasks: usize) {
    let plain = Arc::new(fast_app_on(store.clone(), Vec::new()));
    let placed = Arc::new(fast_app_on(store, venues()));
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        without.push(concurrent(&plain, 600, tasks).await);
        with.push(concurrent(&placed, 600, tasks).await);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (without, with) = (median(without), median(with));
    let kept = 100.0 * with / without;
    let verdict = if kept >= 80.0 { "met" } else { "MISSED" };
    println!(
        "{label} ({tasks} callers, 10 machines each): creations {without:.0}/s without venues, {with:.0}/s with 50 venues ({kept:.0}% of the rate) [target: the engine costs < 20%: {verdict}]"
    );
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
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
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
        let dir = tempfile::tempdir().unwrap();
        let sqlite = ohf_store_sql::SqliteStore::open(&dir.path().join("placement.db")).await.unwrap();
        compare_on("sqlite", Arc::new(sqlite), 4).await;
        if let Ok(url) = std::env::var("OHF_TEST_DATABASE_URL") {
            let schema = format!("ohf_bench_placement_{}", std::process::id());
            let postgres = ohf_store_sql::PostgresStore::open(&url, Some(&schema), 16).await.unwrap();
            compare_on("postgres", Arc::new(postgres), 8).await;
            if let Ok(pool) = sqlx::PgPool::connect(&url).await {
                let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&pool).await;
            }
        }
    });
}
