//! The typed answers of the provider-strategy commands and queries. Serialized with serde they
//! are the seed's documents (the HTTP JSON API and `ohf <method>` show them as they are); the
//! gRPC adapter maps each to its own message.

use std::collections::{BTreeMap, BTreeSet};

use ohf_domain::Timestamp;
use ohf_provider_strategy::config::Origin;
use ohf_provider_strategy::metrics::{OperationType, Summary};
use ohf_provider_strategy::{PassedOver, SelectionPolicy, StrategyConfig};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::shared::Breaker;

/// Which provider a selection picked for an operation, why, and why not the others.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SelectionMade {
    /// The operation the choice was for.
    pub operation_type: OperationType,
    /// The provider picked.
    pub selected_strategy: String,
    /// The policy that picked it.
    pub selection_policy: SelectionPolicy,
    /// Why it was picked.
    pub selection_reason: String,
    /// Every provider passed over, with its reason.
    pub passed_over: Vec<PassedOver>,
}

/// The answer to `ExecuteProviderOperation`: the operation's result and who ran it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OperationOutcome {
    /// Always true: a failed operation is an error, not an outcome.
    pub success: bool,
    /// The operation run.
    pub operation_type: OperationType,
    /// The provider that ran it.
    pub provider_name: String,
    /// The selection that chose the provider (none with `strategy_override` or for HEALTH_CHECK).
    pub selection: Option<SelectionMade>,
    /// Wall time of the whole operation.
    pub execution_time_ms: u64,
    /// What the operation gave, one shape per operation.
    pub result: OperationResult,
}

/// What each operation gives.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum OperationResult {
    /// CREATE_INSTANCES: the request that launches the machines.
    InstancesRequested(RequestAccepted),
    /// TERMINATE_INSTANCES: the return request that terminates them.
    ReturnRequested(RequestAccepted),
    /// GET_INSTANCE_STATUS: each instance as its provider sees it.
    Instances {
        /// The instances found.
        instances: Vec<InstanceSeen>,
    },
    /// VALIDATE_TEMPLATE: whether the provider can launch the template.
    TemplateChecked(TemplateVerdict),
    /// GET_AVAILABLE_TEMPLATES: the templates the provider can launch.
    Templates {
        /// Their ids.
        templates: Vec<String>,
    },
    /// HEALTH_CHECK: each provider's check.
    HealthChecks {
        /// One per provider checked.
        providers: Vec<HealthProbe>,
    },
}

/// A request the operation created.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestAccepted {
    /// Its id, for `getRequestStatus`/`getReturnRequests`.
    pub request_id: String,
    /// Its state now.
    pub status: String,
    /// Machines asked for (or named to return).
    pub machine_count: u64,
}

/// One instance as its provider describes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceSeen {
    /// The cloud's id.
    pub instance_id: String,
    /// pending, running, …
    pub status: String,
    /// Its instance type, when the provider says.
    pub instance_type: Option<String>,
    /// Its private address, once it has one.
    pub private_ip: Option<String>,
    /// Its host name, once it has one.
    pub host_name: Option<String>,
    /// Its availability zone.
    pub zone: Option<String>,
    /// The provider that holds it.
    pub provider_name: String,
}

/// Whether the provider can launch a template.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TemplateVerdict {
    /// It can.
    pub valid: bool,
    /// The template.
    pub template_id: String,
    /// Why not, when it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One provider's health check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthProbe {
    /// The provider checked.
    pub provider_name: String,
    /// The check passed.
    pub is_healthy: bool,
    /// How long it took.
    pub response_time_ms: u64,
    /// Why it failed.
    pub error: Option<String>,
}

/// A provider's registration as the API shows it (secrets masked).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderView {
    /// The provider instance's name.
    pub strategy_name: String,
    /// aws or sim.
    pub provider_type: String,
    /// Its settings; keys naming a secret, password or token show `***`.
    pub strategy_config: Map<String, Value>,
    /// What it can do: its type's capabilities with the registration's overrides.
    pub capabilities: BTreeSet<String>,
    /// Lower goes first under FIRST_AVAILABLE.
    pub priority: i32,
    /// Its share under the weighted policies.
    pub weight: u32,
    /// Selections may use it.
    pub enabled: bool,
    /// Declared in the config file or registered through the API.
    pub origin: Origin,
    /// Healthy now (in the listing of available providers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_healthy: Option<bool>,
}

