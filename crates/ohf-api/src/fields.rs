//! Reading the fields of a method's JSON parameters, each refusal naming the field.

use serde_json::Value;

use crate::error::ApiError;

/// A required string field, trimmed.
pub(crate) fn text(p: &Value, field: &str) -> Result<String, ApiError> {
    match p.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        Some(Value::Null) | None => Err(ApiError::invalid(field, "is required")),
        Some(_) => Err(ApiError::invalid(field, "must be a string")),
    }
}

/// An optional string field, trimmed.
pub(crate) fn optional_text(p: &Value, field: &str) -> Result<Option<String>, ApiError> {
    match p.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => text(p, field).map(Some),
    }
}
