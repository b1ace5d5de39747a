#![warn(missing_docs)]
//! Pure types and rules of ohf: templates, provision and return requests, machines, the
//! request state machine, validation, error codes and domain events.
//!
//! This crate performs no I/O and knows no async runtime.

/// Error codes and the business rules' refusals.
pub mod error;
/// Everything that happens to a request.
pub mod event;
/// Identifiers, each checked when made.
pub mod ids;
pub mod instance_types;
pub mod limits;
/// Machines and what providers observe of them.
pub mod machine;
pub mod request;
pub mod requirements;
pub mod template;
#[cfg(any(test, feature = "testkit"))]
pub mod testing;
/// Time in milliseconds since the Unix epoch.
pub mod time;
/// Validated values: machine counts, timeouts, tags, priorities.
pub mod values;

pub use error::{DomainError, ErrorCode};
pub use event::{EventEnvelope, RequestEvent};
pub use ids::{ClientToken, MachineId, ProviderName, RequestId, TemplateId};
pub use machine::{Machine, MachineObservation, MachineResult, MachineStatus};
pub use request::{
    CALLBACK_ATTEMPTS, CallbackSpec, DEFAULT_CALLBACK_EVENTS, Decision, LifecyclePolicy, PartialPolicy,
    PendingCallback, ProvisionSpec, Request, RequestKind, RequestState, ReturnedMachine,
};
pub use template::{PriceType, ProviderApi, Template};
pub use time::Timestamp;
pub use values::{MAX_SPOT_PRICE_KEY, MachineCount, Priority, Tags, TimeoutSecs, check_requester, spot_price_limit};
