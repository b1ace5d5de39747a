use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The stable error codes clients see (seed: request management).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The template named does not exist.
    TemplateNotFound,
    /// The cloud or the template's `maxNumber` has no room for the machines.
    InsufficientCapacity,
    /// The account limit would be exceeded.
    QuotaExceeded,
    /// An input broke a rule; the details name the field.
    ValidationError,
    /// The template cannot be served by the provider.
    ProviderIncompatible,
    /// No request has that id.
    RequestNotFound,
    /// The id is taken by a request with other parameters.
    DuplicateRequest,
    /// The request's state does not allow the change.
    IllegalTransition,
    /// The request is mid-transition; retry after the hint.
    ResourceBusy,
    /// The cloud provider failed.
    ProviderError,
    /// The cloud provider refuses calls for now (its circuit breaker is open, it throttles, it
    /// does not answer); retry after the hint.
    ProviderUnavailable,
    /// ohf is configured wrongly.
    ConfigurationError,
    /// The store failed.
    StoreError,
    /// Something ohf did not expect.
    InternalError,
    /// The caller presented no valid credentials.
    Unauthenticated,
    /// The caller's role may not make this call.
    PermissionDenied,
    /// The caller is over its rate limit.
    RateLimited,
    /// No such API method.
    MethodNotFound,
}

impl ErrorCode {
    /// Every code, in the order the documentation lists them.
    pub const ALL: [ErrorCode; 18] = [
        Self::TemplateNotFound,
        Self::InsufficientCapacity,
        Self::QuotaExceeded,
        Self::ValidationError,
        Self::ProviderIncompatible,
        Self::RequestNotFound,
        Self::DuplicateRequest,
        Self::IllegalTransition,
        Self::ResourceBusy,
        Self::ProviderError,
        Self::ProviderUnavailable,
        Self::ConfigurationError,
        Self::StoreError,
        Self::InternalError,
        Self::Unauthenticated,
        Self::PermissionDenied,
        Self::RateLimited,
        Self::MethodNotFound,
    ];

    /// The code of its wire name (`TEMPLATE_NOT_FOUND`, …).
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }

    /// Its wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TemplateNotFound => "TEMPLATE_NOT_FOUND",
            Self::InsufficientCapacity => "INSUFFICIENT_CAPACITY",
            Self::QuotaExceeded => "QUOTA_EXCEEDED",
            Self::ValidationError => "VALIDATION_ERROR",
            Self::ProviderIncompatible => "PROVIDER_INCOMPATIBLE",
            Self::RequestNotFound => "REQUEST_NOT_FOUND",
            Self::DuplicateRequest => "DUPLICATE_REQUEST",
            Self::IllegalTransition => "ILLEGAL_TRANSITION",
            Self::ResourceBusy => "RESOURCE_BUSY",
            Self::ProviderError => "PROVIDER_ERROR",
            Self::ProviderUnavailable => "PROVIDER_UNAVAILABLE",
            Self::ConfigurationError => "CONFIGURATION_ERROR",
            Self::StoreError => "STORE_ERROR",
            Self::InternalError => "INTERNAL_ERROR",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::PermissionDenied => "PERMISSION_DENIED",
            Self::RateLimited => "RATE_LIMITED",
            Self::MethodNotFound => "METHOD_NOT_FOUND",
        }
    }
}

/// A business rule that refused an input or a change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DomainError {
    /// No template has the id asked for.
    #[error("template '{template_id}' not found; available: {}", available.join(", "))]
    TemplateNotFound {
        /// The id asked for.
        template_id: String,
        /// The ids there are.
        available: Vec<String>,
    },

    /// Not enough room for the machines asked for.
    #[error("insufficient capacity: requested {requested}, available {available}{}", scope_suffix(.template_id, .instance_type, .region))]
    InsufficientCapacity {
        /// Machines asked for.
        requested: u32,
        /// Machines that fit.
        available: u32,
        /// The template whose `maxNumber` limits them.
        template_id: Option<String>,
        /// The instance type the cloud is short of.
        instance_type: Option<String>,
        /// The region asked.
        region: Option<String>,
    },

    /// The account limit would be exceeded.
    #[error(
        "account quota would be exceeded: {current_usage} in use, {requested_additional} requested, limit {account_limit}"
    )]
    QuotaExceeded {
        /// Machines held now.
        current_usage: u32,
        /// Machines asked for.
        requested_additional: u32,
        /// The configured account limit.
        account_limit: u32,
    },

    /// An input breaks a rule.
    #[error("invalid {field}: {message}")]
    Validation {
        /// The field at fault.
        field: String,
        /// What is wrong with it.
        message: String,
    },

    /// The provider cannot serve the template.
    #[error("template '{template_id}' is not compatible with provider '{provider}': {reason}")]
    ProviderIncompatible {
        /// The template.
        template_id: String,
        /// The provider that cannot serve it.
        provider: String,
        /// Why.
        reason: String,
    },

    /// No request has the id.
    #[error("request '{request_id}' not found")]
    RequestNotFound {
        /// The id asked for.
        request_id: String,
    },

    /// The id is taken by a request with other parameters.
    #[error("request id '{request_id}' is already used by a request with other parameters")]
    DuplicateRequest {
        /// The id taken.
        request_id: String,
    },

    /// The request's state does not allow the change.
    #[error("request '{request_id}' cannot go from {from} to {to}")]
    IllegalTransition {
        /// The request.
        request_id: String,
        /// Its state.
        from: String,
        /// The state asked for.
        to: String,
    },
}

