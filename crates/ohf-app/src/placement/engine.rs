//! The application's side of routing: workloads resolved against the catalog, decisions made
//! under the routing lease with every open hold counted, bookings advanced, unhealthy
//! placements rechecked, and the machines of placed workloads launched when asked.

use std::collections::BTreeSet;

use ohf_domain::{DomainError, MachineCount, PriceType, Template};
use ohf_placement::assess::Criteria;
use ohf_placement::{Day, Demand, Hold, Mode, RouteInput, RouteOutcome, Scope, SensorType, Strategies, Workload};

use super::{Disk, RoutedWorkload, RoutingRequest, RoutingStatus, WorkloadStatus, disk_needs};
use crate::commands::{RequestMachines, RouteRequest, WorkloadSpec};
use crate::{App, AppError};

/// The reason a forced request carries, in the seed's words.
pub const FORCED: &str = "Force to place";
/// Most workloads in one routing request.
pub const MAX_WORKLOADS: usize = 100;

fn invalid(field: &str, message: impl Into<String>) -> AppError {
    DomainError::validation(field, message).into()
}

impl App {
    /// The price table as the router reads it: spot prices as the table's `hourly` gives them
    /// (its spot price, else its share of on-demand), so placement and reports price alike.
    pub(crate) fn price_list(&self) -> std::sync::Arc<ohf_placement::Prices> {
        self.price_list
            .get_or_init(|| {
                let table = &self.settings.prices;
                let spot = table
                    .on_demand
                    .keys()
                    .chain(table.spot.keys())
                    .filter_map(|t| Some((t.clone(), table.hourly(t, PriceType::Spot)?)))
                    .collect();
                std::sync::Arc::new(ohf_placement::Prices { on_demand: table.on_demand.clone(), spot })
            })
            .clone()
    }

    /// What a decision weighs: the request's mode, strategies and required sensors, over the
    /// configured strategies and the price table.
    fn criteria(&self, mode: Mode, strategies: Strategies, required: BTreeSet<SensorType>, force: bool) -> Criteria {
        Criteria {
            mode,
            strategies,
            default_strategies: Strategies::parse(&self.settings.routing.sensor_placement_strategy).0,
            required_sensors: required,
            force,
            prices: self.price_list(),
        }
    }

    /// The criteria a stored request was routed under (never forced again).
    fn criteria_of(&self, request: &RoutingRequest) -> Criteria {
        let strategies = Strategies::parse(&request.sensor_placement_strategy).0;
        self.criteria(request.mode, strategies, request.required_sensor_types.iter().copied().collect(), false)
    }

    /// Today, as the placement timeline counts days.
    pub(crate) fn today(&self) -> Day {
        Day::of_millis(self.clock.now().unix_millis())
    }

    /// What `count` machines of `template` need under `profile`, with `disks` (the template's
    /// root volume when none are given).
    pub(crate) fn demand_of(
        &self,
        template: &Template,
        count: u32,
        profile: Option<&str>,
        disks: &[Disk],
    ) -> Result<(Demand, Vec<Disk>), AppError> {
        let share = match profile {
            None => super::Profile { cpu: 1.0, memory: 1.0 },
            Some(name) => self.settings.routing.profile(name).ok_or_else(|| {
                invalid(
                    "workload_profile",
                    format!("'{name}' is not a profile; known: {}", self.settings.routing.profile_names().join(", ")),
                )
            })?,
        };
        let instance_type = template.primary_vm_type().unwrap_or_default().to_owned();
        let attribute = |name: &str| {
            template.attributes().get(name).and_then(|a| a.value.trim().parse::<f64>().ok()).unwrap_or(0.0)
        };
        let (vcpus, memory) = match ohf_domain::instance_types::lookup(&instance_type) {
            Some(info) => (f64::from(info.vcpus), info.memory_mib as f64),
            None => (attribute("ncpus"), attribute("nram")),
        };
        let disks: Vec<Disk> = if disks.is_empty() {
            template
                .root_device_volume_size()
                .map(|size| Disk {
                    size_gb: u64::from(size),
                    volume_type: template.volume_type().map(String::from),
                    pref_datastore: None,
                })
                .into_iter()
                .collect()
        } else {
            disks.to_vec()
        };
        let total = |each: f64, share: f64| (each * share * f64::from(count)).ceil() as u64;
        let demand = Demand {
            instance_type,
            count,
            vcpus: total(vcpus, share.cpu),
            memory_mib: total(memory, share.memory),
            spot: template.price_type() == PriceType::Spot,
            disks: disk_needs(&disks, count),
        };
        Ok((demand, disks))
    }

