#![warn(missing_docs)]
//! The application core of ohf: ports, typed commands and queries with one handler each, the
//! lifecycle that advances requests, the providers and their strategy, and the event bus.
//!
//! - [`commands`] and [`queries`]: the messages, sent with [`App::execute`] and [`App::ask`].
//! - [`lifecycle`]: the reconcile step, the orphan sweep and the daemon's [`Worker`].
//! - [`providers`]: the provider registry and the provider-strategy use cases.
//! - [`ports`]: what adapters implement (store, catalog, cloud, clock, ids).
//! - [`bus`]: events after commit, to subscribers on tasks of their own.

pub mod alerts;
mod app;
pub mod bus;
pub mod commands;
#[cfg(any(test, feature = "testkit"))]
pub mod contract;
mod cqrs;
mod error;
pub mod figures;
pub mod keys;
pub mod lifecycle;
#[cfg(any(test, feature = "testkit"))]
pub mod memory;
pub mod placement;
pub mod ports;
pub mod providers;
pub mod queries;
pub mod shared;

pub use app::{App, AppSettings};
pub use bus::{EventBus, EventCounts, EventHandler, EventLog, HandlerFigures, SystemEvent};
pub use commands::{MachineRef, RequestMachines, RequestReturn, TemplateCheck};
pub use cqrs::{Command, Handler, Message, Query};
pub use error::AppError;
pub use lifecycle::worker::{Worker, WorkerConfig, WorkerStatus};
pub use lifecycle::{ReconcileReport, SweepOptions, SweepReport};
pub use ports::{
    CallName, CallbackSender, CatalogError, ClaimSpan, Clock, CloudError, CloudErrorKind, CloudProvider, DescribeQuery,
    Fence, IdGenerator, LaunchRequest, LaunchResult, Limits, OwnedMachine, Ownership, ProviderCall, ProviderCapacity,
    Refusal, RequestFilter, RequestStore, Requests, SharedState, StoreError, SystemClock, TemplateCatalog, Usage,
    UuidIds, WorkClaims,
};
pub use providers::ProviderFactory;
pub use queries::{ReturnNotice, TemplateAvailability};
