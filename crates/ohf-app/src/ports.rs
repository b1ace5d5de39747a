//! The ports of the application core. Adapters implement them; the core holds them as
//! `Arc<dyn Port>`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use ohf_domain::instance_types::InstanceTypeInfo;
use ohf_domain::{
    ClientToken, EventEnvelope, Machine, MachineId, MachineObservation, Priority, ProviderName, Request, RequestId,
    RequestKind, RequestState, Tags, Template, TemplateId, Timestamp,
};

/// Tag keys ohf puts on every resource it creates.
pub mod tag_keys {
    /// The id of the provision request that launched the resource.
    pub const REQUEST_ID: &str = "ohf:request-id";
    /// The template it was launched from.
    pub const TEMPLATE_ID: &str = "ohf:template-id";
    /// The provider instance that launched it.
    pub const PROVIDER: &str = "ohf:provider";
    /// The cluster name of the installation that launched the resource.
    pub const CLUSTER: &str = "ohf:cluster";
    /// The identity of the store whose request launched the resource; sweeps and returns
    /// never touch another installation's.
    pub const INSTALLATION: &str = "ohf:installation";
    /// The client token of the launch that made the machine.
    pub const LAUNCH_TOKEN: &str = "ohf:launch-token";
    /// The name EC2 shows (the request id and the machine's index).
    pub const NAME: &str = "Name";
}

/// What proves that a cloud resource belongs to this installation: the ownership tags ohf
/// puts on everything it launches. Destructive calls act only on what these tags prove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    /// The installation's cluster name (`ohf:cluster`).
    pub cluster: String,
    /// The store's identity (`RequestStore::installation`).
    pub installation: String,
}

impl Ownership {
    /// Why a resource whose tags `tag` reads does not provably belong to this installation
    /// and to request `request`; `None` when its tags prove it does. A resource launched before
    /// installations were tagged may lack the installation tag; cluster and request must match.
    pub fn disproof<'a>(&self, tag: impl Fn(&str) -> Option<&'a str>, request: &RequestId) -> Option<String> {
        match tag(tag_keys::CLUSTER) {
            None => return Some(format!("it carries no {} tag: ohf did not launch it", tag_keys::CLUSTER)),
            Some(c) if c != self.cluster => {
                return Some(format!("it belongs to ohf cluster '{c}', not to this one ('{}')", self.cluster));
            }
            Some(_) => {}
        }
        if let Some(i) = tag(tag_keys::INSTALLATION)
            && i != self.installation
        {
            return Some(format!("it was launched by another ohf installation ({i})"));
        }
        match tag(tag_keys::REQUEST_ID) {
            None => Some(format!("it carries no {} tag", tag_keys::REQUEST_ID)),
            Some(r) if r != request.as_str() => Some(format!("it belongs to request {r}, not to {request}")),
            Some(_) => None,
        }
    }
}

/// A machine to terminate, with the provision request that launched it: its tags must say so.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OwnedMachine {
    /// The machine.
    pub id: MachineId,
    /// The provision request that launched it.
    pub request_id: RequestId,
}

/// A machine a provider refused to touch, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The machine.
    pub id: MachineId,
    /// Why it was left alone.
    pub reason: String,
}

/// A failure of the store.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// The request changed since it was read (or its id is taken, for a new one).
    #[error("request '{request_id}' was changed by someone else")]
    Conflict {
        /// The request that changed.
        request_id: String,
    },
    /// The store cannot be reached or failed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored row does not decode.
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
}

/// Which requests a listing returns.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    /// Only requests in these states. Empty: every state but REJECTED (a refused request's
    /// record is listed only when asked for by its state).
    pub states: Vec<RequestState>,
    /// Only provision or only return requests.
    pub kind: Option<RequestKind>,
    /// Only requests of this template.
    pub template: Option<TemplateId>,
    /// Only provision requests that hold (or will hold) machines.
    pub holding: bool,
    /// Only requests with work left (every unfinished one, and finished ones still cleaning up
    /// or owing a callback): read through the stores' index of such requests.
    pub unfinished: bool,
    /// At most this many.
    pub limit: Option<u32>,
    /// Only requests made at or after this time.
    pub created_since: Option<Timestamp>,
}

