//! `ohf init`: a working `ohf.toml` and `awsprov_templates.json` for an AWS account, from what
//! the account holds (a VPC, its subnets and security groups, a recent Amazon Linux image);
//! with a Host Factory directory, the provider scripts installed and the provider registered
//! beside whatever is registered already. Every value can be given on the command line; what is
//! not is asked through [`Ask`] (a terminal) or taken from what was found.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ohf_cloud_aws::{AwsConfig, AwsProvider};
use ohf_domain::{ProviderName, Template};
use serde_json::{Map, Value, json};

/// Asks the person running `ohf init`; [`Defaults`] answers every question with its default.
pub trait Ask {
    /// `question`, offering `default`; the answer (the default when nothing was typed).
    fn ask(&self, question: &str, default: &str) -> anyhow::Result<String>;
}

/// Takes every default: `--yes`, or no terminal.
pub struct Defaults;

impl Ask for Defaults {
    fn ask(&self, _question: &str, default: &str) -> anyhow::Result<String> {
        Ok(default.to_owned())
    }
}

/// The account and what to take from it: for `ohf init` and `ohf templates generate`.
#[derive(Debug, Clone)]
pub struct Account {
    pub region: String,
    pub profile: Option<String>,
    /// An emulator's or a VPC endpoint's URL.
    pub endpoint_url: Option<String>,
    pub vpc: Option<String>,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub image: Option<String>,
    pub instance_types: Vec<String>,
    pub max_number: u32,
}

/// What `ohf init` is told.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Where `ohf.toml` and `awsprov_templates.json` go (with `hostfactory`: the provider
    /// instance's conf directory under it).
    pub confdir: PathBuf,
    /// The provider's name in `ohf.toml`.
    pub provider: String,
    pub account: Account,
    /// This installation's name (tagged on every machine; sweeps act only on it).
    pub cluster: Option<String>,
    /// Replace files that exist.
    pub force: bool,
    /// Host Factory's conf directory (`$HF_TOP/conf`): install and register the provider there.
    pub hostfactory: Option<PathBuf>,
    /// The provider instance's name in Host Factory.
    pub instance: String,
}

/// What `ohf init` wrote.
#[derive(Debug, Clone, Default)]
pub struct Written {
    /// The directory holding `ohf.toml` and the templates.
    pub confdir: PathBuf,
    pub files: Vec<PathBuf>,
    /// What was found and chosen, in words.
    pub notes: Vec<String>,
}

/// The provider scripts, as shipped in `deploy/hostfactory/scripts/`.
const SCRIPTS: [(&str, &str); 6] = [
    ("invoke.sh", include_str!("../../../deploy/hostfactory/scripts/invoke.sh")),
    ("getAvailableTemplates.sh", include_str!("../../../deploy/hostfactory/scripts/getAvailableTemplates.sh")),
    ("requestMachines.sh", include_str!("../../../deploy/hostfactory/scripts/requestMachines.sh")),
    ("requestReturnMachines.sh", include_str!("../../../deploy/hostfactory/scripts/requestReturnMachines.sh")),
    ("getRequestStatus.sh", include_str!("../../../deploy/hostfactory/scripts/getRequestStatus.sh")),
    ("getReturnRequests.sh", include_str!("../../../deploy/hostfactory/scripts/getReturnRequests.sh")),
];

