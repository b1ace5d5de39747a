use ohf_domain::{DomainError, ErrorCode};
use serde_json::{Value, json};

use crate::ports::{CatalogError, CloudError, StoreError};

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
            Self::Store(_) => ErrorCode::StoreError,
            Self::Catalog(_) | Self::Configuration(_) => ErrorCode::ConfigurationError,
            Self::Cloud { .. } | Self::NoProvider { .. } => ErrorCode::ProviderError,
            Self::Busy { .. } => ErrorCode::ResourceBusy,
        }
    }

    /// What the APIs put in the error's `details`.
    pub fn details(&self) -> Value {
        match self {
            Self::Domain(e) => e.details(),
            Self::Busy { request_id, retry_after_secs } => {
                json!({"requestId": request_id, "retryAfter": retry_after_secs})
            }
            Self::Cloud { provider, error } => json!({
                "provider": provider,
                "providerCode": error.code,
                "retryable": error.kind.is_retryable(),
            }),
            Self::NoProvider { passed_over, .. } => json!({"passedOver": passed_over}),
            _ => json!({}),
        }
    }
}
