//! Every key ohf keeps in the store's shared state, in one place: each kind of value under a
//! prefix of its own.

/// The store's identity (`RequestStore::installation`).
pub const INSTALLATION: &str = "installation";
/// A provider's health: `provider-health/<provider>`.
pub const HEALTH: &str = "provider-health/";
/// A provider's hourly figures: `provider-metrics/<provider>/<operation>/<slot>`.
pub const METRICS: &str = "provider-metrics/";
/// A provider registration: `provider/<provider>`.
pub const ENTRY: &str = "provider/";
/// The provider-strategy configuration.
pub const CONFIG: &str = "strategy/config";
/// Round robin's turn counter.
pub const CURSOR: &str = "strategy/cursor";
/// The alerter's state (open conditions, each rule's window), shared by every process.
pub const ALERTS: &str = "alerts/state";
/// A circuit breaker (kept by `ohf-resilience`): `breaker/<provider>/<service>`.
pub const BREAKERS: &str = "breaker/";
/// The cached figures of an instance type: `instance-type/<name>`.
pub const INSTANCE_TYPE: &str = "instance-type/";

/// The key of a provider's health.
pub fn health(provider: &str) -> String {
    format!("{HEALTH}{provider}")
}

/// The key of one hour slot of a provider's figures for one operation.
pub fn metrics(provider: &str, op: &str, slot: i64) -> String {
    format!("{METRICS}{provider}/{op}/{slot}")
}

/// The key of a provider's breaker for one service.
pub fn breaker(provider: &str, service: &str) -> String {
    format!("{BREAKERS}{provider}/{service}")
}

/// `(provider, service)` of a breaker's key.
pub fn breaker_of(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(BREAKERS)?;
    rest.split_once('/')
}

/// The key of an instance type's cached figures.
pub fn instance_type(name: &str) -> String {
    format!("{INSTANCE_TYPE}{name}")
}

/// The lease every change to routing state is made under (one writer at a time).
pub const ROUTING_LEASE: &str = "routing/lease";
/// A routing request that holds capacity (BOOKED, PLACED): `routing/open/<id>`.
pub const ROUTING_OPEN: &str = "routing/open/";
/// A routing request that holds nothing (REJECTED, EXPIRED): `routing/closed/<id>`.
pub const ROUTING_CLOSED: &str = "routing/closed/";
/// A workload taken out of its request, to be routed again by id: `routing/unrouted/<id>`.
pub const ROUTING_UNROUTED: &str = "routing/unrouted/";
/// What the last recalculation measured of a venue: `venue-reading/<venue>`.
pub const VENUE_READING: &str = "venue-reading/";
/// The sensors of a venue being recalculated now: `venue-refresh/<venue>`.
pub const VENUE_REFRESH: &str = "venue-refresh/";
