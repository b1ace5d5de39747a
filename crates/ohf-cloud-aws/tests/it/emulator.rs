//! The AWS adapter against a LocalStack-compatible emulator (moto's server, started by
//! `cargo xtask test`, or any endpoint in `OHF_TEST_AWS_ENDPOINT`).

use ohf_app::{CloudErrorKind, CloudProvider, DescribeQuery, LaunchRequest, OwnedMachine, Ownership};
use ohf_cloud_aws::{AwsConfig, AwsProvider, Secret};
use ohf_domain::{ClientToken, MachineStatus, ProviderName, RequestId, Tags, Template};
use serde_json::json;

pub(crate) fn endpoint() -> String {
    std::env::var("OHF_TEST_AWS_ENDPOINT")
        .expect("OHF_TEST_AWS_ENDPOINT names the AWS emulator; `cargo xtask test` starts one and sets it")
}

pub(crate) fn config() -> AwsConfig {
    let mut c = AwsConfig::new("us-east-1");
    c.endpoint_url = Some(endpoint());
    c.access_key_id = Some("testing".into());
    c.secret_access_key = Some(Secret::new("testing"));
    c
}

pub(crate) async fn provider() -> AwsProvider {
    AwsProvider::connect(ProviderName::new("aws-test").unwrap(), &config()).await.unwrap()
}

/// The SDK's configuration for clients of our own on the emulator.
pub(crate) async fn shared_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint())
        .credentials_provider(aws_sdk_ec2::config::Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await
}

/// An EC2 client of our own on the emulator, to look without going through ohf.
pub(crate) async fn sdk() -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::new(&shared_config().await)
}

/// An image the emulator knows.
pub(crate) async fn image() -> String {
    let ec2 = sdk().await;
    let images = ec2.describe_images().owners("amazon").send().await.unwrap();
    images.images().iter().find_map(|i| i.image_id()).expect("the emulator lists images").to_owned()
}

pub(crate) fn template(image: &str, extra: serde_json::Value) -> Template {
    let mut t = json!({"templateId": "Aws-Test", "maxNumber": 100, "imageId": image, "vmType": "t3.micro", "instanceTags": "team=abc"});
    if let (Some(base), Some(more)) = (t.as_object_mut(), extra.as_object()) {
        base.extend(more.clone());
    }
    Template::from_json(&t).unwrap()
}

pub(crate) fn owner() -> Ownership {
    Ownership { cluster: "test".into(), installation: "test-installation".into() }
}

pub(crate) fn owned(ids: &[ohf_domain::MachineId], request: &str) -> Vec<OwnedMachine> {
    let request_id = RequestId::new(request).unwrap();
    ids.iter().map(|id| OwnedMachine { id: id.clone(), request_id: request_id.clone() }).collect()
}

pub(crate) fn launch(template: &Template, request: &str, count: u32) -> LaunchRequest {
    let id = RequestId::new(request).unwrap();
    let tags = Tags::new(
        [("ohf:request-id".to_owned(), request.to_owned()), ("ohf:cluster".to_owned(), "test".to_owned())].into(),
    )
    .unwrap();
    LaunchRequest {
        token: ClientToken::for_launch(&id, 1),
        request_id: id,
        template: template.clone(),
        count,
        tags,
        zones: vec![],
        following: None,
        started_at: ohf_domain::testing::T0,
        priority: ohf_domain::Priority::Normal,
    }
}

mod contract {
    use std::sync::Arc;
    use std::time::Duration;

    use ohf_app::CloudProvider;
    use serde_json::json;

    use super::{image, provider, template};

    ohf_app::cloud_contract_tests!(
        || async { Arc::new(provider().await) as Arc<dyn CloudProvider> },
        template(&image().await, json!({})),
        Duration::from_secs(30)
    );
}