impl RequestFilter {
    /// PENDING and IN_PROGRESS requests (of `kind`, when given), read through the index of
    /// requests with work left.
    pub fn waiting(kind: Option<RequestKind>) -> Self {
        Self {
            kind,
            states: vec![RequestState::Pending, RequestState::InProgress],
            unfinished: true,
            ..Default::default()
        }
    }
}

/// A worker's proof that it still holds its claims: a save under a fence is refused (as a
/// conflict) for a request whose claim the worker no longer holds at `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The worker.
    pub worker: String,
    /// Now, in the store's time.
    pub now: Timestamp,
}

/// One period during which one worker held a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimSpan {
    /// The worker that held it.
    pub worker: String,
    /// When the claim was taken.
    pub since: Timestamp,
    /// When it ended or expires.
    pub until: Timestamp,
}

/// Where requests and their audit trails live.
#[async_trait]
pub trait Requests: Send + Sync + 'static {
    /// Stores every request of `batch` with its uncommitted events, all or nothing. A request
    /// at version 0 is inserted; any other must still be at the version it was read at, and,
    /// under a fence, still be claimed by the fence's worker. The caller marks each request
    /// committed at `version + 1` afterwards. A request that needs no more work loses its claim.
    async fn save(&self, batch: &[&Request], fence: Option<&Fence>) -> Result<(), StoreError>;
    /// Inserts the new provision request `request` (as `save` would) only if the machines it
    /// holds fit `limits` beside the capacity held, judged in the transaction that inserts it:
    /// concurrent creations never exceed a limit between them. `Some(usage)`: refused, with
    /// the capacity held then; nothing is stored. With `also`, a new shared-state entry (key,
    /// value) goes in with the request, in the same transaction (a placement's hold): a key
    /// already present is a `Conflict`, and nothing is stored.
    async fn create_within(
        &self,
        request: &Request,
        limits: &Limits,
        also: Option<(&str, &str)>,
    ) -> Result<Option<Usage>, StoreError>;
    /// One request, `None` when the store has no such id.
    async fn get(&self, id: &RequestId) -> Result<Option<Request>, StoreError>;
    /// The requests of `ids` that exist, in no particular order.
    async fn get_many(&self, ids: &[RequestId]) -> Result<Vec<Request>, StoreError>;
    /// Newest first.
    async fn list(&self, filter: &RequestFilter) -> Result<Vec<Request>, StoreError>;
    /// The requests the reconcile step still has work for: all of them, or those among `ids`
    /// (a poll's step, which reads the same requests again for its answer).
    async fn needing_work(&self, ids: Option<&[RequestId]>) -> Result<Vec<Request>, StoreError>;
    /// Provision requests holding a machine with one of these ids or host names.
    async fn find_holders(&self, ids: &[MachineId], names: &[String]) -> Result<Vec<Request>, StoreError>;
    /// How many requests there are of each kind in each state (pairs with none left out).
    async fn count_by_state(&self) -> Result<Vec<(RequestKind, RequestState, u64)>, StoreError>;
    /// Machines held or reserved, per template.
    async fn capacity_held(&self) -> Result<HashMap<TemplateId, u32>, StoreError>;
    /// Requests with work left (launching, filling, terminating) per provider their launches go
    /// to, over every process sharing the store: the operations in flight LEAST_CONNECTIONS
    /// compares.
    async fn work_by_provider(&self) -> Result<HashMap<ProviderName, u64>, StoreError>;
    /// The audit trail of one request, oldest first.
    async fn history(&self, id: &RequestId) -> Result<Vec<EventEnvelope>, StoreError>;
    /// Deletes up to `limit` finished requests that hold no machine and last changed before
    /// `before`, with their events and claim history; answers how many went.
    async fn delete_finished(&self, before: Timestamp, limit: u32) -> Result<u64, StoreError>;
}

