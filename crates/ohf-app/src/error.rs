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
}

impl AppError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Domain(e) => e.code(),
            Self::Store(_) => ErrorCode::StoreError,
            Self::Catalog(_) | Self::Configuration(_) => ErrorCode::ConfigurationError,
            Self::Cloud { .. } => ErrorCode::ProviderError,
        }
    }

    pub fn details(&self) -> Value {
        match self {
            Self::Domain(e) => e.details(),
            Self::Cloud { provider, error } => json!({
                "provider": provider,
                "providerCode": error.code,
                "retryable": error.kind.is_retryable(),
            }),
            _ => json!({}),
        }
    }

    /// Worth trying again later: the store or the cloud was briefly unavailable.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Store(StoreError::Unavailable(_) | StoreError::Conflict { .. }) => true,
            Self::Cloud { error, .. } => error.kind.is_retryable(),
            _ => false,
        }
    }
}
