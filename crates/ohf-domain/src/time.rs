use std::fmt;

use serde::{Deserialize, Serialize};

/// A point in time, milliseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The time `millis` ms after the epoch.
    pub const fn from_unix_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// The time `secs` s after the epoch.
    pub const fn from_unix_secs(secs: i64) -> Self {
        Self(secs * 1000)
    }

    /// Milliseconds since the epoch.
    pub const fn unix_millis(self) -> i64 {
        self.0
    }

    /// Seconds since the epoch.
    pub const fn unix_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// `secs` seconds later (earlier when negative).
    pub const fn plus_secs(self, secs: i64) -> Self {
        Self(self.0 + secs * 1000)
    }

    /// `millis` milliseconds later (earlier when negative).
    pub const fn plus_millis(self, millis: i64) -> Self {
        Self(self.0 + millis)
    }

    /// Whole seconds from `earlier` to `self`, zero when `earlier` is later.
    pub fn secs_since(self, earlier: Timestamp) -> i64 {
        (self.0 - earlier.0).max(0) / 1000
    }

    /// Serializes as [`Timestamp::to_rfc3339`] (`#[serde(serialize_with = …)]`), for documents
    /// people read; the stored form stays milliseconds.
    pub fn serialize_rfc3339<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339())
    }

    /// [`Timestamp::serialize_rfc3339`] of an optional time (`null` when absent).
    pub fn serialize_rfc3339_opt<S: serde::Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&t.to_rfc3339()),
            None => s.serialize_none(),
        }
    }

    /// RFC 3339 form with second precision, e.g. `2025-06-30T12:00:00Z`.
    pub fn to_rfc3339(self) -> String {
        let secs = self.unix_secs();
        match ::time::OffsetDateTime::from_unix_timestamp(secs) {
            Ok(t) => t
                .format(&::time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z"))
                .unwrap_or_else(|_| secs.to_string()),
            Err(_) => secs.to_string(),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rfc3339_in_utc() {
        let t = Timestamp::from_unix_secs(1_751_284_800);
        assert_eq!(t.to_rfc3339(), "2025-06-30T12:00:00Z");
        assert_eq!(t.plus_secs(90).secs_since(t), 90);
        assert_eq!(t.secs_since(t.plus_secs(5)), 0);
    }
}
