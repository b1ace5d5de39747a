//! The provider-strategy service: each call becomes its typed command or query, and each typed
//! answer its own message.

use std::collections::BTreeMap;
use std::sync::Arc;

use ohf_api::access::Gate;
use ohf_app::commands::{
    ConfigureProviderStrategy, CriteriaChanges, ExecuteProviderOperation, OperationParameters,
    RegisterProviderStrategy, UpdateProviderHealth,
};
use ohf_app::providers::answers::{
    BreakerView, Figures, HealthView, OperationOutcome, OperationResult, ProviderView, RequestAccepted, SelectionMade,
};
use ohf_app::providers::parse_document;
use ohf_app::queries::{
    GetProviderCapabilities, GetProviderHealth, GetProviderMetrics, ListAvailableProviders, ProviderQuery,
    SelectProviderStrategy,
};
use ohf_app::{App, AppError};
use ohf_domain::Timestamp;
use ohf_provider_strategy::config::Origin;
use ohf_provider_strategy::metrics::OperationType;
use ohf_provider_strategy::{Criteria, ProviderEntry, SelectionPolicy};
use serde_json::Value;
use tonic::{Request, Response, Status};

use crate::convert::{self, timestamp};
use crate::pb;
use crate::service::{admit, fail, optional};

/// `ohf.v1.ProviderStrategyService`.
pub struct ProviderApi {
    app: Arc<App>,
    gate: Arc<Gate>,
}

impl ProviderApi {
    /// The service over `app`, its calls admitted by `gate`.
    pub fn new(app: Arc<App>, gate: Arc<Gate>) -> Self {
        Self { app, gate }
    }
}

type Answer<T> = Result<Response<T>, Status>;

/// A policy named in a call: one of the seed's, else a VALIDATION_ERROR naming the field.
fn policy(name: Option<String>, field: &str) -> Result<Option<SelectionPolicy>, AppError> {
    name.map(|n| parse_document(&Value::String(n), field)).transpose()
}

/// The criteria a call sets (an empty list is one not set), to go over the configured ones.
fn criteria(c: pb::SelectionCriteria) -> CriteriaChanges {
    let list = |l: Vec<String>| (!l.is_empty()).then_some(l);
    CriteriaChanges {
        required_capabilities: list(c.required_capabilities),
        min_success_rate: c.min_success_rate,
        max_response_time_ms: c.max_response_time_ms,
        require_healthy: c.require_healthy,
        exclude_strategies: list(c.exclude_strategies),
        prefer_strategies: list(c.prefer_strategies),
    }
}

fn query(q: pb::ProviderQuery) -> ProviderQuery {
    ProviderQuery {
        provider_name: q.provider_name,
        healthy_only: q.healthy_only,
        provider_type: q.provider_type,
        time_range_hours: q.time_range_hours,
        include_operation_breakdown: q.include_operation_breakdown,
        include_error_details: q.include_error_details,
        include_performance_metrics: q.include_performance_metrics,
        include_limitations: q.include_limitations,
    }
}

fn selection(s: SelectionMade) -> pb::ProviderSelection {
    pb::ProviderSelection {
        operation_type: s.operation_type.as_str().to_owned(),
        selected_strategy: s.selected_strategy,
        selection_policy: s.selection_policy.as_str().to_owned(),
        selection_reason: s.selection_reason,
        passed_over: s.passed_over.into_iter().map(|p| pb::PassedOver { name: p.name, reason: p.reason }).collect(),
    }
}

fn accepted(r: RequestAccepted) -> pb::RequestAccepted {
    pb::RequestAccepted { request_id: r.request_id, status: r.status, machine_count: r.machine_count }
}

