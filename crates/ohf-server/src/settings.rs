//! One typed settings struct, layered: built-in defaults, then the Host Factory / LSF
//! environment for directories, then the config file, then `OHF_` environment variables
//! (`__` for nesting), then command-line flags.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use ohf_app::AppSettings;
use ohf_cloud_aws::AwsConfig;
use ohf_cloud_sim::SimConfig;
use ohf_domain::{LifecyclePolicy, PartialPolicy, ProviderName, TimeoutSecs};
use ohf_provider_strategy::{Origin, ProviderEntry, StrategyConfig};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Everything ohf reads from configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// `sqlite:<path>` or `postgres://…`; default: `ohf.db` in the work dir.
    pub database_url: Option<String>,
    /// Postgres only: the schema holding ohf's tables (created if needed).
    pub database_schema: Option<String>,
    /// Postgres only: connections per process.
    pub database_max_connections: u32,
    /// This installation's name, tagged on every machine; orphan sweeps touch only their own.
    pub cluster: String,
    /// A tracing filter such as `info` or `ohf_app=debug`.
    pub log_level: Option<String>,
    /// `text` (people) or `json` (one object per line, for log collectors).
    pub log_format: LogFormat,
    /// The Host Factory log (`ohf.log`) is rotated when it passes this size (0: never).
    pub log_max_bytes: u64,
    /// Rotated Host Factory logs kept (`ohf.log.1` … `ohf.log.N`).
    pub log_keep: u32,
    /// Each status poll (Host Factory's getRequestStatus, `ohf request status|list|watch`)
    /// advances the requests it reads. Turn off when `ohf serve` daemons own the lifecycle.
    pub advance_on_poll: bool,
    pub request: RequestSettings,
    pub serve: ServeSettings,
    /// Provider instances: tables with `name`, `type` and the type's own fields.
    pub providers: Vec<Value>,
    /// Circuit breakers, retries, timeouts and rate limits of every cloud call: the resilience
    /// seed's block, as it is.
    pub resilience: ohf_resilience::ResilienceConfig,
    /// How providers are chosen, failed over and checked: the provider-strategy seed's
    /// `configureProviderStrategy` document. What `configureProviderStrategy` stores wins.
    pub provider_strategy: StrategyConfig,
    /// What provider registrations through the API may reach.
    pub admin: AdminSettings,
    /// How long finished requests are kept.
    pub retention: RetentionSettings,
    /// How callbacks (`metadata.callback_url`) are posted.
    pub callbacks: CallbackSettings,
    /// Which alerts `ohf serve` sends, and where.
    pub alerts: crate::alerts::AlertSettings,
    /// Where traces go (OpenTelemetry over OTLP/HTTP); off unless an endpoint is set.
    pub telemetry: TelemetrySettings,
    /// How requests are placed on venues: default mode, strategies, lockout, bookings,
    /// profiles (the routing-requests seed).
    pub routing: ohf_app::placement::RoutingSettings,
    /// Hosting venues: a provider instance and zone with its subnets and storage, in an
    /// environment and infrastructure groups. None: one venue per provider, without limits.
    pub venues: Vec<ohf_placement::Venue>,
}

/// Callbacks: each POST carries `X-Ohf-Signature: sha256=<hex HMAC-SHA256 of the body>` when a
/// secret is set, so the receiver can tell ohf's posts from others.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallbackSettings {
    pub secret: Option<String>,
}

/// Trace export: every span (API calls, reconcile cycles, request steps, cloud calls) sent to
/// an OpenTelemetry collector over OTLP/HTTP (protobuf) when `otlp_endpoint` is set, as
/// `http://collector:4318` (the path `/v1/traces` is added).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of the traces.
    pub service_name: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self { otlp_endpoint: None, service_name: "ohf".into() }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people.
    #[default]
    Text,
    /// One JSON object per line, with the span fields (request id, method) of each line.
    Json,
}

/// Finished requests (with their events and claim history) are deleted this many days after
/// they last changed, once they hold no machine; 0 keeps them for ever.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    pub days: u32,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self { days: 30 }
    }
}

