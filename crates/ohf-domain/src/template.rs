//! Templates as Host Factory's `awsprov_templates.json` describes them, parsed and validated.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::instance_types::{self, InstanceTypeInfo};
use crate::requirements::InstanceRequirements;
use crate::{DomainError, ProviderName, Tags, TemplateId};

/// How machines of a template are priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PriceType {
    /// On-demand instances only.
    Ondemand,
    /// Spot instances only.
    Spot,
    /// Spot and on-demand together (`percentOnDemand`).
    Heterogeneous,
}

impl PriceType {
    /// Its Host Factory name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ondemand => "ondemand",
            Self::Spot => "spot",
            Self::Heterogeneous => "heterogeneous",
        }
    }

    fn parse(s: &str) -> Result<Self, DomainError> {
        match s.to_ascii_lowercase().as_str() {
            "ondemand" | "on-demand" => Ok(Self::Ondemand),
            "spot" => Ok(Self::Spot),
            "heterogeneous" => Ok(Self::Heterogeneous),
            other => Err(DomainError::validation(
                "priceType",
                format!("'{other}' is not one of ondemand, spot, heterogeneous"),
            )),
        }
    }
}

impl fmt::Display for PriceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The cloud API a template launches through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProviderApi {
    /// RunInstances, one call per launch.
    RunInstances,
    /// An EC2 Fleet (instant, request or maintain).
    #[serde(rename = "EC2Fleet")]
    Ec2Fleet,
    /// A Spot Fleet request.
    SpotFleet,
    /// An Auto Scaling group.
    #[serde(rename = "ASG")]
    Asg,
}

impl ProviderApi {
    /// Its Host Factory name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RunInstances => "RunInstances",
            Self::Ec2Fleet => "EC2Fleet",
            Self::SpotFleet => "SpotFleet",
            Self::Asg => "ASG",
        }
    }

    fn parse(s: &str) -> Result<Self, DomainError> {
        match s.to_ascii_lowercase().as_str() {
            "runinstances" => Ok(Self::RunInstances),
            "ec2fleet" => Ok(Self::Ec2Fleet),
            "spotfleet" => Ok(Self::SpotFleet),
            "asg" | "autoscalinggroup" => Ok(Self::Asg),
            _ => Err(DomainError::validation(
                "providerApi",
                format!("'{s}' is not one of RunInstances, EC2Fleet, SpotFleet, ASG"),
            )),
        }
    }
}

/// How an EC2 or Spot fleet keeps its capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FleetType {
    /// One call that answers with the machines.
    Instant,
    /// A request the fleet fills once.
    Request,
    /// A request the fleet keeps filled.
    Maintain,
}

impl FleetType {
    fn parse(s: &str) -> Result<Self, DomainError> {
        match s.to_ascii_lowercase().as_str() {
            "instant" => Ok(Self::Instant),
            "request" => Ok(Self::Request),
            "maintain" => Ok(Self::Maintain),
            _ => Err(DomainError::validation("fleetType", format!("'{s}' is not one of instant, request, maintain"))),
        }
    }
}

/// The kind of a Host Factory attribute value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttributeKind {
    /// Text.
    String,
    /// A number.
    Numeric,
    /// true or false.
    Boolean,
}

impl AttributeKind {
    /// Its Host Factory name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "String",
            Self::Numeric => "Numeric",
            Self::Boolean => "Boolean",
        }
    }
}

/// One template attribute, rendered to Host Factory as `[kind, value-as-string]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribute {
    /// The value's kind.
    pub kind: AttributeKind,
    /// The value, as text.
    pub value: String,
}

impl Attribute {
    fn parse(name: &str, raw: &Value) -> Result<Self, DomainError> {
        let field = format!("attributes.{name}");
        match raw {
            Value::Array(parts) => {
                let [kind, value] = parts.as_slice() else {
                    return Err(DomainError::validation(field, "must be [kind, value]"));
                };
                let kind = match kind.as_str() {
                    Some("String") => AttributeKind::String,
                    Some("Numeric") => AttributeKind::Numeric,
                    Some("Boolean") => AttributeKind::Boolean,
                    _ => return Err(DomainError::validation(field, "kind must be String, Numeric or Boolean")),
                };
                let value = match value {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return Err(DomainError::validation(field, "value must be a string, number or boolean")),
                };
                if kind == AttributeKind::Numeric && value.parse::<f64>().is_err() {
                    return Err(DomainError::validation(field, format!("'{value}' is not numeric")));
                }
                Ok(Self { kind, value })
            }
            Value::String(s) => Ok(Self { kind: AttributeKind::String, value: s.clone() }),
            Value::Number(n) => Ok(Self { kind: AttributeKind::Numeric, value: n.to_string() }),
            Value::Bool(b) => Ok(Self { kind: AttributeKind::Boolean, value: b.to_string() }),
            _ => Err(DomainError::validation(field, "must be a value or [kind, value]")),
        }
    }
}

