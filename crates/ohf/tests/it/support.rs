use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use async_trait::async_trait;
use ohf_app::memory::{ManualClock, MemoryStore, SequentialIds, StaticCatalog};
use ohf_app::{
    App, AppSettings, CloudError, CloudErrorKind, CloudProvider, DescribeQuery, EventBus, LaunchRequest, LaunchResult,
    OwnedMachine, Ownership, ProviderCapacity, Refusal,
};
use ohf_cloud_sim::{SimCloud, SimConfig};
use ohf_domain::testing::T0;
use ohf_domain::{MachineObservation, ProviderName, Template};
use serde_json::{Value, json};

pub fn templates() -> Vec<Template> {
    Template::parse_file(&templates_json().to_string()).unwrap()
}

pub fn templates_json() -> Value {
    json!({"templates": [
        {"templateId": "OnDemand-Minimal", "maxNumber": 10, "imageId": "ami-1", "vmType": "m5.large", "instanceTags": "team=abc"},
        {"templateId": "Spot-Compute", "maxNumber": -1, "imageId": "ami-1", "vmTypes": {"c5.xlarge": 1}, "priceType": "spot"}
    ]})
}

/// An application on in-memory adapters and a simulated cloud, with a hand-driven clock.
pub struct Harness {
    pub app: App,
    pub clock: Arc<ManualClock>,
    pub sim: Arc<SimCloud>,
    pub store: Arc<MemoryStore>,
}

pub fn harness(sim: SimConfig, settings: AppSettings) -> Harness {
    harness_with(sim, settings, |p| p)
}

/// As `harness`, with the provider wrapped by `wrap`.
pub fn harness_with(
    sim: SimConfig,
    settings: AppSettings,
    wrap: impl FnOnce(Arc<dyn CloudProvider>) -> Arc<dyn CloudProvider>,
) -> Harness {
    let clock = Arc::new(ManualClock::new(T0));
    let sim = Arc::new(SimCloud::in_memory(ProviderName::new("sim-1").unwrap(), sim, clock.clone()));
    let store = Arc::new(MemoryStore::new());
    let app = App::new(
        store.clone(),
        Arc::new(StaticCatalog(templates())),
        vec![wrap(sim.clone())],
        clock.clone(),
        Arc::new(SequentialIds::default()),
        EventBus::default(),
        settings,
    )
    .unwrap();
    Harness { app, clock, sim, store }
}

/// A provider with faults a real cloud shows: answers lost after a launch (as when the process
/// is killed right after the call), or no capacity figures (as on AWS).
pub struct Faulty {
    pub inner: Arc<dyn CloudProvider>,
    pub lose_launch_answers: bool,
    pub hide_capacity: bool,
}

#[async_trait]
impl CloudProvider for Faulty {
    fn name(&self) -> &ProviderName {
        self.inner.name()
    }
    fn kind(&self) -> &'static str {
        "sim"
    }
    async fn check_template(&self, t: &Template) -> Result<(), CloudError> {
        self.inner.check_template(t).await
    }
    async fn capacity(&self, t: &Template) -> Result<Option<ProviderCapacity>, CloudError> {
        if self.hide_capacity { Ok(None) } else { self.inner.capacity(t).await }
    }
    async fn launch(&self, r: &LaunchRequest) -> Result<LaunchResult, CloudError> {
        let out = self.inner.launch(r).await?;
        if self.lose_launch_answers {
            return Err(CloudError::new(CloudErrorKind::Unavailable, "ConnectionReset", "the answer was lost"));
        }
        Ok(out)
    }
    async fn describe(&self, q: &DescribeQuery) -> Result<Vec<MachineObservation>, CloudError> {
        self.inner.describe(q).await
    }
    async fn terminate(&self, machines: &[OwnedMachine], owner: &Ownership) -> Result<Vec<Refusal>, CloudError> {
        self.inner.terminate(machines, owner).await
    }
}

/// A Host Factory provider instance on disk: conf, work and log dirs.
pub struct HfEnv {
    pub dir: tempfile::TempDir,
}

impl HfEnv {
    pub fn new(provider_toml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for d in ["conf", "work", "log"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("conf/awsprov_templates.json"), templates_json().to_string()).unwrap();
        std::fs::write(dir.path().join("conf/ohf.toml"), provider_toml).unwrap();
        Self { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn scripts() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/hostfactory/scripts")
    }

    /// Runs a provider script as Host Factory does: input in a file, `-f`.
    pub fn script(&self, op: &str, input: &Value) -> (Output, Value) {
        let file = tempfile::NamedTempFile::new_in(self.dir.path()).unwrap();
        std::fs::write(file.path(), input.to_string()).unwrap();
        let out = self.script_cmd(op).arg("-f").arg(file.path()).output().unwrap();
        let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("{op}: stdout is not one JSON document ({e}): {}", String::from_utf8_lossy(&out.stdout))
        });
        (out, doc)
    }

    pub fn script_cmd(&self, op: &str) -> Command {
        let mut cmd = Command::new(Self::scripts().join(format!("{op}.sh")));
        self.env(&mut cmd);
        cmd
    }

    pub fn ohf(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ohf"));
        self.env(&mut cmd);
        cmd
    }

    fn env(&self, cmd: &mut Command) {
        cmd.env("OHF_BIN", env!("CARGO_BIN_EXE_ohf"))
            .env("HF_PROVIDER_NAME", "ohf")
            .env("HF_PROVIDER_CONFDIR", self.path("conf"))
            .env("HF_PROVIDER_WORKDIR", self.path("work"))
            .env("HF_PROVIDER_LOGDIR", self.path("log"))
            .env_remove("OHF_CONFIG")
            .env_remove("OHF_SERVER")
            .env_remove("OHF_TOKEN")
            .env_remove("OHF_CA_CERT")
            .env_remove("OHF_CLIENT_CERT")
            .env_remove("OHF_CLIENT_KEY")
            .env_remove("PRO_CONF_DIR")
            .env_remove("PRO_DATA_DIR");
    }

    /// Every request ohf holds, as stored: through the operator interface, without advancing.
    pub fn stored_requests(&self) -> Vec<Value> {
        let out =
            self.ohf().env("OHF_ADVANCE_ON_POLL", "false").args(["request", "list", "-o", "json"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
    }
}

pub const FAST_SIM: &str = r#"
[[providers]]
name = "sim-1"
type = "sim"
launch_latency_ms = 300
shutdown_latency_ms = 200
"#;

/// `ohf serve` running in an environment, stopped with SIGTERM when dropped.
pub struct Daemon {
    pub child: std::process::Child,
    pub port: u16,
}

impl Daemon {
    /// Starts the daemon on a free loopback port and waits until it listens.
    pub fn start(env: &HfEnv) -> Self {
        Self::start_with(env, &[], std::process::Stdio::null())
    }

    /// As `start`, with more arguments and the daemon's log going to `log`.
    pub fn start_with(env: &HfEnv, args: &[&str], log: impl Into<std::process::Stdio>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child =
            env.ohf().args(args).args(["serve", "--listen", &format!("127.0.0.1:{port}")]).stderr(log).spawn().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "the daemon did not listen");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Self { child, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGTERM, then the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        self.child.wait().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
            let _ = self.child.wait();
        }
    }
}