/// Tells callers about their requests: posts a request's view to the callback URL it names.
/// Deliveries are tried again by the lifecycle until taken or given up; an implementation
/// answers for one try.
#[async_trait]
pub trait CallbackSender: Send + Sync + 'static {
    /// Posts `request`, which reached `event`, to `url`; `Err(why)` when it was not taken.
    async fn post(&self, url: &str, event: RequestState, request: &Request) -> Result<(), String>;
}

/// The limits a new provision request is admitted under.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// The template whose machines count toward `template_max`.
    pub template: Option<TemplateId>,
    /// The most machines the template may hold (its `maxNumber`).
    pub template_max: Option<u32>,
    /// The most machines every template together may hold (the account limit).
    pub account_limit: Option<u32>,
}

/// The capacity held (machines held or reserved) when an admission was judged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Held by the template of [`Limits::template`].
    pub template_held: u32,
    /// Held by every template.
    pub total_held: u32,
}

impl Limits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.template_max.is_some() || self.account_limit.is_some()
    }

    /// Whether `count` more machines fit beside `usage`.
    pub fn fit(&self, usage: Usage, count: u32) -> bool {
        self.template_max.is_none_or(|max| usage.template_held.saturating_add(count) <= max)
            && self.account_limit.is_none_or(|max| usage.total_held.saturating_add(count) <= max)
    }

    /// [`Usage`] out of the capacity held per template.
    pub fn usage(&self, held: &HashMap<TemplateId, u32>) -> Usage {
        Usage {
            template_held: self.template.as_ref().and_then(|t| held.get(t)).copied().unwrap_or(0),
            total_held: held.values().fold(0u32, |sum, n| sum.saturating_add(*n)),
        }
    }
}

/// How daemons share the work: claims on requests, fenced writes, leases on periodic jobs.
#[async_trait]
pub trait WorkClaims: Send + Sync + 'static {
    /// Claims up to `limit` requests with work left that no other worker holds at `now`
    /// (renewing this worker's own claims) until `now + ttl_ms`, and returns them: high
    /// priority before normal before low ([`Request::effective_priority`]), and within a
    /// priority what was claimed longest ago first (never claimed, or released: before any
    /// other), then the least recently changed: a worker with more work than `limit` takes
    /// turns through all of it, so nothing starves.
    async fn claim(&self, worker: &str, now: Timestamp, ttl_ms: i64, limit: u32) -> Result<Vec<Request>, StoreError>;
    /// Extends this worker's live claims on `ids` to `now + ttl_ms` (a cycle that runs long
    /// keeps what it works); answers how many it still held.
    async fn renew(&self, worker: &str, ids: &[RequestId], now: Timestamp, ttl_ms: i64) -> Result<u64, StoreError>;
    /// The store's own clock, where several hosts share the store (Postgres): claims, their
    /// renewals and the fences of writes are judged by one clock, not by each host's. `None`
    /// where the store lives on this host (SQLite, memory).
    async fn now(&self) -> Result<Option<Timestamp>, StoreError> {
        Ok(None)
    }
    /// Gives up this worker's claims on `ids` at `now`.
    async fn release(&self, worker: &str, ids: &[RequestId], now: Timestamp) -> Result<(), StoreError>;
    /// Takes or keeps the lease on a periodic `job` so that one worker at a time runs it.
    async fn lead(&self, job: &str, worker: &str, now: Timestamp, ttl_ms: i64) -> Result<bool, StoreError>;
    /// Who held a request when, oldest first.
    async fn claim_history(&self, id: &RequestId) -> Result<Vec<ClaimSpan>, StoreError>;
}