/// A validated machine template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    id: TemplateId,
    max_number: i32,
    attributes: BTreeMap<String, Attribute>,
    image_id: Option<String>,
    subnet_ids: Vec<String>,
    vm_types: BTreeMap<String, u32>,
    vm_types_on_demand: BTreeMap<String, u32>,
    vm_types_priority: BTreeMap<String, u32>,
    price_type: PriceType,
    percent_on_demand: Option<u32>,
    allocation_strategy: Option<String>,
    allocation_strategy_on_demand: Option<String>,
    max_spot_price: Option<f64>,
    spot_fleet_request_expiry_mins: u32,
    pools_count: Option<u32>,
    fleet_role: Option<String>,
    security_group_ids: Vec<String>,
    key_name: Option<String>,
    instance_profile: Option<String>,
    user_data_script: Option<String>,
    instance_tags: Tags,
    root_device_volume_size: Option<u32>,
    volume_type: Option<String>,
    iops: Option<u32>,
    launch_template_id: Option<String>,
    provider_api: ProviderApi,
    fleet_type: Option<FleetType>,
    provider: Option<ProviderName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    instance_requirements: Option<InstanceRequirements>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTemplate {
    template_id: Option<Value>,
    max_number: Option<Value>,
    #[serde(default)]
    attributes: BTreeMap<String, Value>,
    image_id: Option<String>,
    subnet_id: Option<Value>,
    subnet_ids: Option<Value>,
    vm_type: Option<String>,
    vm_types: Option<BTreeMap<String, Value>>,
    vm_types_on_demand: Option<BTreeMap<String, Value>>,
    vm_types_priority: Option<BTreeMap<String, Value>>,
    price_type: Option<String>,
    percent_on_demand: Option<Value>,
    allocation_strategy: Option<String>,
    allocation_strategy_on_demand: Option<String>,
    max_spot_price: Option<Value>,
    spot_fleet_request_expiry: Option<Value>,
    pools_count: Option<Value>,
    fleet_role: Option<String>,
    security_group_ids: Option<Value>,
    key_name: Option<String>,
    instance_profile: Option<String>,
    user_data_script: Option<String>,
    instance_tags: Option<String>,
    root_device_volume_size: Option<Value>,
    volume_type: Option<String>,
    iops: Option<Value>,
    launch_template_id: Option<String>,
    provider_api: Option<String>,
    fleet_type: Option<String>,
    provider: Option<String>,
    instance_requirements: Option<Value>,
}

fn number(field: &str, raw: &Option<Value>) -> Result<Option<f64>, DomainError> {
    match raw {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .map(Some)
            .map_err(|_| DomainError::validation(field, format!("'{s}' is not a number"))),
        Some(other) => Err(DomainError::validation(field, format!("{other} is not a number"))),
    }
}

fn whole(field: &str, raw: &Option<Value>, min: i64, max: i64) -> Result<Option<i64>, DomainError> {
    let Some(n) = number(field, raw)? else { return Ok(None) };
    if n.fract() != 0.0 || n < min as f64 || n > max as f64 {
        return Err(DomainError::validation(field, format!("must be a whole number from {min} to {max}, got {n}")));
    }
    Ok(Some(n as i64))
}

fn string_list(field: &str, raw: &Option<Value>) -> Result<Vec<String>, DomainError> {
    match raw {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(String::from).ok_or_else(|| DomainError::validation(field, "must list strings")))
            .collect(),
        Some(_) => Err(DomainError::validation(field, "must be a string or a list of strings")),
    }
}

fn weights(field: &str, raw: Option<BTreeMap<String, Value>>) -> Result<BTreeMap<String, u32>, DomainError> {
    raw.unwrap_or_default()
        .into_iter()
        .map(|(name, w)| {
            let w = whole(&format!("{field}.{name}"), &Some(w), 1, 10_000)?.unwrap_or(1);
            Ok((name, w as u32))
        })
        .collect()
}

impl Template {
    /// Parses and validates one template object of the Host Factory template file.
    pub fn from_json(raw: &Value) -> Result<Self, DomainError> {
        let raw: RawTemplate =
            serde_json::from_value(raw.clone()).map_err(|e| DomainError::validation("template", e.to_string()))?;
        let id = match &raw.template_id {
            Some(Value::String(s)) => TemplateId::new(s.clone())?,
            Some(_) => return Err(DomainError::validation("templateId", "must be a string")),
            None => return Err(DomainError::validation("templateId", "is required")),
        };
        let in_template = |e: DomainError| match e {
            DomainError::Validation { field, message } => {
                DomainError::validation(format!("{field} of template '{id}'"), message)
            }
            other => other,
        };
        Self::build(id.clone(), raw).map_err(in_template)
    }