fn list(answer: &str) -> Vec<String> {
    answer.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// Runs `ohf init`.
pub async fn run(options: &InitOptions, ask: &dyn Ask) -> anyhow::Result<Written> {
    let mut options = options.clone();
    let mut written = Written::default();
    let hf = options.hostfactory.clone();
    if let Some(hf) = &hf {
        if !hf.is_dir() {
            bail!("--hostfactory {}: not a directory (give Host Factory's conf directory, $HF_TOP/conf)", hf.display());
        }
        options.confdir = hf.join("providers").join(&options.instance).join("conf");
        // Read both registrations first: a malformed one stops everything before a file is written.
        registration(&hf.join("providerplugins/hostProviderPlugins.json"), "providerplugins")?;
        registration(&hf.join("providers/hostProviders.json"), "providers")?;
    }
    written.confdir = options.confdir.clone();
    let config_path = options.confdir.join("ohf.toml");
    let templates_path = options.confdir.join("awsprov_templates.json");
    if !options.force {
        let existing: Vec<String> =
            [&config_path, &templates_path].iter().filter(|p| p.exists()).map(|p| p.display().to_string()).collect();
        if !existing.is_empty() {
            bail!("{} exist; --force replaces them", existing.join(" and "));
        }
    }

    let chosen = choose_from_account(&options.account, &options.provider, ask).await?;
    written.notes.extend(chosen.notes.iter().cloned());
    let cluster = match &options.cluster {
        Some(c) => c.clone(),
        None => ask.ask("cluster name (tagged on every machine; orphan sweeps act only on it)", "hpc")?,
    };

    let config = config_text(&options, &cluster);
    let templates = templates_doc(&options.account, &chosen);
    // What is written must be what ohf reads.
    crate::settings::Settings::from_toml(&config).context("the configuration init made does not load")?;
    Template::parse_file(&templates.to_string())
        .map_err(|e| anyhow::anyhow!("the templates init made do not read: {e}"))?;

    std::fs::create_dir_all(&options.confdir).with_context(|| format!("cannot make {}", options.confdir.display()))?;
    write(&config_path, config.as_bytes(), 0o640)?;
    write(&templates_path, format!("{}\n", serde_json::to_string_pretty(&templates)?).as_bytes(), 0o644)?;
    // And the files together load as ohf will load them.
    let overrides = crate::Overrides {
        config: Some(config_path.clone()),
        confdir: Some(options.confdir.clone()),
        workdir: None,
        logdir: None,
        database_url: None,
    };
    crate::Resolved::load(&overrides).context("the configuration init wrote does not load")?;
    written.files.extend([config_path, templates_path]);
    written.notes.push(format!("image {}, types {}", chosen.image, chosen.types.join(", ")));
    if let Some(hf) = &hf {
        install_hostfactory(hf, &options, &mut written)?;
    }
    Ok(written)
}

/// What was taken from the account for the templates.
#[derive(Debug, Clone)]
pub struct Chosen {
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub image: String,
    pub types: Vec<String>,
    pub notes: Vec<String>,
}

/// Reads the account and takes, for each choice, the flag, else the answer, else what was found.
async fn choose_from_account(a: &Account, provider: &str, ask: &dyn Ask) -> anyhow::Result<Chosen> {
    let mut notes = Vec::new();
    let mut aws = AwsConfig::new(a.region.clone());
    aws.profile = a.profile.clone();
    aws.endpoint_url = a.endpoint_url.clone();
    let name = ProviderName::new(provider.to_owned()).map_err(|e| anyhow::anyhow!("--provider-name: {e}"))?;
    let provider = AwsProvider::connect(name, &aws).await.map_err(|e| anyhow::anyhow!("cannot set up AWS: {e}"))?;
    let mut found =
        provider.discover(a.vpc.as_deref()).await.map_err(|e| anyhow::anyhow!("cannot read the account: {e}"))?;
    if found.vpc.is_none() {
        let offered: Vec<String> = found.vpcs.iter().map(|v| format!("{} ({})", v.id, v.cidr)).collect();
        if offered.is_empty() {
            bail!("the account has no VPC in {}; make one, or give --vpc", a.region);
        }
        let first = found.vpcs[0].id.clone();
        let vpc = ask.ask(&format!("VPC ({})", offered.join(", ")), &first)?;
        if offered.len() > 1 {
            notes.push(format!("several VPCs and no default one: took {vpc}; --vpc chooses"));
        }
        found = provider.discover(Some(&vpc)).await.map_err(|e| anyhow::anyhow!("cannot read the account: {e}"))?;
    }
    let vpc = found.vpc.clone().unwrap_or_default();
    if !found.vpcs.iter().any(|v| v.id == vpc) {
        bail!("VPC {vpc} is not in {}; VPCs there: {}", a.region, ids(found.vpcs.iter().map(|v| &v.id)));
    }
    notes.push(format!("VPC {vpc}"));
    let subnets = choose(
        ask,
        "subnets",
        &a.subnets,
        &found.subnets.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
        &found.subnets.iter().map(|s| format!("{} ({}, {} free)", s.id, s.zone, s.free_ips)).collect::<Vec<_>>(),
    )?;
    if subnets.is_empty() {
        bail!("VPC {vpc} has no subnet; make one, or give --subnets");
    }
    let security_groups = choose(
        ask,
        "security groups",
        &a.security_groups,
        &found.security_groups.iter().take(1).map(|g| g.id.clone()).collect::<Vec<_>>(),
        &found.security_groups.iter().map(|g| format!("{} ({})", g.id, g.name)).collect::<Vec<_>>(),
    )?;
    let image = match &a.image {
        Some(image) => image.clone(),
        None => {
            let default = found.image.as_ref().map(|i| i.id.clone()).unwrap_or_default();
            let offered = found.image.as_ref().map_or("none found".into(), |i| format!("{}, {}", i.name, i.created));
            ask.ask(&format!("image ({offered})"), &default)?
        }
    };
    if image.is_empty() {
        bail!("no Amazon Linux image was found in {}; give --image", a.region);
    }
    let types = if a.instance_types.is_empty() {
        list(&ask.ask("instance types", "t3.medium")?)
    } else {
        a.instance_types.clone()
    };
    // Subnets taken by default: only those in zones that offer every type.
    let mut subnets = subnets;
    if a.subnets.is_empty() && !types.is_empty() {
        let mut kept = Vec::new();
        let mut zones: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
        for id in subnets {
            let zone = found.subnets.iter().find(|s| s.id == id).map(|s| s.zone.clone()).unwrap_or_default();
            let offers_all = match zones.get(&zone) {
                Some(ok) => *ok,
                None => {
                    let offered = provider
                        .offered(&zone, &types)
                        .await
                        .map_err(|e| anyhow::anyhow!("cannot read the instance types offered in {zone}: {e}"))?;
                    let ok = types.iter().all(|t| offered.contains(t));
                    zones.insert(zone.clone(), ok);
                    ok
                }
            };
            if offers_all {
                kept.push(id);
            } else {
                notes.push(format!("left out subnet {id}: {zone} does not offer {}", types.join(", ")));
            }
        }
        if kept.is_empty() {
            bail!(
                "no subnet of VPC {vpc} is in a zone offering {}; give --instance-types or --subnets",
                types.join(", ")
            );
        }
        subnets = kept;
    }
    Ok(Chosen { subnets, security_groups, image, types, notes })
}

/// `ohf templates generate`: the templates `ohf init` would write, from the account, asking nothing.
pub async fn generate(account: &Account) -> anyhow::Result<Value> {
    let chosen = choose_from_account(account, "aws", &Defaults).await?;
    let doc = templates_doc(account, &chosen);
    Template::parse_file(&doc.to_string()).map_err(|e| anyhow::anyhow!("the generated templates do not read: {e}"))?;
    Ok(doc)
}

fn ids<'a>(items: impl Iterator<Item = &'a String>) -> String {
    items.cloned().collect::<Vec<_>>().join(", ")
}

