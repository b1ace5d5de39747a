//! Launches that place a cloud request which goes on delivering machines: EC2 Fleet
//! (`request`, `maintain`), Spot Fleet and Auto Scaling groups.
//!
//! The first call places the request (found again by its launch token after a crash) and
//! answers it as `filling`; every later call follows it: lists its instances, tags those it made
//! with the request's tags (fleets of these types cannot tag instances at launch), and answers
//! them, still `filling` until the request holds its count. A heterogeneous template's spot
//! fleet that has not filled by `spotFleetRequestExpiry` is stopped where it stands and the
//! remainder asked for on demand.
//!
//! Returns shrink the owning fleet or group before terminating, so nothing replaces the
//! returned machines, and delete it with its last machine. Before changing a fleet or a group
//! the adapter waits while it is modifying or scaling, and reads every change back.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use aws_sdk_autoscaling::types as asg;
use aws_sdk_ec2::types::{
    AllocationStrategy, BatchState, ExcessCapacityTerminationPolicy, FleetActivityStatus, FleetStateCode, FleetType,
    Instance, LaunchTemplateConfig, LaunchTemplateOverrides, ResourceType, SpotFleetRequestConfigData, Tag,
    TargetCapacitySpecificationRequest,
};
use ohf_app::ports::tag_keys;
use ohf_app::{CloudError, CloudErrorKind, LaunchRequest, LaunchResult, Ownership, Refusal};
use ohf_domain::template::{FleetType as HfFleetType, ProviderApi};
use ohf_domain::{MachineId, PriceType, RequestId, Template};

use crate::AwsProvider;
use crate::errors::translate;
use crate::launch::{self, fleet_strategy, tags};

/// The tag ohf puts on a fleet's instances naming the fleet, for returns.
pub const FLEET_TAG: &str = "ohf:fleet-id";
/// The tags AWS itself puts on the instances of a fleet or a group.
const AWS_FLEET_TAGS: [&str; 2] = ["aws:ec2:fleet-id", "aws:ec2spot:fleet-request-id"];
const AWS_GROUP_TAG: &str = "aws:autoscaling:groupName";

/// How long a change waits for a busy fleet or group, and how often it looks.
const BUSY_WAIT: Duration = Duration::from_secs(120);
const BUSY_POLL: Duration = Duration::from_secs(2);
/// Time kept back from an operation's deadline to answer busy in.
const BUSY_MARGIN: Duration = Duration::from_secs(1);

fn internal(code: &str, message: impl Into<String>) -> CloudError {
    CloudError::new(CloudErrorKind::Internal, code, message)
}

/// Places or follows the cloud request of launch `r`.
pub async fn launch(p: &AwsProvider, r: &LaunchRequest) -> Result<LaunchResult, CloudError> {
    let placed = match &r.following {
        Some(id) => Some(id.clone()),
        None => find(p, r).await?,
    };
    let Some(id) = placed else {
        let id = place(p, r).await?;
        tracing::info!(request_id = %r.request_id, resource = %id, count = r.count, "placed");
        return Ok(LaunchResult { filling: Some(id), ..LaunchResult::default() });
    };
    follow(p, r, &id).await
}

/// The cloud request an earlier call of this launch placed, if any. EC2 also honours the
/// client token; looking first makes a repeated launch safe on any endpoint.
async fn find(p: &AwsProvider, r: &LaunchRequest) -> Result<Option<String>, CloudError> {
    let token = r.token.as_str();
    let has_token =
        |tags: &[Tag]| tags.iter().any(|t| t.key() == Some(tag_keys::LAUNCH_TOKEN) && t.value() == Some(token));
    match r.template.provider_api() {
        ProviderApi::Asg => Ok(group(p, token).await?.map(|_| token.to_owned())),
        ProviderApi::SpotFleet => {
            let mut next = None;
            loop {
                let page = p
                    .ec2("DescribeSpotFleetRequests")
                    .describe_spot_fleet_requests()
                    .set_next_token(next.take())
                    .send()
                    .await
                    .map_err(|e| translate("DescribeSpotFleetRequests", e))?;
                for f in page.spot_fleet_request_configs() {
                    if has_token(f.tags()) && !is_cancelled(f.spot_fleet_request_state()) {
                        return Ok(f.spot_fleet_request_id().map(String::from));
                    }
                }
                match page.next_token() {
                    Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                    _ => return Ok(None),
                }
            }
        }
        _ => {
            let mut next = None;
            loop {
                let page = p
                    .ec2("DescribeFleets")
                    .describe_fleets()
                    .set_next_token(next.take())
                    .send()
                    .await
                    .map_err(|e| translate("DescribeFleets", e))?;
                for f in page.fleets() {
                    if has_token(f.tags()) && !is_deleted(f.fleet_state()) {
                        return Ok(f.fleet_id().map(String::from));
                    }
                }
                match page.next_token() {
                    Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                    _ => return Ok(None),
                }
            }
        }
    }
}

fn is_deleted(state: Option<&FleetStateCode>) -> bool {
    matches!(
        state,
        Some(
            FleetStateCode::Deleted
                | FleetStateCode::DeletedRunning
                | FleetStateCode::DeletedTerminatingInstances
                | FleetStateCode::Failed
        )
    )
}

fn is_cancelled(state: Option<&BatchState>) -> bool {
    matches!(
        state,
        Some(
            BatchState::Cancelled
                | BatchState::CancelledRunning
                | BatchState::CancelledTerminatingInstances
                | BatchState::Failed
        )
    )
}

fn fleet_type(t: &Template) -> FleetType {
    match t.fleet_type() {
        Some(HfFleetType::Maintain) => FleetType::Maintain,
        _ => FleetType::Request,
    }
}