/// The allow-list of provider registrations made through the API (`registerProviderStrategy`):
/// they may use only these endpoints, proxies, profiles and credential files. Static keys are
/// never taken through the API (they would be stored); a simulated cloud's `state_file` is a
/// plain file name inside the work directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    pub allowed_endpoints: Vec<String>,
    pub allowed_proxies: Vec<String>,
    /// Profile names of the host's AWS config; `"*"` allows every one.
    pub allowed_profiles: Vec<String>,
    pub allowed_credential_files: Vec<PathBuf>,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            allowed_endpoints: Vec::new(),
            allowed_proxies: Vec::new(),
            allowed_profiles: vec!["*".into()],
            allowed_credential_files: Vec::new(),
        }
    }
}

impl AdminSettings {
    /// Why a registration made through the API may not build `spec`; `None` when it may.
    pub fn refusal(&self, spec: &ProviderSpec, raw: &serde_json::Map<String, Value>) -> Option<String> {
        match &spec.kind {
            ProviderKind::Sim { .. } => match raw.get("state_file").and_then(Value::as_str) {
                Some(name) if !plain_file_name(name) => {
                    Some(format!("state_file '{name}' must be a plain file name (it lives in the work directory)"))
                }
                _ => None,
            },
            ProviderKind::Aws { config } => {
                let listed =
                    |list: &[String], v: &str| list.iter().any(|a| a.trim_end_matches('/') == v.trim_end_matches('/'));
                if config.access_key_id.is_some() || config.secret_access_key.is_some() {
                    return Some(
                        "static keys are not taken through the API (they would be stored): name a profile or a \
                         credentials_file allowed in ohf.toml's [admin]"
                            .into(),
                    );
                }
                if let Some(url) = &config.endpoint_url
                    && !listed(&self.allowed_endpoints, url)
                {
                    return Some(format!("endpoint '{url}' is not in [admin] allowed_endpoints of ohf.toml"));
                }
                if let Some(url) = &config.proxy_url
                    && !listed(&self.allowed_proxies, url)
                {
                    return Some(format!("proxy '{url}' is not in [admin] allowed_proxies of ohf.toml"));
                }
                if let Some(profile) = &config.profile
                    && !self.allowed_profiles.iter().any(|p| p == "*" || p == profile)
                {
                    return Some(format!("profile '{profile}' is not in [admin] allowed_profiles of ohf.toml"));
                }
                if let Some(file) = &config.credentials_file
                    && !self.allowed_credential_files.contains(file)
                {
                    return Some(format!(
                        "credentials_file '{}' is not in [admin] allowed_credential_files of ohf.toml",
                        file.display()
                    ));
                }
                None
            }
        }
    }
}

/// A file name with no directory part: `sim.json`, not `../x` or `/etc/x`.
fn plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// The daemon, `ohf serve`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeSettings {
    /// Address of the health endpoints (/healthz, /readyz, /status).
    pub listen: String,
    pub interval_ms: u64,
    pub claim_ttl_secs: u64,
    pub batch: u32,
    /// Unique among daemons sharing a store; default: host name and process id.
    pub worker_id: Option<String>,
    /// How long an in-flight cycle may take to finish after SIGTERM.
    pub shutdown_grace_secs: u64,
    /// Seconds between orphan sweeps; 0 turns them off. Under the default cluster name the
    /// daemon does not sweep unless `sweep_default_cluster` is set.
    pub sweep_interval_secs: u64,
    pub sweep_min_age_secs: u64,
    /// Most machines one sweep terminates; more orphans than this and it terminates none.
    pub sweep_max_terminations: usize,
    /// Most orphans, as a share of the installation's live machines, a sweep believes.
    pub sweep_max_share_percent: u32,
    /// Sweep even when `cluster` is left at "default".
    pub sweep_default_cluster: bool,
    /// Bearer tokens of the HTTP API with their roles; none means no authentication.
    #[serde(skip_serializing)]
    pub tokens: Vec<ohf_api::access::ApiToken>,
    /// Calls per client of the APIs.
    #[serde(skip_serializing)]
    pub rate_limit: Option<ohf_api::access::RateLimit>,
    /// The role of callers when no tokens are configured. By default `admin` on a loopback
    /// listener (only this host reaches it) and `operator` on any other, so that admin calls
    /// (registrations, sweeps, retention) from the network need a token.
    #[serde(skip_serializing)]
    pub anonymous_role: Option<ohf_api::access::Role>,
    /// TLS for both APIs; with `client_ca_file`, clients must present a certificate it signed.
    pub tls: Option<TlsSettings>,
}

