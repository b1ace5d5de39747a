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
        ErrorCode::ProviderUnavailable => (503, G::Unavailable),
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
        Self { code: e.code(), message: e.to_string(), details: e.details(), retry_after: e.retry_after_secs() }
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

    #[test]
    fn every_busy_condition_answers_423_or_503_with_its_wait() {
        use ohf_app::ports::{CloudError, CloudErrorKind, StoreError};
        use std::time::Duration;

        // Another writer changed the request between read and write.
        let raced: ApiError = AppError::Store(StoreError::Conflict { request_id: "req-1".into() }).into();
        assert_eq!((raced.code, raced.wire().http, raced.retry_after), (ErrorCode::ResourceBusy, 423, Some(1)));
        assert_eq!(raced.details["requestId"], "req-1");

        // An open breaker: the provider refuses calls for as long as it stays open.
        let mut open = CloudError::new(CloudErrorKind::Unavailable, "CircuitOpen", "the breaker is open");
        open.retry_after = Some(Duration::from_millis(29_500));
        let open: ApiError = AppError::Cloud { provider: "aws".into(), error: open }.into();
        assert_eq!((open.code, open.wire().http, open.retry_after), (ErrorCode::ProviderUnavailable, 503, Some(30)));
        assert_eq!(open.wire().grpc, GrpcCode::Unavailable);

        // A fleet or group mid-change: the seed's 10 s when the provider names no wait.
        let fleet = CloudError::new(CloudErrorKind::Busy, "IncorrectState", "the group is scaling");
        let fleet: ApiError = AppError::Cloud { provider: "aws".into(), error: fleet }.into();
        assert_eq!((fleet.code, fleet.wire().http, fleet.retry_after), (ErrorCode::ResourceBusy, 423, Some(10)));

        // A plain failure is neither busy nor a reason to wait.
        let failed = CloudError::new(CloudErrorKind::Validation, "InvalidAMIID.NotFound", "no such image");
        let failed: ApiError = AppError::Cloud { provider: "aws".into(), error: failed }.into();
        assert_eq!((failed.code, failed.retry_after), (ErrorCode::ProviderError, None));
        let down: ApiError = AppError::Store(StoreError::Unavailable("gone".into())).into();
        assert_eq!((down.wire().http, down.retry_after), (503, None));
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