async fn place(p: &AwsProvider, r: &LaunchRequest) -> Result<String, CloudError> {
    match r.template.provider_api() {
        ProviderApi::Asg => place_group(p, r).await,
        ProviderApi::SpotFleet => place_spot_fleet(p, r).await,
        _ => {
            let out = launch::fleet_call(p, r, fleet_type(&r.template))
                .await?
                .tag_specifications(tags(r, ResourceType::Fleet))
                .send()
                .await
                .map_err(|e| translate("CreateFleet", e))?;
            out.fleet_id().map(String::from).ok_or_else(|| internal("NoFleetId", "CreateFleet answered no fleet id"))
        }
    }
}

async fn place_spot_fleet(p: &AwsProvider, r: &LaunchRequest) -> Result<String, CloudError> {
    let t = &r.template;
    let role = match t.fleet_role() {
        Some(role) => role.to_owned(),
        None => {
            return Err(CloudError::new(
                CloudErrorKind::Validation,
                "MissingFleetRole",
                "SpotFleet needs the template's fleetRole: the IAM role that lets Spot Fleet launch instances",
            ));
        }
    };
    let template_id = launch::launch_template(p, r).await?;
    let mut config = LaunchTemplateConfig::builder().launch_template_specification(
        aws_sdk_ec2::types::FleetLaunchTemplateSpecification::builder()
            .launch_template_id(&template_id)
            .version("$Latest")
            .build(),
    );
    for launch::Override { vm, weight, subnet, zone } in launch::overrides(t, &launch::placement(p, r).await?) {
        // Spot Fleet templates name their types (the domain refuses requirements for them).
        let Some(vm) = vm else { continue };
        let mut o = LaunchTemplateOverrides::builder()
            .instance_type(aws_sdk_ec2::types::InstanceType::from(vm.as_str()))
            .weighted_capacity(f64::from(weight))
            .set_subnet_id(subnet)
            .set_availability_zone(zone);
        if let Some(prio) = t.vm_types_priority().get(&vm) {
            o = o.priority(f64::from(*prio));
        }
        config = config.overrides(o.build());
    }
    let total = r.count as i32;
    let strategy = match fleet_strategy(t.allocation_strategy().unwrap_or("priceCapacityOptimized")).as_str() {
        "lowest-price" => AllocationStrategy::LowestPrice,
        "diversified" => AllocationStrategy::Diversified,
        "capacity-optimized" => AllocationStrategy::CapacityOptimized,
        "capacity-optimized-prioritized" => AllocationStrategy::CapacityOptimizedPrioritized,
        _ => AllocationStrategy::PriceCapacityOptimized,
    };
    let data = SpotFleetRequestConfigData::builder()
        .iam_fleet_role(role)
        .target_capacity(total)
        .on_demand_target_capacity(launch::on_demand_share(t, total))
        .allocation_strategy(strategy)
        .r#type(fleet_type(t))
        .client_token(r.token.as_str())
        .set_spot_price(t.max_spot_price().map(|p| p.to_string()))
        .launch_template_configs(config.build())
        .tag_specifications(tags(r, ResourceType::SpotFleetRequest))
        .build();
    let out = p
        .ec2("RequestSpotFleet")
        .request_spot_fleet()
        .spot_fleet_request_config(data)
        .send()
        .await
        .map_err(|e| translate("RequestSpotFleet", e))?;
    out.spot_fleet_request_id()
        .map(String::from)
        .ok_or_else(|| internal("NoSpotFleetRequestId", "RequestSpotFleet answered no request id"))
}

/// A group per launch attempt, named by its token, its instances tagged at launch.
async fn place_group(p: &AwsProvider, r: &LaunchRequest) -> Result<String, CloudError> {
    let t = &r.template;
    let name = r.token.as_str().to_owned();
    let template_id = launch::launch_template(p, r).await?;
    let spec = asg::LaunchTemplateSpecification::builder().launch_template_id(&template_id).version("$Latest").build();
    let total = r.count as i32;
    let mut call = p
        .asg("CreateAutoScalingGroup")
        .create_auto_scaling_group()
        .auto_scaling_group_name(&name)
        .min_size(0)
        .max_size(total)
        .desired_capacity(total);
    let simple =
        t.price_type() == PriceType::Ondemand && t.vm_types().len() <= 1 && t.instance_requirements().is_none();
    if simple {
        call = call.launch_template(spec);
    } else {
        let mut lt = asg::LaunchTemplate::builder().launch_template_specification(spec);
        for (vm, weight) in t.vm_types() {
            lt = lt.overrides(
                asg::LaunchTemplateOverrides::builder().instance_type(vm).weighted_capacity(weight.to_string()).build(),
            );
        }
        if let Some(q) = t.instance_requirements() {
            lt = lt
                .overrides(asg::LaunchTemplateOverrides::builder().instance_requirements(asg_requirements(q)).build());
        }
        let percent = match t.price_type() {
            PriceType::Ondemand => 100,
            PriceType::Spot => 0,
            PriceType::Heterogeneous => t.percent_on_demand().unwrap_or(0) as i32,
        };
        let distribution = asg::InstancesDistribution::builder()
            .on_demand_base_capacity(0)
            .on_demand_percentage_above_base_capacity(percent)
            .spot_allocation_strategy(fleet_strategy(t.allocation_strategy().unwrap_or("priceCapacityOptimized")))
            .set_spot_max_price(t.max_spot_price().map(|p| p.to_string()))
            .build();
        call = call.mixed_instances_policy(
            asg::MixedInstancesPolicy::builder()
                .launch_template(lt.build())
                .instances_distribution(distribution)
                .build(),
        );
    }
    match launch::placement(p, r).await? {
        launch::Placement::Subnets(list) => call = call.vpc_zone_identifier(list.join(",")),
        launch::Placement::Zones(_) => call = call.set_availability_zones(Some(zones(p, r).await?)),
    }
    let token_tag = (tag_keys::LAUNCH_TOKEN, r.token.as_str());
    for (k, v) in r.tags.iter().chain(std::iter::once(token_tag)) {
        let tag = asg::Tag::builder()
            .key(k)
            .value(v)
            .propagate_at_launch(true)
            .resource_id(&name)
            .resource_type("auto-scaling-group")
            .build();
        call = call.tags(tag);
    }
    match call.send().await.map_err(|e| translate("CreateAutoScalingGroup", e)) {
        Ok(_) => Ok(name),
        // Made a moment ago by an earlier try of this launch.
        Err(e) if e.code == "AlreadyExists" => Ok(name),
        Err(e) => Err(e),
    }
}

