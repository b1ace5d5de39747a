//! The reconcile step: look at what the store holds, ask each provider once what exists,
//! decide, store the decision, then make the cloud calls it asks for.

use std::collections::BTreeSet;

use ohf_domain::request::{LaunchOrder, Release};
use ohf_domain::{MachineId, MachineStatus, ProviderName, Request, RequestId, RequestKind, Tags};

use crate::App;
use crate::ports::{DescribeQuery, Fence, LaunchRequest, LaunchResult, StoreError, tag_keys};

/// What one reconcile cycle did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    pub examined: usize,
    pub changed: usize,
    pub describe_calls: usize,
    pub launch_calls: usize,
    pub terminate_calls: usize,
    /// Requests another process changed first; they are picked up again next cycle.
    pub conflicts: usize,
    pub errors: Vec<String>,
}

/// EC2 takes at most 1000 instance ids per call; ohf holds every provider to that.
const BATCH: usize = 1000;

impl App {
    /// One reconcile cycle over the requests of `scope`, or every request with work left.
    /// Safe to run again at any moment, and from several processes at once.
    pub async fn reconcile(&self, scope: Option<&[RequestId]>) -> ReconcileReport {
        match self.store.needing_work(scope).await {
            Ok(list) => self.reconcile_requests(list, None).await,
            Err(e) => ReconcileReport { errors: vec![e.to_string()], ..ReconcileReport::default() },
        }
    }

    /// One reconcile cycle over requests `worker` has claimed; every write is fenced by the claim.
    pub async fn reconcile_claimed(&self, requests: Vec<Request>, worker: &str) -> ReconcileReport {
        self.reconcile_requests(requests, Some(worker)).await
    }

    async fn reconcile_requests(&self, requests: Vec<Request>, worker: Option<&str>) -> ReconcileReport {
        let mut report = ReconcileReport::default();
        let mut requests: Vec<Request> = requests.into_iter().filter(Request::needs_work).collect();
        report.examined = requests.len();
        if requests.is_empty() {
            return report;
        }

        let mut observations = Vec::new();
        let mut described = Vec::new();
        for provider in &self.providers() {
            let query = describe_query(&requests, provider.name());
            if query.machine_ids.is_empty() && query.request_ids.is_empty() {
                continue;
            }
            report.describe_calls += 1;
            match provider.describe(&query).await {
                Ok(found) => {
                    // A machine tagged for another installation is never ours to adopt.
                    let cluster = &self.settings.cluster;
                    observations.extend(
                        found.into_iter().filter(|o| o.tags.get(tag_keys::CLUSTER).is_none_or(|c| c == cluster)),
                    );
                    described.push(provider.name().clone());
                }
                Err(e) => {
                    tracing::warn!(provider = %provider.name(), error = %e, "describe failed");
                    report.errors.push(format!("describe on {}: {e}", provider.name()));
                }
            }
        }

        let now = self.clock.now();
        let mut to_terminate: BTreeSet<(ProviderName, MachineId)> = BTreeSet::new();
        for request in requests.iter_mut() {
            let decision = request.reconcile(&observations, &described, now, &self.settings.policy);
            if request.uncommitted().is_empty() && decision.is_empty() {
                continue;
            }
            if !request.uncommitted().is_empty() {
                report.changed += 1;
                if !self.commit_or_note(request, worker, &mut report).await {
                    continue;
                }
            }
            to_terminate.extend(decision.terminate);
            if let Some(release) = decision.release {
                self.release(request, release, worker, &mut report).await;
            }
            if let Some(order) = decision.launch {
                self.launch(request, order, worker, &mut report).await;
            }
        }
        self.terminate(&to_terminate, &mut report).await;
        report
    }