    fn build(id: TemplateId, raw: RawTemplate) -> Result<Self, DomainError> {
        let max_number = whole("maxNumber", &raw.max_number, -1, 10_000)?
            .ok_or_else(|| DomainError::validation("maxNumber", "is required"))? as i32;
        let mut vm_types = weights("vmTypes", raw.vm_types)?;
        if let Some(t) = &raw.vm_type {
            vm_types.entry(t.clone()).or_insert(1);
        }
        crate::limits::check_len("vmTypes", vm_types.len(), crate::limits::MAX_VM_TYPES)?;
        let vm_types_on_demand = weights("vmTypesOnDemand", raw.vm_types_on_demand)?;
        let vm_types_priority = weights("vmTypesPriority", raw.vm_types_priority)?;
        let instance_requirements = match raw.instance_requirements {
            None | Some(Value::Null) => None,
            Some(v) => {
                let r: InstanceRequirements = serde_json::from_value(v)
                    .map_err(|e| DomainError::validation("instanceRequirements", e.to_string()))?;
                r.check()?;
                Some(r)
            }
        };
        if instance_requirements.is_some() && !vm_types.is_empty() {
            return Err(DomainError::validation(
                "instanceRequirements",
                "names the types by their figures: leave out vmType and vmTypes",
            ));
        }
        if vm_types.is_empty() && raw.launch_template_id.is_none() && instance_requirements.is_none() {
            return Err(DomainError::validation(
                "vmType",
                "a template needs vmType, vmTypes, instanceRequirements or launchTemplateId",
            ));
        }
        if raw.image_id.as_deref().is_none_or(str::is_empty) && raw.launch_template_id.is_none() {
            return Err(DomainError::validation("imageId", "is required unless launchTemplateId is given"));
        }
        let price_type = raw.price_type.as_deref().map(PriceType::parse).transpose()?.unwrap_or(PriceType::Ondemand);
        let percent_on_demand = whole("percentOnDemand", &raw.percent_on_demand, 0, 100)?.map(|p| p as u32);
        let max_spot_price = number("maxSpotPrice", &raw.max_spot_price)?;
        if max_spot_price.is_some_and(|p| p <= 0.0) {
            return Err(DomainError::validation("maxSpotPrice", "must be positive"));
        }
        let expiry = whole("spotFleetRequestExpiry", &raw.spot_fleet_request_expiry, 1, 525_600)?.unwrap_or(30);
        let provider_api = match raw.provider_api.as_deref() {
            Some(api) => ProviderApi::parse(api)?,
            None if instance_requirements.is_some() => ProviderApi::Ec2Fleet,
            None if price_type == PriceType::Ondemand && vm_types.len() <= 1 => ProviderApi::RunInstances,
            None => ProviderApi::Ec2Fleet,
        };
        let fleet_type = raw.fleet_type.as_deref().map(FleetType::parse).transpose()?;
        if fleet_type.is_some() && !matches!(provider_api, ProviderApi::Ec2Fleet | ProviderApi::SpotFleet) {
            return Err(DomainError::validation("fleetType", "applies only to EC2Fleet and SpotFleet"));
        }
        if provider_api == ProviderApi::SpotFleet && fleet_type == Some(FleetType::Instant) {
            return Err(DomainError::validation("fleetType", "SpotFleet supports request and maintain only"));
        }
        if provider_api == ProviderApi::RunInstances && price_type == PriceType::Heterogeneous {
            return Err(DomainError::validation("priceType", "heterogeneous needs a fleet or ASG providerApi"));
        }
        if instance_requirements.is_some() && !matches!(provider_api, ProviderApi::Ec2Fleet | ProviderApi::Asg) {
            return Err(DomainError::validation("instanceRequirements", "applies only to EC2Fleet and ASG templates"));
        }
        let mut subnet_ids = string_list("subnetId", &raw.subnet_id)?;
        subnet_ids.extend(string_list("subnetIds", &raw.subnet_ids)?);
        let mut template = Self {
            id,
            max_number,
            attributes: BTreeMap::new(),
            image_id: raw.image_id.filter(|s| !s.is_empty()),
            subnet_ids,
            vm_types,
            vm_types_on_demand,
            vm_types_priority,
            price_type,
            percent_on_demand,
            allocation_strategy: raw.allocation_strategy,
            allocation_strategy_on_demand: raw.allocation_strategy_on_demand,
            max_spot_price,
            spot_fleet_request_expiry_mins: expiry as u32,
            pools_count: whole("poolsCount", &raw.pools_count, 1, 100)?.map(|p| p as u32),
            fleet_role: raw.fleet_role,
            security_group_ids: string_list("securityGroupIds", &raw.security_group_ids)?,
            key_name: raw.key_name,
            instance_profile: raw.instance_profile,
            user_data_script: raw.user_data_script,
            instance_tags: raw.instance_tags.as_deref().map(Tags::parse_hf).transpose()?.unwrap_or_default(),
            root_device_volume_size: whole("rootDeviceVolumeSize", &raw.root_device_volume_size, 1, 65_536)?
                .map(|v| v as u32),
            volume_type: raw.volume_type,
            iops: whole("iops", &raw.iops, 100, 256_000)?.map(|v| v as u32),
            launch_template_id: raw.launch_template_id,
            provider_api,
            fleet_type,
            provider: raw.provider.map(ProviderName::new).transpose()?,
            instance_requirements,
        };
        for (name, value) in &raw.attributes {
            template.attributes.insert(name.clone(), Attribute::parse(name, value)?);
        }
        template.derive_attributes(&HashMap::new(), false)?;
        Ok(template)
    }

