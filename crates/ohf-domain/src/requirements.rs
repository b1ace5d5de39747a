//! Attribute-based instance selection: a template may ask for any instance type within vCPU
//! and memory ranges (with architecture, burstable and accelerator choices, allowed and
//! excluded types) instead of naming types, as EC2 Fleet and Auto Scaling's
//! `InstanceRequirements` do. Host Factory's `ncpus` and `nram` then come from the smallest
//! type of the instance-type table that matches, so no machine falls short of them.

use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::instance_types::{self, InstanceTypeInfo};

/// A range of a figure: at least `min`, at most `max` when given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// At least this.
    pub min: u32,
    /// At most this, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
}

impl Range {
    fn holds(&self, n: u64) -> bool {
        n >= u64::from(self.min) && self.max.is_none_or(|m| n <= u64::from(m))
    }

    fn check(&self, field: &str) -> Result<(), DomainError> {
        match self.max {
            Some(max) if max < self.min => {
                Err(DomainError::validation(field, format!("max {max} is below min {}", self.min)))
            }
            _ => Ok(()),
        }
    }
}

/// Whether burstable types (t2, t3, t3a, t4g) may be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Inclusion {
    /// They may be chosen.
    Included,
    /// They are left out.
    Excluded,
    /// Only they are chosen.
    Required,
}

impl Inclusion {
    /// The EC2 and Auto Scaling value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Included => "included",
            Self::Excluded => "excluded",
            Self::Required => "required",
        }
    }
}

/// The template's `instanceRequirements`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceRequirements {
    /// vCPUs.
    pub v_cpu_count: Range,
    /// Memory in MiB.
    #[serde(rename = "memoryMiB")]
    pub memory_mib: Range,
    /// `x86_64` (default) or `arm64`: the image's architecture, which decides Host Factory's `type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    /// Burstable types: excluded unless said (as EC2 does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burstable_performance: Option<Inclusion>,
    /// Accelerators (GPUs, FPGAs, inference chips) per machine; `{"min": 0, "max": 0}` excludes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accelerator_count: Option<Range>,
    /// Only these kinds of accelerator: `gpu`, `fpga`, `inference`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accelerator_types: Vec<String>,
    /// Only types matching one of these (`*` stands for anything: `m5.*`, `c6?.*` is not).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_instance_types: Vec<String>,
    /// Never types matching one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_instance_types: Vec<String>,
}

/// `*` matches any run of characters; nothing else is special.
fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || !name.ends_with(last) || name.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

fn family(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

/// The kind of accelerator a type carries, from its family (p and g GPUs, f FPGAs, inf and
/// trn inference and training chips, dl Gaudi).
pub fn accelerator_of(name: &str) -> Option<&'static str> {
    let f = family(name);
    let digit_after =
        |prefix: &str| f.strip_prefix(prefix).and_then(|r| r.chars().next()).is_some_and(|c| c.is_ascii_digit());
    if digit_after("inf") || digit_after("trn") || digit_after("dl") {
        Some("inference")
    } else if digit_after("p") || digit_after("g") {
        Some("gpu")
    } else if digit_after("f") {
        Some("fpga")
    } else {
        None
    }
}

/// Whether a type is burstable (t2, t3, t3a, t4g).
pub fn is_burstable(name: &str) -> bool {
    family(name).strip_prefix('t').and_then(|r| r.chars().next()).is_some_and(|c| c.is_ascii_digit())
}

impl InstanceRequirements {
    /// Refuses requirements no type could meet by their form.
    pub fn check(&self) -> Result<(), DomainError> {
        if self.v_cpu_count.min == 0 {
            return Err(DomainError::validation("instanceRequirements.vCpuCount", "min must be at least 1"));
        }
        self.v_cpu_count.check("instanceRequirements.vCpuCount")?;
        self.memory_mib.check("instanceRequirements.memoryMiB")?;
        if let Some(a) = &self.accelerator_count {
            a.check("instanceRequirements.acceleratorCount")?;
        }
        if let Some(arch) = &self.architecture
            && InstanceTypeInfo::arch_of(arch).is_none()
        {
            return Err(DomainError::validation("instanceRequirements.architecture", "must be x86_64 or arm64"));
        }
        if let Some(bad) = self.accelerator_types.iter().find(|t| !["gpu", "fpga", "inference"].contains(&t.as_str())) {
            return Err(DomainError::validation(
                "instanceRequirements.acceleratorTypes",
                format!("'{bad}' is not gpu, fpga or inference"),
            ));
        }
        if !self.allowed_instance_types.is_empty() && !self.excluded_instance_types.is_empty() {
            return Err(DomainError::validation(
                "instanceRequirements",
                "allowedInstanceTypes and excludedInstanceTypes exclude each other (as in EC2)",
            ));
        }
        Ok(())
    }

