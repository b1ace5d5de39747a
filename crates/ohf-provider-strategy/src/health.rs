//! A provider's health: what its health checks, its own operations and outside monitors say,
//! as one record with pure transitions. Times are unix milliseconds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::HealthBreaker;

/// Who last decided a provider's health.
pub mod sources {
    /// The periodic (or asked-for) health check.
    pub const HEALTH_CHECK: &str = "health_check";
    /// Failures in a row of the provider's own operations.
    pub const OPERATIONS: &str = "operations";
}

/// The stored health of one provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub is_healthy: bool,
    pub status_message: String,
    pub source: String,
    #[serde(default)]
    pub error_code: Option<String>,
    /// Unhealthy until then (an outside update's retry_after, or the recovery timeout);
    /// afterwards the provider is tried again.
    #[serde(default)]
    pub unhealthy_until: Option<i64>,
    /// The longest run of failures in a row of any one operation.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// Failures in a row per operation: launches failing every time make a provider unhealthy
    /// even while its describes succeed.
    #[serde(default)]
    pub streaks: BTreeMap<String, u32>,
    /// When the health last changed.
    pub since: i64,
    #[serde(default)]
    pub last_check: Option<i64>,
}

impl Health {
    pub fn unknown(now: i64) -> Self {
        Self {
            is_healthy: true,
            status_message: "no failures seen".into(),
            source: sources::OPERATIONS.into(),
            error_code: None,
            unhealthy_until: None,
            consecutive_failures: 0,
            streaks: BTreeMap::new(),
            since: now,
            last_check: None,
        }
    }

    /// Healthy now? An unhealthy record whose `unhealthy_until` has passed counts as healthy
    /// again (on probation: one more failure of its operations makes it unhealthy again).
    pub fn healthy_at(&self, now: i64) -> bool {
        self.is_healthy || self.unhealthy_until.is_some_and(|t| now >= t)
    }

    fn set(&mut self, healthy: bool, message: String, source: &str, code: Option<String>, now: i64) {
        if self.is_healthy != healthy {
            self.since = now;
        }
        self.is_healthy = healthy;
        self.status_message = message;
        self.source = source.into();
        self.error_code = code;
    }

    /// One outcome of operation `op`: `failure` holds its error code. Answers whether the
    /// health flipped.
    pub fn record_operation(&mut self, op: &str, failure: Option<&str>, now: i64, breaker: &HealthBreaker) -> bool {
        let was = self.healthy_at(now);
        match failure {
            None => {
                self.streaks.remove(op);
                self.consecutive_failures = self.streaks.values().copied().max().unwrap_or(0);
                // Only what operations decided, operations undo (once no operation is on a
                // failing streak any more); an outside verdict stands until its time runs out.
                let streak_over = self.consecutive_failures < breaker.failure_threshold;
                if !self.is_healthy && streak_over && (self.source == sources::OPERATIONS || self.healthy_at(now)) {
                    self.set(true, "operations succeed again".into(), sources::OPERATIONS, None, now);
                    self.unhealthy_until = None;
                }
            }
            Some(code) => {
                let streak = self.streaks.entry(op.to_owned()).or_default();
                *streak = streak.saturating_add(1);
                let streak = *streak;
                self.consecutive_failures = self.consecutive_failures.max(streak);
                if streak >= breaker.failure_threshold && self.healthy_at(now) {
                    let message = format!("{op} failed {streak} times in a row; last: {code}");
                    self.set(false, message, sources::OPERATIONS, Some(code.into()), now);
                    self.unhealthy_until = Some(now.saturating_add(secs(breaker.recovery_timeout)));
                }
            }
        }
        was != self.healthy_at(now)
    }

    /// A health check's outcome: `Err((code, message))` when it failed.
    pub fn record_check(&mut self, outcome: Result<(), (String, String)>, now: i64) -> bool {
        let was = self.healthy_at(now);
        self.last_check = Some(now);
        match outcome {
            Ok(()) => {
                if !self.healthy_at(now) && self.source != sources::HEALTH_CHECK {
                    // An outside verdict or a failure streak still running wins over one check.
                    return false;
                }
                // The check speaks for what it calls only: the streaks of the provider's own
                // operations (launches failing while describes succeed) run on.
                self.set(true, "health check passed".into(), sources::HEALTH_CHECK, None, now);
                self.unhealthy_until = None;
            }
            Err((code, message)) => {
                self.set(false, format!("health check failed: {message}"), sources::HEALTH_CHECK, Some(code), now);
                self.unhealthy_until = None;
            }
        }
        was != self.healthy_at(now)
    }

    /// `updateProviderHealth` from `source`: unhealthy for `retry_after` seconds when given,
    /// else until the next update or check says otherwise.
    pub fn record_update(
        &mut self,
        healthy: bool,
        message: String,
        code: Option<String>,
        retry_after: Option<u64>,
        source: &str,
        now: i64,
    ) -> bool {
        let was = self.healthy_at(now);
        self.set(healthy, message, source, code, now);
        self.unhealthy_until = if healthy { None } else { retry_after.map(|s| now.saturating_add(secs(s))) };
        if healthy {
            self.consecutive_failures = 0;
            self.streaks.clear();
        }
        was != self.healthy_at(now)
    }
}

fn secs(s: u64) -> i64 {
    i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)
}
