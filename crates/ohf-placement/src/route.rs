//! Routing a request: every workload placed on its best venue, or the whole request refused.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Day;
use crate::assess::{Assessment, Criteria, assess};
use crate::ledger::{Hold, Ledger, Resource};
use crate::venue::{Scope, Venue};
use crate::workload::{Demand, Workload};

/// What a routing decision is made from.
#[derive(Debug, Clone)]
pub struct RouteInput<'a> {
    /// Every venue known.
    pub venues: &'a [Venue],
    /// What is already held.
    pub holds: &'a [Hold],
    /// The request's workloads, placed in this order.
    pub workloads: &'a [Workload],
    /// Mode, strategies, lockout and force.
    pub criteria: Criteria,
    /// Where to look; everywhere when empty.
    pub scopes: &'a [Scope],
    /// Providers in the provider-strategy policy's order: it breaks ties among venues of
    /// equal score.
    pub provider_rank: &'a [String],
    /// Holds already counted in a ledger (a process's cache of what is held): `holds` come on
    /// top of it.
    pub base: Option<std::sync::Arc<Ledger>>,
}

/// Where one workload goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// The workload.
    pub workload: String,
    /// The venue.
    pub venue: String,
    /// The venue's provider.
    pub provider: String,
    /// The venue's environment.
    pub environment: String,
    /// The venue's infrastructure groups.
    pub groups: Vec<String>,
    /// The venue's zone.
    pub zone: Option<String>,
    /// The subnet chosen in it.
    pub subnet: Option<String>,
    /// The datastore of each disk.
    pub datastores: Vec<String>,
    /// The venue's hosting score.
    pub hosting_score: f64,
    /// Placed over capacity by force.
    pub forced: bool,
    /// What it holds from its day on.
    pub hold: Hold,
}

/// Why a workload could not be placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadRefusal {
    /// The workload.
    pub workload: String,
    /// Why, venue by venue.
    pub reason: String,
}

/// A routing decision: all placed, or refused as one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RouteOutcome {
    /// Every workload, in order.
    Placed(Vec<Placement>),
    /// The workloads that could not be placed (the others are refused with them).
    Rejected(Vec<WorkloadRefusal>),
}

/// Routes every workload of a request, each seeing the holds of the ones before it; all or
/// nothing.
pub fn route(input: &RouteInput<'_>) -> RouteOutcome {
    let candidates: Vec<&Venue> = input.venues.iter().filter(|v| v.in_scopes(input.scopes)).collect();
    // Each candidate's provider's place in the policy's order, found once.
    let ranks: Vec<usize> = candidates
        .iter()
        .map(|v| input.provider_rank.iter().position(|p| *p == v.provider).unwrap_or(usize::MAX))
        .collect();
    let mut ledger = match &input.base {
        Some(base) => Ledger::over(base.clone()),
        None => Ledger::default(),
    };
    for hold in input.holds {
        ledger.add(hold);
    }
    let mut placed = Vec::new();
    let mut refused = Vec::new();
    for workload in input.workloads {
        if candidates.is_empty() {
            refused.push(WorkloadRefusal {
                workload: workload.id.clone(),
                reason: "no hosting venue in the scopes".into(),
            });
            continue;
        }
        let plain = Criteria { force: false, ..input.criteria.clone() };
        let assessed = assess(&candidates, &ledger, workload, &plain);
        let best = best(&assessed, &ranks);
        let chosen = match best {
            Some(a) => Some((a.clone(), false)),
            None if input.criteria.force => {
                let forced = assess(&candidates, &ledger, workload, &input.criteria);
                forced
                    .iter()
                    .filter(|a| a.fit_for_purpose())
                    .max_by(|a, b| a.capacity_score.total_cmp(&b.capacity_score).then_with(|| b.venue.cmp(&a.venue)))
                    .map(|a| (a.clone(), true))
            }
            None => None,
        };
        match chosen {
            Some((a, forced)) => {
                let Some(venue) = candidates.iter().find(|v| v.name == a.venue) else { continue };
                let p = placement(venue, workload, &a, forced);
                ledger.add(&p.hold);
                placed.push(p);
            }
            None => refused.push(WorkloadRefusal { workload: workload.id.clone(), reason: refusal(&assessed) }),
        }
    }
    if refused.is_empty() { RouteOutcome::Placed(placed) } else { RouteOutcome::Rejected(refused) }
}

