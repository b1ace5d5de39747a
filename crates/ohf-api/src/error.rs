//! What every ingress (HTTP JSON, gRPC) shares: the one table from error codes to transport
//! statuses, and the error answer itself.

use ohf_domain::{DomainError, ErrorCode};
use serde_json::{Value, json};

use ohf_app::AppError;

/// gRPC status codes, by their numbers in the gRPC specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum GrpcCode {
    InvalidArgument = 3,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
}

/// How an error code travels: its HTTP status and its gRPC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wire {
    pub http: u16,
    pub grpc: GrpcCode,
}

/// The one table from error codes to HTTP statuses and gRPC codes.
pub fn wire(code: ErrorCode) -> Wire {
    use GrpcCode as G;
    let (http, grpc) = match code {
        ErrorCode::ValidationError => (400, G::InvalidArgument),
        ErrorCode::Unauthenticated => (401, G::Unauthenticated),
        ErrorCode::PermissionDenied => (403, G::PermissionDenied),
        ErrorCode::QuotaExceeded => (403, G::ResourceExhausted),
        ErrorCode::TemplateNotFound | ErrorCode::RequestNotFound => (404, G::NotFound),
        ErrorCode::MethodNotFound => (404, G::Unimplemented),
        ErrorCode::DuplicateRequest => (409, G::AlreadyExists),
        ErrorCode::IllegalTransition => (409, G::FailedPrecondition),
        ErrorCode::InsufficientCapacity => (409, G::ResourceExhausted),
        ErrorCode::ProviderIncompatible => (422, G::FailedPrecondition),
        ErrorCode::ResourceBusy => (423, G::Unavailable),
        ErrorCode::RateLimited => (429, G::ResourceExhausted),
        ErrorCode::ConfigurationError | ErrorCode::InternalError => (500, G::Internal),
        ErrorCode::ProviderError => (502, G::Unavailable),
        ErrorCode::StoreError => (503, G::Unavailable),
    };
    Wire { http, grpc }
}

/// An error answer of the API: its code, a message for people, structured details, and the
/// seconds to wait before trying again when waiting helps.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Value,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), details: json!({}), retry_after: None }
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        DomainError::validation(field, message).into()
    }

    pub fn wire(&self) -> Wire {
        wire(self.code)
    }

    /// `{"error": {"code", "message", "details"}}`, the seed's error shape.
    pub fn to_json(&self) -> Value {
        json!({"error": {"code": self.code.as_str(), "message": self.message, "details": self.details}})
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        let retry_after = match &e {
            AppError::Busy { retry_after_secs, .. } => Some(*retry_after_secs),
            _ => None,
        };
        Self { code: e.code(), message: e.to_string(), details: e.details(), retry_after }
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        AppError::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_and_rate_limits_say_when_to_retry_and_map_to_their_codes() {
        let busy: ApiError = AppError::Busy { request_id: "r".into(), retry_after_secs: 2 }.into();
        assert_eq!(busy.retry_after, Some(2));
        assert_eq!(busy.wire(), Wire { http: 423, grpc: GrpcCode::Unavailable });
        assert_eq!(wire(ErrorCode::RateLimited), Wire { http: 429, grpc: GrpcCode::ResourceExhausted });
        assert_eq!(wire(ErrorCode::TemplateNotFound).grpc, GrpcCode::NotFound);
    }
}

#[cfg(test)]
mod documented {
    use super::*;

    /// docs/api.md shows the table; it must say what the code does, for every code.
    #[test]
    fn the_documented_table_is_the_table() {
        let doc = include_str!("../../../docs/api.md");
        for code in ErrorCode::ALL {
            let w = wire(code);
            let grpc = match w.grpc {
                GrpcCode::InvalidArgument => "INVALID_ARGUMENT",
                GrpcCode::NotFound => "NOT_FOUND",
                GrpcCode::AlreadyExists => "ALREADY_EXISTS",
                GrpcCode::PermissionDenied => "PERMISSION_DENIED",
                GrpcCode::ResourceExhausted => "RESOURCE_EXHAUSTED",
                GrpcCode::FailedPrecondition => "FAILED_PRECONDITION",
                GrpcCode::Unimplemented => "UNIMPLEMENTED",
                GrpcCode::Internal => "INTERNAL",
                GrpcCode::Unavailable => "UNAVAILABLE",
                GrpcCode::Unauthenticated => "UNAUTHENTICATED",
            };
            let row = format!("| {} | {} | {} |", code.as_str(), w.http, grpc);
            assert!(doc.contains(&row), "docs/api.md lacks the row {row}");
        }
    }
}
