//! The circuit breakers every process shares, and this process's call figures per provider.

use serde_json::Value;

use crate::cqrs::{Handler, message};
use crate::shared::{Breaker, keys};
use crate::{App, AppError};

/// Every circuit breaker as the store holds it (shared by every process, so the state the next
/// call of any of them meets), and each provider's own report of its calls in this process.
#[derive(Debug, Clone, Copy, Default)]
pub struct GetResilienceStatus;

/// One stored breaker.
#[derive(Debug, Clone)]
pub struct StoredBreaker {
    /// The provider it guards.
    pub provider: String,
    /// The service of the provider (ec2, autoscaling, …).
    pub service: String,
    /// Its state.
    pub breaker: Breaker,
}

/// The answer of [`GetResilienceStatus`].
#[derive(Debug, Clone, Default)]
pub struct ResilienceStatus {
    /// Every stored breaker.
    pub breakers: Vec<StoredBreaker>,
    /// `(provider, report)`: the provider's calls by operation in this process.
    pub providers: Vec<(String, Value)>,
}

message!(query GetResilienceStatus => ResilienceStatus);

impl Handler<GetResilienceStatus> for App {
    async fn handle(&self, _q: GetResilienceStatus) -> Result<ResilienceStatus, AppError> {
        let mut breakers = Vec::new();
        for (key, value, _) in self.store.list_shared(keys::BREAKERS).await? {
            let Some((provider, service)) = keys::breaker_of(&key) else { continue };
            match serde_json::from_str::<Breaker>(&value) {
                Ok(breaker) => {
                    breakers.push(StoredBreaker { provider: provider.to_owned(), service: service.to_owned(), breaker })
                }
                Err(e) => tracing::warn!(key, error = %e, "a stored breaker does not decode; left out"),
            }
        }
        let providers = self.providers().iter().filter_map(|p| p.report().map(|r| (p.name().to_string(), r))).collect();
        Ok(ResilienceStatus { breakers, providers })
    }
}
