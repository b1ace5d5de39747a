use std::fmt;

use serde::{Deserialize, Serialize};

use crate::DomainError;

fn check_chars(field: &str, value: &str, max: usize, extra: &[char]) -> Result<(), DomainError> {
    if value.is_empty() {
        return Err(DomainError::validation(field, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(DomainError::validation(field, format!("must be at most {max} characters")));
    }
    if let Some(bad) = value.chars().find(|c| !(c.is_ascii_alphanumeric() || extra.contains(c))) {
        return Err(DomainError::validation(field, format!("contains the character {bad:?}")));
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = DomainError;
            fn try_from(value: String) -> Result<Self, DomainError> {
                Self::new(value)
            }
        }
    };
}

string_id!(
    /// A request id: generated `req-…` / `ret-…`, or supplied by the client (idempotent creation).
    RequestId
);
string_id!(
    /// A template id: at most 64 characters of `[0-9A-Za-z_-]` (Host Factory rule).
    TemplateId
);
string_id!(
    /// The cloud's id of a machine, such as an EC2 instance id.
    MachineId
);
string_id!(
    /// A configured provider instance, such as `aws-primary` or `sim-1`.
    ProviderName
);
string_id!(
    /// An idempotency token sent with a launch; the same request and attempt give the same token.
    ClientToken
);

impl RequestId {
    /// A request id: 1 to 128 letters, digits, `-`, `_`, `.`, `:`.
    pub fn new(value: impl Into<String>) -> Result<Self, DomainError> {
        let value = value.into();
        check_chars("requestId", &value, 128, &['-', '_', '.', ':'])?;
        Ok(Self(value))
    }
}

impl TemplateId {
    /// A template id: 1 to 64 letters, digits, `-`, `_`.
    pub fn new(value: impl Into<String>) -> Result<Self, DomainError> {
        let value = value.into();
        check_chars("templateId", &value, 64, &['-', '_'])?;
        Ok(Self(value))
    }
}

impl MachineId {
    /// A machine id, as the provider names it: 1 to 128 letters, digits, `-`, `_`, `.`, `:`, `/`.
    pub fn new(value: impl Into<String>) -> Result<Self, DomainError> {
        let value = value.into();
        check_chars("machineId", &value, 128, &['-', '_', '.', ':', '/'])?;
        Ok(Self(value))
    }
}

impl ProviderName {
    /// A provider instance name: 1 to 64 letters, digits, `-`, `_`, `.`.
    pub fn new(value: impl Into<String>) -> Result<Self, DomainError> {
        let value = value.into();
        check_chars("provider", &value, 64, &['-', '_', '.'])?;
        Ok(Self(value))
    }
}

impl ClientToken {
    /// An idempotency token: 1 to 64 letters, digits, `-`, `_`.
    pub fn new(value: impl Into<String>) -> Result<Self, DomainError> {
        let value = value.into();
        check_chars("clientToken", &value, 64, &['-', '_'])?;
        Ok(Self(value))
    }

    /// The token of launch `attempt` of `request`: stable across processes and restarts, so a
    /// launch repeated after a crash is recognised by the cloud instead of launching twice.
    pub fn for_launch(request: &RequestId, attempt: u32) -> Self {
        let digest = fnv1a_128(format!("{}#{attempt}", request.as_str()).as_bytes());
        Self(format!("ohf-{digest:032x}"))
    }

    /// This token within `scope` (an installation): two installations whose requests share an
    /// id never share a launch, so neither adopts the other's machines.
    pub fn scoped(&self, scope: &str) -> Self {
        let digest = fnv1a_128(format!("{}@{scope}", self.0).as_bytes());
        Self(format!("ohf-{digest:032x}"))
    }
}

fn fnv1a_128(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    bytes.iter().fold(OFFSET, |h, b| (h ^ u128::from(*b)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_id_follows_the_host_factory_rule() {
        assert!(TemplateId::new("OnDemand-Minimal_1").is_ok());
        assert!(TemplateId::new("").is_err());
        assert!(TemplateId::new("a b").is_err());
        assert!(TemplateId::new("x".repeat(64)).is_ok());
        assert!(TemplateId::new("x".repeat(65)).is_err());
    }

    #[test]
    fn client_tokens_are_deterministic_and_distinct_per_attempt() {
        let r = RequestId::new("req-1").unwrap();
        assert_eq!(ClientToken::for_launch(&r, 1), ClientToken::for_launch(&r, 1));
        assert_ne!(ClientToken::for_launch(&r, 1), ClientToken::for_launch(&r, 2));
        assert!(ClientToken::for_launch(&r, 1).as_str().len() <= 64);
    }

    #[test]
    fn ids_deserialize_through_validation() {
        assert!(serde_json::from_str::<RequestId>("\"req-1\"").is_ok());
        assert!(serde_json::from_str::<RequestId>("\"bad id\"").is_err());
    }
}