/// The zones a group without subnets spreads over: the request's, else the region's.
async fn zones(p: &AwsProvider, r: &LaunchRequest) -> Result<Vec<String>, CloudError> {
    if !r.zones.is_empty() {
        return Ok(r.zones.clone());
    }
    launch::region_zones(p).await
}

/// What a placed request looks like now.
struct Placement {
    /// Instances it made that are not gone.
    instances: Vec<String>,
    /// It will launch nothing more (deleted, cancelled, failed, or fulfilled and of type request).
    stopped: bool,
    error: Option<CloudError>,
    /// Since the cloud made it, when the cloud says.
    age: Option<Duration>,
    /// A change is under way (the fleet is `modifying`).
    busy: bool,
    /// The capacity it is asked to hold.
    target: Option<i32>,
    /// The capacity it says it holds, when it says (fleets).
    fulfilled: Option<f64>,
    /// Its own tags: ohf's ownership tags when ohf placed it.
    tags: BTreeMap<String, String>,
}

impl Placement {
    /// Why this fleet or group is not provably `owner`'s and `request`'s; `None` when it is.
    fn disproof(&self, owner: &Ownership, request: &RequestId) -> Option<String> {
        owner.disproof(|k| self.tags.get(k).map(String::as_str), request)
    }
}

fn tag_map<'a>(tags: impl Iterator<Item = (Option<&'a str>, Option<&'a str>)>) -> BTreeMap<String, String> {
    tags.filter_map(|(k, v)| Some((k?.to_owned(), v.unwrap_or_default().to_owned()))).collect()
}

async fn look(p: &AwsProvider, id: &str) -> Result<Option<Placement>, CloudError> {
    if id.starts_with("sfr-") {
        look_spot_fleet(p, id).await
    } else if id.starts_with("fleet-") {
        look_fleet(p, id).await
    } else {
        Ok(group(p, id).await?.as_ref().map(group_placement))
    }
}

fn age(t: &aws_smithy_types::DateTime) -> Duration {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    Duration::from_secs(now.saturating_sub(t.secs()).max(0) as u64)
}

/// A group as a placement, with the instances it lists.
fn group_placement(g: &asg::AutoScalingGroup) -> Placement {
    Placement {
        instances: g.instances().iter().filter_map(|i| i.instance_id().map(String::from)).collect(),
        stopped: false,
        error: None,
        age: g.created_time().map(age),
        busy: false,
        target: g.desired_capacity(),
        fulfilled: None,
        tags: tag_map(g.tags().iter().map(|t| (t.key(), t.value()))),
    }
}

/// An EC2 Fleet as a placement; its instances are listed apart.
fn fleet_placement(f: &aws_sdk_ec2::types::FleetData) -> Placement {
    let id = f.fleet_id().unwrap_or_default();
    let error = f.errors().first().map(|e| {
        let code = e.error_code().unwrap_or("FleetError").to_owned();
        CloudError::new(
            crate::kind_of(&code),
            code,
            format!("EC2 Fleet {id}: {}", e.error_message().unwrap_or_default()),
        )
    });
    Placement {
        instances: Vec::new(),
        stopped: is_deleted(f.fleet_state()) || f.activity_status() == Some(&FleetActivityStatus::Error),
        error,
        age: f.create_time().map(age),
        busy: f.fleet_state() == Some(&FleetStateCode::Modifying),
        target: f.target_capacity_specification().and_then(|t| t.total_target_capacity()),
        fulfilled: f.fulfilled_capacity(),
        tags: tag_map(f.tags().iter().map(|t| (t.key(), t.value()))),
    }
}

/// A Spot Fleet request as a placement; its instances are listed apart.
fn spot_fleet_placement(f: &aws_sdk_ec2::types::SpotFleetRequestConfig) -> Placement {
    let id = f.spot_fleet_request_id().unwrap_or_default();
    let stopped = is_cancelled(f.spot_fleet_request_state())
        || f.activity_status() == Some(&aws_sdk_ec2::types::ActivityStatus::Error);
    let error = stopped.then(|| {
        CloudError::new(CloudErrorKind::Capacity, "SpotFleetError", format!("Spot Fleet {id} stopped before it filled"))
    });
    let config = f.spot_fleet_request_config();
    Placement {
        instances: Vec::new(),
        stopped,
        error,
        age: f.create_time().map(age),
        busy: f.spot_fleet_request_state() == Some(&BatchState::Modifying),
        target: config.and_then(|c| c.target_capacity()),
        fulfilled: config.and_then(|c| c.fulfilled_capacity()),
        tags: tag_map(f.tags().iter().map(|t| (t.key(), t.value()))),
    }
}

