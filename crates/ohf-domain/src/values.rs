use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::DomainError;

/// How many machines one request asks for: 1 up to the per-request maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MachineCount(u32);

impl MachineCount {
    /// The per-request maximum when the configuration does not set one (seed: 1-100).
    pub const DEFAULT_MAX: u32 = 100;

    /// A count of 1 to `max`.
    pub fn new(count: i64, max: u32) -> Result<Self, DomainError> {
        if count <= 0 {
            return Err(DomainError::validation("machineCount", format!("must be positive, got {count}")));
        }
        if count > i64::from(max) {
            return Err(DomainError::validation("machineCount", format!("cannot exceed {max}, got {count}")));
        }
        Ok(Self(count as u32))
    }

    /// The count.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// How long a request may take before it ends in TIMEOUT: 60 to 3600 seconds, default 600.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TimeoutSecs(u32);

impl TimeoutSecs {
    /// The shortest timeout, in seconds.
    pub const MIN: u32 = 60;
    /// The longest timeout, in seconds.
    pub const MAX: u32 = 3600;
    /// The timeout when a request names none.
    pub const DEFAULT: TimeoutSecs = TimeoutSecs(600);

    /// A timeout of `MIN` to `MAX` seconds.
    pub fn new(secs: i64) -> Result<Self, DomainError> {
        if secs < i64::from(Self::MIN) {
            return Err(DomainError::validation(
                "timeout",
                format!("must be at least {} seconds, got {secs}", Self::MIN),
            ));
        }
        if secs > i64::from(Self::MAX) {
            return Err(DomainError::validation("timeout", format!("cannot exceed {} seconds, got {secs}", Self::MAX)));
        }
        Ok(Self(secs as u32))
    }

    /// The seconds.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// Key-value tags put on every resource of a request: keys up to 128 characters, values up to 256.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "BTreeMap<String, String>", into = "BTreeMap<String, String>")]
pub struct Tags(BTreeMap<String, String>);

impl Tags {
    /// The longest tag key.
    pub const MAX_KEY: usize = 128;
    /// The longest tag value.
    pub const MAX_VALUE: usize = 256;

    /// Tags, each key (1 to `MAX_KEY` characters) and value (at most `MAX_VALUE`) checked.
    pub fn new(tags: BTreeMap<String, String>) -> Result<Self, DomainError> {
        for (key, value) in &tags {
            if key.is_empty() {
                return Err(DomainError::validation("tags", "tag key must not be empty"));
            }
            if key.chars().count() > Self::MAX_KEY {
                return Err(DomainError::validation(
                    "tags",
                    format!("tag key '{key}' exceeds {} characters", Self::MAX_KEY),
                ));
            }
            if value.chars().count() > Self::MAX_VALUE {
                return Err(DomainError::validation(
                    "tags",
                    format!("tag value of '{key}' exceeds {} characters", Self::MAX_VALUE),
                ));
            }
        }
        Ok(Self(tags))
    }

    /// Parses Host Factory's `"k=v;k2=v2"` form.
    pub fn parse_hf(text: &str) -> Result<Self, DomainError> {
        let mut map = BTreeMap::new();
        for pair in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| DomainError::validation("instanceTags", format!("'{pair}' is not key=value")))?;
            map.insert(k.trim().to_owned(), v.trim().to_owned());
        }
        Self::new(map)
    }

    /// Renders Host Factory's `"k=v;k2=v2"` form.
    pub fn to_hf(&self) -> String {
        self.0.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(";")
    }

    /// Every tag, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// These tags with `other`'s added; `other` wins on a shared key.
    pub fn merged(&self, other: &Tags) -> Tags {
        let mut map = self.0.clone();
        map.extend(other.0.iter().map(|(k, v)| (k.clone(), v.clone())));
        Tags(map)
    }
}

impl TryFrom<BTreeMap<String, String>> for Tags {
    type Error = DomainError;
    fn try_from(map: BTreeMap<String, String>) -> Result<Self, DomainError> {
        Self::new(map)
    }
}

impl From<Tags> for BTreeMap<String, String> {
    fn from(tags: Tags) -> Self {
        tags.0
    }
}

/// Request priority (seed: low, normal, high).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Behind normal requests.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Ahead of normal requests.
    High,
}

impl Priority {
    /// Its place in the queue: 0 for high, 1 for normal, 2 for low (the stores order work by it).
    pub fn rank(self) -> i64 {
        match self {
            Self::High => 0,
            Self::Normal => 1,
            Self::Low => 2,
        }
    }
}