    /// Validates and routes a routing request: placed or booked as one, or kept REJECTED
    /// with a reason per workload. Machines of placed workloads are launched when asked.
    pub(crate) async fn route_request(&self, cmd: RouteRequest) -> Result<RoutingRequest, AppError> {
        let today = self.today();
        let routing = &self.settings.routing;
        let requester = ohf_domain::check_requester(cmd.requester.as_deref())?.unwrap_or_else(|| "anonymous".into());
        if cmd.workloads.is_empty() || cmd.workloads.len() > MAX_WORKLOADS {
            return Err(invalid("workloads", format!("1 to {MAX_WORKLOADS} workloads")));
        }
        // A date already past is due now, as the seed treats a booking whose day has passed.
        let day = cmd.expected_date.map_or(today, Day::of_millis).max(today);
        if day > today.plus(i64::from(routing.horizon_days)) {
            return Err(invalid("expected_date", format!("is more than {} days ahead", routing.horizon_days)));
        }
        let mode = match cmd.mode.as_deref() {
            None => routing.default_mode,
            Some(m) => Mode::parse(m).ok_or_else(|| {
                invalid("mode", format!("'{m}' is not capacity_sensitive, cost_sensitive or cost_and_capacity"))
            })?,
        };
        let mut required: BTreeSet<SensorType> = routing.required_sensor_types.iter().copied().collect();
        for name in &cmd.required_sensor_types {
            let sensor = SensorType::parse(name).ok_or_else(|| {
                invalid("required_sensor_types", format!("'{name}' is not cpu, memory, ipaddresspools or datastore"))
            })?;
            required.insert(sensor);
        }
        let (strategies, ignored) = Strategies::parse(&cmd.sensor_placement_strategy);
        if !ignored.is_empty() {
            tracing::info!(ignored = ?ignored, "sensor placement strategies ignored: the default applies");
        }
        if cmd.force && !names_group(&cmd.scopes) {
            return Err(invalid("force", "needs scopes that name the infrastructure group to place in"));
        }

        let state = self.routing_state().await?;
        let decided = self.decide(&state, &cmd, day, today, mode, &required, &strategies, &requester).await;
        state.release().await;
        let request = decided?;
        self.provision_placed(request).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn decide(
        &self,
        state: &super::RoutingState<'_>,
        cmd: &RouteRequest,
        day: Day,
        today: Day,
        mode: Mode,
        required: &BTreeSet<SensorType>,
        strategies: &Strategies,
        requester: &str,
    ) -> Result<RoutingRequest, AppError> {
        let mut workloads = Vec::with_capacity(cmd.workloads.len());
        let mut reused = Vec::new();
        for (i, spec) in cmd.workloads.iter().enumerate() {
            let w = self.resolve_workload(state, spec, i, day, today).await?;
            if spec.id.is_some() {
                reused.push(w.id.clone());
            }
            workloads.push(w);
        }
        let mut names = BTreeSet::new();
        if let Some(w) = workloads.iter().find(|w| !names.insert(w.id.clone())) {
            return Err(invalid("workloads", format!("workload '{}' is named twice", w.id)));
        }
        let venues = self.venues_now().await?;
        let ledger = state.ledger().await?;
        let router_workloads: Vec<Workload> = workloads.iter().map(RoutedWorkload::to_workload).collect();
        let rank = self.provider_rank().await;
        let criteria = self.criteria(mode, strategies.clone(), required.clone(), cmd.force);
        let outcome = ohf_placement::route(&RouteInput {
            venues: &venues,
            holds: &[],
            workloads: &router_workloads,
            criteria,
            scopes: &cmd.scopes,
            provider_rank: &rank,
            base: Some(ledger),
        });
        let now = self.clock.now().unix_millis();
        let mut request = RoutingRequest {
            id: uuid::Uuid::new_v4().to_string(),
            status: RoutingStatus::Rejected,
            status_reason: None,
            expected_day: day,
            requester: requester.to_owned(),
            created_at: now,
            updated_at: now,
            mode,
            scopes: cmd.scopes.clone(),
            sensor_placement_strategy: cmd.sensor_placement_strategy.clone(),
            required_sensor_types: required.iter().copied().collect(),
            force: cmd.force,
            provision: cmd.provision,
            for_request: None,
            workloads,
        };
        match outcome {
            RouteOutcome::Placed(placements) => {
                let forced = placements.iter().any(|p| p.forced);
                for (w, p) in request.workloads.iter_mut().zip(placements) {
                    w.status = if w.expected_day <= today { WorkloadStatus::Placed } else { WorkloadStatus::Booked };
                    w.status_reason = p.forced.then(|| FORCED.to_owned());
                    w.placement = Some(p);
                }
                request.status = if day <= today { RoutingStatus::Placed } else { RoutingStatus::Booked };
                request.status_reason = forced.then(|| FORCED.to_owned());
                state.put_new(&request).await?;
                for id in reused {
                    state.forget_unrouted(&id).await?;
                }
                tracing::info!(routing_request = %request.id, status = request.status.as_str(), "routing request placed");
            }
            RouteOutcome::Rejected(refusals) => {
                let first = refusals.first().map(|r| r.workload.clone()).unwrap_or_default();
                let first_name =
                    request.workloads.iter().find(|w| w.id == first).map_or(first.clone(), |w| w.name.clone());
                for w in &mut request.workloads {
                    w.status = WorkloadStatus::Rejected;
                    w.status_reason = Some(match refusals.iter().find(|r| r.workload == w.id) {
                        Some(r) => r.reason.clone(),
                        None => format!("rejected with its request: workload '{first_name}' cannot be placed"),
                    });
                }
                request.status_reason = Some(format!(
                    "{} of {} workloads cannot be placed or booked (capacity or fit-for-purpose)",
                    refusals.len(),
                    request.workloads.len()
                ));
                state.put_new(&request).await?;
                tracing::info!(routing_request = %request.id, "routing request rejected");
            }
        }
        Ok(request)
    }

    async fn resolve_workload(
        &self,
        state: &super::RoutingState<'_>,
        spec: &WorkloadSpec,
        index: usize,
        day: Day,
        today: Day,
    ) -> Result<RoutedWorkload, AppError> {
        let field = format!("workloads[{index}]");
        if let Some(id) = &spec.id {
            let Some(mut w) = state.take_unrouted(id).await? else {
                return Err(invalid(&field, format!("workload '{id}' is not an unrouted workload")));
            };
            w.expected_day = w.expected_day.max(today).min(day);
            w.status_reason = None;
            w.placement = None;
            w.provision_request = None;
            return Ok(w);
        }
        let name = spec.name.as_deref().map(str::trim).filter(|n| !n.is_empty() && n.len() <= 128);
        let Some(name) = name else { return Err(invalid(&field, "needs a name of 1 to 128 characters")) };
        let Some(spec_id) = spec.catalog_spec.as_deref() else {
            return Err(invalid(&field, "needs a catalog_spec: the template its machines are"));
        };
        let template = self.template(spec_id).await?;
        let count = MachineCount::new(spec.count.unwrap_or(1), self.settings.max_machines_per_request)?.get();
        let own_day = spec.expected_date.map_or(day, Day::of_millis).max(today);
        if own_day > day {
            return Err(invalid(
                "expected_date",
                format!("must be the same as or later than every workload's; workload '{name}' is later"),
            ));
        }
        let (demand, disks) = self.demand_of(&template, count, spec.workload_profile.as_deref(), &spec.disks)?;
        Ok(RoutedWorkload {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.to_owned(),
            catalog_spec: template.id().to_string(),
            workload_profile: spec.workload_profile.clone(),
            count,
            expected_day: own_day,
            disks,
            status: WorkloadStatus::Rejected,
            status_reason: None,
            demand,
            placement: None,
            provision_request: None,
        })
    }

    /// Providers in the order the provider-strategy policy prefers them: its choice first,
    /// then the rest as registered.
    async fn provider_rank(&self) -> Vec<String> {
        let mut rank: Vec<String> = Vec::new();
        if self.registry.slots().len() > 1
            && let Ok(s) =
                self.select_provider(ohf_provider_strategy::OperationType::CreateInstances, None, None, None, &[]).await
        {
            rank.push(s.selected);
        }
        for slot in self.registry.slots() {
            if !rank.contains(&slot.entry.strategy_name) {
                rank.push(slot.entry.strategy_name);
            }
        }
        rank
    }

    /// Turns due bookings PLACED (or EXPIRED after their validity) in every open request, or
    /// only in `only`; launches the machines of those that asked. Answers how many changed.
    pub(crate) async fn advance_routing(&self, only: Option<&str>) -> Result<usize, AppError> {
        let today = self.today();
        let validity = i64::from(self.settings.routing.booking_validity_days);
        let state = self.routing_state().await?;
        let advanced = async {
            let mut changed = Vec::new();
            for mut request in state.open().await? {
                if only.is_some_and(|id| id != request.id) || !advance(&mut request, today, validity) {
                    continue;
                }
                request.updated_at = self.clock.now().unix_millis();
                state.put(&request).await?;
                changed.push(request);
            }
            Ok::<_, AppError>(changed)
        }
        .await;
        state.release().await;
        let changed = advanced?;
        let count = changed.len();
        for request in changed {
            if let Err(e) = self.provision_placed(request).await {
                tracing::warn!(error = %e, "machines of a placed booking not launched; the next pass tries again");
            }
        }
        Ok(count)
    }

    /// Re-places the PLACED workloads of `id` whose full-control venue is unhealthy now.
    pub(crate) async fn recheck_hosts(&self, id: &str) -> Result<(), AppError> {
        let venues = self.venues_now().await?;
        let unhealthy: BTreeSet<&str> =
            venues.iter().filter(|v| v.control.is_full() && !v.healthy).map(|v| v.name.as_str()).collect();
        if unhealthy.is_empty() {
            return Ok(());
        }
        let state = self.routing_state().await?;
        let result = async {
            let open = state.open().await?;
            let Some(mut request) = open.iter().find(|r| r.id == id).cloned() else { return Ok(()) };
            let moving: Vec<usize> = request
                .workloads
                .iter()
                .enumerate()
                .filter(|(_, w)| w.status == WorkloadStatus::Placed)
                .filter(|(_, w)| w.placement.as_ref().is_some_and(|p| unhealthy.contains(p.venue.as_str())))
                .map(|(i, _)| i)
                .collect();
            if moving.is_empty() {
                return Ok(());
            }
            let moving_ref = &moving;
            let holds: Vec<Hold> = open
                .iter()
                .flat_map(|r| {
                    r.workloads
                        .iter()
                        .enumerate()
                        .filter(move |(i, _)| r.id != id || !moving_ref.contains(i))
                        .filter(|(_, w)| w.status.holds())
                        .filter_map(|(_, w)| w.placement.as_ref().map(|p| p.hold.clone()))
                })
                .collect();
            let healthy: Vec<ohf_placement::Venue> =
                venues.iter().filter(|v| !unhealthy.contains(v.name.as_str())).cloned().collect();
            for i in moving {
                let w = &request.workloads[i];
                let from = w.placement.as_ref().map(|p| p.venue.clone()).unwrap_or_default();
                let mut workload = w.to_workload();
                workload.day = workload.day.max(self.today());
                let outcome = ohf_placement::route(&RouteInput {
                    venues: &healthy,
                    holds: &holds,
                    workloads: std::slice::from_ref(&workload),
                    criteria: self.criteria_of(&request),
                    scopes: &request.scopes,
                    provider_rank: &[],
                    base: None,
                });
                let w = &mut request.workloads[i];
                match outcome {
                    RouteOutcome::Placed(mut p) if !p.is_empty() => {
                        let p = p.remove(0);
                        w.status_reason = Some(format!("rechecked: moved from '{from}', which is unhealthy"));
                        w.placement = Some(p);
                    }
                    _ => w.status_reason = Some(format!("rechecked: '{from}' is unhealthy and no healthy venue fits")),
                }
            }
            request.updated_at = self.clock.now().unix_millis();
            state.put(&request).await
        }
        .await;
        state.release().await;
        result
    }

    /// Launches the machines of the placed workloads of a request that asked for it, once
    /// each (the provision request's id comes from the workload's), and records their ids.
    pub(crate) async fn provision_placed(&self, request: RoutingRequest) -> Result<RoutingRequest, AppError> {
        if !request.provision || request.status != RoutingStatus::Placed {
            return Ok(request);
        }
        let mut launched = Vec::new();
        for w in
            request.workloads.iter().filter(|w| w.status == WorkloadStatus::Placed && w.provision_request.is_none())
        {
            let Some(p) = &w.placement else { continue };
            let mut metadata = std::collections::BTreeMap::new();
            metadata.insert("routing_request".to_owned(), serde_json::Value::String(request.id.clone()));
            metadata.insert("workload".to_owned(), serde_json::Value::String(w.name.clone()));
            let made = self
                .execute(RequestMachines {
                    template_id: w.catalog_spec.clone(),
                    count: i64::from(w.count),
                    request_id: Some(format!("route-{}", w.id)),
                    provider: Some(p.provider.clone()),
                    zones: p.zone.clone().into_iter().collect(),
                    requester: Some(request.requester.clone()),
                    metadata,
                    ..RequestMachines::default()
                })
                .await?;
            launched.push((w.id.clone(), made.id().to_string()));
        }
        if launched.is_empty() {
            return Ok(request);
        }
        let state = self.routing_state().await?;
        let recorded = async {
            let Some(mut current) = state.open().await?.into_iter().find(|r| r.id == request.id) else {
                return Ok(request.clone());
            };
            for (workload, provision) in &launched {
                if let Some(w) = current.workloads.iter_mut().find(|w| &w.id == workload) {
                    w.provision_request = Some(provision.clone());
                }
            }
            state.put(&current).await?;
            Ok(current)
        }
        .await;
        state.release().await;
        recorded
    }

    /// Unroutes a whole request, or one of its workloads; `record_placement` keeps each disk's
    /// datastore as its preferred one (when none of the workload's disks has one yet).
    /// Answers the request as it remains, `None` when it is gone.
    pub(crate) async fn unroute(
        &self,
        id: &str,
        workload: Option<&str>,
        record_placement: bool,
    ) -> Result<Option<RoutingRequest>, AppError> {
        let state = self.routing_state().await?;
        let result = async {
            let Some(mut request) = self.routing_request(id).await? else {
                return Err(DomainError::RequestNotFound { request_id: id.to_owned() }.into());
            };
            let taken: Vec<RoutedWorkload> = match workload {
                None => std::mem::take(&mut request.workloads),
                Some(wid) => {
                    let Some(i) = request.workloads.iter().position(|w| w.id == wid) else {
                        let owner = self
                            .routing_requests(true)
                            .await?
                            .into_iter()
                            .find(|r| r.workloads.iter().any(|w| w.id == wid));
                        return Err(match owner {
                            Some(other) => invalid(
                                "workload_id",
                                format!("workload '{wid}' belongs to routing request '{}', not '{id}'", other.id),
                            ),
                            None => DomainError::RequestNotFound { request_id: format!("{id}/{wid}") }.into(),
                        });
                    };
                    vec![request.workloads.remove(i)]
                }
            };
            for mut w in taken {
                if record_placement && w.disks.iter().all(|d| d.pref_datastore.is_none()) {
                    let stores = w.placement.as_ref().map(|p| p.datastores.clone()).unwrap_or_default();
                    for (disk, store) in w.disks.iter_mut().zip(stores) {
                        disk.pref_datastore = Some(store);
                    }
                }
                w.status = WorkloadStatus::Unrouted;
                state.keep_unrouted(&w).await?;
            }
            if request.workloads.is_empty() {
                state.delete(id).await?;
                tracing::info!(routing_request = %id, "routing request deleted");
                return Ok(None);
            }
            request.updated_at = self.clock.now().unix_millis();
            state.put(&request).await?;
            Ok(Some(request))
        }
        .await;
        state.release().await;
        result
    }
}

/// Where a provision request's machines go, as the placement decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestPlacement {
    /// The venue's provider.
    pub provider: String,
    /// The venue's zone.
    pub zone: Option<String>,
}

