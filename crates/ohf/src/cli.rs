use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// ohf provisions and returns cloud machines on demand.
#[derive(Debug, Parser)]
#[command(name = "ohf", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Config file (default: ohf.toml in the conf dir)
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Config directory (default: $HF_PROVIDER_CONFDIR, $PRO_CONF_DIR, ~/.config/ohf)
    #[arg(long, global = true, value_name = "DIR")]
    pub confdir: Option<PathBuf>,
    /// State directory (default: $HF_PROVIDER_WORKDIR, $PRO_DATA_DIR, ~/.local/state/ohf)
    #[arg(long, global = true, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// Log directory for Host Factory mode (default: $HF_PROVIDER_LOGDIR, $PRO_LSF_LOGDIR)
    #[arg(long, global = true, value_name = "DIR")]
    pub logdir: Option<PathBuf>,
    /// Store URL, such as sqlite:/var/lib/ohf/ohf.db
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Output format of operator commands
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// More log output on stderr (-v info, -vv debug)
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Run through the daemon at this URL (http:// or https://) instead of on the local store
    #[arg(long, global = true, env = "OHF_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// Bearer token for --server
    #[arg(long, global = true, env = "OHF_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// CA certificate (PEM) that signed the daemon's certificate
    #[arg(long, global = true, env = "OHF_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Client certificate (PEM) for a daemon that requires mutual TLS
    #[arg(long, global = true, env = "OHF_CLIENT_CERT", value_name = "FILE")]
    pub client_cert: Option<PathBuf>,
    /// Client key (PEM) for --client-cert
    #[arg(long, global = true, env = "OHF_CLIENT_KEY", value_name = "FILE")]
    pub client_key: Option<PathBuf>,
    /// Longest a call through --server may take, in seconds (a watch waits up to 60 s)
    #[arg(long, global = true, env = "OHF_CLIENT_TIMEOUT", value_name = "SECS", default_value_t = 90,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub client_timeout: u64,
    /// How long, in seconds, a call through --server keeps trying while the daemon answers busy
    /// (423, 429, 503 with Retry-After), waits included; 0 never tries again
    #[arg(long, global = true, env = "OHF_RETRY_BUDGET", value_name = "SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub retry_budget: u64,
}

