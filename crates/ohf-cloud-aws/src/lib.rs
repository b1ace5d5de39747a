//! The AWS adapter of the cloud-provider port: the only crate that uses the AWS SDK.
//!
//! Launches go through RunInstances or EC2 Fleet (`instant`), carry ohf's client token and
//! tags, and reuse one launch template per template version. Describes are batched: at most
//! one call by instance ids and one by request tag per reconcile cycle (paginated), whatever
//! the number of requests (plus, when spot machines run, one call for AWS's interruption
//! notices). Terminations go in batches of 1,000. EC2 Fleet `request`/`maintain`, Spot Fleet and
//! Auto Scaling groups live in `fleets`.

mod config;
mod discover;
mod errors;
mod fleets;
mod images;
mod launch;
mod observe;
mod permissions;
mod venues;

use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{Filter, InstanceType};
use ohf_app::ports::tag_keys;
use ohf_app::{
    CloudError, CloudErrorKind, CloudProvider, DescribeQuery, LaunchRequest, LaunchResult, OwnedMachine, Ownership,
    ProviderCapacity, Refusal,
};
use ohf_domain::instance_types::InstanceTypeInfo;
use ohf_domain::template::ProviderApi;
use ohf_domain::{MachineObservation, MachineStatus, ProviderName, RequestId, Template};

pub use config::{AwsConfig, Secret};
pub use discover::{Discovery, Image, SecurityGroup, Subnet, Vpc};
pub use errors::kind_of;

/// EC2 takes at most 1,000 instance ids per call.
pub(crate) const BATCH: usize = 1000;
/// EC2 takes at most 200 values per filter.
pub(crate) const FILTER_VALUES: usize = 200;

/// One AWS account and region.
pub struct AwsProvider {
    name: ProviderName,
    ec2: Client,
    autoscaling: aws_sdk_autoscaling::Client,
    sts: aws_sdk_sts::Client,
    ssm: aws_sdk_ssm::Client,
    quotas: aws_sdk_servicequotas::Client,
    /// The account's vCPU quota as last read, and when: one read serves every venue of a
    /// recalculation.
    vcpu_quota: std::sync::Mutex<Option<(std::time::Instant, Option<u64>)>>,
    /// Images read from SSM parameters, by template version.
    images: std::sync::Mutex<std::collections::HashMap<String, String>>,
    region: String,
    calls: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

/// The SDK's HTTP client (rustls), with every call going through the proxy at `url`.
fn proxied_client(url: &str) -> Result<aws_smithy_runtime_api::client::http::SharedHttpClient, String> {
    use aws_smithy_http_client::{Builder, Connector, proxy::ProxyConfig, tls};
    let proxy = ProxyConfig::all(url).map_err(|e| format!("proxy_url '{url}': {e}"))?;
    Ok(Builder::new().build_with_connector_fn(move |settings, _components| {
        let mut connector = Connector::builder().proxy_config(proxy.clone());
        if let Some(settings) = settings {
            connector = connector.connector_settings(settings.clone());
        }
        connector.tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc)).build()
    }))
}

impl AwsProvider {
    /// Connects with `config`; credentials come from the standard chain unless the config
    /// names a profile, a credentials file or static keys.
    pub async fn connect(name: ProviderName, config: &AwsConfig) -> Result<Self, String> {
        config.validate()?;
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(config.region.clone()))
            .timeout_config(
                TimeoutConfig::builder().connect_timeout(Duration::from_millis(config.connect_timeout_ms)).build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(config.request_attempts));
        if let Some(profile) = &config.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(file) = &config.credentials_file {
            use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
            let files = EnvConfigFiles::builder()
                .include_default_config_file(true)
                .with_file(EnvConfigFileKind::Credentials, file)
                .build();
            loader = loader.profile_files(files);
        }
        if let (Some(key), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
            let creds = aws_sdk_ec2::config::Credentials::new(key, secret.expose(), None, None, "ohf-config");
            loader = loader.credentials_provider(creds);
        }
        if let Some(url) = &config.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(url) = &config.proxy_url {
            loader = loader.http_client(proxied_client(url)?);
        }
        let shared = loader.load().await;
        Ok(Self {
            name,
            ec2: Client::new(&shared),
            autoscaling: aws_sdk_autoscaling::Client::new(&shared),
            sts: aws_sdk_sts::Client::new(&shared),
            ssm: aws_sdk_ssm::Client::new(&shared),
            quotas: aws_sdk_servicequotas::Client::new(&shared),
            vcpu_quota: Default::default(),
            images: Default::default(),
            region: config.region.clone(),
            calls: Default::default(),
        })
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// The EC2 client, counting one call of `operation`.
    pub(crate) fn ec2(&self, operation: &'static str) -> &Client {
        *self.calls.lock().unwrap_or_else(|p| p.into_inner()).entry(operation).or_default() += 1;
        &self.ec2
    }