impl App {
    /// Whether provision requests are placed: venues are configured.
    pub fn places_requests(&self) -> bool {
        !self.settings.routing.venues.is_empty()
    }

    /// Places a provision request as one workload of `count` machines of `template` for today;
    /// its hold lasts until the request holds no machines. Refused with INSUFFICIENT_CAPACITY,
    /// naming why each venue would not do, when no venue fits. The hold's record is answered
    /// to be stored with the request ([`App::settle`] after).
    pub(crate) async fn place_request(
        &self,
        request: &str,
        template: &Template,
        count: u32,
        requester: Option<&str>,
    ) -> Result<(RequestPlacement, super::PendingHold<'_>), AppError> {
        let today = self.today();
        let (demand, disks) = self.demand_of(template, count, None, &[])?;
        let workload = RoutedWorkload {
            id: format!("{request}-w"),
            name: request.to_owned(),
            catalog_spec: template.id().to_string(),
            workload_profile: None,
            count,
            expected_day: today,
            disks,
            status: WorkloadStatus::Placed,
            status_reason: None,
            demand,
            placement: None,
            provision_request: Some(request.to_owned()),
        };
        // The venues and the providers' order are read before the lease: only what is held
        // needs it, so concurrent callers read these side by side (and the lease waits for
        // them, within a burst).
        let coming = self.routing.coming();
        let venues = self.venues_for_placement().await?;
        let rank = self.provider_rank().await;
        let state = self.routing_state().await;
        drop(coming);
        let state = state?;
        let decided = async {
            let ledger = state.ledger().await?;
            let routing = &self.settings.routing;
            let required = routing.required_sensor_types.iter().copied().collect();
            let criteria = self.criteria(routing.default_mode, Strategies::default(), required, false);
            let outcome = ohf_placement::route(&RouteInput {
                venues: &venues,
                holds: &[],
                workloads: std::slice::from_ref(&workload.to_workload()),
                criteria,
                scopes: &[],
                provider_rank: &rank,
                base: Some(ledger),
            });
            let placement = match outcome {
                RouteOutcome::Placed(mut p) if !p.is_empty() => p.remove(0),
                RouteOutcome::Placed(_) => return Err(invalid("placement", "no workload was placed")),
                RouteOutcome::Rejected(refusals) => {
                    let reason = refusals.into_iter().map(|r| r.reason).collect::<Vec<_>>().join("; ");
                    return Err(DomainError::InsufficientCapacity {
                        requested: count,
                        available: 0,
                        template_id: Some(format!("{} (no venue fits: {reason})", template.id())),
                        instance_type: template.primary_vm_type().map(String::from),
                        region: None,
                    }
                    .into());
                }
            };
            let answer = RequestPlacement { provider: placement.provider.clone(), zone: placement.zone.clone() };
            let now = self.clock.now().unix_millis();
            let record = RoutingRequest {
                id: request_key(request),
                status: RoutingStatus::Placed,
                status_reason: None,
                expected_day: today,
                requester: requester.unwrap_or("anonymous").to_owned(),
                created_at: now,
                updated_at: now,
                mode: routing.default_mode,
                scopes: Vec::new(),
                sensor_placement_strategy: Vec::new(),
                required_sensor_types: Vec::new(),
                force: false,
                provision: false,
                for_request: Some(request.to_owned()),
                workloads: vec![RoutedWorkload { placement: Some(placement), ..workload.clone() }],
            };
            Ok((answer, state.hold_new(&record)?))
        }
        .await;
        state.release().await;
        decided
    }