/// Values every process sharing the store reads and changes by compare-and-set (breakers,
/// provider health and figures, registrations; keys in [`crate::keys`]), and the store's identity.
#[async_trait]
pub trait SharedState: Send + Sync + 'static {
    /// Shared state other than requests (circuit breakers, …): the value under `key` with its
    /// version, 0 when absent.
    async fn load_shared(&self, key: &str) -> Result<(Option<String>, i64), StoreError>;
    /// Stores `value` under `key` if its version is still `expected` (0: absent); false when
    /// another writer came first. Every process sharing the store sees the same value.
    async fn store_shared(&self, key: &str, value: &str, expected: i64) -> Result<bool, StoreError>;
    /// Every shared value whose key starts with `prefix`, with its version.
    async fn list_shared(&self, prefix: &str) -> Result<Vec<(String, String, i64)>, StoreError>;
    /// [`Self::list_shared`] of each of `prefixes`, in their order (a store answers them with
    /// one read).
    async fn list_shared_many(&self, prefixes: &[&str]) -> Result<Vec<Vec<(String, String, i64)>>, StoreError> {
        let mut all = Vec::with_capacity(prefixes.len());
        for prefix in prefixes {
            all.push(self.list_shared(prefix).await?);
        }
        Ok(all)
    }
    /// Removes the value under `key` if its version is still `expected`; false when it changed
    /// or is gone.
    async fn remove_shared(&self, key: &str, expected: i64) -> Result<bool, StoreError>;
    /// This store's identity, made with its first use and kept for its life. It is tagged on
    /// every machine, so that sweeps and returns never touch what another store launched.
    async fn installation(&self) -> Result<String, StoreError> {
        const KEY: &str = crate::keys::INSTALLATION;
        if let (Some(id), _) = self.load_shared(KEY).await? {
            return Ok(id);
        }
        // Two processes may race to make it; the first write wins and both read it back.
        let _ = self.store_shared(KEY, &uuid::Uuid::new_v4().to_string(), 0).await?;
        match self.load_shared(KEY).await? {
            (Some(id), _) => Ok(id),
            (None, _) => Err(StoreError::Corrupt("the installation id was written but cannot be read".into())),
        }
    }
}

/// The whole store port: requests, work claims and shared state, as every store implements them.
pub trait RequestStore: Requests + WorkClaims + SharedState {}

impl<T: Requests + WorkClaims + SharedState + ?Sized> RequestStore for T {}

/// A failure to read templates.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct CatalogError(pub String);

/// Where templates come from.
#[async_trait]
pub trait TemplateCatalog: Send + Sync + 'static {
    /// Every template, as configured now.
    async fn templates(&self) -> Result<Vec<Template>, CatalogError>;
}

/// What kind of failure a cloud call met, which decides whether it is worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloudErrorKind {
    /// The cloud has no capacity for it now (InsufficientInstanceCapacity).
    Capacity,
    /// An account limit was reached.
    Quota,
    /// Too many calls: slow down.
    Throttling,
    /// The service did not answer or failed for a while.
    Unavailable,
    /// The service failed on its side.
    Internal,
    /// The call took longer than its deadline.
    Timeout,
    /// The credentials were refused.
    Auth,
    /// The call was wrong (a template's field, a missing role).
    Validation,
    /// What the call named does not exist.
    NotFound,
    /// The resource is mid-change (a scaling activity, a modification): wait, look again, then
    /// act. Says nothing about the service's health.
    Busy,
}

impl CloudErrorKind {
    /// Whether trying again may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::Capacity | Self::Throttling | Self::Unavailable | Self::Internal | Self::Timeout | Self::Busy
        )
    }

    /// Whether the failure speaks of the provider's health: not the caller's own mistakes,
    /// and not a busy resource.
    pub fn is_provider_failure(self) -> bool {
        !matches!(self, Self::Validation | Self::NotFound | Self::Busy)
    }
}

