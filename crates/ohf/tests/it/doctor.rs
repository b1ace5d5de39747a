//! `ohf init` and `ohf doctor` against the AWS emulator. Doctor: the credentials are named, every template of every
//! API passes, a template naming an image the account lacks fails, and a call the credentials
//! may not make (the fault proxy answering `UnauthorizedOperation`, as IAM does) fails naming
//! the action to allow. Init: what it writes from the account passes doctor, and its Host
//! Factory registration keeps what was registered before. Moto only: LocalStack's EC2-only
//! runtime has no STS.

use serde_json::{Value, json};

use crate::aws::{aws_env_at, endpoint};
use crate::fault_proxy::FaultProxy;

fn doctor(env: &crate::support::HfEnv) -> (bool, Value) {
    let out = env.ohf().args(["doctor", "-o", "json"]).output().unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    assert_eq!(out.status.success(), doc["ok"] == true, "the exit code follows the checks: {doc}");
    (out.status.success(), doc)
}

fn check<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["checks"].as_array().unwrap().iter().find(|c| c["check"] == name).unwrap_or_else(|| panic!("{name}: {doc}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_a_good_installation_and_names_the_fix_for_a_broken_one() {
    let proxy = FaultProxy::start(&endpoint(), 0.0, 1);
    let cluster = format!("doctor-{}", uuid::Uuid::new_v4().simple());
    let env = aws_env_at(&cluster, &proxy.url, "").await;

    let (ok, doc) = doctor(&env);
    assert!(ok, "every template of every API is launchable: {doc}");
    let who = check(&doc, "credentials of aws-test");
    assert!(who["detail"].as_str().unwrap().contains("account 123456789012"), "{who}");
    for t in ["Aws-OnDemand", "Aws-Fleet", "Aws-SpotFleet", "Aws-Asg"] {
        assert_eq!(check(&doc, &format!("template {t} on aws-test"))["ok"], true, "{doc}");
    }

    // A template naming an image the account does not have.
    let path = env.path("conf/awsprov_templates.json");
    let mut templates: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let broken =
        json!({"templateId": "Broken", "maxNumber": 1, "imageId": "ami-00000000000000bad", "vmType": "t3.micro"});
    templates["templates"].as_array_mut().unwrap().push(broken);
    std::fs::write(&path, templates.to_string()).unwrap();
    let (ok, doc) = doctor(&env);
    assert!(!ok, "{doc}");
    let finding = check(&doc, "template Broken on aws-test");
    assert_eq!(finding["ok"], false);
    assert!(finding["detail"].as_str().unwrap().contains("ami-00000000000000bad"), "{finding}");
    assert_eq!(check(&doc, "template Aws-OnDemand on aws-test")["ok"], true, "the others still pass: {doc}");

    // A type no zone offers, in a subnet that exists.
    let subnets = crate::aws::ec2().await.describe_subnets().send().await.unwrap();
    let subnet = subnets.subnets()[0].subnet_id().unwrap().to_owned();
    templates["templates"].as_array_mut().unwrap().retain(|t| t["templateId"] != "Broken");
    let image = templates["templates"][0]["imageId"].clone();
    templates["templates"].as_array_mut().unwrap().push(json!({
        "templateId": "Unoffered", "maxNumber": 1, "imageId": image, "vmType": "m5.superlarge", "subnetId": subnet,
        "attributes": {"type": ["String", "X86_64"], "ncpus": ["Numeric", "2"], "nram": ["Numeric", "8192"]},
    }));
    std::fs::write(&path, templates.to_string()).unwrap();
    let (ok, doc) = doctor(&env);
    assert!(!ok, "{doc}");
    let finding = check(&doc, "template Unoffered on aws-test");
    let detail = finding["detail"].as_str().unwrap();
    assert!(detail.contains("m5.superlarge is not offered") && detail.contains(&subnet), "{finding}");
    templates["templates"].as_array_mut().unwrap().retain(|t| t["templateId"] != "Unoffered");
    std::fs::write(&path, templates.to_string()).unwrap();

    // Credentials that may not launch: the action to allow is named.
    proxy.refuse(Some((
        "RunInstances",
        "403 Forbidden",
        "UnauthorizedOperation",
        "You are not authorized to perform this operation.",
    )));
    let (ok, doc) = doctor(&env);
    assert!(!ok, "{doc}");
    let finding = check(&doc, "template Aws-OnDemand on aws-test");
    let detail = finding["detail"].as_str().unwrap();
    assert!(detail.contains("ec2:RunInstances") && detail.contains("fix: allow ec2:RunInstances"), "{finding}");
    assert_eq!(check(&doc, "template Aws-Asg on aws-test")["ok"], true, "templates that do not call it pass: {doc}");
    proxy.refuse(None);
    assert!(doctor(&env).0, "allowed again, it passes");
}

fn aws_credentials(cmd: &mut std::process::Command) -> &mut std::process::Command {
    cmd.env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
}

#[test]
fn init_writes_a_configuration_doctor_passes_and_registers_with_host_factory_beside_what_is_there() {
    let env = crate::support::HfEnv::new("");
    let hf = tempfile::tempdir().unwrap();
    let plugins = hf.path().join("providerplugins/hostProviderPlugins.json");
    let providers = hf.path().join("providers/hostProviders.json");
    std::fs::create_dir_all(plugins.parent().unwrap()).unwrap();
    std::fs::create_dir_all(providers.parent().unwrap()).unwrap();
    let theirs = json!({"name": "awsinst", "enabled": 1, "plugin": "aws", "confPath": "/elsewhere/", "custom": "kept"});
    std::fs::write(
        &plugins,
        json!({"version": 2, "providerplugins": [{"name": "aws", "enabled": 1, "scriptPath": "/ibm/"}]}).to_string(),
    )
    .unwrap();
    std::fs::write(&providers, json!({"version": 2, "providers": [theirs.clone()]}).to_string()).unwrap();
    let cluster = format!("init-{}", uuid::Uuid::new_v4().simple());
    let init = |extra: &[&str]| {
        let mut cmd = env.ohf();
        aws_credentials(&mut cmd)
            .args(["init", "--yes", "--region", "us-east-1", "--endpoint-url", &endpoint(), "--cluster", &cluster])
            .arg("--hostfactory")
            .arg(hf.path())
            .args(extra)
            .args(["-o", "json"])
            .output()
            .unwrap()
    };
    let out = init(&[]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    let confdir = std::path::PathBuf::from(answer["confdir"].as_str().unwrap());
    assert!(confdir.ends_with("providers/ohf/conf"), "{answer}");

    // The templates name what the account has: its default VPC's subnets and group, an image.
    let templates: Value =
        serde_json::from_str(&std::fs::read_to_string(confdir.join("awsprov_templates.json")).unwrap()).unwrap();
    let first = &templates["templates"][0];
    assert!(first["imageId"].as_str().unwrap().starts_with("ami-"), "{templates}");
    assert!(!first["subnetIds"].as_array().unwrap().is_empty(), "{templates}");
    assert!(first["securityGroupIds"][0].as_str().unwrap().starts_with("sg-"), "{templates}");
    let config = std::fs::read_to_string(confdir.join("ohf.toml")).unwrap();
    assert!(config.contains(&format!("cluster = \"{cluster}\"")), "{config}");

    // ohf doctor passes what init wrote.
    let mut doctor = env.ohf();
    let out = aws_credentials(&mut doctor)
        .env_remove("HF_PROVIDER_CONFDIR")
        .arg("--confdir")
        .arg(&confdir)
        .args(["doctor", "-o", "json"])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success() && doc["ok"] == true, "{doc}");
    assert_eq!(check(&doc, "template Spot on aws")["ok"], true, "{doc}");

    // Registered beside what was there, untouched.
    let registered: Value = serde_json::from_str(&std::fs::read_to_string(&providers).unwrap()).unwrap();
    let list = registered["providers"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{registered}");
    assert_eq!(list[0], theirs, "the other provider is kept as it was");
    assert_eq!(list[1]["plugin"], "ohf");
    let plugin_list: Value = serde_json::from_str(&std::fs::read_to_string(&plugins).unwrap()).unwrap();
    let ours = plugin_list["providerplugins"].as_array().unwrap().iter().find(|p| p["name"] == "ohf").unwrap().clone();
    assert_eq!(plugin_list["providerplugins"].as_array().unwrap().len(), 2, "{plugin_list}");

    // The installed scripts run as Host Factory runs them, finding the binary beside them.
    let scripts = std::path::PathBuf::from(ours["scriptPath"].as_str().unwrap());
    let mut script = std::process::Command::new(scripts.join("getAvailableTemplates.sh"));
    let out = aws_credentials(&mut script)
        .env_remove("OHF_BIN")
        .env("PATH", "/usr/bin:/bin")
        .env("HF_PROVIDER_CONFDIR", &confdir)
        .env("HF_PROVIDER_WORKDIR", env.path("work"))
        .env("HF_PROVIDER_LOGDIR", env.path("log"))
        .output()
        .unwrap();
    let doc: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let ids: Vec<&str> =
        doc["templates"].as_array().unwrap().iter().map(|t| t["templateId"].as_str().unwrap()).collect();
    assert_eq!(ids, ["OnDemand", "Spot"], "{doc}");

    // Again: files that exist are kept unless --force; a broken registration stops everything.
    let again = init(&[]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("--force"), "{}", String::from_utf8_lossy(&again.stdout));
    std::fs::write(&providers, "{not json").unwrap();
    let before = std::fs::read_to_string(confdir.join("ohf.toml")).unwrap();
    let broken = init(&["--force"]);
    assert!(!broken.status.success());
    assert!(
        String::from_utf8_lossy(&broken.stdout).contains("hostProviders.json"),
        "{}",
        String::from_utf8_lossy(&broken.stdout)
    );
    assert_eq!(std::fs::read_to_string(confdir.join("ohf.toml")).unwrap(), before, "nothing was written");
    assert_eq!(std::fs::read_to_string(&providers).unwrap(), "{not json");
}

#[test]
fn templates_generate_prints_templates_of_the_account_that_validate() {
    let env = crate::support::HfEnv::new("");
    let mut cmd = env.ohf();
    let out = aws_credentials(&mut cmd)
        .args(["templates", "generate", "--region", "us-east-1", "--endpoint-url", &endpoint()])
        .args(["--instance-types", "t3.micro,t3.small", "--max-number", "7"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let templates = doc["templates"].as_array().unwrap();
    assert_eq!(templates.len(), 2, "{doc}");
    assert_eq!(templates[0]["vmType"], "t3.micro");
    assert_eq!(templates[0]["maxNumber"], 7);
    assert_eq!(templates[1]["vmTypes"], json!({"t3.micro": 1, "t3.small": 1}));
    let file = env.path("generated.json");
    std::fs::write(&file, &out.stdout).unwrap();
    let valid = env.ohf().args(["templates", "validate", "-f"]).arg(&file).output().unwrap();
    assert!(valid.status.success(), "{}", String::from_utf8_lossy(&valid.stdout));
}
