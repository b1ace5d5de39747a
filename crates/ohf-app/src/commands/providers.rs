//! The provider-strategy seed's commands: run an operation through the strategy, register a
//! provider, configure the strategy, record a provider's health from outside. Their answers
//! are typed ([`crate::providers::answers`]); serialized, they are the seed's documents.

use ohf_provider_strategy::config::HealthBreaker;
use ohf_provider_strategy::{Criteria, ProviderEntry, SelectionPolicy, StrategyConfig};
use serde::Deserialize;

use crate::cqrs::{Handler, message};
use crate::providers::answers::{OperationOutcome, ProviderHealthUpdated, ProviderRegistered, StrategyConfigured};
use crate::{App, AppError};

/// Selection criteria a call gives; the fields left out keep the configured values.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CriteriaChanges {
    /// Capabilities a provider must have.
    pub required_capabilities: Option<Vec<String>>,
    /// The lowest success rate (percent) a provider may have.
    pub min_success_rate: Option<f64>,
    /// The highest average response time a provider may have.
    pub max_response_time_ms: Option<f64>,
    /// Only healthy providers.
    pub require_healthy: Option<bool>,
    /// Providers never to choose.
    pub exclude_strategies: Option<Vec<String>>,
    /// Providers to choose first when they qualify.
    pub prefer_strategies: Option<Vec<String>>,
}

impl CriteriaChanges {
    /// `current` with these changes put over it.
    pub fn over(self, current: Criteria) -> Criteria {
        Criteria {
            required_capabilities: self.required_capabilities.unwrap_or(current.required_capabilities),
            min_success_rate: self.min_success_rate.or(current.min_success_rate),
            max_response_time_ms: self.max_response_time_ms.or(current.max_response_time_ms),
            require_healthy: self.require_healthy.unwrap_or(current.require_healthy),
            exclude_strategies: self.exclude_strategies.unwrap_or(current.exclude_strategies),
            prefer_strategies: self.prefer_strategies.unwrap_or(current.prefer_strategies),
        }
    }
}

/// The parameters of an operation; each operation reads those it needs.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OperationParameters {
    /// CREATE_INSTANCES, VALIDATE_TEMPLATE: the template.
    pub template_id: Option<String>,
    /// CREATE_INSTANCES: how many machines.
    pub count: Option<i64>,
    /// CREATE_INSTANCES: the new request's id (a fresh one when absent); GET_INSTANCE_STATUS:
    /// the request whose machines to describe.
    pub request_id: Option<String>,
    /// TERMINATE_INSTANCES, GET_INSTANCE_STATUS: the instances (also `machine_ids`).
    #[serde(alias = "machine_ids")]
    pub instance_ids: Option<Vec<String>>,
}

/// Run one operation (CREATE_INSTANCES, TERMINATE_INSTANCES, GET_INSTANCE_STATUS,
/// VALIDATE_TEMPLATE, HEALTH_CHECK) on the provider the strategy selects or the override names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecuteProviderOperation {
    /// CREATE_INSTANCES, TERMINATE_INSTANCES, GET_INSTANCE_STATUS, VALIDATE_TEMPLATE or HEALTH_CHECK.
    pub operation_type: String,
    #[serde(default)]
    /// The operation's parameters.
    pub parameters: OperationParameters,
    #[serde(default)]
    /// Runs on this provider, without a selection.
    pub strategy_override: Option<String>,
    #[serde(default)]
    /// Criteria put over the configured ones for this call.
    pub selection_criteria: Option<CriteriaChanges>,
    #[serde(default)]
    /// The policy for this call instead of the configured one.
    pub selection_policy: Option<SelectionPolicy>,
}

message!(command ExecuteProviderOperation => OperationOutcome);

impl Handler<ExecuteProviderOperation> for App {
    async fn handle(&self, c: ExecuteProviderOperation) -> Result<OperationOutcome, AppError> {
        self.execute_provider_operation(c).await
    }
}

/// Register (or replace) a provider; kept in the store for every process.
#[derive(Debug, Clone)]
pub struct RegisterProviderStrategy {
    /// The registration: name, type, its configuration, capabilities, priority, weight.
    pub entry: ProviderEntry,
}

message!(command RegisterProviderStrategy => ProviderRegistered);

impl Handler<RegisterProviderStrategy> for App {
    async fn handle(&self, c: RegisterProviderStrategy) -> Result<ProviderRegistered, AppError> {
        self.register_provider(c.entry).await
    }
}

/// Change the strategy configuration: the parts given, over the configuration in force (kept
/// in the store for every process).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigureProviderStrategy {
    /// The policy selections use when a call names none.
    pub default_selection_policy: Option<SelectionPolicy>,
    /// Criteria fields, over the configured criteria.
    pub selection_criteria: Option<CriteriaChanges>,
    /// Providers a failed launch moves to, in order.
    pub fallback_strategies: Option<Vec<String>>,
    /// Seconds between health checks (10 to 86400).
    pub health_check_interval: Option<u64>,
    /// When a provider's failures make it unhealthy, and for how long.
    pub circuit_breaker_config: Option<HealthBreaker>,
    /// Whether WEIGHTED_ROUND_ROBIN weighs providers by their available capacity.
    pub weight_by_capacity: Option<bool>,
}

impl ConfigureProviderStrategy {
    /// `current` with these changes put over it.
    pub fn over(self, current: StrategyConfig) -> StrategyConfig {
        StrategyConfig {
            default_selection_policy: self.default_selection_policy.unwrap_or(current.default_selection_policy),
            selection_criteria: match self.selection_criteria {
                Some(c) => c.over(current.selection_criteria),
                None => current.selection_criteria,
            },
            fallback_strategies: self.fallback_strategies.unwrap_or(current.fallback_strategies),
            health_check_interval: self.health_check_interval.unwrap_or(current.health_check_interval),
            circuit_breaker_config: self.circuit_breaker_config.unwrap_or(current.circuit_breaker_config),
            weight_by_capacity: self.weight_by_capacity.unwrap_or(current.weight_by_capacity),
        }
    }
}

message!(command ConfigureProviderStrategy => StrategyConfigured);

impl Handler<ConfigureProviderStrategy> for App {
    async fn handle(&self, c: ConfigureProviderStrategy) -> Result<StrategyConfigured, AppError> {
        self.configure_strategy(c).await
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

message!(command UpdateProviderHealth => ProviderHealthUpdated);

impl Handler<UpdateProviderHealth> for App {
    async fn handle(&self, c: UpdateProviderHealth) -> Result<ProviderHealthUpdated, AppError> {
        self.update_provider_health(c).await
    }
}