async fn look_fleet(p: &AwsProvider, id: &str) -> Result<Option<Placement>, CloudError> {
    let out = match p.ec2("DescribeFleets").describe_fleets().fleet_ids(id).send().await {
        Ok(out) => out,
        Err(e) => {
            let e = translate("DescribeFleets", e);
            return if e.kind == CloudErrorKind::NotFound { Ok(None) } else { Err(e) };
        }
    };
    let Some(f) = out.fleets().first() else { return Ok(None) };
    let mut placement = fleet_placement(f);
    placement.instances = list_instances(p, id).await?;
    Ok(Some(placement))
}

async fn look_spot_fleet(p: &AwsProvider, id: &str) -> Result<Option<Placement>, CloudError> {
    let out =
        match p.ec2("DescribeSpotFleetRequests").describe_spot_fleet_requests().spot_fleet_request_ids(id).send().await
        {
            Ok(out) => out,
            Err(e) => {
                let e = translate("DescribeSpotFleetRequests", e);
                return if e.kind == CloudErrorKind::NotFound { Ok(None) } else { Err(e) };
            }
        };
    let Some(f) = out.spot_fleet_request_configs().first() else { return Ok(None) };
    let mut placement = spot_fleet_placement(f);
    placement.instances = list_instances(p, id).await?;
    Ok(Some(placement))
}

/// Every page of a listing: `call` asks for the page after a token and answers the page's
/// items with the token of the next.
async fn all_pages<T, F, Fut>(mut call: F) -> Result<Vec<T>, CloudError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, Option<String>), CloudError>>,
{
    let mut items = Vec::new();
    let mut next = None;
    loop {
        let (page, token) = call(next.take()).await?;
        items.extend(page);
        match token {
            Some(t) if !t.is_empty() => next = Some(t),
            _ => return Ok(items),
        }
    }
}

/// The active instances of fleet or Spot Fleet request `id`, by the fleet's own listing.
async fn list_instances(p: &AwsProvider, id: &str) -> Result<Vec<String>, CloudError> {
    let ids = |list: &[aws_sdk_ec2::types::ActiveInstance]| -> Vec<String> {
        list.iter().filter_map(|i| i.instance_id().map(String::from)).collect()
    };
    if id.starts_with("sfr-") {
        all_pages(|next| async move {
            let page = p
                .ec2("DescribeSpotFleetInstances")
                .describe_spot_fleet_instances()
                .spot_fleet_request_id(id)
                .set_next_token(next)
                .send()
                .await
                .map_err(|e| translate("DescribeSpotFleetInstances", e))?;
            Ok((ids(page.active_instances()), page.next_token().map(String::from)))
        })
        .await
    } else {
        all_pages(|next| async move {
            let page = p
                .ec2("DescribeFleetInstances")
                .describe_fleet_instances()
                .fleet_id(id)
                .set_next_token(next)
                .send()
                .await
                .map_err(|e| translate("DescribeFleetInstances", e))?;
            Ok((ids(page.active_instances()), page.next_token().map(String::from)))
        })
        .await
    }
}

/// `listed`, or, when the call failed on an unknown id, each of `ids` looked at alone.
async fn or_each_alone(
    p: &AwsProvider,
    ids: &[&str],
    listed: Result<Vec<(String, Placement)>, CloudError>,
) -> Result<Vec<(String, Placement)>, CloudError> {
    match listed {
        Err(e) if e.kind == CloudErrorKind::NotFound => {
            let mut each = Vec::new();
            for id in ids {
                if let Some(placement) = look(p, id).await? {
                    each.push((id.to_string(), placement));
                }
            }
            Ok(each)
        }
        listed => listed,
    }
}

/// How many ids one describe of fleets, Spot Fleet requests or groups names at most.
const LOOK_BATCH: usize = 100;

/// Every placed request of `ids` that exists, by id: every EC2 Fleet in one DescribeFleets,
/// every Spot Fleet request in one DescribeSpotFleetRequests, the groups in
/// DescribeAutoScalingGroups (each call naming up to [`LOOK_BATCH`]). Fleets come without
/// their instances. A call that fails on an unknown id is made again for each id alone.
async fn look_many(p: &AwsProvider, ids: &[&str]) -> Result<BTreeMap<String, Placement>, CloudError> {
    let mut found = BTreeMap::new();
    let (fleets, rest): (Vec<&str>, Vec<&str>) = ids.iter().partition(|id| id.starts_with("fleet-"));
    let (spot, groups): (Vec<&str>, Vec<&str>) = rest.iter().partition(|id| id.starts_with("sfr-"));
    for chunk in fleets.chunks(LOOK_BATCH) {
        let ids: Vec<String> = chunk.iter().map(|s| s.to_string()).collect();
        let listed = all_pages(|next| {
            let call = p.ec2("DescribeFleets").describe_fleets().set_fleet_ids(Some(ids.clone()));
            async move {
                let page = call.set_next_token(next).send().await.map_err(|e| translate("DescribeFleets", e))?;
                let placements =
                    page.fleets().iter().filter_map(|f| Some((f.fleet_id()?.to_owned(), fleet_placement(f))));
                Ok((placements.collect(), page.next_token().map(String::from)))
            }
        })
        .await;
        found.extend(or_each_alone(p, chunk, listed).await?);
    }
    for chunk in spot.chunks(LOOK_BATCH) {
        let ids: Vec<String> = chunk.iter().map(|s| s.to_string()).collect();
        let listed = all_pages(|next| {
            let call = p
                .ec2("DescribeSpotFleetRequests")
                .describe_spot_fleet_requests()
                .set_spot_fleet_request_ids(Some(ids.clone()));
            async move {
                let page =
                    call.set_next_token(next).send().await.map_err(|e| translate("DescribeSpotFleetRequests", e))?;
                let placements = page
                    .spot_fleet_request_configs()
                    .iter()
                    .filter_map(|f| Some((f.spot_fleet_request_id()?.to_owned(), spot_fleet_placement(f))));
                Ok((placements.collect(), page.next_token().map(String::from)))
            }
        })
        .await;
        found.extend(or_each_alone(p, chunk, listed).await?);
    }
    for chunk in groups.chunks(LOOK_BATCH) {
        let names: Vec<String> = chunk.iter().map(|s| s.to_string()).collect();
        let listed = all_pages(|next| {
            let call = p
                .asg("DescribeAutoScalingGroups")
                .describe_auto_scaling_groups()
                .set_auto_scaling_group_names(Some(names.clone()))
                .max_records(LOOK_BATCH as i32);
            async move {
                let page =
                    call.set_next_token(next).send().await.map_err(|e| translate("DescribeAutoScalingGroups", e))?;
                let placements = page
                    .auto_scaling_groups()
                    .iter()
                    .filter(|g| g.status().is_none_or(|s| !s.starts_with("Delete")))
                    .filter_map(|g| Some((g.auto_scaling_group_name()?.to_owned(), group_placement(g))));
                Ok((placements.collect(), page.next_token().map(String::from)))
            }
        })
        .await?;
        found.extend(listed);
    }
    Ok(found)
}