fn outcome(o: OperationOutcome) -> pb::OperationOutcome {
    use pb::operation_outcome::Result as Shape;
    let result = match o.result {
        OperationResult::InstancesRequested(r) => Shape::InstancesRequested(accepted(r)),
        OperationResult::ReturnRequested(r) => Shape::ReturnRequested(accepted(r)),
        OperationResult::Instances { instances } => Shape::Instances(pb::InstanceList {
            instances: instances
                .into_iter()
                .map(|i| pb::InstanceSeen {
                    instance_id: i.instance_id,
                    status: i.status,
                    instance_type: i.instance_type,
                    private_ip: i.private_ip,
                    host_name: i.host_name,
                    zone: i.zone,
                    provider_name: i.provider_name,
                })
                .collect(),
        }),
        OperationResult::TemplateChecked(v) => {
            Shape::TemplateChecked(pb::TemplateVerdict { valid: v.valid, template_id: v.template_id, reason: v.reason })
        }
        OperationResult::Templates { templates } => Shape::Templates(pb::TemplateIds { templates }),
        OperationResult::HealthChecks { providers } => Shape::HealthChecks(pb::HealthProbes {
            providers: providers
                .into_iter()
                .map(|p| pb::HealthProbe {
                    provider_name: p.provider_name,
                    is_healthy: p.is_healthy,
                    response_time_ms: p.response_time_ms,
                    error: p.error,
                })
                .collect(),
        }),
    };
    pb::OperationOutcome {
        success: o.success,
        operation_type: o.operation_type.as_str().to_owned(),
        provider_name: o.provider_name,
        selection: o.selection.map(selection),
        execution_time_ms: o.execution_time_ms,
        result: Some(result),
    }
}

fn provider(v: ProviderView) -> pb::ProviderView {
    pb::ProviderView {
        strategy_name: v.strategy_name,
        provider_type: v.provider_type,
        strategy_config: Some(convert::to_struct(v.strategy_config)),
        capabilities: v.capabilities.into_iter().collect(),
        priority: v.priority,
        weight: v.weight,
        enabled: v.enabled,
        origin: match v.origin {
            Origin::Config => "config",
            Origin::Registered => "registered",
        }
        .to_owned(),
        is_healthy: v.is_healthy,
    }
}

fn criteria_set(c: Criteria) -> pb::SelectionCriteria {
    pb::SelectionCriteria {
        required_capabilities: c.required_capabilities,
        min_success_rate: c.min_success_rate,
        max_response_time_ms: c.max_response_time_ms,
        require_healthy: Some(c.require_healthy),
        exclude_strategies: c.exclude_strategies,
        prefer_strategies: c.prefer_strategies,
    }
}

fn at(ms: i64) -> prost_types::Timestamp {
    timestamp(Timestamp::from_unix_millis(ms))
}

fn breaker(b: BreakerView) -> pb::CircuitBreaker {
    let stored = b.breaker;
    pb::CircuitBreaker {
        service: b.service,
        state: stored.state.as_str().to_owned(),
        failures: stored.failures,
        changed_at: Some(at(stored.changed_at)),
        last_failure_at: stored.last_failure_at.map(at),
        last_success_at: stored.last_success_at.map(at),
        probes: stored.probes,
        opened: stored.opened,
    }
}

fn health(name: String, h: HealthView, breakers: Vec<BreakerView>) -> pb::ProviderHealth {
    pb::ProviderHealth {
        provider_name: name,
        is_healthy: h.is_healthy,
        status_message: h.status_message,
        source: h.source,
        error_code: h.error_code,
        consecutive_failures: h.consecutive_failures,
        since: Some(timestamp(h.since)),
        unhealthy_until: h.unhealthy_until.map(timestamp),
        last_check: h.last_check.map(timestamp),
        circuit_breakers: breakers.into_iter().map(breaker).collect(),
    }
}

fn figures(f: Figures) -> pb::Figures {
    pb::Figures {
        total_operations: f.total_operations,
        successful_operations: f.successful_operations,
        failed_operations: f.failed_operations,
        success_rate: f.success_rate,
        average_response_time_ms: f.average_response_time_ms,
        p50_response_time_ms: f.p50_response_time_ms,
        p95_response_time_ms: f.p95_response_time_ms,
        p99_response_time_ms: f.p99_response_time_ms,
        max_response_time_ms: f.max_response_time_ms,
        errors: f.errors.into_iter().collect(),
    }
}

fn by_operation(map: Option<BTreeMap<OperationType, Figures>>) -> std::collections::HashMap<String, pb::Figures> {
    map.unwrap_or_default().into_iter().map(|(op, f)| (op.as_str().to_owned(), figures(f))).collect()
}

