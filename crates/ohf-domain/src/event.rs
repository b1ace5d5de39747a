use serde::{Deserialize, Serialize};

use crate::request::Creation;
use crate::{ClientToken, MachineId, MachineObservation, ProviderName, RequestId, RequestState, Timestamp};

/// Everything that happens to a request. Applying a request's events in order rebuilds it, and
/// the stored events are its audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RequestEvent {
    Created {
        creation: Box<Creation>,
    },
    StateChanged {
        from: RequestState,
        to: RequestState,
        error: Option<String>,
    },
    LaunchStarted {
        attempt: u32,
        count: u32,
        token: ClientToken,
        provider: ProviderName,
    },
    MachinesLaunched {
        attempt: u32,
        machines: Vec<MachineObservation>,
        shortfall: Option<String>,
        /// The cloud request (fleet, group) that goes on delivering this attempt's machines;
        /// the attempt stays outstanding and is followed each cycle until it is filled.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filling: Option<String>,
    },
    /// The cloud request of an attempt was stopped with its machines: the request ended
    /// without completing.
    LaunchReleased {
        attempt: u32,
        resource: String,
    },
    /// New launches of the request go to another provider: the one it was on failed (failover).
    /// Machines already launched stay with the provider that holds them.
    ProviderChanged {
        from: ProviderName,
        to: ProviderName,
        reason: String,
    },
    LaunchFailed {
        attempt: u32,
        code: String,
        message: String,
        retryable: bool,
        retry_at: Option<Timestamp>,
    },
    MachineAdopted {
        machine: MachineObservation,
    },
    MachineChanged {
        machine: MachineObservation,
    },
    MachineGone {
        machine_id: MachineId,
    },
    MachineFailed {
        machine_id: MachineId,
        message: String,
    },
    TerminationRequested {
        machine_ids: Vec<MachineId>,
        reason: String,
    },
    MachineReturned {
        machine_id: MachineId,
        return_request: RequestId,
    },
    /// The provider left a machine alone: its tags do not prove that this installation and
    /// request own it. It fails with the reason and is never asked for again.
    TerminationRefused {
        machine_id: MachineId,
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
            Self::LaunchReleased { .. } => "launch_released",
            Self::MachineAdopted { .. } => "machine_adopted",
            Self::MachineChanged { .. } => "machine_changed",
            Self::MachineGone { .. } => "machine_gone",
            Self::MachineFailed { .. } => "machine_failed",
            Self::TerminationRequested { .. } => "termination_requested",
            Self::MachineReturned { .. } => "machine_returned",
            Self::TerminationRefused { .. } => "termination_refused",
        }
    }
}

/// An event with the request it belongs to, its place in that request's history and its time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub request_id: RequestId,
    pub seq: u64,
    pub at: Timestamp,
    pub event: RequestEvent,
}