/// The daemon's certificate and key (PEM), and the CA of client certificates for mutual TLS.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
}

impl Default for ServeSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            interval_ms: 2000,
            claim_ttl_secs: 30,
            batch: 500,
            worker_id: None,
            shutdown_grace_secs: 30,
            sweep_interval_secs: 300,
            sweep_min_age_secs: 600,
            sweep_max_terminations: 20,
            sweep_max_share_percent: 50,
            sweep_default_cluster: false,
            tokens: Vec::new(),
            rate_limit: None,
            anonymous_role: None,
            tls: None,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            confdir: None,
            workdir: None,
            logdir: None,
            templates_file: None,
            database_url: None,
            database_schema: None,
            database_max_connections: 8,
            cluster: "default".into(),
            log_level: None,
            log_format: LogFormat::Text,
            log_max_bytes: 10 * 1024 * 1024,
            log_keep: 5,
            request: RequestSettings::default(),
            advance_on_poll: true,
            serve: ServeSettings::default(),
            providers: Vec::new(),
            resilience: ohf_resilience::ResilienceConfig::default(),
            provider_strategy: StrategyConfig::default(),
            admin: AdminSettings::default(),
            retention: RetentionSettings::default(),
            callbacks: CallbackSettings::default(),
            alerts: crate::alerts::AlertSettings::default(),
            telemetry: TelemetrySettings::default(),
            routing: Default::default(),
            venues: Vec::new(),
        }
    }
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
    /// How long a creation waits on the cloud before it answers with the stored request; the
    /// launch goes on in the next step (Host Factory kills slow scripts).
    pub answer_within_ms: u64,
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
            answer_within_ms: 5_000,
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

/// A configured provider instance: its registration (name, type, capabilities, priority,
/// weight, enabled) and what its type needs.
#[derive(Debug, Clone)]
pub struct ProviderSpec {
    pub name: ProviderName,
    pub entry: ProviderEntry,
    pub kind: ProviderKind,
}

#[derive(Debug, Clone)]
pub enum ProviderKind {
    Sim { config: SimConfig, state_file: PathBuf },
    Aws { config: AwsConfig },
}

/// Settings with every directory decided and every value checked.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub confdir: PathBuf,
    pub workdir: PathBuf,
    pub logdir: PathBuf,
    pub templates_file: PathBuf,
    pub database_url: String,
    pub database_schema: Option<String>,
    pub database_max_connections: u32,
    pub log_level: String,
    pub log_format: LogFormat,
    pub log_max_bytes: u64,
    pub log_keep: u32,
    pub advance_on_poll: bool,
    pub serve: ServeSettings,
    pub config_file: Option<PathBuf>,
    pub app: AppSettings,
    pub providers: Vec<ProviderSpec>,
    pub resilience: ohf_resilience::ResilienceConfig,
    pub provider_strategy: StrategyConfig,
    pub admin: AdminSettings,
    pub retention: RetentionSettings,
    pub callbacks: CallbackSettings,
    pub alerts: crate::alerts::AlertSettings,
    pub telemetry: TelemetrySettings,
}

fn env_path(keys: &[&str]) -> Option<PathBuf> {
    keys.iter().find_map(std::env::var_os).filter(|v| !v.is_empty()).map(PathBuf::from)
}

fn home() -> PathBuf {
    env_path(&["HOME"]).unwrap_or_else(|| PathBuf::from("."))
}

