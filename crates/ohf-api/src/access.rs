//! Who may call what, and how often: bearer tokens with roles, and a token bucket per client.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use ohf_domain::ErrorCode;
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use ohf_app::Clock;

/// What a token may do: readers query, operators also request and return, admins also change
/// providers and configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Reader,
    Operator,
    Admin,
}

/// A bearer token from configuration. The token itself never prints.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    pub name: String,
    pub token: String,
    pub role: Role,
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken")
            .field("name", &self.name)
            .field("token", &"[redacted]")
            .field("role", &self.role)
            .finish()
    }
}

/// The role an API method needs, by its name in the JSON API (gRPC methods map to the same
/// names: `RequestMachines` is `requestMachines`). A method not named here needs the admin
/// role: whatever is added later is denied until it is placed.
pub fn needed(method: &str) -> Role {
    match method {
        "getRequestStatus"
        | "getReturnRequests"
        | "listRequests"
        | "watchRequest"
        | "getRequestHistory"
        | "getAvailableTemplates"
        | "getTemplate"
        | "validateTemplate"
        | "getResilienceStatus"
        | "getRequestReport"
        | "getOverview"
        | "selectProviderStrategy"
        | "getProviderHealth"
        | "listAvailableProviders"
        | "getProviderMetrics"
        | "getProviderCapabilities"
        | "getRoutingRequest"
        | "listRoutingRequests"
        | "getRoutingWorkloads"
        | "getWorkload"
        | "getAvailableCapacity" => Role::Reader,
        "requestMachines"
        | "requestReturnMachines"
        | "cancelRequest"
        | "executeProviderOperation"
        | "routeRequest"
        | "unrouteRequest" => Role::Operator,
        _ => Role::Admin,
    }
}

/// Who is calling: a token's name and role, or, when no tokens are configured, an anonymous
/// caller with `anonymous` (operator unless configured otherwise: admin calls want a token).
pub fn caller(tokens: &[ApiToken], anonymous: Role, authorization: Option<&str>) -> Option<(String, Role)> {
    if tokens.is_empty() {
        return Some(("anonymous".to_owned(), anonymous));
    }
    authenticate(tokens, authorization).map(|t| (t.name.clone(), t.role))
}

/// Compares in time independent of where the strings differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token that `authorization` ("Bearer …") presents, if it is one of `tokens`.
pub fn authenticate<'a>(tokens: &'a [ApiToken], authorization: Option<&str>) -> Option<&'a ApiToken> {
    let presented = authorization?.strip_prefix("Bearer ")?.trim();
    tokens.iter().find(|t| same(&t.token, presented))
}

/// Who may call, and how often.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// Bearer tokens; with none configured every caller gets `anonymous_role`.
    pub tokens: Vec<ApiToken>,
    pub rate_limit: Option<RateLimit>,
    /// The role of callers when no tokens are configured (`ohf serve` gives admin only on a
    /// loopback listener).
    pub anonymous_role: Role,
}

impl Default for ApiOptions {
    fn default() -> Self {
        Self { tokens: Vec::new(), rate_limit: None, anonymous_role: Role::Admin }
    }
}

/// The gate every call passes: who is calling, whether their role allows the method, and
/// whether they are within their rate limit. Shared by every ingress of one daemon.
pub struct Gate {
    tokens: Vec<ApiToken>,
    anonymous: Role,
    limiter: Option<Limiter>,
}

impl Gate {
    pub fn new(options: ApiOptions, clock: Arc<dyn Clock>) -> Self {
        Self {
            tokens: options.tokens,
            anonymous: options.anonymous_role,
            limiter: options.rate_limit.map(|l| Limiter::new(l, clock)),
        }
    }

