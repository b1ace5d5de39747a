//! The reconcile step: look at what the store holds, ask each provider once what exists,
//! decide, store the decision, then make the cloud calls it asks for.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ohf_domain::request::{LaunchOrder, Release};
use ohf_domain::{
    CallbackSpec, MachineId, MachineObservation, MachineStatus, ProviderName, Request, RequestId, RequestKind, Tags,
};

use crate::App;
use crate::ports::{
    CloudError, CloudProvider, DescribeQuery, Fence, LaunchRequest, LaunchResult, OwnedMachine, Ownership, StoreError,
    tag_keys,
};

/// A machine a request asks to terminate: the provider holding it, the provision request of
/// this store that launched it (`None`: no request of this store holds it, so nothing proves
/// ohf owns it), and the request asking.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Doomed {
    pub provider: ProviderName,
    pub machine: MachineId,
    pub owner: Option<RequestId>,
    pub asker: RequestId,
}

impl Doomed {
    /// The machines `request` asks to terminate, each with the request that launched it.
    pub(crate) fn of(request: &Request, machines: Vec<(ProviderName, MachineId)>) -> Vec<Self> {
        machines
            .into_iter()
            .map(|(provider, machine)| {
                let owner = match request.kind() {
                    RequestKind::Provision => Some(request.id().clone()),
                    RequestKind::Return => request.holders().get(&machine).cloned(),
                };
                Self { provider, machine, owner, asker: request.id().clone() }
            })
            .collect()
    }
}

/// A termination the provider (or the app, for want of an owner) refused: who asked, which
/// machine, why.
pub(crate) type Refused = (RequestId, MachineId, String);

/// What one reconcile cycle did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Requests looked at.
    pub examined: usize,
    /// Requests whose state or machines changed.
    pub changed: usize,
    /// Describe calls made (one per provider and batch).
    pub describe_calls: usize,
    /// Launch calls made.
    pub launch_calls: usize,
    /// Terminate calls made.
    pub terminate_calls: usize,
    /// Requests another process changed first; they are picked up again next cycle.
    pub conflicts: usize,
    /// Callback tries made (delivered or not).
    pub callbacks: usize,
    /// What went wrong, one line each; the rest of the pass went on.
    pub errors: Vec<String>,
}

