//! The providers the application calls: the registry (every provider measured, its figures
//! and health in the store's shared state) and the provider-strategy use cases behind the
//! typed commands and queries of `commands::providers` and `queries::providers`: selection,
//! failover, registration, configuration, health.

pub mod answers;
mod registry;
pub(crate) mod strategy;

pub use registry::*;
pub use strategy::parse_document;