/// A failed cloud call, with the provider's own code and message kept for the user.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct CloudError {
    /// What kind of failure.
    pub kind: CloudErrorKind,
    /// The provider's own code (InsufficientInstanceCapacity, …).
    pub code: String,
    /// The provider's message, with its request id where it gave one.
    pub message: String,
    /// How long the provider asked to wait before trying again.
    pub retry_after: Option<Duration>,
}

impl CloudError {
    /// An error of `kind` with the provider's code and message.
    pub fn new(kind: CloudErrorKind, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { kind, code: code.into(), message: message.into(), retry_after: None }
    }

    /// The error of a batched call (a follow) whose provider answered `got` of `asked`.
    pub fn unanswered(provider: &ProviderName, got: usize, asked: usize) -> Self {
        Self::new(
            CloudErrorKind::Internal,
            "FollowMismatch",
            format!("{provider} answered {got} of {asked} followed launches"),
        )
    }
}

/// One launch of `count` machines for a request.
#[derive(Debug, Clone)]
pub struct LaunchRequest {
    /// The provision request the machines are for.
    pub request_id: RequestId,
    /// The template to launch.
    pub template: Template,
    /// How many machines.
    pub count: u32,
    /// The idempotency token of this request's attempt.
    pub token: ClientToken,
    /// The template's, the request's and ohf's ownership tags.
    pub tags: Tags,
    /// Availability zones to place the machines in (any when empty).
    pub zones: Vec<String>,
    /// The cloud request (fleet, group) an earlier call of this launch placed: look at it
    /// instead of placing one.
    pub following: Option<String>,
    /// When the launch attempt started: expiries of what it placed count from here when the
    /// cloud does not say when it made it.
    pub started_at: Timestamp,
    /// The request's priority: launches wait for a rate-limit token behind none of lower
    /// priority.
    pub priority: Priority,
}

/// What a launch produced: the machines, and why it fell short when it launched fewer.
#[derive(Debug, Clone, Default)]
pub struct LaunchResult {
    /// The machines launched so far.
    pub machines: Vec<MachineObservation>,
    /// Why fewer than asked came, when fewer came.
    pub shortfall: Option<CloudError>,
    /// The cloud request (fleet, group) that goes on delivering machines: the launch is called
    /// again, with this as `following`, until it answers `None`.
    pub filling: Option<String>,
}

/// What to describe: machines by id, every machine tagged with one of `request_ids`, and,
/// when `cluster` is set, every live machine tagged with that cluster.
#[derive(Debug, Clone, Default)]
pub struct DescribeQuery {
    /// Machines by id.
    pub machine_ids: Vec<MachineId>,
    /// Every machine tagged with one of these requests.
    pub request_ids: Vec<RequestId>,
    /// Every live machine of this cluster.
    pub cluster: Option<String>,
}

/// How many machines of a template a provider can launch now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderCapacity {
    /// How many machines can be launched.
    pub available: u32,
    /// The instance type that limits them.
    pub instance_type: String,
    /// The region asked.
    pub region: Option<String>,
}

/// A call a provider makes, to be named by the provider (see [`CloudProvider::call_name`]).
#[derive(Debug, Clone, Copy)]
pub enum ProviderCall<'a> {
    /// A launch from this template.
    Launch(&'a Template),
    /// Stopping the cloud request (fleet, group) with this id.
    Release(&'a str),
    /// A describe of machines (and the health check).
    Describe,
    /// A termination of machines.
    Terminate,
    /// A describe of instance types.
    InstanceTypes,
    /// The deletion of resources kept between requests that no template needs (launch templates).
    Prune,
}

/// How a provider names one of its calls: the operation (counters, retry and timeout
/// settings) and the service it goes to (one circuit breaker per service).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallName {
    /// The operation, such as `ec2_run_instances`.
    pub operation: &'static str,
    /// The service, such as `ec2`, `spot_fleet` or `autoscaling`.
    pub service: &'static str,
}

