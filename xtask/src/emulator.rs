//! The AWS emulator for the tests, installed in a virtualenv under the cache directory and run
//! on a free loopback port: moto's server (EC2 and Auto Scaling; the default), or LocalStack's
//! community runtime in host mode (EC2 only; `cargo xtask test --emulator localstack`). Any
//! compatible endpoint can be used instead by setting `OHF_TEST_AWS_ENDPOINT`.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use crate::python::cache;

fn state_file() -> PathBuf {
    cache().join("emulator.json")
}

/// A running emulator: its endpoint and, when we started it, its process.
pub struct Emulator {
    pub url: String,
    pid: Option<u32>,
}

impl Emulator {
    pub fn stop(&self) {
        if let Some(pid) = self.pid {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}

/// Installs moto's server once; later calls find it in place.
fn install() -> anyhow::Result<PathBuf> {
    let server = crate::python::venv("moto-venv", &["moto[server]>=5,<6"])?.join("bin/moto_server");
    ensure!(server.exists(), "moto_server was not installed");
    Ok(server)
}

fn answers(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

/// Which emulator the tests run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Moto,
    LocalStack,
}

impl Kind {
    pub fn parse(name: &str) -> anyhow::Result<Self> {
        match name {
            "moto" => Ok(Kind::Moto),
            "localstack" => Ok(Kind::LocalStack),
            other => bail!("--emulator {other}: moto or localstack"),
        }
    }
}

/// LocalStack's community runtime with the versions of its dependencies it works with on
/// Python 3.13 in host mode (newer cbor2 and pyOpenSSL dropped what it uses; its runtime extra
/// leaves out service_identity).
const LOCALSTACK: [&str; 5] =
    ["localstack-core[runtime]==2026.3.0", "cbor2<6", "pyOpenSSL<24.3", "cryptography<44", "service_identity"];

fn wait_for(port: u16, child: &std::process::Child, what: &str, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while !answers(port) {
        if Instant::now() > deadline {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            bail!("{what} did not answer on port {port}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Starts LocalStack's EC2 on a free port, in host mode (no container).
fn start_localstack() -> anyhow::Result<Emulator> {
    let python = crate::python::python_at_least(13)?;
    let venv = crate::python::venv_with("localstack-venv", &python, &LOCALSTACK)?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let data = cache().join(format!("localstack-{port}"));
    std::fs::create_dir_all(&data)?;
    let log = std::fs::File::create(cache().join(format!("localstack-{port}.log")))?;
    let child = Command::new(venv.join("bin/python"))
        .args(["-m", "localstack.runtime.main"])
        .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
        .env("LOCALSTACK_HOST", format!("127.0.0.1:{port}"))
        .env("SERVICES", "ec2")
        .env("FILESYSTEM_ROOT", &data)
        .env("PERSISTENCE", "0")
        // No DNS server of its own and no certificate download: loopback only.
        .env("DNS_ADDRESS", "0")
        .env("SKIP_SSL_CERT_DOWNLOAD", "1")
        // As on AWS, launching an image that does not exist fails.
        .env("MOTO_ENABLE_AMI_VALIDATION", "true")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start LocalStack")?;
    wait_for(port, &child, "LocalStack", Duration::from_secs(90))?;
    Ok(Emulator { url: format!("http://127.0.0.1:{port}"), pid: Some(child.id()) })
}

/// Starts a fresh emulator of `kind` on a free port.
pub fn start_kind(kind: Kind) -> anyhow::Result<Emulator> {
    if let Ok(url) = std::env::var("OHF_TEST_AWS_ENDPOINT") {
        return Ok(Emulator { url, pid: None });
    }
    match kind {
        Kind::Moto => start(),
        Kind::LocalStack => start_localstack(),
    }
}

/// Starts a fresh moto server on a free port.
pub fn start() -> anyhow::Result<Emulator> {
    if let Ok(url) = std::env::var("OHF_TEST_AWS_ENDPOINT") {
        return Ok(Emulator { url, pid: None });
    }
    let server = install()?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let log = std::fs::File::create(cache().join(format!("moto-{port}.log")))?;
    let child = Command::new(server)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        // As on AWS, launching an image that does not exist fails.
        .env("MOTO_ENABLE_AMI_VALIDATION", "true")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start moto_server")?;
    wait_for(port, &child, "moto_server", Duration::from_secs(30))?;
    Ok(Emulator { url: format!("http://127.0.0.1:{port}"), pid: Some(child.id()) })
}

pub fn command(args: &[String]) -> anyhow::Result<()> {
    match args.first().map(String::as_str) {
        Some("start") => {
            if let Some(url) = running()? {
                println!("{url}");
                return Ok(());
            }
            let e = start()?;
            let state = serde_json::json!({"url": e.url, "pid": e.pid});
            std::fs::write(state_file(), state.to_string())?;
            println!("{}", e.url);
        }
        Some("stop") => {
            if let Ok(text) = std::fs::read_to_string(state_file()) {
                let state: serde_json::Value = serde_json::from_str(&text)?;
                if let Some(pid) = state["pid"].as_u64() {
                    let _ = Command::new("kill").arg(pid.to_string()).status();
                }
                std::fs::remove_file(state_file())?;
            }
            println!("stopped");
        }
        Some("status") => match running()? {
            Some(url) => println!("running at {url}"),
            None => println!("not running"),
        },
        _ => bail!("usage: cargo xtask emulator <start|stop|status>"),
    }
    Ok(())
}

fn running() -> anyhow::Result<Option<String>> {
    let Ok(text) = std::fs::read_to_string(state_file()) else { return Ok(None) };
    let state: serde_json::Value = serde_json::from_str(&text)?;
    let url = state["url"].as_str().unwrap_or_default().to_owned();
    let port: u16 = url.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0);
    Ok((port != 0 && answers(port)).then_some(url))
}