    fn attributes_missing(&self) -> bool {
        ["type", "ncpus", "nram"].iter().any(|k| !self.attributes.contains_key(*k))
    }

    /// The instance types whose figures the template needs (it omits `type`, `ncpus` or
    /// `nram`) and the built-in table does not know: the provider must give them before the
    /// template can be offered.
    pub fn unresolved_types(&self) -> Vec<String> {
        if !self.attributes_missing() {
            return Vec::new();
        }
        self.vm_types.keys().filter(|t| instance_types::lookup(t).is_none()).cloned().collect()
    }

    /// Fills the attributes the template omits with the figures of `known` (from the cloud)
    /// beside the table's; refuses when some type is still unknown.
    pub fn resolve_types(&mut self, known: &HashMap<String, InstanceTypeInfo>) -> Result<(), DomainError> {
        self.derive_attributes(known, true)
    }

    /// Fills `type`, `ncpus` and `nram` from the instance-type figures when the template omits
    /// them: the smallest figures across the template's types, so no machine falls short. A
    /// figure nobody can give must be written in the template; it is never guessed. Unless
    /// `strict`, types nobody knows yet leave the attributes to `resolve_types`.
    fn derive_attributes(
        &mut self,
        known: &HashMap<String, InstanceTypeInfo>,
        strict: bool,
    ) -> Result<(), DomainError> {
        if !self.attributes_missing() {
            return Ok(());
        }
        if let Some(r) = &self.instance_requirements {
            // The smallest figures of the types the requirements admit.
            let matching = r.matching_types();
            if matching.is_empty() {
                return Err(DomainError::validation(
                    "attributes",
                    "set ncpus and nram: no instance type the table knows meets instanceRequirements",
                ));
            }
            let numeric = |v: String| Attribute { kind: AttributeKind::Numeric, value: v };
            if !self.attributes.contains_key("ncpus") {
                let ncpus = matching.iter().map(|(_, i)| i.ncpus()).min().unwrap_or_default();
                self.attributes.insert("ncpus".into(), numeric(ncpus.to_string()));
            }
            if !self.attributes.contains_key("nram") {
                let nram = matching.iter().map(|(_, i)| i.memory_mib).min().unwrap_or_default();
                self.attributes.insert("nram".into(), numeric(nram.to_string()));
            }
            if !self.attributes.contains_key("type") {
                self.attributes
                    .insert("type".into(), Attribute { kind: AttributeKind::String, value: r.arch().into() });
            }
            return Ok(());
        }
        let find = |t: &str| instance_types::lookup(t).or_else(|| known.get(t).copied());
        let unknown: Vec<&str> = self.vm_types.keys().filter(|t| find(t).is_none()).map(String::as_str).collect();
        if !unknown.is_empty() && !strict && !self.vm_types.is_empty() {
            return Ok(());
        }
        if self.vm_types.is_empty() || !unknown.is_empty() {
            let why = if unknown.is_empty() {
                "the template names no instance type".to_owned()
            } else {
                format!("neither the instance type table nor the provider knows {}", unknown.join(", "))
            };
            return Err(DomainError::validation("attributes", format!("set type, ncpus and nram: {why}")));
        }
        let infos: Vec<_> = self.vm_types.keys().filter_map(|t| find(t)).collect();
        let numeric = |v: String| Attribute { kind: AttributeKind::Numeric, value: v };
        if !self.attributes.contains_key("ncpus") {
            let ncpus = infos.iter().map(|i| i.ncpus()).min().unwrap_or_default();
            self.attributes.insert("ncpus".into(), numeric(ncpus.to_string()));
        }
        if !self.attributes.contains_key("nram") {
            let nram = infos.iter().map(|i| i.memory_mib).min().unwrap_or_default();
            self.attributes.insert("nram".into(), numeric(nram.to_string()));
        }
        if !self.attributes.contains_key("type") {
            let mut arches: Vec<&str> = infos.iter().map(|i| i.arch).collect();
            arches.dedup();
            if arches.len() > 1 {
                return Err(DomainError::validation("attributes", "set type: the instance types mix architectures"));
            }
            self.attributes.insert("type".into(), Attribute { kind: AttributeKind::String, value: arches[0].into() });
        }
        Ok(())
    }

