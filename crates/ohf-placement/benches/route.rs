//! Time to place one routing request of 10 workloads across 50 venues with 10,000 bookings
//! held (`cargo bench -p ohf-placement`, also run by `cargo xtask bench`).

use std::time::{Duration, Instant};

use ohf_placement::assess::Criteria;
use ohf_placement::{Datastore, Day, Demand, DiskNeed, Hold, RouteInput, RouteOutcome, Subnet, Venue, Workload, route};

/// A small deterministic generator (no dependency for a benchmark's draws).
struct Draw(u64);

impl Draw {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below.max(1)
    }
}

fn venues() -> Vec<Venue> {
    (0..50)
        .map(|i| {
            let mut v = Venue::unlimited(&format!("venue-{i:02}"), &format!("env-{}", i % 5), "aws");
            v.groups = vec![format!("group-{}", i % 3)];
            v.zone = Some(format!("zone-{}", i % 3));
            v.vcpus = Some(100_000);
            v.memory_mib = Some(400_000_000);
            v.subnets = (0..4).map(|s| Subnet { id: format!("subnet-{i}-{s}"), free_ips: Some(50_000) }).collect();
            v.datastores = (0..3)
                .map(|d| Datastore {
                    name: format!("ds-{i}-{d}"),
                    volume_type: if d == 2 { "io2".into() } else { "gp3".into() },
                    tier: if d == 2 { 1 } else { 2 },
                    capacity_gib: 10_000_000,
                })
                .collect();
            v.on_demand_prices.insert("m5.large".into(), 0.096 + f64::from(i) * 0.001);
            v
        })
        .collect()
}

fn holds(venues: &[Venue], n: usize, draw: &mut Draw) -> Vec<Hold> {
    (0..n)
        .map(|_| {
            let v = &venues[draw.next(venues.len() as u64) as usize];
            let machines = 1 + draw.next(4);
            Hold {
                venue: v.name.clone(),
                from: Day(20_000 + draw.next(90) as i64),
                until: None,
                vcpus: 2 * machines,
                memory_mib: 8192 * machines,
                subnet: Some(v.subnets[draw.next(4) as usize].id.clone()),
                ips: machines,
                datastores: vec![(v.datastores[draw.next(3) as usize].name.clone(), 50 * machines)],
                forced: false,
            }
        })
        .collect()
}

fn workloads(draw: &mut Draw) -> Vec<Workload> {
    (0..10)
        .map(|i| {
            let machines = 1 + draw.next(3) as u32;
            Workload {
                id: format!("w{i}"),
                name: format!("w{i}"),
                day: Day(20_000 + draw.next(30) as i64),
                demand: Demand {
                    instance_type: "m5.large".into(),
                    count: machines,
                    vcpus: 2 * u64::from(machines),
                    memory_mib: 8192 * u64::from(machines),
                    spot: false,
                    disks: vec![DiskNeed {
                        size_gib: 50 * u64::from(machines),
                        volume_type: Some("gp3".into()),
                        pref_datastore: None,
                    }],
                },
            }
        })
        .collect()
}

fn main() {
    let mut draw = Draw(0x9e37_79b9_7f4a_7c15);
    let venues = venues();
    let held = holds(&venues, 10_000, &mut draw);
    let mut times: Vec<Duration> = Vec::new();
    for _ in 0..200 {
        let request = workloads(&mut draw);
        let started = Instant::now();
        let outcome = route(&RouteInput {
            venues: &venues,
            holds: &held,
            workloads: &request,
            criteria: Criteria::default(),
            scopes: &[],
            provider_rank: &[],
            base: None,
        });
        times.push(started.elapsed());
        assert!(matches!(outcome, RouteOutcome::Placed(_)), "the bench's venues have room");
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let started = Instant::now();
    for _ in 0..20 {
        std::hint::black_box(ohf_placement::Ledger::new(&held));
    }
    println!("placement: the ledger of 10,000 bookings: {:.2} ms", ms(started.elapsed()) / 20.0);
    println!(
        "placement: 10 workloads over 50 venues with 10,000 bookings: median {:.2} ms, p95 {:.2} ms, max {:.2} ms ({} runs)",
        ms(times[times.len() / 2]),
        ms(times[times.len() * 95 / 100]),
        ms(times[times.len() - 1]),
        times.len()
    );
}
