//! The application core of ohf: ports, command and query handlers, the event bus and the
//! reconcile step that advances every request.

pub mod access;
pub mod api;
mod app;
pub mod bus;
pub mod contract;
mod error;
pub mod memory;
pub mod ports;
pub mod providers;
mod reconcile;
pub mod shared;
mod strategy;
mod sweep;
pub mod view;
pub mod worker;

pub use app::{
    App, AppSettings, MachineRef, RequestMachines, RequestReturn, ReturnNotice, TemplateAvailability, TemplateCheck,
};
pub use bus::{EventBus, EventCounts, EventHandler, EventLog, HandlerFigures, SystemEvent};
pub use error::AppError;
pub use ports::{
    CatalogError, ClaimSpan, Clock, CloudError, CloudErrorKind, CloudProvider, DescribeQuery, Fence, IdGenerator,
    LaunchRequest, LaunchResult, OwnedMachine, Ownership, ProviderCapacity, Refusal, RequestFilter, RequestStore,
    StoreError, SystemClock, TemplateCatalog, UuidIds,
};
pub use providers::ProviderFactory;
pub use reconcile::ReconcileReport;
pub use strategy::METHODS as STRATEGY_METHODS;
pub use sweep::{SweepOptions, SweepReport};
pub use worker::{Worker, WorkerConfig, WorkerStatus};
