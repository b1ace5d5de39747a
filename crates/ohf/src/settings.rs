//! One typed settings struct, layered: built-in defaults, then the Host Factory / LSF
//! environment for directories, then the config file, then `OHF_` environment variables
//! (`__` for nesting), then command-line flags.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use ohf_app::AppSettings;
use ohf_cloud_sim::SimConfig;
use ohf_domain::{LifecyclePolicy, PartialPolicy, ProviderName, TimeoutSecs};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Everything ohf reads from configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Where `awsprov_templates.json` and `ohf.toml` live.
    pub confdir: Option<PathBuf>,
    /// Where state lives (the SQLite file, the simulated cloud).
    pub workdir: Option<PathBuf>,
    /// Where logs go in Host Factory mode.
    pub logdir: Option<PathBuf>,
    /// The template file; relative paths are taken from the conf dir.
    pub templates_file: Option<PathBuf>,
    /// `sqlite:<path>`; default: `ohf.db` in the work dir.
    pub database_url: Option<String>,
    /// A tracing filter such as `info` or `ohf_app=debug`.
    pub log_level: Option<String>,
    pub request: RequestSettings,
    /// Provider instances: tables with `name`, `type` and the type's own fields.
    pub providers: Vec<Value>,
}

/// The request rules of the request-management seed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestSettings {
    pub max_machines_per_request: u32,
    pub default_timeout_secs: i64,
    pub return_timeout_secs: i64,
    pub account_limit: Option<u32>,
    pub max_launch_attempts: u32,
    pub partial: PartialPolicy,
    pub pending_timeout_secs: Option<u32>,
    pub launch_backoff_base_secs: u32,
    pub launch_backoff_max_secs: u32,
}

impl Default for RequestSettings {
    fn default() -> Self {
        let policy = LifecyclePolicy::default();
        Self {
            max_machines_per_request: ohf_domain::MachineCount::DEFAULT_MAX,
            default_timeout_secs: i64::from(TimeoutSecs::DEFAULT.get()),
            return_timeout_secs: i64::from(TimeoutSecs::DEFAULT.get()),
            account_limit: None,
            max_launch_attempts: policy.max_launch_attempts,
            partial: policy.partial,
            pending_timeout_secs: policy.pending_timeout_secs,
            launch_backoff_base_secs: policy.launch_backoff_base_secs,
            launch_backoff_max_secs: policy.launch_backoff_max_secs,
        }
    }
}

/// Flags that override every other layer.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub confdir: Option<PathBuf>,
    pub workdir: Option<PathBuf>,
    pub logdir: Option<PathBuf>,
    pub database_url: Option<String>,
}

/// A configured provider instance.
#[derive(Debug, Clone)]
pub enum ProviderSpec {
    Sim { name: ProviderName, config: SimConfig, state_file: PathBuf },
}

/// Settings with every directory decided and every value checked.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub confdir: PathBuf,
    pub workdir: PathBuf,
    pub logdir: PathBuf,
    pub templates_file: PathBuf,
    pub database_url: String,
    pub log_level: String,
    pub config_file: Option<PathBuf>,
    pub app: AppSettings,
    pub providers: Vec<ProviderSpec>,
}

fn env_path(keys: &[&str]) -> Option<PathBuf> {
    keys.iter().find_map(std::env::var_os).filter(|v| !v.is_empty()).map(PathBuf::from)
}

fn home() -> PathBuf {
    env_path(&["HOME"]).unwrap_or_else(|| PathBuf::from("."))
}

/// The top-level keys `OHF_` variables may set; other `OHF_` variables (OHF_BIN, …) are not settings.
const ENV_KEYS: [&str; 7] = ["confdir", "workdir", "logdir", "templates_file", "database_url", "log_level", "request"];

