//! The orphan sweep: machines this installation launched that no request accounts for are
//! terminated, within guards that keep a store which knows too little from terminating much.

use std::collections::HashMap;

use ohf_domain::{MachineId, ProviderName, RequestId, Template};

use crate::App;
use crate::ports::{DescribeQuery, OwnedMachine, tag_keys};

/// How a sweep may act.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepOptions {
    /// Machines younger than this are left alone (a launch may not be recorded yet).
    pub min_age_secs: i64,
    /// List what would be terminated; terminate nothing.
    pub dry_run: bool,
    /// Most machines one sweep terminates; more orphans than this and it terminates none.
    pub max_terminations: usize,
    /// Most orphans, as a percentage of this installation's live machines, that a sweep
    /// believes; a larger share means the store is missing requests (a restored backup, a
    /// deleted database), and the sweep terminates none.
    pub max_share_percent: u32,
}

impl Default for SweepOptions {
    fn default() -> Self {
        Self { min_age_secs: 600, dry_run: false, max_terminations: 20, max_share_percent: 50 }
    }
}

/// What one sweep found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Live machines of this installation the providers reported.
    pub examined: usize,
    /// Live machines of the cluster that another installation (store) launched: never touched.
    pub foreign: usize,
    /// Machines no request holds, with why: terminated unless this was a dry run or a guard
    /// held.
    pub orphans: Vec<(MachineId, String)>,
    /// Machines terminated, with why.
    pub terminated: Vec<(MachineId, String)>,
    /// The guard that stopped the sweep from terminating anything, when one did.
    pub refused: Option<String>,
    /// Nothing was terminated: the orphans were only listed.
    pub dry_run: bool,
    /// Provider resources no template needs any more (launch templates), deleted.
    pub pruned: Vec<String>,
    /// What went wrong, one line each.
    pub errors: Vec<String>,
}

impl App {
    /// Finds the machines tagged with this cluster *and this installation* that are older than
    /// `min_age_secs` and that no request accounts for (their request is unknown, or finished
    /// without them), and terminates them unless `dry_run`, more than `max_terminations` were
    /// found, or they are more than `max_share_percent` of the installation's live machines.
    /// Machines of a request still in progress are left to the reconcile step, which adopts them.
    pub async fn sweep_orphans(&self, options: &SweepOptions) -> SweepReport {
        let mut report = SweepReport { dry_run: options.dry_run, ..SweepReport::default() };
        let owner = match self.ownership().await {
            Ok(owner) => owner,
            Err(e) => {
                report.errors.push(e.to_string());
                return report;
            }
        };
        let now = self.clock.now();
        // Templates in use: the catalog's, and the versions active requests were made with.
        let keep: Option<Vec<Template>> = match (self.catalog.templates().await, self.store.needing_work(None).await) {
            (Ok(mut keep), Ok(active)) => {
                keep.extend(active.iter().filter_map(|r| r.template().cloned()));
                Some(keep)
            }
            (Err(e), _) => {
                report.errors.push(format!("templates: {e}"));
                None
            }
            (_, Err(e)) => {
                report.errors.push(e.to_string());
                None
            }
        };
        let mut doomed: Vec<(ProviderName, OwnedMachine, String)> = Vec::new();
        for provider in &self.providers() {
            if let Some(keep) = &keep
                && !options.dry_run
            {
                match provider.prune(keep, &owner).await {
                    Ok(deleted) => report.pruned.extend(deleted),
                    Err(e) => report.errors.push(format!("prune on {}: {e}", provider.name())),
                }
            }
            let query = DescribeQuery { cluster: Some(owner.cluster.clone()), ..Default::default() };
            let seen = match provider.describe(&query).await {
                Ok(seen) => seen,
                Err(e) => {
                    report.errors.push(format!("describe on {}: {e}", provider.name()));
                    continue;
                }
            };
            let (live, foreign): (Vec<_>, Vec<_>) = seen
                .into_iter()
                .filter(|o| !o.status.is_going())
                .partition(|o| o.tags.get(tag_keys::INSTALLATION) == Some(&owner.installation));
            report.foreign += foreign.len();
            report.examined += live.len();
            let ids: Vec<RequestId> = live.iter().filter_map(|o| o.request_id.clone()).collect();
            let requests = match self.store.get_many(&ids).await {
                Ok(list) => list.into_iter().map(|r| (r.id().clone(), r)).collect::<HashMap<_, _>>(),
                Err(e) => {
                    report.errors.push(e.to_string());
                    continue;
                }
            };
            for o in &live {
                // Only a machine tagged with its request can be proven ours.
                let Some(request_id) = o.request_id.clone() else { continue };
                if o.launch_time.is_none_or(|t| now.secs_since(t) < options.min_age_secs) {
                    continue;
                }
                let why = match requests.get(&request_id) {
                    None => format!("its request {request_id} is unknown to this store"),
                    Some(r) if r.machines().iter().any(|m| m.id() == &o.id) => continue,
                    Some(r) if r.needs_work() => continue,
                    Some(r) => format!("its request {} finished without it", r.id()),
                };
                let machine = OwnedMachine { id: o.id.clone(), request_id };
                doomed.push((provider.name().clone(), machine, why));
            }
        }
        report.orphans = doomed.iter().map(|(_, m, why)| (m.id.clone(), why.clone())).collect();
        if doomed.is_empty() {
            return report;
        }
        let share = doomed.len() * 100 / report.examined.max(1);
        if doomed.len() > options.max_terminations {
            report.refused = Some(format!(
                "{} machines look orphaned, more than the {} one sweep may terminate; nothing was terminated \
                 (check that this store is the one that launched them, then raise the cap)",
                doomed.len(),
                options.max_terminations
            ));
        } else if doomed.len() > 1 && share > options.max_share_percent as usize {
            report.refused = Some(format!(
                "{} of {} live machines ({share} %) look orphaned, more than {} %: this store seems to be missing \
                 requests (a restored backup, a replaced database); nothing was terminated",
                doomed.len(),
                report.examined,
                options.max_share_percent
            ));
        }
        if let Some(why) = &report.refused {
            tracing::error!(orphans = doomed.len(), examined = report.examined, reason = %why, "orphan sweep refused");
            return report;
        }
        for (id, why) in &report.orphans {
            if options.dry_run {
                tracing::info!(machine = %id, reason = %why, "orphan (dry run: not terminated)");
            } else {
                tracing::warn!(machine = %id, reason = %why, "terminating orphan");
            }
        }
        if options.dry_run {
            return report;
        }
        for provider in &self.providers() {
            let mine: Vec<&(ProviderName, OwnedMachine, String)> =
                doomed.iter().filter(|(p, ..)| p == provider.name()).collect();
            if mine.is_empty() {
                continue;
            }
            let machines: Vec<OwnedMachine> = mine.iter().map(|(_, m, _)| m.clone()).collect();
            match provider.terminate(&machines, &owner).await {
                Ok(refusals) => {
                    for (_, m, why) in mine {
                        match refusals.iter().find(|r| r.id == m.id) {
                            Some(r) => report.errors.push(format!("{} left alone: {}", m.id, r.reason)),
                            None => report.terminated.push((m.id.clone(), why.clone())),
                        }
                    }
                }
                Err(e) => report.errors.push(format!("terminate on {}: {e}", provider.name())),
            }
        }
        report
    }
}
