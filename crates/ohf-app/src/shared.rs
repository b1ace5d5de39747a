//! Typed values in the store's shared state, changed by compare-and-set so that every
//! process sharing the store may change them at once.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::ports::{SharedState, StoreError};

pub use crate::keys;

/// Reads the value under `key` (`init()` when absent or unreadable).
pub async fn load<T: DeserializeOwned>(
    store: &dyn SharedState,
    key: &str,
    init: impl Fn() -> T,
) -> Result<(T, i64), StoreError> {
    let (raw, version) = store.load_shared(key).await?;
    Ok((raw.and_then(|r| serde_json::from_str(&r).ok()).unwrap_or_else(init), version))
}

/// Applies `change` to the value under `key` and stores it, again on a fresh read when
/// another writer came first; answers the value before and after. Nothing is written when
/// `change` changes nothing.
pub async fn update<T>(
    store: &dyn SharedState,
    key: &str,
    init: impl Fn() -> T,
    mut change: impl FnMut(&mut T),
) -> Result<(T, T), StoreError>
where
    T: Serialize + DeserializeOwned + Clone + PartialEq,
{
    for _ in 0..16 {
        let (mut value, version) = load(store, key, &init).await?;
        let before = value.clone();
        change(&mut value);
        if value == before {
            return Ok((before, value));
        }
        let text = serde_json::to_string(&value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if store.store_shared(key, &text, version).await? {
            return Ok((before, value));
        }
    }
    Err(StoreError::Unavailable(format!("'{key}' kept changing under this writer")))
}

/// Stores `value` under `key` over whatever is there (last writer wins).
pub async fn put<T: Serialize>(store: &dyn SharedState, key: &str, value: &T) -> Result<(), StoreError> {
    let text = serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    for _ in 0..16 {
        let (_, version) = store.load_shared(key).await?;
        if store.store_shared(key, &text, version).await? {
            return Ok(());
        }
    }
    Err(StoreError::Unavailable(format!("'{key}' kept changing under this writer")))
}

/// A circuit breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CircuitState {
    /// Calls go through; failures are counted.
    Closed,
    /// Calls fail fast until the reset timeout.
    Open,
    /// A few probe calls go through to test recovery.
    HalfOpen,
}

impl CircuitState {
    /// The state as the APIs show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "CLOSED",
            Self::Open => "OPEN",
            Self::HalfOpen => "HALF_OPEN",
        }
    }
}

/// A circuit breaker of one provider and service as stored under [`keys::breaker`]: the
/// resilience layer changes it (`ohf-resilience`'s `BreakerRules`); the application reads it
/// (an OPEN breaker makes its provider unhealthy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breaker {
    /// Where it stands.
    pub state: CircuitState,
    /// Consecutive failures.
    pub failures: u32,
    /// When the state last changed (unix ms).
    pub changed_at: i64,
    /// The last failure (unix ms).
    pub last_failure_at: Option<i64>,
    /// The last success (unix ms).
    pub last_success_at: Option<i64>,
    /// Probe calls let through since the breaker half-opened.
    pub probes: u32,
    /// How many times it has opened.
    pub opened: u64,
}

impl Breaker {
    /// A closed breaker with no history.
    pub fn new(now: ohf_domain::Timestamp) -> Self {
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