impl Resolved {
    pub fn load(flags: &Overrides) -> anyhow::Result<Self> {
        let confdir = flags
            .confdir
            .clone()
            .or_else(|| env_path(&["OHF_CONFDIR", "HF_PROVIDER_CONFDIR", "PRO_CONF_DIR"]))
            .unwrap_or_else(|| env_path(&["XDG_CONFIG_HOME"]).unwrap_or_else(|| home().join(".config")).join("ohf"));
        let config_file = flags.config.clone().or_else(|| env_path(&["OHF_CONFIG"])).or_else(|| {
            let default = confdir.join("ohf.toml");
            default.exists().then_some(default)
        });
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(file) = &config_file {
            if !file.exists() {
                bail!("config file {} does not exist", file.display());
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        figment = figment.merge(
            Env::prefixed("OHF_")
                .split("__")
                .filter(|k| ENV_KEYS.iter().any(|top| k.as_str().split('.').next() == Some(*top))),
        );
        let settings: Settings = figment.extract().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;

        let workdir = flags
            .workdir
            .clone()
            .or(settings.workdir.clone())
            .or_else(|| env_path(&["HF_PROVIDER_WORKDIR", "PRO_DATA_DIR"]))
            .unwrap_or_else(|| {
                env_path(&["XDG_STATE_HOME"]).unwrap_or_else(|| home().join(".local/state")).join("ohf")
            });
        let logdir = flags
            .logdir
            .clone()
            .or(settings.logdir.clone())
            .or_else(|| env_path(&["HF_PROVIDER_LOGDIR", "PRO_LSF_LOGDIR"]))
            .unwrap_or_else(|| workdir.join("log"));
        let templates_file = match &settings.templates_file {
            Some(p) if p.is_relative() => confdir.join(p),
            Some(p) => p.clone(),
            None => confdir.join("awsprov_templates.json"),
        };
        let database_url = flags
            .database_url
            .clone()
            .or(settings.database_url.clone())
            .unwrap_or_else(|| format!("sqlite:{}", workdir.join("ohf.db").display()));
        if !database_url.starts_with("sqlite:") {
            bail!("database_url '{database_url}': only sqlite: URLs are supported");
        }
        let app = app_settings(&settings.request)?;
        let providers = providers(&settings.providers, &confdir, &workdir)?;
        Ok(Self {
            confdir,
            workdir,
            logdir,
            templates_file,
            database_url,
            log_level: settings.log_level.unwrap_or_else(|| "info".into()),
            config_file,
            app,
            providers,
        })
    }
}

fn app_settings(r: &RequestSettings) -> anyhow::Result<AppSettings> {
    if !(1..=10_000).contains(&r.max_machines_per_request) {
        bail!("request.max_machines_per_request must be from 1 to 10000, got {}", r.max_machines_per_request);
    }
    if r.max_launch_attempts == 0 {
        bail!("request.max_launch_attempts must be at least 1");
    }
    let timeout = |field: &str, v: i64| TimeoutSecs::new(v).map_err(|e| anyhow::anyhow!("request.{field}: {e}"));
    Ok(AppSettings {
        policy: LifecyclePolicy {
            max_launch_attempts: r.max_launch_attempts,
            partial: r.partial,
            pending_timeout_secs: r.pending_timeout_secs,
            launch_backoff_base_secs: r.launch_backoff_base_secs,
            launch_backoff_max_secs: r.launch_backoff_max_secs.max(r.launch_backoff_base_secs),
        },
        max_machines_per_request: r.max_machines_per_request,
        default_timeout: timeout("default_timeout_secs", r.default_timeout_secs)?,
        return_timeout: timeout("return_timeout_secs", r.return_timeout_secs)?,
        account_limit: r.account_limit,
    })
}

fn providers(raw: &[Value], confdir: &Path, workdir: &Path) -> anyhow::Result<Vec<ProviderSpec>> {
    if raw.is_empty() {
        if confdir.join("awsprov_config.json").exists() {
            bail!(
                "{} is present but this build has no AWS provider; name the providers in ohf.toml (type = \"sim\")",
                confdir.join("awsprov_config.json").display()
            );
        }
        let name = ProviderName::new("sim-1").expect("valid name");
        return Ok(vec![ProviderSpec::Sim {
            state_file: workdir.join("sim-sim-1.json"),
            name,
            config: SimConfig::default(),
        }]);
    }
    let mut names = HashSet::new();
    raw.iter()
        .enumerate()
        .map(|(i, value)| {
            let mut table = value.as_object().cloned().with_context(|| format!("providers[{i}] must be a table"))?;
            let name = match table.remove("name") {
                Some(Value::String(s)) => {
                    ProviderName::new(s).map_err(|e| anyhow::anyhow!("providers[{i}].name: {e}"))?
                }
                _ => bail!("providers[{i}] needs a name"),
            };
            if !names.insert(name.clone()) {
                bail!("providers[{i}]: the name '{name}' is used twice");
            }
            let kind = match table.remove("type") {
                Some(Value::String(s)) => s,
                _ => bail!("provider '{name}' needs a type (sim)"),
            };
            match kind.as_str() {
                "sim" => {
                    let state_file = match table.remove("state_file") {
                        Some(Value::String(p)) => workdir.join(p),
                        None => workdir.join(format!("sim-{name}.json")),
                        Some(_) => bail!("provider '{name}': state_file must be a path"),
                    };
                    let config: SimConfig = serde_json::from_value(Value::Object(table))
                        .map_err(|e| anyhow::anyhow!("provider '{name}': {e}"))?;
                    config.validate().map_err(|e| anyhow::anyhow!("provider '{name}': {e}"))?;
                    Ok(ProviderSpec::Sim { name, config, state_file })
                }
                other => bail!("provider '{name}': type '{other}' is not available in this build; available: sim"),
            }
        })
        .collect()
}
