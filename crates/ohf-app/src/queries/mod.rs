//! Queries: typed messages that only read, each with its one handler in its file. Sent with
//! [`App::ask`](crate::App::ask).

mod doctor;
pub mod providers;
pub mod report;
mod requests;
mod resilience;
mod return_notices;
mod routing;
mod templates;
mod watch_request;

pub use doctor::{CheckInstallation, Finding};
pub use providers::{
    GetProviderCapabilities, GetProviderHealth, GetProviderMetrics, ListAvailableProviders, ProviderQuery,
    SelectProviderStrategy,
};
pub use report::{Backlog, GetOperatingFigures, GetRequestReport, Held, OperatingFigures, PriceTable, RequestReport};
pub use requests::{GetRequestHistory, GetRequestStatus, ListRequests};
pub use resilience::{GetResilienceStatus, ResilienceStatus, StoredBreaker};
pub use return_notices::{GetReturnNotices, ReturnNotice};
pub use routing::{GetAvailableCapacity, GetRoutingRequest, ListRoutingRequests, VenueCapacity};
pub use templates::{GetAvailableTemplates, GetTemplate, TemplateAvailability};
pub use watch_request::WatchRequest;
