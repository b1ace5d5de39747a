//! The `resilience` block of the resilience seed, accepted as it is (JSON in a `.json` config,
//! the same keys as tables in `ohf.toml`), with the seed's values as defaults. ohf adds
//! `circuit_breaker.half_open_max_calls` and `rate_limit`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResilienceConfig {
    pub circuit_breaker: BreakerConfig,
    pub retry: RetryConfig,
    pub timeout: TimeoutConfig,
    pub error_handling: ErrorHandling,
    pub rate_limit: RateLimitConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    pub enabled: bool,
    pub default_failure_threshold: u32,
    /// Seconds an open breaker fails fast before it lets probe calls through.
    pub default_reset_timeout: f64,
    /// Seconds a half-open breaker waits for a successful probe before it opens again.
    pub default_half_open_timeout: f64,
    /// Probe calls let through at once while half-open.
    pub half_open_max_calls: u32,
    pub services: BTreeMap<String, BreakerOverride>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerOverride {
    pub failure_threshold: Option<u32>,
    pub reset_timeout: Option<f64>,
    pub half_open_timeout: Option<f64>,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        let service = |f, r, h| BreakerOverride {
            failure_threshold: Some(f),
            reset_timeout: Some(r),
            half_open_timeout: Some(h),
        };
        Self {
            enabled: true,
            default_failure_threshold: 5,
            default_reset_timeout: 60.0,
            default_half_open_timeout: 30.0,
            half_open_max_calls: 1,
            services: BTreeMap::from([
                ("aws_ec2".to_owned(), service(3, 30.0, 15.0)),
                ("aws_autoscaling".to_owned(), service(5, 60.0, 30.0)),
                ("aws_spot_fleet".to_owned(), service(3, 45.0, 20.0)),
            ]),
        }
    }
}

/// The breaker settings of one service, defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerPolicy {
    pub failure_threshold: u32,
    pub reset_timeout: Duration,
    pub half_open_timeout: Duration,
    pub half_open_max_calls: u32,
}

impl BreakerConfig {
    pub fn policy(&self, service: &str) -> BreakerPolicy {
        let o = self.services.get(service).cloned().unwrap_or_default();
        BreakerPolicy {
            failure_threshold: o.failure_threshold.unwrap_or(self.default_failure_threshold),
            reset_timeout: secs(o.reset_timeout.unwrap_or(self.default_reset_timeout)),
            half_open_timeout: secs(o.half_open_timeout.unwrap_or(self.default_half_open_timeout)),
            half_open_max_calls: self.half_open_max_calls,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub enabled: bool,
    pub default_max_attempts: u32,
    pub default_base_delay: f64,
    pub default_max_delay: f64,
    pub default_exponential_base: f64,
    pub default_jitter: bool,
    pub operations: BTreeMap<String, RetryOverride>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryOverride {
    pub max_attempts: Option<u32>,
    pub base_delay: Option<f64>,
    pub max_delay: Option<f64>,
    pub exponential_base: Option<f64>,
    pub jitter: Option<bool>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        let op = |a, b, m| RetryOverride {
            max_attempts: Some(a),
            base_delay: Some(b),
            max_delay: Some(m),
            ..Default::default()
        };
        Self {
            enabled: true,
            default_max_attempts: 3,
            default_base_delay: 1.0,
            default_max_delay: 60.0,
            default_exponential_base: 2.0,
            default_jitter: true,
            operations: BTreeMap::from([
                ("ec2_run_instances".to_owned(), op(5, 2.0, 120.0)),
                ("autoscaling_create_group".to_owned(), op(3, 5.0, 180.0)),
                ("spot_fleet_request".to_owned(), op(4, 3.0, 240.0)),
            ]),
        }
    }
}

/// The retry settings of one operation, defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: f64,
    pub max_delay: f64,
    pub exponential_base: f64,
    pub jitter: bool,
}

impl RetryPolicy {
    /// The pause after failed attempt `attempt` (0-based): base × exponential_base^attempt,
    /// capped at max_delay, plus up to 10 % jitter when on (`unit` in [0, 1) draws it).
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let raw = self.base_delay * self.exponential_base.powi(attempt.min(64) as i32);
        let capped = raw.min(self.max_delay);
        let jitter = if self.jitter { capped * 0.1 * unit.clamp(0.0, 1.0) } else { 0.0 };
        secs(capped + jitter)
    }
}

impl RetryConfig {
    pub fn policy(&self, operation: &str) -> RetryPolicy {
        self.policy_with(&self.operations.get(operation).cloned().unwrap_or_default())
    }

