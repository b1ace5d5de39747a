//! The seed's strategy configuration and provider registrations, with their checks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Criteria, SelectionPolicy};

/// When a provider's own operations make it unhealthy: after `failure_threshold` failures in
/// a row, for `recovery_timeout` seconds; then it is tried again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthBreaker {
    pub failure_threshold: u32,
    pub recovery_timeout: u64,
}

impl Default for HealthBreaker {
    fn default() -> Self {
        Self { failure_threshold: 5, recovery_timeout: 60 }
    }
}

/// `configureProviderStrategy`: how providers are chosen and where work goes when one fails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StrategyConfig {
    pub default_selection_policy: SelectionPolicy,
    pub selection_criteria: Criteria,
    /// Providers to move a failed launch to, in order; none named: any other eligible one.
    pub fallback_strategies: Vec<String>,
    /// Seconds between health checks of every provider (the daemon runs them).
    pub health_check_interval: u64,
    pub circuit_breaker_config: HealthBreaker,
    /// WEIGHTED_ROUND_ROBIN weighs each provider by the machines of the template it says it can
    /// still launch, in place of its configured weight (providers that do not say keep theirs).
    pub weight_by_capacity: bool,
}

impl Default for StrategyConfig {
    fn default() -> Self {
        Self {
            default_selection_policy: SelectionPolicy::FirstAvailable,
            selection_criteria: Criteria { require_healthy: true, ..Criteria::default() },
            fallback_strategies: Vec::new(),
            health_check_interval: 300,
            circuit_breaker_config: HealthBreaker::default(),
            weight_by_capacity: false,
        }
    }
}

/// A bad configuration value, with the field it was in.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

fn bad(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { field: field.into(), message: message.into() }
}

/// Reads a document of type `T`, naming the field a serde error is about.
pub fn parse<T: for<'de> Deserialize<'de>>(value: &Value, what: &str) -> Result<T, ConfigError> {
    serde_json::from_value(value.clone()).map_err(|e| bad(what, e.to_string()))
}

impl StrategyConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(10..=86_400).contains(&self.health_check_interval) {
            return Err(bad("health_check_interval", "must be from 10 to 86400 seconds"));
        }
        if self.circuit_breaker_config.failure_threshold == 0 {
            return Err(bad("circuit_breaker_config.failure_threshold", "must be at least 1"));
        }
        if !(1..=86_400).contains(&self.circuit_breaker_config.recovery_timeout) {
            return Err(bad("circuit_breaker_config.recovery_timeout", "must be from 1 to 86400 seconds"));
        }
        validate_criteria(&self.selection_criteria, "selection_criteria")
    }
}

pub fn validate_criteria(c: &Criteria, field: &str) -> Result<(), ConfigError> {
    if let Some(rate) = c.min_success_rate
        && !(0.0..=100.0).contains(&rate)
    {
        return Err(bad(&format!("{field}.min_success_rate"), "must be a percentage from 0 to 100"));
    }
    if let Some(ms) = c.max_response_time_ms
        && !(ms > 0.0 && ms.is_finite())
    {
        return Err(bad(&format!("{field}.max_response_time_ms"), "must be a positive number of milliseconds"));
    }
    Ok(())
}

/// Where a provider instance was declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The config file; changed by editing it.
    #[default]
    Config,
    /// `registerProviderStrategy`; kept in the store.
    Registered,
}

/// One provider instance: `registerProviderStrategy`'s document, or a `[[providers]]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderEntry {
    pub strategy_name: String,
    pub provider_type: String,
    /// The type's own settings (aws: region, endpoint, profile; sim: the simulation's).
    #[serde(default)]
    pub strategy_config: Map<String, Value>,
    /// Capability overrides: true adds one, false takes one of the type's away.
    #[serde(default)]
    pub capabilities: BTreeMap<String, bool>,
    #[serde(default)]
    pub priority: i32,
    #[serde(default = "one")]
    pub weight: u32,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub origin: Origin,
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

/// The provider types ohf builds.
pub const PROVIDER_TYPES: [&str; 2] = ["aws", "sim"];

impl ProviderEntry {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let name = &self.strategy_name;
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(bad("strategy_name", "1-64 characters of letters, digits, '-', '_' or '.'"));
        }
        if !PROVIDER_TYPES.contains(&self.provider_type.as_str()) {
            return Err(bad(
                "provider_type",
                format!("'{}' is not known; types: {}", self.provider_type, PROVIDER_TYPES.join(", ")),
            ));
        }
        if self.weight == 0 {
            return Err(bad("weight", "must be at least 1"));
        }
        Ok(())
    }

    /// The type's capabilities with this entry's overrides.
    pub fn capabilities_with(&self, of_type: &[&str]) -> std::collections::BTreeSet<String> {
        let mut set: std::collections::BTreeSet<String> = of_type.iter().map(|s| (*s).to_owned()).collect();
        for (name, on) in &self.capabilities {
            if *on {
                set.insert(name.clone());
            } else {
                set.remove(name);
            }
        }
        set
    }
}
