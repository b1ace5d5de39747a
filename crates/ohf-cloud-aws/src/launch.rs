//! Launches: RunInstances, and EC2 Fleet (`instant`) from a launch template made once per
//! template version; the pieces fleets and groups (`fleets.rs`) share. This module uses
//! nothing of `fleets`.

use aws_sdk_ec2::types::Filter;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, DefaultTargetCapacityType, EbsBlockDevice, FleetLaunchTemplateConfigRequest,
    FleetLaunchTemplateOverridesRequest, FleetLaunchTemplateSpecificationRequest, FleetType,
    IamInstanceProfileSpecification, InstanceMarketOptionsRequest, InstanceType,
    LaunchTemplateIamInstanceProfileSpecificationRequest, LaunchTemplateSpecification, MarketType,
    OnDemandOptionsRequest, RequestLaunchTemplateData, ResourceType, SpotAllocationStrategy, SpotMarketOptions,
    SpotOptionsRequest, Tag, TagSpecification, TargetCapacitySpecificationRequest, VolumeType,
};
use ohf_app::ports::tag_keys;
use ohf_app::{CloudError, CloudErrorKind, LaunchRequest, LaunchResult, Ownership};
use ohf_domain::requirements::InstanceRequirements;
use ohf_domain::{PriceType, Template};

use crate::AwsProvider;
use crate::errors::{kind_of, translate};

pub(crate) fn tags(request: &LaunchRequest, resource: ResourceType) -> TagSpecification {
    let mut spec = TagSpecification::builder().resource_type(resource);
    for (k, v) in request.tags.iter() {
        spec = spec.tags(Tag::builder().key(k).value(v).build());
    }
    spec.tags(Tag::builder().key(tag_keys::LAUNCH_TOKEN).value(request.token.as_str()).build()).build()
}

/// Only ohf's ownership tags (cluster, installation, template, provider): for resources shared
/// by requests.
fn owned(request: &LaunchRequest, resource: ResourceType) -> TagSpecification {
    let mut spec = TagSpecification::builder().resource_type(resource);
    for (k, v) in request.tags.iter() {
        if [tag_keys::CLUSTER, tag_keys::INSTALLATION, tag_keys::TEMPLATE_ID, tag_keys::PROVIDER].contains(&k) {
            spec = spec.tags(Tag::builder().key(k).value(v).build());
        }
    }
    spec.build()
}

/// Instance states that still hold a machine.
const LIVE: [&str; 4] = ["pending", "running", "stopping", "stopped"];

pub(crate) fn is_live(state: &aws_sdk_ec2::types::InstanceStateName) -> bool {
    LIVE.contains(&state.as_str())
}

/// The DescribeInstances filter for instances that still hold a machine.
pub(crate) fn live_filter() -> Filter {
    Filter::builder().name("instance-state-name").set_values(Some(LIVE.iter().map(|s| s.to_string()).collect())).build()
}

/// The machines an earlier call with this launch's token made, if any. EC2 also honours the
/// client token itself; looking first makes a repeated launch safe on any endpoint.
async fn already_launched(p: &AwsProvider, r: &LaunchRequest) -> Result<Option<LaunchResult>, CloudError> {
    let filters = vec![
        Filter::builder().name(format!("tag:{}", tag_keys::LAUNCH_TOKEN)).values(r.token.as_str()).build(),
        live_filter(),
    ];
    let found = p.describe_instances(&[], filters).await?;
    Ok((!found.is_empty()).then(|| LaunchResult { machines: p.observe(&found), ..LaunchResult::default() }))
}

fn user_data(template: &Template) -> Result<Option<String>, CloudError> {
    let Some(path) = template.user_data_script() else { return Ok(None) };
    let bytes = std::fs::read(path).map_err(|e| {
        CloudError::new(CloudErrorKind::Validation, "UserDataUnreadable", format!("userDataScript {path}: {e}"))
    })?;
    Ok(Some(aws_smithy_types::base64::encode(bytes)))
}

fn instance_profile(template: &Template) -> Option<IamInstanceProfileSpecification> {
    template.instance_profile().map(|p| {
        let b = IamInstanceProfileSpecification::builder();
        if p.starts_with("arn:") { b.arn(p).build() } else { b.name(p).build() }
    })
}