/// The highest score of the eligible assessments; among equals the provider the policy ranks
/// first (`ranks`, in the assessments' order), then the name.
fn best<'a>(assessed: &'a [Assessment], ranks: &[usize]) -> Option<&'a Assessment> {
    assessed
        .iter()
        .zip(ranks)
        .filter(|(a, _)| a.eligible())
        .min_by(|(a, rank_a), (b, rank_b)| {
            let score = if (a.hosting_score - b.hosting_score).abs() < 1e-9 {
                std::cmp::Ordering::Equal
            } else {
                b.hosting_score.total_cmp(&a.hosting_score)
            };
            score.then_with(|| rank_a.cmp(rank_b)).then_with(|| a.venue.cmp(&b.venue))
        })
        .map(|(a, _)| a)
}

fn refusal(assessed: &[Assessment]) -> String {
    let reasons: Vec<String> = assessed.iter().filter_map(Assessment::refusal).collect();
    if reasons.is_empty() { "no hosting venue fits".into() } else { reasons.join(" | ") }
}

fn placement(venue: &Venue, workload: &Workload, a: &Assessment, forced: bool) -> Placement {
    let demand = &workload.demand;
    let datastores: Vec<(String, u64)> =
        a.datastores.iter().zip(&demand.disks).map(|(name, disk)| (name.clone(), disk.size_gib)).collect();
    let full = venue.control.is_full();
    let hold = Hold {
        venue: venue.name.clone(),
        from: workload.day,
        until: None,
        vcpus: if full { demand.vcpus } else { 0 },
        memory_mib: if full { demand.memory_mib } else { 0 },
        subnet: a.subnet.clone(),
        ips: if full { demand.ips() } else { 0 },
        datastores,
        forced,
    };
    Placement {
        workload: workload.id.clone(),
        venue: venue.name.clone(),
        provider: venue.provider.clone(),
        environment: venue.environment.clone(),
        groups: venue.groups.clone(),
        zone: venue.zone.clone(),
        subnet: a.subnet.clone(),
        datastores: a.datastores.clone(),
        hosting_score: a.hosting_score,
        forced,
        hold,
    }
}

/// How many more machines of `one` (the demand of a single machine) fit in each venue from
/// `day` on; `None`: no limit ohf knows of (non-control venues, or no quota). A venue that
/// fails fit-for-purpose fits 0.
pub fn available(venues: &[Venue], holds: &[Hold], one: &Demand, day: Day) -> BTreeMap<String, Option<u64>> {
    available_in(venues, &Ledger::new(holds), one, day)
}

/// As [`available`], against a ledger already built (one for many templates).
pub fn available_in(venues: &[Venue], ledger: &Ledger, one: &Demand, day: Day) -> BTreeMap<String, Option<u64>> {
    let probe = Workload { id: String::new(), name: String::new(), day, demand: one.clone() };
    let mut out = BTreeMap::new();
    for venue in venues {
        let checks = assess(&[venue], ledger, &probe, &Criteria::default());
        if checks.first().is_some_and(|a| !a.fit_for_purpose()) {
            out.insert(venue.name.clone(), Some(0));
            continue;
        }
        if !venue.control.is_full() {
            out.insert(venue.name.clone(), None);
            continue;
        }
        let free = |capacity: Option<u64>, resource: Resource| {
            capacity.map(|c| (venue.usable(c) - ledger.peak(&venue.name, &resource, day)).max(0))
        };
        let mut limits: Vec<Option<u64>> = Vec::new();
        let per = |free: Option<i64>, each: u64| {
            free.map(|f| u64::try_from(f).unwrap_or(0).checked_div(each).unwrap_or(u64::MAX))
        };
        limits.push(per(free(venue.vcpus, Resource::Cpu), one.vcpus));
        limits.push(per(free(venue.memory_mib, Resource::Memory), one.memory_mib));
        if !venue.subnets.is_empty() {
            let subnets: Vec<Option<u64>> =
                venue.subnets.iter().map(|s| per(free(s.free_ips, Resource::Subnet(&s.id)), 1)).collect();
            limits.push(if subnets.contains(&None) { None } else { subnets.into_iter().flatten().max() });
        }
        if !venue.datastores.is_empty() {
            for disk in &one.disks {
                let stores = venue
                    .datastores
                    .iter()
                    .filter(|d| disk.volume_type.as_deref().is_none_or(|t| d.volume_type.eq_ignore_ascii_case(t)))
                    .filter_map(|d| per(free(Some(d.capacity_gib), Resource::Datastore(&d.name)), disk.size_gib))
                    .max();
                limits.push(Some(stores.unwrap_or(0)));
            }
        }
        out.insert(venue.name.clone(), limits.into_iter().flatten().min());
    }
    out
}