fn scope_suffix(template: &Option<String>, instance_type: &Option<String>, region: &Option<String>) -> String {
    let mut parts = Vec::new();
    if let Some(t) = template {
        parts.push(format!("template {t}"));
    }
    if let Some(t) = instance_type {
        parts.push(format!("instance type {t}"));
    }
    if let Some(r) = region {
        parts.push(format!("region {r}"));
    }
    if parts.is_empty() { String::new() } else { format!(" ({})", parts.join(", ")) }
}

impl DomainError {
    /// A validation error of `field`.
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation { field: field.into(), message: message.into() }
    }

    /// The stable code clients see.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::TemplateNotFound { .. } => ErrorCode::TemplateNotFound,
            Self::InsufficientCapacity { .. } => ErrorCode::InsufficientCapacity,
            Self::QuotaExceeded { .. } => ErrorCode::QuotaExceeded,
            Self::Validation { .. } => ErrorCode::ValidationError,
            Self::ProviderIncompatible { .. } => ErrorCode::ProviderIncompatible,
            Self::RequestNotFound { .. } => ErrorCode::RequestNotFound,
            Self::DuplicateRequest { .. } => ErrorCode::DuplicateRequest,
            Self::IllegalTransition { .. } => ErrorCode::IllegalTransition,
        }
    }

    /// Structured figures for the `details` field of an error answer, with the seed's names.
    pub fn details(&self) -> Value {
        match self {
            Self::TemplateNotFound { template_id, available } => {
                json!({"templateId": template_id, "availableTemplates": available})
            }
            Self::InsufficientCapacity { requested, available, template_id, instance_type, region } => {
                let mut d = json!({"requestedCount": requested, "availableCapacity": available});
                for (k, v) in [("templateId", template_id), ("instanceType", instance_type), ("region", region)] {
                    if let Some(v) = v {
                        d[k] = json!(v);
                    }
                }
                d
            }
            Self::QuotaExceeded { current_usage, requested_additional, account_limit } => json!({
                "currentUsage": current_usage,
                "requestedAdditional": requested_additional,
                "accountLimit": account_limit,
            }),
            Self::Validation { field, message } => json!({"field": field, "reason": message}),
            Self::ProviderIncompatible { template_id, provider, reason } => {
                json!({"templateId": template_id, "provider": provider, "reason": reason})
            }
            Self::RequestNotFound { request_id } | Self::DuplicateRequest { request_id } => {
                json!({"requestId": request_id})
            }
            Self::IllegalTransition { request_id, from, to } => {
                json!({"requestId": request_id, "from": from, "to": to})
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_not_found_names_the_available_templates() {
        let e = DomainError::TemplateNotFound { template_id: "nope".into(), available: vec!["a".into(), "b".into()] };
        assert_eq!(e.to_string(), "template 'nope' not found; available: a, b");
        assert_eq!(e.code().as_str(), "TEMPLATE_NOT_FOUND");
        assert_eq!(e.details()["availableTemplates"], json!(["a", "b"]));
    }

    #[test]
    fn quota_and_capacity_carry_their_figures() {
        let q = DomainError::QuotaExceeded { current_usage: 95, requested_additional: 10, account_limit: 100 };
        assert_eq!(q.details(), json!({"currentUsage": 95, "requestedAdditional": 10, "accountLimit": 100}));
        let c = DomainError::InsufficientCapacity {
            requested: 10,
            available: 5,
            template_id: None,
            instance_type: Some("t3.medium".into()),
            region: Some("us-east-1".into()),
        };
        assert_eq!(c.details()["availableCapacity"], 5);
        assert_eq!(c.details()["instanceType"], "t3.medium");
        assert!(c.to_string().contains("instance type t3.medium"));
    }
}
