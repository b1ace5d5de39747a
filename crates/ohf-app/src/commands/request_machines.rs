//! Provision machines of a template.

use std::collections::BTreeMap;

use ohf_domain::limits;
use ohf_domain::{
    DomainError, MachineCount, PriceType, Priority, ProvisionSpec, Request, RequestId, RequestKind, Tags, Template,
    TimeoutSecs,
};
use serde_json::Value;

use crate::cqrs::{Handler, message};
use crate::lifecycle::ReconcileReport;
use crate::ports::{CloudErrorKind, CloudProvider};
use crate::ports::{Limits, StoreError, Usage};
use crate::{App, AppError};

/// Provision `count` machines of a template. Fields are raw input; the handler validates
/// them, stores the request and makes its first launch within `answer_within`.
#[derive(Debug, Clone, Default)]
pub struct RequestMachines {
    /// The template to launch.
    pub template_id: String,
    /// How many machines (1 to the configured maximum).
    pub count: i64,
    /// The caller's id for the request: the same id again answers the same request.
    pub request_id: Option<String>,
    /// Seconds the request may take; the configured default when absent.
    pub timeout: Option<i64>,
    /// Tags for the machines, over the template's.
    pub tags: BTreeMap<String, String>,
    /// The caller's notes, kept with the request.
    pub metadata: BTreeMap<String, Value>,
    /// low, normal or high.
    pub priority: Option<String>,
    /// Availability zones the machines should be placed in.
    pub zones: Vec<String>,
    /// The provider to launch on; the strategy chooses when absent.
    pub provider: Option<String>,
    /// Who asks (a token's name, the OS user); `__Unknown__` is refused.
    pub requester: Option<String>,
}

message!(command RequestMachines => Request);

impl Handler<RequestMachines> for App {
    /// Validates and stores a provision request, then makes its first launch. A request the
    /// rules refuse is answered with the refusal and kept as REJECTED, so its history and the
    /// figures see it.
    async fn handle(&self, cmd: RequestMachines) -> Result<Request, AppError> {
        let asked = Asked {
            kind: RequestKind::Provision,
            template_id: Some(cmd.template_id.clone()),
            count: cmd.count,
            requester: cmd.requester.clone(),
        };
        let outcome = self.admit(cmd).await;
        self.keep_if_rejected(asked, outcome).await
    }
}

/// What a refused request asked for, as it is kept.
pub(crate) struct Asked {
    pub kind: RequestKind,
    pub template_id: Option<String>,
    pub count: i64,
    pub requester: Option<String>,
}

impl App {
    /// Passes `outcome` on; a refusal by the rules (not a duplicate id or a request in the way)
    /// is also stored as a REJECTED request so its history and the figures see it. A store that
    /// fails to keep it is logged, and the refusal is the answer either way.
    pub(crate) async fn keep_if_rejected(
        &self,
        asked: Asked,
        outcome: Result<Request, AppError>,
    ) -> Result<Request, AppError> {
        let Err(AppError::Domain(e)) = &outcome else { return outcome };
        if matches!(
            e,
            DomainError::DuplicateRequest { .. }
                | DomainError::RequestNotFound { .. }
                | DomainError::IllegalTransition { .. }
        ) {
            return outcome;
        }
        let template = match &asked.template_id {
            Some(t) => self.template(t).await.ok(),
            None => None,
        };
        let requester = ohf_domain::check_requester(asked.requester.as_deref()).ok().flatten();
        let count = u32::try_from(asked.count).unwrap_or(0);
        let refusal = format!("{}: {e}", e.code().as_str());
        let id = self.ids.next(asked.kind);
        let mut record =
            Request::rejected((id.clone(), asked.kind), template, count, requester.clone(), refusal, self.clock.now());
        match self.commit_as(&mut [&mut record], requester.as_deref()).await {
            Ok(()) => tracing::info!(request_id = %id, code = e.code().as_str(), "request rejected and kept"),
            Err(store) => tracing::warn!(error = %store, "the rejected request could not be kept"),
        }
        outcome
    }

