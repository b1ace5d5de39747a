use ohf_domain::{DomainError, ErrorCode};
use serde_json::{Value, json};

use crate::ports::{CatalogError, CloudError, CloudErrorKind, StoreError};

/// Seconds a caller waits on a provider's busy resource (a scaling group or fleet mid-change)
/// when the provider gives no hint: the seed's "retry once every 10 seconds".
const BUSY_RESOURCE_RETRY_SECS: u64 = 10;

/// Why a command or query failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    /// A rule of the domain refused it (validation, not found, quota, …).
    Domain(#[from] DomainError),
    #[error(transparent)]
    /// The store failed or refused a write.
    Store(#[from] StoreError),
    #[error("templates unavailable: {0}")]
    /// The templates could not be read.
    Catalog(#[from] CatalogError),
    #[error("provider '{provider}' failed: {error}")]
    /// A cloud call failed.
    Cloud {
        /// The provider called.
        provider: String,
        /// What it answered.
        error: CloudError,
    },
    #[error("configuration: {0}")]
    /// The application is set up wrongly.
    Configuration(String),
    /// No provider meets the selection criteria.
    #[error("{message}")]
    NoProvider {
        /// Why none fits.
        message: String,
        /// Every provider passed over, with why.
        passed_over: Value,
    },
    /// The request is in the middle of a transition; try again after the hint.
    #[error("request '{request_id}' is busy; retry after {retry_after_secs} s")]
    Busy {
        /// The busy request.
        request_id: String,
        /// Seconds to wait before trying again.
        retry_after_secs: u64,
    },
}

impl AppError {
    /// The error code the APIs answer with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Domain(e) => e.code(),
            // Another writer changed the request between read and write: it is busy, not broken.
            Self::Store(StoreError::Conflict { .. }) => ErrorCode::ResourceBusy,
            Self::Store(_) => ErrorCode::StoreError,
            Self::Catalog(_) | Self::Configuration(_) => ErrorCode::ConfigurationError,
            Self::Cloud { error, .. } => match error.kind {
                CloudErrorKind::Busy => ErrorCode::ResourceBusy,
                CloudErrorKind::Throttling | CloudErrorKind::Unavailable => ErrorCode::ProviderUnavailable,
                _ => ErrorCode::ProviderError,
            },
            Self::NoProvider { .. } => ErrorCode::ProviderError,
            Self::Busy { .. } => ErrorCode::ResourceBusy,
        }
    }

    /// Seconds to wait before trying again, where waiting helps: a busy request, one another
    /// writer just changed, a provider's busy resource, or a provider that asked for a pause (an
    /// open circuit breaker says how long it stays open).
    pub fn retry_after_secs(&self) -> Option<u64> {
        let secs = |d: std::time::Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
        match self {
            Self::Busy { retry_after_secs, .. } => Some(*retry_after_secs),
            Self::Store(StoreError::Conflict { .. }) => Some(1),
            Self::Cloud { error, .. } => match (error.retry_after, error.kind) {
                (Some(d), _) => Some(secs(d).max(1)),
                (None, CloudErrorKind::Busy) => Some(BUSY_RESOURCE_RETRY_SECS),
                _ => None,
            },
            _ => None,
        }
    }

    /// What the APIs put in the error's `details`.
    pub fn details(&self) -> Value {
        match self {
            Self::Domain(e) => e.details(),
            Self::Busy { request_id, retry_after_secs } => {
                json!({"requestId": request_id, "retryAfter": retry_after_secs})
            }
            Self::Store(StoreError::Conflict { request_id }) => {
                json!({"requestId": request_id, "retryAfter": self.retry_after_secs()})
            }
            Self::Cloud { provider, error } => {
                let mut d = json!({
                    "provider": provider,
                    "providerCode": error.code,
                    "retryable": error.kind.is_retryable(),
                });
                if let Some(secs) = self.retry_after_secs() {
                    d["retryAfter"] = json!(secs);
                }
                d
            }
            Self::NoProvider { passed_over, .. } => json!({"passedOver": passed_over}),
            _ => json!({}),
        }
    }
}
