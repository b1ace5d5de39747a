//! Python tools the tests need (moto's server, gRPC's Python code generator), each in its own
//! virtualenv under the cache directory, installed once.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, ensure};

pub fn cache() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".into());
    PathBuf::from(home).join(".cache/ohf")
}

/// The virtualenv `name` with `packages` installed; later calls find it in place.
pub fn venv(name: &str, packages: &[&str]) -> anyhow::Result<PathBuf> {
    let dir = cache().join(name);
    let marker = dir.join(".ohf-installed");
    let wanted = packages.join(" ");
    if std::fs::read_to_string(&marker).is_ok_and(|have| have == wanted) {
        return Ok(dir);
    }
    std::fs::create_dir_all(cache())?;
    eprintln!("xtask: installing {wanted} into {}", dir.display());
    let ok = Command::new("python3").args(["-m", "venv"]).arg(&dir).status().context("python3 -m venv")?;
    ensure!(ok.success(), "python3 -m venv failed");
    let ok = Command::new(dir.join("bin/pip"))
        .args(["install", "--quiet"])
        .args(packages)
        .status()
        .context("pip install")?;
    ensure!(ok.success(), "pip install {wanted} failed");
    std::fs::write(&marker, wanted)?;
    Ok(dir)
}

/// A Python with grpcio and its code generator, for the test that drives the gRPC API from a
/// client generated from `proto/`.
pub fn grpc() -> anyhow::Result<PathBuf> {
    Ok(venv("grpc-venv", &["grpcio-tools>=1.60,<2"])?.join("bin/python"))
}
