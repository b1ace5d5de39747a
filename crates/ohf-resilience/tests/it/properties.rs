//! Properties of the circuit breaker under any sequence of calls, outcomes and time.

use std::time::Duration;

use ohf_domain::testing::T0;
use ohf_resilience::breaker::{Admission, Breaker, BreakerRules, CircuitState};
use ohf_resilience::config::BreakerPolicy;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Event {
    Call { ok: bool },
    Wait(u32),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![any::<bool>().prop_map(|ok| Event::Call { ok }), (0u32..40_000).prop_map(Event::Wait)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// An open breaker refuses every call until its reset timeout has passed; a closed one
    /// refuses none; half open lets at most `half_open_max_calls` probes through; it opens only
    /// after `failure_threshold` failures in a row (or a failed probe); a refusal always says
    /// when to try again.
    #[test]
    fn the_breaker_keeps_its_promises(
        threshold in 1u32..6,
        reset_ms in 1u64..30_000,
        half_open_ms in 1u64..30_000,
        probes in 1u32..4,
        events in proptest::collection::vec(event(), 1..80),
    ) {
        let p = BreakerPolicy {
            failure_threshold: threshold,
            reset_timeout: Duration::from_millis(reset_ms),
            half_open_timeout: Duration::from_millis(half_open_ms),
            half_open_max_calls: probes,
        };
        let mut b = Breaker::new(T0);
        let mut now = T0;
        let mut in_a_row = 0u32;
        let mut probes_let = 0u32;
        for e in events {
            match e {
                Event::Wait(ms) => now = now.plus_millis(i64::from(ms)),
                Event::Call { ok } => {
                    let before = b.state;
                    let opened_at = b.changed_at;
                    let admitted = b.admit(now, &p);
                    match (before, admitted) {
                        (CircuitState::Closed, a) => prop_assert_eq!(a, Admission::Allowed),
                        (CircuitState::Open, Admission::Allowed) => {
                            prop_assert!(now.unix_millis() - opened_at >= reset_ms as i64, "open let a call through early");
                        }
                        (_, Admission::Refused { retry_after }) => prop_assert!(retry_after > Duration::ZERO),
                        _ => {}
                    }
                    if b.state == CircuitState::HalfOpen && before != CircuitState::HalfOpen {
                        probes_let = 0;
                    }
                    if admitted == Admission::Allowed {
                        if b.state == CircuitState::HalfOpen {
                            probes_let += 1;
                            prop_assert!(probes_let <= probes, "more probes than allowed");
                        }
                        let was = b.state;
                        if ok {
                            b.on_success(now);
                            in_a_row = 0;
                            prop_assert_eq!(b.state, CircuitState::Closed, "a success closes it");
                        } else {
                            b.on_failure(now, &p);
                            in_a_row += 1;
                            if was == CircuitState::Closed {
                                prop_assert_eq!(b.state == CircuitState::Open, in_a_row >= threshold);
                            } else {
                                prop_assert_eq!(b.state, CircuitState::Open, "a failed probe opens it again");
                            }
                        }
                        if b.state == CircuitState::Open {
                            in_a_row = 0;
                        }
                    }
                }
            }
        }
    }
}