/// The root volume, when the template sizes it. `/dev/xvda` is the root device of the
/// Amazon Linux and most HVM images.
fn root_volume(template: &Template) -> Option<BlockDeviceMapping> {
    if template.root_device_volume_size().is_none() && template.volume_type().is_none() {
        return None;
    }
    let mut ebs = EbsBlockDevice::builder().delete_on_termination(true);
    if let Some(size) = template.root_device_volume_size() {
        ebs = ebs.volume_size(size as i32);
    }
    if let Some(t) = template.volume_type() {
        ebs = ebs.volume_type(VolumeType::from(t));
    }
    if let Some(iops) = template.iops() {
        ebs = ebs.iops(iops as i32);
    }
    Some(BlockDeviceMapping::builder().device_name("/dev/xvda").ebs(ebs.build()).build())
}

/// One RunInstances call for `count` machines of the preferred type, all or nothing
/// (MinCount = MaxCount): a shortage fails the call, which is retried, rather than leaving a
/// partial launch whose size depends on the endpoint.
pub async fn run_instances(p: &AwsProvider, r: &LaunchRequest) -> Result<LaunchResult, CloudError> {
    run_instances_as(p, r, r.template.price_type() == PriceType::Spot).await
}

async fn run_instances_as(p: &AwsProvider, r: &LaunchRequest, spot: bool) -> Result<LaunchResult, CloudError> {
    if let Some(done) = already_launched(p, r).await? {
        return Ok(done);
    }
    let t = &r.template;
    let mut call = p
        .ec2("RunInstances")
        .run_instances()
        .min_count(r.count as i32)
        .max_count(r.count as i32)
        .client_token(r.token.as_str())
        .tag_specifications(tags(r, ResourceType::Instance))
        .tag_specifications(tags(r, ResourceType::Volume))
        .set_security_group_ids((!t.security_group_ids().is_empty()).then(|| t.security_group_ids().to_vec()))
        .set_key_name(t.key_name().map(String::from))
        .set_iam_instance_profile(instance_profile(t))
        .set_user_data(user_data(t)?)
        .set_image_id(p.image_of(t).await?);
    if let Some(vm) = t.primary_vm_type() {
        call = call.instance_type(InstanceType::from(vm));
    }
    if let Some(id) = t.launch_template_id() {
        call = call.launch_template(LaunchTemplateSpecification::builder().launch_template_id(id).build());
    }
    // Several subnets (or zones): each launch attempt uses the next, spreading retries over zones.
    let turn = |len: usize| r.token.as_str().bytes().fold(0usize, |a, b| a.wrapping_add(b as usize)) % len.max(1);
    match placement(p, r).await? {
        Placement::Subnets(list) => call = call.subnet_id(&list[turn(list.len())]),
        Placement::Zones(zones) if !zones.is_empty() => {
            call = call.placement(
                aws_sdk_ec2::types::Placement::builder().availability_zone(&zones[turn(zones.len())]).build(),
            );
        }
        Placement::Zones(_) => {}
    }
    if let Some(root) = root_volume(t) {
        call = call.block_device_mappings(root);
    }
    if spot {
        let mut spot = SpotMarketOptions::builder();
        if let Some(price) = t.max_spot_price() {
            spot = spot.max_price(price.to_string());
        }
        call = call.instance_market_options(
            InstanceMarketOptionsRequest::builder().market_type(MarketType::Spot).spot_options(spot.build()).build(),
        );
    }
    let out = call.send().await.map_err(|e| translate("RunInstances", e))?;
    let machines = p.observe(out.instances());
    let shortfall = (machines.len() < r.count as usize).then(|| {
        CloudError::new(
            CloudErrorKind::Capacity,
            "InsufficientInstanceCapacity",
            format!("RunInstances launched {} of {}", machines.len(), r.count),
        )
    });
    Ok(LaunchResult { machines, shortfall, filling: None })
}

/// The name of a template version's launch template in a cluster: the template id and a digest
/// of the cluster, the installation and the whole template, so a changed template gets a new
/// one and two clusters or installations in one account never share (or delete) each other's.
pub(crate) fn launch_template_name(t: &Template, owner: &Ownership) -> (String, u64) {
    let version =
        format!("{}\n{}\n{}", owner.cluster, owner.installation, serde_json::to_string(t).unwrap_or_default());
    let digest =
        version.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    (format!("ohf-{}-{digest:016x}", t.id()), digest)
}

