//! The AWS adapter against a LocalStack-compatible emulator (moto's server, started by
//! `cargo xtask test`, or any endpoint in `OHF_TEST_AWS_ENDPOINT`).

use std::sync::Arc;
use std::time::Duration;

use ohf_app::contract::cloud_contract;
use ohf_app::{CloudErrorKind, CloudProvider, DescribeQuery, LaunchRequest};
use ohf_cloud_aws::{AwsConfig, AwsProvider, Secret};
use ohf_domain::{ClientToken, MachineStatus, ProviderName, RequestId, Tags, Template};
use serde_json::json;

fn endpoint() -> String {
    std::env::var("OHF_TEST_AWS_ENDPOINT")
        .expect("OHF_TEST_AWS_ENDPOINT names the AWS emulator; `cargo xtask test` starts one and sets it")
}

fn config() -> AwsConfig {
    let mut c = AwsConfig::new("us-east-1");
    c.endpoint_url = Some(endpoint());
    c.access_key_id = Some("testing".into());
    c.secret_access_key = Some(Secret::new("testing"));
    c
}

async fn provider() -> AwsProvider {
    AwsProvider::connect(ProviderName::new("aws-test").unwrap(), &config()).await.unwrap()
}

/// An EC2 client of our own on the emulator, to look without going through ohf.
async fn sdk() -> aws_sdk_ec2::Client {
    let ec2 = sdk().await;
    let templates = ec2.describe_launch_templates().send().await.unwrap();
    let ours = templates
        .launch_templates()
        .iter()
        .filter(|lt| lt.launch_template_name().is_some_and(|n| n.starts_with("ohf-Fleet-Test-")))
        .count();
    assert_eq!(ours, 1, "one launch template per template version, reused");
    let ids: Vec<_> = seen.iter().map(|m| m.id.clone()).collect();
    p.terminate(&ids).await.unwrap();
}

#[tokio::test]
async fn aws_errors_keep_their_code_and_kind() {
    let p = provider().await;
    let t = template("ami-00000000000000000", json!({}));
    let err = p.launch(&launch(&t, "req-bad-ami", 1)).await.unwrap_err();
    assert!(err.code.starts_with("InvalidAMIID"), "{err:?}");
    assert!(!err.kind.is_retryable());
    assert!(err.to_string().contains("RunInstances"), "{err}");
    let unsupported = template("ami-1", json!({"providerApi": "ASG"}));
    let err = p.check_template(&unsupported).await.unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::Validation);
    assert!(err.message.contains("ASG"));
}

#[tokio::test]
async fn terminated_machines_are_reported_terminated_and_unknown_ids_are_skipped() {
    let p = provider().await;
    let t = template(&image().await, json!({}));
    let request = format!("req-term-{}", uuid::Uuid::new_v4().simple());
    let out = p.launch(&launch(&t, &request, 2)).await.unwrap();
    let mut ids: Vec<_> = out.machines.iter().map(|m| m.id.clone()).collect();
    ids.push(ohf_domain::MachineId::new("i-0123456789abcdef0").unwrap());
    p.terminate(&ids).await.expect("an unknown id does not stop the others");
    let seen = p.describe(&DescribeQuery { machine_ids: ids.clone(), ..Default::default() }).await.unwrap();
    assert_eq!(seen.len(), 2, "the unknown id is skipped");
    assert!(seen.iter().all(|m| matches!(m.status, MachineStatus::ShuttingDown | MachineStatus::Terminated)));
}