    /// How many more machines of each of `templates` fit across the healthy venues today;
    /// `None`: no limit known (a venue without quotas, or no venues configured). The venues
    /// and what is held are read once for all of them.
    pub(crate) async fn placement_fits(&self, templates: &[&Template]) -> Result<Vec<Option<u32>>, AppError> {
        if !self.places_requests() {
            return Ok(vec![None; templates.len()]);
        }
        let venues = self.venues_now().await?;
        let open = self.routing_requests(false).await?;
        let ledger = ohf_placement::Ledger::new(open.iter().flat_map(RoutingRequest::holds));
        let today = self.today();
        let mut all = Vec::with_capacity(templates.len());
        for template in templates {
            let (one, _) = self.demand_of(template, 1, None, &[])?;
            let mut total: Option<u64> = Some(0);
            for (venue, n) in ohf_placement::available_in(&venues, &ledger, &one, today) {
                if !venues.iter().any(|v| v.name == venue && v.healthy) {
                    continue;
                }
                total = match (total, n) {
                    (Some(t), Some(n)) => Some(t.saturating_add(n)),
                    _ => None,
                };
            }
            all.push(total.map(|t| u32::try_from(t).unwrap_or(u32::MAX)));
        }
        Ok(all)
    }

    /// The daemon's placement pass: due bookings move on (PLACED, or EXPIRED after their
    /// validity; machines launched where asked), and provision requests that hold no machines
    /// any more give their venues back. Answers how many of each.
    pub async fn tend_placements(&self) -> Result<(usize, usize), AppError> {
        let advanced = self.advance_routing(None).await?;
        let released = self.release_finished_placements().await?;
        Ok((advanced, released))
    }

