//! What `ohf doctor` asks of the account: who the credentials are (`sts:GetCallerIdentity`),
//! and whether they may make the calls a template's launches and returns need. EC2 calls are
//! asked with `DryRun`, which AWS answers `DryRunOperation` when the call would be allowed and
//! `UnauthorizedOperation` when not, without doing anything; Auto Scaling has no dry run, so
//! its read is made for real. Any other answer (a parameter the dry run could not judge) is no
//! finding: the template's own checks name what is missing.

use aws_sdk_ec2::types::{
    FleetLaunchTemplateConfigRequest, FleetLaunchTemplateSpecificationRequest, InstanceType, RequestLaunchTemplateData,
    SpotFleetRequestConfigData, TargetCapacitySpecificationRequest,
};
use ohf_app::{CloudError, CloudErrorKind};
use ohf_domain::Template;
use ohf_domain::template::ProviderApi;

use crate::{AwsProvider, errors};

/// An id no instance has: the dry run of a termination checks the permission, not the target.
const PROBE_INSTANCE: &str = "i-0000000000000000f";

/// What one permission check learned.
enum Verdict {
    Allowed,
    Denied(String),
    /// The dry run could not say (a missing parameter, a missing resource).
    Unknown,
}

fn verdict<T>(result: Result<T, CloudError>) -> Verdict {
    match result {
        Ok(_) => Verdict::Allowed,
        Err(e) if e.code == "DryRunOperation" => Verdict::Allowed,
        Err(e) if e.kind == CloudErrorKind::Auth => Verdict::Denied(e.message),
        Err(_) => Verdict::Unknown,
    }
}

impl AwsProvider {
    /// The template's instance types that the zones of its subnets (`(subnet, zone)`) do not
    /// offer, each as a finding with its fix.
    pub(crate) async fn types_not_offered(
        &self,
        template: &Template,
        subnets: &[(String, String)],
    ) -> Result<Vec<String>, CloudError> {
        let types: Vec<String> = template.vm_types().keys().cloned().collect();
        let mut problems = Vec::new();
        if types.is_empty() {
            return Ok(problems);
        }
        let mut zones: Vec<&str> = subnets.iter().map(|(_, z)| z.as_str()).collect();
        zones.sort_unstable();
        zones.dedup();
        for zone in zones {
            let offered = self.offered(zone, &types).await?;
            for t in types.iter().filter(|t| !offered.contains(t)) {
                let subnet = subnets.iter().filter(|(_, z)| z == zone).map(|(s, _)| s.as_str()).collect::<Vec<_>>();
                problems.push(format!(
                    "instance type {t} is not offered in {zone} (subnet {}); fix: choose types offered there, or \
                     other subnets",
                    subnet.join(", ")
                ));
            }
        }
        Ok(problems)
    }

    /// Which of `types` `zone` offers.
    pub async fn offered(&self, zone: &str, types: &[String]) -> Result<Vec<String>, CloudError> {
        let out = self
            .ec2("DescribeInstanceTypeOfferings")
            .describe_instance_type_offerings()
            .location_type(aws_sdk_ec2::types::LocationType::AvailabilityZone)
            .filters(aws_sdk_ec2::types::Filter::builder().name("location").values(zone).build())
            .filters(
                aws_sdk_ec2::types::Filter::builder().name("instance-type").set_values(Some(types.to_vec())).build(),
            )
            .send()
            .await
            .map_err(|e| errors::translate("DescribeInstanceTypeOfferings", e))?;
        Ok(out
            .instance_type_offerings()
            .iter()
            .filter_map(|o| o.instance_type())
            .map(|t| t.as_str().to_owned())
            .collect())
    }

