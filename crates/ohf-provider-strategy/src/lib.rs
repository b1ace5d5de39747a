//! Provider selection of the provider-strategy seed, as pure functions over what is known of
//! each provider instance: the nine policies and the selection criteria, each choice with the
//! reason for it and for every provider passed over. No I/O: callers bring the figures
//! (health, success rate, response time, operations in flight) and a cursor and a draw for the
//! rotating and random policies, so every choice can be replayed.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

pub mod config;
pub mod health;
pub mod metrics;

pub use config::{ConfigError, HealthBreaker, Origin, ProviderEntry, StrategyConfig};
pub use health::Health;
pub use metrics::{Bucket, OperationType, Summary};

/// How to choose among the providers that meet the criteria.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SelectionPolicy {
    FirstAvailable,
    RoundRobin,
    WeightedRoundRobin,
    LeastConnections,
    FastestResponse,
    HighestSuccessRate,
    CapabilityBased,
    HealthBased,
    Random,
}

impl SelectionPolicy {
    /// The seed's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FirstAvailable => "FIRST_AVAILABLE",
            Self::RoundRobin => "ROUND_ROBIN",
            Self::WeightedRoundRobin => "WEIGHTED_ROUND_ROBIN",
            Self::LeastConnections => "LEAST_CONNECTIONS",
            Self::FastestResponse => "FASTEST_RESPONSE",
            Self::HighestSuccessRate => "HIGHEST_SUCCESS_RATE",
            Self::CapabilityBased => "CAPABILITY_BASED",
            Self::HealthBased => "HEALTH_BASED",
            Self::Random => "RANDOM",
        }
    }

    pub const ALL: [SelectionPolicy; 9] = [
        Self::FirstAvailable,
        Self::RoundRobin,
        Self::WeightedRoundRobin,
        Self::LeastConnections,
        Self::FastestResponse,
        Self::HighestSuccessRate,
        Self::CapabilityBased,
        Self::HealthBased,
        Self::Random,
    ];
}

/// What is known of one provider instance when choosing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub name: String,
    pub provider_type: String,
    pub capabilities: BTreeSet<String>,
    /// Lower comes first.
    pub priority: i32,
    pub weight: u32,
    pub enabled: bool,
    pub healthy: bool,
    /// Operations in flight on it now.
    pub active_operations: u32,
    /// Machines of the template at hand it says it can still launch, when the strategy weighs
    /// by capacity and it says; WEIGHTED_ROUND_ROBIN then uses this in place of `weight`.
    pub available_capacity: Option<u32>,
    /// Mean response time, when measured.
    pub response_time_ms: Option<f64>,
    /// Percent of operations that succeeded, when measured.
    pub success_rate: Option<f64>,
}

/// The seed's selection criteria. Providers without a figure yet pass the figure's test: a new
/// provider is not held back for lack of history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Criteria {
    pub required_capabilities: Vec<String>,
    pub min_success_rate: Option<f64>,
    pub max_response_time_ms: Option<f64>,
    pub require_healthy: bool,
    pub exclude_strategies: Vec<String>,
    pub prefer_strategies: Vec<String>,
}

/// A provider passed over, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PassedOver {
    pub name: String,
    pub reason: String,
}

/// The chosen provider with the reason, and the providers passed over with theirs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Selection {
    pub selected: String,
    pub policy: SelectionPolicy,
    pub reason: String,
    pub passed_over: Vec<PassedOver>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("no provider meets the criteria: {}", passed_over.iter().map(|p| format!("{} ({})", p.name, p.reason)).collect::<Vec<_>>().join("; "))]
pub struct NoProvider {
    pub passed_over: Vec<PassedOver>,
}

/// Why `c` fails the criteria (and the policy's own condition), if it does.
fn refusal(c: &Candidate, criteria: &Criteria, policy: SelectionPolicy) -> Option<String> {
    if !c.enabled {
        return Some("disabled".into());
    }
    if criteria.exclude_strategies.contains(&c.name) {
        return Some("excluded".into());
    }
    let missing: Vec<&str> =
        criteria.required_capabilities.iter().filter(|k| !c.capabilities.contains(*k)).map(String::as_str).collect();
    if !missing.is_empty() {
        return Some(format!("lacks {}", missing.join(", ")));
    }
    if (criteria.require_healthy || policy == SelectionPolicy::HealthBased) && !c.healthy {
        return Some("unhealthy".into());
    }
    if let (Some(min), Some(rate)) = (criteria.min_success_rate, c.success_rate)
        && rate < min
    {
        return Some(format!("success rate {rate:.1}% below {min:.1}%"));
    }
    if let (Some(max), Some(ms)) = (criteria.max_response_time_ms, c.response_time_ms)
        && ms > max
    {
        return Some(format!("response time {ms:.0} ms above {max:.0} ms"));
    }
    None
}