    /// Releases the placements of provision requests that ended without machines or whose
    /// machines are all gone. Answers how many.
    async fn release_finished_placements(&self) -> Result<usize, AppError> {
        let open = self.routing_requests(false).await?;
        let placed: Vec<&str> = open.iter().filter_map(|r| r.for_request.as_deref()).collect();
        if placed.is_empty() {
            return Ok(0);
        }
        // One read of every placed request, then one lease for every release.
        let ids: Vec<ohf_domain::RequestId> =
            placed.iter().filter_map(|id| ohf_domain::RequestId::new(*id).ok()).collect();
        let holding: BTreeSet<String> = self
            .store
            .get_many(&ids)
            .await?
            .into_iter()
            .filter(|r| r.capacity_held() > 0)
            .map(|r| r.id().to_string())
            .collect();
        let finished: Vec<&str> = placed.into_iter().filter(|id| !holding.contains(*id)).collect();
        if finished.is_empty() {
            return Ok(0);
        }
        let state = self.routing_state().await?;
        let released = async {
            for id in &finished {
                state.delete(&request_key(id)).await?;
            }
            Ok(finished.len())
        }
        .await;
        state.release().await;
        released
    }
}

impl App {
    /// The provider of the best venue for a placed request among providers it has not tried;
    /// `None` when it is not placed or no such venue fits.
    pub(crate) async fn next_venue_provider(
        &self,
        request: &ohf_domain::Request,
        tried: &[ohf_domain::ProviderName],
    ) -> Option<String> {
        if !self.places_requests() {
            return None;
        }
        let record = self.routing_request(&request_key(request.id().as_str())).await.ok()??;
        let workload = record.workloads.first()?;
        let venues: Vec<ohf_placement::Venue> = self
            .venues_now()
            .await
            .ok()?
            .iter()
            .filter(|v| !tried.iter().any(|t| t.as_str() == v.provider))
            .cloned()
            .collect();
        let open = self.routing_requests(false).await.ok()?;
        let holds: Vec<Hold> =
            open.iter().filter(|r| r.id != record.id).flat_map(RoutingRequest::holds).cloned().collect();
        let outcome = ohf_placement::route(&RouteInput {
            venues: &venues,
            holds: &holds,
            workloads: std::slice::from_ref(&workload.to_workload()),
            criteria: self.criteria_of(&record),
            scopes: &[],
            provider_rank: &[],
            base: None,
        });
        match outcome {
            RouteOutcome::Placed(p) => p.first().map(|p| p.provider.clone()),
            RouteOutcome::Rejected(_) => None,
        }
    }