/// The flag's list, else the answer to the question (offering `found`, defaulting to `default`).
fn choose(
    ask: &dyn Ask,
    what: &str,
    given: &[String],
    default: &[String],
    found: &[String],
) -> anyhow::Result<Vec<String>> {
    if !given.is_empty() {
        return Ok(given.to_vec());
    }
    let question = if found.is_empty() { what.to_owned() } else { format!("{what} ({})", found.join(", ")) };
    Ok(list(&ask.ask(&question, &default.join(","))?))
}

fn config_text(o: &InitOptions, cluster: &str) -> String {
    let a = &o.account;
    let mut provider = format!("[[providers]]\nname = {:?}\ntype = \"aws\"\nregion = {:?}\n", o.provider, a.region);
    if let Some(p) = &a.profile {
        provider.push_str(&format!("profile = {p:?}\n"));
    }
    if let Some(url) = &a.endpoint_url {
        provider.push_str(&format!("endpoint_url = {url:?}\n"));
    }
    format!(
        "# Written by `ohf init`. Check it with `ohf doctor`; every setting: `ohf config show`.\n\
         # Credentials come from the standard AWS chain (instance profile, environment, profile).\n\
         cluster = {cluster:?}\nlog_level = \"info\"\n\n[request]\nmax_machines_per_request = {max}\n\n{provider}",
        max = a.max_number.max(1)
    )
}