    /// Parses a whole template file, `{"templates": [...]}`; every template must be valid and
    /// template ids must be unique.
    pub fn parse_file(text: &str) -> Result<Vec<Template>, DomainError> {
        let doc: Value = serde_json::from_str(text)
            .map_err(|e| DomainError::validation("templates file", format!("not valid JSON: {e}")))?;
        let list = doc
            .get("templates")
            .and_then(Value::as_array)
            .ok_or_else(|| DomainError::validation("templates file", "must be an object with a \"templates\" list"))?;
        let mut templates: Vec<Template> = Vec::with_capacity(list.len());
        for raw in list {
            let t = Template::from_json(raw)?;
            if templates.iter().any(|other| other.id == t.id) {
                return Err(DomainError::validation("templateId", format!("'{}' appears twice", t.id)));
            }
            templates.push(t);
        }
        Ok(templates)
    }

    /// The template in Host Factory's field names, with derived attributes filled in and unset
    /// fields left out.
    pub fn to_hf(&self) -> Value {
        let mut out = serde_json::Map::new();
        let mut put = |k: &str, v: Value| {
            if !(v.is_null() || v.as_array().is_some_and(Vec::is_empty) || v.as_object().is_some_and(|m| m.is_empty()))
            {
                out.insert(k.to_owned(), v);
            }
        };
        put("templateId", json!(self.id.as_str()));
        put("maxNumber", json!(self.max_number));
        let attributes: serde_json::Map<String, Value> =
            self.attributes.iter().map(|(k, a)| (k.clone(), json!([a.kind.as_str(), a.value]))).collect();
        put("attributes", Value::Object(attributes));
        put("imageId", json!(self.image_id));
        put("subnetIds", json!(self.subnet_ids));
        put("vmTypes", json!(self.vm_types));
        put("vmTypesOnDemand", json!(self.vm_types_on_demand));
        put("vmTypesPriority", json!(self.vm_types_priority));
        put("priceType", json!(self.price_type.as_str()));
        put("percentOnDemand", json!(self.percent_on_demand));
        put("allocationStrategy", json!(self.allocation_strategy));
        put("allocationStrategyOnDemand", json!(self.allocation_strategy_on_demand));
        put("maxSpotPrice", json!(self.max_spot_price));
        put("spotFleetRequestExpiry", json!(self.spot_fleet_request_expiry_mins));
        put("poolsCount", json!(self.pools_count));
        put("fleetRole", json!(self.fleet_role));
        put("securityGroupIds", json!(self.security_group_ids));
        put("keyName", json!(self.key_name));
        put("instanceProfile", json!(self.instance_profile));
        put("userDataScript", json!(self.user_data_script));
        put(
            "instanceTags",
            if self.instance_tags.is_empty() { Value::Null } else { json!(self.instance_tags.to_hf()) },
        );
        put("rootDeviceVolumeSize", json!(self.root_device_volume_size));
        put("volumeType", json!(self.volume_type));
        put("iops", json!(self.iops));
        put("launchTemplateId", json!(self.launch_template_id));
        put("providerApi", json!(self.provider_api.as_str()));
        put("fleetType", json!(self.fleet_type.map(|f| format!("{f:?}").to_lowercase())));
        put("provider", json!(self.provider.as_ref().map(|p| p.as_str())));
        put("instanceRequirements", json!(self.instance_requirements));
        Value::Object(out)
    }

