//! Pure types and rules of ohf: templates, provision and return requests, machines, the
//! request state machine, validation, error codes and domain events.
//!
//! This crate performs no I/O and knows no async runtime.

pub mod error;
pub mod event;
pub mod ids;
pub mod instance_types;
pub mod limits;
pub mod machine;
pub mod request;
pub mod template;
#[cfg(any(test, feature = "testkit"))]
pub mod testing;
pub mod time;
pub mod values;

pub use error::{DomainError, ErrorCode};
pub use event::{EventEnvelope, RequestEvent};
pub use ids::{ClientToken, MachineId, ProviderName, RequestId, TemplateId};
pub use machine::{Machine, MachineObservation, MachineResult, MachineStatus};
pub use request::{
    Decision, LifecyclePolicy, PartialPolicy, ProvisionSpec, Request, RequestKind, RequestState, ReturnedMachine,
};
pub use template::{PriceType, ProviderApi, Template};
pub use time::Timestamp;
pub use values::{MachineCount, Priority, Tags, TimeoutSecs};
