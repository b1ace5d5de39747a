//! What `ohf init` finds in an account to write a working configuration from: the VPCs, the
//! chosen VPC's subnets and security groups, and a recent Amazon Linux image.

use aws_sdk_ec2::types::Filter;
use ohf_app::CloudError;

use crate::{AwsProvider, errors};

/// One VPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vpc {
    pub id: String,
    pub cidr: String,
    pub is_default: bool,
}

/// One subnet of the chosen VPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    pub id: String,
    pub zone: String,
    pub free_ips: u32,
}

/// One security group of the chosen VPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroup {
    pub id: String,
    pub name: String,
}

/// An image to launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub id: String,
    pub name: String,
    pub created: String,
}

/// What the account holds, for one VPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub vpcs: Vec<Vpc>,
    /// The VPC the rest belongs to: the one asked for, else the default one, else the only one.
    pub vpc: Option<String>,
    pub subnets: Vec<Subnet>,
    pub security_groups: Vec<SecurityGroup>,
    /// The newest Amazon Linux 2023 image for x86_64 (else the newest Amazon-owned x86_64 image).
    pub image: Option<Image>,
}

impl AwsProvider {
    /// Lists what `ohf init` offers to choose from; `vpc` narrows it to one VPC.
    pub async fn discover(&self, vpc: Option<&str>) -> Result<Discovery, CloudError> {
        let out =
            self.ec2("DescribeVpcs").describe_vpcs().send().await.map_err(|e| errors::translate("DescribeVpcs", e))?;
        let vpcs: Vec<Vpc> = out
            .vpcs()
            .iter()
            .map(|v| Vpc {
                id: v.vpc_id().unwrap_or_default().to_owned(),
                cidr: v.cidr_block().unwrap_or_default().to_owned(),
                is_default: v.is_default().unwrap_or(false),
            })
            .collect();
        let chosen = match vpc {
            Some(id) => Some(id.to_owned()),
            None => vpcs
                .iter()
                .find(|v| v.is_default)
                .or(if vpcs.len() == 1 { vpcs.first() } else { None })
                .map(|v| v.id.clone()),
        };
        let (mut subnets, mut security_groups) = (Vec::new(), Vec::new());
        if let Some(id) = &chosen {
            let in_vpc = Filter::builder().name("vpc-id").values(id).build();
            let out = self
                .ec2("DescribeSubnets")
                .describe_subnets()
                .filters(in_vpc.clone())
                .send()
                .await
                .map_err(|e| errors::translate("DescribeSubnets", e))?;
            subnets = out
                .subnets()
                .iter()
                .map(|s| Subnet {
                    id: s.subnet_id().unwrap_or_default().to_owned(),
                    zone: s.availability_zone().unwrap_or_default().to_owned(),
                    free_ips: s.available_ip_address_count().and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
                })
                .collect();
            subnets.sort_by(|a, b| a.zone.cmp(&b.zone).then_with(|| a.id.cmp(&b.id)));
            let out = self
                .ec2("DescribeSecurityGroups")
                .describe_security_groups()
                .filters(in_vpc)
                .send()
                .await
                .map_err(|e| errors::translate("DescribeSecurityGroups", e))?;
            security_groups = out
                .security_groups()
                .iter()
                .map(|g| SecurityGroup {
                    id: g.group_id().unwrap_or_default().to_owned(),
                    name: g.group_name().unwrap_or_default().to_owned(),
                })
                .collect();
            // The VPC's default group first.
            security_groups.sort_by_key(|g| (g.name != "default", g.name.clone()));
        }
        Ok(Discovery { vpcs, vpc: chosen, subnets, security_groups, image: self.recent_image().await? })
    }

    /// The newest Amazon Linux 2023 x86_64 image, else the newest Amazon-owned x86_64 one.
    async fn recent_image(&self) -> Result<Option<Image>, CloudError> {
        let x86 = Filter::builder().name("architecture").values("x86_64").build();
        for names in [Some("al2023-ami-2023*"), None] {
            let mut call = self.ec2("DescribeImages").describe_images().owners("amazon").filters(x86.clone());
            if let Some(pattern) = names {
                call = call.filters(Filter::builder().name("name").values(pattern).build());
            }
            let out = call.send().await.map_err(|e| errors::translate("DescribeImages", e))?;
            let newest = out
                .images()
                .iter()
                .filter(|i| i.image_id().is_some())
                .max_by(|a, b| a.creation_date().unwrap_or_default().cmp(b.creation_date().unwrap_or_default()));
            if let Some(i) = newest {
                return Ok(Some(Image {
                    id: i.image_id().unwrap_or_default().to_owned(),
                    name: i.name().unwrap_or_default().to_owned(),
                    created: i.creation_date().unwrap_or_default().to_owned(),
                }));
            }
        }
        Ok(None)
    }
}