/// The live instances of every placement of `placements` (keyed by its id): a fleet's by the
/// tag the cloud (or ohf, once it tagged them) puts on them naming it, all fleets in one
/// DescribeInstances; a group's, and a fleet's whose tagged instances fall short of the
/// capacity it says it holds (its instances not tagged yet), by id in one more.
async fn instances_of(
    p: &AwsProvider,
    placements: &mut BTreeMap<String, Placement>,
    weight: impl Fn(&str, &str) -> f64,
) -> Result<BTreeMap<String, Vec<Instance>>, CloudError> {
    let mut by_placement: BTreeMap<String, Vec<Instance>> = BTreeMap::new();
    let fleets: Vec<String> = placements.keys().filter(|id| is_fleet(id)).cloned().collect();
    let fleet_keys: Vec<&str> = AWS_FLEET_TAGS.iter().copied().chain([FLEET_TAG]).collect();
    for chunk in fleets.chunks(crate::FILTER_VALUES) {
        let by_tag = aws_sdk_ec2::types::Filter::builder().name("tag-value").set_values(Some(chunk.to_vec())).build();
        for i in p.describe_instances(&[], vec![by_tag, launch::live_filter()]).await? {
            let named = i
                .tags()
                .iter()
                .filter(|t| t.key().is_some_and(|k| fleet_keys.contains(&k)))
                .find_map(|t| t.value().filter(|v| chunk.iter().any(|c| c == v)).map(String::from));
            if let Some(id) = named {
                by_placement.entry(id).or_default().push(i);
            }
        }
    }
    // What is still to be found by id: groups' instances, and those of fleets short of their tags.
    let mut wanted: Vec<(String, String)> = Vec::new();
    for (id, placement) in placements.iter_mut() {
        if is_fleet(id) {
            let tagged = by_placement.get(id).map_or(0.0, |found| {
                found.iter().map(|i| weight(id, i.instance_type().map_or("", |t| t.as_str()))).sum::<f64>()
            });
            if placement.fulfilled.is_none_or(|f| tagged + 1e-9 < f) {
                placement.instances = list_instances(p, id).await?;
            }
        }
        let known: HashSet<&str> = by_placement.get(id).into_iter().flatten().filter_map(|i| i.instance_id()).collect();
        wanted.extend(
            placement.instances.iter().filter(|i| !known.contains(i.as_str())).map(|i| (i.clone(), id.clone())),
        );
    }
    if !wanted.is_empty() {
        let ids: Vec<String> = wanted.iter().map(|(i, _)| i.clone()).collect();
        let owners: BTreeMap<&str, &str> = wanted.iter().map(|(i, id)| (i.as_str(), id.as_str())).collect();
        for i in p.describe_known(&ids).await? {
            if let Some(id) = i.instance_id().and_then(|x| owners.get(x)) {
                by_placement.entry((*id).to_owned()).or_default().push(i);
            }
        }
    }
    Ok(by_placement)
}

fn is_fleet(id: &str) -> bool {
    id.starts_with("fleet-") || id.starts_with("sfr-")
}

/// Follows the placed requests of `launches` together: the placements in one describe per
/// kind ([`look_many`]), their instances in one or two DescribeInstances ([`instances_of`]),
/// then each launch as [`launch`] answers it. A launch that follows nothing is made as
/// [`launch`] makes it.
pub async fn follow_many(
    p: &AwsProvider,
    launches: &[LaunchRequest],
) -> Result<Vec<Result<LaunchResult, CloudError>>, CloudError> {
    let ids: Vec<&str> = launches.iter().filter_map(|l| l.following.as_deref()).collect();
    let mut placements = look_many(p, &ids).await?;
    let weights: BTreeMap<&str, &Template> =
        launches.iter().filter_map(|l| Some((l.following.as_deref()?, &l.template))).collect();
    let weight = |id: &str, vm: &str| weights.get(id).and_then(|t| t.vm_types().get(vm)).map_or(1.0, |w| f64::from(*w));
    let mut found = instances_of(p, &mut placements, weight).await?;
    let mut out = Vec::with_capacity(launches.len());
    for r in launches {
        let Some(id) = r.following.as_deref() else {
            out.push(ohf_app::CloudProvider::launch(p, r).await);
            continue;
        };
        let placement = placements.remove(id);
        let instances = found.remove(id).unwrap_or_default();
        out.push(follow_seen(p, r, id, placement, instances).await);
    }
    Ok(out)
}