    fn policy_with(&self, o: &RetryOverride) -> RetryPolicy {
        RetryPolicy {
            max_attempts: if self.enabled { o.max_attempts.unwrap_or(self.default_max_attempts) } else { 1 },
            base_delay: o.base_delay.unwrap_or(self.default_base_delay),
            max_delay: o.max_delay.unwrap_or(self.default_max_delay),
            exponential_base: o.exponential_base.unwrap_or(self.default_exponential_base),
            jitter: o.jitter.unwrap_or(self.default_jitter),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutConfig {
    /// Seconds.
    pub default_timeout: f64,
    /// Seconds per operation; the whole operation, its retries and their pauses included.
    pub operations: BTreeMap<String, f64>,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        Self {
            default_timeout: 30.0,
            operations: BTreeMap::from(
                [
                    ("ec2_run_instances", 180.0),
                    ("ec2_terminate_instances", 60.0),
                    ("ec2_describe_instances", 30.0),
                    ("autoscaling_create_group", 120.0),
                    ("autoscaling_delete_group", 180.0),
                    ("spot_fleet_request", 300.0),
                    ("spot_fleet_cancel", 120.0),
                ]
                .map(|(k, v)| (k.to_owned(), v)),
            ),
        }
    }
}

impl TimeoutConfig {
    pub fn of(&self, operation: &str) -> Duration {
        secs(self.operations.get(operation).copied().unwrap_or(self.default_timeout))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErrorHandling {
    pub log_retries: bool,
    pub log_circuit_breaker_state_changes: bool,
    pub alert_on_circuit_breaker_open: bool,
    pub max_consecutive_failures_before_alert: u32,
}

impl Default for ErrorHandling {
    fn default() -> Self {
        Self {
            log_retries: true,
            log_circuit_breaker_state_changes: true,
            alert_on_circuit_breaker_open: true,
            max_consecutive_failures_before_alert: 10,
        }
    }
}

/// Client-side request buckets per operation, shared by every call of a process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub enabled: bool,
    pub operations: BTreeMap<String, Bucket>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bucket {
    pub burst: f64,
    pub per_sec: f64,
}

impl Default for RateLimitConfig {
    /// EC2's documented request buckets: RunInstances 5 at once and 2 per second; mutating
    /// actions 200 and 5; non-mutating ones 100 and 20.
    fn default() -> Self {
        let b = |burst, per_sec| Bucket { burst, per_sec };
        Self {
            enabled: true,
            operations: BTreeMap::from(
                [
                    ("ec2_run_instances", b(5.0, 2.0)),
                    ("ec2_terminate_instances", b(200.0, 5.0)),
                    ("ec2_describe_instances", b(100.0, 20.0)),
                ]
                .map(|(k, v)| (k.to_owned(), v)),
            ),
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// A setting out of range, named by its key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("resilience.{key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ResilienceConfig {
    /// Checks every value; the first problem is named by its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |key: String, message: &str| Err(ConfigError { key, message: message.to_owned() });
        let positive =
            |key: String, v: f64| if v > 0.0 && v.is_finite() { Ok(()) } else { fail(key, "must be above 0") };
        let cb = &self.circuit_breaker;
        if cb.default_failure_threshold == 0 {
            return fail("circuit_breaker.default_failure_threshold".into(), "must be at least 1");
        }
        if cb.half_open_max_calls == 0 {
            return fail("circuit_breaker.half_open_max_calls".into(), "must be at least 1");
        }
        positive("circuit_breaker.default_reset_timeout".into(), cb.default_reset_timeout)?;
        positive("circuit_breaker.default_half_open_timeout".into(), cb.default_half_open_timeout)?;
        for (name, o) in &cb.services {
            let key = |k: &str| format!("circuit_breaker.services.{name}.{k}");
            if o.failure_threshold == Some(0) {
                return fail(key("failure_threshold"), "must be at least 1");
            }
            if let Some(v) = o.reset_timeout {
                positive(key("reset_timeout"), v)?;
            }
            if let Some(v) = o.half_open_timeout {
                positive(key("half_open_timeout"), v)?;
            }
        }
        let r = &self.retry;
        let ops = std::iter::once(("default".to_owned(), r.policy_with(&RetryOverride::default())))
            .chain(r.operations.keys().map(|k| (format!("operations.{k}"), r.policy(k))));
        for (name, p) in ops {
            if r.enabled && p.max_attempts == 0 {
                return fail(format!("retry.{name}.max_attempts"), "must be at least 1");
            }
            if !(p.base_delay >= 0.0 && p.base_delay.is_finite()) {
                return fail(format!("retry.{name}.base_delay"), "must not be negative");
            }
            if !(p.max_delay >= p.base_delay && p.max_delay.is_finite()) {
                return fail(format!("retry.{name}.max_delay"), "must be at least base_delay");
            }
            if !(p.exponential_base >= 1.0 && p.exponential_base.is_finite()) {
                return fail(format!("retry.{name}.exponential_base"), "must be at least 1");
            }
        }
        positive("timeout.default_timeout".into(), self.timeout.default_timeout)?;
        for (op, t) in &self.timeout.operations {
            positive(format!("timeout.operations.{op}"), *t)?;
        }
        for (op, b) in &self.rate_limit.operations {
            positive(format!("rate_limit.operations.{op}.per_sec"), b.per_sec)?;
            if !(b.burst >= 1.0 && b.burst.is_finite()) {
                return fail(format!("rate_limit.operations.{op}.burst"), "must be at least 1");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_block_is_accepted_as_it_is() {
        let block = serde_json::json!({
            "circuit_breaker": {"enabled": true, "default_failure_threshold": 5, "default_reset_timeout": 60,
                "default_half_open_timeout": 30,
                "services": {"aws_ec2": {"failure_threshold": 3, "reset_timeout": 30, "half_open_timeout": 15}}},
            "retry": {"enabled": true, "default_max_attempts": 3, "default_base_delay": 1.0, "default_max_delay": 60.0,
                "default_exponential_base": 2.0, "default_jitter": true,
                "operations": {"ec2_run_instances": {"max_attempts": 5, "base_delay": 2.0, "max_delay": 120.0}}},
            "timeout": {"default_timeout": 30, "operations": {"ec2_run_instances": 180, "ec2_terminate_instances": 60}},
            "error_handling": {"log_retries": true, "log_circuit_breaker_state_changes": true,
                "alert_on_circuit_breaker_open": true, "max_consecutive_failures_before_alert": 10}
        });
        let c: ResilienceConfig = serde_json::from_value(block).unwrap();
        c.validate().unwrap();
        assert_eq!(c.circuit_breaker.policy("aws_ec2").failure_threshold, 3);
        assert_eq!(c.circuit_breaker.policy("other").reset_timeout, Duration::from_secs(60));
        assert_eq!(c.retry.policy("ec2_run_instances").max_attempts, 5);
        assert_eq!(c.timeout.of("ec2_terminate_instances"), Duration::from_secs(60));
        assert_eq!(c.timeout.of("unknown_op"), Duration::from_secs(30));
    }

    #[test]
    fn bad_values_are_named_by_key() {
        let bad = |v: serde_json::Value| {
            serde_json::from_value::<ResilienceConfig>(v)
                .map_err(|e| e.to_string())
                .and_then(|c| c.validate().map_err(|e| e.to_string()))
                .unwrap_err()
        };
        assert!(bad(serde_json::json!({"retry": {"default_max_attempts": 0}})).contains("retry.default.max_attempts"));
        assert!(
            bad(serde_json::json!({"retry": {"operations": {"x": {"base_delay": 5.0, "max_delay": 1.0}}}}))
                .contains("retry.operations.x.max_delay")
        );
        assert!(
            bad(serde_json::json!({"circuit_breaker": {"default_failure_threshold": 0}}))
                .contains("default_failure_threshold")
        );
        assert!(
            bad(serde_json::json!({"timeout": {"operations": {"ec2_run_instances": -1}}}))
                .contains("timeout.operations.ec2_run_instances")
        );
        assert!(bad(serde_json::json!({"retry": {"max_tries": 3}})).contains("unknown field"));
    }

    #[test]
    fn delays_grow_and_are_capped() {
        let p = RetryPolicy { max_attempts: 9, base_delay: 1.0, max_delay: 10.0, exponential_base: 2.0, jitter: false };
        let d: Vec<u64> = (0..6).map(|a| p.delay(a, 0.5).as_millis() as u64).collect();
        assert_eq!(d, [1000, 2000, 4000, 8000, 10_000, 10_000]);
        let j = RetryPolicy { jitter: true, ..p };
        assert_eq!(j.delay(1, 0.0), Duration::from_secs(2));
        assert_eq!(j.delay(1, 0.999_999).as_millis(), 2199, "jitter adds at most 10 %");
    }
}