/// The launch template of a template version, created the first time and reused by every
/// later request; tagged with the cluster, so the orphan sweep can delete it once unused.
pub(crate) async fn launch_template(p: &AwsProvider, r: &LaunchRequest) -> Result<String, CloudError> {
    let t = &r.template;
    if let Some(id) = t.launch_template_id() {
        return Ok(id.to_owned());
    }
    let tag = |key: &str| r.tags.iter().find(|(k, _)| *k == key).map_or(String::new(), |(_, v)| v.to_owned());
    let owner = Ownership { cluster: tag(tag_keys::CLUSTER), installation: tag(tag_keys::INSTALLATION) };
    let (name, digest) = launch_template_name(t, &owner);
    let found = p.ec2("DescribeLaunchTemplates").describe_launch_templates().launch_template_names(&name).send().await;
    match found {
        Ok(out) => {
            if let Some(id) = out.launch_templates().first().and_then(|lt| lt.launch_template_id()) {
                return Ok(id.to_owned());
            }
        }
        Err(e) => {
            let e = translate("DescribeLaunchTemplates", e);
            if e.kind != CloudErrorKind::NotFound {
                return Err(e);
            }
        }
    }
    let mut data = RequestLaunchTemplateData::builder()
        .set_image_id(p.image_of(t).await?)
        .set_key_name(t.key_name().map(String::from))
        .set_security_group_ids((!t.security_group_ids().is_empty()).then(|| t.security_group_ids().to_vec()))
        .set_user_data(user_data(t)?);
    if let Some(profile) = t.instance_profile() {
        let b = LaunchTemplateIamInstanceProfileSpecificationRequest::builder();
        data = data.iam_instance_profile(if profile.starts_with("arn:") {
            b.arn(profile).build()
        } else {
            b.name(profile).build()
        });
    }
    let created = p
        .ec2("CreateLaunchTemplate")
        .create_launch_template()
        .launch_template_name(&name)
        .launch_template_data(data.build())
        .tag_specifications(owned(r, ResourceType::LaunchTemplate))
        .client_token(format!("ohf-lt-{digest:016x}"))
        .send()
        .await;
    match created {
        Ok(out) => out.launch_template().and_then(|lt| lt.launch_template_id()).map(String::from).ok_or_else(|| {
            CloudError::new(CloudErrorKind::Internal, "NoLaunchTemplateId", "CreateLaunchTemplate answered no id")
        }),
        Err(e) => {
            let e = translate("CreateLaunchTemplate", e);
            // Another process made it a moment ago.
            if e.code.contains("AlreadyExists") || e.code.contains("InUse") {
                let out = p
                    .ec2("DescribeLaunchTemplates")
                    .describe_launch_templates()
                    .launch_template_names(&name)
                    .send()
                    .await
                    .map_err(|e| translate("DescribeLaunchTemplates", e))?;
                return out
                    .launch_templates()
                    .first()
                    .and_then(|lt| lt.launch_template_id())
                    .map(String::from)
                    .ok_or(e);
            }
            Err(e)
        }
    }
}

/// The machines of `total` to ask on demand, from the template's price type.
pub(crate) fn on_demand_share(t: &Template, total: i32) -> i32 {
    match t.price_type() {
        PriceType::Ondemand => total,
        PriceType::Spot => 0,
        PriceType::Heterogeneous => (total * t.percent_on_demand().unwrap_or(0) as i32 + 99) / 100,
    }
}

/// Every type of the template in every subnet, with its weight.
pub(crate) fn overrides(t: &Template, place: &Placement) -> Vec<Override> {
    let spots: Vec<(Option<String>, Option<String>)> = match place {
        Placement::Subnets(list) => list.iter().map(|s| (Some(s.clone()), None)).collect(),
        Placement::Zones(zones) if !zones.is_empty() => zones.iter().map(|z| (None, Some(z.clone()))).collect(),
        Placement::Zones(_) => vec![(None, None)],
    };
    if t.vm_types().is_empty() && t.instance_requirements().is_some() {
        // Attribute-based: one override per place, the types chosen by the cloud.
        return spots
            .iter()
            .map(|(subnet, zone)| Override { vm: None, weight: 1, subnet: subnet.clone(), zone: zone.clone() })
            .collect();
    }
    t.vm_types()
        .iter()
        .flat_map(|(vm, w)| {
            spots.iter().map(|(subnet, zone)| Override {
                vm: Some(vm.clone()),
                weight: *w,
                subnet: subnet.clone(),
                zone: zone.clone(),
            })
        })
        .collect()
}

