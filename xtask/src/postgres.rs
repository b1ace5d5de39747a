//! A Postgres for the tests: the one named by `OHF_TEST_DATABASE_URL`, else the local server
//! (started if installed but stopped), else a throwaway cluster on a free port.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub struct Postgres {
    pub url: String,
    /// The throwaway cluster's data directory, stopped and removed afterwards.
    throwaway: Option<(PathBuf, PathBuf)>,
}

impl Postgres {
    pub fn stop(&self) {
        if let Some((bin, dir)) = &self.throwaway {
            let _ =
                as_postgres(&bin.join("pg_ctl"), &["-D", &dir.display().to_string(), "-m", "fast", "stop"]).status();
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

const LOCAL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn answers(url: &str) -> bool {
    Command::new("psql")
        .args([url, "-tAc", "select 1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn wait_for(url: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if answers(url) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    false
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Runs a Postgres program as the postgres user when we are root (Postgres refuses root).
fn as_postgres(program: &Path, args: &[&str]) -> Command {
    if is_root() {
        let mut cmd = Command::new("su");
        let line = std::iter::once(program.display().to_string())
            .chain(args.iter().map(|a| format!("'{}'", a.replace('\'', "'\\''"))))
            .collect::<Vec<_>>()
            .join(" ");
        cmd.args(["postgres", "-s", "/bin/sh", "-c", &line]);
        cmd
    } else {
        let mut cmd = Command::new(program);
        cmd.args(args);
        cmd
    }
}

fn server_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> =
        std::fs::read_dir("/usr/lib/postgresql").ok()?.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    versions.sort();
    versions.into_iter().rev().map(|v| v.join("bin")).find(|b| b.join("initdb").exists())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub fn ensure() -> anyhow::Result<Postgres> {
    if let Ok(url) = std::env::var("OHF_TEST_DATABASE_URL") {
        if !wait_for(&url, Duration::from_secs(10)) {
            bail!("OHF_TEST_DATABASE_URL is set but nothing answers there");
        }
        return Ok(Postgres { url, throwaway: None });
    }
    // OHF_TEST_POSTGRES=throwaway skips the machine's server (to try the fallback).
    if std::env::var("OHF_TEST_POSTGRES").is_ok_and(|v| v == "throwaway") {
        return throwaway();
    }
    if answers(LOCAL) {
        return Ok(Postgres { url: LOCAL.into(), throwaway: None });
    }
    // Installed but stopped: start the machine's cluster.
    if let Ok(entries) = std::fs::read_dir("/etc/postgresql") {
        for version in entries.filter_map(|e| e.ok()) {
            let v = version.file_name().to_string_lossy().to_string();
            let _ = Command::new("pg_ctlcluster").args(["--skip-systemctl-redirect", &v, "main", "start"]).status();
        }
        if wait_for(LOCAL, Duration::from_secs(15)) {
            return Ok(Postgres { url: LOCAL.into(), throwaway: None });
        }
    }
    if server_bin().is_none() && is_root() {
        eprintln!("xtask: installing postgresql");
        let _ = Command::new("apt-get").arg("update").status();
        let _ = Command::new("apt-get")
            .args(["install", "-y", "postgresql"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
    }
    throwaway()
}

/// A cluster of our own in the cache directory, on a free port, trusting local connections.
fn throwaway() -> anyhow::Result<Postgres> {
    let bin = server_bin().context("no Postgres server is installed (initdb not found) and none answers")?;
    let port = free_port()?;
    let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".into());
    let dir = PathBuf::from(home).join(format!(".cache/ohf/pg-{port}"));
    let parent = dir.parent().context("cache dir")?;
    std::fs::create_dir_all(parent)?;
    let _ = std::fs::remove_dir_all(&dir);
    // The postgres user must reach and own the data directory.
    let data = if is_root() { PathBuf::from(format!("/tmp/ohf-pg-{port}")) } else { dir };
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data)?;
    if is_root() {
        let ok = Command::new("chown").args(["-R", "postgres:postgres", &data.display().to_string()]).status()?;
        anyhow::ensure!(ok.success(), "cannot hand {} to the postgres user", data.display());
    }
    let d = data.display().to_string();
    let ok = as_postgres(&bin.join("initdb"), &["-D", &d, "-A", "trust", "-U", "postgres"])
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(ok.success(), "initdb failed");
    // TLS like the machine's cluster: a self-signed certificate for localhost, which the TLS
    // tests trust as the CA.
    let (cert, key) = (format!("{d}/server.crt"), format!("{d}/server.key"));
    let ok = as_postgres(
        Path::new("openssl"),
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            &key,
            "-out",
            &cert,
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .status()?;
    anyhow::ensure!(ok.success(), "openssl could not make the throwaway cluster's certificate");
    let opts = format!(
        "-p {port} -k {d} -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file={cert} -c ssl_key_file={key}"
    );
    let log = format!("{d}/server.log");
    let ok = as_postgres(&bin.join("pg_ctl"), &["-D", &d, "-o", &opts, "-l", &log, "-w", "start"]).status()?;
    anyhow::ensure!(ok.success(), "pg_ctl start failed; see {log}");
    let admin = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    anyhow::ensure!(wait_for(&admin, Duration::from_secs(30)), "the throwaway cluster does not answer");
    let ok = Command::new("psql").args([&admin, "-qc", "CREATE DATABASE test"]).status()?;
    anyhow::ensure!(ok.success(), "cannot create the test database");
    eprintln!("xtask: started a throwaway postgres on port {port} in {d}");
    Ok(Postgres { url: format!("postgres://postgres@127.0.0.1:{port}/test"), throwaway: Some((bin, data)) })
}
