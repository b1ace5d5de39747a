//! The venues a decision sees: configured (or one per provider), with what the last
//! recalculation measured, the sensors being recalculated now, provider health and prices.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use ohf_domain::RequestId;
use ohf_placement::{SensorType, Subnet, Venue};
use serde::{Deserialize, Serialize};

pub use crate::ports::VenueReading;
use crate::ports::{CloudProvider, VenueQuery};
use crate::{App, AppError, keys};

/// What an assembled view of the venues was made from: the readings' and marks' keys with
/// their versions, and each provider's health.
#[derive(Debug, PartialEq)]
pub(crate) struct ViewInputs {
    readings: Vec<(String, i64)>,
    marks: Vec<(String, i64)>,
    health: std::collections::BTreeMap<String, bool>,
}

/// The last view of the venues a decision saw.
pub(crate) struct VenueView {
    /// What it was made from.
    inputs: ViewInputs,
    /// Until when it holds (a mark lapses then).
    valid_until: i64,
    venues: Arc<Vec<Venue>>,
    /// When what it is made from was last read.
    read: std::time::Instant,
}

/// How old a view a burst of placements may use without reading the venues again.
const BURST_VIEW: std::time::Duration = std::time::Duration::from_millis(250);

/// A recalculation under way: the sensors whose data is being replaced, until when.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Refreshing {
    sensors: BTreeSet<SensorType>,
    until: i64,
}

/// How long a recalculation may mark a venue before the mark lapses on its own.
const REFRESH_MARK_MS: i64 = 60_000;

impl App {
    /// The configured venues, or one venue without limits per provider.
    pub(crate) fn venue_specs(&self) -> Vec<Venue> {
        let configured = &self.settings.routing.venues;
        if !configured.is_empty() {
            return configured.clone();
        }
        self.registry
            .slots()
            .into_iter()
            .filter(|s| s.entry.enabled)
            .map(|s| Venue::unlimited(&s.entry.strategy_name, "default", &s.entry.strategy_name))
            .collect()
    }

    /// The venues as a provision request's placement sees them: within a burst of this
    /// process's decisions (it keeps the lease), as read at most 250 ms ago; else as now.
    pub(crate) async fn venues_for_placement(&self) -> Result<Arc<Vec<Venue>>, AppError> {
        if self.routing.bursting.load(std::sync::atomic::Ordering::SeqCst)
            && let Ok(view) = self.venue_view.lock()
            && let Some(view) = view.as_ref()
            && view.read.elapsed() < BURST_VIEW
            && self.clock.now().unix_millis() < view.valid_until
        {
            return Ok(view.venues.clone());
        }
        self.venues_now().await
    }

    /// The venues as a decision sees them now: assembled again only when the health, the
    /// readings or the marks they are made from changed (or a mark lapsed) since the last.
    pub(crate) async fn venues_now(&self) -> Result<Arc<Vec<Venue>>, AppError> {
        let now = self.clock.now().unix_millis();
        // One read for the providers' health and every venue's reading and marks.
        let mut lists = self
            .store
            .list_shared_many(&[keys::HEALTH, keys::BREAKERS, keys::VENUE_READING, keys::VENUE_REFRESH])
            .await?
            .into_iter();
        let mut next = || lists.next().unwrap_or_default();
        let (health, breakers, readings, marks) = (next(), next(), next(), next());
        let health = self.health_verdicts(health, breakers);
        let versions = |entries: &[(String, String, i64)]| -> Vec<(String, i64)> {
            entries.iter().map(|(k, _, v)| (k.clone(), *v)).collect()
        };
        let inputs = ViewInputs { readings: versions(&readings), marks: versions(&marks), health };
        if self.places_requests()
            && let Ok(mut view) = self.venue_view.lock()
            && let Some(view) = view.as_mut()
            && view.inputs == inputs
            && now < view.valid_until
        {
            view.read = std::time::Instant::now();
            return Ok(view.venues.clone());
        }
        let mut valid_until = i64::MAX;
        let mut venues = self.venue_specs();
        let by_venue = |entries: Vec<(String, String, i64)>, prefix: &str| -> HashMap<String, String> {
            entries.into_iter().map(|(k, v, _)| (k.trim_start_matches(prefix).to_owned(), v)).collect()
        };
        let readings = by_venue(readings, keys::VENUE_READING);
        let marks = by_venue(marks, keys::VENUE_REFRESH);
        for venue in &mut venues {
            if let Some(reading) =
                readings.get(&venue.name).and_then(|raw| serde_json::from_str::<VenueReading>(raw).ok())
            {
                apply_reading(venue, reading);
            }
            if let Some(mark) = marks.get(&venue.name).and_then(|raw| serde_json::from_str::<Refreshing>(raw).ok())
                && mark.until > now
            {
                venue.refreshing.extend(mark.sensors);
                valid_until = valid_until.min(mark.until);
            }
            venue.healthy = venue.healthy && inputs.health.get(&venue.provider).copied().unwrap_or(true);
        }
        let venues = Arc::new(venues);
        if self.places_requests()
            && let Ok(mut view) = self.venue_view.lock()
        {
            *view = Some(VenueView { inputs, valid_until, venues: venues.clone(), read: std::time::Instant::now() });
        }
        Ok(venues)
    }