/// The top-level keys `OHF_` variables may set; other `OHF_` variables (OHF_BIN, …) are not settings.
const ENV_KEYS: [&str; 20] = [
    "confdir",
    "workdir",
    "logdir",
    "templates_file",
    "database_url",
    "database_schema",
    "database_max_connections",
    "cluster",
    "log_level",
    "log_format",
    "log_max_bytes",
    "log_keep",
    "request",
    "advance_on_poll",
    "serve",
    "resilience",
    "retention",
    "callbacks",
    "alerts",
    "telemetry",
];

/// The configuration's layers as figment merges them: built-in defaults, then the config file,
/// then `OHF_` variables (`__` for nesting).
impl Settings {
    /// `text` read as an `ohf.toml` is, over the defaults (no environment): what `ohf init`
    /// checks before it writes a configuration.
    pub fn from_toml(text: &str) -> anyhow::Result<Settings> {
        Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::string(text))
            .extract()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))
    }
}

fn layers(config_file: Option<&Path>) -> anyhow::Result<Figment> {
    let mut figment = Figment::from(Serialized::defaults(Settings::default()));
    if let Some(file) = config_file {
        if !file.exists() {
            bail!("config file {} does not exist", file.display());
        }
        // The same keys in JSON (such as the resilience seed's block, as it is) or TOML.
        figment = if file.extension().is_some_and(|e| e == "json") {
            figment.merge(figment::providers::Json::file_exact(file))
        } else {
            figment.merge(Toml::file_exact(file))
        };
    }
    figment = figment.merge(Env::prefixed("OHF_").split("__").filter(|k| {
        // The key arrives in the variable's own case, before `__` becomes nesting.
        let lower = k.as_str().to_ascii_lowercase();
        let top = lower.split("__").next().unwrap_or_default().split('.').next().unwrap_or_default();
        ENV_KEYS.contains(&top)
    }));
    Ok(figment)
}

/// One effective setting: its dotted key, its value (secrets masked) and where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct Explained {
    pub key: String,
    pub value: Value,
    pub source: String,
}

/// Whether a setting's value is a secret (by the last part of its key): it is shown as `***`.
fn secret(key: &str) -> bool {
    let key = key.rsplit('.').next().unwrap_or(key).to_ascii_lowercase();
    ["token", "secret", "password", "session"].iter().any(|s| key.contains(s))
}

fn mask(key: &str, value: Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k.clone(), mask(&format!("{key}.{k}"), v))).collect())
        }
        Value::Array(list) => Value::Array(list.into_iter().map(|v| mask(key, v)).collect()),
        Value::String(_) if secret(key) => Value::String("***".into()),
        other => other,
    }
}

/// A database URL with its password, if any, masked.
fn mask_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Every leaf of `value` (objects opened, lists whole) under its dotted key.
fn leaves(prefix: &str, value: Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k } else { format!("{prefix}.{k}") };
                leaves(&key, v, out);
            }
        }
        other => out.push((prefix.to_owned(), other)),
    }
}

