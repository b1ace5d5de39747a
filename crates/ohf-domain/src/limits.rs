//! The bounds on every list and blob ohf takes from outside. Each refusal is a validation
//! error that names the field and the limit.

use crate::DomainError;

/// Request ids, machines or host names in one call (getRequestStatus, getReturnRequests,
/// requestReturnMachines).
pub const MAX_ITEMS_PER_CALL: usize = 10_000;
/// Tags AWS allows on one resource.
pub const AWS_TAGS_PER_RESOURCE: usize = 50;
/// Tags ohf puts on every resource itself (request, template, provider, cluster,
/// installation, name, launch token, fleet).
pub const OWN_TAGS: usize = 8;
/// A template's and a request's tags together: what AWS's limit leaves beside ohf's own.
pub const MAX_USER_TAGS: usize = AWS_TAGS_PER_RESOURCE - OWN_TAGS;
/// A request's metadata, as JSON.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Instance types of one template (Auto Scaling's mixed-instances limit).
pub const MAX_VM_TYPES: usize = 40;

/// Refuses a list of `len` items under `field` when it is longer than `max`.
pub fn check_len(field: &str, len: usize, max: usize) -> Result<(), DomainError> {
    if len > max {
        return Err(DomainError::validation(field, format!("at most {max} per call; got {len}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_field_and_the_limit() {
        assert!(check_len("requestIds", MAX_ITEMS_PER_CALL, MAX_ITEMS_PER_CALL).is_ok());
        let e = check_len("requestIds", 70_000, MAX_ITEMS_PER_CALL).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::ValidationError);
        assert!(e.to_string().contains("10000") && e.to_string().contains("requestIds"), "{e}");
    }
}