impl Global {
    /// How to reach the daemon, when one is named.
    pub fn client_options(&self) -> Option<ohf_server::ClientOptions> {
        let server = self.server.as_deref().map(str::trim).filter(|s| !s.is_empty())?;
        Some(ohf_server::ClientOptions {
            server: server.to_owned(),
            token: self.token.clone(),
            ca_cert: self.ca_cert.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
            timeout: std::time::Duration::from_secs(self.client_timeout),
            retry_budget: std::time::Duration::from_secs(self.retry_budget),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Host Factory provider operations, as the provider scripts call them
    Hf(HfArgs),
    /// Templates from the template file
    #[command(subcommand)]
    Templates(TemplatesCmd),
    /// The effective configuration
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Provision requests
    #[command(subcommand)]
    Request(RequestCmd),
    /// Return machines to the cloud
    Return(ReturnArgs),
    /// Routing requests: place or book workloads on hosting venues as one unit
    #[command(subcommand)]
    Route(RouteCmd),
    /// Run one reconcile cycle over every request with work left
    Reconcile,
    /// Terminate machines this installation launched that no request accounts for
    Sweep {
        /// Leave machines younger than this alone (seconds)
        #[arg(long, default_value_t = 600)]
        min_age: u64,
        /// List the orphans; terminate nothing
        #[arg(long)]
        dry_run: bool,
        /// Terminate none when more than this many look orphaned
        #[arg(long, default_value_t = 20)]
        max: u64,
        /// Terminate none when orphans are more than this percentage of live machines
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=100))]
        max_share: u32,
    },
    /// Delete finished requests older than the retention (with their events and claim history)
    Retention {
        /// Keep this many days; default: `[retention] days` of ohf.toml (30)
        #[arg(long)]
        days: Option<u32>,
    },
    /// Write a working ohf.toml and awsprov_templates.json for an AWS account from what it holds
    /// (a VPC, its subnets and security groups, a recent Amazon Linux image); asks on a
    /// terminal, takes what it found with --yes; --hostfactory also installs the scripts and
    /// registers the provider with Host Factory
    Init(InitArgs),
    /// Check the installation: configuration, store, templates, each provider's answer and what
    /// the cloud says of each template's image, subnets and security groups; exit 1 on a problem
    Doctor,
    /// Request figures of a time window: counts, success rate, time to complete, peak hours,
    /// backlog, estimated cost
    Report {
        /// The window until now: 90m, 24h, 7d (at most 90d)
        #[arg(long, default_value = "24h", value_parser = parse_period)]
        period: f64,
    },
    /// Requests that ended FAILED, TIMEOUT or PARTIAL_SUCCESS in a window, by code
    Failures {
        /// The window until now: 90m, 24h, 7d (at most 90d)
        #[arg(long, default_value = "24h", value_parser = parse_period)]
        period: f64,
    },
    /// What waits now: unfinished requests, high priority and oldest first
    Queue,
    /// How many more machines a template may have, what it holds now, and what each venue
    /// still fits of it (when venues are configured)
    Capacity {
        /// The template
        template: String,
    },
    /// Machines held now by template, provider and instance type, with their hourly cost
    Usage {
        /// Also the estimated cost of the last 24 h per request and per tag
        #[arg(long)]
        detailed: bool,
    },
    /// Serve the Model Context Protocol on stdin/stdout: the API's methods as tools for an
    /// agent, with the role given (through --server, the daemon's token decides as well)
    Mcp {
        /// The role the tools act with: reader (queries), operator (also requests, returns,
        /// cancels) or admin
        #[arg(long, value_enum, default_value_t = McpRole::Reader)]
        role: McpRole,
    },
    /// Print the metrics in the OpenMetrics (Prometheus) text format: the daemon's with
    /// --server, else what the shared store holds as this process sees it
    Metrics,
    /// Run the daemon: advance every request in the background, with health endpoints
    Serve(ServeArgs),
    /// Circuit breakers of every provider, as every process sharing the store sees them
    #[command(subcommand)]
    Resilience(ResilienceCmd),
    /// Fault injection on a simulated provider
    #[command(subcommand)]
    Sim(SimCmd),
    /// Provision and return machines on the simulated cloud, end to end
    Quickstart(QuickstartArgs),
    /// Print the shell completion script (for example: ohf completions bash > /etc/bash_completion.d/ohf)
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page in roff (for example: ohf man > /usr/local/share/man/man1/ohf.1)
    Man,
    /// Every template with how many more machines it may have, as JSON
    #[command(name = "getAvailableTemplates")]
    GetAvailableTemplates,
    /// Request machines: --data '{"template_id": "web", "machine_count": 2}' (camelCase too)
    #[command(name = "requestMachines")]
    RequestMachines(MethodArgs),
    /// Requests with their machines, as JSON
    #[command(name = "getRequestStatus")]
    GetRequestStatus {
        /// A request id (repeatable)
        #[arg(long = "request-id", value_name = "ID", required = true)]
        request_ids: Vec<String>,
    },
    /// Run CREATE_INSTANCES, TERMINATE_INSTANCES, GET_INSTANCE_STATUS, VALIDATE_TEMPLATE,
    /// GET_AVAILABLE_TEMPLATES or HEALTH_CHECK on a chosen provider
    #[command(name = "executeProviderOperation")]
    ExecuteProviderOperation(MethodArgs),
    /// Show which provider an operation would go to, and why
    #[command(name = "selectProviderStrategy")]
    SelectProviderStrategy(MethodArgs),
    /// Register a provider instance (kept in the store)
    #[command(name = "registerProviderStrategy")]
    RegisterProviderStrategy(MethodArgs),
    /// Set the selection policy, criteria, fallbacks, health checks (kept in the store)
    #[command(name = "configureProviderStrategy")]
    ConfigureProviderStrategy(MethodArgs),
    /// Mark a provider healthy or unhealthy from outside
    #[command(name = "updateProviderHealth")]
    UpdateProviderHealth(MethodArgs),
    /// Health of every provider, or of provider_name
    #[command(name = "getProviderHealth")]
    GetProviderHealth(MethodArgs),
    /// Registered providers (healthy_only: just the healthy, enabled ones)
    #[command(name = "listAvailableProviders")]
    ListAvailableProviders(MethodArgs),
    /// Operation counts, success rates, latency percentiles and errors per provider
    #[command(name = "getProviderMetrics")]
    GetProviderMetrics(MethodArgs),
    /// What each provider can do, its limits and figures
    #[command(name = "getProviderCapabilities")]
    GetProviderCapabilities(MethodArgs),
}

