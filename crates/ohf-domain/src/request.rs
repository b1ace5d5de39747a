//! The request aggregate: provision and return requests, their state machine and the
//! reconcile decision that advances them.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    ClientToken, DomainError, EventEnvelope, Machine, MachineCount, MachineId, MachineObservation, MachineResult,
    MachineStatus, Priority, ProviderName, RequestEvent, RequestId, Tags, Template, TimeoutSecs, Timestamp,
};

/// Provision requests bring machines up; return requests take them down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestKind {
    /// Launches machines.
    Provision,
    /// Returns machines.
    Return,
}

impl RequestKind {
    /// Its wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provision => "provision",
            Self::Return => "return",
        }
    }
}

/// The lifecycle states of the seed, plus partial success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RequestState {
    /// Accepted, nothing launched yet.
    Pending,
    /// Launching, or waiting for machines.
    InProgress,
    /// Every machine asked for is there (or, for a return, gone).
    Completed,
    /// It ended without what was asked.
    Failed,
    /// Its time ran out.
    Timeout,
    /// Cancelled by a caller.
    Cancelled,
    /// Some machines are up and kept; the rest failed.
    #[serde(alias = "PARTIAL")]
    PartialSuccess,
    /// Refused when it was asked (its error says why); kept so history and figures see it.
    Rejected,
}

impl RequestState {
    /// Every state.
    pub const ALL: [RequestState; 8] = [
        Self::Pending,
        Self::InProgress,
        Self::Completed,
        Self::Failed,
        Self::Timeout,
        Self::Cancelled,
        Self::PartialSuccess,
        Self::Rejected,
    ];

    /// Its wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::InProgress => "IN_PROGRESS",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
            Self::Timeout => "TIMEOUT",
            Self::Cancelled => "CANCELLED",
            Self::PartialSuccess => "PARTIAL_SUCCESS",
            Self::Rejected => "REJECTED",
        }
    }

    /// The state of its wire name.
    pub fn parse(s: &str) -> Option<Self> {
        let upper = s.trim().to_ascii_uppercase().replace('-', "_");
        match upper.as_str() {
            "PARTIAL" => Some(Self::PartialSuccess),
            _ => Self::ALL.into_iter().find(|st| st.as_str() == upper),
        }
    }

    /// Whether the request can change no more (its clean-up may still be under way).
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Pending | Self::InProgress)
    }

    /// The legal transitions; every other one is refused.
    pub fn can_become(self, to: RequestState) -> bool {
        use RequestState::*;
        matches!(
            (self, to),
            (Pending, InProgress | Failed | Timeout | Cancelled)
                | (InProgress, Completed | Failed | Timeout | Cancelled | PartialSuccess)
        )
    }
}

impl fmt::Display for RequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do with the machines that did come up when the rest of a request failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PartialPolicy {
    /// End in PARTIAL_SUCCESS and keep them.
    #[default]
    Keep,
    /// End in FAILED and terminate them.
    Cleanup,
}

/// The rules the reconcile step applies, from configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LifecyclePolicy {
    /// Launch calls per request before giving up on the missing machines.
    pub max_launch_attempts: u32,
    /// What to do when a launch brings fewer machines than asked.
    pub partial: PartialPolicy,
    /// Machines pending longer than this are terminated and reported failed.
    pub pending_timeout_secs: Option<u32>,
    /// Wait before a launch is retried after a retryable failure: base × 2^(attempt−1), capped.
    pub launch_backoff_base_secs: u32,
    /// The longest wait between launch retries, in seconds.
    pub launch_backoff_max_secs: u32,
}

impl Default for LifecyclePolicy {
    fn default() -> Self {
        Self {
            max_launch_attempts: 5,
            partial: PartialPolicy::Keep,
            pending_timeout_secs: None,
            launch_backoff_base_secs: 5,
            launch_backoff_max_secs: 60,
        }
    }
}

impl LifecyclePolicy {
    /// The wait before attempt `attempt + 1`, in seconds.
    pub fn launch_backoff_secs(&self, attempt: u32) -> u32 {
        let exp = attempt.saturating_sub(1).min(16);
        self.launch_backoff_base_secs.saturating_mul(1 << exp).min(self.launch_backoff_max_secs)
    }
}

/// The validated inputs of a provision request.
#[derive(Debug, Clone)]
pub struct ProvisionSpec {
    /// The request's id.
    pub id: RequestId,
    /// The template to launch.
    pub template: Template,
    /// How many machines.
    pub count: MachineCount,
    /// How long it may take.
    pub timeout: TimeoutSecs,
    /// Tags for its machines.
    pub tags: Tags,
    /// The caller's notes.
    pub metadata: BTreeMap<String, Value>,
    /// Its priority.
    pub priority: Priority,
    /// Who asks (a token's name, the OS user); `None` when unknown.
    pub requester: Option<String>,
    /// Zones to place machines in.
    pub zones: Vec<String>,
    /// The provider it launches on first.
    pub provider: ProviderName,
}

/// A machine named in a return request, with the provision request that held it.
#[derive(Debug, Clone)]
pub struct ReturnedMachine {
    /// The machine.
    pub machine: Machine,
    /// The provision request that holds it (`None`: no request does).
    pub holder: Option<RequestId>,
    /// Why ohf cannot return it, when it cannot.
    pub refusal: Option<String>,
}

/// Everything a request starts with; the payload of its `Created` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Creation {
    /// The request's id.
    pub id: RequestId,
    /// Provision or return.
    pub kind: RequestKind,
    /// The template (provision requests).
    pub template: Option<Template>,
    /// Machines asked for or returned.
    pub count: u32,
    /// How long it may take.
    pub timeout: TimeoutSecs,
    /// Tags for its machines.
    pub tags: Tags,
    /// The caller's notes.
    pub metadata: BTreeMap<String, Value>,
    /// Its priority.
    pub priority: Priority,
    /// Who asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<String>,
    /// Zones to place machines in.
    pub zones: Vec<String>,
    /// The provider it launches on first.
    pub provider: Option<ProviderName>,
    /// Why the request was refused when it was asked: it is created REJECTED (no transition
    /// leads there), with this as its error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// A return request's drain: seconds the scheduler has to move work off its machines
    /// before they are terminated (`force: false` with `drainTimeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_secs: Option<u32>,
    /// The machines (a return request's, from the start).
    pub machines: Vec<Machine>,
    /// Which provision request holds each returned machine.
    pub holders: BTreeMap<MachineId, RequestId>,
    /// A return that terminates at once.
    pub force: bool,
}