    /// Validates and stores a provision request, then makes its first launch.
    async fn admit(&self, cmd: RequestMachines) -> Result<Request, AppError> {
        let deadline = tokio::time::Instant::now() + self.settings.answer_within;
        let template = self.template(&cmd.template_id).await?;
        let count = MachineCount::new(cmd.count, self.settings.max_machines_per_request)?;
        let timeout = cmd.timeout.map(TimeoutSecs::new).transpose()?.unwrap_or(self.settings.default_timeout);
        let tags = Tags::new(cmd.tags)?;
        let merged = template.instance_tags().merged(&tags).iter().count();
        if merged > limits::MAX_USER_TAGS {
            return Err(DomainError::validation(
                "tags",
                format!(
                    "the template's and the request's tags come to {merged}; at most {} (AWS allows {} per resource and ohf adds {} of its own)",
                    limits::MAX_USER_TAGS,
                    limits::AWS_TAGS_PER_RESOURCE,
                    limits::OWN_TAGS
                ),
            )
            .into());
        }
        let metadata_bytes = serde_json::to_string(&cmd.metadata).map_or(usize::MAX, |s| s.len());
        if metadata_bytes > limits::MAX_METADATA_BYTES {
            return Err(DomainError::validation(
                "metadata",
                format!("{metadata_bytes} bytes as JSON; at most {}", limits::MAX_METADATA_BYTES),
            )
            .into());
        }
        // A callback the caller asks for must be deliverable: its URL and states are checked now.
        ohf_domain::CallbackSpec::of(&cmd.metadata)?;
        if ohf_domain::spot_price_limit(&cmd.metadata)?.is_some() && template.price_type() == PriceType::Ondemand {
            return Err(DomainError::validation(
                format!("metadata.{}", ohf_domain::MAX_SPOT_PRICE_KEY),
                format!(
                    "template {} launches on-demand machines only; a spot price limit does not apply",
                    template.id()
                ),
            )
            .into());
        }
        let requester = ohf_domain::check_requester(cmd.requester.as_deref())?;
        let priority = cmd.priority.as_deref().map(str::parse::<Priority>).transpose()?.unwrap_or_default();
        let client_id = cmd.request_id.map(RequestId::new).transpose()?;

        if let Some(id) = &client_id
            && let Some(existing) = self.store.get(id).await?
        {
            let same = existing.kind() == RequestKind::Provision
                && existing.template().map(Template::id) == Some(template.id())
                && existing.count() == count.get();
            return if same {
                Ok(existing)
            } else {
                Err(DomainError::DuplicateRequest { request_id: id.to_string() }.into())
            };
        }

        // With venues configured, the placement decides the provider and zone, and holds
        // the capacity until the request holds no machines.
        let placed = if cmd.provider.is_none() && cmd.zones.is_empty() && self.places_requests() {
            let id = client_id.clone().unwrap_or_else(|| self.ids.next(RequestKind::Provision));
            Some((id.clone(), self.place_request(id.as_str(), &template, count.get(), requester.as_deref()).await?))
        } else {
            None
        };
        let (asked, zones) = match &placed {
            Some((_, (p, _))) => (Some(p.provider.clone()), p.zone.clone().into_iter().collect()),
            None => (cmd.provider.clone(), cmd.zones.clone()),
        };
        let (placed_id, hold) = match placed {
            Some((id, (_, hold))) => (Some(id), Some(hold)),
            None => (None, None),
        };
        let also = hold.as_ref().map(|h| (h.key.as_str(), h.value.as_str()));
        let admitted = async {
            let provider = self.choose_provider(&template, asked.as_deref()).await?;
            provider.check_template(&template).await.map_err(|e| DomainError::ProviderIncompatible {
                template_id: template.id().to_string(),
                provider: provider.name().to_string(),
                reason: e.message,
            })?;
            // Zones the caller names must be reachable; the placement's own choice is.
            if placed_id.is_none() && !zones.is_empty() {
                match tokio::time::timeout_at(deadline, provider.check_zones(&template, &zones)).await {
                    Ok(Err(e)) if e.kind == CloudErrorKind::Validation => {
                        return Err(DomainError::validation("placement.availabilityZones", e.message).into());
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(provider = %provider.name(), error = %e, "zones not checked; checked at launch")
                    }
                    Err(_) => {
                        tracing::warn!(provider = %provider.name(), "zones not checked in time; checked at launch")
                    }
                    Ok(Ok(())) => {}
                }
            }
            self.check_limits(&template, count.get()).await?;
            // A provider too slow to say its capacity does not hold the answer up: a shortage
            // shows at launch.
            let capacity = match tokio::time::timeout_at(deadline, provider.capacity(&template)).await {
                Ok(answer) => {
                    answer.map_err(|error| AppError::Cloud { provider: provider.name().to_string(), error })?
                }
                Err(_) => {
                    tracing::warn!(provider = %provider.name(), "capacity not known in time; checked at launch");
                    None
                }
            };
            if let Some(cap) = capacity
                && cap.available < count.get()
            {
                return Err(DomainError::InsufficientCapacity {
                    requested: count.get(),
                    available: cap.available,
                    template_id: None,
                    instance_type: Some(cap.instance_type),
                    region: cap.region,
                }
                .into());
            }

            let id = placed_id.clone().or(client_id).unwrap_or_else(|| self.ids.next(RequestKind::Provision));
            let spec = ProvisionSpec {
                id: id.clone(),
                template,
                count,
                timeout,
                tags,
                metadata: cmd.metadata.clone(),
                priority,
                requester,
                zones,
                provider: provider.name().clone(),
            };
            let now = self.clock.now();
            let mut request = Request::provision(spec, now);
            let asker = request.requester().map(str::to_owned);
            // A new request's first step needs no look at the cloud (nothing of it exists yet):
            // it is decided here and stored with the request, and the launch follows at once.
            let first = request.reconcile(&[], &[], now, &self.settings.policy);
            // The limits again, in the transaction that inserts the request: concurrent creations
            // never exceed them between them.
            let limits = self.limits(request.template());
            request.attribute_to(asker.as_deref());
            // A placed request's hold goes into the store with it, in one transaction.
            match self.commit_new(&mut request, &limits, also).await {
                Ok(None) => {}
                Ok(Some(usage)) => return Err(over_limit(&limits, usage, count.get()).into()),
                // Another caller created the same client id a moment ago: answer with theirs.
                Err(StoreError::Conflict { .. }) => {
                    let theirs = self.store.get(&id).await?;
                    let theirs = theirs.ok_or_else(|| DomainError::DuplicateRequest { request_id: id.to_string() })?;
                    return Ok((theirs, None, id, false));
                }
                Err(e) => return Err(e.into()),
            }
            Ok::<_, AppError>((request, first.launch, id, true))
        }
        .await;
        // The hold went in only with this caller's own insert of the request.
        if let Some(hold) = hold {
            self.settle(hold, matches!(admitted, Ok((.., true)))).await;
        }
        let (mut request, launch, id, _) = admitted?;
        tracing::info!(request_id = %id, count = count.get(), "provision request accepted");
        if let Some(order) = launch {
            let owner = self.ownership().await?;
            let mut report = ReconcileReport::default();
            let launch = self.launch(&mut request, order, &owner, None, &mut report);
            if tokio::time::timeout_at(deadline, launch).await.is_err() {
                tracing::info!(request_id = %id, "launch still under way at the answer's deadline; the next step goes on with it");
                // The stored request (its launch started, nothing recorded yet) is the answer.
                return Ok(self.store.get(&id).await?.unwrap_or(request));
            }
        }
        Ok(request)
    }
}

