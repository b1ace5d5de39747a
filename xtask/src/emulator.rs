//! The AWS emulator for the tests: moto's server, installed in a virtualenv under the cache
//! directory and run on a free loopback port. Any LocalStack-compatible endpoint can be used
//! instead by setting `OHF_TEST_AWS_ENDPOINT`.

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

/// Starts a fresh emulator on a free port.
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
    let deadline = Instant::now() + Duration::from_secs(30);
    while !answers(port) {
        if Instant::now() > deadline {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            bail!("moto_server did not answer on port {port}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
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