async fn group(p: &AwsProvider, name: &str) -> Result<Option<asg::AutoScalingGroup>, CloudError> {
    let out = p
        .asg("DescribeAutoScalingGroups")
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .map_err(|e| translate("DescribeAutoScalingGroups", e))?;
    Ok(out.auto_scaling_groups().iter().find(|g| g.status().is_none_or(|s| !s.starts_with("Delete"))).cloned())
}

/// Looks at placed request `id`: tags its new instances for the request and answers them,
/// `filling` until the request's count is held.
async fn follow(p: &AwsProvider, r: &LaunchRequest, id: &str) -> Result<LaunchResult, CloudError> {
    let placement = look(p, id).await?;
    let found = match &placement {
        Some(placement) if !placement.instances.is_empty() => {
            p.describe_instances(&placement.instances, Vec::new()).await?
        }
        _ => Vec::new(),
    };
    follow_seen(p, r, id, placement, found).await
}

/// Answers launch `r` following placed request `id` from what was seen of it: `placement`
/// (`None`: gone) and its instances `found`.
async fn follow_seen(
    p: &AwsProvider,
    r: &LaunchRequest,
    id: &str,
    placement: Option<Placement>,
    mut found: Vec<Instance>,
) -> Result<LaunchResult, CloudError> {
    let Some(placement) = placement else {
        return Err(CloudError::new(
            CloudErrorKind::Capacity,
            "PlacementGone",
            format!("{id} no longer exists; it was deleted outside ohf"),
        ));
    };
    found.retain(|i| i.state().and_then(|s| s.name()).is_some_and(launch::is_live));
    let tagged = tag_untagged(p, r, id, &found).await?;
    let mut machines = p.observe(&found);
    for m in machines.iter_mut().filter(|m| tagged.iter().any(|t| t == m.id.as_str())) {
        m.tags.extend(r.tags.iter().map(|(k, v)| (k.to_owned(), v.to_owned())));
        m.request_id = Some(r.request_id.clone());
    }
    let held = machines.len() as u32;
    if held >= r.count {
        return Ok(LaunchResult { machines, ..LaunchResult::default() });
    }
    let expiry = Duration::from_secs(u64::from(r.template.spot_fleet_request_expiry_mins()) * 60);
    let fleet = !matches!(r.template.provider_api(), ProviderApi::Asg);
    // The cloud's creation time, else (an emulator that gives none) the attempt's start.
    let age =
        placement.age.unwrap_or_else(|| age(&aws_smithy_types::DateTime::from_millis(r.started_at.unix_millis())));
    if fleet && r.template.price_type() == PriceType::Heterogeneous && age >= expiry {
        // The spot part did not fill in time: keep what came and ask on demand for the rest.
        stop_fleet(p, id, false).await?;
        let remainder = r.count - held;
        tracing::info!(request_id = %r.request_id, resource = id, remainder, "spot did not fill by its expiry; asking on demand");
        let on_demand = launch::run_on_demand(p, r, remainder).await?;
        machines.extend(on_demand.machines);
        return Ok(LaunchResult { machines, shortfall: on_demand.shortfall, filling: None });
    }
    if placement.stopped {
        stop_fleet(p, id, false).await?;
        let shortfall = placement.error.unwrap_or_else(|| {
            CloudError::new(
                CloudErrorKind::Capacity,
                "UnfulfillableCapacity",
                format!("{id} stopped with {held} of {}", r.count),
            )
        });
        return Ok(LaunchResult { machines, shortfall: Some(shortfall), filling: None });
    }
    Ok(LaunchResult { machines, shortfall: None, filling: Some(id.to_owned()) })
}

/// Tags the instances of placed request `id` that do not carry the request's tags yet (fleets
/// of type request and maintain cannot tag them at launch); answers the ids it tagged.
async fn tag_untagged(
    p: &AwsProvider,
    r: &LaunchRequest,
    id: &str,
    found: &[Instance],
) -> Result<Vec<String>, CloudError> {
    let untagged: Vec<String> = found
        .iter()
        .filter(|i| !i.tags().iter().any(|t| t.key() == Some(tag_keys::REQUEST_ID)) || owner(i).is_none())
        .filter_map(|i| i.instance_id().map(String::from))
        .collect();
    if untagged.is_empty() {
        return Ok(untagged);
    }
    let mut wanted: Vec<Tag> = r.tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect();
    wanted.push(Tag::builder().key(tag_keys::LAUNCH_TOKEN).value(r.token.as_str()).build());
    if !id.starts_with(r.token.as_str()) {
        wanted.push(Tag::builder().key(FLEET_TAG).value(id).build());
    }
    p.ec2("CreateTags")
        .create_tags()
        .set_resources(Some(untagged.clone()))
        .set_tags(Some(wanted.clone()))
        .send()
        .await
        .map_err(|e| translate("CreateTags", e))?;
    Ok(untagged)
}

/// The fleet or group that owns an instance, from its tags.
fn owner(i: &Instance) -> Option<String> {
    let tag = |k: &str| i.tags().iter().find(|t| t.key() == Some(k)).and_then(|t| t.value()).map(String::from);
    tag(AWS_GROUP_TAG).or_else(|| tag(FLEET_TAG)).or_else(|| AWS_FLEET_TAGS.iter().find_map(|k| tag(k)))
}

