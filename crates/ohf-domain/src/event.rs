use serde::{Deserialize, Serialize};

use crate::request::Creation;
use crate::{ClientToken, MachineId, MachineObservation, ProviderName, RequestId, RequestState, Timestamp};

/// Everything that happens to a request. Applying a request's events in order rebuilds it, and
/// the stored events are its audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RequestEvent {
    /// The request was made.
    Created {
        /// What it started with.
        creation: Box<Creation>,
    },
    /// The request moved to another state.
    StateChanged {
        /// The state before.
        from: RequestState,
        /// The state after.
        to: RequestState,
        /// Why, when it failed.
        error: Option<String>,
    },
    /// A launch call was made (its outcome follows).
    LaunchStarted {
        /// The attempt, from 1.
        attempt: u32,
        /// Machines asked for.
        count: u32,
        /// The idempotency token of the call.
        token: ClientToken,
        /// The provider called.
        provider: ProviderName,
    },
    /// A launch delivered machines.
    MachinesLaunched {
        /// The attempt.
        attempt: u32,
        /// The machines delivered.
        machines: Vec<MachineObservation>,
        /// Why fewer came than asked, when fewer came.
        shortfall: Option<String>,
        /// The cloud request (fleet, group) that goes on delivering this attempt's machines;
        /// the attempt stays outstanding and is followed each cycle until it is filled.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filling: Option<String>,
    },
    /// The cloud request of an attempt was stopped with its machines: the request ended
    /// without completing.
    LaunchReleased {
        /// The attempt.
        attempt: u32,
        /// The fleet or group stopped.
        resource: String,
    },
    /// New launches of the request go to another provider: the one it was on failed (failover).
    /// Machines already launched stay with the provider that holds them.
    ProviderChanged {
        /// The provider that failed.
        from: ProviderName,
        /// The provider that takes over.
        to: ProviderName,
        /// The failure.
        reason: String,
    },
    /// A provider the request failed over from answered a search for the request's machines
    /// after the failover had settled ([`crate::request::FORMER_PROVIDER_SEARCH_SECS`]): the
    /// request's machines are searched for there no more (those found there are followed by id).
    FormerProviderSearched {
        /// The provider.
        provider: ProviderName,
    },
    /// A launch call failed.
    LaunchFailed {
        /// The attempt.
        attempt: u32,
        /// The provider's error code.
        code: String,
        /// The provider's message.
        message: String,
        /// Whether another attempt may succeed.
        retryable: bool,
        /// When the next attempt may be made.
        retry_at: Option<Timestamp>,
    },
    /// A machine of the request found in the cloud (a lost launch answer) was taken in.
    MachineAdopted {
        /// The machine as seen.
        machine: MachineObservation,
    },
    /// A machine's state or addresses changed.
    MachineChanged {
        /// The machine as seen now.
        machine: MachineObservation,
    },
    /// A machine is no longer in the cloud.
    MachineGone {
        /// The machine.
        machine_id: MachineId,
    },
    /// A machine failed (it stopped, or did not start in time).
    MachineFailed {
        /// The machine.
        machine_id: MachineId,
        /// Why.
        message: String,
    },
    /// Termination of machines was asked of the cloud.
    TerminationRequested {
        /// The machines.
        machine_ids: Vec<MachineId>,
        /// Why (returned, cancelled, timed out, surplus).
        reason: String,
    },
    /// A machine of this provision request was returned by a return request.
    MachineReturned {
        /// The machine.
        machine_id: MachineId,
        /// The return request.
        return_request: RequestId,
    },
    /// A return request's drain ended before its time: its machines are terminated now.
    DrainEnded {
        /// Why (the caller forced the return).
        reason: String,
    },
    /// A machine of this provision request is no longer being returned: the draining return
    /// request that named it was cancelled.
    MachineReturnCancelled {
        /// The machine.
        machine_id: MachineId,
        /// The cancelled return request.
        return_request: RequestId,
    },
    /// The caller was told, at `metadata.callback_url`, that the request reached `event`.
    CallbackDelivered {
        /// The state reported.
        event: RequestState,
        /// Where it was posted.
        url: String,
        /// Tries it took.
        attempts: u32,
    },
    /// Telling the caller failed: tried again at `retry_at`, or given up when it is absent.
    CallbackFailed {
        /// The state to report.
        event: RequestState,
        /// Where it was posted.
        url: String,
        /// The try that failed, from 1.
        attempt: u32,
        /// Why.
        error: String,
        /// When the next try is due.
        retry_at: Option<Timestamp>,
    },
    /// The provider left a machine alone: its tags do not prove that this installation and
    /// request own it. It fails with the reason and is never asked for again.
    TerminationRefused {
        /// The machine.
        machine_id: MachineId,
        /// Why it was left alone.
        reason: String,
    },
}

impl RequestEvent {
    /// A short name for logs and tables.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Created { .. } => "created",
            Self::StateChanged { .. } => "state_changed",
            Self::LaunchStarted { .. } => "launch_started",
            Self::MachinesLaunched { .. } => "machines_launched",
            Self::LaunchFailed { .. } => "launch_failed",
            Self::ProviderChanged { .. } => "provider_changed",
            Self::FormerProviderSearched { .. } => "former_provider_searched",
            Self::LaunchReleased { .. } => "launch_released",
            Self::MachineAdopted { .. } => "machine_adopted",
            Self::MachineChanged { .. } => "machine_changed",
            Self::MachineGone { .. } => "machine_gone",
            Self::MachineFailed { .. } => "machine_failed",
            Self::TerminationRequested { .. } => "termination_requested",
            Self::MachineReturned { .. } => "machine_returned",
            Self::TerminationRefused { .. } => "termination_refused",
            Self::DrainEnded { .. } => "drain_ended",
            Self::MachineReturnCancelled { .. } => "machine_return_cancelled",
            Self::CallbackDelivered { .. } => "callback_delivered",
            Self::CallbackFailed { .. } => "callback_failed",
        }
    }
}

/// An event with the request it belongs to, its place in that request's history and its time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    /// The request.
    pub request_id: RequestId,
    /// Its place in the request's history, from 0.
    pub seq: u64,
    /// When it happened.
    pub at: Timestamp,
    /// What happened.
    pub event: RequestEvent,
    /// Who made it happen: the caller of the command that recorded it (a token's name, the OS
    /// user, Host Factory's user); none for the lifecycle's own steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}
