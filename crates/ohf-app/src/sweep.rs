//! The orphan sweep: machines of this cluster that no request accounts for are terminated.

use std::collections::HashMap;

use ohf_domain::{MachineId, RequestId, Template};

use crate::App;
use crate::ports::{DescribeQuery, tag_keys};

/// What one sweep found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Live machines of this cluster the providers reported.
    pub examined: usize,
    /// Machines terminated because no request holds them, with why.
    pub terminated: Vec<(MachineId, String)>,
    /// Provider resources no template needs any more (launch templates), deleted.
    pub pruned: Vec<String>,
    pub errors: Vec<String>,
}

impl App {
    /// Terminates machines tagged with this cluster that are older than `min_age_secs` and that
    /// no request accounts for: their request is unknown, or finished without them. Machines
    /// of a request still in progress are left to the reconcile step, which adopts them.
    pub async fn sweep_orphans(&self, min_age_secs: i64) -> SweepReport {
        let mut report = SweepReport::default();
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
        for provider in &self.providers() {
            if let Some(keep) = &keep {
                match provider.prune(keep, &self.settings.cluster).await {
                    Ok(deleted) => report.pruned.extend(deleted),
                    Err(e) => report.errors.push(format!("prune on {}: {e}", provider.name())),
                }
            }
            let query = DescribeQuery { cluster: Some(self.settings.cluster.clone()), ..Default::default() };
            let seen = match provider.describe(&query).await {
                Ok(seen) => seen,
                Err(e) => {
                    report.errors.push(format!("describe on {}: {e}", provider.name()));
                    continue;
                }
            };
            let live: Vec<_> = seen.into_iter().filter(|o| !o.status.is_going()).collect();
            report.examined += live.len();
            let ids: Vec<RequestId> = live.iter().filter_map(|o| o.request_id.clone()).collect();
            let requests = match self.store.get_many(&ids).await {
                Ok(list) => list.into_iter().map(|r| (r.id().clone(), r)).collect::<HashMap<_, _>>(),
                Err(e) => {
                    report.errors.push(e.to_string());
                    continue;
                }
            };
            let mut doomed = Vec::new();
            for o in &live {
                if o.launch_time.is_none_or(|t| now.secs_since(t) < min_age_secs) {
                    continue;
                }
                let why = match o.request_id.as_ref().and_then(|id| requests.get(id)) {
                    None => {
                        format!("its request {} is unknown", o.tags.get(tag_keys::REQUEST_ID).map_or("(none)", |s| s))
                    }
                    Some(r) if r.machines().iter().any(|m| m.id() == &o.id) => continue,
                    Some(r) if r.needs_work() => continue,
                    Some(r) => format!("its request {} finished without it", r.id()),
                };
                tracing::warn!(machine = %o.id, provider = %provider.name(), reason = %why, "terminating orphan");
                doomed.push((o.id.clone(), why));
            }
            if doomed.is_empty() {
                continue;
            }
            let ids: Vec<MachineId> = doomed.iter().map(|(id, _)| id.clone()).collect();
            match provider.terminate(&ids).await {
                Ok(()) => report.terminated.extend(doomed),
                Err(e) => report.errors.push(format!("terminate on {}: {e}", provider.name())),
            }
        }
        report
    }
}