/// The first of `keys` set in the environment.
fn env_named(keys: &[&'static str]) -> Option<&'static str> {
    keys.iter().copied().find(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()))
}

impl Resolved {
    /// Every effective setting with where it came from: `default`, the config file, an `OHF_`
    /// variable, the Host Factory environment or a flag; secrets masked. The configuration is
    /// checked as `load` checks it.
    pub fn explain(flags: &Overrides) -> anyhow::Result<Vec<Explained>> {
        let resolved = Self::load(flags)?;
        let figment = layers(resolved.config_file.as_deref())?;
        let settings: Settings = figment.extract().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        let mut found = Vec::new();
        leaves("", serde_json::to_value(&settings)?, &mut found);
        let from_layers = |key: &str| -> String {
            match figment.find_metadata(key) {
                Some(m) => match &m.source {
                    Some(figment::Source::File(path)) => format!("file {}", path.display()),
                    _ if m.name.contains("environment") => {
                        format!("environment OHF_{}", key.replace('.', "__").to_ascii_uppercase())
                    }
                    _ => "default".into(),
                },
                None => "default".into(),
            }
        };
        let mut out: Vec<Explained> = found
            .into_iter()
            .map(|(key, value)| Explained { source: from_layers(&key), value: mask(&key, value), key })
            .collect();
        // Tokens are never serialized; their names and roles are shown, the tokens masked.
        if !resolved.serve.tokens.is_empty() {
            let tokens: Vec<Value> = resolved
                .serve
                .tokens
                .iter()
                .map(|t| serde_json::json!({"name": t.name, "token": "***", "role": format!("{:?}", t.role).to_ascii_lowercase()}))
                .collect();
            out.push(Explained {
                key: "serve.tokens".into(),
                value: Value::Array(tokens),
                source: from_layers("serve.tokens"),
            });
        }
        // What the directories and the store came to, and why.
        let decided = |flag: bool, flag_name: &str, key: &str, env: &[&'static str]| -> String {
            if flag {
                format!("flag --{flag_name}")
            } else if from_layers(key) != "default" {
                from_layers(key)
            } else if let Some(var) = env_named(env) {
                format!("environment {var}")
            } else {
                "default".into()
            }
        };
        let path = |p: &Path| Value::String(p.display().to_string());
        let decisions = [
            (
                "confdir",
                path(&resolved.confdir),
                decided(
                    flags.confdir.is_some(),
                    "confdir",
                    "confdir",
                    &["OHF_CONFDIR", "HF_PROVIDER_CONFDIR", "PRO_CONF_DIR"],
                ),
            ),
            (
                "workdir",
                path(&resolved.workdir),
                decided(flags.workdir.is_some(), "workdir", "workdir", &["HF_PROVIDER_WORKDIR", "PRO_DATA_DIR"]),
            ),
            (
                "logdir",
                path(&resolved.logdir),
                decided(flags.logdir.is_some(), "logdir", "logdir", &["HF_PROVIDER_LOGDIR", "PRO_LSF_LOGDIR"]),
            ),
            ("templates_file", path(&resolved.templates_file), decided(false, "", "templates_file", &[])),
            (
                "database_url",
                Value::String(mask_url(&resolved.database_url)),
                decided(flags.database_url.is_some(), "database-url", "database_url", &[]),
            ),
            ("log_level", Value::String(resolved.log_level.clone()), decided(false, "", "log_level", &[])),
        ];
        for (key, value, source) in decisions {
            out.retain(|e| e.key != key);
            out.push(Explained { key: key.to_owned(), value, source });
        }
        let file = resolved.config_file.as_ref().map(|p| Value::String(p.display().to_string())).unwrap_or(Value::Null);
        let file_source = if flags.config.is_some() {
            "flag --config".to_owned()
        } else if let Some(var) = env_named(&["OHF_CONFIG"]) {
            format!("environment {var}")
        } else {
            "default".to_owned()
        };
        out.push(Explained { key: "config_file".into(), value: file, source: file_source });
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// The configuration directory: `--confdir`, else `OHF_CONFDIR` (Host Factory's
    /// `HF_PROVIDER_CONFDIR`, LSF's `PRO_CONF_DIR`), else `$XDG_CONFIG_HOME/ohf`.
    pub fn confdir(flags: &Overrides) -> PathBuf {
        flags
            .confdir
            .clone()
            .or_else(|| env_path(&["OHF_CONFDIR", "HF_PROVIDER_CONFDIR", "PRO_CONF_DIR"]))
            .unwrap_or_else(|| env_path(&["XDG_CONFIG_HOME"]).unwrap_or_else(|| home().join(".config")).join("ohf"))
    }

    pub fn load(flags: &Overrides) -> anyhow::Result<Self> {
        let confdir = Self::confdir(flags);
        let config_file = flags.config.clone().or_else(|| env_path(&["OHF_CONFIG"])).or_else(|| {
            let default = confdir.join("ohf.toml");
            default.exists().then_some(default)
        });
        let figment = layers(config_file.as_deref())?;
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
        if !["sqlite:", "postgres://", "postgresql://"].iter().any(|p| database_url.starts_with(p)) {
            bail!("database_url must start with sqlite:, postgres:// or postgresql://");
        }
        if settings.cluster.is_empty() || settings.cluster.len() > 64 {
            bail!("cluster must be 1 to 64 characters");
        }
        settings.alerts.check().map_err(anyhow::Error::msg)?;
        if let Some(url) = &settings.telemetry.otlp_endpoint
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            bail!("telemetry.otlp_endpoint '{url}' must be an http:// or https:// URL");
        }
        if settings.serve.interval_ms == 0 || settings.serve.claim_ttl_secs == 0 || settings.serve.batch == 0 {
            bail!("serve.interval_ms, serve.claim_ttl_secs and serve.batch must be positive");
        }
        if settings.serve.rate_limit.is_some_and(|r| !(r.per_sec > 0.0 && r.burst >= 1.0)) {
            bail!("serve.rate_limit needs per_sec above 0 and burst of at least 1");
        }
        if settings.serve.tokens.iter().any(|t| t.token.len() < 16) {
            bail!("serve.tokens: every token must be at least 16 characters");
        }
        settings.resilience.validate()?;
        settings.provider_strategy.validate().map_err(|e| anyhow::anyhow!("provider_strategy.{e}"))?;
        let mut app = app_settings(&settings.request)?;
        app.cluster = settings.cluster.clone();
        app.prices = prices(&confdir)?;
        let providers = providers(&settings.providers, &confdir, &workdir)?;
        app.routing = settings.routing.clone();
        app.routing.venues = settings.venues.clone();
        app.routing.check().map_err(|e| anyhow::anyhow!("routing: {e}"))?;
        if let Some(v) = app.routing.venues.iter().find(|v| !providers.iter().any(|p| p.name.as_str() == v.provider)) {
            bail!("venue '{}' names provider '{}', which is not configured", v.name, v.provider);
        }
        // AWS_INSTANCE_PENDING_TIMEOUT_SEC applies when ohf's own setting is absent.
        if app.policy.pending_timeout_secs.is_none() {
            app.policy.pending_timeout_secs = providers.iter().find_map(|p| match &p.kind {
                ProviderKind::Aws { config } => config.instance_pending_timeout_secs,
                ProviderKind::Sim { .. } => None,
            });
        }
        Ok(Self {
            confdir,
            workdir,
            logdir,
            templates_file,
            database_url,
            database_schema: settings.database_schema,
            database_max_connections: settings.database_max_connections,
            log_level: settings.log_level.unwrap_or_else(|| "info".into()),
            log_format: settings.log_format,
            log_max_bytes: settings.log_max_bytes,
            log_keep: settings.log_keep.min(100),
            advance_on_poll: settings.advance_on_poll,
            serve: settings.serve,
            resilience: settings.resilience,
            provider_strategy: settings.provider_strategy,
            admin: settings.admin,
            retention: settings.retention,
            callbacks: settings.callbacks,
            alerts: settings.alerts,
            telemetry: settings.telemetry,
            config_file,
            app,
            providers,
        })
    }
}

/// The price table of cost estimates: ohf's list prices, with `prices.json` of the conf dir
/// (`{"onDemand": {"m5.large": 0.096}, "spot": {…}, "spotShare": 0.3}`, dollars per hour) over
/// them when it exists.
fn prices(confdir: &Path) -> anyhow::Result<ohf_app::queries::PriceTable> {
    let file = confdir.join("prices.json");
    let defaults = ohf_app::queries::PriceTable::default();
    if !file.exists() {
        return Ok(defaults);
    }
    let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let given: ohf_app::queries::PriceTable =
        serde_json::from_str(&text).with_context(|| format!("{} is not a price table", file.display()))?;
    let bad = given.on_demand.iter().chain(&given.spot).find(|(_, p)| !(p.is_finite() && **p >= 0.0));
    if let Some((kind, price)) = bad {
        bail!("{}: the price of {kind} must be a number of dollars per hour, got {price}", file.display());
    }
    if !(0.0..=1.0).contains(&given.spot_share) {
        bail!("{}: spotShare must be from 0 to 1", file.display());
    }
    Ok(defaults.merged(given))
}

fn app_settings(r: &RequestSettings) -> anyhow::Result<AppSettings> {
    if !(1..=10_000).contains(&r.max_machines_per_request) {
        bail!("request.max_machines_per_request must be from 1 to 10000, got {}", r.max_machines_per_request);
    }
    if r.max_launch_attempts == 0 {
        bail!("request.max_launch_attempts must be at least 1");
    }
    if !(100..=120_000).contains(&r.answer_within_ms) {
        bail!("request.answer_within_ms must be from 100 to 120000, got {}", r.answer_within_ms);
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
        cluster: "default".into(),
        answer_within: std::time::Duration::from_millis(r.answer_within_ms),
        prices: Default::default(),
        routing: Default::default(),
    })
}

