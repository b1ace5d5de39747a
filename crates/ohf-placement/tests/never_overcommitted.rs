//! No sequence of bookings, placements, forced placements and deletions leaves a venue that
//! never took a forced placement over its capacity on any day.

use ohf_placement::assess::Criteria;
use ohf_placement::ledger::{Ledger, Resource};
use ohf_placement::{Day, Demand, Hold, RouteInput, RouteOutcome, Scope, Subnet, Venue, Workload, route};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Route { machines: Vec<(u32, i64)>, force: bool, group: usize },
    Delete(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (prop::collection::vec((1_u32..6, 0_i64..20), 1..4), any::<bool>(), 0_usize..2)
            .prop_map(|(machines, force, group)| Op::Route { machines, force, group }),
        1 => (0_usize..64).prop_map(Op::Delete),
    ]
}

fn venues() -> Vec<Venue> {
    (0..4)
        .map(|i| {
            let mut v = Venue::unlimited(&format!("v{i}"), "env", "aws");
            v.groups = vec![format!("g{}", i % 2)];
            v.vcpus = Some(8 + 4 * i);
            v.memory_mib = Some(20_000);
            v.subnets = vec![
                Subnet { id: format!("s{i}a"), free_ips: Some(3) },
                Subnet { id: format!("s{i}b"), free_ips: Some(u64::from(i as u32 + 2)) },
            ];
            v
        })
        .collect()
}

proptest! {
    #[test]
    fn no_unforced_venue_is_ever_over_committed(ops in prop::collection::vec(op(), 1..40)) {
        let venues = venues();
        let mut holds: Vec<Hold> = Vec::new();
        for (n, op) in ops.into_iter().enumerate() {
            match op {
                Op::Delete(i) => {
                    if !holds.is_empty() {
                        let i = i % holds.len();
                        holds.remove(i);
                    }
                }
                Op::Route { machines, force, group } => {
                    let workloads: Vec<Workload> = machines
                        .iter()
                        .enumerate()
                        .map(|(k, (count, day))| Workload {
                            id: format!("{n}-{k}"),
                            name: format!("{n}-{k}"),
                            day: Day(*day),
                            demand: Demand {
                                instance_type: "t3.micro".into(),
                                count: *count,
                                vcpus: 2 * u64::from(*count),
                                memory_mib: 1024 * u64::from(*count),
                                spot: false,
                                disks: vec![],
                            },
                        })
                        .collect();
                    let scopes = if force {
                        vec![Scope { control_environment: None, infrastructure_groups: vec![format!("g{group}")] }]
                    } else {
                        vec![]
                    };
                    let criteria = Criteria { force, ..Criteria::default() };
                    // Every other decision sees the holds through a base ledger, as a process's
                    // cache gives them.
                    let layered = n % 2 == 0;
                    let base = layered.then(|| std::sync::Arc::new(Ledger::new(&holds)));
                    let outcome = route(&RouteInput {
                        venues: &venues,
                        holds: if layered { &[] } else { &holds },
                        workloads: &workloads,
                        criteria,
                        scopes: &scopes,
                        provider_rank: &[],
                        base,
                    });
                    if let RouteOutcome::Placed(placed) = outcome {
                        holds.extend(placed.into_iter().map(|p| p.hold));
                    }
                }
            }
            let ledger = Ledger::new(&holds);
            for v in venues.iter().filter(|v| !ledger.forced(&v.name)) {
                for day in 0..25 {
                    let cpu = ledger.held_on(&v.name, &Resource::Cpu, Day(day));
                    prop_assert!(cpu <= v.usable(v.vcpus.unwrap_or_default()), "{} cpu {} on day {}", v.name, cpu, day);
                    for s in &v.subnets {
                        let ips = ledger.held_on(&v.name, &Resource::Subnet(&s.id), Day(day));
                        prop_assert!(ips <= s.free_ips.unwrap_or_default() as i64, "{} {} ips {}", v.name, s.id, ips);
                    }
                }
            }
        }
    }
}