/// A launch the reconcile step wants made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchOrder {
    /// The attempt, from 1.
    pub attempt: u32,
    /// Machines to launch.
    pub count: u32,
    /// The idempotency token of the attempt.
    pub token: ClientToken,
    /// The provider to launch on.
    pub provider: ProviderName,
    /// The cloud request this attempt placed and is filling from, to follow rather than place.
    pub following: Option<String>,
    /// When the attempt started (expiries of what it placed count from then at the latest).
    pub started_at: Timestamp,
}

/// The cloud calls one reconcile step asks for, after its events are stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// A launch to make.
    pub launch: Option<LaunchOrder>,
    /// Machines to terminate, per provider.
    pub terminate: Vec<(ProviderName, MachineId)>,
    /// A cloud request (fleet, group) still filling for a request that ended: stop it.
    pub release: Option<Release>,
}

/// A cloud request to stop, so it launches nothing more for a request that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The attempt that placed it.
    pub attempt: u32,
    /// The provider holding it.
    pub provider: ProviderName,
    /// The fleet or group.
    pub resource: String,
}

impl Decision {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.launch.is_none() && self.terminate.is_empty() && self.release.is_none()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct LaunchProgress {
    attempts: u32,
    /// An attempt started whose outcome is not yet recorded: (attempt, count).
    outstanding: Option<(u32, u32)>,
    exhausted: bool,
    retry_at: Option<Timestamp>,
    last_error: Option<String>,
    /// The cloud request (fleet, group) the outstanding attempt is filling from.
    #[serde(default)]
    filling: Option<String>,
    /// Every provider an attempt was started on, oldest first.
    #[serde(default)]
    tried: Vec<ProviderName>,
    /// When the latest attempt started.
    #[serde(default)]
    started_at: Option<Timestamp>,
    /// When the request last failed over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failed_over_at: Option<Timestamp>,
    /// Providers failed over from that answered a search after the failover settled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    searched: Vec<ProviderName>,
}

/// How long after a failover a search of the provider left may still miss machines a launch
/// there made as it failed (the cloud's listings catch up within seconds): a search answered
/// later is the last one made there.
pub const FORMER_PROVIDER_SEARCH_SECS: i64 = 60;

/// The wait a busy request suggests when nothing says how long it stays busy.
pub const BUSY_RETRY_SECS: u64 = 5;

/// Tries of a callback before it is given up.
pub const CALLBACK_ATTEMPTS: u32 = 6;

/// The states a callback reports when `callback_events` names none.
pub const DEFAULT_CALLBACK_EVENTS: [RequestState; 3] =
    [RequestState::Completed, RequestState::Failed, RequestState::Timeout];

/// Where and when to tell the caller about its request: `metadata.callback_url` and
/// `metadata.callback_events` (the request-management seed's fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackSpec {
    /// The http:// or https:// URL posted to.
    pub url: String,
    /// The states reported.
    pub events: Vec<RequestState>,
}