    /// Admits a call of `method` presenting `authorization`; answers with the caller's name.
    pub fn admit(&self, authorization: Option<&str>, method: &str) -> Result<String, ApiError> {
        let Some((client, role)) = caller(&self.tokens, self.anonymous, authorization) else {
            return Err(ApiError::new(ErrorCode::Unauthenticated, "a valid bearer token is required"));
        };
        if let Some(limiter) = &self.limiter
            && let Err(wait) = limiter.take(&client)
        {
            let mut e = ApiError::new(ErrorCode::RateLimited, "too many calls; retry later");
            e.details = json!({"retryAfter": wait});
            e.retry_after = Some(wait);
            return Err(e);
        }
        if role < needed(method) {
            let mut e = ApiError::new(ErrorCode::PermissionDenied, format!("'{client}' may not call {method}"));
            e.details = json!({"method": method, "needs": format!("{:?}", needed(method)).to_lowercase()});
            return Err(e);
        }
        Ok(client)
    }

    /// Whether `authorization` names a caller at all (any role); checked before a body is read.
    pub fn knows(&self, authorization: Option<&str>) -> Result<(), ApiError> {
        match caller(&self.tokens, self.anonymous, authorization) {
            Some(_) => Ok(()),
            None => Err(ApiError::new(ErrorCode::Unauthenticated, "a valid bearer token is required")),
        }
    }
}

/// Calls allowed per client: `burst` at once, refilled at `per_sec`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_sec: f64,
    pub burst: f64,
}

/// A token bucket per client.
pub struct Limiter {
    limit: RateLimit,
    clock: Arc<dyn Clock>,
    buckets: Mutex<HashMap<String, (f64, i64)>>,
}

impl Limiter {
    pub fn new(limit: RateLimit, clock: Arc<dyn Clock>) -> Self {
        Self { limit, clock, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one call for `client`; when none is left, the whole seconds until one is.
    pub fn take(&self, client: &str) -> Result<(), u64> {
        let now = self.clock.now().unix_millis();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = buckets.entry(client.to_owned()).or_insert((self.limit.burst, now));
        let refill = (now - *last).max(0) as f64 / 1000.0 * self.limit.per_sec;
        *tokens = (*tokens + refill).min(self.limit.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.limit.per_sec).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_print_and_compare_whole() {
        let t = ApiToken { name: "ops".into(), token: "s3cret".into(), role: Role::Operator };
        assert!(!format!("{t:?}").contains("s3cret"));
        let tokens = [t];
        assert!(authenticate(&tokens, Some("Bearer s3cret")).is_some());
        assert!(authenticate(&tokens, Some("Bearer s3cre")).is_none());
        assert!(authenticate(&tokens, Some("s3cret")).is_none());
        assert!(authenticate(&tokens, None).is_none());
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Reader);
    }

    #[test]
    fn methods_nobody_placed_need_the_admin_role() {
        assert_eq!(needed("getRequestStatus"), Role::Reader);
        assert_eq!(needed("requestMachines"), Role::Operator);
        assert_eq!(needed("sweepOrphans"), Role::Admin);
        assert_eq!(needed("dropEverything"), Role::Admin);
        assert_eq!(caller(&[], Role::Operator, None).map(|c| c.1), Some(Role::Operator));
    }
}

#[cfg(test)]
mod properties {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use ohf_app::memory::ManualClock;

    proptest! {
        /// Over any spacing of calls, a client gets at most its burst plus what the rate refills
        /// in the time that passed, and every refusal says how long to wait (at least 1 s).
        #[test]
        fn the_limiter_never_lets_more_through_than_burst_and_rate(
            per_sec in 0.5f64..50.0,
            burst in 1.0f64..20.0,
            gaps in proptest::collection::vec(0u64..2_000, 1..200),
        ) {
            let clock = Arc::new(ManualClock::new(ohf_domain::testing::T0));
            let limiter = Limiter::new(RateLimit { per_sec, burst }, clock.clone());
            let mut allowed = 0u64;
            let mut elapsed_ms = 0u64;
            for gap in gaps {
                clock.advance_millis(gap);
                elapsed_ms += gap;
                match limiter.take("client") {
                    Ok(()) => allowed += 1,
                    Err(wait) => prop_assert!(wait >= 1),
                }
                let most = burst + per_sec * elapsed_ms as f64 / 1000.0;
                prop_assert!(allowed as f64 <= most + 1e-9, "{} allowed, at most {}", allowed, most);
            }
            prop_assert!(limiter.take("another").is_ok(), "clients have buckets of their own");
        }
    }
}
