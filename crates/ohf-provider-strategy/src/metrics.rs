//! Operation figures per provider, operation and hour: counts, a latency histogram and
//! errors by code, small enough to keep a week of them and merge any time range.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Upper bounds (ms) of the latency histogram's buckets; the last one takes the rest.
pub const LATENCY_BOUNDS_MS: [u64; 14] =
    [5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 180_000];

pub const HOUR_MS: i64 = 3_600_000;
/// Hours of figures kept: a week.
pub const KEPT_HOURS: i64 = 168;

/// The seed's operation types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperationType {
    CreateInstances,
    TerminateInstances,
    GetInstanceStatus,
    ValidateTemplate,
    GetAvailableTemplates,
    HealthCheck,
}

impl OperationType {
    pub const ALL: [OperationType; 6] = [
        Self::CreateInstances,
        Self::TerminateInstances,
        Self::GetInstanceStatus,
        Self::ValidateTemplate,
        Self::GetAvailableTemplates,
        Self::HealthCheck,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreateInstances => "CREATE_INSTANCES",
            Self::TerminateInstances => "TERMINATE_INSTANCES",
            Self::GetInstanceStatus => "GET_INSTANCE_STATUS",
            Self::ValidateTemplate => "VALIDATE_TEMPLATE",
            Self::GetAvailableTemplates => "GET_AVAILABLE_TEMPLATES",
            Self::HealthCheck => "HEALTH_CHECK",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// One hour of one operation on one provider.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// Start of the hour, unix ms.
    pub hour: i64,
    pub count: u64,
    pub successes: u64,
    pub total_ms: u64,
    pub max_ms: u64,
    /// Counts per `LATENCY_BOUNDS_MS` bucket, plus one for longer.
    pub latency: Vec<u64>,
    pub errors: BTreeMap<String, u64>,
}

/// The hour `at` falls in.
pub fn hour_of(at: i64) -> i64 {
    at.div_euclid(HOUR_MS) * HOUR_MS
}

/// The slot of a week-long ring that the hour of `at` is kept in.
pub fn slot_of(at: i64) -> i64 {
    (at.div_euclid(HOUR_MS)).rem_euclid(KEPT_HOURS)
}

impl Bucket {
    /// Adds one operation at `at` that took `ms`; `error` is its code when it failed. A bucket
    /// of an older hour (the ring came round) starts again.
    pub fn add(&mut self, at: i64, ms: u64, error: Option<&str>) {
        let hour = hour_of(at);
        if self.hour != hour {
            *self = Bucket { hour, ..Bucket::default() };
        }
        if self.latency.len() != LATENCY_BOUNDS_MS.len() + 1 {
            self.latency.resize(LATENCY_BOUNDS_MS.len() + 1, 0);
        }
        self.count += 1;
        self.total_ms += ms;
        self.max_ms = self.max_ms.max(ms);
        let slot = LATENCY_BOUNDS_MS.iter().position(|b| ms <= *b).unwrap_or(LATENCY_BOUNDS_MS.len());
        self.latency[slot] += 1;
        match error {
            None => self.successes += 1,
            Some(code) => *self.errors.entry(code.to_owned()).or_default() += 1,
        }
    }

    /// Adds figures of the same hour gathered elsewhere; a bucket of an older hour (the ring
    /// came round) starts again, one of a newer hour is kept as it is.
    pub fn absorb(&mut self, other: &Bucket) {
        if self.hour > other.hour {
            return;
        }
        if self.hour < other.hour {
            *self = Bucket { hour: other.hour, ..Bucket::default() };
        }
        self.merge(other);
    }

    fn merge(&mut self, other: &Bucket) {
        self.count += other.count;
        self.successes += other.successes;
        self.total_ms += other.total_ms;
        self.max_ms = self.max_ms.max(other.max_ms);
        if self.latency.len() < other.latency.len() {
            self.latency.resize(other.latency.len(), 0);
        }
        for (i, n) in other.latency.iter().enumerate() {
            self.latency[i] += n;
        }
        for (code, n) in &other.errors {
            *self.errors.entry(code.clone()).or_default() += n;
        }
    }
}

/// The figures of one operation over a time range.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub total_operations: u64,
    pub successful_operations: u64,
    pub failed_operations: u64,
    /// Percent; absent when nothing ran.
    pub success_rate: Option<f64>,
    pub average_response_time_ms: Option<f64>,
    /// Upper bounds of the histogram bucket each percentile falls in.
    pub p50_response_time_ms: Option<u64>,
    pub p95_response_time_ms: Option<u64>,
    pub p99_response_time_ms: Option<u64>,
    pub max_response_time_ms: Option<u64>,
    /// Failures by error code (left out of documents when there are none).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, u64>,
}

/// Merges the buckets whose hour ends after `since`.
pub fn summarize<'a>(buckets: impl IntoIterator<Item = &'a Bucket>, since: i64) -> Summary {
    let mut all = Bucket::default();
    for b in buckets.into_iter().filter(|b| b.hour + HOUR_MS > since) {
        all.merge(b);
    }
    if all.count == 0 {
        return Summary::default();
    }
    let percentile = |p: f64| {
        let rank = ((all.count as f64) * p).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in all.latency.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(LATENCY_BOUNDS_MS.get(i).copied().unwrap_or(all.max_ms).min(all.max_ms));
            }
        }
        Some(all.max_ms)
    };
    Summary {
        total_operations: all.count,
        successful_operations: all.successes,
        failed_operations: all.count - all.successes,
        success_rate: Some(all.successes as f64 * 100.0 / all.count as f64),
        average_response_time_ms: Some(all.total_ms as f64 / all.count as f64),
        p50_response_time_ms: percentile(0.50),
        p95_response_time_ms: percentile(0.95),
        p99_response_time_ms: percentile(0.99),
        max_response_time_ms: Some(all.max_ms),
        errors: all.errors,
    }
}
