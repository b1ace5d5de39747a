//! The one place AWS failures become ohf's error kinds, keeping AWS's code and message.

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use ohf_app::{CloudError, CloudErrorKind};

/// AWS error codes of EC2, Auto Scaling and STS, each with its class. Built from AWS's
/// published error-code lists (the EC2 API's client, server and resource errors; Auto Scaling's
/// and STS's common and operation errors). A code not listed is classed by its form (`*.NotFound`,
/// `*.Malformed`, `*LimitExceeded`) and then by the HTTP status: an unknown 5xx is transient.
pub const CODES: &[(&str, CloudErrorKind)] = {
    use CloudErrorKind::*;
    &[
        // Capacity: the cloud has none of what was asked for now; later or elsewhere may.
        ("InsufficientAddressCapacity", Capacity),
        ("InsufficientCapacity", Capacity),
        ("InsufficientCapacityOnHost", Capacity),
        ("InsufficientHostCapacity", Capacity),
        ("InsufficientInstanceCapacity", Capacity),
        ("InsufficientReservedInstanceCapacity", Capacity),
        ("InsufficientVolumeCapacity", Capacity),
        ("InsufficientFreeAddressesInSubnet", Capacity),
        ("SpotMaxPriceTooLow", Capacity),
        ("UnfulfillableCapacity", Capacity),
        ("MaxSpotInstanceCountExceeded", Quota),
        // Quota: an account limit; it lifts only when usage falls or the limit is raised.
        ("InstanceLimitExceeded", Quota),
        ("VcpuLimitExceeded", Quota),
        ("MaxSpotFleetRequestCountExceeded", Quota),
        ("LimitExceeded", Quota),
        ("ResourceLimitExceeded", Quota),
        ("LaunchTemplateLimitExceeded", Quota),
        ("AddressLimitExceeded", Quota),
        ("TagLimitExceeded", Validation),
        ("VolumeLimitExceeded", Quota),
        ("MaxIOPSLimitExceeded", Quota),
        ("FleetLimitExceeded", Quota),
        // Throttled: too many calls; slow down and try again.
        ("RequestLimitExceeded", Throttling),
        ("Throttling", Throttling),
        ("ThrottlingException", Throttling),
        ("ThrottledException", Throttling),
        ("TooManyRequestsException", Throttling),
        ("SlowDown", Throttling),
        ("PriorRequestNotComplete", Throttling),
        ("RequestThrottled", Throttling),
        ("RequestThrottledException", Throttling),
        ("EC2ThrottledException", Throttling),
        ("BandwidthLimitExceeded", Throttling),
        // Busy: the resource is mid-change; wait, look again, then act.
        ("ResourceContention", Busy),
        ("ResourceInUse", Busy),
        ("ScalingActivityInProgress", Busy),
        ("InstanceRefreshInProgress", Busy),
        ("IncorrectState", Busy),
        ("IncorrectInstanceState", Busy),
        ("IncorrectSpotRequestState", Busy),
        ("ConcurrentTagAccess", Busy),
        ("ConcurrentSnapshotLimitExceeded", Busy),
        ("ResourceBusy", Busy),
        ("VolumeInUse", Busy),
        // Transient: the service or the path to it failed this time.
        ("InternalError", Internal),
        ("InternalFailure", Internal),
        ("InternalServerError", Internal),
        ("InternalServiceError", Internal),
        ("InternalServiceException", Internal),
        ("ServerInternal", Internal),
        ("ServiceFailure", Internal),
        ("ServiceUnavailable", Unavailable),
        ("ServiceUnavailableException", Unavailable),
        ("Unavailable", Unavailable),
        ("IDPCommunicationError", Unavailable),
        ("RequestTimeout", Timeout),
        ("RequestTimeoutException", Timeout),
        // The clock or the credentials went stale: the SDK corrects its clock from the
        // server's and refreshes credentials, so the next attempt succeeds.
        ("RequestTimeTooSkewed", Unavailable),
        ("RequestExpired", Unavailable),
        ("ExpiredToken", Unavailable),
        ("ExpiredTokenException", Unavailable),
        // Auth: the credentials cannot do this; retrying will not change it.
        ("UnauthorizedOperation", Auth),
        ("AuthFailure", Auth),
        ("InvalidClientTokenId", Auth),
        ("SignatureDoesNotMatch", Auth),
        ("IncompleteSignature", Auth),
        ("MissingAuthenticationToken", Auth),
        ("OptInRequired", Auth),
        ("AccessDenied", Auth),
        ("AccessDeniedException", Auth),
        ("Blocked", Auth),
        ("PendingVerification", Auth),
        ("RegionDisabledException", Auth),
        ("InvalidIdentityToken", Auth),
        ("ServiceLinkedRoleFailure", Auth),
        ("UnrecognizedClientException", Auth),
        // Validation: the call itself is wrong; it fails the same way every time.
        ("InvalidParameter", Validation),
        ("InvalidParameterValue", Validation),
        ("InvalidParameterCombination", Validation),
        ("InvalidQueryParameter", Validation),
        ("MissingParameter", Validation),
        ("UnknownParameter", Validation),
        ("MalformedQueryString", Validation),
        ("InvalidAction", Validation),
        ("InvalidCharacter", Validation),
        ("InvalidPaginationToken", Validation),
        ("InvalidNextToken", Validation),
        ("IdempotentParameterMismatch", Validation),
        ("UnsupportedOperation", Validation),
        ("UnsupportedInstanceAttribute", Validation),
        ("UnsupportedProtocol", Validation),
        ("ValidationError", Validation),
        ("ValidationException", Validation),
        ("AlreadyExists", Validation),
        ("DryRunOperation", Validation),
        ("InvalidInstanceID.Malformed", NotFound),
        ("ParameterNotFound", NotFound),
        ("ActiveInstanceRefreshNotFound", NotFound),
    ]
};