impl CallbackSpec {
    /// The callback `metadata` asks for, if any; a bad URL or state is a VALIDATION_ERROR
    /// naming the field.
    pub fn of(metadata: &BTreeMap<String, Value>) -> Result<Option<Self>, DomainError> {
        let Some(url) = metadata.get("callback_url") else { return Ok(None) };
        let url = url
            .as_str()
            .map(str::trim)
            .filter(|u| {
                (u.starts_with("http://") || u.starts_with("https://"))
                    && u.len() <= 2048
                    && u.len() > "https://".len()
                    && !u.chars().any(|c| c.is_whitespace() || c.is_control())
            })
            .ok_or_else(|| DomainError::validation("metadata.callback_url", "must be an http:// or https:// URL"))?;
        let states = || {
            let all = [
                RequestState::Pending,
                RequestState::InProgress,
                RequestState::Completed,
                RequestState::Failed,
                RequestState::Timeout,
                RequestState::Cancelled,
                RequestState::PartialSuccess,
            ];
            all.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        };
        let events = match metadata.get("callback_events") {
            None | Some(Value::Null) => DEFAULT_CALLBACK_EVENTS.to_vec(),
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .map(|v| {
                    v.as_str().and_then(|s| RequestState::parse(&s.trim().to_ascii_uppercase())).ok_or_else(|| {
                        DomainError::validation(
                            "metadata.callback_events",
                            format!("{v} is not a request state; states: {}", states()),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => {
                return Err(DomainError::validation(
                    "metadata.callback_events",
                    format!("must be a non-empty list of states: {}", states()),
                ));
            }
        };
        Ok(Some(Self { url: url.to_owned(), events }))
    }
}

/// A callback owed: the request reached `event`, and the caller asked to be told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCallback {
    /// The state to report.
    pub event: RequestState,
    /// Tries so far.
    pub attempts: u32,
    /// When the next try is due.
    pub due_at: Timestamp,
}

/// A provision or return request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    id: RequestId,
    kind: RequestKind,
    state: RequestState,
    template: Option<Template>,
    count: u32,
    timeout: TimeoutSecs,
    tags: Tags,
    metadata: BTreeMap<String, Value>,
    priority: Priority,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    requester: Option<String>,
    zones: Vec<String>,
    provider: Option<ProviderName>,
    force: bool,
    created_at: Timestamp,
    updated_at: Timestamp,
    completed_at: Option<Timestamp>,
    error: Option<String>,
    machines: Vec<Machine>,
    holders: BTreeMap<MachineId, RequestId>,
    launch: LaunchProgress,
    /// Callbacks owed to the caller.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    callbacks: Vec<PendingCallback>,
    /// A draining return request terminates nothing before then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    drain_until: Option<Timestamp>,
    /// Events applied so far; the next event's sequence number.
    seq: u64,
    /// The stored version this copy was read at (0: never stored).
    version: u64,
    #[serde(skip)]
    changes: Vec<EventEnvelope>,
}

impl Creation {
    /// A request of `kind` with nothing given yet: no template, machines or holders, default
    /// timeout, no tags, metadata or zones, normal priority.
    fn bare(id: RequestId, kind: RequestKind) -> Self {
        Creation {
            id,
            kind,
            template: None,
            count: 0,
            timeout: TimeoutSecs::DEFAULT,
            tags: Tags::default(),
            metadata: BTreeMap::new(),
            priority: Priority::Normal,
            requester: None,
            zones: Vec::new(),
            provider: None,
            machines: Vec::new(),
            holders: BTreeMap::new(),
            force: false,
            drain_secs: None,
            refusal: None,
        }
    }
}

impl Request {
    /// The record of a request (provision or return, by the kind of `id`'s request) refused
    /// when it was asked: REJECTED at once, with the refusal as its error. `template` and
    /// `count` are what was asked (machines named, for a return), when they were understood.
    pub fn rejected(
        (id, kind): (RequestId, RequestKind),
        template: Option<Template>,
        count: u32,
        requester: Option<String>,
        refusal: String,
        now: Timestamp,
    ) -> Self {
        let creation = Creation { count, template, requester, refusal: Some(refusal), ..Creation::bare(id, kind) };
        Self::create(creation, now)
    }

    /// A new provision request, PENDING.
    pub fn provision(spec: ProvisionSpec, now: Timestamp) -> Self {
        let creation = Creation {
            id: spec.id,
            kind: RequestKind::Provision,
            count: spec.count.get(),
            template: Some(spec.template),
            timeout: spec.timeout,
            tags: spec.tags,
            metadata: spec.metadata,
            priority: spec.priority,
            requester: spec.requester,
            zones: spec.zones,
            provider: Some(spec.provider),
            machines: Vec::new(),
            holders: BTreeMap::new(),
            force: false,
            drain_secs: None,
            refusal: None,
        };
        Self::create(creation, now)
    }

    /// A new return request for `machines`, PENDING. Machines ohf cannot return are recorded
    /// as failed with the reason.
    pub fn return_machines(
        id: RequestId,
        machines: Vec<ReturnedMachine>,
        timeout: TimeoutSecs,
        force: bool,
        drain_secs: Option<u32>,
        requester: Option<String>,
        now: Timestamp,
    ) -> Result<Self, DomainError> {
        if machines.is_empty() {
            return Err(DomainError::validation("machines", "name at least one machine to return"));
        }
        let mut seen = HashSet::new();
        let mut list = Vec::new();
        let mut holders = BTreeMap::new();
        let mut refusals = Vec::new();
        for m in machines {
            if !seen.insert(m.machine.id().clone()) {
                continue;
            }
            if let Some(h) = m.holder {
                holders.insert(m.machine.id().clone(), h);
            }
            if let Some(why) = m.refusal {
                refusals.push((m.machine.id().clone(), why));
            }
            list.push(m.machine);
        }
        let creation = Creation {
            count: list.len() as u32,
            timeout,
            requester,
            machines: list,
            holders,
            force,
            drain_secs,
            ..Creation::bare(id, RequestKind::Return)
        };
        let mut request = Self::create(creation, now);
        for (machine_id, message) in refusals {
            request.record(now, RequestEvent::MachineFailed { machine_id, message });
        }
        Ok(request)
    }

    fn create(creation: Creation, now: Timestamp) -> Self {
        let mut request = Self::blank(&creation, now);
        request.record(now, RequestEvent::Created { creation: Box::new(creation) });
        request
    }

    fn blank(c: &Creation, now: Timestamp) -> Self {
        Self {
            id: c.id.clone(),
            kind: c.kind,
            state: RequestState::Pending,
            template: None,
            count: 0,
            timeout: c.timeout,
            tags: Tags::default(),
            metadata: BTreeMap::new(),
            priority: Priority::Normal,
            requester: None,
            zones: Vec::new(),
            provider: None,
            force: false,
            created_at: now,
            updated_at: now,
            completed_at: None,
            error: None,
            machines: Vec::new(),
            holders: BTreeMap::new(),
            launch: LaunchProgress::default(),
            callbacks: Vec::new(),
            drain_until: None,
            seq: 0,
            version: 0,
            changes: Vec::new(),
        }
    }

    /// Rebuilds a request from its whole history (the audit trail); `None` when the history
    /// does not begin with `Created`.
    pub fn replay(history: &[EventEnvelope]) -> Option<Self> {
        let first = history.first()?;
        let RequestEvent::Created { creation } = &first.event else { return None };
        let mut request = Self::blank(creation, first.at);
        for e in history {
            request.apply(e.at, &e.event);
            request.seq += 1;
        }
        Some(request)
    }

    fn record(&mut self, at: Timestamp, event: RequestEvent) {
        self.apply(at, &event);
        self.changes.push(EventEnvelope { request_id: self.id.clone(), seq: self.seq, at, event, by: None });
        self.seq += 1;
    }

    /// The pure effect of one event.
    fn apply(&mut self, at: Timestamp, event: &RequestEvent) {
        self.updated_at = at;
        match event {
            RequestEvent::Created { creation } => {
                let c = creation.as_ref().clone();
                self.kind = c.kind;
                self.template = c.template;
                self.count = c.count;
                self.timeout = c.timeout;
                self.tags = c.tags;
                self.metadata = c.metadata;
                self.priority = c.priority;
                self.zones = c.zones;
                self.requester = c.requester;
                self.provider = c.provider;
                self.machines = c.machines;
                self.holders = c.holders;
                self.force = c.force;
                if let Some(why) = c.refusal {
                    self.state = RequestState::Rejected;
                    self.error = Some(why);
                    self.completed_at = Some(at);
                }
                self.drain_until =
                    c.drain_secs.filter(|secs| *secs > 0 && !c.force).map(|secs| at.plus_secs(i64::from(secs)));
                self.created_at = at;
            }
            RequestEvent::StateChanged { to, error, .. } => {
                self.state = *to;
                if to.is_terminal() {
                    self.completed_at = Some(at);
                }
                if error.is_some() {
                    self.error = error.clone();
                }
                if let Ok(Some(spec)) = CallbackSpec::of(&self.metadata)
                    && spec.events.contains(to)
                {
                    self.callbacks.push(PendingCallback { event: *to, attempts: 0, due_at: at });
                }
            }
            RequestEvent::DrainEnded { .. } => self.drain_until = None,
            RequestEvent::MachineReturnCancelled { machine_id, return_request } => {
                if let Some(m) = self.machine_mut(machine_id) {
                    m.unmark_returned(return_request);
                }
            }
            RequestEvent::CallbackDelivered { event, .. } => self.callbacks.retain(|c| c.event != *event),
            RequestEvent::CallbackFailed { event, attempt, retry_at, .. } => match retry_at {
                Some(t) => {
                    for c in self.callbacks.iter_mut().filter(|c| c.event == *event) {
                        c.attempts = *attempt;
                        c.due_at = *t;
                    }
                }
                None => self.callbacks.retain(|c| c.event != *event),
            },
            RequestEvent::LaunchStarted { attempt, count, provider, .. } => {
                if !self.launch.tried.contains(provider) {
                    self.launch.tried.push(provider.clone());
                }
                self.launch.attempts = *attempt;
                self.launch.started_at = Some(at);
                self.launch.outstanding = Some((*attempt, *count));
                self.launch.retry_at = None;
            }
            RequestEvent::MachinesLaunched { machines, shortfall, filling, .. } => {
                if filling.is_none() {
                    self.launch.outstanding = None;
                }
                self.launch.filling = filling.clone();
                for o in machines {
                    self.add_machine(o);
                }
                if let Some(s) = shortfall {
                    self.launch.last_error = Some(s.clone());
                }
            }
            RequestEvent::LaunchFailed { code, message, retryable, retry_at, .. } => {
                self.launch.outstanding = None;
                self.launch.exhausted |= !retryable;
                self.launch.retry_at = *retry_at;
                self.launch.last_error = Some(format!("{code}: {message}"));
            }
            RequestEvent::ProviderChanged { to, .. } => {
                self.launch.searched.retain(|p| p != to);
                self.launch.failed_over_at = Some(at);
                self.provider = Some(to.clone());
                self.launch.retry_at = None;
                self.launch.exhausted = false;
            }
            RequestEvent::FormerProviderSearched { provider } => {
                if !self.launch.searched.contains(provider) {
                    self.launch.searched.push(provider.clone());
                }
            }
            RequestEvent::LaunchReleased { .. } => {
                self.launch.outstanding = None;
                self.launch.filling = None;
            }
            RequestEvent::MachineAdopted { machine } => self.add_machine(machine),
            RequestEvent::MachineChanged { machine } => {
                if let Some(m) = self.machine_mut(&machine.id) {
                    m.absorb(machine);
                }
            }
            RequestEvent::MachineGone { machine_id } => {
                if let Some(m) = self.machine_mut(machine_id) {
                    m.set_status(MachineStatus::Terminated);
                }
            }
            RequestEvent::MachineFailed { machine_id, message } => {
                if let Some(m) = self.machine_mut(machine_id) {
                    m.fail(message.clone());
                }
            }
            RequestEvent::TerminationRequested { machine_ids, reason } => {
                let provision = self.kind == RequestKind::Provision;
                for id in machine_ids {
                    if let Some(m) = self.machine_mut(id) {
                        m.mark_terminating();
                        if provision {
                            m.fail(reason.clone());
                        }
                    }
                }
            }
            RequestEvent::MachineReturned { machine_id, return_request } => {
                if let Some(m) = self.machine_mut(machine_id) {
                    m.mark_returned(return_request.clone());
                }
            }
            RequestEvent::TerminationRefused { machine_id, reason } => {
                if let Some(m) = self.machine_mut(machine_id) {
                    m.refuse_termination(reason.clone());
                }
            }
        }
    }

    fn add_machine(&mut self, o: &MachineObservation) {
        match self.machine_mut(&o.id) {
            Some(m) => {
                m.absorb(o);
            }
            None => self.machines.push(Machine::from_observation(o)),
        }
    }

    fn machine_mut(&mut self, id: &MachineId) -> Option<&mut Machine> {
        self.machines.iter_mut().find(|m| m.id() == id)
    }

    fn transition(&mut self, now: Timestamp, to: RequestState, error: Option<String>) -> Result<(), DomainError> {
        if !self.state.can_become(to) {
            return Err(DomainError::IllegalTransition {
                request_id: self.id.to_string(),
                from: self.state.to_string(),
                to: to.to_string(),
            });
        }
        let from = self.state;
        self.record(now, RequestEvent::StateChanged { from, to, error });
        Ok(())
    }

    /// Asks for termination of every machine in `ids` that is not already going.
    fn request_termination(&mut self, now: Timestamp, ids: Vec<MachineId>, reason: String) {
        if !ids.is_empty() {
            self.record(now, RequestEvent::TerminationRequested { machine_ids: ids, reason });
        }
    }

    fn live_machine_ids(&self) -> Vec<MachineId> {
        self.machines.iter().filter(|m| !m.status().is_going()).map(|m| m.id().clone()).collect()
    }

    /// Records that the provider refused to terminate `machine` because nothing proves ohf
    /// owns it: the machine fails with `reason` and is not asked for again.
    pub fn refuse_termination(&mut self, machine: &MachineId, reason: String, now: Timestamp) {
        if self.machines.iter().any(|m| m.id() == machine && m.is_terminating()) {
            self.record(now, RequestEvent::TerminationRefused { machine_id: machine.clone(), reason });
        }
    }

    /// Cancels the request: no further launches, and what was launched is terminated.
    pub fn cancel(&mut self, now: Timestamp) -> Result<(), DomainError> {
        // A return request can be cancelled before it starts, or while it drains (nothing
        // has been terminated then).
        if self.kind == RequestKind::Return && self.state != RequestState::Pending && !self.draining(now) {
            return Err(DomainError::IllegalTransition {
                request_id: self.id.to_string(),
                from: self.state.to_string(),
                to: RequestState::Cancelled.to_string(),
            });
        }
        self.transition(now, RequestState::Cancelled, Some("request cancelled".into()))?;
        if self.kind == RequestKind::Provision {
            let ids = self.live_machine_ids();
            self.request_termination(now, ids, "request cancelled; machine terminated".into());
        }
        Ok(())
    }

    /// Whether this return request is draining at `now`: its machines are announced to the
    /// scheduler and nothing is terminated before [`Request::drain_until`].
    pub fn draining(&self, now: Timestamp) -> bool {
        self.kind == RequestKind::Return && !self.state.is_terminal() && self.drain_until.is_some_and(|t| now < t)
    }

    /// Whether the request is in the middle of a change at `now`, and the seconds after which
    /// a caller may look again: a launch call under way or a fleet filling, machines being
    /// terminated, a return draining (its seconds left). `None` when nothing is under way.
    pub fn busy_for(&self, now: Timestamp) -> Option<u64> {
        if self.draining(now) {
            let left = self.drain_until.map_or(0, |t| t.unix_millis().saturating_sub(now.unix_millis()));
            return Some(u64::try_from((left + 999) / 1000).unwrap_or(1).max(1));
        }
        let launching =
            !self.state.is_terminal() && (self.launch.outstanding.is_some() || self.launch.filling.is_some());
        let terminating = self.machines.iter().any(|m| m.is_terminating() && m.status() != MachineStatus::Terminated);
        (launching || terminating).then_some(BUSY_RETRY_SECS)
    }

    /// When a draining return request terminates its machines.
    pub fn drain_until(&self) -> Option<Timestamp> {
        self.drain_until
    }

    /// Ends a drain now (the caller forced the return): the next step terminates.
    pub fn end_drain(&mut self, reason: String, now: Timestamp) {
        if self.draining(now) {
            self.record(now, RequestEvent::DrainEnded { reason });
        }
    }

    /// A machine this provision request holds is no longer returned by `return_request` (it
    /// was cancelled while it drained).
    pub fn cancel_return_of(&mut self, machine: &MachineId, return_request: &RequestId, now: Timestamp) {
        if self.machines.iter().any(|m| m.id() == machine && m.returned_by() == Some(return_request)) {
            self.record(
                now,
                RequestEvent::MachineReturnCancelled {
                    machine_id: machine.clone(),
                    return_request: return_request.clone(),
                },
            );
        }
    }

    /// Records that `machine` was handed back by `return_request`.
    pub fn mark_returned(&mut self, machine: &MachineId, return_request: &RequestId, now: Timestamp) {
        if self.machines.iter().any(|m| m.id() == machine && m.returned_by().is_none()) {
            self.record(
                now,
                RequestEvent::MachineReturned { machine_id: machine.clone(), return_request: return_request.clone() },
            );
        }
    }

    /// One reconcile decision: takes in what the cloud reports (`observations` of the
    /// providers in `described`), moves the state machine, and says which cloud calls to
    /// make. The events are recorded before any call is made, so a crash between the two is
    /// repaired by the next step: launches carry the same client token and are not repeated.
    pub fn reconcile(
        &mut self,
        observations: &[MachineObservation],
        described: &[ProviderName],
        now: Timestamp,
        policy: &LifecyclePolicy,
    ) -> Decision {
        let seen: Vec<&MachineObservation> = observations.iter().collect();
        self.reconcile_seen(&seen, described, now, policy)
    }

    /// [`Request::reconcile`] over observations already picked out for this request (those of
    /// its id or of its machines; others are passed over all the same): a cycle over many
    /// requests indexes what it saw once instead of handing each request everything.
    pub fn reconcile_seen(
        &mut self,
        observations: &[&MachineObservation],
        described: &[ProviderName],
        now: Timestamp,
        policy: &LifecyclePolicy,
    ) -> Decision {
        self.observe(observations, described, now, policy);
        if !self.state.is_terminal() {
            self.note_former_searches(described, now);
        }
        if self.state == RequestState::Pending {
            // Pending → InProgress is always legal.
            let _ = self.transition(now, RequestState::InProgress, None);
        }
        let mut decision = Decision::default();
        if !self.state.is_terminal() && now >= self.deadline() {
            self.time_out(now);
        } else if !self.state.is_terminal() {
            match self.kind {
                RequestKind::Provision => {
                    let seen = self.provider.as_ref().is_some_and(|p| described.contains(p));
                    decision.launch = self.advance_provision(now, policy, seen);
                }
                RequestKind::Return => self.advance_return(now),
            }
        }
        if self.state.is_terminal()
            && self.state != RequestState::Completed
            && let (Some(resource), Some((attempt, _)), Some(provider)) =
                (&self.launch.filling, self.launch.outstanding, &self.provider)
        {
            decision.release = Some(Release { attempt, provider: provider.clone(), resource: resource.clone() });
        }
        decision.terminate = self
            .machines
            .iter()
            .filter(|m| m.awaits_termination())
            .map(|m| (m.provider().clone(), m.id().clone()))
            .collect();
        decision
    }

    /// Whether the request's machines are still searched for on `provider` (by the request's
    /// tag): its current provider, or one it failed over from that has not answered a search
    /// since the failover settled.
    pub fn searched_on(&self, provider: &ProviderName) -> bool {
        self.provider.as_ref() == Some(provider)
            || (self.launch.tried.contains(provider) && !self.launch.searched.contains(provider))
    }

    /// Records the providers failed over from that answered this search, once the failover has
    /// settled: they are searched no more.
    fn note_former_searches(&mut self, described: &[ProviderName], now: Timestamp) {
        let settled = self.launch.failed_over_at.is_none_or(|at| now >= at.plus_secs(FORMER_PROVIDER_SEARCH_SECS));
        if !settled || self.kind != RequestKind::Provision {
            return;
        }
        let answered: Vec<ProviderName> = self
            .launch
            .tried
            .iter()
            .filter(|p| self.provider.as_ref() != Some(*p) && self.searched_on(p) && described.contains(p))
            .cloned()
            .collect();
        for provider in answered {
            self.record(now, RequestEvent::FormerProviderSearched { provider });
        }
    }

    fn observe(
        &mut self,
        observations: &[&MachineObservation],
        described: &[ProviderName],
        now: Timestamp,
        policy: &LifecyclePolicy,
    ) {
        let mine: Vec<&MachineObservation> = observations
            .iter()
            .copied()
            .filter(|o| o.request_id.as_ref() == Some(&self.id) || self.machines.iter().any(|m| m.id() == &o.id))
            .collect();
        for o in &mine {
            match self.machines.iter().find(|m| m.id() == &o.id) {
                Some(m) if m.differs_from(o) => {
                    self.record(now, RequestEvent::MachineChanged { machine: (*o).clone() });
                }
                Some(_) => {}
                None if self.kind == RequestKind::Provision => {
                    self.record(now, RequestEvent::MachineAdopted { machine: (*o).clone() });
                }
                None => {}
            }
        }
        let gone: Vec<MachineId> = self
            .machines
            .iter()
            .filter(|m| m.status() != MachineStatus::Terminated && described.contains(m.provider()))
            .filter(|m| !mine.iter().any(|o| &o.id == m.id()))
            .filter(|m| self.kind == RequestKind::Provision || m.failure().is_none())
            .map(|m| m.id().clone())
            .collect();
        for machine_id in gone {
            self.record(now, RequestEvent::MachineGone { machine_id });
        }
        if self.kind == RequestKind::Provision && !self.state.is_terminal() {
            self.fail_broken_machines(now, policy);
        }
    }

    fn fail_broken_machines(&mut self, now: Timestamp, policy: &LifecyclePolicy) {
        let mut failed = Vec::new();
        let mut stuck = Vec::new();
        for m in self.machines.iter().filter(|m| m.failure().is_none() && !m.is_terminating()) {
            match m.status() {
                MachineStatus::Pending => {
                    let since = m.launch_time().unwrap_or(self.created_at);
                    if let Some(limit) = policy.pending_timeout_secs
                        && now.secs_since(since) >= i64::from(limit)
                    {
                        stuck.push((m.id().clone(), limit));
                    }
                }
                MachineStatus::Running => {}
                other => failed.push((m.id().clone(), format!("instance {other} before the request completed"))),
            }
        }
        for (machine_id, message) in failed {
            self.record(now, RequestEvent::MachineFailed { machine_id, message });
        }
        for (id, limit) in stuck {
            let reason = format!("instance still pending after {limit} s; terminated");
            self.request_termination(now, vec![id], reason);
        }
    }

    fn deadline(&self) -> Timestamp {
        self.created_at.plus_secs(i64::from(self.timeout.get()))
    }

    fn time_out(&mut self, now: Timestamp) {
        let running = self.machines.iter().filter(|m| m.is_alive() && m.status() == MachineStatus::Running).count();
        let message = match self.kind {
            RequestKind::Provision => format!(
                "request timed out after {} s with {running} of {} machines running",
                self.timeout.get(),
                self.count
            ),
            RequestKind::Return => format!("return timed out after {} s", self.timeout.get()),
        };
        let _ = self.transition(now, RequestState::Timeout, Some(message));
        if self.kind == RequestKind::Provision {
            let ids = self.live_machine_ids();
            self.request_termination(now, ids, "request timed out; machine terminated".into());
        }
    }

    /// `seen`: the provider answered this cycle's describe, so every machine of the request
    /// that exists is known. A new launch attempt is started only then (or for the first
    /// attempt, when nothing can exist yet); repeating the outstanding attempt is always safe.
    fn advance_provision(&mut self, now: Timestamp, policy: &LifecyclePolicy, seen: bool) -> Option<LaunchOrder> {
        let provider = self.provider.clone()?;
        let alive: Vec<&Machine> = self.machines.iter().filter(|m| m.is_alive()).collect();
        let running: Vec<MachineId> =
            alive.iter().filter(|m| m.status() == MachineStatus::Running).map(|m| m.id().clone()).collect();
        let pending = alive.len() - running.len();
        let alive_count = alive.len() as u32;

        if running.len() as u32 >= self.count {
            let surplus = running[self.count as usize..].to_vec();
            self.request_termination(now, surplus, "surplus machine; terminated".into());
            let _ = self.transition(now, RequestState::Completed, None);
            return None;
        }
        if let Some((attempt, count)) = self.launch.outstanding {
            let token = ClientToken::for_launch(&self.id, attempt);
            let started_at = self.launch.started_at.unwrap_or(self.created_at);
            let following = self.launch.filling.clone();
            return Some(LaunchOrder { attempt, count, token, provider, following, started_at });
        }
        let deficit = self.count.saturating_sub(alive_count);
        if deficit == 0 {
            return None;
        }
        let can_launch = !self.launch.exhausted && self.launch.attempts < policy.max_launch_attempts;
        if can_launch {
            if self.launch.retry_at.is_some_and(|t| now < t) || (self.launch.attempts > 0 && !seen) {
                return None;
            }
            let attempt = self.launch.attempts + 1;
            let token = ClientToken::for_launch(&self.id, attempt);
            self.record(
                now,
                RequestEvent::LaunchStarted {
                    attempt,
                    count: deficit,
                    token: token.clone(),
                    provider: provider.clone(),
                },
            );
            return Some(LaunchOrder { attempt, count: deficit, token, provider, following: None, started_at: now });
        }
        if pending > 0 {
            return None;
        }
        let why = self.launch.last_error.clone().unwrap_or_else(|| "machines failed".into());
        if running.is_empty() {
            let _ = self.transition(now, RequestState::Failed, Some(why));
        } else {
            let message = format!("{} of {} machines running; {why}", running.len(), self.count);
            match policy.partial {
                PartialPolicy::Keep => {
                    let _ = self.transition(now, RequestState::PartialSuccess, Some(message));
                }
                PartialPolicy::Cleanup => {
                    let _ = self.transition(now, RequestState::Failed, Some(message));
                    self.request_termination(now, running, "request failed; partial machines cleaned up".into());
                }
            }
        }
        None
    }

    fn advance_return(&mut self, now: Timestamp) {
        if self.draining(now) {
            return;
        }
        let to_start: Vec<MachineId> = self
            .machines
            .iter()
            .filter(|m| m.failure().is_none() && !m.is_terminating() && !m.status().is_going())
            .map(|m| m.id().clone())
            .collect();
        self.request_termination(now, to_start, "returned".into());
        let unfinished = self.machines.iter().any(|m| m.failure().is_none() && m.status() != MachineStatus::Terminated);
        if unfinished {
            return;
        }
        let failed = self.machines.iter().filter(|m| m.failure().is_some()).count();
        if failed == 0 {
            let _ = self.transition(now, RequestState::Completed, None);
        } else {
            let message = format!("{failed} of {} machines could not be returned", self.machines.len());
            let _ = self.transition(now, RequestState::Failed, Some(message));
        }
    }

    /// Records the outcome of launch `attempt`.
    pub fn record_launch(
        &mut self,
        attempt: u32,
        machines: Vec<MachineObservation>,
        shortfall: Option<String>,
        now: Timestamp,
    ) {
        self.record(now, RequestEvent::MachinesLaunched { attempt, machines, shortfall, filling: None });
    }

    /// Records that launch `attempt` placed a cloud request (`resource`) that is still
    /// delivering, with the machines it holds so far; nothing when nothing changed since the
    /// last look.
    pub fn record_filling(
        &mut self,
        attempt: u32,
        resource: String,
        machines: Vec<MachineObservation>,
        now: Timestamp,
    ) {
        let known = |o: &MachineObservation| self.machines.iter().any(|m| m.id() == &o.id && !m.differs_from(o));
        if self.launch.filling.as_ref() == Some(&resource) && machines.iter().all(known) {
            return;
        }
        self.record(
            now,
            RequestEvent::MachinesLaunched { attempt, machines, shortfall: None, filling: Some(resource) },
        );
    }

    /// Records that the cloud request of `attempt` was stopped.
    pub fn record_release(&mut self, attempt: u32, resource: String, now: Timestamp) {
        self.record(now, RequestEvent::LaunchReleased { attempt, resource });
    }

    /// Records a refused launch `attempt`.
    pub fn record_launch_failure(
        &mut self,
        attempt: u32,
        code: String,
        message: String,
        retryable: bool,
        now: Timestamp,
        policy: &LifecyclePolicy,
    ) {
        let retry_at = retryable.then(|| now.plus_secs(i64::from(policy.launch_backoff_secs(attempt))));
        self.record(now, RequestEvent::LaunchFailed { attempt, code, message, retryable, retry_at });
    }

    /// Moves the request's next launches to provider `to` after a failure on its current one.
    /// Nothing happens once the request has ended, while an attempt is outstanding, or when
    /// `to` is the current provider.
    pub fn fail_over(&mut self, to: ProviderName, reason: String, now: Timestamp) -> bool {
        let Some(from) = self.provider.clone() else { return false };
        if self.state.is_terminal()
            || self.kind != RequestKind::Provision
            || self.launch.outstanding.is_some()
            || from == to
        {
            return false;
        }
        self.record(now, RequestEvent::ProviderChanged { from, to, reason });
        true
    }

    /// Every provider a launch of this request was started on, oldest first.
    pub fn providers_tried(&self) -> &[ProviderName] {
        &self.launch.tried
    }

    /// True while the reconcile step has anything left to do for this request.
    pub fn needs_work(&self) -> bool {
        self.needs_cloud_work() || !self.callbacks.is_empty()
    }

    /// Whether the request still has work in the cloud: it is not finished, a fleet or group
    /// of it still fills, or machines of it are still being terminated.
    pub fn needs_cloud_work(&self) -> bool {
        !self.state.is_terminal()
            || (self.state != RequestState::Completed && self.launch.filling.is_some())
            || self.machines.iter().any(|m| m.is_terminating() && m.status() != MachineStatus::Terminated)
    }

    /// Callbacks owed to the caller.
    pub fn pending_callbacks(&self) -> &[PendingCallback] {
        &self.callbacks
    }

    /// The callbacks owed whose try is due at `now`.
    pub fn due_callbacks(&self, now: Timestamp) -> Vec<PendingCallback> {
        self.callbacks.iter().filter(|c| c.due_at <= now).cloned().collect()
    }

    /// Records one try of callback `c` to `url`: delivered, or failed and tried again after
    /// 5 s × 2^(tries−1) (at most 5 min) until [`CALLBACK_ATTEMPTS`] tries have failed.
    pub fn record_callback(&mut self, c: &PendingCallback, url: &str, outcome: Result<(), String>, now: Timestamp) {
        let attempt = c.attempts + 1;
        let event = match outcome {
            Ok(()) => RequestEvent::CallbackDelivered { event: c.event, url: url.to_owned(), attempts: attempt },
            Err(error) => RequestEvent::CallbackFailed {
                event: c.event,
                url: url.to_owned(),
                attempt,
                error,
                retry_at: (attempt < CALLBACK_ATTEMPTS).then(|| now.plus_secs((5i64 << (attempt - 1).min(6)).min(300))),
            },
        };
        self.record(now, event);
    }

    /// Machines of the template this request holds or has reserved, for capacity checks.
    pub fn capacity_held(&self) -> u32 {
        match (self.kind, self.state.is_terminal()) {
            (RequestKind::Return, _) => 0,
            (RequestKind::Provision, false) => {
                self.count.max(self.machines.iter().filter(|m| m.is_held()).count() as u32)
            }
            (RequestKind::Provision, true) => self.machines.iter().filter(|m| m.is_held()).count() as u32,
        }
    }

    /// Host Factory's request status: `running`, `complete` or `complete_with_error`.
    pub fn hf_status(&self) -> &'static str {
        match self.state {
            RequestState::Pending | RequestState::InProgress => "running",
            RequestState::Completed => "complete",
            _ => "complete_with_error",
        }
    }

    /// Host Factory's verdict on one of this request's machines, with its message.
    pub fn hf_machine_result(&self, m: &Machine) -> (MachineResult, String) {
        if let Some(why) = m.failure() {
            return (MachineResult::Fail, why.to_owned());
        }
        match (self.kind, m.status()) {
            (RequestKind::Provision, MachineStatus::Running) => (MachineResult::Succeed, String::new()),
            (RequestKind::Provision, MachineStatus::Pending) if !self.state.is_terminal() => {
                (MachineResult::Executing, String::new())
            }
            (RequestKind::Provision, status) => (MachineResult::Fail, format!("instance {status}")),
            (RequestKind::Return, MachineStatus::Terminated) => (MachineResult::Succeed, String::new()),
            (RequestKind::Return, _) => (MachineResult::Executing, String::new()),
        }
    }

    /// Clears the recorded events after they are stored at `new_version`.
    pub fn mark_committed(&mut self, new_version: u64) {
        self.version = new_version;
        self.changes.clear();
    }

    /// The events recorded since this copy was read, oldest first.
    pub fn uncommitted(&self) -> &[EventEnvelope] {
        &self.changes
    }

    /// Names `who` (the caller of the command at hand) as the maker of the events recorded since
    /// this copy was read that name no one yet.
    pub fn attribute_to(&mut self, who: Option<&str>) {
        let Some(who) = who else { return };
        for e in self.changes.iter_mut().filter(|e| e.by.is_none()) {
            e.by = Some(who.to_owned());
        }
    }

    /// The request's id.
    pub fn id(&self) -> &RequestId {
        &self.id
    }
    /// Provision or return.
    pub fn kind(&self) -> RequestKind {
        self.kind
    }
    /// Its state.
    pub fn state(&self) -> RequestState {
        self.state
    }
    /// The template (provision requests).
    pub fn template(&self) -> Option<&Template> {
        self.template.as_ref()
    }
    /// Machines asked for (provision) or named (return).
    pub fn count(&self) -> u32 {
        self.count
    }
    /// How long it may take.
    pub fn timeout(&self) -> TimeoutSecs {
        self.timeout
    }
    /// Tags for its machines.
    pub fn tags(&self) -> &Tags {
        &self.tags
    }
    /// The caller's notes.
    pub fn metadata(&self) -> &BTreeMap<String, Value> {
        &self.metadata
    }
    /// Its priority, as asked.
    pub fn priority(&self) -> Priority {
        self.priority
    }
    /// The priority work is chosen by: the one asked for, raised to high when the metadata
    /// marks the request urgent (`urgency` critical, urgent or high, as the request-management
    /// seed's prioritisation example does, or an `sla` of at most an hour such as
    /// `15-minutes`).
    pub fn effective_priority(&self) -> Priority {
        let text = |key: &str| self.metadata.get(key).and_then(Value::as_str).map(str::to_ascii_lowercase);
        let urgent = text("urgency").is_some_and(|u| matches!(u.as_str(), "critical" | "urgent" | "high"));
        let short_sla = text("sla").and_then(|s| sla_minutes(&s)).is_some_and(|m| m <= 60);
        if urgent || short_sla { Priority::High } else { self.priority }
    }
    /// The template its launches use: its own, with the spot price limit the request's
    /// `metadata["max-spot-price"]` sets when that is lower than the template's.
    pub fn launch_template(&self) -> Option<Template> {
        let template = self.template.clone()?;
        Some(match crate::spot_price_limit(&self.metadata) {
            Ok(Some(limit)) => template.limited_to_spot_price(limit),
            _ => template,
        })
    }
    /// Who asked for it (a token's name, the OS user), when known.
    pub fn requester(&self) -> Option<&str> {
        self.requester.as_deref()
    }
    /// Zones to place machines in.
    pub fn zones(&self) -> &[String] {
        &self.zones
    }
    /// The provider new launches go to.
    pub fn provider(&self) -> Option<&ProviderName> {
        self.provider.as_ref()
    }
    /// A return that terminates at once.
    pub fn force(&self) -> bool {
        self.force
    }
    /// When it was made.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }
    /// When it last changed.
    pub fn updated_at(&self) -> Timestamp {
        self.updated_at
    }
    /// When it reached a final state.
    pub fn completed_at(&self) -> Option<Timestamp> {
        self.completed_at
    }
    /// Why it failed, when it did.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
    /// Its machines.
    pub fn machines(&self) -> &[Machine] {
        &self.machines
    }
    /// For a return request: the provision request that held each machine.
    pub fn holders(&self) -> &BTreeMap<MachineId, RequestId> {
        &self.holders
    }
    /// Launch calls made so far.
    pub fn launch_attempts(&self) -> u32 {
        self.launch.attempts
    }
    /// The version stored (compare-and-set).
    pub fn version(&self) -> u64 {
        self.version
    }
    /// The sequence number of its next event.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

/// Minutes in an SLA such as `15-minutes`, `30 min`, `45m` or `1-hour`.
fn sla_minutes(sla: &str) -> Option<u64> {
    let digits: String = sla.chars().take_while(char::is_ascii_digit).collect();
    let n: u64 = digits.parse().ok()?;
    let unit = sla[digits.len()..].trim_start_matches(['-', ' ']);
    match unit {
        u if u.starts_with('m') => Some(n),
        u if u.starts_with('h') => n.checked_mul(60),
        _ => None,
    }
}