/// EC2's `InstanceRequirementsRequest` of a template's requirements.
pub(crate) fn ec2_requirements(q: &InstanceRequirements) -> aws_sdk_ec2::types::InstanceRequirementsRequest {
    use aws_sdk_ec2::types::{
        AcceleratorCountRequest, AcceleratorType, BurstablePerformance, InstanceRequirementsRequest, MemoryMiBRequest,
        VCpuCountRangeRequest,
    };
    let int = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    let mut b = InstanceRequirementsRequest::builder()
        .v_cpu_count(
            VCpuCountRangeRequest::builder().min(int(q.v_cpu_count.min)).set_max(q.v_cpu_count.max.map(int)).build(),
        )
        .memory_mib(MemoryMiBRequest::builder().min(int(q.memory_mib.min)).set_max(q.memory_mib.max.map(int)).build());
    if let Some(burst) = q.burstable_performance {
        b = b.burstable_performance(BurstablePerformance::from(burst.as_str()));
    }
    if let Some(count) = q.accelerator_count {
        b = b.accelerator_count(
            AcceleratorCountRequest::builder().min(int(count.min)).set_max(count.max.map(int)).build(),
        );
    }
    for kind in &q.accelerator_types {
        b = b.accelerator_types(AcceleratorType::from(kind.as_str()));
    }
    if !q.allowed_instance_types.is_empty() {
        b = b.set_allowed_instance_types(Some(q.allowed_instance_types.clone()));
    }
    if !q.excluded_instance_types.is_empty() {
        b = b.set_excluded_instance_types(Some(q.excluded_instance_types.clone()));
    }
    b.build()
}

/// One fleet override: an instance type with its weight (none: the template's requirements
/// choose), in a subnet or a zone.
pub(crate) struct Override {
    pub vm: Option<String>,
    pub weight: u32,
    pub subnet: Option<String>,
    pub zone: Option<String>,
}

/// Where a launch may place machines.
pub(crate) enum Placement {
    /// In these subnets: the template's, narrowed to the request's zones.
    Subnets(Vec<String>),
    /// A template without subnets: in these zones (the request's; anywhere when empty).
    Zones(Vec<String>),
}

/// The request's `availabilityZones` applied to the template: its subnets in those zones (one
/// DescribeSubnets when zones are asked), or the zones themselves for a template without
/// subnets. Zones none of the template's subnets is in are refused, naming the field.
pub(crate) async fn placement(p: &AwsProvider, r: &LaunchRequest) -> Result<Placement, CloudError> {
    placement_of(p, &r.template, &r.zones).await
}

/// The region's availability zones.
pub(crate) async fn region_zones(p: &AwsProvider) -> Result<Vec<String>, CloudError> {
    let out = p
        .ec2("DescribeAvailabilityZones")
        .describe_availability_zones()
        .send()
        .await
        .map_err(|e| translate("DescribeAvailabilityZones", e))?;
    Ok(out.availability_zones().iter().filter_map(|z| z.zone_name().map(String::from)).collect())
}

/// Whether machines of template `t` can be placed in `zones`: some of its subnets are in them,
/// or, for a template without subnets, every zone is one of the region's. A hint that cannot be
/// met is a validation error naming `placement.availabilityZones`.
pub(crate) async fn check_zones(p: &AwsProvider, t: &Template, zones: &[String]) -> Result<(), CloudError> {
    if zones.is_empty() {
        return Ok(());
    }
    if !t.subnet_ids().is_empty() {
        return placement_of(p, t, zones).await.map(|_| ());
    }
    let known = region_zones(p).await?;
    let unknown: Vec<&str> = zones.iter().filter(|z| !known.contains(z)).map(String::as_str).collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(CloudError::new(
        CloudErrorKind::Validation,
        "NoSuchZone",
        format!("zones {} are not in this region; its zones: {}", unknown.join(", "), known.join(", ")),
    ))
}