/// The kind of an AWS error code, whatever its HTTP status.
pub fn kind_of(code: &str) -> CloudErrorKind {
    classify(code, None)
}

/// The kind of an AWS error code with the HTTP status it came with: the table, then the
/// code's form, then the status (5xx transient, 429 throttled), else a validation error.
pub fn classify(code: &str, status: Option<u16>) -> CloudErrorKind {
    use CloudErrorKind::*;
    if let Some((_, kind)) = CODES.iter().find(|(c, _)| *c == code) {
        return *kind;
    }
    if code.ends_with(".NotFound") || code.ends_with("NotFoundException") || code.ends_with("NotFound") {
        return NotFound;
    }
    if code.ends_with(".InUse") || code.ends_with(".IncorrectState") {
        return Busy;
    }
    if code.ends_with("LimitExceeded") || code.ends_with("LimitExceededException") {
        return Quota;
    }
    match status {
        Some(429) => Throttling,
        Some(503) => Unavailable,
        Some(s) if s >= 500 => Internal,
        _ => Validation,
    }
}

/// Translates a failed SDK call. Service errors keep AWS's code and message; transport
/// failures (timeouts, refused connections) are retryable.
pub fn translate<E>(operation: &str, err: SdkError<E, HttpResponse>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let status = service.raw().status().as_u16();
            let code = e.code().unwrap_or("Unknown").to_owned();
            let message = e.message().unwrap_or("no message").to_owned();
            // AWS's request id, for the failure logs and a support case.
            let request_id = service
                .raw()
                .headers()
                .get("x-amzn-requestid")
                .or_else(|| service.raw().headers().get("x-amz-request-id"));
            let message = match request_id {
                Some(id) => format!("{operation}: {message} (request id {id})"),
                None => format!("{operation}: {message}"),
            };
            CloudError::new(classify(&code, Some(status)), code, message)
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
        service_error_with(code, message, 400)
    }

    fn service_error_with(code: &str, message: &str, status: u16) -> CloudError {
        use aws_sdk_ec2::operation::run_instances::RunInstancesError;
        use aws_smithy_runtime_api::http::StatusCode;
        use aws_smithy_types::body::SdkBody;
        use aws_smithy_types::error::ErrorMetadata;
        let err = RunInstancesError::generic(ErrorMetadata::builder().code(code).message(message).build());
        let raw = HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        translate("RunInstances", SdkError::service_error(err, raw))
    }

    #[test]
    fn every_listed_code_has_the_class_the_table_gives_it() {
        use CloudErrorKind::*;
        // One row per class the issue names, and the codes that were once misread.
        for (code, want) in [
            ("InternalServerError", Internal),
            ("ServiceUnavailable", Unavailable),
            ("RequestTimeTooSkewed", Unavailable),
            ("ResourceContention", Busy),
            ("ScalingActivityInProgress", Busy),
            ("ResourceInUse", Busy),
            ("IncorrectState", Busy),
            ("IncorrectInstanceState", Busy),
            ("ConcurrentTagAccess", Busy),
            ("ExpiredToken", Unavailable),
            ("RequestLimitExceeded", Throttling),
            ("InsufficientInstanceCapacity", Capacity),
            ("VcpuLimitExceeded", Quota),
            ("UnauthorizedOperation", Auth),
            ("InvalidParameterValue", Validation),
        ] {
            assert_eq!(kind_of(code), want, "{code}");
        }
        for (code, kind) in CODES {
            assert_eq!(classify(code, Some(500)), *kind, "the table wins over the status for {code}");
        }
        let mut seen = std::collections::HashSet::new();
        assert!(CODES.iter().all(|(c, _)| seen.insert(*c)), "each code is listed once");
    }

    #[test]
    fn unknown_codes_are_classed_by_form_then_status() {
        use CloudErrorKind::*;
        assert_eq!(classify("InvalidSubnetID.NotFound", Some(400)), NotFound);
        assert_eq!(classify("InvalidGroup.InUse", Some(400)), Busy);
        assert_eq!(classify("SomethingLimitExceeded", Some(400)), Quota);
        assert_eq!(classify("BrandNewCode", Some(500)), Internal);
        assert_eq!(classify("BrandNewCode", Some(503)), Unavailable);
        assert_eq!(classify("BrandNewCode", Some(429)), Throttling);
        assert_eq!(classify("BrandNewCode", Some(400)), Validation);
        let bare = service_error_with("Unknown", "", 502);
        assert_eq!(bare.kind, Internal, "a bare 5xx is transient");
        assert!(bare.kind.is_retryable());
        assert!(service_error_with("ScalingActivityInProgress", "busy", 400).kind.is_retryable());
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