impl Command {
    /// The provider-strategy method this command is, with its arguments.
    pub fn strategy_method(&self) -> Option<(&'static str, &MethodArgs)> {
        Some(match self {
            Self::ExecuteProviderOperation(a) => ("executeProviderOperation", a),
            Self::SelectProviderStrategy(a) => ("selectProviderStrategy", a),
            Self::RegisterProviderStrategy(a) => ("registerProviderStrategy", a),
            Self::ConfigureProviderStrategy(a) => ("configureProviderStrategy", a),
            Self::UpdateProviderHealth(a) => ("updateProviderHealth", a),
            Self::GetProviderHealth(a) => ("getProviderHealth", a),
            Self::ListAvailableProviders(a) => ("listAvailableProviders", a),
            Self::GetProviderMetrics(a) => ("getProviderMetrics", a),
            Self::GetProviderCapabilities(a) => ("getProviderCapabilities", a),
            _ => return None,
        })
    }
}

/// The document of a provider-strategy method: inline or from a file (none: `{}`).
#[derive(Debug, Args)]
pub struct MethodArgs {
    /// The method's JSON document
    #[arg(long, conflicts_with = "file", value_name = "JSON")]
    pub data: Option<String>,
    /// A file holding the JSON document
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the APIs (gRPC, HTTP JSON) and /healthz, /readyz, /status (overrides serve.listen)
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Worker id, unique among daemons sharing a store (overrides serve.worker_id)
    #[arg(long)]
    pub worker_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct HfArgs {
    /// getAvailableTemplates, requestMachines, requestReturnMachines, getRequestStatus or getReturnRequests
    pub operation: String,
    /// Input JSON file (standard input when absent)
    #[arg(short = 'f', long = "file", visible_alias = "f", value_name = "FILE")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Every setting with its value and where it came from (default, file, environment, flag); secrets masked
    Show,
}

#[derive(Debug, Subcommand)]
pub enum TemplatesCmd {
    /// List templates with how many more machines each may have
    List,
    /// Print templates for the AWS account (an on-demand and a spot one) from what it holds: a
    /// VPC's subnets and security group, a recent Amazon Linux image
    Generate(AccountArgs),
    /// Check a template file and report every problem
    Validate {
        /// The file to check (default: the configured template file)
        #[arg(long, short = 'f', value_name = "FILE")]
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RouteCmd {
    /// Route workloads: from a routing-request form (--file, `-` for stdin) or from flags
    Create(RouteArgs),
    /// Show a routing request (a booking whose day has come is PLACED first)
    Get {
        id: String,
        /// Re-place workloads whose venue is unhealthy now
        #[arg(long)]
        recheck_host: bool,
    },
    /// List routing requests, newest first
    List {
        /// Only this status (BOOKED, PLACED, REJECTED, EXPIRED)
        #[arg(long)]
        status: Option<String>,
        /// Only this requester
        #[arg(long)]
        requester: Option<String>,
    },
    /// The workloads of a routing request with their placements
    Workloads {
        id: String,
        /// Re-place workloads whose venue is unhealthy now
        #[arg(long)]
        recheck_host: bool,
    },
    /// Unroute a routing request, or one of its workloads; its capacity is released
    Delete {
        id: String,
        /// Only this workload
        #[arg(long)]
        workload: Option<String>,
        /// Keep each disk's datastore as the workload's preferred one
        #[arg(long)]
        record_placement: bool,
    },
    /// How many more machines of each template fit in each venue, today and on a date
    Capacity {
        /// Only this template
        #[arg(long)]
        template: Option<String>,
        /// Also on this day (YYYY-MM-DD, UTC)
        #[arg(long, value_parser = parse_day)]
        date: Option<i64>,
        /// The workload profile of the machines
        #[arg(long)]
        profile: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
pub struct RouteArgs {
    /// The seed's routing-request form as JSON (`-`: standard input); flags add to it
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// A workload: NAME=TEMPLATE or NAME=TEMPLATE:COUNT (repeatable)
    #[arg(long = "workload", short = 'w', value_name = "NAME=TEMPLATE[:COUNT]")]
    pub workloads: Vec<String>,
    /// The workloads' profile (Medium_Utilization, …)
    #[arg(long)]
    pub profile: Option<String>,
    /// Book for this day (YYYY-MM-DD, UTC); today when absent
    #[arg(long, value_parser = parse_day)]
    pub date: Option<i64>,
    /// Search only here: ENVIRONMENT or ENVIRONMENT:GROUP[,GROUP] or :GROUP (repeatable)
    #[arg(long = "scope", value_name = "ENV[:GROUPS]")]
    pub scopes: Vec<String>,
    /// capacity_sensitive, cost_sensitive or cost_and_capacity
    #[arg(long)]
    pub mode: Option<String>,
    /// Sensor placement strategy: datastore-fill, ipaddresspools-balance, … (repeatable)
    #[arg(long = "strategy")]
    pub strategies: Vec<String>,
    /// Skip venues whose data for this sensor is being recalculated (repeatable)
    #[arg(long = "require")]
    pub required: Vec<String>,
    /// Place in the scope's infrastructure group even over capacity
    #[arg(long)]
    pub force: bool,
    /// Launch the machines once placed
    #[arg(long)]
    pub provision: bool,
}

/// A UTC day as milliseconds at its midnight.
fn parse_day(text: &str) -> Result<i64, String> {
    let bad = || format!("'{text}' is not a day as YYYY-MM-DD");
    let mut parts = text.trim().splitn(3, '-');
    let mut next = || parts.next().and_then(|p| p.parse::<i64>().ok());
    let (Some(y), Some(m), Some(d)) = (next(), next(), next()) else { return Err(bad()) };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=month_days).contains(&d) {
        return Err(bad());
    }
    // Days from the civil date (proleptic Gregorian), after Howard Hinnant's algorithm.
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(days * 86_400_000)
}

#[derive(Debug, Subcommand)]
pub enum RequestCmd {
    /// Request machines of a template
    Create(CreateArgs),
    /// Show requests with their machines
    Status {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Follow a request until it finishes
    Watch { id: String },
    /// Cancel a request; launched machines are terminated
    Cancel { id: String },
    /// List requests, newest first
    List {
        /// Only these states (PENDING, IN_PROGRESS, COMPLETED, FAILED, TIMEOUT, CANCELLED, PARTIAL_SUCCESS)
        #[arg(long, value_delimiter = ',')]
        state: Vec<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// The audit trail of a request
    History { id: String },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[arg(long, short = 't')]
    pub template: String,
    #[arg(long, short = 'n')]
    pub count: i64,
    /// Seconds before the request times out (60-3600)
    #[arg(long)]
    pub timeout: Option<i64>,
    /// Client request id; creating the same id again returns the existing request
    #[arg(long)]
    pub request_id: Option<String>,
    /// Resource tag KEY=VALUE (repeatable)
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
    /// low, normal or high
    #[arg(long)]
    pub priority: Option<String>,
    /// Availability zones to place machines in
    #[arg(long, value_delimiter = ',')]
    pub zones: Vec<String>,
    /// Request metadata KEY=VALUE (repeatable), such as max-spot-price=0.10, urgency=critical,
    /// callback_url=URL or callback_events='["COMPLETED"]'
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    pub metadata: Vec<String>,
    /// Provider instance to use (default: the template's, else the first configured)
    #[arg(long)]
    pub provider: Option<String>,
    /// Wait until the request finishes, with a progress bar
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Args)]
pub struct ReturnArgs {
    /// Machine ids or host names
    #[arg(required = true)]
    pub machines: Vec<String>,
    #[arg(long)]
    pub request_id: Option<String>,
    /// Terminate without a graceful shutdown (also ends the drain of a return given again by
    /// its --request-id)
    #[arg(long)]
    pub force: bool,
    /// Seconds the scheduler has to drain the machines before they are terminated
    #[arg(long, value_name = "SECS", conflicts_with = "force")]
    pub drain_timeout: Option<u32>,
    /// Wait until every machine is terminated
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Subcommand)]
pub enum ResilienceCmd {
    /// Breaker states (CLOSED, OPEN, HALF_OPEN) with their failures and when they changed
    Status,
}

#[derive(Debug, Subcommand)]
pub enum SimCmd {
    /// Announce a spot interruption of a machine
    Interrupt {
        machine: String,
        /// Seconds of notice before the machine is taken
        #[arg(long, default_value_t = 120)]
        notice: u32,
        #[arg(long)]
        provider: Option<String>,
    },
    /// Stop a machine as if someone outside ohf had
    Stop {
        machine: String,
        #[arg(long)]
        provider: Option<String>,
    },
}

/// The roles of `ohf mcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum McpRole {
    Reader,
    Operator,
    Admin,
}

impl McpRole {
    pub fn role(self) -> ohf_api::access::Role {
        match self {
            Self::Reader => ohf_api::access::Role::Reader,
            Self::Operator => ohf_api::access::Role::Operator,
            Self::Admin => ohf_api::access::Role::Admin,
        }
    }
}

/// The AWS account to read, and what to take from it.
#[derive(Debug, Args)]
pub struct AccountArgs {
    /// The AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1)
    #[arg(long)]
    pub region: Option<String>,
    /// A named profile of the AWS config and credentials files
    #[arg(long)]
    pub profile: Option<String>,
    /// Another endpoint (an emulator, a VPC endpoint)
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// The VPC (default: the account's default VPC, else the only one)
    #[arg(long)]
    pub vpc: Option<String>,
    /// Subnets, comma-separated (default: every subnet of the VPC)
    #[arg(long, value_delimiter = ',')]
    pub subnets: Vec<String>,
    /// Security groups, comma-separated (default: the VPC's default group)
    #[arg(long, value_delimiter = ',')]
    pub security_groups: Vec<String>,
    /// The image (default: the newest Amazon Linux 2023 x86_64 image)
    #[arg(long)]
    pub image: Option<String>,
    /// Instance types, comma-separated; the first is the on-demand template's (default: t3.medium)
    #[arg(long, value_delimiter = ',')]
    pub instance_types: Vec<String>,
    /// Most machines each template may have
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub max_number: u32,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub account: AccountArgs,
    /// The provider's name in ohf.toml
    #[arg(long, default_value = "aws")]
    pub provider_name: String,
    /// This installation's name, tagged on every machine (default: asked, else "hpc")
    #[arg(long)]
    pub cluster: Option<String>,
    /// Replace an existing ohf.toml and awsprov_templates.json
    #[arg(long)]
    pub force: bool,
    /// Ask nothing: take what was found and the defaults
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Host Factory's conf directory ($HF_TOP/conf): install the scripts and register the
    /// provider there, next to what is registered already
    #[arg(long, value_name = "DIR")]
    pub hostfactory: Option<PathBuf>,
    /// The provider instance's name in Host Factory
    #[arg(long, default_value = "ohf")]
    pub instance: String,
}

#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Directory for the sample config and state (default: a new temporary directory)
    #[arg(long)]
    pub dir: Option<PathBuf>,
    #[arg(long, short = 'n', default_value_t = 3)]
    pub count: i64,
}

/// A window as hours: `90m`, `24h`, `7d`, or a plain number of hours; more than 0, at most 90 days.
pub fn parse_period(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 'h'),
    };
    let n: f64 = number.parse().map_err(|_| format!("'{text}' is not a period such as 90m, 24h or 7d"))?;
    let hours = match unit {
        'm' => n / 60.0,
        'h' => n,
        'd' => n * 24.0,
        _ => return Err(format!("'{text}': the unit is m, h or d")),
    };
    if hours > 0.0 && hours <= 2160.0 {
        Ok(hours)
    } else {
        Err(format!("'{text}' must be more than 0 and at most 90d"))
    }
}
