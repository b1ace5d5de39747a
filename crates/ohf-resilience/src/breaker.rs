//! The circuit breaker as a pure state machine over time: CLOSED counts consecutive failures
//! and opens at the threshold; OPEN fails fast until the reset timeout has passed, then lets a
//! bounded number of probe calls through (HALF_OPEN); a successful probe closes it, a failed
//! one (or no success within the half-open timeout) opens it again. The state is plain data,
//! stored where every process sharing the store reads it.

use std::time::Duration;

use ohf_domain::Timestamp;
use serde::{Deserialize, Serialize};

use crate::config::BreakerPolicy;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "CLOSED",
            Self::Open => "OPEN",
            Self::HalfOpen => "HALF_OPEN",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breaker {
    pub state: CircuitState,
    /// Consecutive failures.
    pub failures: u32,
    /// When the state last changed (unix ms).
    pub changed_at: i64,
    pub last_failure_at: Option<i64>,
    pub last_success_at: Option<i64>,
    /// Probe calls let through since the breaker half-opened.
    pub probes: u32,
    /// How many times it has opened.
    pub opened: u64,
}

impl Breaker {
    pub fn new(now: Timestamp) -> Self {
        Self {
            state: CircuitState::Closed,
            failures: 0,
            changed_at: now.unix_millis(),
            last_failure_at: None,
            last_success_at: None,
            probes: 0,
            opened: 0,
        }
    }
}

/// Whether a call may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// Failing fast; the breaker may let calls through again after this long.
    Refused {
        retry_after: Duration,
    },
}

fn elapsed(now: Timestamp, since_ms: i64) -> Duration {
    Duration::from_millis((now.unix_millis() - since_ms).max(0) as u64)
}

impl Breaker {
    fn become_(&mut self, state: CircuitState, now: Timestamp) {
        self.state = state;
        self.changed_at = now.unix_millis();
        self.probes = 0;
        if state == CircuitState::Open {
            self.opened += 1;
        }
        if state == CircuitState::Closed {
            self.failures = 0;
        }
    }

    /// Decides on one call at `now`, moving OPEN to HALF_OPEN (and a stale HALF_OPEN back to
    /// OPEN) as time says.
    pub fn admit(&mut self, now: Timestamp, p: &BreakerPolicy) -> Admission {
        if self.state == CircuitState::Open {
            let waited = elapsed(now, self.changed_at);
            if waited < p.reset_timeout {
                return Admission::Refused { retry_after: p.reset_timeout - waited };
            }
            self.become_(CircuitState::HalfOpen, now);
        }
        if self.state == CircuitState::HalfOpen {
            if elapsed(now, self.changed_at) >= p.half_open_timeout {
                self.become_(CircuitState::Open, now);
                return Admission::Refused { retry_after: p.reset_timeout };
            }
            if self.probes >= p.half_open_max_calls {
                let left = p.half_open_timeout.saturating_sub(elapsed(now, self.changed_at));
                return Admission::Refused { retry_after: left.max(Duration::from_secs(1)) };
            }
            self.probes += 1;
        }
        Admission::Allowed
    }

    /// A success; a closed breaker without failures does not change (so that it needs no write).
    pub fn on_success(&mut self, now: Timestamp) {
        if self.state == CircuitState::Closed && self.failures == 0 {
            return;
        }
        self.last_success_at = Some(now.unix_millis());
        self.failures = 0;
        if self.state == CircuitState::HalfOpen {
            self.become_(CircuitState::Closed, now);
        }
    }

    pub fn on_failure(&mut self, now: Timestamp, p: &BreakerPolicy) {
        self.last_failure_at = Some(now.unix_millis());
        self.failures = self.failures.saturating_add(1);
        match self.state {
            CircuitState::Closed if self.failures >= p.failure_threshold => self.become_(CircuitState::Open, now),
            CircuitState::HalfOpen => self.become_(CircuitState::Open, now),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use ohf_domain::testing::T0;

    use super::*;

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            failure_threshold: 3,
            reset_timeout: Duration::from_secs(30),
            half_open_timeout: Duration::from_secs(15),
            half_open_max_calls: 1,
        }
    }

    #[test]
    fn opens_at_the_threshold_and_fails_fast_while_open() {
        let p = policy();
        let mut b = Breaker::new(T0);
        for _ in 0..2 {
            assert_eq!(b.admit(T0, &p), Admission::Allowed);
            b.on_failure(T0, &p);
        }
        assert_eq!(b.state, CircuitState::Closed, "two failures are below the threshold");
        b.on_success(T0);
        assert_eq!(b.failures, 0, "a success resets the count: failures must be consecutive");
        for _ in 0..3 {
            b.on_failure(T0, &p);
        }
        assert_eq!((b.state, b.opened), (CircuitState::Open, 1));
        assert_eq!(b.admit(T0.plus_secs(10), &p), Admission::Refused { retry_after: Duration::from_secs(20) });
        assert_eq!(b.state, CircuitState::Open);
    }

    #[test]
    fn half_opens_after_the_reset_timeout_closes_on_success_and_reopens_on_failure() {
        let p = policy();
        let mut b = Breaker::new(T0);
        (0..3).for_each(|_| b.on_failure(T0, &p));
        let later = T0.plus_secs(30);
        assert_eq!(b.admit(later, &p), Admission::Allowed, "one probe goes through");
        assert_eq!(b.state, CircuitState::HalfOpen);
        assert!(matches!(b.admit(later, &p), Admission::Refused { .. }), "probes are bounded");
        b.on_success(later);
        assert_eq!(b.state, CircuitState::Closed);

        (0..3).for_each(|_| b.on_failure(later, &p));
        let probe_at = later.plus_secs(30);
        assert_eq!(b.admit(probe_at, &p), Admission::Allowed);
        b.on_failure(probe_at, &p);
        assert_eq!((b.state, b.opened), (CircuitState::Open, 3), "a failed probe opens it again");
    }

    #[test]
    fn a_half_open_breaker_without_success_opens_again_after_its_timeout() {
        let p = policy();
        let mut b = Breaker::new(T0);
        (0..3).for_each(|_| b.on_failure(T0, &p));
        assert_eq!(b.admit(T0.plus_secs(30), &p), Admission::Allowed);
        // The probe never reports (its process died): the half-open timeout reopens the breaker.
        assert!(matches!(b.admit(T0.plus_secs(45), &p), Admission::Refused { .. }));
        assert_eq!(b.state, CircuitState::Open);
        assert_eq!(b.admit(T0.plus_secs(75), &p), Admission::Allowed, "and the cycle starts over");
    }
}
