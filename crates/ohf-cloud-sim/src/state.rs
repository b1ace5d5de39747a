//! The simulated cloud's state and rules. Pure functions of the state, the configuration and
//! the time given; the caller decides where the state lives.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

use ohf_app::{
    CloudError, CloudErrorKind, DescribeQuery, LaunchRequest, LaunchResult, OwnedMachine, Ownership, Refusal,
};
use ohf_domain::{MachineId, MachineObservation, MachineStatus, PriceType, ProviderName, RequestId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::SimConfig;

/// Terminated machines stay visible this long, as on EC2.
const KEEP_TERMINATED_MS: i64 = 3_600_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallCounts {
    pub launch: u64,
    pub describe: u64,
    pub terminate: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Instance {
    id: String,
    instance_type: String,
    zone: String,
    spot: bool,
    private_ip: String,
    launched_at: i64,
    /// `None`: never leaves pending.
    ready_at: Option<i64>,
    terminate_at: Option<i64>,
    interrupt_at: Option<i64>,
    stopped_at: Option<i64>,
    tags: BTreeMap<String, String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SimState {
    /// Draws made so far; every random choice is the next draw of the seeded sequence.
    draws: u64,
    launched: u64,
    instances: BTreeMap<String, Instance>,
    tokens: BTreeMap<String, Vec<String>>,
    pub counts: CallCounts,
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Instance {
    fn status(&self, now: i64, config: &SimConfig) -> MachineStatus {
        if let Some(t) = self.terminate_at {
            return if now >= t + config.shutdown_latency_ms as i64 {
                MachineStatus::Terminated
            } else {
                MachineStatus::ShuttingDown
            };
        }
        if self.interrupt_at.is_some_and(|t| now >= t) {
            return MachineStatus::Terminated;
        }
        if self.stopped_at.is_some() {
            return MachineStatus::Stopped;
        }
        match self.ready_at {
            Some(t) if now >= t => MachineStatus::Running,
            _ => MachineStatus::Pending,
        }
    }

    fn occupies(&self, now: i64, config: &SimConfig) -> bool {
        self.status(now, config) != MachineStatus::Terminated
    }

    fn observe(&self, provider: &ProviderName, now: i64, config: &SimConfig) -> MachineObservation {
        let status = self.status(now, config);
        let host = format!("ip-{}.ec2.internal", self.private_ip.replace('.', "-"));
        let addressed = status != MachineStatus::Terminated;
        MachineObservation {
            id: MachineId::new(self.id.clone()).expect("sim ids are valid"),
            provider: provider.clone(),
            status,
            name: addressed.then_some(host),
            private_ip: addressed.then(|| self.private_ip.clone()),
            public_ip: None,
            instance_type: Some(self.instance_type.clone()),
            price_type: Some(if self.spot { PriceType::Spot } else { PriceType::Ondemand }),
            zone: Some(self.zone.clone()),
            launch_time: Some(Timestamp::from_unix_millis(self.launched_at)),
            request_id: self
                .tags
                .get(ohf_app::ports::tag_keys::REQUEST_ID)
                .and_then(|r| RequestId::new(r.clone()).ok()),
            tags: self.tags.clone(),
            interruption_at: self
                .interrupt_at
                .map(Timestamp::from_unix_millis)
                .filter(|_| status != MachineStatus::Terminated),
            cloud_host_id: None,
        }
    }
}

/// The `n`th number of the seeded sequence, uniform in [0, 1).
fn draw_at(seed: u64, n: u64) -> f64 {
    (splitmix64(seed ^ n.wrapping_mul(0x2545_f491_4f6c_dd1d)) >> 11) as f64 / (1u64 << 53) as f64
}

/// A describe's fault, drawn from a sequence of the caller's own: describes write nothing.
pub fn describe_fault(config: &SimConfig, n: u64) -> Option<CloudError> {
    let seed = config.seed.rotate_left(17) ^ 0x5ec0_4d5e;
    if draw_at(seed, 2 * n) < config.throttle_rate {
        let mut e = CloudError::new(CloudErrorKind::Throttling, "RequestLimitExceeded", "request limit exceeded");
        e.retry_after = Some(std::time::Duration::from_secs(1));
        return Some(e);
    }
    if draw_at(seed, 2 * n + 1) < config.internal_error_rate {
        return Some(CloudError::new(CloudErrorKind::Internal, "InternalError", "an internal error has occurred"));
    }
    None
}

impl SimState {
    fn draw(&mut self, config: &SimConfig) -> f64 {
        self.draws += 1;
        draw_at(config.seed, self.draws)
    }

    /// A fault for this call, drawn from the configured rates.
    fn fault(&mut self, config: &SimConfig, launch: bool) -> Option<CloudError> {
        if self.draw(config) < config.throttle_rate {
            let mut e = CloudError::new(CloudErrorKind::Throttling, "RequestLimitExceeded", "request limit exceeded");
            e.retry_after = Some(std::time::Duration::from_secs(1));
            return Some(e);
        }
        if self.draw(config) < config.internal_error_rate {
            return Some(CloudError::new(CloudErrorKind::Internal, "InternalError", "an internal error has occurred"));
        }
        if launch && self.draw(config) < config.capacity_error_rate {
            return Some(CloudError::new(
                CloudErrorKind::Capacity,
                "InsufficientInstanceCapacity",
                "there is no capacity for the requested instance type",
            ));
        }
        None
    }

    fn prune(&mut self, now: i64, config: &SimConfig) {
        self.instances.retain(|_, i| {
            let gone_at = match (i.terminate_at, i.interrupt_at) {
                (Some(t), _) => Some(t + config.shutdown_latency_ms as i64),
                (None, Some(t)) => Some(t),
                _ => None,
            };
            gone_at.is_none_or(|t| now - t < KEEP_TERMINATED_MS)
        });
    }

    /// Free capacity for one instance type across `zones`.
    pub fn free(&self, config: &SimConfig, instance_type: &str, zones: &[String], now: Timestamp) -> u32 {
        zones.iter().map(|z| self.free_in(config, instance_type, z, now.unix_millis())).sum()
    }

    /// Addresses free in a zone's subnet: its size less the machines that occupy the zone.
    pub fn free_ips(&self, config: &SimConfig, zone: &str, now: Timestamp) -> u32 {
        let used = self.instances.values().filter(|i| i.zone == zone && i.occupies(now.unix_millis(), config)).count();
        config.subnet_size.saturating_sub(u32::try_from(used).unwrap_or(u32::MAX))
    }

    fn free_in(&self, config: &SimConfig, instance_type: &str, zone: &str, now: i64) -> u32 {
        let used = self
            .instances
            .values()
            .filter(|i| i.instance_type == instance_type && i.zone == zone && i.occupies(now, config))
            .count() as u32;
        config.capacity_of(instance_type).saturating_sub(used)
    }

    pub fn launch(
        &mut self,
        config: &SimConfig,
        provider: &ProviderName,
        request: &LaunchRequest,
        types: &[String],
        now: Timestamp,
    ) -> Result<LaunchResult, CloudError> {
        let now = now.unix_millis();
        self.counts.launch += 1;
        self.prune(now, config);
        if let Some(ids) = self.tokens.get(request.token.as_str()) {
            let machines =
                ids.iter().filter_map(|id| self.instances.get(id)).map(|i| i.observe(provider, now, config)).collect();
            return Ok(LaunchResult { machines, ..LaunchResult::default() });
        }
        if let Some(e) = self.fault(config, true) {
            return Err(e);
        }
        let zones: Vec<String> = if request.zones.is_empty() {
            config.zones.clone()
        } else {
            request.zones.iter().filter(|z| config.zones.contains(z)).cloned().collect()
        };
        if zones.is_empty() {
            return Err(CloudError::new(
                CloudErrorKind::Validation,
                "InvalidParameterValue",
                format!("none of the zones {} exists; zones: {}", request.zones.join(", "), config.zones.join(", ")),
            ));
        }
        let template = &request.template;
        let on_demand_share = match template.price_type() {
            PriceType::Ondemand => 100,
            PriceType::Spot => 0,
            PriceType::Heterogeneous => template.percent_on_demand().unwrap_or(0),
        };
        let on_demand = (request.count * on_demand_share).div_ceil(100);
        // A spot machine is placed only where the spot price is within the template's limit.
        let limit = template.max_spot_price();
        let affordable = |t: &str, zone: &str| {
            let index = config.zones.iter().position(|z| z == zone).unwrap_or(0);
            limit.is_none_or(|cap| config.spot_price(t, index).is_none_or(|price| price <= cap))
        };
        let mut priced_out = false;
        let mut ids = Vec::new();
        for n in 0..request.count {
            // Spread over zones, then types, taking the first with room.
            let nz = zones.len();
            let spot = n >= on_demand;
            let slot = (0..nz)
                .flat_map(|z| types.iter().map(move |t| (t, (z + n as usize) % nz)))
                .filter(|(t, z)| self.free_in(config, t, &zones[*z], now) > 0)
                .find(|(t, z)| {
                    let ok = !spot || affordable(t, &zones[*z]);
                    priced_out |= !ok;
                    ok
                });
            let Some((instance_type, zone)) = slot else { break };
            let (instance_type, zone) = (instance_type.clone(), zones[zone].clone());
            self.launched += 1;
            let k = self.launched;
            let id = format!("i-0{:016x}", splitmix64(config.seed ^ k));
            let stuck = self.draw(config) < config.stuck_rate;
            let ready_at = (!stuck).then_some(now + config.launch_latency_ms as i64);
            let interrupted = spot && self.draw(config) < config.spot_interruption_rate;
            let interrupt_at = match (interrupted, ready_at) {
                (true, Some(r)) => Some(r + config.interruption_after_secs as i64 * 1000),
                _ => None,
            };
            let tags = request.tags.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
            self.instances.insert(
                id.clone(),
                Instance {
                    id: id.clone(),
                    instance_type,
                    zone,
                    spot,
                    private_ip: format!("10.{}.{}.{}", (k >> 16) & 0xff, (k >> 8) & 0xff, k & 0xff),
                    launched_at: now,
                    ready_at,
                    terminate_at: None,
                    interrupt_at,
                    stopped_at: None,
                    tags,
                },
            );
            ids.push(id);
        }
        if ids.is_empty() && priced_out {
            return Err(CloudError::new(
                CloudErrorKind::Capacity,
                "SpotMaxPriceTooLow",
                format!(
                    "the spot price of {} in {} is above the limit of ${:.4} an hour",
                    types.join(", "),
                    zones.join(", "),
                    limit.unwrap_or_default()
                ),
            ));
        }
        if ids.is_empty() {
            return Err(CloudError::new(
                CloudErrorKind::Capacity,
                "InsufficientInstanceCapacity",
                format!("no capacity for {} in {}", types.join(", "), zones.join(", ")),
            ));
        }
        let shortfall = (ids.len() < request.count as usize).then(|| {
            CloudError::new(
                CloudErrorKind::Capacity,
                "InsufficientInstanceCapacity",
                format!("launched {} of {}: no more capacity for {}", ids.len(), request.count, types.join(", ")),
            )
        });
        let machines = ids.iter().map(|id| self.instances[id].observe(provider, now, config)).collect();
        self.tokens.insert(request.token.to_string(), ids);
        Ok(LaunchResult { machines, shortfall, filling: None })
    }

    /// What the query names; reads only, so it runs under a shared lock and writes nothing.
    pub fn describe(
        &self,
        config: &SimConfig,
        provider: &ProviderName,
        query: &DescribeQuery,
        now: Timestamp,
    ) -> Vec<MachineObservation> {
        let now = now.unix_millis();
        // Looked up once per instance: a describe of every machine of a cycle stays linear.
        let by_id: HashSet<&str> = query.machine_ids.iter().map(|m| m.as_str()).collect();
        let by_request: HashSet<&str> = query.request_ids.iter().map(RequestId::as_str).collect();
        let cluster = query.cluster.as_deref();
        let in_cluster = |i: &Instance| {
            cluster.is_some()
                && i.tags.get(ohf_app::ports::tag_keys::CLUSTER).map(String::as_str) == cluster
                && i.status(now, config) != MachineStatus::Terminated
        };
        self.instances
            .values()
            .filter(|i| {
                by_id.contains(i.id.as_str())
                    || i.tags.get(ohf_app::ports::tag_keys::REQUEST_ID).is_some_and(|r| by_request.contains(r.as_str()))
                    || in_cluster(i)
            })
            .map(|i| i.observe(provider, now, config))
            .collect()
    }

    /// Terminates the machines whose tags prove `owner` and their request own them; answers
    /// the others, untouched, with why.
    pub fn terminate(
        &mut self,
        config: &SimConfig,
        machines: &[OwnedMachine],
        owner: &Ownership,
        now: Timestamp,
    ) -> Result<Vec<Refusal>, CloudError> {
        self.counts.terminate += 1;
        if let Some(e) = self.fault(config, false) {
            return Err(e);
        }
        let mut refused = Vec::new();
        for m in machines {
            let Some(i) = self.instances.get_mut(m.id.as_str()) else { continue };
            match owner.disproof(|k| i.tags.get(k).map(String::as_str), &m.request_id) {
                Some(reason) => refused.push(Refusal { id: m.id.clone(), reason }),
                None => {
                    i.terminate_at.get_or_insert(now.unix_millis());
                }
            }
        }
        Ok(refused)
    }

    pub fn interrupt(&mut self, id: &str, now: Timestamp, notice_secs: u32) -> bool {
        match self.instances.get_mut(id) {
            Some(i) if i.terminate_at.is_none() => {
                i.interrupt_at = Some(now.unix_millis() + i64::from(notice_secs) * 1000);
                true
            }
            _ => false,
        }
    }

    pub fn stop(&mut self, id: &str, now: Timestamp) -> bool {
        match self.instances.get_mut(id) {
            Some(i) if i.terminate_at.is_none() => {
                i.stopped_at = Some(now.unix_millis());
                true
            }
            _ => false,
        }
    }
}

fn read(path: &Path) -> std::io::Result<SimState> {
    match File::open(path) {
        Ok(mut file) => {
            let mut text = String::new();
            file.read_to_string(&mut text)?;
            serde_json::from_str(&text).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SimState::default()),
        Err(e) => Err(e),
    }
}

/// Files of the simulated cloud are this user's alone (0600).
fn private(options: &mut OpenOptions) -> &mut OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    options.mode(0o600)
}

/// The folder of `path`, made this user's alone (0700) when it is made.
fn private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir),
        None => Ok(()),
    }
}

/// Runs `f` on a copy of the state in `path`, read under a shared lock; nothing is written.
pub fn read_file<T>(path: &Path, f: impl FnOnce(&mut SimState) -> T) -> std::io::Result<T> {
    private_dir(path)?;
    let lock =
        private(OpenOptions::new().create(true).truncate(false).write(true)).open(path.with_extension("lock"))?;
    lock.lock_shared()?;
    let out = f(&mut read(path)?);
    lock.unlock()?;
    Ok(out)
}

/// Runs `f` on the state in `path` under an exclusive lock, writing it back atomically.
pub fn with_file<T>(path: &Path, f: impl FnOnce(&mut SimState) -> T) -> std::io::Result<T> {
    private_dir(path)?;
    let lock_path = path.with_extension("lock");
    let lock = private(OpenOptions::new().create(true).truncate(false).write(true)).open(&lock_path)?;
    lock.lock()?;
    let mut state = read(path)?;
    let out = f(&mut state);
    let tmp = path.with_extension("tmp");
    {
        let mut file = private(OpenOptions::new().write(true).create(true).truncate(true)).open(&tmp)?;
        file.write_all(&serde_json::to_vec(&state).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    lock.unlock()?;
    Ok(out)
}