    /// The zones a launch of `request` asks for. A placed request that failed over to another
    /// provider moves its hold to the best venue of that provider first and launches in its
    /// zone (in any zone when none of its venues fits; the old hold then stays).
    pub(crate) async fn launch_zones(&self, request: &ohf_domain::Request) -> Vec<String> {
        let asked = request.zones().to_vec();
        if !self.places_requests() {
            return asked;
        }
        // Only a request that failed over (it tried another provider) launches anywhere but
        // where it was placed.
        if request.providers_tried().iter().all(|p| Some(p) == request.provider()) {
            return asked;
        }
        let Some(provider) = request.provider().map(|p| p.to_string()) else { return asked };
        let key = request_key(request.id().as_str());
        let Ok(Some(record)) = self.routing_request(&key).await else { return asked };
        let placed_on = record.workloads.first().and_then(|w| w.placement.as_ref()).map(|p| p.provider.clone());
        if placed_on.as_deref() == Some(provider.as_str()) {
            return asked;
        }
        match self.move_placement(&key, &provider).await {
            Ok(Some(zone)) => zone.into_iter().collect(),
            Ok(None) => Vec::new(),
            Err(e) => {
                tracing::warn!(request_id = %request.id(), error = %e, "placement not moved after failover");
                Vec::new()
            }
        }
    }

