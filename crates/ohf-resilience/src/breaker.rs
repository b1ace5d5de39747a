//! The circuit breaker as a pure state machine over time: CLOSED counts consecutive failures
//! and opens at the threshold; OPEN fails fast until the reset timeout has passed, then lets a
//! bounded number of probe calls through (HALF_OPEN); a successful probe closes it, a failed
//! one (or no success within the half-open timeout) opens it again. The state is plain data,
//! stored where every process sharing the store reads it.

use std::time::Duration;

pub use ohf_app::shared::{Breaker, CircuitState};
use ohf_domain::Timestamp;

use crate::config::BreakerPolicy;

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

/// The breaker's transitions, on the state the application reads (`ohf_app::shared::Breaker`).
pub trait BreakerRules {
    /// Decides on one call at `now`, moving OPEN to HALF_OPEN (and a stale HALF_OPEN back to
    /// OPEN) as time says.
    fn admit(&mut self, now: Timestamp, p: &BreakerPolicy) -> Admission;
    /// A success; a closed breaker without failures does not change (so that it needs no write).
    fn on_success(&mut self, now: Timestamp);
    /// A failure that counts against the breaker.
    fn on_failure(&mut self, now: Timestamp, p: &BreakerPolicy);
}

fn become_(b: &mut Breaker, state: CircuitState, now: Timestamp) {
    b.state = state;
    b.changed_at = now.unix_millis();
    b.probes = 0;
    if state == CircuitState::Open {
        b.opened += 1;
    }
    if state == CircuitState::Closed {
        b.failures = 0;
    }
}

impl BreakerRules for Breaker {
    /// Decides on one call at `now`, moving OPEN to HALF_OPEN (and a stale HALF_OPEN back to
    /// OPEN) as time says.
    fn admit(&mut self, now: Timestamp, p: &BreakerPolicy) -> Admission {
        if self.state == CircuitState::Open {
            let waited = elapsed(now, self.changed_at);
            if waited < p.reset_timeout {
                return Admission::Refused { retry_after: p.reset_timeout - waited };
            }
            become_(self, CircuitState::HalfOpen, now);
        }
        if self.state == CircuitState::HalfOpen {
            if elapsed(now, self.changed_at) >= p.half_open_timeout {
                become_(self, CircuitState::Open, now);
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
    fn on_success(&mut self, now: Timestamp) {
        if self.state == CircuitState::Closed && self.failures == 0 {
            return;
        }
        self.last_success_at = Some(now.unix_millis());
        self.failures = 0;
        if self.state == CircuitState::HalfOpen {
            become_(self, CircuitState::Closed, now);
        }
    }

    fn on_failure(&mut self, now: Timestamp, p: &BreakerPolicy) {
        self.last_failure_at = Some(now.unix_millis());
        self.failures = self.failures.saturating_add(1);
        match self.state {
            CircuitState::Closed if self.failures >= p.failure_threshold => become_(self, CircuitState::Open, now),
            CircuitState::HalfOpen => become_(self, CircuitState::Open, now),
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