    /// The SSM client, counting one call of `operation`.
    pub(crate) fn ssm(&self, operation: &'static str) -> &aws_sdk_ssm::Client {
        *self.calls.lock().unwrap_or_else(|p| p.into_inner()).entry(operation).or_default() += 1;
        &self.ssm
    }

    /// The STS client, counting one call of `operation`.
    pub(crate) fn sts(&self, operation: &'static str) -> &aws_sdk_sts::Client {
        *self.calls.lock().unwrap_or_else(|p| p.into_inner()).entry(operation).or_default() += 1;
        &self.sts
    }

    /// The Service Quotas client, counting one call of `operation`.
    pub(crate) fn quotas(&self, operation: &'static str) -> &aws_sdk_servicequotas::Client {
        *self.calls.lock().unwrap_or_else(|p| p.into_inner()).entry(operation).or_default() += 1;
        &self.quotas
    }

    /// The Auto Scaling client, counting one call of `operation`.
    pub(crate) fn asg(&self, operation: &'static str) -> &aws_sdk_autoscaling::Client {
        *self.calls.lock().unwrap_or_else(|p| p.into_inner()).entry(operation).or_default() += 1;
        &self.autoscaling
    }

    /// How many calls of each EC2 and Auto Scaling operation this provider has made.
    pub fn calls(&self) -> std::collections::BTreeMap<&'static str, u64> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Describes instances by id (in batches) and by filter, following every page.
    async fn describe_types(&self, names: &[String]) -> Result<Vec<(String, InstanceTypeInfo)>, CloudError> {
        let types: Vec<InstanceType> = names.iter().map(|n| InstanceType::from(n.as_str())).collect();
        let answer = self
            .ec2("DescribeInstanceTypes")
            .describe_instance_types()
            .set_instance_types(Some(types))
            .send()
            .await
            .map_err(|e| errors::translate("DescribeInstanceTypes", e))?;
        Ok(answer
            .instance_types()
            .iter()
            .filter_map(|t| {
                let name = t.instance_type()?.as_str().to_owned();
                let cpu = t.v_cpu_info()?;
                let arch = t
                    .processor_info()?
                    .supported_architectures()
                    .iter()
                    .find_map(|a| InstanceTypeInfo::arch_of(a.as_str()))?;
                let info = InstanceTypeInfo {
                    vcpus: u32::try_from(cpu.default_v_cpus()?).ok()?,
                    threads_per_core: cpu.default_threads_per_core().and_then(|n| u32::try_from(n).ok()).unwrap_or(1),
                    memory_mib: u64::try_from(t.memory_info()?.size_in_mib()?).ok()?,
                    arch,
                };
                Some((name, info))
            })
            .collect())
    }