    /// Moves a request's placement to the best venue of `provider`: its zone, or `None` when
    /// none fits (the old placement is kept, with why).
    async fn move_placement(&self, key: &str, provider: &str) -> Result<Option<Option<String>>, AppError> {
        let state = self.routing_state().await?;
        let moved = async {
            let open = state.open().await?;
            let Some(mut record) = open.iter().find(|r| r.id == key).cloned() else { return Ok(None) };
            let holds: Vec<Hold> =
                open.iter().filter(|r| r.id != key).flat_map(RoutingRequest::holds).cloned().collect();
            let venues: Vec<ohf_placement::Venue> =
                self.venues_now().await?.iter().filter(|v| v.provider == provider).cloned().collect();
            let criteria = self.criteria_of(&record);
            let Some(w) = record.workloads.first_mut() else { return Ok(None) };
            let from = w.placement.as_ref().map(|p| p.venue.clone()).unwrap_or_default();
            let outcome = ohf_placement::route(&RouteInput {
                venues: &venues,
                holds: &holds,
                workloads: std::slice::from_ref(&w.to_workload()),
                criteria,
                scopes: &[],
                provider_rank: &[],
                base: None,
            });
            let zone = match outcome {
                RouteOutcome::Placed(mut p) if !p.is_empty() => {
                    let p = p.remove(0);
                    let zone = p.zone.clone();
                    w.status_reason = Some(format!("failed over from '{from}' to '{}'", p.venue));
                    w.placement = Some(p);
                    Some(zone)
                }
                _ => {
                    w.status_reason =
                        Some(format!("failed over to {provider}, where no venue fits; '{from}' stays held"));
                    None
                }
            };
            record.updated_at = self.clock.now().unix_millis();
            state.put(&record).await?;
            Ok(zone)
        }
        .await;
        state.release().await;
        moved
    }
}