/// The longest one callback try may take.
pub const CALLBACK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

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
        use tracing::Instrument;
        let span = tracing::info_span!("reconcile", worker = worker.unwrap_or("-"), requests = requests.len());
        self.reconcile_in_span(requests, worker).instrument(span).await
    }

    async fn reconcile_in_span(&self, requests: Vec<Request>, worker: Option<&str>) -> ReconcileReport {
        use tracing::Instrument;
        let mut report = ReconcileReport::default();
        let mut requests: Vec<Request> = requests.into_iter().filter(Request::needs_work).collect();
        // Launches go out in this order: high priority first, the longest waiting first within one.
        requests.sort_by_key(|r| (r.effective_priority().rank(), r.updated_at()));
        report.examined = requests.len();
        if requests.is_empty() {
            return report;
        }

        let owner = match self.ownership().await {
            Ok(owner) => owner,
            Err(e) => {
                report.errors.push(e.to_string());
                return report;
            }
        };
        let mut observations = Vec::new();
        let mut described = Vec::new();
        for provider in &self.providers() {
            // A finished request that only owes a callback is not looked at in the cloud.
            let query = describe_query(requests.iter().filter(|r| r.needs_cloud_work()), provider.name());
            if query.machine_ids.is_empty() && query.request_ids.is_empty() {
                continue;
            }
            report.describe_calls += 1;
            match provider.describe(&query).await {
                Ok(found) => {
                    // A machine tagged for another cluster or installation is never ours to adopt.
                    observations.extend(found.into_iter().filter(|o| adoptable(&o.tags, &owner)));
                    described.push(provider.name().clone());
                }
                Err(e) => {
                    tracing::warn!(provider = %provider.name(), error = %e, "describe failed");
                    report.errors.push(format!("describe on {}: {e}", provider.name()));
                }
            }
        }

        let now = self.clock.now();
        let mut to_terminate: Vec<Doomed> = Vec::new();
        // What was seen, by request and by machine: each request is handed only its own.
        let mut by_request: HashMap<&RequestId, Vec<&MachineObservation>> = HashMap::new();
        let mut by_machine: HashMap<&MachineId, &MachineObservation> = HashMap::new();
        for o in &observations {
            if let Some(id) = &o.request_id {
                by_request.entry(id).or_default().push(o);
            }
            by_machine.insert(&o.id, o);
        }
        // Fleets and groups still filling are followed together after the loop, in one call
        // per provider (the provider looks at all of them at once where it can).
        let mut follows: Vec<(usize, LaunchOrder)> = Vec::new();
        for (i, request) in requests.iter_mut().enumerate().filter(|(_, r)| r.needs_cloud_work()) {
            let mut seen = by_request.get(request.id()).cloned().unwrap_or_default();
            for m in request.machines() {
                if let Some(o) = by_machine.get(m.id())
                    && !seen.iter().any(|s| std::ptr::eq(*s, *o))
                {
                    seen.push(o);
                }
            }
            // In the order the provider answered, as when every request was handed everything.
            seen.sort_by_key(|o| std::ptr::from_ref::<MachineObservation>(o) as usize);
            let decision = request.reconcile_seen(&seen, &described, now, &self.settings.policy);
            if request.uncommitted().is_empty() && decision.is_empty() {
                continue;
            }
            // One span per request that changes or calls the cloud: its id on every line below.
            let step = tracing::info_span!("request_step", request_id = %request.id());
            async {
                if !request.uncommitted().is_empty() {
                    report.changed += 1;
                    if !self.commit_or_note(request, worker, &mut report).await {
                        return;
                    }
                }
                to_terminate.extend(Doomed::of(request, decision.terminate));
                if let Some(release) = decision.release {
                    self.release(request, release, &owner, worker, &mut report).await;
                }
                match decision.launch {
                    Some(order) if order.following.is_some() => follows.push((i, order)),
                    Some(order) => self.launch(request, order, &owner, worker, &mut report).await,
                    None => {}
                }
            }
            .instrument(step)
            .await;
        }
        self.follow(&mut requests, follows, &owner, worker, &mut report).await;
        let refused = self.terminate(to_terminate, &owner, &mut report).await;
        for request in requests.iter_mut() {
            if self.record_refusals(request, &refused) {
                self.commit_or_note(request, worker, &mut report).await;
            }
        }
        // Callbacks last: a slow receiver never holds up the cycle's work in the cloud.
        self.deliver_callbacks(&mut requests, worker, &mut report).await;
        report
    }

    /// Tries every callback due on `requests`, all at once and each within
    /// [`CALLBACK_TIMEOUT`], and records each outcome on its request.
    async fn deliver_callbacks(&self, requests: &mut [Request], worker: Option<&str>, report: &mut ReconcileReport) {
        let now = self.clock.now();
        let mut tries = tokio::task::JoinSet::new();
        for (i, request) in requests.iter().enumerate() {
            let due = request.due_callbacks(now);
            if due.is_empty() {
                continue;
            }
            let url = CallbackSpec::of(request.metadata()).ok().flatten().map(|s| s.url).unwrap_or_default();
            for callback in due {
                let sender = self.callbacks.clone();
                let (request, url) = (request.clone(), url.clone());
                tries.spawn(async move {
                    let outcome = match sender {
                        None => Err("this process has no callback sender".to_owned()),
                        Some(sender) => {
                            tokio::time::timeout(CALLBACK_TIMEOUT, sender.post(&url, callback.event, &request))
                                .await
                                .unwrap_or_else(|_| Err(format!("no answer within {} s", CALLBACK_TIMEOUT.as_secs())))
                        }
                    };
                    (i, callback, url, outcome)
                });
            }
        }
        let mut touched = std::collections::BTreeSet::new();
        while let Some(done) = tries.join_next().await {
            let Ok((i, callback, url, outcome)) = done else { continue };
            report.callbacks += 1;
            match &outcome {
                Ok(()) => {
                    tracing::info!(request_id = %requests[i].id(), event = callback.event.as_str(), url, "callback delivered")
                }
                Err(e) => {
                    tracing::warn!(request_id = %requests[i].id(), event = callback.event.as_str(), url, error = %e, attempt = callback.attempts + 1, "callback not delivered")
                }
            }
            requests[i].record_callback(&callback, &url, outcome, self.clock.now());
            touched.insert(i);
        }
        for i in touched {
            self.commit_or_note(&mut requests[i], worker, report).await;
        }
    }

    /// Records on `request` the terminations it asked for that were refused; true when any.
    pub(crate) fn record_refusals(&self, request: &mut Request, refused: &[Refused]) -> bool {
        let now = self.clock.now();
        let mut any = false;
        let id = request.id().clone();
        for (asker, machine, reason) in refused.iter().filter(|(asker, ..)| *asker == id) {
            tracing::warn!(request_id = %asker, machine = %machine, reason = %reason, "termination refused: ohf does not provably own the machine");
            request.refuse_termination(machine, reason.clone(), now);
            any = true;
        }
        any
    }

    /// Makes launch `order` of `request` (already stored as started), records its outcome and
    /// stores it.
    pub(crate) async fn launch(
        &self,
        request: &mut Request,
        order: LaunchOrder,
        owner: &Ownership,
        worker: Option<&str>,
        report: &mut ReconcileReport,
    ) {
        let Some((provider, launch)) = self.launch_request(request, &order, owner, report).await else { return };
        report.launch_calls += 1;
        let outcome = provider.launch(&launch).await;
        self.record_launch(request, &order, provider.name(), outcome).await;
        self.commit_or_note(request, worker, report).await;
    }

    /// Follows the fleets and groups of `follows` (launch orders of `requests` by index), one
    /// call per provider, and records and stores each outcome.
    async fn follow(
        &self,
        requests: &mut [Request],
        follows: Vec<(usize, LaunchOrder)>,
        owner: &Ownership,
        worker: Option<&str>,
        report: &mut ReconcileReport,
    ) {
        use tracing::Instrument;
        type Batch = (Arc<dyn CloudProvider>, Vec<(usize, LaunchOrder)>, Vec<LaunchRequest>);
        let mut batches: Vec<Batch> = Vec::new();
        for (i, order) in follows {
            let Some((provider, launch)) = self.launch_request(&requests[i], &order, owner, report).await else {
                continue;
            };
            match batches.iter_mut().find(|(p, ..)| p.name() == provider.name()) {
                Some((_, orders, launches)) => {
                    orders.push((i, order));
                    launches.push(launch);
                }
                None => batches.push((provider, vec![(i, order)], vec![launch])),
            }
        }
        for (provider, orders, launches) in batches {
            report.launch_calls += 1;
            let outcomes = match provider.follow(&launches).await {
                Ok(list) if list.len() == launches.len() => list,
                Ok(list) => {
                    let e = CloudError::unanswered(provider.name(), list.len(), launches.len());
                    launches.iter().map(|_| Err(e.clone())).collect()
                }
                Err(e) => launches.iter().map(|_| Err(e.clone())).collect(),
            };
            for ((i, order), outcome) in orders.into_iter().zip(outcomes) {
                let request = &mut requests[i];
                let step = tracing::info_span!("request_step", request_id = %request.id());
                async {
                    self.record_launch(request, &order, provider.name(), outcome).await;
                    self.commit_or_note(request, worker, report).await;
                }
                .instrument(step)
                .await;
            }
        }
    }

    /// What launch `order` of `request` asks of its provider; `None` (noted in `report`) when
    /// the provider is no longer configured or the request has no template to launch.
    async fn launch_request(
        &self,
        request: &Request,
        order: &LaunchOrder,
        owner: &Ownership,
        report: &mut ReconcileReport,
    ) -> Option<(Arc<dyn CloudProvider>, LaunchRequest)> {
        let Some(provider) = self.provider(&order.provider) else {
            report.errors.push(format!("provider {} is no longer configured", order.provider));
            return None;
        };
        let template = request.launch_template()?;
        let zones = self.launch_zones(request).await;
        let launch = LaunchRequest {
            request_id: request.id().clone(),
            count: order.count,
            token: order.token.scoped(&owner.installation),
            tags: launch_tags(request, &template, provider.name(), owner),
            zones,
            following: order.following.clone(),
            started_at: order.started_at,
            priority: request.effective_priority(),
            template,
        };
        Some((provider, launch))
    }

    /// Records on `request` what launch `order` on `provider` came to, failing it over when the
    /// failure calls for another provider.
    async fn record_launch(
        &self,
        request: &mut Request,
        order: &LaunchOrder,
        provider: &ProviderName,
        outcome: Result<LaunchResult, CloudError>,
    ) {
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
                    let from = provider.to_string();
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
    }

    /// Stops the cloud request of a request that ended, and records it once done.
    async fn release(
        &self,
        request: &mut Request,
        release: Release,
        owner: &Ownership,
        worker: Option<&str>,
        report: &mut ReconcileReport,
    ) {
        let Some(provider) = self.provider(&release.provider) else {
            report.errors.push(format!("provider {} is no longer configured", release.provider));
            return;
        };
        match provider.release(&release.resource, request.id(), owner).await {
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

    /// Asks each provider to terminate its machines of `doomed`, in batches, each with the
    /// request that launched it; answers the refusals. A machine no request of this store
    /// launched is refused without a call.
    pub(crate) async fn terminate(
        &self,
        doomed: Vec<Doomed>,
        owner: &Ownership,
        report: &mut ReconcileReport,
    ) -> Vec<Refused> {
        let mut refused = Vec::new();
        // Per provider, each machine once (a return and its holder's cleanup may both ask for
        // it), with every request that asked.
        let mut by_provider: BTreeMap<ProviderName, BTreeMap<OwnedMachine, Vec<RequestId>>> = BTreeMap::new();
        for d in doomed {
            match d.owner {
                None => {
                    let why = "no request of this installation launched it; ohf leaves it alone".to_owned();
                    refused.push((d.asker, d.machine, why));
                }
                Some(request_id) => {
                    let machine = OwnedMachine { id: d.machine, request_id };
                    by_provider.entry(d.provider).or_default().entry(machine).or_default().push(d.asker);
                }
            }
        }
        for provider in &self.providers() {
            let Some(asked) = by_provider.remove(provider.name()) else { continue };
            let machines: Vec<OwnedMachine> = asked.keys().cloned().collect();
            for chunk in machines.chunks(BATCH) {
                report.terminate_calls += 1;
                match provider.terminate(chunk, owner).await {
                    Ok(refusals) => {
                        for r in refusals {
                            let askers = asked.iter().filter(|(m, _)| m.id == r.id).flat_map(|(_, a)| a);
                            refused.extend(askers.map(|a| (a.clone(), r.id.clone(), r.reason.clone())));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(provider = %provider.name(), error = %e, "terminate failed; retried next cycle");
                        report.errors.push(format!("terminate on {}: {e}", provider.name()));
                    }
                }
            }
        }
        refused
    }

    async fn commit_or_note(&self, request: &mut Request, worker: Option<&str>, report: &mut ReconcileReport) -> bool {
        // The fence is stamped when the write is made: a claim that ran out mid-step refuses it.
        let fence = worker.map(|w| Fence { worker: w.to_owned(), now: self.store_now() });
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
fn describe_query<'a>(requests: impl Iterator<Item = &'a Request>, provider: &ProviderName) -> DescribeQuery {
    let mut query = DescribeQuery::default();
    let mut asked: std::collections::HashSet<&MachineId> = std::collections::HashSet::new();
    for r in requests {
        // Machines of an attempt on a provider the request failed over from may still show up,
        // until that provider has answered a search made after the failover settled.
        if r.kind() == RequestKind::Provision && !r.state().is_terminal() && r.searched_on(provider) {
            query.request_ids.push(r.id().clone());
        }
        for m in r.machines() {
            if m.provider() == provider && m.status() != MachineStatus::Terminated && asked.insert(m.id()) {
                query.machine_ids.push(m.id().clone());
            }
        }
    }
    query
}

/// Whether a machine with `tags` may be adopted: it is not tagged for another cluster or
/// installation.
pub(crate) fn adoptable(tags: &std::collections::BTreeMap<String, String>, owner: &Ownership) -> bool {
    tags.get(tag_keys::CLUSTER).is_none_or(|c| *c == owner.cluster)
        && tags.get(tag_keys::INSTALLATION).is_none_or(|i| *i == owner.installation)
}

/// The template's tags, then the request's, then ohf's ownership tags, which win.
fn launch_tags(request: &Request, template: &ohf_domain::Template, provider: &ProviderName, owner: &Ownership) -> Tags {
    let ownership = Tags::new(
        [
            (tag_keys::REQUEST_ID, request.id().to_string()),
            (tag_keys::TEMPLATE_ID, template.id().to_string()),
            (tag_keys::PROVIDER, provider.to_string()),
            (tag_keys::CLUSTER, owner.cluster.clone()),
            (tag_keys::INSTALLATION, owner.installation.clone()),
            (tag_keys::NAME, format!("ohf-{}", request.id())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
    )
    .expect("ownership tags are within bounds");
    template.instance_tags().merged(request.tags()).merged(&ownership)
}