impl App {
    /// The limits a new request of `template` is admitted under.
    fn limits(&self, template: Option<&Template>) -> Limits {
        Limits {
            template: template.map(|t| t.id().clone()),
            template_max: template.and_then(Template::max_number),
            account_limit: self.settings.account_limit,
        }
    }

    /// Refuses early, before the provider is asked, what the limits cannot take now; the
    /// insert judges again in its transaction.
    async fn check_limits(&self, template: &Template, count: u32) -> Result<(), AppError> {
        let limits = self.limits(Some(template));
        if !limits.any() {
            return Ok(());
        }
        let usage = limits.usage(&self.store.capacity_held().await?);
        if limits.fit(usage, count) { Ok(()) } else { Err(over_limit(&limits, usage, count).into()) }
    }
}

/// The refusal of `count` machines that do not fit `limits` beside `usage`: the template's
/// `maxNumber` first, then the account limit.
fn over_limit(limits: &Limits, usage: Usage, count: u32) -> DomainError {
    match limits.template_max {
        Some(max) if usage.template_held.saturating_add(count) > max => DomainError::InsufficientCapacity {
            requested: count,
            available: max.saturating_sub(usage.template_held),
            template_id: limits.template.as_ref().map(ToString::to_string),
            instance_type: None,
            region: None,
        },
        _ => DomainError::QuotaExceeded {
            current_usage: usage.total_held,
            requested_additional: count,
            account_limit: limits.account_limit.unwrap_or(0),
        },
    }
}