fn providers(raw: &[Value], confdir: &Path, workdir: &Path) -> anyhow::Result<Vec<ProviderSpec>> {
    if raw.is_empty() {
        // An IBM installation: its awsprov_config.json names the account, read as it is.
        let ibm = confdir.join("awsprov_config.json");
        if ibm.exists() {
            let config = AwsConfig::from_awsprov_config(&ibm).map_err(|e| anyhow::anyhow!(e))?;
            let name = std::env::var("HF_PROVIDER_NAME")
                .or_else(|_| std::env::var("PROVIDER_NAME"))
                .unwrap_or_else(|_| "aws".into());
            let name = ProviderName::new(name).map_err(|e| anyhow::anyhow!("provider name: {e}"))?;
            return Ok(vec![ProviderSpec { entry: entry(&name, "aws", 0), name, kind: ProviderKind::Aws { config } }]);
        }
        let name = ProviderName::new("sim-1").expect("valid name");
        let kind = ProviderKind::Sim { state_file: workdir.join("sim-sim-1.json"), config: SimConfig::default() };
        return Ok(vec![ProviderSpec { entry: entry(&name, "sim", 0), name, kind }]);
    }
    let mut names = HashSet::new();
    raw.iter()
        .enumerate()
        .map(|(i, value)| {
            let mut table = value.as_object().cloned().with_context(|| format!("providers[{i}] must be a table"))?;
            let name = match table.remove("name") {
                Some(Value::String(s)) => s,
                _ => bail!("providers[{i}] needs a name"),
            };
            if !names.insert(name.clone()) {
                bail!("providers[{i}]: the name '{name}' is used twice");
            }
            let kind = match table.remove("type") {
                Some(Value::String(s)) => s,
                _ => bail!("provider '{name}' needs a type (sim, aws)"),
            };
            // The registration's own fields; the rest is the type's.
            let mut reg = serde_json::Map::new();
            reg.insert("strategy_name".into(), Value::String(name.clone()));
            reg.insert("provider_type".into(), Value::String(kind));
            for field in ["capabilities", "priority", "weight", "enabled"] {
                if let Some(v) = table.remove(field) {
                    reg.insert(field.into(), v);
                }
            }
            reg.entry("priority").or_insert(Value::from(i));
            let entry: ProviderEntry =
                serde_json::from_value(Value::Object(reg)).map_err(|e| anyhow::anyhow!("provider '{name}': {e}"))?;
            entry.validate().map_err(|e| anyhow::anyhow!("provider '{name}': {e}"))?;
            let spec = provider_spec(entry, table, workdir)?;
            Ok(spec)
        })
        .collect()
}

