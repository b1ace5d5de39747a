//! Commands: typed messages that change what the application holds or ask the cloud to, each
//! with its one handler in its file. Sent with [`App::execute`](crate::App::execute).

mod cancel_request;
pub mod providers;
mod purge_history;
mod request_machines;
mod request_return;
mod routing;
mod validate_template;

pub use cancel_request::CancelRequest;
pub use providers::{
    ConfigureProviderStrategy, CriteriaChanges, ExecuteProviderOperation, OperationParameters,
    RegisterProviderStrategy, UpdateProviderHealth,
};
pub use purge_history::PurgeHistory;
pub use request_machines::RequestMachines;
pub use request_return::{MachineRef, RequestReturn};
pub use routing::{RouteRequest, UnrouteRequest, WorkloadSpec};
pub use validate_template::{TemplateCheck, ValidateTemplate};