/// The answer to `RegisterProviderStrategy`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderRegistered {
    /// Always true: a refused registration is an error.
    pub registered: bool,
    /// The registration as kept.
    pub provider: ProviderView,
}

/// The answer to `ConfigureProviderStrategy`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StrategyConfigured {
    /// Always true: a refused configuration is an error.
    pub configured: bool,
    /// The whole configuration now in force.
    pub configuration: StrategyConfig,
}

/// A provider's health record as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthView {
    /// Healthy now (an outside verdict's retry-after and an OPEN breaker count).
    pub is_healthy: bool,
    /// The last verdict, in words.
    pub status_message: String,
    /// Who gave it.
    pub source: String,
    /// The error code behind an unhealthy verdict.
    pub error_code: Option<String>,
    /// Failed checks in a row.
    pub consecutive_failures: u32,
    /// Since when the verdict holds (RFC 3339 in the document).
    #[serde(serialize_with = "Timestamp::serialize_rfc3339")]
    pub since: Timestamp,
    /// Until when an outside verdict holds it unhealthy, while it does.
    #[serde(serialize_with = "Timestamp::serialize_rfc3339_opt")]
    pub unhealthy_until: Option<Timestamp>,
    /// The last check.
    #[serde(serialize_with = "Timestamp::serialize_rfc3339_opt")]
    pub last_check: Option<Timestamp>,
}

/// The answer to `UpdateProviderHealth`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderHealthUpdated {
    /// The provider.
    pub provider_name: String,
    /// Always true: a refused update is an error.
    pub updated: bool,
    /// Its health after the update.
    pub health_status: HealthView,
}

/// One circuit breaker of a provider, with the service it guards.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakerView {
    /// ec2 or autoscaling.
    pub service: String,
    /// Its stored state.
    #[serde(flatten)]
    pub breaker: Breaker,
}

/// One provider in the answer to `GetProviderHealth`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderHealth {
    /// The provider.
    pub provider_name: String,
    /// Its health.
    #[serde(flatten)]
    pub health: HealthView,
    /// Its circuit breakers.
    pub circuit_breakers: Vec<BreakerView>,
}

/// The answer to `GetProviderHealth`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderHealthReport {
    /// Each provider asked about.
    pub providers: Vec<ProviderHealth>,
    /// How many are healthy.
    pub healthy_count: u64,
    /// How many are not.
    pub unhealthy_count: u64,
}

/// The answer to `ListAvailableProviders`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderListing {
    /// The providers (with `is_healthy`).
    pub providers: Vec<ProviderView>,
    /// How many.
    pub count: u64,
    /// The configured default policy.
    pub selection_policy: SelectionPolicy,
}

/// The figures of an operation (or of all) over a time range; `errors` only when asked for.
pub type Figures = Summary;

/// `summary`'s figures, with its errors by code only when `with_errors`.
pub fn figures(mut summary: Summary, with_errors: bool) -> Figures {
    if !with_errors {
        summary.errors.clear();
    }
    summary
}

/// One provider in the answer to `GetProviderMetrics`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderFigures {
    /// The provider.
    pub provider_name: String,
    /// Calls in flight in this process now.
    pub active_operations: u64,
    /// Its figures over every operation.
    #[serde(flatten)]
    pub total: Figures,
    /// Per operation, when asked for (operations that ran only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operations: Option<BTreeMap<OperationType, Figures>>,
}

/// The answer to `GetProviderMetrics`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderMetricsReport {
    /// The hours covered.
    pub time_range_hours: f64,
    /// Each provider asked about.
    pub providers: Vec<ProviderFigures>,
}

/// One provider in the answer to `GetProviderCapabilities`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderCapabilities {
    /// The provider.
    pub provider_name: String,
    /// aws or sim.
    pub provider_type: String,
    /// Each capability, and whether it has it.
    pub capabilities: BTreeMap<String, bool>,
    /// The operations it runs.
    pub supported_operations: Vec<OperationType>,
    /// What it cannot do, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limitations: Option<Vec<String>>,
    /// Figures of its main operations over the last day, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub performance_metrics: Option<BTreeMap<OperationType, Figures>>,
}

/// The answer to `GetProviderCapabilities`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderCapabilitiesReport {
    /// Each provider asked about.
    pub providers: Vec<ProviderCapabilities>,
}
