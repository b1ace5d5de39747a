//! Python tools the tests need (moto's server, gRPC's Python code generator), each in its own
//! virtualenv under the cache directory, installed once.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, ensure};

pub fn cache() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".into());
    PathBuf::from(home).join(".cache/ohf")
}

/// The virtualenv `name` with `packages` installed; later calls find it in place.
pub fn venv(name: &str, packages: &[&str]) -> anyhow::Result<PathBuf> {
    venv_with(name, Path::new("python3"), packages)
}

/// A Python of at least `major.minor`: `python3.<minor>` on the PATH, else pyenv's newest.
pub fn python_at_least(minor: u32) -> anyhow::Result<PathBuf> {
    let on_path = format!("python3.{minor}");
    if Command::new(&on_path).arg("--version").output().is_ok_and(|o| o.status.success()) {
        return Ok(PathBuf::from(on_path));
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let versions = Path::new(&home).join(".pyenv/versions");
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(&versions)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let mut parts = name.split('.');
            let (major, found) = (parts.next()?.parse::<u32>().ok()?, parts.next()?.parse::<u32>().ok()?);
            (major == 3 && found >= minor).then(|| (found, e.path().join("bin/python3")))
        })
        .filter(|(_, p)| p.exists())
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p).with_context(|| {
        format!("no Python 3.{minor} or newer: neither {on_path} on the PATH nor one in {}", versions.display())
    })
}

/// The virtualenv `name`, made with `python`, with `packages` installed; later calls find it
/// in place.
pub fn venv_with(name: &str, python: &Path, packages: &[&str]) -> anyhow::Result<PathBuf> {
    let dir = cache().join(name);
    let marker = dir.join(".ohf-installed");
    let wanted = packages.join(" ");
    if std::fs::read_to_string(&marker).is_ok_and(|have| have == wanted) {
        return Ok(dir);
    }
    std::fs::create_dir_all(cache())?;
    eprintln!("xtask: installing {wanted} into {}", dir.display());
    let ok = Command::new(python).args(["-m", "venv"]).arg(&dir).status().context("python -m venv")?;
    ensure!(ok.success(), "{} -m venv failed", python.display());
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
