//! The provider-strategy seed's queries: which provider a selection picks (with why), and the
//! providers' health, availability, figures and capabilities. Their answers are the seed's
//! documents.

use ohf_provider_strategy::SelectionPolicy;
use serde::Deserialize;
use serde_json::Value;

use crate::cqrs::{Handler, message};
use crate::providers::strategy::{operation, selection_view};
use crate::{App, AppError};

/// Which provider the strategy would pick for an operation, with the reason and every
/// provider passed over.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectProviderStrategy {
    pub operation_type: String,
    #[serde(default)]
    pub selection_criteria: Option<Value>,
    #[serde(default)]
    pub selection_policy: Option<SelectionPolicy>,
}

message!(query SelectProviderStrategy => Value);

impl Handler<SelectProviderStrategy> for App {
    async fn handle(&self, q: SelectProviderStrategy) -> Result<Value, AppError> {
        let op = operation(&q.operation_type)?;
        let criteria = self.criteria_with(q.selection_criteria.as_ref())?;
        let s = self.select_provider(op, Some(&criteria), q.selection_policy, None, &[]).await?;
        Ok(selection_view(op, &s))
    }
}

/// Which providers, and what to include, for the four provider listings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderQuery {
    pub provider_name: Option<String>,
    pub healthy_only: bool,
    pub provider_type: Option<String>,
    pub time_range_hours: Option<f64>,
    pub include_operation_breakdown: bool,
    pub include_error_details: bool,
    pub include_performance_metrics: bool,
    pub include_limitations: bool,
}

macro_rules! listing {
    ($(#[$doc:meta])* $name:ident => $method:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default)]
        pub struct $name(pub ProviderQuery);

        message!(query $name => Value);

        impl Handler<$name> for App {
            async fn handle(&self, q: $name) -> Result<Value, AppError> {
                self.$method(&q.0).await
            }
        }
    };
}

listing!(
    /// Each provider's health: the stored record, the verdict now, its breakers.
    GetProviderHealth => provider_health
);
listing!(
    /// The providers a selection may use, with their registrations.
    ListAvailableProviders => list_available_providers
);
listing!(
    /// Each provider's figures over a time range: counts, success rate, latency percentiles.
    GetProviderMetrics => provider_metrics
);
listing!(
    /// What each provider can do (and, asked, its limitations).
    GetProviderCapabilities => provider_capabilities
);