/// Stops placed request `id` from launching more, its machines kept (`terminate`: with them).
async fn stop_fleet(p: &AwsProvider, id: &str, terminate: bool) -> Result<(), CloudError> {
    if id.starts_with("sfr-") {
        p.ec2("CancelSpotFleetRequests")
            .cancel_spot_fleet_requests()
            .spot_fleet_request_ids(id)
            .terminate_instances(terminate)
            .send()
            .await
            .map_err(|e| translate("CancelSpotFleetRequests", e))?;
        confirm(|| async { Ok(look_spot_fleet(p, id).await?.is_none_or(|f| f.stopped)) }, id, "cancelled").await
    } else if id.starts_with("fleet-") {
        p.ec2("DeleteFleets")
            .delete_fleets()
            .fleet_ids(id)
            .terminate_instances(terminate)
            .send()
            .await
            .map_err(|e| translate("DeleteFleets", e))?;
        confirm(|| async { Ok(look_fleet(p, id).await?.is_none_or(|f| f.stopped)) }, id, "deleted").await
    } else {
        let Some(g) = group(p, id).await? else { return Ok(()) };
        let live = g.instances().len() as i32;
        if terminate || live == 0 {
            wait_for_group(p, id).await?;
            p.asg("DeleteAutoScalingGroup")
                .delete_auto_scaling_group()
                .auto_scaling_group_name(id)
                .force_delete(true)
                .send()
                .await
                .map_err(|e| translate("DeleteAutoScalingGroup", e))?;
            return confirm(|| async { Ok(group(p, id).await?.is_none()) }, id, "deleted").await;
        }
        resize_group(p, id, live).await
    }
}

/// Stops placed request `resource` of a request that ended (timed out, cancelled), with
/// every machine it made: the request keeps none of them.
/// A resource whose tags do not prove it is `owner`'s and `request`'s is left alone.
pub async fn release(
    p: &AwsProvider,
    resource: &str,
    request: &RequestId,
    owner: &Ownership,
) -> Result<(), CloudError> {
    let Some(placement) = look(p, resource).await? else { return Ok(()) };
    if let Some(why) = placement.disproof(owner, request) {
        tracing::warn!(resource, reason = %why, "left alone: not provably ohf's");
        return Ok(());
    }
    stop_fleet(p, resource, true).await
}

async fn resize_group(p: &AwsProvider, name: &str, size: i32) -> Result<(), CloudError> {
    wait_for_group(p, name).await?;
    p.asg("UpdateAutoScalingGroup")
        .update_auto_scaling_group()
        .auto_scaling_group_name(name)
        .min_size(0)
        .max_size(size)
        .desired_capacity(size)
        .send()
        .await
        .map_err(|e| translate("UpdateAutoScalingGroup", e))?;
    confirm(|| async { Ok(group(p, name).await?.is_none_or(|g| g.desired_capacity() == Some(size))) }, name, "resized")
        .await
}

/// Waits while a scaling activity of group `name` runs.
async fn wait_for_group(p: &AwsProvider, name: &str) -> Result<(), CloudError> {
    confirm(
        || async {
            let out = p
                .asg("DescribeScalingActivities")
                .describe_scaling_activities()
                .auto_scaling_group_name(name)
                .max_records(20)
                .send()
                .await
                .map_err(|e| translate("DescribeScalingActivities", e))?;
            use asg::ScalingActivityStatusCode as S;
            Ok(out
                .activities()
                .iter()
                .all(|a| matches!(a.status_code(), Some(S::Successful | S::Failed | S::Cancelled) | None)))
        },
        name,
        "idle",
    )
    .await
}

/// Polls `done` until it holds, within the busy wait and inside the deadline of the operation
/// the call belongs to (ending a poll early enough to answer busy, not to be cut off as a
/// timeout); a 2xx answer alone never marks a change done.
async fn confirm<F, Fut>(done: F, what: &str, state: &str) -> Result<(), CloudError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<bool, CloudError>>,
{
    let started = tokio::time::Instant::now();
    let mut deadline = started + BUSY_WAIT;
    if let Some(end) = ohf_app::ports::call_deadline() {
        deadline = deadline.min(end.checked_sub(BUSY_MARGIN).unwrap_or(started));
    }
    loop {
        if done().await? {
            return Ok(());
        }
        if tokio::time::Instant::now() + BUSY_POLL > deadline {
            return Err(CloudError::new(
                CloudErrorKind::Busy,
                "ResourceBusy",
                format!("{what} is not {state} after {} s; tried again next cycle", started.elapsed().as_secs()),
            ));
        }
        tokio::time::sleep(BUSY_POLL).await;
    }
}

/// Terminates the proven instances `found` (each with the request that launched it),
/// shrinking each owning fleet or group first so that nothing replaces them, and deleting it
/// when they are its last machines. A fleet or group whose own tags do not prove it is ohf's
/// and the request's is neither shrunk nor deleted, and its instances are left alone (refused).
/// Answers the ids left to a plain TerminateInstances, and the refusals.
pub async fn shrink_owners(
    p: &AwsProvider,
    found: &[(Instance, RequestId)],
    ownership: &Ownership,
) -> Result<(Vec<String>, Vec<Refusal>), CloudError> {
    let mut owned: BTreeMap<String, (RequestId, HashSet<String>)> = BTreeMap::new();
    let mut plain = Vec::new();
    for (i, request) in found {
        let Some(id) = i.instance_id() else { continue };
        match owner(i) {
            Some(owner) => {
                owned.entry(owner).or_insert_with(|| (request.clone(), HashSet::new())).1.insert(id.to_owned());
            }
            None => plain.push(id.to_owned()),
        }
    }
    let mut refused = Vec::new();
    for (owner, (request, going)) in owned {
        // One look serves both: the proof of ownership and the shrink.
        let Some(placement) = look(p, &owner).await? else {
            plain.extend(going);
            continue;
        };
        if let Some(why) = placement.disproof(ownership, &request) {
            let reason = format!("its fleet or group {owner} is not ohf's: {why}");
            let ids = going.into_iter().filter_map(|id| MachineId::new(id).ok());
            refused.extend(ids.map(|id| Refusal { id, reason: reason.clone() }));
            continue;
        }
        if !shrink(p, &owner, &placement, &going).await? {
            plain.extend(going);
        }
    }
    Ok((plain, refused))
}

