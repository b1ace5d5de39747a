//! An in-process simulated cloud behind the cloud-provider port: instance types with their
//! vCPUs and memory, capacity per type and zone, launch latency, configurable faults and spot
//! interruptions, deterministic under a seed. Its state can live in a file, so a one-shot
//! process sees the machines an earlier process launched.

mod config;
mod state;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ohf_app::ports::{VenueQuery, VenueReading};
use ohf_app::{
    Clock, CloudError, CloudErrorKind, CloudProvider, DescribeQuery, LaunchRequest, LaunchResult, OwnedMachine,
    Ownership, ProviderCapacity, Refusal,
};
use ohf_domain::{MachineId, MachineObservation, ProviderName, Template, instance_types};

pub use config::SimConfig;
use state::SimState;

/// Where the simulated cloud keeps its state.
enum Backing {
    Memory(Mutex<SimState>),
    /// A JSON file, read and written under an exclusive lock on `<file>.lock`.
    File(PathBuf),
}

/// A simulated cloud provider instance.
pub struct SimCloud {
    name: ProviderName,
    config: Arc<SimConfig>,
    clock: Arc<dyn Clock>,
    backing: Arc<Backing>,
    /// Describes made through this handle; also numbers their fault draws.
    describes: std::sync::atomic::AtomicU64,
}

impl SimCloud {
    /// A simulated cloud whose state lives in this process only.
    pub fn in_memory(name: ProviderName, config: SimConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            name,
            config: Arc::new(config),
            clock,
            backing: Arc::new(Backing::Memory(Mutex::new(SimState::default()))),
            describes: Default::default(),
        }
    }

    /// A simulated cloud whose state lives in `path`, shared by every process that names it.
    pub fn persistent(name: ProviderName, config: SimConfig, clock: Arc<dyn Clock>, path: PathBuf) -> Self {
        Self {
            name,
            config: Arc::new(config),
            clock,
            backing: Arc::new(Backing::File(path)),
            describes: Default::default(),
        }
    }

    /// Runs `f` on the state: under the mutex in memory, under the file lock on disk. A read
    /// (`write` false) takes a shared lock and writes nothing back.
    async fn with_state<T: Send + 'static>(
        &self,
        write: bool,
        f: impl FnOnce(&mut SimState, &SimConfig) -> T + Send + 'static,
    ) -> Result<T, CloudError> {
        if self.config.api_latency_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(self.config.api_latency_ms)).await;
        }
        let backing = self.backing.clone();
        let config = self.config.clone();
        let run = move || -> Result<T, CloudError> {
            match &*backing {
                Backing::Memory(m) => {
                    let mut s = m.lock().unwrap_or_else(|p| p.into_inner());
                    Ok(f(&mut s, &config))
                }
                Backing::File(path) => {
                    if write {
                        state::with_file(path, |s| f(s, &config))
                    } else {
                        state::read_file(path, |s| f(s, &config))
                    }
                }
                .map_err(|e| {
                    CloudError::new(
                        CloudErrorKind::Unavailable,
                        "SimStateUnavailable",
                        format!("{}: {e}", path.display()),
                    )
                }),
            }
        };
        match &*self.backing {
            Backing::Memory(_) => run(),
            Backing::File(_) => tokio::task::spawn_blocking(run)
                .await
                .map_err(|e| CloudError::new(CloudErrorKind::Internal, "SimPanic", e.to_string()))?,
        }
    }

    /// Announces that the cloud takes `id` back in `notice_secs` (a spot interruption).
    pub async fn interrupt(&self, id: &MachineId, notice_secs: u32) -> Result<bool, CloudError> {
        let now = self.clock.now();
        let id = id.to_string();
        self.with_state(true, move |s, _| s.interrupt(&id, now, notice_secs)).await
    }

    /// Stops `id` as if someone outside ohf had stopped it.
    pub async fn stop(&self, id: &MachineId) -> Result<bool, CloudError> {
        let now = self.clock.now();
        let id = id.to_string();
        self.with_state(true, move |s, _| s.stop(&id, now)).await
    }

    /// How many calls of each kind this cloud has served (launch, describe, terminate).
    /// Launches and terminations are counted in the shared state; describes by this handle.
    pub async fn call_counts(&self) -> Result<state::CallCounts, CloudError> {
        let describes = self.describes.load(std::sync::atomic::Ordering::SeqCst);
        self.with_state(false, move |s, _| state::CallCounts { describe: describes, ..s.counts.clone() }).await
    }
}

fn known_types(template: &Template) -> Result<Vec<String>, String> {
    if template.vm_types().is_empty()
        && let Some(q) = template.instance_requirements()
    {
        // Chosen by figures as EC2 does: the matching types, the smallest first.
        let mut matching = q.matching_types();
        matching.sort_by_key(|(name, i)| (i.vcpus, i.memory_mib, *name));
        if matching.is_empty() {
            return Err("no instance type meets the template's instanceRequirements".into());
        }
        return Ok(matching.into_iter().map(|(name, _)| name.to_owned()).collect());
    }
    let mut types: Vec<&String> = template.vm_types().keys().collect();
    types.sort_by_key(|t| template.vm_types_priority().get(*t).copied().unwrap_or(u32::MAX));
    let unknown: Vec<&str> = types.iter().filter(|t| instance_types::lookup(t).is_none()).map(|t| t.as_str()).collect();
    if !unknown.is_empty() {
        return Err(format!("unknown instance type {}", unknown.join(", ")));
    }
    if types.is_empty() {
        return Err("the simulated cloud needs vmType or vmTypes; it has no launch templates".into());
    }
    Ok(types.into_iter().cloned().collect())
}