    /// Host Factory's `type`: `X86_64` unless `arm64` is asked.
    pub fn arch(&self) -> &'static str {
        self.architecture.as_deref().and_then(InstanceTypeInfo::arch_of).unwrap_or("X86_64")
    }

    /// Whether the type `name` with figures `info` meets the requirements.
    pub fn matches(&self, name: &str, info: &InstanceTypeInfo) -> bool {
        if !self.v_cpu_count.holds(u64::from(info.vcpus)) || !self.memory_mib.holds(info.memory_mib) {
            return false;
        }
        if info.arch != self.arch() {
            return false;
        }
        let burstable = is_burstable(name);
        match self.burstable_performance.unwrap_or(Inclusion::Excluded) {
            Inclusion::Excluded if burstable => return false,
            Inclusion::Required if !burstable => return false,
            _ => {}
        }
        let accelerator = accelerator_of(name);
        if let Some(count) = &self.accelerator_count
            && count.max == Some(0)
            && accelerator.is_some()
        {
            return false;
        }
        if self.accelerator_count.is_some_and(|c| c.min > 0) && accelerator.is_none() {
            return false;
        }
        if !self.accelerator_types.is_empty()
            && !accelerator.is_some_and(|a| self.accelerator_types.iter().any(|t| t == a))
        {
            return false;
        }
        if !self.allowed_instance_types.is_empty() && !self.allowed_instance_types.iter().any(|p| glob(p, name)) {
            return false;
        }
        !self.excluded_instance_types.iter().any(|p| glob(p, name))
    }

    /// The types of the instance-type table that match, with their figures.
    pub fn matching_types(&self) -> Vec<(&'static str, InstanceTypeInfo)> {
        instance_types::known_types()
            .into_iter()
            .filter_map(|t| instance_types::lookup(t).map(|i| (t, i)))
            .filter(|(t, i)| self.matches(t, i))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requirements(v: serde_json::Value) -> InstanceRequirements {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn globs_match_as_ec2_writes_them() {
        assert!(glob("m5.*", "m5.large"));
        assert!(!glob("m5.*", "m5a.large"));
        assert!(glob("*.xlarge", "c5.xlarge"));
        assert!(glob("c*.large", "c6g.large"));
        assert!(glob("t3.micro", "t3.micro") && !glob("t3.micro", "t3.small"));
    }

    #[test]
    fn families_say_burstable_and_accelerated() {
        assert!(is_burstable("t3.micro") && is_burstable("t4g.nano") && !is_burstable("m5.large"));
        assert_eq!(accelerator_of("p3.2xlarge"), Some("gpu"));
        assert_eq!(accelerator_of("g4dn.xlarge"), Some("gpu"));
        assert_eq!(accelerator_of("inf1.xlarge"), Some("inference"));
        assert_eq!(accelerator_of("c6g.large"), None, "graviton is no GPU");
        assert_eq!(accelerator_of("m5.large"), None);
    }

    #[test]
    fn matching_follows_every_choice() {
        let r = requirements(
            serde_json::json!({"vCpuCount": {"min": 2, "max": 2}, "memoryMiB": {"min": 8192, "max": 8192}}),
        );
        let m5 = instance_types::lookup("m5.large").unwrap();
        assert!(r.matches("m5.large", &m5));
        let t3 = instance_types::lookup("t3.large").unwrap();
        assert!(!r.matches("t3.large", &t3), "burstable types are left out unless asked");
        let burst = requirements(
            serde_json::json!({"vCpuCount": {"min": 2, "max": 2}, "memoryMiB": {"min": 8192}, "burstablePerformance": "required"}),
        );
        assert!(burst.matches("t3.large", &t3) && !burst.matches("m5.large", &m5));
        let only = requirements(
            serde_json::json!({"vCpuCount": {"min": 1}, "memoryMiB": {"min": 1}, "allowedInstanceTypes": ["c5.*"]}),
        );
        assert!(!only.matches("m5.large", &m5));
        let arm = requirements(
            serde_json::json!({"vCpuCount": {"min": 2, "max": 2}, "memoryMiB": {"min": 1}, "architecture": "arm64"}),
        );
        assert!(!arm.matches("m5.large", &m5));
        assert!(arm.matching_types().iter().all(|(_, i)| i.arch == "ARM64") && !arm.matching_types().is_empty());
    }

    #[test]
    fn requirements_of_impossible_form_are_refused() {
        for (bad, field) in [
            (serde_json::json!({"vCpuCount": {"min": 0}, "memoryMiB": {"min": 1}}), "vCpuCount"),
            (serde_json::json!({"vCpuCount": {"min": 4, "max": 2}, "memoryMiB": {"min": 1}}), "vCpuCount"),
            (serde_json::json!({"vCpuCount": {"min": 1}, "memoryMiB": {"min": 9, "max": 8}}), "memoryMiB"),
            (
                serde_json::json!({"vCpuCount": {"min": 1}, "memoryMiB": {"min": 1}, "architecture": "sparc"}),
                "architecture",
            ),
            (
                serde_json::json!({"vCpuCount": {"min": 1}, "memoryMiB": {"min": 1}, "acceleratorTypes": ["tpu"]}),
                "acceleratorTypes",
            ),
        ] {
            let e = requirements(bad).check().unwrap_err();
            assert!(e.to_string().contains(field), "{e}");
        }
    }
}