    /// Makes launch `order` of `request` (already stored as started), records its outcome and
    /// stores it.
    pub(crate) async fn launch(
        &self,
        request: &mut Request,
        order: LaunchOrder,
        worker: Option<&str>,
        report: &mut ReconcileReport,
    ) {
        let Some(provider) = self.provider(&order.provider) else {
            report.errors.push(format!("provider {} is no longer configured", order.provider));
            return;
        };
        let Some(template) = request.template().cloned() else { return };
        let launch = LaunchRequest {
            request_id: request.id().clone(),
            count: order.count,
            token: order.token,
            tags: launch_tags(request, &template, provider.name(), &self.settings.cluster),
            zones: request.zones().to_vec(),
            following: order.following,
            started_at: order.started_at,
            template,
        };
        report.launch_calls += 1;
        let outcome = provider.launch(&launch).await;
        let now = self.clock.now();
        match outcome {
            Ok(LaunchResult { machines, filling: Some(resource), .. }) => {
                tracing::debug!(request_id = %request.id(), attempt = order.attempt, %resource, held = machines.len(), "filling");
                request.record_filling(order.attempt, resource, machines, now);
            }
            Ok(result) => {
                tracing::info!(request_id = %request.id(), attempt = order.attempt, launched = result.machines.len(), "launched");
                let shortfall = result.shortfall.map(|e| e.to_string());
                request.record_launch(order.attempt, result.machines, shortfall, now);
            }
            Err(e) => {
                tracing::warn!(request_id = %request.id(), attempt = order.attempt, error = %e, "launch failed");
                let target = self.failover_target(request, &e).await;
                request.record_launch_failure(
                    order.attempt,
                    e.code,
                    e.message,
                    e.kind.is_retryable(),
                    now,
                    &self.settings.policy,
                );
                if let Some((to, reason)) = target {
                    let from = provider.name().to_string();
                    if request.fail_over(to.clone(), reason.clone(), now) {
                        tracing::warn!(request_id = %request.id(), %from, %to, "failing over");
                        self.bus.publish_system(crate::SystemEvent::ProviderFailover {
                            request_id: request.id().to_string(),
                            from,
                            to: to.to_string(),
                            reason,
                            at: now,
                        });
                    }
                }
            }
        }
        self.commit_or_note(request, worker, report).await;
    }

    /// Stops the cloud request of a request that ended, and records it once done.
    async fn release(
        &self,
        request: &mut Request,
        release: Release,
        worker: Option<&str>,
        report: &mut ReconcileReport,
    ) {
        let Some(provider) = self.provider(&release.provider) else {
            report.errors.push(format!("provider {} is no longer configured", release.provider));
            return;
        };
        match provider.release(&release.resource).await {
            Ok(()) => {
                tracing::info!(request_id = %request.id(), resource = %release.resource, "released");
                request.record_release(release.attempt, release.resource, self.clock.now());
                self.commit_or_note(request, worker, report).await;
            }
            Err(e) => {
                tracing::warn!(request_id = %request.id(), error = %e, "release failed; retried next cycle");
                report.errors.push(format!("release on {}: {e}", provider.name()));
            }
        }
    }

    /// Asks each provider to terminate its machines of `machines`, in batches.
    pub(crate) async fn terminate(&self, machines: &BTreeSet<(ProviderName, MachineId)>, report: &mut ReconcileReport) {
        for provider in &self.providers() {
            let ids: Vec<MachineId> =
                machines.iter().filter(|(p, _)| p == provider.name()).map(|(_, id)| id.clone()).collect();
            for chunk in ids.chunks(BATCH) {
                report.terminate_calls += 1;
                if let Err(e) = provider.terminate(chunk).await {
                    tracing::warn!(provider = %provider.name(), error = %e, "terminate failed; retried next cycle");
                    report.errors.push(format!("terminate on {}: {e}", provider.name()));
                }
            }
        }
    }

    async fn commit_or_note(&self, request: &mut Request, worker: Option<&str>, report: &mut ReconcileReport) -> bool {
        // The fence is stamped when the write is made: a claim that ran out mid-step refuses it.
        let fence = worker.map(|w| Fence { worker: w.to_owned(), now: self.clock.now() });
        match self.commit(&mut [request], fence.as_ref()).await {
            Ok(()) => true,
            Err(StoreError::Conflict { .. }) => {
                report.conflicts += 1;
                false
            }
            Err(e) => {
                report.errors.push(e.to_string());
                false
            }
        }
    }
}

/// Everything of `requests` that `provider` should report on, as one query.
fn describe_query(requests: &[Request], provider: &ProviderName) -> DescribeQuery {
    let mut query = DescribeQuery::default();
    for r in requests {
        // Machines of an attempt on a provider the request failed over from may still show up.
        let launched_here = r.provider() == Some(provider) || r.providers_tried().contains(provider);
        if r.kind() == RequestKind::Provision && !r.state().is_terminal() && launched_here {
            query.request_ids.push(r.id().clone());
        }
        for m in r.machines() {
            if m.provider() == provider
                && m.status() != MachineStatus::Terminated
                && !query.machine_ids.contains(m.id())
            {
                query.machine_ids.push(m.id().clone());
            }
        }
    }
    query
}

/// The template's tags, then the request's, then ohf's ownership tags, which win.
fn launch_tags(request: &Request, template: &ohf_domain::Template, provider: &ProviderName, cluster: &str) -> Tags {
    let ownership = Tags::new(
        [
            (tag_keys::REQUEST_ID, request.id().to_string()),
            (tag_keys::TEMPLATE_ID, template.id().to_string()),
            (tag_keys::PROVIDER, provider.to_string()),
            (tag_keys::CLUSTER, cluster.to_owned()),
            (tag_keys::NAME, format!("ohf-{}", request.id())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
    )
    .expect("ownership tags are within bounds");
    template.instance_tags().merged(request.tags()).merged(&ownership)
}