#[tokio::test]
async fn ec2_fleet_instant_launches_from_one_reused_launch_template() {
    let p = provider().await;
    let image = image().await;
    let t = template(
        &image,
        json!({"templateId": "Fleet-Test", "vmTypes": {"t3.micro": 1, "t3.small": 1}, "providerApi": "EC2Fleet", "fleetType": "instant"}),
    );
    let request = format!("req-fleet-{}", uuid::Uuid::new_v4().simple());
    let out = p.launch(&launch(&t, &request, 3)).await.unwrap();
    assert_eq!(out.machines.len(), 3, "{:?}", out.shortfall);
    let second = format!("req-fleet-{}", uuid::Uuid::new_v4().simple());
    p.launch(&launch(&t, &second, 1)).await.unwrap();
    let seen = p
        .describe(&DescribeQuery { request_ids: vec![RequestId::new(request.clone()).unwrap()], ..Default::default() })
        .await
        .unwrap();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter()
            .all(|m| m.tags.get("team").map(String::as_str) == Some("abc") || m.tags.contains_key("ohf:request-id"))
    );
    let ec2 = sdk().await;
    // Only this template's: other tests make launch templates in the same emulator, and an
    // emulator may answer one page of them.
    let filter = aws_sdk_ec2::types::Filter::builder().name("tag:ohf:cluster").values(owner().cluster).build();
    let templates = ec2.describe_launch_templates().filters(filter).max_results(200).send().await.unwrap();
    let ours = templates
        .launch_templates()
        .iter()
        .filter(|lt| lt.launch_template_name().is_some_and(|n| n.starts_with("ohf-Fleet-Test-")))
        .count();
    assert_eq!(ours, 1, "one launch template per template version, reused");
    let ids: Vec<_> = seen.iter().map(|m| m.id.clone()).collect();
    assert!(p.terminate(&owned(&ids, &request), &owner()).await.unwrap().is_empty());
}

#[tokio::test]
async fn aws_errors_keep_their_code_and_kind() {
    let p = provider().await;
    let t = template("ami-00000000000000000", json!({}));
    let err = p.launch(&launch(&t, "req-bad-ami", 1)).await.unwrap_err();
    assert!(err.code.starts_with("InvalidAMIID"), "{err:?}");
    assert!(!err.kind.is_retryable());
    assert!(err.to_string().contains("RunInstances"), "{err}");
    let roleless = template("ami-1", json!({"providerApi": "SpotFleet", "priceType": "spot"}));
    let err = p.check_template(&roleless).await.unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::Validation);
    assert!(err.message.contains("fleetRole"), "{err}");
}

#[tokio::test]
async fn terminated_machines_are_reported_terminated_and_unknown_ids_are_skipped() {
    let p = provider().await;
    let t = template(&image().await, json!({}));
    let request = format!("req-term-{}", uuid::Uuid::new_v4().simple());
    let out = p.launch(&launch(&t, &request, 2)).await.unwrap();
    let mut ids: Vec<_> = out.machines.iter().map(|m| m.id.clone()).collect();
    ids.push(ohf_domain::MachineId::new("i-0123456789abcdef0").unwrap());
    let refused = p.terminate(&owned(&ids, &request), &owner()).await.expect("an unknown id does not stop the others");
    assert!(refused.is_empty(), "an id that does not exist is gone already, not refused: {refused:?}");
    let seen = p.describe(&DescribeQuery { machine_ids: ids.clone(), ..Default::default() }).await.unwrap();
    assert_eq!(seen.len(), 2, "the unknown id is skipped");
    assert!(seen.iter().all(|m| matches!(m.status, MachineStatus::ShuttingDown | MachineStatus::Terminated)));
}

/// A VPC with one subnet in each of `zones`: the subnet ids, in order.
async fn subnets_in(zones: &[&str]) -> Vec<String> {
    let ec2 = sdk().await;
    let vpc = ec2.create_vpc().cidr_block("10.42.0.0/16").send().await.unwrap();
    let vpc = vpc.vpc().and_then(|v| v.vpc_id()).unwrap().to_owned();
    let mut ids = Vec::new();
    for (n, zone) in zones.iter().enumerate() {
        let out = ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block(format!("10.42.{n}.0/24"))
            .availability_zone(*zone)
            .send()
            .await
            .unwrap();
        ids.push(out.subnet().and_then(|s| s.subnet_id()).unwrap().to_owned());
    }
    ids
}

