use ohf_domain::{DomainError, ErrorCode};
use serde_json::{Value, json};

use crate::ports::{CatalogError, CloudError, StoreError};

/// Why a command or query failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("templates unavailable: {0}")]
    Catalog(#[from] CatalogError),
    #[error("provider '{provider}' failed: {error}")]
    Cloud { provider: String, error: CloudError },
    #[error("configuration: {0}")]
    Configuration(String),
    /// No provider meets the selection criteria.
    #[error("{message}")]
    NoProvider { message: String, passed_over: Value },
    /// The request is in the middle of a transition; try again after the hint.
    #[error("request '{request_id}' is busy; retry after {retry_after_secs} s")]
    Busy { request_id: String, retry_after_secs: u64 },
}

impl AppError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Domain(e) => e.code(),
            Self::Store(_) => ErrorCode::StoreError,
            Self::Catalog(_) | Self::Configuration(_) => ErrorCode::ConfigurationError,
            Self::Cloud { .. } | Self::NoProvider { .. } => ErrorCode::ProviderError,
            Self::Busy { .. } => ErrorCode::ResourceBusy,
        }
    }

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