    /// Its id.
    pub fn id(&self) -> &TemplateId {
        &self.id
    }
    /// Machines this template may hold at once; `None` is unlimited (Host Factory's −1).
    pub fn max_number(&self) -> Option<u32> {
        u32::try_from(self.max_number).ok()
    }
    /// The Host Factory attributes (ncpus, nram, type, …).
    pub fn attributes(&self) -> &BTreeMap<String, Attribute> {
        &self.attributes
    }
    /// The image to launch.
    pub fn image_id(&self) -> Option<&str> {
        self.image_id.as_deref()
    }
    /// Subnets to launch in.
    pub fn subnet_ids(&self) -> &[String] {
        &self.subnet_ids
    }
    /// Instance types with their weights.
    pub fn vm_types(&self) -> &BTreeMap<String, u32> {
        &self.vm_types
    }
    /// Instance types and their weights for the on-demand part.
    pub fn vm_types_on_demand(&self) -> &BTreeMap<String, u32> {
        &self.vm_types_on_demand
    }
    /// Instance types and their priorities (lower first).
    pub fn vm_types_priority(&self) -> &BTreeMap<String, u32> {
        &self.vm_types_priority
    }
    /// The instance type to prefer: the highest `vmTypesPriority` (lowest number), else the first.
    pub fn primary_vm_type(&self) -> Option<&str> {
        self.vm_types
            .keys()
            .min_by_key(|t| self.vm_types_priority.get(*t).copied().unwrap_or(u32::MAX))
            .map(String::as_str)
    }
    /// Attribute-based instance selection, in place of named types.
    pub fn instance_requirements(&self) -> Option<&InstanceRequirements> {
        self.instance_requirements.as_ref()
    }
    /// On demand, spot or both.
    pub fn price_type(&self) -> PriceType {
        self.price_type
    }
    /// The on-demand share of a heterogeneous template.
    pub fn percent_on_demand(&self) -> Option<u32> {
        self.percent_on_demand
    }
    /// The spot allocation strategy.
    pub fn allocation_strategy(&self) -> Option<&str> {
        self.allocation_strategy.as_deref()
    }
    /// The on-demand allocation strategy.
    pub fn allocation_strategy_on_demand(&self) -> Option<&str> {
        self.allocation_strategy_on_demand.as_deref()
    }
    /// The highest spot price to pay.
    pub fn max_spot_price(&self) -> Option<f64> {
        self.max_spot_price
    }
    /// This template with a spot price limit no higher than `limit` (a request's own): the
    /// lower of the two applies, so a request can only pay less than its template allows.
    #[must_use]
    pub fn limited_to_spot_price(mut self, limit: f64) -> Self {
        self.max_spot_price = Some(self.max_spot_price.map_or(limit, |own| own.min(limit)));
        self
    }
    /// Minutes a Spot Fleet request lives.
    pub fn spot_fleet_request_expiry_mins(&self) -> u32 {
        self.spot_fleet_request_expiry_mins
    }
    /// Spot pools to spread over.
    pub fn pools_count(&self) -> Option<u32> {
        self.pools_count
    }
    /// The IAM role of a Spot Fleet.
    pub fn fleet_role(&self) -> Option<&str> {
        self.fleet_role.as_deref()
    }
    /// Security groups.
    pub fn security_group_ids(&self) -> &[String] {
        &self.security_group_ids
    }
    /// The SSH key pair.
    pub fn key_name(&self) -> Option<&str> {
        self.key_name.as_deref()
    }
    /// The instance profile.
    pub fn instance_profile(&self) -> Option<&str> {
        self.instance_profile.as_deref()
    }
    /// The user data script.
    pub fn user_data_script(&self) -> Option<&str> {
        self.user_data_script.as_deref()
    }
    /// Tags for the instances.
    pub fn instance_tags(&self) -> &Tags {
        &self.instance_tags
    }
    /// Root volume size in GiB.
    pub fn root_device_volume_size(&self) -> Option<u32> {
        self.root_device_volume_size
    }
    /// Root volume type.
    pub fn volume_type(&self) -> Option<&str> {
        self.volume_type.as_deref()
    }
    /// Root volume IOPS.
    pub fn iops(&self) -> Option<u32> {
        self.iops
    }
    /// A launch template to launch from instead of the fields.
    pub fn launch_template_id(&self) -> Option<&str> {
        self.launch_template_id.as_deref()
    }
    /// The AWS API that launches it.
    pub fn provider_api(&self) -> ProviderApi {
        self.provider_api
    }
    /// How its fleet keeps capacity.
    pub fn fleet_type(&self) -> Option<FleetType> {
        self.fleet_type
    }
    /// The provider instance this template is pinned to, if any.
    pub fn provider(&self) -> Option<&ProviderName> {
        self.provider.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn minimal() -> Value {
        json!({"templateId": "OnDemand-Minimal", "maxNumber": 10, "imageId": "ami-1", "vmType": "m5.large"})
    }

    #[test]
    fn derives_ncpus_and_nram_from_the_instance_type() {
        let t = Template::from_json(&minimal()).unwrap();
        assert_eq!(t.attributes()["ncpus"], Attribute { kind: AttributeKind::Numeric, value: "1".into() });
        assert_eq!(t.attributes()["nram"].value, "8192");
        assert_eq!(t.attributes()["type"].value, "X86_64");
        assert_eq!(t.provider_api(), ProviderApi::RunInstances);
        assert_eq!(t.max_number(), Some(10));
    }

    #[test]
    fn accepts_attributes_as_plain_values_or_pairs() {
        let mut raw = minimal();
        raw["attributes"] =
            json!({"ncpus": 2, "nram": ["Numeric", "4096"], "type": ["String", "X86_64"], "gpu": false});
        let t = Template::from_json(&raw).unwrap();
        assert_eq!(t.attributes()["ncpus"].value, "2");
        assert_eq!(t.attributes()["nram"].value, "4096");
        assert_eq!(t.attributes()["gpu"].kind, AttributeKind::Boolean);
        raw["attributes"] = json!({"ncpus": ["Numeric", "two"]});
        assert!(Template::from_json(&raw).is_err());
        raw["attributes"] = json!({"ncpus": ["Float", "2"]});
        assert!(Template::from_json(&raw).is_err());
    }

    #[test]
    fn parses_every_fleet_field() {
        let raw = json!({
            "templateId": "Spot-Mix", "maxNumber": -1, "imageId": "ami-1",
            "vmTypes": {"m5.large": 1, "m5.xlarge": 2}, "vmTypesOnDemand": {"m5.large": 1},
            "vmTypesPriority": {"m5.xlarge": 1, "m5.large": 2},
            "priceType": "heterogeneous", "percentOnDemand": 25, "allocationStrategy": "capacityOptimized",
            "allocationStrategyOnDemand": "lowestPrice", "maxSpotPrice": "0.12", "spotFleetRequestExpiry": 45,
            "poolsCount": 2, "fleetRole": "arn:aws:iam::1:role/fleet", "subnetId": ["subnet-a", "subnet-b"],
            "securityGroupIds": ["sg-1"], "keyName": "k", "instanceProfile": "p", "userDataScript": "/x.sh",
            "instanceTags": "team=abc;project=x", "rootDeviceVolumeSize": 50, "volumeType": "gp3", "iops": 3000,
            "providerApi": "EC2Fleet", "fleetType": "request"
        });
        let t = Template::from_json(&raw).unwrap();
        assert_eq!(t.max_number(), None);
        assert_eq!(t.price_type(), PriceType::Heterogeneous);
        assert_eq!(t.vm_types().len(), 2);
        assert_eq!(t.primary_vm_type(), Some("m5.xlarge"));
        assert_eq!(t.max_spot_price(), Some(0.12));
        assert_eq!(t.spot_fleet_request_expiry_mins(), 45);
        assert_eq!(t.subnet_ids(), ["subnet-a", "subnet-b"]);
        assert_eq!(t.instance_tags().get("team"), Some("abc"));
        assert_eq!(t.fleet_type(), Some(FleetType::Request));
        assert_eq!(t.attributes()["ncpus"].value, "1", "the smallest of the types");
    }

    #[test]
    fn rejects_bad_templates_with_the_field_named() {
        let cases = [
            (json!({"maxNumber": 1, "imageId": "a", "vmType": "m5.large"}), "templateId"),
            (json!({"templateId": "bad id", "maxNumber": 1, "imageId": "a", "vmType": "m5.large"}), "templateId"),
            (json!({"templateId": "t", "maxNumber": 10001, "imageId": "a", "vmType": "m5.large"}), "maxNumber"),
            (json!({"templateId": "t", "maxNumber": 1, "imageId": "a"}), "vmType"),
            (json!({"templateId": "t", "maxNumber": 1, "vmType": "m5.large"}), "imageId"),
            (
                json!({"templateId": "t", "maxNumber": 1, "imageId": "a", "vmType": "m5.large", "priceType": "cheap"}),
                "priceType",
            ),
            (
                json!({"templateId": "t", "maxNumber": 1, "imageId": "a", "vmType": "m5.large", "providerApi": "Lambda"}),
                "providerApi",
            ),
            (
                json!({"templateId": "t", "maxNumber": 1, "imageId": "a", "vmType": "m5.large", "fleetType": "instant"}),
                "fleetType",
            ),
            (
                json!({"templateId": "t", "maxNumber": 1, "imageId": "a", "vmType": "m5.large", "percentOnDemand": 101, "providerApi": "EC2Fleet"}),
                "percentOnDemand",
            ),
        ];
        for (raw, field) in cases {
            let err = Template::from_json(&raw).unwrap_err();
            assert!(err.to_string().contains(field), "{err} should name {field}");
        }
    }

    #[test]
    fn figures_the_table_cannot_give_are_never_guessed() {
        let mut raw = minimal();
        raw["vmType"] = json!("z9.huge");
        // Parsed, but waiting for the provider's figures of z9.huge.
        let mut t = Template::from_json(&raw).unwrap();
        assert_eq!(t.unresolved_types(), ["z9.huge"]);
        let err = t.clone().resolve_types(&HashMap::new()).unwrap_err();
        assert!(err.to_string().contains("nor the provider knows z9.huge"), "{err}");
        let huge = InstanceTypeInfo { vcpus: 96, threads_per_core: 2, memory_mib: 393_216, arch: "ARM64" };
        t.resolve_types(&HashMap::from([("z9.huge".to_owned(), huge)])).unwrap();
        assert!(t.unresolved_types().is_empty());
        assert_eq!(
            (
                t.attributes()["ncpus"].value.as_str(),
                t.attributes()["nram"].value.as_str(),
                t.attributes()["type"].value.as_str()
            ),
            ("48", "393216", "ARM64")
        );
        raw["attributes"] = json!({"type": "X86_64", "ncpus": 8, "nram": 65536});
        assert!(Template::from_json(&raw).unwrap().unresolved_types().is_empty(), "given figures need no table");
        let graviton = json!({"templateId": "Arm", "maxNumber": 1, "imageId": "ami-1", "vmType": "m7g.large"});
        assert_eq!(Template::from_json(&graviton).unwrap().attributes()["type"].value, "ARM64");
    }

    #[test]
    fn a_template_file_needs_unique_ids() {
        let one = minimal();
        let text = json!({"templates": [one.clone(), one]}).to_string();
        assert!(Template::parse_file(&text).unwrap_err().to_string().contains("twice"));
        assert!(Template::parse_file("{").is_err());
        assert!(Template::parse_file("{}").is_err());
    }

    #[test]
    fn instance_requirements_give_host_factory_the_smallest_match() {
        let t = Template::from_json(&json!({
            "templateId": "Abs", "maxNumber": 10, "imageId": "ami-1", "providerApi": "EC2Fleet",
            "instanceRequirements": {"vCpuCount": {"min": 4, "max": 8}, "memoryMiB": {"min": 16384},
                                     "allowedInstanceTypes": ["m5.*", "c5.*"]}
        }))
        .unwrap();
        // m5.xlarge (4 vCPUs, 2 cores, 16 GiB) is the smallest match; c5.2xlarge has 16 GiB too.
        assert_eq!(t.attributes()["ncpus"].value, "2");
        assert_eq!(t.attributes()["nram"].value, "16384");
        assert_eq!(t.attributes()["type"].value, "X86_64");
        assert!(t.vm_types().is_empty());
        assert_eq!(t.instance_requirements().unwrap().v_cpu_count.min, 4);
        let again = Template::from_json(&t.to_hf()).unwrap();
        assert_eq!(again, t, "the requirements survive the template's own JSON");
        let defaulted = Template::from_json(&json!({
            "templateId": "Abs2", "maxNumber": 10, "imageId": "ami-1",
            "instanceRequirements": {"vCpuCount": {"min": 2}, "memoryMiB": {"min": 1024}}
        }))
        .unwrap();
        assert_eq!(defaulted.provider_api(), ProviderApi::Ec2Fleet, "requirements go to EC2 Fleet unless told");
        for (bad, field) in [
            (
                json!({"templateId": "t", "maxNumber": 1, "imageId": "a", "providerApi": "RunInstances",
                    "instanceRequirements": {"vCpuCount": {"min": 2}, "memoryMiB": {"min": 1}}}),
                "EC2Fleet and ASG",
            ),
            (
                json!({"templateId": "t", "maxNumber": 1, "imageId": "a", "vmType": "m5.large",
                    "instanceRequirements": {"vCpuCount": {"min": 2}, "memoryMiB": {"min": 1}}}),
                "leave out vmType",
            ),
            (
                json!({"templateId": "t", "maxNumber": 1, "imageId": "a",
                    "instanceRequirements": {"vCpuCount": {"min": 512}, "memoryMiB": {"min": 1}}}),
                "no instance type",
            ),
            (
                json!({"templateId": "t", "maxNumber": 1, "imageId": "a",
                    "instanceRequirements": {"vCpuCount": {"min": 2}, "memoryMiB": {"min": 1}, "gpus": 1}}),
                "gpus",
            ),
        ] {
            let e = Template::from_json(&bad).unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
    }
}
