//! vCPU and memory figures of EC2 instance types, kept as data in `data/instance-types.csv`.

use std::collections::HashMap;
use std::sync::OnceLock;

const TABLE: &str = include_str!("../data/instance-types.csv");

/// Published figures of one instance type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceTypeInfo {
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Threads per core.
    pub threads_per_core: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Host Factory's `type` attribute: `X86_64` or `ARM64`.
    pub arch: &'static str,
}

impl InstanceTypeInfo {
    /// Host Factory's `type` for an architecture as EC2 names it (`x86_64`, `arm64`).
    pub fn arch_of(name: &str) -> Option<&'static str> {
        match name.to_ascii_lowercase().as_str() {
            "x86_64" => Some("X86_64"),
            "arm64" => Some("ARM64"),
            _ => None,
        }
    }

    /// Host Factory's `ncpus`: physical cores, that is vCPUs / 2 on hyperthreaded types.
    pub fn ncpus(&self) -> u32 {
        (self.vcpus / self.threads_per_core.max(1)).max(1)
    }
}

fn table() -> &'static HashMap<&'static str, InstanceTypeInfo> {
    static TABLE_MAP: OnceLock<HashMap<&'static str, InstanceTypeInfo>> = OnceLock::new();
    TABLE_MAP.get_or_init(|| {
        TABLE
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|line| {
                let mut f = line.split(',').map(str::trim);
                let name = f.next()?;
                let vcpus = f.next()?.parse().ok()?;
                let threads_per_core = f.next()?.parse().ok()?;
                let memory_mib = f.next()?.parse().ok()?;
                let arch = InstanceTypeInfo::arch_of(f.next()?)?;
                Some((name, InstanceTypeInfo { vcpus, threads_per_core, memory_mib, arch }))
            })
            .collect()
    })
}

/// The figures of `instance_type`, when the table knows it.
pub fn lookup(instance_type: &str) -> Option<InstanceTypeInfo> {
    table().get(instance_type).copied()
}

/// Every instance type the table knows, sorted by name.
pub fn known_types() -> Vec<&'static str> {
    let mut names: Vec<_> = table().keys().copied().collect();
    names.sort_unstable();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_of_the_table_parses() {
        let rows = TABLE.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).count();
        assert_eq!(known_types().len(), rows);
    }

    #[test]
    fn ncpus_counts_cores_not_hyperthreads() {
        let m5 = lookup("m5.large").unwrap();
        assert_eq!((m5.ncpus(), m5.memory_mib), (1, 8192));
        let t2 = lookup("t2.medium").unwrap();
        assert_eq!(t2.ncpus(), 2);
        let graviton = lookup("c6g.xlarge").unwrap();
        assert_eq!((graviton.ncpus(), graviton.arch), (4, "ARM64"));
        assert_eq!(m5.arch, "X86_64");
        assert!(lookup("z9.huge").is_none());
    }
}
