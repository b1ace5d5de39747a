//! Resilience for every cloud call: circuit breakers whose state lives in the store (so one-shot
//! Host Factory processes and several daemons share one breaker), classified retries with
//! exponential backoff and jitter, per-operation deadlines, client-side rate limits, and the
//! counters that show how it goes. Configured by the resilience seed's `resilience` block.

pub mod breaker;
pub mod config;
mod provider;

pub use breaker::{Admission, Breaker, BreakerRules, CircuitState};
pub use config::{ConfigError, ResilienceConfig};
pub use provider::{
    BREAKER_PREFIX, CIRCUIT_OPEN, DESCRIBE_INSTANCES, OpMetrics, RUN_INSTANCES, Resilient, TERMINATE_INSTANCES,
    breaker_key, breakers, retryable, unhealthy,
};
