//! Chromium and chromedriver for the status page's browser test: the distribution's packages,
//! installed when missing (as root, through apt).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, ensure};

/// The browser and its driver.
pub struct Browser {
    pub chromium: PathBuf,
    pub driver: PathBuf,
}

fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    names.iter().find_map(|name| std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file()))
}

fn present() -> Option<Browser> {
    Some(Browser { chromium: find(&["chromium", "chromium-browser"])?, driver: find(&["chromedriver"])? })
}

/// Chromium and chromedriver, installed from the distribution's packages when missing.
pub fn ensure() -> anyhow::Result<Browser> {
    if let Some(b) = present() {
        return Ok(b);
    }
    eprintln!("xtask: installing chromium and chromium-driver for the status page's browser test");
    let _ = Command::new("apt-get").arg("update").status();
    let ok = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", "chromium", "chromium-driver"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("apt-get")?;
    ensure!(ok.success(), "apt-get install chromium chromium-driver failed (run as root, or install them)");
    present().context("chromium and chromedriver installed but not found on PATH")
}