impl FromStr for Priority {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, DomainError> {
        match s.to_ascii_lowercase().as_str() {
            "low" => Ok(Self::Low),
            "normal" => Ok(Self::Normal),
            "high" => Ok(Self::High),
            other => Err(DomainError::validation("priority", format!("'{other}' is not one of low, normal, high"))),
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Low => "low",
            Self::Normal => "normal",
            Self::High => "high",
        })
    }
}

/// Who asks for a request, as given: trimmed, at most 128 characters without control
/// characters; empty is unknown (`None`). `__Unknown__` (any case) is refused, as the routing
/// seed says: a request must say who asks.
pub fn check_requester(given: Option<&str>) -> Result<Option<String>, DomainError> {
    let Some(name) = given.map(str::trim).filter(|n| !n.is_empty()) else { return Ok(None) };
    if name.eq_ignore_ascii_case("__unknown__") {
        return Err(DomainError::validation("requester", "'__Unknown__' is refused: say who asks"));
    }
    if name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(DomainError::validation("requester", "at most 128 characters, no control characters"));
    }
    Ok(Some(name.to_owned()))
}

/// The metadata key of a request's own spot price limit, as the request-management seed names it.
pub const MAX_SPOT_PRICE_KEY: &str = "max-spot-price";

/// The highest spot price a request asks to pay, from `metadata["max-spot-price"]` (dollars per
/// hour, a number or a decimal string such as `"0.10"`); absent when not asked. Anything but a
/// positive price of at most $1,000 an hour is a VALIDATION_ERROR naming the field.
pub fn spot_price_limit(metadata: &BTreeMap<String, Value>) -> Result<Option<f64>, DomainError> {
    let Some(given) = metadata.get(MAX_SPOT_PRICE_KEY) else { return Ok(None) };
    let price = match given {
        Value::Null => return Ok(None),
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match price {
        Some(p) if p.is_finite() && p > 0.0 && p <= 1000.0 => Ok(Some(p)),
        _ => Err(DomainError::validation(
            format!("metadata.{MAX_SPOT_PRICE_KEY}"),
            format!("{given} is not a price: dollars per hour above 0 and at most 1000, such as \"0.10\""),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spot_price_limit_is_a_positive_price_in_dollars() {
        let meta = |v: Value| BTreeMap::from([(MAX_SPOT_PRICE_KEY.to_owned(), v)]);
        assert_eq!(spot_price_limit(&BTreeMap::new()).unwrap(), None);
        assert_eq!(spot_price_limit(&meta(Value::from("0.10"))).unwrap(), Some(0.10));
        assert_eq!(spot_price_limit(&meta(Value::from(0.25))).unwrap(), Some(0.25));
        for bad in [Value::from("cheap"), Value::from(0), Value::from(-1.0), Value::from(5000), Value::Bool(true)] {
            let err = spot_price_limit(&meta(bad)).unwrap_err();
            assert!(err.to_string().contains("metadata.max-spot-price"), "{err}");
        }
    }

    #[test]
    fn machine_count_is_bounded() {
        assert!(MachineCount::new(0, 100).is_err());
        assert!(MachineCount::new(-3, 100).is_err());
        assert_eq!(MachineCount::new(1, 100).unwrap().get(), 1);
        assert_eq!(MachineCount::new(100, 100).unwrap().get(), 100);
        let err = MachineCount::new(101, 100).unwrap_err();
        assert_eq!(err.to_string(), "invalid machineCount: cannot exceed 100, got 101");
    }

    #[test]
    fn timeout_is_bounded() {
        assert!(TimeoutSecs::new(59).is_err());
        assert!(TimeoutSecs::new(60).is_ok());
        assert!(TimeoutSecs::new(3600).is_ok());
        assert!(TimeoutSecs::new(3601).is_err());
        assert_eq!(TimeoutSecs::DEFAULT.get(), 600);
    }

    #[test]
    fn tags_are_bounded() {
        let ok = BTreeMap::from([("k".repeat(128), "v".repeat(256))]);
        assert!(Tags::new(ok).is_ok());
        assert!(Tags::new(BTreeMap::from([("k".repeat(129), "v".into())])).is_err());
        assert!(Tags::new(BTreeMap::from([("k".into(), "v".repeat(257))])).is_err());
        assert!(Tags::new(BTreeMap::from([(String::new(), "v".into())])).is_err());
    }

    #[test]
    fn host_factory_tag_strings_round_trip() {
        let t = Tags::parse_hf("team=abc; project=x;").unwrap();
        assert_eq!(t.get("team"), Some("abc"));
        assert_eq!(t.to_hf(), "project=x;team=abc");
        assert!(Tags::parse_hf("novalue").is_err());
    }

    #[test]
    fn priority_parses_the_seed_words() {
        assert_eq!("HIGH".parse::<Priority>().unwrap(), Priority::High);
        assert!("urgent".parse::<Priority>().is_err());
    }
}