#[tonic::async_trait]
impl pb::provider_strategy_service_server::ProviderStrategyService for ProviderApi {
    async fn execute_provider_operation(
        &self,
        request: Request<pb::ExecuteProviderOperationRequest>,
    ) -> Answer<pb::OperationOutcome> {
        admit(&self.gate, &request, "executeProviderOperation")?;
        let r = request.into_inner();
        let p = r.parameters.unwrap_or_default();
        let command = ExecuteProviderOperation {
            operation_type: r.operation_type,
            parameters: OperationParameters {
                template_id: p.template_id,
                count: p.count,
                request_id: p.request_id,
                instance_ids: (!p.instance_ids.is_empty()).then_some(p.instance_ids),
            },
            strategy_override: r.strategy_override,
            selection_criteria: r.selection_criteria.map(criteria),
            selection_policy: policy(r.selection_policy, "selection_policy").map_err(fail)?,
        };
        let answer = self.app.execute(command).await.map_err(fail)?;
        Ok(Response::new(outcome(answer)))
    }

    async fn select_provider_strategy(
        &self,
        request: Request<pb::SelectProviderStrategyRequest>,
    ) -> Answer<pb::ProviderSelection> {
        admit(&self.gate, &request, "selectProviderStrategy")?;
        let r = request.into_inner();
        let q = SelectProviderStrategy {
            operation_type: r.operation_type,
            selection_criteria: r.selection_criteria.map(criteria),
            selection_policy: policy(r.selection_policy, "selection_policy").map_err(fail)?,
        };
        Ok(Response::new(selection(self.app.ask(q).await.map_err(fail)?)))
    }

    async fn register_provider_strategy(
        &self,
        request: Request<pb::RegisterProviderStrategyRequest>,
    ) -> Answer<pb::ProviderRegistered> {
        admit(&self.gate, &request, "registerProviderStrategy")?;
        let r = request.into_inner();
        let strategy_config = match r.strategy_config.as_ref().map(convert::from_struct) {
            Some(Value::Object(fields)) => fields,
            _ => Default::default(),
        };
        let entry = ProviderEntry {
            strategy_name: r.strategy_name,
            provider_type: r.provider_type,
            strategy_config,
            capabilities: r.capabilities.into_iter().collect(),
            priority: r.priority,
            weight: r.weight.unwrap_or(1),
            enabled: r.enabled.unwrap_or(true),
            origin: Origin::Registered,
        };
        let answer = self.app.execute(RegisterProviderStrategy { entry }).await.map_err(fail)?;
        Ok(Response::new(pb::ProviderRegistered {
            registered: answer.registered,
            provider: Some(provider(answer.provider)),
        }))
    }

    async fn configure_provider_strategy(
        &self,
        request: Request<pb::ConfigureProviderStrategyRequest>,
    ) -> Answer<pb::StrategyConfigured> {
        admit(&self.gate, &request, "configureProviderStrategy")?;
        let r = request.into_inner();
        let command = ConfigureProviderStrategy {
            default_selection_policy: policy(r.default_selection_policy, "default_selection_policy").map_err(fail)?,
            selection_criteria: r.selection_criteria.map(criteria),
            fallback_strategies: r.fallback_strategies.map(|f| f.names),
            health_check_interval: r.health_check_interval,
            circuit_breaker_config: r.circuit_breaker_config.map(|c| ohf_provider_strategy::config::HealthBreaker {
                failure_threshold: c.failure_threshold,
                recovery_timeout: c.recovery_timeout,
            }),
            weight_by_capacity: r.weight_by_capacity,
        };
        let answer = self.app.execute(command).await.map_err(fail)?;
        let c = answer.configuration;
        Ok(Response::new(pb::StrategyConfigured {
            configured: answer.configured,
            configuration: Some(pb::StrategyConfiguration {
                default_selection_policy: c.default_selection_policy.as_str().to_owned(),
                selection_criteria: Some(criteria_set(c.selection_criteria)),
                fallback_strategies: c.fallback_strategies,
                health_check_interval: c.health_check_interval,
                circuit_breaker_config: Some(pb::CircuitBreakerConfig {
                    failure_threshold: c.circuit_breaker_config.failure_threshold,
                    recovery_timeout: c.circuit_breaker_config.recovery_timeout,
                }),
                weight_by_capacity: c.weight_by_capacity,
            }),
        }))
    }