    /// The account and identity of the credentials.
    pub(crate) async fn caller(&self) -> Result<String, CloudError> {
        let out = self
            .sts("GetCallerIdentity")
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| errors::translate("GetCallerIdentity", e))?;
        Ok(format!("account {}, {}", out.account().unwrap_or("unknown"), out.arn().unwrap_or("unknown identity")))
    }

    /// Each call `template`'s launches and returns need that the credentials may not make, with
    /// its fix.
    pub(crate) async fn denied_calls(&self, template: &Template) -> Vec<String> {
        let instance_type = template.vm_types().keys().next().map(|t| InstanceType::from(t.as_str()));
        let image = self.image_of(template).await.ok().flatten().unwrap_or_default();
        let mut checks: Vec<(&str, Verdict)> = Vec::new();
        match template.provider_api() {
            ProviderApi::RunInstances => {
                let mut call = self
                    .ec2("RunInstances")
                    .run_instances()
                    .dry_run(true)
                    .image_id(&image)
                    .min_count(1)
                    .max_count(1)
                    .set_instance_type(instance_type.clone());
                if let Some(subnet) = template.subnet_ids().first() {
                    call = call.subnet_id(subnet);
                }
                let out = call.send().await.map_err(|e| errors::translate("RunInstances", e));
                checks.push(("ec2:RunInstances", verdict(out)));
            }
            api => {
                let data = RequestLaunchTemplateData::builder()
                    .image_id(&image)
                    .set_instance_type(instance_type.clone())
                    .build();
                let out = self
                    .ec2("CreateLaunchTemplate")
                    .create_launch_template()
                    .dry_run(true)
                    .launch_template_name("ohf-doctor-probe")
                    .launch_template_data(data)
                    .send()
                    .await
                    .map_err(|e| errors::translate("CreateLaunchTemplate", e));
                checks.push(("ec2:CreateLaunchTemplate", verdict(out)));
                match api {
                    ProviderApi::Ec2Fleet => {
                        let config = FleetLaunchTemplateConfigRequest::builder()
                            .launch_template_specification(
                                FleetLaunchTemplateSpecificationRequest::builder()
                                    .launch_template_name("ohf-doctor-probe")
                                    .version("$Latest")
                                    .build(),
                            )
                            .build();
                        let capacity = TargetCapacitySpecificationRequest::builder()
                            .total_target_capacity(1)
                            .default_target_capacity_type(aws_sdk_ec2::types::DefaultTargetCapacityType::OnDemand)
                            .build();
                        let out = self
                            .ec2("CreateFleet")
                            .create_fleet()
                            .dry_run(true)
                            .launch_template_configs(config)
                            .target_capacity_specification(capacity)
                            .r#type(aws_sdk_ec2::types::FleetType::Instant)
                            .send()
                            .await
                            .map_err(|e| errors::translate("CreateFleet", e));
                        checks.push(("ec2:CreateFleet", verdict(out)));
                    }
                    ProviderApi::SpotFleet => {
                        let config = SpotFleetRequestConfigData::builder()
                            .iam_fleet_role(template.fleet_role().unwrap_or_default())
                            .target_capacity(1)
                            .build();
                        let out = self
                            .ec2("RequestSpotFleet")
                            .request_spot_fleet()
                            .dry_run(true)
                            .spot_fleet_request_config(config)
                            .send()
                            .await
                            .map_err(|e| errors::translate("RequestSpotFleet", e));
                        checks.push(("ec2:RequestSpotFleet", verdict(out)));
                    }
                    _ => {
                        let out = self
                            .asg("DescribeAutoScalingGroups")
                            .describe_auto_scaling_groups()
                            .max_records(1)
                            .send()
                            .await
                            .map_err(|e| errors::translate("DescribeAutoScalingGroups", e));
                        checks.push(("autoscaling:DescribeAutoScalingGroups", verdict(out)));
                    }
                }
            }
        }
        // What every template needs: reading its machines, tagging, returning them.
        let out = self
            .ec2("DescribeInstances")
            .describe_instances()
            .dry_run(true)
            .send()
            .await
            .map_err(|e| errors::translate("DescribeInstances", e));
        checks.push(("ec2:DescribeInstances", verdict(out)));
        let out = self
            .ec2("CreateTags")
            .create_tags()
            .dry_run(true)
            .resources(PROBE_INSTANCE)
            .tags(aws_sdk_ec2::types::Tag::builder().key("ohf:doctor").value("probe").build())
            .send()
            .await
            .map_err(|e| errors::translate("CreateTags", e));
        checks.push(("ec2:CreateTags", verdict(out)));
        let out = self
            .ec2("TerminateInstances")
            .terminate_instances()
            .dry_run(true)
            .instance_ids(PROBE_INSTANCE)
            .send()
            .await
            .map_err(|e| errors::translate("TerminateInstances", e));
        checks.push(("ec2:TerminateInstances", verdict(out)));
        checks
            .into_iter()
            .filter_map(|(action, v)| match v {
                Verdict::Denied(why) => Some(format!(
                    "the credentials may not call {action} ({why}); fix: allow {action} in the policy of the \
                     role ohf runs as (docs/aws.md lists the policy)"
                )),
                Verdict::Allowed | Verdict::Unknown => None,
            })
            .collect()
    }
}