fn templates_doc(o: &Account, chosen: &Chosen) -> Value {
    let (subnets, groups, image, types) = (&chosen.subnets, &chosen.security_groups, &chosen.image, &chosen.types);
    let first = types.first().cloned().unwrap_or_else(|| "t3.medium".into());
    let weights: Map<String, Value> = types.iter().map(|t| (t.clone(), json!(1))).collect();
    json!({"templates": [
        {
            "templateId": "OnDemand",
            "maxNumber": o.max_number,
            "imageId": image,
            "vmType": first,
            "subnetIds": subnets,
            "securityGroupIds": groups,
            "priceType": "ondemand",
        },
        {
            "templateId": "Spot",
            "maxNumber": o.max_number,
            "imageId": image,
            "vmTypes": weights,
            "subnetIds": subnets,
            "securityGroupIds": groups,
            "priceType": "spot",
            "providerApi": "EC2Fleet",
            "fleetType": "instant",
            "allocationStrategy": "capacityOptimized",
        }
    ]})
}

fn write(path: &Path, body: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, body).with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))
}

/// A Host Factory registration file (`{"version": 2, "<key>": [...]}`), or a new one.
fn registration(path: &Path, key: &str) -> anyhow::Result<Value> {
    if !path.exists() {
        return Ok(json!({"version": 2, key: []}));
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let doc: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON; fix it first, nothing was written", path.display()))?;
    if !doc.get(key).is_some_and(Value::is_array) {
        bail!("{} has no \"{key}\" list; fix it first, nothing was written", path.display());
    }
    Ok(doc)
}

/// Puts `entry` in the registration's list in place of one of the same name, keeping the rest.
fn register(path: &Path, key: &str, entry: Value, written: &mut Written) -> anyhow::Result<()> {
    let mut doc = registration(path, key)?;
    let name = entry["name"].clone();
    let list = doc[key].as_array_mut().context("a registration list")?;
    match list.iter_mut().find(|e| e["name"] == name) {
        Some(old) => {
            *old = entry;
            written.notes.push(format!("replaced the entry {name} in {}", path.display()));
        }
        None => list.push(entry),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
    }
    write(path, format!("{}\n", serde_json::to_string_pretty(&doc)?).as_bytes(), 0o644)?;
    written.files.push(path.to_owned());
    Ok(())
}

fn install_hostfactory(hf: &Path, o: &InitOptions, written: &mut Written) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let home = std::fs::canonicalize(hf)?.join("providers").join(&o.instance);
    let scripts = home.join("scripts");
    std::fs::create_dir_all(&scripts).with_context(|| format!("cannot make {}", scripts.display()))?;
    for (name, body) in SCRIPTS {
        let path = scripts.join(name);
        write(&path, body.as_bytes(), 0o755)?;
        written.files.push(path);
    }
    // The scripts find the binary in bin/ beside them when it is not on PATH.
    let bin = home.join("bin");
    std::fs::create_dir_all(&bin)?;
    let link = bin.join("ohf");
    let _ = std::fs::remove_file(&link);
    let exe = std::env::current_exe().context("cannot tell where this ohf binary is")?;
    std::os::unix::fs::symlink(&exe, &link).with_context(|| format!("cannot link {}", link.display()))?;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))?;
    written.files.push(link);
    register(
        &hf.join("providerplugins/hostProviderPlugins.json"),
        "providerplugins",
        json!({"name": "ohf", "enabled": 1, "scriptPath": format!("{}/", scripts.display())}),
        written,
    )?;
    register(
        &hf.join("providers/hostProviders.json"),
        "providers",
        json!({
            "name": o.instance,
            "enabled": 1,
            "plugin": "ohf",
            "confPath": format!("{}/", home.join("conf").display()),
            "workPath": format!("${{HF_WORKDIR}}/providers/{}/", o.instance),
            "logPath": "${HF_LOGDIR}/",
        }),
        written,
    )?;
    Ok(())
}