/// The operation names of the EC2 vocabulary, which the resilience settings use.
pub mod operations {
    /// RunInstances.
    pub const RUN_INSTANCES: &str = "ec2_run_instances";
    /// CreateFleet.
    pub const CREATE_FLEET: &str = "ec2_create_fleet";
    /// RequestSpotFleet.
    pub const SPOT_FLEET_REQUEST: &str = "spot_fleet_request";
    /// CreateAutoScalingGroup.
    pub const AUTOSCALING_CREATE_GROUP: &str = "autoscaling_create_group";
    /// DescribeInstances.
    pub const DESCRIBE_INSTANCES: &str = "ec2_describe_instances";
    /// DescribeInstanceTypes.
    pub const DESCRIBE_INSTANCE_TYPES: &str = "ec2_describe_instance_types";
    /// TerminateInstances.
    pub const TERMINATE_INSTANCES: &str = "ec2_terminate_instances";
    /// DeleteFleets.
    pub const RELEASE_FLEET: &str = "ec2_delete_fleets";
    /// CancelSpotFleetRequests.
    pub const RELEASE_SPOT_FLEET: &str = "spot_fleet_cancel";
    /// DeleteAutoScalingGroup.
    pub const RELEASE_GROUP: &str = "autoscaling_delete_group";
    /// DeleteLaunchTemplate (with the describe that finds them).
    pub const PRUNE_LAUNCH_TEMPLATES: &str = "ec2_delete_launch_template";
}

tokio::task_local! {
    static CALL_DEADLINE: tokio::time::Instant;
}

/// Runs `call` as part of an operation that must end by `deadline` (the resilience layer's
/// deadline for it): a provider that waits inside the call, for a fleet or group that is
/// mid-change, gives up before then and answers busy instead of being cut off as a timeout.
pub async fn within_deadline<F: std::future::Future>(deadline: tokio::time::Instant, call: F) -> F::Output {
    CALL_DEADLINE.scope(deadline, call).await
}

/// When the operation the current provider call belongs to must end, if a caller said.
pub fn call_deadline() -> Option<tokio::time::Instant> {
    CALL_DEADLINE.try_with(|d| *d).ok()
}

/// Names `call` in the EC2 vocabulary: launches by the template's API, everything else as an
/// EC2 call (a release as DeleteFleets; a provider that can tell its resources apart says more).
pub fn ec2_call_name(call: ProviderCall<'_>) -> CallName {
    use operations::*;
    let (operation, service) = match call {
        ProviderCall::Launch(t) => match t.provider_api() {
            ohf_domain::ProviderApi::RunInstances => (RUN_INSTANCES, "ec2"),
            ohf_domain::ProviderApi::Ec2Fleet => (CREATE_FLEET, "ec2"),
            ohf_domain::ProviderApi::SpotFleet => (SPOT_FLEET_REQUEST, "spot_fleet"),
            ohf_domain::ProviderApi::Asg => (AUTOSCALING_CREATE_GROUP, "autoscaling"),
        },
        ProviderCall::Release(_) => (RELEASE_FLEET, "ec2"),
        ProviderCall::Describe => (DESCRIBE_INSTANCES, "ec2"),
        ProviderCall::Terminate => (TERMINATE_INSTANCES, "ec2"),
        ProviderCall::InstanceTypes => (DESCRIBE_INSTANCE_TYPES, "ec2"),
        ProviderCall::Prune => (PRUNE_LAUNCH_TEMPLATES, "ec2"),
    };
    CallName { operation, service }
}

/// A hosting venue to measure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VenueQuery {
    /// Its zone, when it is one.
    pub zone: Option<String>,
    /// Its subnets; none: every subnet of the zone.
    pub subnets: Vec<String>,
    /// The instance types routing may ask for (the templates' types).
    pub instance_types: Vec<String>,
}

