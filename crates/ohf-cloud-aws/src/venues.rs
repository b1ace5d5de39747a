//! What routing measures of a venue: free addresses of its subnets (DescribeSubnets), the
//! instance types offered in its zone (DescribeInstanceTypeOfferings), the latest spot prices
//! there (DescribeSpotPriceHistory), which the reports price spot machines by too, and the
//! account's vCPU quota for on-demand machines (Service Quotas' GetServiceQuota), where the
//! account lets it be read.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{Filter, LocationType};
use ohf_app::CloudError;
use ohf_app::ports::{VenueQuery, VenueReading};
use ohf_placement::Subnet;

use crate::{AwsProvider, errors};

/// Values one EC2 filter takes at most.
const FILTER_VALUES: usize = 200;

/// Service Quotas' code of EC2's "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z)
/// instances" quota, counted in vCPUs.
const ON_DEMAND_STANDARD_VCPUS: &str = "L-1216C47A";

pub(crate) async fn measure(p: &AwsProvider, venue: &VenueQuery) -> Result<VenueReading, CloudError> {
    let mut reading = VenueReading { vcpu_quota: vcpu_quota(p).await, ..VenueReading::default() };
    if !venue.subnets.is_empty() || venue.zone.is_some() {
        let mut call = p.ec2("DescribeSubnets").describe_subnets();
        if venue.subnets.is_empty() {
            let zone = venue.zone.clone().unwrap_or_default();
            call = call.filters(Filter::builder().name("availability-zone").values(zone).build());
        } else {
            call = call.set_subnet_ids(Some(venue.subnets.clone()));
        }
        let mut pages = call.into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| errors::translate("DescribeSubnets", e))?;
            for s in page.subnets() {
                let Some(id) = s.subnet_id() else { continue };
                let free = s.available_ip_address_count().and_then(|n| u64::try_from(n).ok());
                reading.subnets.push(Subnet { id: id.to_owned(), free_ips: free });
            }
        }
    }
    if venue.instance_types.is_empty() {
        return Ok(reading);
    }
    let mut offered = BTreeSet::new();
    for chunk in venue.instance_types.chunks(FILTER_VALUES) {
        let mut call = p
            .ec2("DescribeInstanceTypeOfferings")
            .describe_instance_type_offerings()
            .filters(Filter::builder().name("instance-type").set_values(Some(chunk.to_vec())).build());
        if let Some(zone) = &venue.zone {
            call = call
                .location_type(LocationType::AvailabilityZone)
                .filters(Filter::builder().name("location").values(zone).build());
        }
        let mut pages = call.into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| errors::translate("DescribeInstanceTypeOfferings", e))?;
            offered.extend(
                page.instance_type_offerings().iter().filter_map(|o| o.instance_type()).map(|t| t.as_str().to_owned()),
            );
        }
    }
    reading.offerings = Some(offered);
    reading.spot_prices = spot_prices(p, &venue.instance_types, venue.zone.as_deref()).await?;
    Ok(reading)
}

/// How long a read of the account's quota serves (the region's venues are recalculated
/// together; quotas change by request to AWS, rarely).
const QUOTA_KEPT: std::time::Duration = std::time::Duration::from_secs(60);

/// The account's on-demand vCPU quota in the region; `None` when it cannot be read (no
/// permission, a partition or emulator without Service Quotas, a failed call): the venue's
/// configured quota then stands alone. Read once a minute at most.
async fn vcpu_quota(p: &AwsProvider) -> Option<u64> {
    if let Ok(kept) = p.vcpu_quota.lock()
        && let Some((at, quota)) = *kept
        && at.elapsed() < QUOTA_KEPT
    {
        return quota;
    }
    let quota = read_vcpu_quota(p).await;
    if let Ok(mut kept) = p.vcpu_quota.lock() {
        *kept = Some((std::time::Instant::now(), quota));
    }
    quota
}

async fn read_vcpu_quota(p: &AwsProvider) -> Option<u64> {
    let answer = p
        .quotas("GetServiceQuota")
        .get_service_quota()
        .service_code("ec2")
        .quota_code(ON_DEMAND_STANDARD_VCPUS)
        .send()
        .await;
    match answer {
        Ok(out) => {
            let value = out.quota().and_then(|q| q.value())?;
            (value.is_finite() && value >= 0.0).then(|| value.floor() as u64)
        }
        Err(e) => {
            let e = errors::translate("GetServiceQuota", e);
            tracing::debug!(error = %e, "the account's vCPU quota cannot be read; configured quotas stand");
            None
        }
    }
}

/// The latest Linux spot price of each of `instance_types` (in `zone`, else in any zone of the
/// region), from DescribeSpotPriceHistory; types without a price are left out.
pub(crate) async fn spot_prices(
    p: &AwsProvider,
    instance_types: &[String],
    zone: Option<&str>,
) -> Result<BTreeMap<String, f64>, CloudError> {
    if instance_types.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut latest: BTreeMap<String, (i64, f64)> = BTreeMap::new();
    let types: Vec<aws_sdk_ec2::types::InstanceType> =
        instance_types.iter().map(|t| aws_sdk_ec2::types::InstanceType::from(t.as_str())).collect();
    let mut call = p
        .ec2("DescribeSpotPriceHistory")
        .describe_spot_price_history()
        .set_instance_types(Some(types))
        .product_descriptions("Linux/UNIX")
        .start_time(aws_sdk_ec2::primitives::DateTime::from_secs(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64),
        ));
    if let Some(zone) = zone {
        call = call.availability_zone(zone);
    }
    let mut pages = call.into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| errors::translate("DescribeSpotPriceHistory", e))?;
        for price in page.spot_price_history() {
            let (Some(t), Some(p)) = (price.instance_type(), price.spot_price().and_then(|p| p.parse::<f64>().ok()))
            else {
                continue;
            };
            let at = price.timestamp().map_or(0, |d| d.secs());
            let entry = latest.entry(t.as_str().to_owned()).or_insert((at, p));
            if at > entry.0 {
                *entry = (at, p);
            }
        }
    }
    Ok(latest.into_iter().map(|(t, (_, p))| (t, p)).collect())
}