/// Shrinks fleet or group `owner`, as `fleet` shows it now, by `going`; true when that also
/// terminated them.
async fn shrink(p: &AwsProvider, owner: &str, fleet: &Placement, going: &HashSet<String>) -> Result<bool, CloudError> {
    if owner.starts_with("sfr-") || owner.starts_with("fleet-") {
        if fleet.stopped {
            return Ok(false);
        }
        let staying = fleet.instances.iter().filter(|i| !going.contains(*i)).count() as i32;
        if staying == 0 {
            tracing::info!(fleet = owner, "deleting the fleet with its last machines");
            stop_fleet(p, owner, true).await?;
            return Ok(true);
        }
        // A fleet mid-change takes no other; wait for it, and read the change back after.
        confirm(|| async { Ok(look(p, owner).await?.is_none_or(|f| !f.busy)) }, owner, "steady").await?;
        if owner.starts_with("sfr-") {
            p.ec2("ModifySpotFleetRequest")
                .modify_spot_fleet_request()
                .spot_fleet_request_id(owner)
                .target_capacity(staying)
                .excess_capacity_termination_policy(ExcessCapacityTerminationPolicy::NoTermination)
                .send()
                .await
                .map_err(|e| translate("ModifySpotFleetRequest", e))?;
        } else {
            p.ec2("ModifyFleet")
                .modify_fleet()
                .fleet_id(owner)
                .excess_capacity_termination_policy(
                    aws_sdk_ec2::types::FleetExcessCapacityTerminationPolicy::NoTermination,
                )
                .target_capacity_specification(
                    TargetCapacitySpecificationRequest::builder().total_target_capacity(staying).build(),
                )
                .send()
                .await
                .map_err(|e| translate("ModifyFleet", e))?;
        }
        confirm(|| async { Ok(look(p, owner).await?.is_none_or(|f| f.target == Some(staying))) }, owner, "shrunk")
            .await?;
        return Ok(false);
    }
    let members = &fleet.instances;
    if members.iter().all(|m| going.contains(m)) {
        tracing::info!(group = owner, "deleting the group with its last machines");
        stop_fleet(p, owner, true).await?;
        return Ok(true);
    }
    wait_for_group(p, owner).await?;
    for id in members.iter().filter(|m| going.contains(*m)) {
        p.asg("TerminateInstanceInAutoScalingGroup")
            .terminate_instance_in_auto_scaling_group()
            .instance_id(id)
            .should_decrement_desired_capacity(true)
            .send()
            .await
            .map_err(|e| translate("TerminateInstanceInAutoScalingGroup", e))?;
    }
    let staying = (members.len() - going.len().min(members.len())) as i32;
    confirm(
        || async { Ok(group(p, owner).await?.is_none_or(|g| g.desired_capacity() <= Some(staying))) },
        owner,
        "shrunk",
    )
    .await?;
    Ok(true)
}

/// Auto Scaling's `InstanceRequirements` of a template's requirements.
fn asg_requirements(q: &ohf_domain::requirements::InstanceRequirements) -> asg::InstanceRequirements {
    let int = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    let mut b = asg::InstanceRequirements::builder()
        .v_cpu_count(
            asg::VCpuCountRequest::builder().min(int(q.v_cpu_count.min)).set_max(q.v_cpu_count.max.map(int)).build(),
        )
        .memory_mib(
            asg::MemoryMiBRequest::builder().min(int(q.memory_mib.min)).set_max(q.memory_mib.max.map(int)).build(),
        );
    if let Some(burst) = q.burstable_performance {
        b = b.burstable_performance(asg::BurstablePerformance::from(burst.as_str()));
    }
    if let Some(count) = q.accelerator_count {
        b = b.accelerator_count(
            asg::AcceleratorCountRequest::builder().min(int(count.min)).set_max(count.max.map(int)).build(),
        );
    }
    for kind in &q.accelerator_types {
        b = b.accelerator_types(asg::AcceleratorType::from(kind.as_str()));
    }
    if !q.allowed_instance_types.is_empty() {
        b = b.set_allowed_instance_types(Some(q.allowed_instance_types.clone()));
    }
    if !q.excluded_instance_types.is_empty() {
        b = b.set_excluded_instance_types(Some(q.excluded_instance_types.clone()));
    }
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_busy_wait_ends_inside_the_deadline_of_its_operation_and_answers_busy() {
        let started = tokio::time::Instant::now();
        let deadline = started + Duration::from_millis(2500);
        let waited = ohf_app::ports::within_deadline(deadline, confirm(|| async { Ok(false) }, "fleet-1", "resized"));
        let e = waited.await.unwrap_err();
        assert_eq!((e.kind, e.code.as_str()), (CloudErrorKind::Busy, "ResourceBusy"), "{e:?}");
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "gave up inside the deadline: {:?}",
            started.elapsed()
        );

        // A change that completes within the wait is confirmed.
        let polls = std::sync::atomic::AtomicU32::new(0);
        let done = || async { Ok(polls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= 1) };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        ohf_app::ports::within_deadline(deadline, confirm(done, "fleet-1", "resized")).await.unwrap();
    }
}