#[async_trait]
impl CloudProvider for SimCloud {
    fn name(&self) -> &ProviderName {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "sim"
    }

    fn capabilities(&self) -> &'static [&'static str] {
        &["instances", "spot_instances", "fleets", "auto_scaling"]
    }

    async fn check_template(&self, template: &Template) -> Result<(), CloudError> {
        known_types(template)
            .map(|_| ())
            .map_err(|m| CloudError::new(CloudErrorKind::Validation, "InvalidParameterValue", m))
    }

    async fn spot_prices(
        &self,
        instance_types: &[String],
    ) -> Result<std::collections::BTreeMap<String, f64>, CloudError> {
        // Its first zone's, the cheapest.
        Ok(instance_types.iter().filter_map(|t| self.config.spot_price(t, 0).map(|p| (t.clone(), p))).collect())
    }

    async fn check_zones(&self, _template: &Template, zones: &[String]) -> Result<(), CloudError> {
        let unknown: Vec<&str> = zones.iter().filter(|z| !self.config.zones.contains(z)).map(String::as_str).collect();
        if unknown.is_empty() {
            return Ok(());
        }
        Err(CloudError::new(
            CloudErrorKind::Validation,
            "NoSuchZone",
            format!(
                "zones {} are not in {}; its zones: {}",
                unknown.join(", "),
                self.config.region,
                self.config.zones.join(", ")
            ),
        ))
    }

    async fn measure_venue(&self, venue: &VenueQuery) -> Result<VenueReading, CloudError> {
        let now = self.clock.now();
        let zones: Vec<String> = match &venue.zone {
            Some(z) if self.config.zones.contains(z) => vec![z.clone()],
            Some(z) => {
                return Err(CloudError::new(
                    CloudErrorKind::Validation,
                    "InvalidParameterValue",
                    format!("zone {z} is not in {}", self.config.region),
                ));
            }
            None => self.config.zones.clone(),
        };
        let wanted = venue.subnets.clone();
        let counted = zones.clone();
        let subnets = self
            .with_state(false, move |s, c| {
                counted
                    .iter()
                    .map(|z| (SimConfig::subnet_of(z), s.free_ips(c, z, now)))
                    .filter(|(id, _)| wanted.is_empty() || wanted.contains(id))
                    .map(|(id, free)| ohf_placement::Subnet { id, free_ips: Some(u64::from(free)) })
                    .collect::<Vec<_>>()
            })
            .await?;
        let known: Vec<&String> =
            venue.instance_types.iter().filter(|t| ohf_domain::instance_types::lookup(t).is_some()).collect();
        let offered = known.iter().filter(|t| zones.iter().all(|z| self.config.offers(z, t))).map(|t| (*t).clone());
        let zone_index = zones.first().and_then(|z| self.config.zones.iter().position(|c| c == z)).unwrap_or(0);
        let spot_prices =
            known.iter().filter_map(|t| self.config.spot_price(t, zone_index).map(|p| ((*t).clone(), p))).collect();
        Ok(VenueReading {
            subnets,
            offerings: Some(offered.collect()),
            spot_prices,
            vcpu_quota: self.config.vcpu_quota,
            ..VenueReading::default()
        })
    }

    async fn capacity(&self, template: &Template) -> Result<Option<ProviderCapacity>, CloudError> {
        let types = known_types(template)
            .map_err(|m| CloudError::new(CloudErrorKind::Validation, "InvalidParameterValue", m))?;
        let now = self.clock.now();
        let zones = self.config.zones.clone();
        let region = self.config.region.clone();
        let primary = types[0].clone();
        let available =
            self.with_state(false, move |s, c| types.iter().map(|t| s.free(c, t, &zones, now)).sum::<u32>()).await?;
        Ok(Some(ProviderCapacity { available, instance_type: primary, region: Some(region) }))
    }

    async fn launch(&self, request: &LaunchRequest) -> Result<LaunchResult, CloudError> {
        let types = known_types(&request.template)
            .map_err(|m| CloudError::new(CloudErrorKind::Validation, "InvalidParameterValue", m))?;
        let now = self.clock.now();
        let name = self.name.clone();
        let request = request.clone();
        self.with_state(true, move |s, c| s.launch(c, &name, &request, &types, now)).await?
    }

    async fn describe(&self, query: &DescribeQuery) -> Result<Vec<MachineObservation>, CloudError> {
        let now = self.clock.now();
        let name = self.name.clone();
        let query = query.clone();
        let n = self.describes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Some(e) = state::describe_fault(&self.config, n) {
            return Err(e);
        }
        self.with_state(false, move |s, c| s.describe(c, &name, &query, now)).await
    }

    async fn terminate(&self, machines: &[OwnedMachine], owner: &Ownership) -> Result<Vec<Refusal>, CloudError> {
        let now = self.clock.now();
        let machines = machines.to_vec();
        let owner = owner.clone();
        self.with_state(true, move |s, c| s.terminate(c, &machines, &owner, now)).await?
    }
}