    pub(crate) async fn describe_instances(
        &self,
        ids: &[String],
        filters: Vec<Filter>,
    ) -> Result<Vec<aws_sdk_ec2::types::Instance>, CloudError> {
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut call = self
                .ec2("DescribeInstances")
                .describe_instances()
                .set_next_token(next.take())
                .set_filters(Some(filters.clone()));
            if ids.is_empty() {
                // Filters page; the largest page keeps a cycle to one call per filter.
                call = call.max_results(1000);
            } else {
                call = call.set_instance_ids(Some(ids.to_vec()));
            }
            let page = call.send().await.map_err(|e| errors::translate("DescribeInstances", e))?;
            for r in page.reservations() {
                out.extend(r.instances().iter().cloned());
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                _ => return Ok(out),
            }
        }
    }

    /// The instances of `ids` that exist, in batches; unknown ids are skipped.
    pub(crate) async fn describe_known(&self, ids: &[String]) -> Result<Vec<aws_sdk_ec2::types::Instance>, CloudError> {
        let mut found = Vec::new();
        for chunk in ids.chunks(BATCH) {
            match self.describe_instances(chunk, Vec::new()).await {
                Ok(list) => found.extend(list),
                // One unknown id fails the whole call: ask again without the missing ones.
                Err(e) if e.kind == CloudErrorKind::NotFound => {
                    let known = observe::without_missing(chunk, &e.message);
                    if !known.is_empty() {
                        found.extend(self.describe_instances(&known, Vec::new()).await?);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(found)
    }

    /// The interruption notices AWS has given for the spot instances `ids`: one call per 200.
    async fn interruption_notices(
        &self,
        ids: &[String],
    ) -> Result<std::collections::BTreeMap<String, ohf_domain::Timestamp>, CloudError> {
        let mut notices = std::collections::BTreeMap::new();
        for chunk in ids.chunks(FILTER_VALUES) {
            let out = self
                .ec2("DescribeSpotInstanceRequests")
                .describe_spot_instance_requests()
                .filters(Filter::builder().name("instance-id").set_values(Some(chunk.to_vec())).build())
                .filters(
                    Filter::builder()
                        .name("status-code")
                        .values("marked-for-termination")
                        .values("marked-for-stop")
                        .values("marked-for-hibernation")
                        .build(),
                )
                .send()
                .await
                .map_err(|e| errors::translate("DescribeSpotInstanceRequests", e))?;
            notices.extend(observe::interruptions(out.spot_instance_requests()));
        }
        Ok(notices)
    }

    fn observe(&self, instances: &[aws_sdk_ec2::types::Instance]) -> Vec<MachineObservation> {
        instances.iter().filter_map(|i| observe::observation(&self.name, i)).collect()
    }
}

fn supported(template: &Template) -> Result<(), CloudError> {
    let refuse = |m: String| Err(CloudError::new(CloudErrorKind::Validation, "UnsupportedTemplate", m));
    if template.provider_api() == ProviderApi::SpotFleet && template.fleet_role().is_none() {
        return refuse("SpotFleet needs fleetRole: the IAM role that lets Spot Fleet launch instances".into());
    }
    if template.image_id().is_none() && template.launch_template_id().is_none() {
        return refuse("the template needs imageId or launchTemplateId".into());
    }
    if template.vm_types().is_empty()
        && template.launch_template_id().is_none()
        && template.instance_requirements().is_none()
    {
        return refuse("the template needs vmType, vmTypes or instanceRequirements".into());
    }
    Ok(())
}

#[async_trait]
impl CloudProvider for AwsProvider {
    /// EC2's names, and a release named by the resource's own id: `sfr-…` a Spot Fleet,
    /// `fleet-…` an EC2 Fleet, anything else an Auto Scaling group.
    fn call_name(&self, call: ohf_app::ProviderCall<'_>) -> ohf_app::CallName {
        use ohf_app::ports::operations::{RELEASE_FLEET, RELEASE_GROUP, RELEASE_SPOT_FLEET};
        match call {
            ohf_app::ProviderCall::Release(resource) => {
                let (operation, service) = if resource.starts_with("sfr-") {
                    (RELEASE_SPOT_FLEET, "spot_fleet")
                } else if resource.starts_with("fleet-") {
                    (RELEASE_FLEET, "ec2")
                } else {
                    (RELEASE_GROUP, "autoscaling")
                };
                ohf_app::CallName { operation, service }
            }
            other => ohf_app::ports::ec2_call_name(other),
        }
    }
    fn name(&self) -> &ProviderName {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "aws"
    }

    fn capabilities(&self) -> &'static [&'static str] {
        &["instances", "spot_instances", "fleets", "auto_scaling", "launch_templates"]
    }

    async fn instance_types(&self, names: &[String]) -> Result<Vec<(String, InstanceTypeInfo)>, CloudError> {
        let mut found = Vec::new();
        // One unknown name fails a whole call, so names go one call per hundred, and a call
        // refused for a bad name is retried name by name.
        for chunk in names.chunks(100) {
            match self.describe_types(chunk).await {
                Ok(list) => found.extend(list),
                Err(e) if e.kind == CloudErrorKind::Validation && chunk.len() > 1 => {
                    for name in chunk {
                        if let Ok(list) = self.describe_types(std::slice::from_ref(name)).await {
                            found.extend(list);
                        }
                    }
                }
                Err(e) if e.kind == CloudErrorKind::Validation => {}
                Err(e) => return Err(e),
            }
        }
        Ok(found)
    }

    async fn health_check(&self) -> Result<(), CloudError> {
        // One page of at most five: the cheapest call the policy already allows.
        self.ec2("DescribeInstances")
            .describe_instances()
            .max_results(5)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| errors::translate("DescribeInstances", e))
    }

    async fn check_template(&self, template: &Template) -> Result<(), CloudError> {
        supported(template)
    }

    async fn check_zones(&self, template: &Template, zones: &[String]) -> Result<(), CloudError> {
        launch::check_zones(self, template, zones).await
    }

    async fn identity(&self) -> Result<Option<String>, CloudError> {
        self.caller().await.map(Some)
    }

    async fn inspect(&self, template: &Template) -> Result<Vec<String>, CloudError> {
        // A missing or foreign reference is a finding; anything else (no access, no answer)
        // means the account could not be asked.
        let finding = |e: CloudError| match e.kind {
            CloudErrorKind::NotFound | CloudErrorKind::Validation => Ok(e.message),
            _ => Err(e),
        };
        let mut problems = Vec::new();
        let image = match self.image_of(template).await {
            Ok(image) => image,
            Err(e) => {
                problems.push(finding(e)?);
                None
            }
        };
        if let Some(image) = image.as_deref() {
            let out = self.ec2("DescribeImages").describe_images().image_ids(image).send().await;
            match out.map_err(|e| errors::translate("DescribeImages", e)) {
                Ok(found) if found.images().is_empty() => problems.push(format!("image {image} does not exist here")),
                Ok(_) => {}
                Err(e) => problems.push(finding(e)?),
            }
        }
        if !template.subnet_ids().is_empty() {
            let ids = template.subnet_ids().to_vec();
            let out = self.ec2("DescribeSubnets").describe_subnets().set_subnet_ids(Some(ids)).send().await;
            match out.map_err(|e| errors::translate("DescribeSubnets", e)) {
                Ok(found) => {
                    let zones: Vec<(String, String)> = found
                        .subnets()
                        .iter()
                        .filter_map(|s| Some((s.subnet_id()?.to_owned(), s.availability_zone()?.to_owned())))
                        .collect();
                    problems.extend(self.types_not_offered(template, &zones).await?);
                }
                Err(e) => problems.push(finding(e)?),
            }
        }
        if !template.security_group_ids().is_empty() {
            let ids = template.security_group_ids().to_vec();
            let out =
                self.ec2("DescribeSecurityGroups").describe_security_groups().set_group_ids(Some(ids)).send().await;
            if let Err(e) = out.map_err(|e| errors::translate("DescribeSecurityGroups", e)) {
                problems.push(finding(e)?);
            }
        }
        problems.extend(self.denied_calls(template).await);
        Ok(problems)
    }

    async fn measure_venue(
        &self,
        venue: &ohf_app::ports::VenueQuery,
    ) -> Result<ohf_app::ports::VenueReading, CloudError> {
        venues::measure(self, venue).await
    }

    async fn spot_prices(
        &self,
        instance_types: &[String],
    ) -> Result<std::collections::BTreeMap<String, f64>, CloudError> {
        venues::spot_prices(self, instance_types, None).await
    }

    async fn capacity(&self, _template: &Template) -> Result<Option<ProviderCapacity>, CloudError> {
        // EC2 publishes no free-capacity figure; a shortage shows at launch.
        Ok(None)
    }

    async fn launch(&self, request: &LaunchRequest) -> Result<LaunchResult, CloudError> {
        supported(&request.template)?;
        use ohf_domain::template::FleetType;
        match request.template.provider_api() {
            ProviderApi::RunInstances => launch::run_instances(self, request).await,
            ProviderApi::Ec2Fleet if request.template.fleet_type().is_none_or(|f| f == FleetType::Instant) => {
                launch::ec2_fleet(self, request).await
            }
            _ => fleets::launch(self, request).await,
        }
    }

    async fn follow(&self, launches: &[LaunchRequest]) -> Result<Vec<Result<LaunchResult, CloudError>>, CloudError> {
        fleets::follow_many(self, launches).await
    }

    async fn describe(&self, query: &DescribeQuery) -> Result<Vec<MachineObservation>, CloudError> {
        let mut found = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let ids: Vec<String> = query.machine_ids.iter().map(|m| m.to_string()).collect();
        found.extend(self.describe_known(&ids).await?);
        let requests: Vec<String> = query.request_ids.iter().map(|r| r.to_string()).collect();
        for chunk in requests.chunks(FILTER_VALUES) {
            let filter = Filter::builder()
                .name(format!("tag:{}", tag_keys::REQUEST_ID))
                .set_values(Some(chunk.to_vec()))
                .build();
            found.extend(self.describe_instances(&[], vec![filter]).await?);
        }
        if let Some(cluster) = &query.cluster {
            let filters = vec![
                Filter::builder().name(format!("tag:{}", tag_keys::CLUSTER)).values(cluster).build(),
                launch::live_filter(),
            ];
            found.extend(self.describe_instances(&[], filters).await?);
        }
        found.retain(|i| i.instance_id().is_some_and(|id| seen.insert(id.to_owned())));
        let mut observed = self.observe(&found);
        let spot: Vec<String> = observed
            .iter()
            .filter(|o| o.price_type == Some(ohf_domain::PriceType::Spot) && o.status == MachineStatus::Running)
            .map(|o| o.id.to_string())
            .collect();
        if !spot.is_empty() {
            // Notices are worth having, not worth failing the cycle for.
            match self.interruption_notices(&spot).await {
                Ok(notices) => {
                    for o in &mut observed {
                        o.interruption_at = notices.get(o.id.as_str()).copied();
                    }
                }
                Err(e) => tracing::warn!(error = %e, "spot interruption notices unavailable this cycle"),
            }
        }
        Ok(observed)
    }

    async fn terminate(&self, machines: &[OwnedMachine], owner: &Ownership) -> Result<Vec<Refusal>, CloudError> {
        // One describe proves ownership from each instance's tags and names its fleet or group.
        let ids: Vec<String> = machines.iter().map(|m| m.id.to_string()).collect();
        let found = self.describe_known(&ids).await?;
        let mut refused = Vec::new();
        let mut proven = Vec::new();
        for i in found {
            let Some(m) = machines.iter().find(|m| Some(m.id.as_str()) == i.instance_id()) else { continue };
            match owner.disproof(|k| observe::tag(&i, k), &m.request_id) {
                Some(reason) => refused.push(Refusal { id: m.id.clone(), reason }),
                None => proven.push((i, m.request_id.clone())),
            }
        }
        let (ids, not_owned) = fleets::shrink_owners(self, &proven, owner).await?;
        refused.extend(not_owned);
        for chunk in ids.chunks(BATCH) {
            let result = self
                .ec2("TerminateInstances")
                .terminate_instances()
                .set_instance_ids(Some(chunk.to_vec()))
                .send()
                .await;
            match result.map_err(|e| errors::translate("TerminateInstances", e)) {
                Ok(_) => {}
                // Gone already is what we wanted; terminate the rest.
                Err(e) if e.kind == CloudErrorKind::NotFound => {
                    let known = observe::without_missing(chunk, &e.message);
                    if !known.is_empty() {
                        self.ec2("TerminateInstances")
                            .terminate_instances()
                            .set_instance_ids(Some(known))
                            .send()
                            .await
                            .map_err(|e| errors::translate("TerminateInstances", e))?;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        for r in &refused {
            tracing::warn!(machine = %r.id, reason = %r.reason, "left alone: not provably ohf's");
        }
        Ok(refused)
    }

    async fn release(&self, resource: &str, request: &RequestId, owner: &Ownership) -> Result<(), CloudError> {
        fleets::release(self, resource, request, owner).await
    }

    /// Deletes this installation's launch templates that no template version in `keep` is made
    /// from (a template changed or removed, its requests finished). Another installation's,
    /// under the same cluster name, are left alone.
    async fn prune(&self, keep: &[Template], owner: &Ownership) -> Result<Vec<String>, CloudError> {
        let cluster = owner.cluster.as_str();
        let wanted: std::collections::HashSet<String> = keep
            .iter()
            .filter(|t| t.launch_template_id().is_none())
            .map(|t| launch::launch_template_name(t, owner).0)
            .collect();
        let mut unused = Vec::new();
        let mut next = None;
        loop {
            let page = self
                .ec2("DescribeLaunchTemplates")
                .describe_launch_templates()
                .filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name(format!("tag:{}", ohf_app::ports::tag_keys::CLUSTER))
                        .values(cluster)
                        .build(),
                )
                .max_results(200)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| errors::translate("DescribeLaunchTemplates", e))?;
            for lt in page.launch_templates() {
                let installation =
                    lt.tags().iter().find(|t| t.key() == Some(tag_keys::INSTALLATION)).and_then(|t| t.value());
                if let (Some(id), Some(name)) = (lt.launch_template_id(), lt.launch_template_name())
                    && name.starts_with("ohf-")
                    && !wanted.contains(name)
                    && installation.is_none_or(|i| i == owner.installation)
                {
                    unused.push((id.to_owned(), name.to_owned()));
                }
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                _ => break,
            }
        }
        let mut deleted = Vec::new();
        for (id, name) in unused {
            match self.ec2("DeleteLaunchTemplate").delete_launch_template().launch_template_id(&id).send().await {
                Ok(_) => {
                    tracing::info!(launch_template = %name, "deleted an unused launch template");
                    deleted.push(name);
                }
                Err(e) => {
                    let e = errors::translate("DeleteLaunchTemplate", e);
                    if e.kind != CloudErrorKind::NotFound {
                        return Err(e);
                    }
                }
            }
        }
        Ok(deleted)
    }
}