/// The routing record of a provision request.
fn request_key(request: &str) -> String {
    format!("request-{request}")
}

/// Moves a request's due bookings on: PLACED on or after their day within `validity` days,
/// EXPIRED after. Answers whether anything changed.
pub(crate) fn advance(request: &mut RoutingRequest, today: Day, validity: i64) -> bool {
    let mut changed = false;
    for w in request.workloads.iter_mut().filter(|w| w.status == WorkloadStatus::Booked) {
        if w.expected_day > today {
            continue;
        }
        if today < w.expected_day.plus(validity) {
            w.status = WorkloadStatus::Placed;
        } else {
            w.status = WorkloadStatus::Expired;
            w.status_reason = Some(format!("the booking was not used within {validity} day(s) of its date"));
        }
        changed = true;
    }
    if request.status == RoutingStatus::Booked && request.expected_day <= today {
        let live = request.workloads.iter().any(|w| w.status.holds());
        request.status = if live { RoutingStatus::Placed } else { RoutingStatus::Expired };
        if !live {
            request.status_reason = Some("its bookings were not used in time".into());
        }
        changed = true;
    }
    changed
}

/// Whether a scope list names an infrastructure group (what force needs).
pub(crate) fn names_group(scopes: &[Scope]) -> bool {
    scopes.iter().any(|s| !s.infrastructure_groups.is_empty())
}