/// Where machines of template `t` go when asked for `zones`; see [`placement`].
pub(crate) async fn placement_of(p: &AwsProvider, t: &Template, zones: &[String]) -> Result<Placement, CloudError> {
    if t.subnet_ids().is_empty() {
        return Ok(Placement::Zones(zones.to_vec()));
    }
    if zones.is_empty() {
        return Ok(Placement::Subnets(t.subnet_ids().to_vec()));
    }
    let out = p
        .ec2("DescribeSubnets")
        .describe_subnets()
        .set_subnet_ids(Some(t.subnet_ids().to_vec()))
        .send()
        .await
        .map_err(|e| translate("DescribeSubnets", e))?;
    let inside: Vec<String> = out
        .subnets()
        .iter()
        .filter(|s| s.availability_zone().is_some_and(|z| zones.iter().any(|asked| asked == z)))
        .filter_map(|s| s.subnet_id().map(String::from))
        .collect();
    if inside.is_empty() {
        return Err(CloudError::new(
            CloudErrorKind::Validation,
            "NoSubnetInZones",
            format!(
                "none of the template's subnets ({}) is in placement.availabilityZones {}",
                t.subnet_ids().join(", "),
                zones.join(", ")
            ),
        ));
    }
    Ok(Placement::Subnets(inside))
}

/// A CreateFleet call of type `kind` for launch `r`: every type and subnet of the template as
/// overrides, on-demand and spot shares from the template, the fleet's allocation strategies.
pub(crate) async fn fleet_call(
    p: &AwsProvider,
    r: &LaunchRequest,
    kind: FleetType,
) -> Result<aws_sdk_ec2::operation::create_fleet::builders::CreateFleetFluentBuilder, CloudError> {
    let t = &r.template;
    let template_id = launch_template(p, r).await?;
    let mut config = FleetLaunchTemplateConfigRequest::builder().launch_template_specification(
        FleetLaunchTemplateSpecificationRequest::builder().launch_template_id(&template_id).version("$Latest").build(),
    );
    for Override { vm, weight, subnet, zone } in overrides(t, &placement(p, r).await?) {
        let mut o = FleetLaunchTemplateOverridesRequest::builder()
            .weighted_capacity(f64::from(weight))
            .set_subnet_id(subnet)
            .set_availability_zone(zone);
        match (&vm, t.instance_requirements()) {
            (Some(vm), _) => o = o.instance_type(InstanceType::from(vm.as_str())),
            (None, Some(q)) => o = o.instance_requirements(ec2_requirements(q)),
            (None, None) => {}
        }
        if let Some(prio) = vm.as_ref().and_then(|vm| t.vm_types_priority().get(vm)) {
            o = o.priority(f64::from(*prio));
        }
        if let Some(price) = t.max_spot_price() {
            o = o.max_price(price.to_string());
        }
        config = config.overrides(o.build());
    }
    let total = r.count as i32;
    let on_demand = on_demand_share(t, total);
    let default =
        if on_demand == total { DefaultTargetCapacityType::OnDemand } else { DefaultTargetCapacityType::Spot };
    let capacity = TargetCapacitySpecificationRequest::builder()
        .total_target_capacity(total)
        .on_demand_target_capacity(on_demand)
        .spot_target_capacity(total - on_demand)
        .default_target_capacity_type(default)
        .build();
    let spot_strategy = SpotAllocationStrategy::from(
        fleet_strategy(t.allocation_strategy().unwrap_or("priceCapacityOptimized")).as_str(),
    );
    let mut call = p
        .ec2("CreateFleet")
        .create_fleet()
        .r#type(kind)
        .client_token(r.token.as_str())
        .launch_template_configs(config.build())
        .target_capacity_specification(capacity)
        .spot_options(SpotOptionsRequest::builder().allocation_strategy(spot_strategy).build());
    if let Some(s) = t.allocation_strategy_on_demand() {
        let strategy = if s.eq_ignore_ascii_case("prioritized") { "prioritized" } else { "lowest-price" };
        call = call.on_demand_options(
            OnDemandOptionsRequest::builder()
                .allocation_strategy(aws_sdk_ec2::types::FleetOnDemandAllocationStrategy::from(strategy))
                .build(),
        );
    }
    Ok(call)
}