/// The registration of a provider declared without one.
fn entry(name: &ProviderName, kind: &str, priority: i32) -> ProviderEntry {
    ProviderEntry {
        strategy_name: name.to_string(),
        provider_type: kind.into(),
        strategy_config: serde_json::Map::new(),
        capabilities: Default::default(),
        priority,
        weight: 1,
        enabled: true,
        origin: Origin::Config,
    }
}

/// The provider a registration describes, its type's fields in `table` (a `[[providers]]`
/// table without the registration's fields, or `registerProviderStrategy`'s strategy_config).
pub fn provider_spec(
    mut entry: ProviderEntry,
    mut table: serde_json::Map<String, Value>,
    workdir: &Path,
) -> anyhow::Result<ProviderSpec> {
    let name = ProviderName::new(entry.strategy_name.clone()).map_err(|e| anyhow::anyhow!("provider name: {e}"))?;
    entry.strategy_config = table.clone();
    let kind = match entry.provider_type.as_str() {
        "sim" => {
            let state_file = match table.remove("state_file") {
                Some(Value::String(p)) => workdir.join(p),
                None => workdir.join(format!("sim-{name}.json")),
                Some(_) => bail!("provider '{name}': state_file must be a path"),
            };
            let config: SimConfig =
                serde_json::from_value(Value::Object(table)).map_err(|e| anyhow::anyhow!("provider '{name}': {e}"))?;
            config.validate().map_err(|e| anyhow::anyhow!("provider '{name}': {e}"))?;
            ProviderKind::Sim { config, state_file }
        }
        "aws" => {
            // The seed's registration says `endpoint`; ohf.toml says `endpoint_url`.
            if let Some(v) = table.remove("endpoint") {
                table.insert("endpoint_url".into(), v);
            }
            let config: AwsConfig =
                serde_json::from_value(Value::Object(table)).map_err(|e| anyhow::anyhow!("provider '{name}': {e}"))?;
            config.validate().map_err(|e| anyhow::anyhow!("provider '{name}': {e}"))?;
            ProviderKind::Aws { config }
        }
        other => bail!("provider '{name}': type '{other}' is not known; types: sim, aws"),
    };
    Ok(ProviderSpec { name, entry, kind })
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// TOML in the shape of ohf.toml: known sections and keys, arbitrary values.
    fn config_text() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("cluster"),
            Just("database_url"),
            Just("advance_on_poll"),
            Just("days"),
            Just("interval_ms"),
            Just("claim_ttl_secs"),
            Just("answer_within_ms"),
            Just("max_machines_per_request"),
            Just("sweep_max_share_percent"),
            Just("allowed_endpoints"),
            Just("name"),
            Just("type"),
            Just("launch_latency_ms"),
            Just("region"),
            Just("enabled"),
        ];
        let value = prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<bool>().prop_map(|b| b.to_string()),
            "[a-z0-9 ._:/-]{0,20}".prop_map(|s| format!("{s:?}")),
            Just("[]".to_owned()),
            Just("{}".to_owned()),
            Just("[\"x\", 1]".to_owned()),
        ];
        let section = prop_oneof![
            Just(""),
            Just("[serve]"),
            Just("[request]"),
            Just("[retention]"),
            Just("[admin]"),
            Just("[[providers]]"),
            Just("[resilience.retry]"),
            Just("[provider_strategy]"),
        ];
        proptest::collection::vec((section, key, value), 0..8)
            .prop_map(|lines| lines.into_iter().map(|(s, k, v)| format!("{s}\n{k} = {v}\n")).collect::<String>())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Any ohf.toml, well formed or not, loads or is refused with a message; never a panic.
        #[test]
        fn any_config_loads_or_is_refused(shaped in config_text(), text in ".{0,200}") {
            let dir = tempfile::tempdir().unwrap();
            for body in [shaped, text] {
                let file = dir.path().join("ohf.toml");
                std::fs::write(&file, &body).unwrap();
                let flags = Overrides {
                    config: Some(file),
                    confdir: Some(dir.path().to_path_buf()),
                    workdir: Some(dir.path().join("work")),
                    logdir: Some(dir.path().join("log")),
                    database_url: None,
                };
                if let Err(e) = Resolved::load(&flags) {
                    let said = format!("{e:#}");
                    prop_assert!(!said.is_empty());
                }
            }
        }
    }
}
