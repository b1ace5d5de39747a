//! The provider-strategy seed's commands: run an operation through the strategy, register a
//! provider, configure the strategy, record a provider's health from outside. Their answers
//! are the seed's documents.

use ohf_provider_strategy::{ProviderEntry, SelectionPolicy};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::cqrs::{Handler, message};
use crate::{App, AppError};

/// Run one operation (CREATE_INSTANCES, TERMINATE_INSTANCES, GET_INSTANCE_STATUS,
/// VALIDATE_TEMPLATE, HEALTH_CHECK) on the provider the strategy selects or the override names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecuteProviderOperation {
    /// CREATE_INSTANCES, TERMINATE_INSTANCES, GET_INSTANCE_STATUS, VALIDATE_TEMPLATE or HEALTH_CHECK.
    pub operation_type: String,
    #[serde(default)]
    /// The operation's parameters (`template_id`, `count`, `request_id`, `instance_ids`, …).
    pub parameters: Map<String, Value>,
    #[serde(default)]
    /// Runs on this provider, without a selection.
    pub strategy_override: Option<String>,
    #[serde(default)]
    /// Criteria put over the configured ones for this call.
    pub selection_criteria: Option<Value>,
    #[serde(default)]
    /// The policy for this call instead of the configured one.
    pub selection_policy: Option<SelectionPolicy>,
}

message!(command ExecuteProviderOperation => Value);

impl Handler<ExecuteProviderOperation> for App {
    async fn handle(&self, c: ExecuteProviderOperation) -> Result<Value, AppError> {
        self.execute_provider_operation(c).await
    }
}

/// Register (or replace) a provider; kept in the store for every process.
#[derive(Debug, Clone)]
pub struct RegisterProviderStrategy {
    /// The registration: name, type, its configuration, capabilities, priority, weight.
    pub entry: ProviderEntry,
}

message!(command RegisterProviderStrategy => Value);

impl Handler<RegisterProviderStrategy> for App {
    async fn handle(&self, c: RegisterProviderStrategy) -> Result<Value, AppError> {
        self.register_provider(c.entry).await
    }
}

/// Change the strategy configuration: the fields given, over the stored configuration.
#[derive(Debug, Clone)]
pub struct ConfigureProviderStrategy {
    /// A document of `StrategyConfig` fields.
    pub changes: Value,
}

message!(command ConfigureProviderStrategy => Value);

impl Handler<ConfigureProviderStrategy> for App {
    async fn handle(&self, c: ConfigureProviderStrategy) -> Result<Value, AppError> {
        self.configure_strategy(&c.changes).await
    }
}

/// An outside verdict on a provider's health (a monitoring system, an operator).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateProviderHealth {
    /// The provider the verdict is about.
    pub provider_name: String,
    /// The verdict.
    pub health_status: HealthStatus,
    #[serde(default)]
    /// Who says so (a monitoring system, an operator).
    pub source: Option<String>,
}

/// The verdict of [`UpdateProviderHealth`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthStatus {
    /// Healthy or not.
    pub is_healthy: bool,
    #[serde(default)]
    /// Why, in words.
    pub status_message: Option<String>,
    #[serde(default)]
    /// The error behind an unhealthy verdict.
    pub error_details: Option<ErrorDetails>,
}

/// Why a provider is unhealthy, and how long to leave it be.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorDetails {
    #[serde(default)]
    /// The provider's error code.
    pub error_code: Option<String>,
    #[serde(default)]
    /// Seconds to leave the provider be (at most a week).
    pub retry_after: Option<u64>,
}

message!(command UpdateProviderHealth => Value);

impl Handler<UpdateProviderHealth> for App {
    async fn handle(&self, c: UpdateProviderHealth) -> Result<Value, AppError> {
        self.update_provider_health(c).await
    }
}
