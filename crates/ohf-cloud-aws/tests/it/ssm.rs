//! Templates naming their image through an SSM parameter: the parameter is read to the image
//! id the launch uses, and a parameter that does not exist is a doctor's finding. Moto only:
//! LocalStack's EC2-only runtime has no SSM.

use ohf_app::CloudProvider;
use serde_json::json;

use crate::emulator::{endpoint, image, launch, owned, owner, provider, sdk, template};

async fn ssm() -> aws_sdk_ssm::Client {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint())
        .credentials_provider(aws_sdk_ec2::config::Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await;
    aws_sdk_ssm::Client::new(&shared)
}

#[tokio::test]
async fn an_image_named_by_an_ssm_parameter_is_launched_and_a_missing_one_is_named() {
    let ami = image().await;
    let name = format!("/ohf-test/{}/image", uuid::Uuid::new_v4().simple());
    ssm()
        .await
        .put_parameter()
        .name(&name)
        .value(&ami)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .unwrap();
    let p = provider().await;
    for image_id in [name.clone(), format!("resolve:ssm:{name}")] {
        let t = template(&image_id, json!({}));
        assert!(p.inspect(&t).await.unwrap().is_empty(), "{image_id}: the parameter names an image that exists");
        let request = format!("req-ssm-{}", uuid::Uuid::new_v4().simple());
        let out = p.launch(&launch(&t, &request, 1)).await.unwrap();
        let described =
            sdk().await.describe_instances().instance_ids(out.machines[0].id.as_str()).send().await.unwrap();
        let launched = described.reservations()[0].instances()[0].image_id().unwrap().to_owned();
        assert_eq!(launched, ami, "{image_id} launched the parameter's image");
        let ids: Vec<_> = out.machines.iter().map(|m| m.id.clone()).collect();
        p.terminate(&owned(&ids, &request), &owner()).await.unwrap();
    }
    let missing = template("/ohf-test/no-such-parameter", json!({}));
    let problems = p.inspect(&missing).await.unwrap();
    assert!(problems.iter().any(|m| m.contains("/ohf-test/no-such-parameter")), "{problems:?}");
}
