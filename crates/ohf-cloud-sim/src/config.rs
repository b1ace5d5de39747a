use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How the simulated cloud behaves. Every rate is a probability from 0 to 1, drawn
/// deterministically from `seed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    pub seed: u64,
    pub region: String,
    pub zones: Vec<String>,
    /// Machines of one instance type one zone can run at once.
    pub capacity_per_zone: u32,
    /// Per instance type overrides of `capacity_per_zone`.
    pub capacity: BTreeMap<String, u32>,
    /// Time every API call takes to answer.
    pub api_latency_ms: u64,
    /// Time from launch to running.
    pub launch_latency_ms: u64,
    /// Time from terminate to terminated.
    pub shutdown_latency_ms: u64,
    /// Share of calls answered with RequestLimitExceeded.
    pub throttle_rate: f64,
    /// Share of launches answered with InsufficientInstanceCapacity.
    pub capacity_error_rate: f64,
    /// Share of calls answered with InternalError.
    pub internal_error_rate: f64,
    /// Share of machines that never leave pending.
    pub stuck_rate: f64,
    /// Share of spot machines the cloud interrupts, `interruption_after_secs` after they run.
    pub spot_interruption_rate: f64,
    pub interruption_after_secs: u64,
    /// Notice given before an interruption (EC2 gives two minutes).
    pub interruption_notice_secs: u32,
    /// Addresses in each zone's subnet (`subnet-<zone>`); each live machine takes one.
    pub subnet_size: u32,
    /// Instance types offered per zone; a zone not named offers every type.
    pub offerings: BTreeMap<String, Vec<String>>,
    /// Hourly spot price per instance type; types not named are priced from their vCPUs.
    pub spot_prices: BTreeMap<String, f64>,
    /// The account's vCPU quota for on-demand machines, as the cloud reports it to a venue's
    /// measurement; none: the account does not let it be read.
    pub vcpu_quota: Option<u64>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            region: "sim-east-1".into(),
            zones: vec!["sim-east-1a".into(), "sim-east-1b".into(), "sim-east-1c".into()],
            capacity_per_zone: 1000,
            capacity: BTreeMap::new(),
            api_latency_ms: 0,
            launch_latency_ms: 2000,
            shutdown_latency_ms: 1000,
            throttle_rate: 0.0,
            capacity_error_rate: 0.0,
            internal_error_rate: 0.0,
            stuck_rate: 0.0,
            spot_interruption_rate: 0.0,
            interruption_after_secs: 300,
            interruption_notice_secs: 120,
            subnet_size: 251,
            offerings: BTreeMap::new(),
            spot_prices: BTreeMap::new(),
            vcpu_quota: None,
        }
    }
}

impl SimConfig {
    /// Checks the figures; the message names the bad field.
    pub fn validate(&self) -> Result<(), String> {
        for (field, rate) in [
            ("throttle_rate", self.throttle_rate),
            ("capacity_error_rate", self.capacity_error_rate),
            ("internal_error_rate", self.internal_error_rate),
            ("stuck_rate", self.stuck_rate),
            ("spot_interruption_rate", self.spot_interruption_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{field} must be from 0 to 1, got {rate}"));
            }
        }
        if self.zones.is_empty() {
            return Err("zones must name at least one zone".into());
        }
        if self.region.is_empty() {
            return Err("region must not be empty".into());
        }
        if let Some((t, p)) = self.spot_prices.iter().find(|(_, p)| !(p.is_finite() && **p >= 0.0)) {
            return Err(format!("spot_prices: {t} must be dollars per hour, got {p}"));
        }
        Ok(())
    }

    /// The simulated subnet of a zone.
    pub fn subnet_of(zone: &str) -> String {
        format!("subnet-{zone}")
    }

    /// Whether `zone` offers `instance_type`.
    pub fn offers(&self, zone: &str, instance_type: &str) -> bool {
        self.offerings.get(zone).is_none_or(|types| types.iter().any(|t| t == instance_type))
    }

    /// The spot price of `instance_type` in the zone at `zone_index`: configured, else
    /// $0.0125 per vCPU-hour, 3% dearer per zone further down the list.
    pub fn spot_price(&self, instance_type: &str, zone_index: usize) -> Option<f64> {
        let base = match self.spot_prices.get(instance_type) {
            Some(p) => *p,
            None => f64::from(ohf_domain::instance_types::lookup(instance_type)?.vcpus) * 0.0125,
        };
        Some(base * (1.0 + 0.03 * zone_index as f64))
    }

    pub fn capacity_of(&self, instance_type: &str) -> u32 {
        self.capacity.get(instance_type).copied().unwrap_or(self.capacity_per_zone)
    }
}
