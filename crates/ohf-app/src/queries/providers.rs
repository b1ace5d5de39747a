//! The provider-strategy seed's queries: which provider a selection picks (with why), and the
//! providers' health, availability, figures and capabilities. Their answers are typed
//! ([`crate::providers::answers`]); serialized, they are the seed's documents.

use ohf_provider_strategy::SelectionPolicy;
use serde::Deserialize;

use crate::commands::CriteriaChanges;
use crate::cqrs::{Handler, message};
use crate::providers::answers::{
    ProviderCapabilitiesReport, ProviderHealthReport, ProviderListing, ProviderMetricsReport, SelectionMade,
};
use crate::providers::strategy::{operation, selection_made};
use crate::{App, AppError};

/// Which provider the strategy would pick for an operation, with the reason and every
/// provider passed over.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectProviderStrategy {
    /// The operation to choose a provider for.
    pub operation_type: String,
    #[serde(default)]
    /// Criteria put over the configured ones.
    pub selection_criteria: Option<CriteriaChanges>,
    #[serde(default)]
    /// The policy instead of the configured one.
    pub selection_policy: Option<SelectionPolicy>,
}

message!(query SelectProviderStrategy => SelectionMade);

impl Handler<SelectProviderStrategy> for App {
    async fn handle(&self, q: SelectProviderStrategy) -> Result<SelectionMade, AppError> {
        let op = operation(&q.operation_type)?;
        let criteria = self.criteria_with(q.selection_criteria)?;
        let s = self.select_provider(op, Some(&criteria), q.selection_policy, None, &[]).await?;
        Ok(selection_made(op, s))
    }
}

/// Which providers, and what to include, for the four provider listings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderQuery {
    /// Only this provider.
    pub provider_name: Option<String>,
    /// Only healthy providers.
    pub healthy_only: bool,
    /// Only providers of this type (aws, sim).
    pub provider_type: Option<String>,
    /// The figures of the last this many hours (one when absent).
    pub time_range_hours: Option<f64>,
    /// Figures per operation too.
    pub include_operation_breakdown: bool,
    /// Errors by code too.
    pub include_error_details: bool,
    /// Latency percentiles too.
    pub include_performance_metrics: bool,
    /// What each provider cannot do.
    pub include_limitations: bool,
}

macro_rules! listing {
    ($(#[$doc:meta])* $name:ident => $method:ident -> $answer:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default)]
        pub struct $name(pub ProviderQuery);

        message!(query $name => $answer);

        impl Handler<$name> for App {
            async fn handle(&self, q: $name) -> Result<$answer, AppError> {
                self.$method(&q.0).await
            }
        }
    };
}

listing!(
    /// Each provider's health: the stored record, the verdict now, its breakers.
    GetProviderHealth => provider_health -> ProviderHealthReport
);
listing!(
    /// The providers a selection may use, with their registrations.
    ListAvailableProviders => list_available_providers -> ProviderListing
);
listing!(
    /// Each provider's figures over a time range: counts, success rate, latency percentiles.
    GetProviderMetrics => provider_metrics -> ProviderMetricsReport
);
listing!(
    /// What each provider can do (and, asked, its limitations).
    GetProviderCapabilities => provider_capabilities -> ProviderCapabilitiesReport
);
