//! What moto serves and LocalStack's EC2-only runtime does not (SSM, Auto Scaling): templates
//! naming their image through an SSM parameter (read to the image id the launch uses; a missing
//! one is a doctor's finding), and a group chosen by instance requirements.

use ohf_app::CloudProvider;
use serde_json::json;

use crate::emulator::{image, launch, owned, owner, provider, sdk, shared_config, template};

async fn ssm() -> aws_sdk_ssm::Client {
    aws_sdk_ssm::Client::new(&shared_config().await)
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

/// An Auto Scaling group chosen by `instanceRequirements` carries them in its mixed instances
/// policy. (Moto cannot launch an EC2 Fleet by requirements; the fleet's request is checked by
/// the adapter's unit tests.)
#[tokio::test]
async fn a_group_chosen_by_instance_requirements_carries_them() {
    let p = provider().await;
    let raw = json!({"templateId": "Aws-Abs", "maxNumber": 10, "imageId": image().await, "instanceTags": "team=abc",
                     "providerApi": "ASG", "instanceRequirements": {"vCpuCount": {"min": 2, "max": 4},
                     "memoryMiB": {"min": 4096, "max": 16384}, "burstablePerformance": "included"}});
    let t = ohf_domain::Template::from_json(&raw).unwrap();
    assert!(t.vm_types().is_empty());
    assert_eq!(t.attributes()["ncpus"].value, "1", "t3.medium: 2 vCPUs on one core, 4 GiB");
    let request = format!("req-abs-{}", uuid::Uuid::new_v4().simple());
    let out = p.launch(&launch(&t, &request, 2)).await.unwrap();
    let group = out.filling.expect("a group fills in the background");
    let asg = aws_sdk_autoscaling::Client::new(&shared_config().await);
    let found = asg.describe_auto_scaling_groups().auto_scaling_group_names(&group).send().await.unwrap();
    let policy = found.auto_scaling_groups()[0].mixed_instances_policy().expect("a mixed instances policy");
    let overrides = policy.launch_template().unwrap().overrides();
    let q = overrides[0].instance_requirements().expect("the requirements are the override");
    assert_eq!((q.v_cpu_count().unwrap().min(), q.v_cpu_count().unwrap().max()), (Some(2), Some(4)));
    assert_eq!(q.memory_mib().unwrap().min(), Some(4096));
}