/// What a provider measured of a venue; what it cannot measure is left empty.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VenueReading {
    /// When (ms since the epoch), set by the application.
    #[serde(default)]
    pub measured_at: i64,
    /// Subnets with their free IP addresses.
    #[serde(default)]
    pub subnets: Vec<ohf_placement::Subnet>,
    /// Instance types offered in the zone, of those asked about; `None`: not measured.
    #[serde(default)]
    pub offerings: Option<std::collections::BTreeSet<String>>,
    /// The latest hourly spot price per instance type.
    #[serde(default)]
    pub spot_prices: std::collections::BTreeMap<String, f64>,
    /// The account's vCPU quota for running on-demand machines in the venue's region, where
    /// the provider can read it; a venue is never thought to hold more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpu_quota: Option<u64>,
    /// Addresses per subnet taken, when measured, by machines of placements the ledger holds
    /// (set by the application): they count once, as held, not also as gone from the subnet.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub held_addresses: std::collections::BTreeMap<String, u64>,
}

/// A configured cloud account and region that launches, describes and terminates machines.
#[async_trait]
pub trait CloudProvider: Send + Sync + 'static {
    /// The provider instance's name.
    fn name(&self) -> &ProviderName;
    /// How this provider names `call`. The default names launches by the template's API and
    /// everything else as EC2 calls; a provider whose calls differ says so.
    fn call_name(&self, call: ProviderCall<'_>) -> CallName {
        ec2_call_name(call)
    }
    /// `sim`, `aws`, …
    fn kind(&self) -> &'static str;
    /// What this kind of provider can do (`instances`, `spot_instances`, `fleets`, …), for
    /// capability-based selection; a registration may add or take away some.
    fn capabilities(&self) -> &'static [&'static str] {
        &["instances"]
    }
    /// One cheap call that shows whether the provider answers at all.
    async fn health_check(&self) -> Result<(), CloudError> {
        self.describe(&DescribeQuery::default()).await.map(|_| ())
    }
    /// The figures of instance types the built-in table does not know, for templates that
    /// omit `ncpus`/`nram`; types the provider does not know are left out.
    async fn instance_types(&self, names: &[String]) -> Result<Vec<(String, InstanceTypeInfo)>, CloudError> {
        let _ = names;
        Ok(Vec::new())
    }
    /// Refuses templates this provider cannot launch, saying why.
    async fn check_template(&self, template: &Template) -> Result<(), CloudError>;
    /// The current hourly spot price of each of `instance_types` where the provider publishes
    /// one (AWS's DescribeSpotPriceHistory); the reports price spot machines by it. A provider
    /// without a spot market answers none.
    async fn spot_prices(&self, instance_types: &[String]) -> Result<BTreeMap<String, f64>, CloudError> {
        let _ = instance_types;
        Ok(BTreeMap::new())
    }
    /// Refuses a request's availability zones that machines of `template` cannot be placed in
    /// (a `Validation` error saying why); a provider that cannot tell accepts, and the launch
    /// finds out.
    async fn check_zones(&self, template: &Template, zones: &[String]) -> Result<(), CloudError> {
        let _ = (template, zones);
        Ok(())
    }
    /// Who the provider acts as (on AWS: the account and identity of its credentials), for
    /// `ohf doctor`; `None` where there is nothing to say. An error: the credentials do not work.
    async fn identity(&self) -> Result<Option<String>, CloudError> {
        Ok(None)
    }
    /// What the cloud says of what `template` names (its image, subnets, security groups exist
    /// in this account and region, and the credentials may make the calls its launches and
    /// returns need), each problem in words with its fix, for `ohf doctor`. An error is a
    /// provider that could not be asked. The default has nothing to look at.
    async fn inspect(&self, template: &Template) -> Result<Vec<String>, CloudError> {
        let _ = template;
        Ok(Vec::new())
    }
    /// What the provider can measure of a hosting venue for routing: the free addresses of
    /// its subnets, the instance types offered in its zone, spot prices there. The default
    /// measures nothing.
    async fn measure_venue(&self, venue: &VenueQuery) -> Result<VenueReading, CloudError> {
        let _ = venue;
        Ok(VenueReading::default())
    }
    /// Capacity for the template, when the provider knows it.
    async fn capacity(&self, template: &Template) -> Result<Option<ProviderCapacity>, CloudError>;
    /// Launches machines; the same token returns the same machines instead of new ones.
    async fn launch(&self, request: &LaunchRequest) -> Result<LaunchResult, CloudError>;
    /// Follows the fleets and groups earlier calls of `launches` placed (each names its own in
    /// `following`): one answer per launch, in order, as [`launch`](Self::launch) would give
    /// it. A provider that can look at many of them in one call does so; the default follows
    /// each in turn. An error of the whole call (the cloud could not be read) is the outer one.
    async fn follow(&self, launches: &[LaunchRequest]) -> Result<Vec<Result<LaunchResult, CloudError>>, CloudError> {
        let mut out = Vec::with_capacity(launches.len());
        for launch in launches {
            out.push(self.launch(launch).await);
        }
        Ok(out)
    }
    /// One call for everything the query names.
    async fn describe(&self, query: &DescribeQuery) -> Result<Vec<MachineObservation>, CloudError>;
    /// Asks for termination of the machines whose tags prove that `owner` and their request
    /// own them (fleets and groups they belong to likewise, before they are shrunk or
    /// deleted); answers the machines it left alone, with why. Machines already gone are not
    /// an error.
    async fn terminate(&self, machines: &[OwnedMachine], owner: &Ownership) -> Result<Vec<Refusal>, CloudError>;
    /// Stops cloud request `resource` (a fleet, a group a launch of `request` placed) of a
    /// request that ended without completing, terminating the machines it made: the request
    /// keeps none. A resource whose tags do not prove `owner` and `request` own it is refused.
    async fn release(&self, resource: &str, request: &RequestId, owner: &Ownership) -> Result<(), CloudError> {
        let _ = (resource, request, owner);
        Ok(())
    }
    /// Deletes what the provider made for templates and keeps between requests (launch
    /// templates, …) that no template in `keep` needs any more, among the resources `owner`'s
    /// tags prove are this installation's; answers the names of what it deleted.
    async fn prune(&self, keep: &[Template], owner: &Ownership) -> Result<Vec<String>, CloudError> {
        let _ = (keep, owner);
        Ok(Vec::new())
    }
    /// How this provider's calls have gone in this process (counters per operation), when it
    /// keeps such figures.
    fn report(&self) -> Option<serde_json::Value> {
        None
    }
}

/// The time, as the application sees it.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Timestamp::from_unix_millis(d.as_millis() as i64)
    }
}

/// Makes ids for new requests.
pub trait IdGenerator: Send + Sync + 'static {
    /// A new id for a request of `kind`.
    fn next(&self, kind: RequestKind) -> RequestId;
}

/// `req-<uuid>` and `ret-<uuid>`.
#[derive(Debug, Clone, Copy)]
pub struct UuidIds;

impl IdGenerator for UuidIds {
    fn next(&self, kind: RequestKind) -> RequestId {
        let prefix = match kind {
            RequestKind::Provision => "req",
            RequestKind::Return => "ret",
        };
        RequestId::new(format!("{prefix}-{}", uuid::Uuid::new_v4())).expect("uuid ids are valid")
    }
}

impl fmt::Display for CloudErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Finds the machine with this id or host name among a request's machines.
pub fn find_machine<'a>(request: &'a Request, id: Option<&MachineId>, name: Option<&str>) -> Option<&'a Machine> {
    request.machines().iter().find(|m| id.is_some_and(|id| m.id() == id) || name.is_some_and(|n| m.name() == Some(n)))
}