/// Chooses a provider. `cursor` counts earlier choices (round robin); `draw` in [0, 1) picks
/// for RANDOM.
pub fn select(
    candidates: &[Candidate],
    policy: SelectionPolicy,
    criteria: &Criteria,
    cursor: u64,
    draw: f64,
) -> Result<Selection, NoProvider> {
    let mut passed_over = Vec::new();
    let mut eligible: Vec<&Candidate> = Vec::new();
    for c in candidates {
        match refusal(c, criteria, policy) {
            Some(reason) => passed_over.push(PassedOver { name: c.name.clone(), reason }),
            None => eligible.push(c),
        }
    }
    if eligible.is_empty() {
        return Err(NoProvider { passed_over });
    }
    // Preferred providers come first when any is eligible, in the order preferred.
    let preferred: Vec<&Candidate> =
        criteria.prefer_strategies.iter().filter_map(|p| eligible.iter().find(|c| &c.name == p).copied()).collect();
    if !preferred.is_empty() {
        for c in eligible.iter().filter(|c| !preferred.iter().any(|p| p.name == c.name)) {
            passed_over.push(PassedOver { name: c.name.clone(), reason: "not preferred".into() });
        }
        eligible = preferred;
    } else {
        eligible.sort_by(|a, b| a.priority.cmp(&b.priority).then_with(|| a.name.cmp(&b.name)));
    }
    let n = eligible.len();
    let (index, reason) = match policy {
        SelectionPolicy::FirstAvailable => (0, "the first available".to_owned()),
        SelectionPolicy::CapabilityBased => (0, "the first by priority that has every required capability".to_owned()),
        SelectionPolicy::HealthBased => (0, "the first healthy one by priority".to_owned()),
        SelectionPolicy::RoundRobin => {
            ((cursor % n as u64) as usize, format!("turn {} of {n} in rotation", cursor % n as u64 + 1))
        }
        SelectionPolicy::WeightedRoundRobin => {
            // Available capacity where known (all zero: the configured weights), else weight.
            let by_capacity = eligible.iter().any(|c| c.available_capacity.is_some_and(|a| a > 0));
            let weight = |c: &Candidate| match (by_capacity, c.available_capacity) {
                (true, Some(a)) => u64::from(a),
                _ => u64::from(c.weight.max(1)),
            };
            let total: u64 = eligible.iter().map(|c| weight(c)).sum();
            // Turn k lands on slot ⌊frac(k·φ)·total⌋ (Fibonacci hashing): every window of turns
            // gives each provider about its share, interleaved rather than in blocks.
            let fraction = cursor.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut slot = ((u128::from(fraction) * u128::from(total)) >> 64) as u64;
            let mut index = 0;
            for (i, c) in eligible.iter().enumerate() {
                let w = weight(c);
                if slot < w {
                    index = i;
                    break;
                }
                slot -= w;
            }
            let what = if by_capacity { "available capacity" } else { "weight" };
            (index, format!("{what} {} of {total} in rotation", weight(eligible[index])))
        }
        SelectionPolicy::LeastConnections => {
            let i = (0..n).min_by_key(|&i| eligible[i].active_operations).unwrap_or(0);
            (i, format!("fewest operations in flight ({})", eligible[i].active_operations))
        }
        SelectionPolicy::FastestResponse => {
            let key = |i: usize| eligible[i].response_time_ms.unwrap_or(f64::INFINITY);
            let i = (0..n).min_by(|&a, &b| key(a).total_cmp(&key(b))).unwrap_or(0);
            (
                i,
                match eligible[i].response_time_ms {
                    Some(ms) => format!("fastest response ({ms:.0} ms)"),
                    None => "no response times measured yet; the first by priority".into(),
                },
            )
        }
        SelectionPolicy::HighestSuccessRate => {
            let key = |i: usize| eligible[i].success_rate.unwrap_or(f64::NEG_INFINITY);
            // The first of equals wins: max_by would take the last.
            let i = (0..n).rev().max_by(|&a, &b| key(a).total_cmp(&key(b))).unwrap_or(0);
            (
                i,
                match eligible[i].success_rate {
                    Some(r) => format!("highest success rate ({r:.1}%)"),
                    None => "no success rates measured yet; the first by priority".into(),
                },
            )
        }
        SelectionPolicy::Random => {
            let i = ((draw.clamp(0.0, 1.0) * n as f64) as usize).min(n - 1);
            (i, format!("drawn at random among {n}"))
        }
    };
    let chosen = eligible[index];
    for (i, c) in eligible.iter().enumerate() {
        if i != index {
            passed_over.push(PassedOver {
                name: c.name.clone(),
                reason: format!("eligible; {} chose {}", policy.as_str(), chosen.name),
            });
        }
    }
    Ok(Selection { selected: chosen.name.clone(), policy, reason, passed_over })
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_state;
