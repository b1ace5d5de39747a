//! The one place AWS failures become ohf's error kinds, keeping AWS's code and message.

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use ohf_app::{CloudError, CloudErrorKind};

/// The kind of an AWS error code (EC2 and Auto Scaling codes).
pub fn kind_of(code: &str) -> CloudErrorKind {
    use CloudErrorKind::*;
    match code {
        "InsufficientInstanceCapacity"
        | "InsufficientHostCapacity"
        | "InsufficientReservedInstanceCapacity"
        | "InsufficientCapacity"
        | "InsufficientFreeAddressesInSubnet"
        | "SpotMaxPriceTooLow"
        | "InsufficientCapacityOnHost"
        | "UnfulfillableCapacity" => Capacity,
        "InstanceLimitExceeded"
        | "VcpuLimitExceeded"
        | "MaxSpotInstanceCountExceeded"
        | "MaxSpotFleetRequestCountExceeded"
        | "LimitExceeded"
        | "ResourceLimitExceeded"
        | "LaunchTemplateLimitExceeded"
        | "AddressLimitExceeded" => Quota,
        "RequestLimitExceeded" | "Throttling" | "ThrottlingException" | "SlowDown" | "PriorRequestNotComplete" => {
            Throttling
        }
        "ServiceUnavailable" | "Unavailable" | "ServiceUnavailableException" => Unavailable,
        "InternalError" | "InternalFailure" | "ServerInternal" | "InternalServiceError" => Internal,
        "RequestTimeout" | "RequestTimeoutException" => Timeout,
        "UnauthorizedOperation"
        | "AuthFailure"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "OptInRequired"
        | "AccessDenied"
        | "AccessDeniedException"
        | "Blocked"
        | "PendingVerification" => Auth,
        c if c.ends_with(".NotFound") || c.ends_with("NotFoundException") || c == "InvalidInstanceID.Malformed" => {
            NotFound
        }
        _ => Validation,
    }
}

/// Translates a failed SDK call. Service errors keep AWS's code and message; transport
/// failures (timeouts, refused connections) are retryable.
pub fn translate<E, R>(operation: &str, err: SdkError<E, R>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().unwrap_or("Unknown").to_owned();
            let message = e.message().unwrap_or("no message").to_owned();
            CloudError::new(kind_of(&code), code, format!("{operation}: {message}"))
        }
        SdkError::TimeoutError(_) => {
            CloudError::new(CloudErrorKind::Timeout, "Timeout", format!("{operation}: timed out"))
        }
        SdkError::DispatchFailure(d) => {
            let kind = if d.is_timeout() { CloudErrorKind::Timeout } else { CloudErrorKind::Unavailable };
            CloudError::new(kind, "DispatchFailure", format!("{operation}: {}", error_chain(&err)))
        }
        SdkError::ResponseError(_) => {
            CloudError::new(CloudErrorKind::Unavailable, "ResponseError", format!("{operation}: {}", error_chain(&err)))
        }
        _ => CloudError::new(CloudErrorKind::Internal, "SdkError", format!("{operation}: {}", error_chain(&err))),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_kinds() {
        assert_eq!(kind_of("InsufficientInstanceCapacity"), CloudErrorKind::Capacity);
        assert_eq!(kind_of("VcpuLimitExceeded"), CloudErrorKind::Quota);
        assert_eq!(kind_of("RequestLimitExceeded"), CloudErrorKind::Throttling);
        assert_eq!(kind_of("UnauthorizedOperation"), CloudErrorKind::Auth);
        assert_eq!(kind_of("InvalidAMIID.NotFound"), CloudErrorKind::NotFound);
        assert_eq!(kind_of("InvalidInstanceID.NotFound"), CloudErrorKind::NotFound);
        assert_eq!(kind_of("InvalidParameterValue"), CloudErrorKind::Validation);
        assert_eq!(kind_of("InternalError"), CloudErrorKind::Internal);
        assert!(kind_of("RequestLimitExceeded").is_retryable());
        assert!(!kind_of("UnauthorizedOperation").is_retryable());
    }

    /// What EC2 answers and the emulator cannot: the SDK's own service errors, translated.
    fn service_error(code: &str, message: &str) -> CloudError {
        use aws_sdk_ec2::operation::run_instances::RunInstancesError;
        use aws_smithy_types::error::ErrorMetadata;
        let err = RunInstancesError::generic(ErrorMetadata::builder().code(code).message(message).build());
        translate("RunInstances", SdkError::<RunInstancesError, ()>::service_error(err, ()))
    }

    #[test]
    fn service_errors_keep_the_aws_code_and_message() {
        let throttled = service_error("RequestLimitExceeded", "Request limit exceeded.");
        assert_eq!((throttled.kind, throttled.code.as_str()), (CloudErrorKind::Throttling, "RequestLimitExceeded"));
        assert!(throttled.kind.is_retryable());
        let capacity = service_error(
            "InsufficientInstanceCapacity",
            "We currently do not have sufficient m5.large capacity in the Availability Zone you requested (us-east-1a).",
        );
        assert_eq!(capacity.kind, CloudErrorKind::Capacity);
        assert!(
            capacity.to_string().starts_with("InsufficientInstanceCapacity: RunInstances: We currently"),
            "{capacity}"
        );
        let denied = service_error("UnauthorizedOperation", "You are not authorized to perform this operation.");
        assert_eq!(denied.kind, CloudErrorKind::Auth);
        assert!(!denied.kind.is_retryable());
        assert!(denied.to_string().contains("not authorized"));
        let quota =
            service_error("VcpuLimitExceeded", "You have requested more vCPU capacity than your current vCPU limit");
        assert_eq!(quota.kind, CloudErrorKind::Quota);
    }
}