async fn zone_of(id: &ohf_domain::MachineId) -> String {
    let out = sdk().await.describe_instances().instance_ids(id.as_str()).send().await.unwrap();
    let i = &out.reservations()[0].instances()[0];
    i.placement().and_then(|p| p.availability_zone()).unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_requests_zones_narrow_where_run_instances_places_its_machines() {
    let p = provider().await;
    let image = image().await;
    let subnets = subnets_in(&["us-east-1a", "us-east-1b"]).await;
    let t = template(&image, json!({"subnetId": subnets}));
    let mut r = launch(&t, "req-zone-b", 1);
    r.zones = vec!["us-east-1b".into()];
    let out = p.launch(&r).await.unwrap();
    assert_eq!(zone_of(&out.machines[0].id).await, "us-east-1b", "only the subnet in the zone asked");

    let mut r = launch(&t, "req-zone-c", 1);
    r.zones = vec!["us-east-1c".into()];
    let e = p.launch(&r).await.unwrap_err();
    assert_eq!((e.kind, e.code.as_str()), (CloudErrorKind::Validation, "NoSubnetInZones"), "{e:?}");
    assert!(e.message.contains("placement.availabilityZones"), "{}", e.message);

    // A template without subnets is placed in the zone itself.
    let bare = template(&image, json!({}));
    let mut r = launch(&bare, "req-zone-d", 1);
    r.zones = vec!["us-east-1d".into()];
    let out = p.launch(&r).await.unwrap();
    assert_eq!(zone_of(&out.machines[0].id).await, "us-east-1d");
    p.terminate(&owned(&[out.machines[0].id.clone()], "req-zone-d"), &owner()).await.unwrap();

    // The same judgement before anything is launched, as a request's admission asks it.
    p.check_zones(&t, &["us-east-1b".into()]).await.unwrap();
    let e = p.check_zones(&t, &["us-east-1c".into()]).await.unwrap_err();
    assert_eq!((e.kind, e.code.as_str()), (CloudErrorKind::Validation, "NoSubnetInZones"), "{e:?}");
    p.check_zones(&bare, &["us-east-1d".into()]).await.unwrap();
    let e = p.check_zones(&bare, &["mars-1a".into()]).await.unwrap_err();
    assert_eq!((e.kind, e.code.as_str()), (CloudErrorKind::Validation, "NoSuchZone"), "{e:?}");
    assert!(e.message.contains("mars-1a") && e.message.contains("us-east-1a"), "{}", e.message);
}

#[tokio::test]
async fn inspect_names_an_image_or_subnet_the_account_does_not_have() {
    let p = provider().await;
    let good = template(&image().await, json!({}));
    assert!(p.inspect(&good).await.unwrap().is_empty(), "a template whose image exists");
    let bad = template("ami-0123456789abcdef0", json!({"subnetId": "subnet-0123456789abcdef0"}));
    let problems = p.inspect(&bad).await.unwrap();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("ami-0123456789abcdef0"), "{problems:?}");
    assert!(problems[1].contains("subnet-0123456789abcdef0"), "{problems:?}");
}

#[tokio::test]
async fn a_venue_is_measured_free_addresses_offered_types_and_spot_prices() {
    use ohf_app::ports::VenueQuery;
    let p = provider().await;
    let subnets = subnets_in(&["us-east-1b"]).await;
    let query = VenueQuery {
        zone: Some("us-east-1b".into()),
        subnets: subnets.clone(),
        instance_types: vec!["t3.micro".into(), "m5.large".into()],
    };
    let before = p.measure_venue(&query).await.unwrap();
    assert_eq!(before.subnets.len(), 1);
    assert_eq!(before.subnets[0].id, subnets[0]);
    let free = before.subnets[0].free_ips.expect("a /24 reports its free addresses");
    assert!(free > 200 && free <= 251, "{free}");
    let offered = before.offerings.clone().expect("offerings were asked for");
    assert!(offered.contains("t3.micro") && offered.contains("m5.large"), "{offered:?}");
    assert!(before.spot_prices.get("t3.micro").is_some_and(|p| *p > 0.0), "{:?}", before.spot_prices);
    // The region's market, as the reports read it.
    let market = p.spot_prices(&["t3.micro".into()]).await.unwrap();
    assert!(market.get("t3.micro").is_some_and(|p| *p > 0.0), "{market:?}");
    assert!(p.spot_prices(&[]).await.unwrap().is_empty(), "nothing asked, nothing called");

    let t = template(&image().await, json!({"subnetId": subnets[0]}));
    let out = p.launch(&launch(&t, "req-venue", 2)).await.unwrap();
    let after = p.measure_venue(&query).await.unwrap();
    assert_eq!(after.subnets[0].free_ips, Some(free - 2), "each machine takes an address");
    let ids: Vec<_> = out.machines.iter().map(|m| m.id.clone()).collect();
    p.terminate(&owned(&ids, "req-venue"), &owner()).await.unwrap();

    // A venue named by zone alone lists the zone's subnets.
    let by_zone = VenueQuery { zone: Some("us-east-1b".into()), subnets: vec![], instance_types: vec![] };
    let zone = p.measure_venue(&by_zone).await.unwrap();
    assert!(zone.subnets.iter().any(|s| s.id == subnets[0]), "{:?}", zone.subnets);
    assert!(zone.offerings.is_none(), "no types asked about");
}
