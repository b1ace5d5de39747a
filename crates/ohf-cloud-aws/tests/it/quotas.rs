//! The account's vCPU quota as a venue's measurement reads it. The emulators serve no EC2
//! quotas (moto's Service Quotas knows only VPC's), so a loopback stand-in answers
//! GetServiceQuota as AWS documents it: the quota, or a refusal.

use ohf_app::CloudProvider;
use ohf_app::ports::VenueQuery;
use ohf_cloud_aws::{AwsConfig, AwsProvider, Secret};
use ohf_domain::ProviderName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Answers every call with `status` and the JSON `body`; hands back each call's target.
async fn stand_in(status: &'static str, body: &'static str) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut seen = Vec::new();
            let mut chunk = [0u8; 4096];
            // The head, then as much body as it announces.
            while let Ok(n) = socket.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&seen).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if seen.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            let text = String::from_utf8_lossy(&seen).to_string();
            let target = text
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("x-amz-target:").map(|v| v.trim().to_owned()))
                .unwrap_or_default();
            let _ = tx.send(target);
            let answer = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(answer.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    (url, rx)
}

async fn provider(url: &str) -> AwsProvider {
    let mut c = AwsConfig::new("us-east-1");
    c.endpoint_url = Some(url.to_owned());
    c.access_key_id = Some("testing".into());
    c.secret_access_key = Some(Secret::new("testing"));
    AwsProvider::connect(ProviderName::new("aws-quota").unwrap(), &c).await.unwrap()
}

/// A venue with nothing else to measure: only the quota is asked for.
fn bare() -> VenueQuery {
    VenueQuery { zone: None, subnets: Vec::new(), instance_types: Vec::new() }
}

#[tokio::test]
async fn the_accounts_on_demand_vcpu_quota_is_read_into_the_venues_measurement() {
    let (url, mut targets) = stand_in(
        "200 OK",
        r#"{"Quota":{"ServiceCode":"ec2","ServiceName":"Amazon Elastic Compute Cloud (Amazon EC2)","QuotaArn":"arn:aws:servicequotas:us-east-1:123456789012:ec2/L-1216C47A","QuotaCode":"L-1216C47A","QuotaName":"Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances","Value":256.0,"Unit":"None","Adjustable":true,"GlobalQuota":false}}"#,
    )
    .await;
    let p = provider(&url).await;
    let reading = p.measure_venue(&bare()).await.unwrap();
    assert_eq!(reading.vcpu_quota, Some(256));
    assert_eq!(targets.recv().await.unwrap(), "servicequotasv20190624.getservicequota");
    assert_eq!(p.calls().get("GetServiceQuota"), Some(&1));
    // The next venue of the same recalculation is bounded by the same read.
    assert_eq!(p.measure_venue(&bare()).await.unwrap().vcpu_quota, Some(256));
    assert_eq!(p.calls().get("GetServiceQuota"), Some(&1), "one read serves the region's venues");
}

#[tokio::test]
async fn a_quota_the_account_may_not_read_leaves_the_configured_quota_alone() {
    let (url, _targets) = stand_in(
        "400 Bad Request",
        r#"{"__type":"AccessDeniedException","Message":"User is not authorized to perform: servicequotas:GetServiceQuota"}"#,
    )
    .await;
    let reading = provider(&url).await.measure_venue(&bare()).await.unwrap();
    assert_eq!(reading.vcpu_quota, None, "the measurement goes on without it");
}