    async fn update_provider_health(
        &self,
        request: Request<pb::UpdateProviderHealthRequest>,
    ) -> Answer<pb::ProviderHealthUpdated> {
        use ohf_app::commands::providers::{ErrorDetails, HealthStatus};
        admit(&self.gate, &request, "updateProviderHealth")?;
        let r = request.into_inner();
        let status = r.health_status.unwrap_or_default();
        let command = UpdateProviderHealth {
            provider_name: r.provider_name,
            health_status: HealthStatus {
                is_healthy: status.is_healthy,
                status_message: optional(&status.status_message),
                error_details: status
                    .error_details
                    .map(|d| ErrorDetails { error_code: optional(&d.error_code), retry_after: d.retry_after }),
            },
            source: optional(&r.source),
        };
        let answer = self.app.execute(command).await.map_err(fail)?;
        Ok(Response::new(pb::ProviderHealthUpdated {
            health_status: Some(health(answer.provider_name.clone(), answer.health_status, Vec::new())),
            provider_name: answer.provider_name,
            updated: answer.updated,
        }))
    }

    async fn get_provider_health(&self, request: Request<pb::ProviderQuery>) -> Answer<pb::ProviderHealthReport> {
        admit(&self.gate, &request, "getProviderHealth")?;
        let answer = self.app.ask(GetProviderHealth(query(request.into_inner()))).await.map_err(fail)?;
        Ok(Response::new(pb::ProviderHealthReport {
            providers: answer
                .providers
                .into_iter()
                .map(|p| health(p.provider_name, p.health, p.circuit_breakers))
                .collect(),
            healthy_count: answer.healthy_count,
            unhealthy_count: answer.unhealthy_count,
        }))
    }

    async fn list_available_providers(&self, request: Request<pb::ProviderQuery>) -> Answer<pb::ProviderList> {
        admit(&self.gate, &request, "listAvailableProviders")?;
        let answer = self.app.ask(ListAvailableProviders(query(request.into_inner()))).await.map_err(fail)?;
        Ok(Response::new(pb::ProviderList {
            providers: answer.providers.into_iter().map(provider).collect(),
            count: answer.count,
            selection_policy: answer.selection_policy.as_str().to_owned(),
        }))
    }

    async fn get_provider_metrics(&self, request: Request<pb::ProviderQuery>) -> Answer<pb::ProviderMetricsReport> {
        admit(&self.gate, &request, "getProviderMetrics")?;
        let answer = self.app.ask(GetProviderMetrics(query(request.into_inner()))).await.map_err(fail)?;
        Ok(Response::new(pb::ProviderMetricsReport {
            time_range_hours: answer.time_range_hours,
            providers: answer
                .providers
                .into_iter()
                .map(|p| pb::ProviderFigures {
                    provider_name: p.provider_name,
                    active_operations: p.active_operations,
                    total: Some(figures(p.total)),
                    operations: by_operation(p.operations),
                })
                .collect(),
        }))
    }

    async fn get_provider_capabilities(
        &self,
        request: Request<pb::ProviderQuery>,
    ) -> Answer<pb::ProviderCapabilitiesReport> {
        admit(&self.gate, &request, "getProviderCapabilities")?;
        let answer = self.app.ask(GetProviderCapabilities(query(request.into_inner()))).await.map_err(fail)?;
        Ok(Response::new(pb::ProviderCapabilitiesReport {
            providers: answer
                .providers
                .into_iter()
                .map(|p| pb::ProviderCapabilities {
                    provider_name: p.provider_name,
                    provider_type: p.provider_type,
                    capabilities: p.capabilities.into_iter().collect(),
                    supported_operations: p.supported_operations.iter().map(|o| o.as_str().to_owned()).collect(),
                    limitations: p.limitations.unwrap_or_default(),
                    performance_metrics: by_operation(p.performance_metrics),
                })
                .collect(),
        }))
    }
}