    /// The seed's sensor recalculation: each full-control venue is marked as being
    /// recalculated (requests that require its sensors skip it), measured by its provider,
    /// and unmarked. Answers each venue with what went wrong, if anything.
    pub async fn refresh_venues(&self) -> Vec<(String, Result<(), String>)> {
        let instance_types: Vec<String> = match self.templates().await {
            Ok((templates, _)) => {
                let mut types: BTreeSet<String> = BTreeSet::new();
                for t in &templates {
                    types.extend(t.vm_types().keys().cloned());
                }
                types.into_iter().collect()
            }
            Err(_) => Vec::new(),
        };
        // Counted before measuring: a machine launched in between is then counted twice
        // (until the next recalculation), never missed.
        let mut held = match self.addresses_held().await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, "addresses held by placements unknown; the measured ones count alone");
                HashMap::new()
            }
        };
        let mut outcome = Vec::new();
        for venue in self.venue_specs().into_iter().filter(|v| v.control.is_full()) {
            let held = held.remove(&venue.name).unwrap_or_default();
            let result = self.refresh_venue(&venue, &instance_types, held).await;
            if let Err(e) = &result {
                tracing::warn!(venue = %venue.name, error = %e, "venue recalculation failed; its last reading stays");
            }
            outcome.push((venue.name, result));
        }
        if let Ok(mut view) = self.venue_view.lock() {
            *view = None;
        }
        outcome
    }

    /// Per venue and subnet, the addresses that machines of held placements take now: the
    /// machines each placed provision request holds, at most its hold.
    async fn addresses_held(&self) -> Result<HashMap<String, BTreeMap<String, u64>>, AppError> {
        let open = self.routing_requests(false).await?;
        let placed: Vec<(&str, &ohf_placement::Hold)> = open
            .iter()
            .flat_map(|r| &r.workloads)
            .filter(|w| w.status.holds())
            .filter_map(|w| Some((w.provision_request.as_deref()?, &w.placement.as_ref()?.hold)))
            .filter(|(_, hold)| hold.subnet.is_some())
            .collect();
        if placed.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<RequestId> = placed.iter().filter_map(|(id, _)| RequestId::new(*id).ok()).collect();
        let machines: HashMap<String, u64> = self
            .store
            .get_many(&ids)
            .await?
            .iter()
            .map(|r| (r.id().to_string(), r.machines().iter().filter(|m| m.is_held()).count() as u64))
            .collect();
        let mut held: HashMap<String, BTreeMap<String, u64>> = HashMap::new();
        for (id, hold) in placed {
            let (Some(subnet), Some(n)) = (&hold.subnet, machines.get(id)) else { continue };
            *held.entry(hold.venue.clone()).or_default().entry(subnet.clone()).or_default() += (*n).min(hold.ips);
        }
        Ok(held)
    }

    async fn refresh_venue(
        &self,
        venue: &Venue,
        instance_types: &[String],
        held_addresses: BTreeMap<String, u64>,
    ) -> Result<(), String> {
        let Some(slot) = self.registry.slot(&venue.provider) else {
            return Err(format!("provider '{}' is not registered", venue.provider));
        };
        let mark_key = format!("{}{}", keys::VENUE_REFRESH, venue.name);
        let mark = Refreshing {
            sensors: SensorType::ALL.into_iter().collect(),
            until: self.clock.now().unix_millis() + REFRESH_MARK_MS,
        };
        let marked = crate::shared::put(&*self.store, &mark_key, &mark).await;
        let query = VenueQuery {
            zone: venue.zone.clone(),
            subnets: venue.subnets.iter().map(|s| s.id.clone()).collect(),
            instance_types: instance_types.to_vec(),
        };
        let measured = slot.provider.measure_venue(&query).await;
        let result = match measured {
            Ok(mut reading) => {
                reading.measured_at = self.clock.now().unix_millis();
                reading.held_addresses = held_addresses;
                let key = format!("{}{}", keys::VENUE_READING, venue.name);
                crate::shared::put(&*self.store, &key, &reading).await.map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        if marked.is_ok() {
            let done = Refreshing { sensors: BTreeSet::new(), until: 0 };
            if let Err(e) = crate::shared::put(&*self.store, &mark_key, &done).await {
                tracing::warn!(venue = %venue.name, error = %e, "the recalculation mark stays until it lapses");
            }
        }
        result
    }
}

/// Lays a reading over a venue's configuration: measured free addresses and offerings replace
/// configured ones, measured spot prices join them.
fn apply_reading(venue: &mut Venue, reading: VenueReading) {
    if venue.subnets.is_empty() {
        venue.subnets = reading.subnets;
    } else {
        for subnet in &mut venue.subnets {
            if let Some(Subnet { free_ips: Some(free), .. }) = reading.subnets.iter().find(|s| s.id == subnet.id) {
                subnet.free_ips = Some(*free);
            }
        }
    }
    // What held placements' machines take is counted by the ledger, as held.
    for subnet in &mut venue.subnets {
        if let (Some(free), Some(held)) = (subnet.free_ips.as_mut(), reading.held_addresses.get(&subnet.id)) {
            *free = free.saturating_add(*held);
        }
    }
    if reading.offerings.is_some() {
        venue.offerings = reading.offerings;
    }
    // The account's quota bounds the venue; a configured quota can only lower it.
    if let Some(quota) = reading.vcpu_quota {
        venue.vcpus = Some(venue.vcpus.map_or(quota, |configured| configured.min(quota)));
    }
    venue.spot_prices.extend(reading.spot_prices);
}