/// On-demand machines for the part of launch `r` a spot request did not fill, under a token of
/// their own.
pub(crate) async fn run_on_demand(p: &AwsProvider, r: &LaunchRequest, count: u32) -> Result<LaunchResult, CloudError> {
    let digest = r.token.as_str().trim_start_matches("ohf-");
    let token = ohf_domain::ClientToken::new(format!("ohf-od-{}", &digest[..digest.len().min(56)]))
        .map_err(|e| CloudError::new(CloudErrorKind::Internal, "BadToken", e.to_string()))?;
    let mut on_demand = r.clone();
    on_demand.count = count;
    on_demand.token = token;
    run_instances_as(p, &on_demand, false).await
}

/// One instant EC2 Fleet.
pub async fn ec2_fleet(p: &AwsProvider, r: &LaunchRequest) -> Result<LaunchResult, CloudError> {
    if let Some(done) = already_launched(p, r).await? {
        return Ok(done);
    }
    let call = fleet_call(p, r, FleetType::Instant).await?.tag_specifications(tags(r, ResourceType::Instance));
    let out = call.send().await.map_err(|e| translate("CreateFleet", e))?;
    let ids: Vec<String> = out.instances().iter().flat_map(|i| i.instance_ids().iter().cloned()).collect();
    let first_error = out.errors().first().map(|e| {
        let code = e.error_code().unwrap_or("FleetError").to_owned();
        CloudError::new(kind_of(&code), code, format!("CreateFleet: {}", e.error_message().unwrap_or_default()))
    });
    if ids.is_empty() {
        return Err(first_error.unwrap_or_else(|| {
            CloudError::new(CloudErrorKind::Capacity, "UnfulfillableCapacity", "CreateFleet launched nothing")
        }));
    }
    let machines = p.observe(&p.describe_instances(&ids, Vec::new()).await?);
    let shortfall = (machines.len() < r.count as usize).then(|| {
        first_error.unwrap_or_else(|| {
            CloudError::new(
                CloudErrorKind::Capacity,
                "UnfulfillableCapacity",
                format!("CreateFleet launched {} of {}", machines.len(), r.count),
            )
        })
    });
    Ok(LaunchResult { machines, shortfall, filling: None })
}

/// Host Factory's allocation strategy words (`capacityOptimized`, `lowest-price`, …) in EC2
/// Fleet's and Auto Scaling's spelling.
pub(crate) fn fleet_strategy(s: &str) -> String {
    match s.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
        "lowestprice" => "lowest-price",
        "diversified" => "diversified",
        "capacityoptimized" => "capacity-optimized",
        "capacityoptimizedprioritized" => "capacity-optimized-prioritized",
        _ => "price-capacity-optimized",
    }
    .to_owned()
}

#[cfg(test)]
mod requirement_tests {
    use super::*;

    #[test]
    fn a_fleet_of_requirements_asks_by_figures_in_every_subnet() {
        let t = Template::from_json(&serde_json::json!({
            "templateId": "Abs", "maxNumber": 10, "imageId": "ami-1", "providerApi": "EC2Fleet",
            "subnetIds": ["subnet-a", "subnet-b"],
            "instanceRequirements": {"vCpuCount": {"min": 2, "max": 8}, "memoryMiB": {"min": 4096},
                                     "burstablePerformance": "excluded", "acceleratorCount": {"min": 0, "max": 0},
                                     "excludedInstanceTypes": ["m4.*"]}
        }))
        .unwrap();
        let place = Placement::Subnets(vec!["subnet-a".into(), "subnet-b".into()]);
        let list = overrides(&t, &place);
        assert_eq!(list.len(), 2, "one override per subnet");
        assert!(list.iter().all(|o| o.vm.is_none() && o.weight == 1));
        let q = ec2_requirements(t.instance_requirements().unwrap());
        assert_eq!(q.v_cpu_count().map(|v| (v.min(), v.max())), Some((Some(2), Some(8))));
        assert_eq!(q.memory_mib().map(|m| (m.min(), m.max())), Some((Some(4096), None)));
        assert_eq!(q.burstable_performance().map(|b| b.as_str()), Some("excluded"));
        assert_eq!(q.accelerator_count().and_then(|a| a.max()), Some(0));
        assert_eq!(q.excluded_instance_types(), ["m4.*"]);
    }
}
