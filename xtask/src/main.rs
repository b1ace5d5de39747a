//! Project automation: `cargo xtask test` runs every test; `cargo xtask bench` measures.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

mod browser;
mod emulator;
mod postgres;
mod python;
use serde_json::{Value, json};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("tidy") => tidy(),
        Some("bench") => bench(&args[1..]),
        Some("emulator") => emulator::command(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <test|tidy|bench|emulator>\n  test      tidy, then run every test of the workspace (starts Postgres and the AWS emulator as needed);\n            --emulator localstack runs the EC2 suite against LocalStack instead of moto\n  tidy      formatting, dependency rules, clippy -D warnings, and the dependency policy (deny.toml)\n  bench     measure the release binary and the application layer;\n            --baseline PATH compares the Host Factory calls of another ohf binary in the same run\n  emulator  start|stop|status the AWS emulator (moto) on a loopback port"
            );
            std::process::exit(2)
        }
    }
}

/// The workspace this run was started in. `cargo run` sets CARGO_MANIFEST_DIR for the process;
/// the compile-time value would name whichever checkout last built the binary, and checkouts
/// sharing one target dir (CI clones, worktrees) share the binary.
fn root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    Path::new(&manifest).parent().expect("xtask lives in the workspace").to_path_buf()
}

/// A cargo command in the workspace, with none of the variables `cargo run` set for this
/// process: build scripts that watch them (ring's watches CARGO_MANIFEST_DIR) would see them
/// change between `cargo xtask …` and a plain `cargo build`, and rebuild ring, rustls and the
/// AWS SDK each time one follows the other.
fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let set_by_run = key.starts_with("CARGO_PKG_")
            || matches!(
                key,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            );
        if set_by_run {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn run(mut cmd: Command) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("cannot run {shown}"))?;
    ensure!(status.success(), "{shown} failed with {status}");
    Ok(())
}

fn has_nextest() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The checks that need no test run: formatting, ARCHITECTURE.md's dependency rules, clippy
/// with every warning an error, and the dependency policy of `deny.toml` (licences, banned
/// crates, sources, and advisories where the database is at hand) with cargo-deny, installed
/// into the cache on first use.
fn tidy() -> anyhow::Result<()> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    run(fmt)?;
    dependency_rules()?;
    module_cycles()?;
    one_feature_set()?;
    let mut clippy = cargo();
    clippy.args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]);
    run(clippy)?;
    let deny = tool("cargo-deny", "cargo-deny", "0.20")?;
    let mut check = Command::new(&deny);
    check.current_dir(root()).args(["deny", "check", "licenses", "bans", "sources"]);
    run(check)?;
    // Advisories need the RustSec database, which cargo-deny fetches from GitHub; where a copy
    // is in its cache (~/.cargo/advisory-dbs) it is checked offline, else the check says so.
    let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".into());
    let has_db = std::fs::read_dir(PathBuf::from(home).join(".cargo/advisory-dbs"))
        .is_ok_and(|mut entries| entries.any(|e| e.is_ok_and(|e| e.path().join("crates").is_dir())));
    if has_db {
        let mut advisories = Command::new(&deny);
        advisories.current_dir(root()).args(["deny", "--offline", "check", "advisories"]);
        run(advisories)
    } else {
        println!("xtask: advisories not checked: no RustSec database here and none can be fetched");
        Ok(())
    }
}

/// The crates that talk to the outside world; none may depend on another.
const ADAPTERS: [&str; 6] =
    ["ohf-store-sql", "ohf-cloud-sim", "ohf-cloud-aws", "ohf-http", "ohf-grpc", "ohf-hostfactory"];
/// The inner crates: they know no adapter and no composition.
const INNER: [&str; 6] =
    ["ohf-domain", "ohf-provider-strategy", "ohf-placement", "ohf-app", "ohf-api", "ohf-resilience"];
/// Crates that do no I/O.
const PURE: [&str; 3] = ["ohf-domain", "ohf-provider-strategy", "ohf-placement"];
/// Dependencies that mean I/O or an async runtime.
const IO: [&str; 9] = ["tokio", "sqlx", "rusqlite", "tonic", "prost", "reqwest", "axum", "hyper", "aws-"];
/// Infrastructure crates and the only workspace crates (beside the server library, the
/// composition root) that may use them.
const OWNED: [(&str, &[&str]); 8] = [
    ("aws-", &["ohf-cloud-aws"]),
    ("sqlx", &["ohf-store-sql"]),
    ("rusqlite", &["ohf-store-sql"]),
    ("tonic", &["ohf-grpc"]),
    ("prost", &["ohf-grpc"]),
    ("axum", &["ohf-http", "ohf-grpc"]),
    ("reqwest", &[]),
    ("anyhow", &["ohf"]),
];
/// The server library, the composition root: it depends on everything.
const ROOT: &str = "ohf-server";
/// The binary: the command line over the server library. It may name the app's types, the
/// domain's and Host Factory's wire format, and no other adapter or infrastructure crate.
const BIN: (&str, &[&str]) = ("ohf", &["ohf-server", "ohf-api", "ohf-app", "ohf-domain", "ohf-hostfactory"]);

/// ARCHITECTURE.md's dependency rules, read from `cargo metadata` (normal dependencies; tests
/// may use anything).
fn dependency_rules() -> anyhow::Result<()> {
    let out = cargo().args(["metadata", "--format-version", "1", "--no-deps"]).output()?;
    ensure!(out.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    let meta: Value = serde_json::from_slice(&out.stdout)?;
    let mut broken = Vec::new();
    for package in meta["packages"].as_array().into_iter().flatten() {
        let name = package["name"].as_str().unwrap_or_default();
        if name == ROOT || name == "xtask" {
            continue;
        }
        let deps = package["dependencies"].as_array().into_iter().flatten().filter(|d| d["kind"].is_null());
        for dep in deps {
            let dep = dep["name"].as_str().unwrap_or_default();
            let is = |prefix: &str| dep == prefix || (prefix.ends_with('-') && dep.starts_with(prefix));
            if name == BIN.0 && dep.starts_with("ohf-") && !BIN.1.contains(&dep) {
                broken.push(format!("the binary depends on {dep}: it reaches adapters only through ohf-server"));
            }
            if PURE.contains(&name) && IO.iter().any(|p| is(p)) {
                broken.push(format!("{name} is pure but depends on {dep}"));
            }
            if INNER.contains(&name) && (ADAPTERS.contains(&dep) || dep == ROOT || dep == BIN.0) {
                broken.push(format!("inner crate {name} depends on {dep}"));
            }
            if ADAPTERS.contains(&name) && ADAPTERS.contains(&dep) {
                broken.push(format!("adapter {name} depends on adapter {dep}"));
            }
            for (prefix, owners) in OWNED {
                if is(prefix) && !owners.contains(&name) {
                    broken.push(format!("{dep} belongs to {owners:?} (and {ROOT}) but {name} depends on it"));
                }
            }
        }
    }
    if !broken.is_empty() {
        bail!("dependency rules broken (ARCHITECTURE.md):\n  {}", broken.join("\n  "));
    }
    println!("xtask: dependency rules hold");
    Ok(())
}

/// The features every third-party crate is built with, as `cargo tree` resolves them for
/// `args`: package → the union of its feature sets.
fn resolved_features(
    args: &[&str],
) -> anyhow::Result<std::collections::BTreeMap<String, std::collections::BTreeSet<String>>> {
    let out = cargo().args(["tree", "--prefix", "none", "-f", "{p} [{f}]"]).args(args).output()?;
    ensure!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut features: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> = Default::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((package, rest)) = line.split_once(" [") else { continue };
        let Some((list, _)) = rest.split_once(']') else { continue };
        // `name vX.Y.Z (path)` for ours: only third-party crates matter here.
        let package = package.trim();
        if package.contains(" (/") || package.starts_with("ohf") {
            continue;
        }
        features
            .entry(package.to_owned())
            .or_default()
            .extend(list.split(',').filter(|f| !f.is_empty()).map(String::from));
    }
    Ok(features)
}

/// `cargo build -p ohf` resolves the same features for every dependency as the test and bench
/// builds, so no entry point compiles the dependencies (the AWS SDK) twice; the binary names
/// the features the dev-dependencies turn on (crates/ohf/Cargo.toml).
fn one_feature_set() -> anyhow::Result<()> {
    let binary = resolved_features(&["-p", "ohf", "-e", "normal,build"])?;
    let workspace = resolved_features(&["--workspace", "-e", "normal,build,dev"])?;
    let mut differ = Vec::new();
    for (package, features) in &binary {
        if let Some(all) = workspace.get(package)
            && all != features
        {
            let extra: Vec<_> = all.difference(features).cloned().collect();
            differ.push(format!("{package}: the tests add {}", extra.join(", ")));
        }
    }
    if !differ.is_empty() {
        bail!(
            "`cargo build -p ohf` would build these with other features than the tests (name them in crates/ohf/Cargo.toml):\n  {}",
            differ.join("\n  ")
        );
    }
    println!("xtask: the binary and the tests build the dependencies with one set of features");
    Ok(())
}

/// No two modules of a crate use each other (`crate::a` in b.rs and `crate::b` in a.rs): a
/// cycle means the split between them is not real.
fn module_cycles() -> anyhow::Result<()> {
    let mut cycles = Vec::new();
    let mut crates: Vec<PathBuf> = std::fs::read_dir(root().join("crates"))?.flatten().map(|e| e.path()).collect();
    crates.push(root().join("xtask"));
    for krate in crates {
        let src = krate.join("src");
        let Ok(files) = std::fs::read_dir(&src) else { continue };
        let mut uses: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> = Default::default();
        for file in files.flatten() {
            let path = file.path();
            let Some(module) = path.file_stem().and_then(|s| s.to_str()).map(String::from) else { continue };
            if path.extension().is_none_or(|e| e != "rs") || module == "lib" || module == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path)?;
            let used: Vec<String> = text
                .match_indices("crate::")
                .filter_map(|(at, _)| {
                    let rest = &text[at + "crate::".len()..];
                    let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                    (!name.is_empty() && name != module).then_some(name)
                })
                .collect();
            uses.entry(module).or_default().extend(used);
        }
        for (a, used) in &uses {
            for b in used.iter().filter(|b| a < *b) {
                if uses.get(b).is_some_and(|u| u.contains(a)) {
                    cycles.push(format!("{}: {a}.rs and {b}.rs use each other", src.display()));
                }
            }
        }
    }
    if !cycles.is_empty() {
        bail!("module cycles:\n  {}", cycles.join("\n  "));
    }
    println!("xtask: no module uses a module that uses it");
    Ok(())
}

/// A cargo tool in `~/.cache/ohf/tools`, installed from crates.io (`version`, locked) when
/// missing.
fn tool(package: &str, bin: &str, version: &str) -> anyhow::Result<PathBuf> {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".into());
    let root_dir = PathBuf::from(home).join(".cache/ohf/tools");
    let path = root_dir.join("bin").join(bin);
    if !path.exists() {
        eprintln!("xtask: installing {package} {version} into {}", root_dir.display());
        let mut install = cargo();
        install
            .args(["install", package, "--locked", "--version", &format!("^{version}"), "--root"])
            .arg(&root_dir)
            // Its own build dir: the workspace's target dir keeps the workspace's artifacts.
            .env("CARGO_TARGET_DIR", root_dir.join("target"));
        run(install)?;
        let _ = std::fs::remove_dir_all(root_dir.join("target"));
    }
    Ok(path)
}

/// The tests that need Auto Scaling, which LocalStack's community edition does not have: they
/// run on moto only.
const NEEDS_AUTO_SCALING: [&str; 5] = [
    "aws::auto_scaling_group_flow_provisions_and_returns",
    "aws::a_partial_return_shrinks_the_group",
    "aws::app_level::a_request_cancelled_while_its_group_fills_stops_the_group_with_its_machines",
    "aws::returning_what_ohf_did_not_launch_touches_nothing",
    "aws::app_level::following_many_fleets_and_groups_takes_one_describe_per_kind_a_cycle",
];

fn test(extra: &[String]) -> anyhow::Result<()> {
    // `--emulator moto|localstack` is ours (neither: moto for everything, then LocalStack for
    // the EC2 suite); the rest goes to the test runner.
    let mut only = None;
    let mut rest = Vec::new();
    let mut args = extra.iter();
    while let Some(a) = args.next() {
        match a.strip_prefix("--emulator") {
            Some("") => only = Some(emulator::Kind::parse(args.next().map_or("", String::as_str))?),
            Some(v) if v.starts_with('=') => only = Some(emulator::Kind::parse(&v[1..])?),
            _ => rest.push(a.clone()),
        }
    }
    if only == Some(emulator::Kind::LocalStack) {
        let mut build = cargo();
        build.args(["build", "--workspace", "--tests", "--bins"]);
        run(build)?;
        return test_localstack(&rest);
    }
    let extra = &rest[..];
    tidy()?;
    let mut build = cargo();
    build.args(["build", "--workspace", "--tests", "--bins"]);
    run(build)?;
    // The binary as `cargo run -p ohf` (the README's quickstart) builds it: without the tests'
    // dev-dependencies, tokio and regex-syntax resolve to fewer features, so their dependents
    // are a second set of artifacts. Building it here keeps the quickstart from compiling
    // anything after the test command.
    let mut binary = cargo();
    binary.args(["build", "-p", "ohf", "--bins"]);
    run(binary)?;
    // The embedding example is a service of its own: it must keep building and running.
    let mut example = cargo();
    example.args(["run", "--quiet", "-p", "ohf-example-embedding"]).stdout(Stdio::null());
    run(example)?;
    println!("xtask: the embedding example ran");
    // The examples in the domain's and the application's documentation compile and run.
    let mut doctests = cargo();
    doctests.args(["test", "--quiet", "--doc", "-p", "ohf-domain", "-p", "ohf-app"]);
    run(doctests)?;
    let postgres = postgres::ensure()?;
    println!("xtask: postgres at {}", postgres.url);
    let aws = match emulator::start_kind(emulator::Kind::Moto) {
        Ok(e) => e,
        Err(e) => {
            postgres.stop();
            return Err(e);
        }
    };
    println!("xtask: aws emulator at {}", aws.url);
    let grpc_python = match python::grpc() {
        Ok(p) => p,
        Err(e) => {
            postgres.stop();
            aws.stop();
            return Err(e);
        }
    };
    let browser = match browser::ensure() {
        Ok(b) => b,
        Err(e) => {
            postgres.stop();
            aws.stop();
            return Err(e);
        }
    };
    let artifacts = target_dir().join("ohf-artifacts");
    let mut cmd = cargo();
    cmd.env("OHF_TEST_DATABASE_URL", &postgres.url)
        .env("OHF_TEST_AWS_ENDPOINT", &aws.url)
        .env("OHF_TEST_GRPC_PYTHON", &grpc_python)
        .env("OHF_TEST_CHROMIUM", &browser.chromium)
        .env("OHF_TEST_CHROMEDRIVER", &browser.driver)
        .env("OHF_TEST_ARTIFACTS", &artifacts);
    if has_nextest() {
        cmd.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
    } else {
        cmd.args(["test", "--workspace", "--no-fail-fast"]);
    }
    cmd.args(extra);
    let outcome = run(cmd);
    postgres.stop();
    aws.stop();
    outcome?;
    println!("xtask: screenshots of the status page in {}", artifacts.display());
    // The same EC2 cases against the other emulator the product names, unless the run was
    // narrowed (to moto, or to some tests).
    if only.is_none() && extra.is_empty() && has_nextest() && std::env::var_os("OHF_TEST_AWS_ENDPOINT").is_none() {
        test_localstack(&[])?;
    }
    Ok(())
}

/// The EC2 suite against LocalStack: the AWS adapter's emulator tests and the AWS flows of the
/// binary's tests, without the Auto Scaling cases (LocalStack's community edition has none;
/// they run on moto in the default `cargo xtask test`).
fn test_localstack(extra: &[String]) -> anyhow::Result<()> {
    ensure!(has_nextest(), "--emulator localstack selects its tests with cargo-nextest, which is not installed");
    let aws = emulator::start_kind(emulator::Kind::LocalStack)?;
    println!("xtask: LocalStack (EC2) at {}", aws.url);
    println!(
        "xtask: LocalStack's community edition has no Auto Scaling; these run on moto only (cargo xtask test):\n  {}",
        NEEDS_AUTO_SCALING.join("\n  ")
    );
    let excluded: Vec<String> = NEEDS_AUTO_SCALING.iter().map(|t| format!("test(={t})")).collect();
    let filter = format!(
        "((binary_id(ohf-cloud-aws::it) & test(/^emulator::/)) | (binary_id(ohf::it) & test(/^aws::/))) & not ({})",
        excluded.join(" | ")
    );
    let mut cmd = cargo();
    cmd.env("OHF_TEST_AWS_ENDPOINT", &aws.url)
        .env("OHF_TEST_AWS_EMULATOR", "localstack")
        .args(["nextest", "run", "--workspace", "--no-fail-fast", "-E", &filter])
        .args(extra);
    let outcome = run(cmd);
    aws.stop();
    outcome
}

fn median(sorted: &[Duration]) -> Duration {
    sorted[sorted.len() / 2]
}

fn bench(extra: &[String]) -> anyhow::Result<()> {
    // `--baseline PATH`: an `ohf` binary of another commit, measured in the same run beside this one.
    let baseline = match extra {
        [] => None,
        [flag, path] if flag == "--baseline" => {
            let path = PathBuf::from(path);
            ensure!(path.is_file(), "--baseline {}: no such binary", path.display());
            Some(path)
        }
        _ => anyhow::bail!("usage: cargo xtask bench [--baseline PATH-TO-AN-OHF-BINARY]"),
    };
    let mut build = cargo();
    build.args(["build", "--release", "-p", "ohf"]);
    run(build)?;
    if baseline.is_some() {
        // The comparison alone: the application-layer benches measure the library, not a binary.
        return hf_bench(baseline.as_deref());
    }
    hf_bench(None)?;
    let postgres = postgres::ensure()?;
    let outcome = (|| {
        // Placement: one routing request against 10,000 bookings, and creations through the
        // engine (memory, SQLite, Postgres).
        // Built beside `ohf`: the same packages resolve the same features as the app bench and
        // the release binary, so no dependency is compiled a second time for another set.
        for (package, name) in [("ohf-placement", "route"), ("ohf-app", "placement")] {
            let mut cmd = cargo();
            cmd.env("OHF_TEST_DATABASE_URL", &postgres.url)
                .args(["bench", "-p", "ohf", "-p", package, "--bench", name]);
            run(cmd)?;
        }
        // Application-layer throughput and memory, on SQLite and Postgres.
        for mode in [None, Some("rss"), Some("rss-postgres"), Some("grpc"), Some("history"), Some("priority")] {
            let mut cmd = cargo();
            cmd.env("OHF_TEST_DATABASE_URL", &postgres.url).args(["bench", "-p", "ohf", "--bench", "app"]);
            if let Some(mode) = mode {
                cmd.args(["--", mode]);
            }
            run(cmd)?;
        }
        Ok(())
    })();
    postgres.stop();
    outcome
}

/// Where cargo builds: `CARGO_TARGET_DIR`, else `target/` in the workspace.
fn target_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root().join("target"))
}

/// One getRequestStatus invocation of the release binary for 100 requests of 10 machines.
fn hf_bench(baseline: Option<&Path>) -> anyhow::Result<()> {
    let target = target_dir();
    let bin = target.join("release/ohf");
    ensure!(bin.exists(), "{} was not built", bin.display());
    // With a baseline, both binaries are measured in turn in this one run, so the machine's
    // noise falls on both alike.
    if let Some(base) = baseline {
        for round in 1..=2 {
            println!("-- round {round}: baseline {}", base.display());
            hf_bench_of(base)?;
            println!("-- round {round}: this build");
            hf_bench_of(&bin)?;
        }
        return Ok(());
    }
    hf_bench_of(&bin)
}

/// The Host Factory call figures of the `ohf` binary `bin`, each through the provider script's
/// way of calling it.
fn hf_bench_of(bin: &Path) -> anyhow::Result<()> {
    let bin = bin.to_path_buf();
    for (label, latency_ms) in [("complete", 0u64), ("pending", 3_600_000u64)] {
        let dir = tempfile_dir(label)?;
        let ids = seed(&bin, &dir, latency_ms, 100, 10)?;
        let input = dir.join("status.json");
        let requests: Vec<Value> = ids.iter().map(|id| json!({"requestId": id})).collect();
        std::fs::write(&input, json!({"requests": requests}).to_string())?;
        // Warm up once, and check the answer is what it should be.
        let doc = hf(&bin, &dir, "getRequestStatus", &input)?;
        let list = doc["requests"].as_array().context("no requests in the answer")?;
        ensure!(list.len() == 100 && list.iter().all(|r| r["machines"].as_array().is_some_and(|m| m.len() == 10)));
        let want = if latency_ms == 0 { "complete" } else { "running" };
        ensure!(list.iter().all(|r| r["status"] == want), "requests are not all {want}");
        let mut times = Vec::new();
        for _ in 0..41 {
            // Time the invocation alone: spawn, answer read whole, exit. The answer was checked above.
            let mut cmd = hf_command(&bin, &dir, "getRequestStatus", &input);
            let started = Instant::now();
            let out = cmd.output()?;
            times.push(started.elapsed());
            ensure!(out.status.success(), "getRequestStatus failed");
        }
        times.sort();
        let target = if latency_ms == 0 { 15.0 } else { 30.0 };
        println!(
            "getRequestStatus, 100 requests x 10 machines, {label}: median {:.1} ms, p90 {:.1} ms, min {:.1} ms ({} runs) {}",
            median(&times).as_secs_f64() * 1e3,
            times[times.len() * 9 / 10].as_secs_f64() * 1e3,
            times[0].as_secs_f64() * 1e3,
            times.len(),
            against(median(&times).as_secs_f64() * 1e3 <= target, &format!("<= {target:.0} ms"))
        );
        if latency_ms == 0 {
            // The cheapest call: start, configuration, store, templates.
            let empty = dir.join("empty.json");
            std::fs::write(&empty, "{}")?;
            let mut times = Vec::new();
            for _ in 0..41 {
                let mut cmd = hf_command(&bin, &dir, "getAvailableTemplates", &empty);
                let started = Instant::now();
                let out = cmd.output()?;
                times.push(started.elapsed());
                ensure!(out.status.success(), "getAvailableTemplates failed");
            }
            times.sort();
            let ms = median(&times).as_secs_f64() * 1e3;
            println!(
                "getAvailableTemplates: median {ms:.1} ms ({} runs) {}",
                times.len(),
                against(ms <= 6.0, "<= 6 ms")
            );
        }
        std::fs::remove_dir_all(&dir).ok();
    }
    Ok(())
}

/// A figure's target and whether it was met, as the benchmarks print it.
fn against(met: bool, target: &str) -> String {
    format!("[target {target}: {}]", if met { "met" } else { "MISSED" })
}

fn tempfile_dir(label: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("ohf-bench-{label}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    for d in ["conf", "work", "log"] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    Ok(dir)
}

fn hf_command(bin: &Path, dir: &Path, op: &str, input: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(["hf", op, "-f"])
        .arg(input)
        .env("HF_PROVIDER_CONFDIR", dir.join("conf"))
        .env("HF_PROVIDER_WORKDIR", dir.join("work"))
        .env("HF_PROVIDER_LOGDIR", dir.join("log"))
        .stdin(Stdio::null());
    cmd
}

fn hf(bin: &Path, dir: &Path, op: &str, input: &Path) -> anyhow::Result<Value> {
    let out = hf_command(bin, dir, op, input).output()?;
    let doc: Value = serde_json::from_slice(&out.stdout).with_context(|| format!("{op} answered no JSON"))?;
    if !out.status.success() {
        bail!("{op} failed: {doc}");
    }
    Ok(doc)
}

/// A provider instance with `requests` requests of `machines` machines each.
fn seed(bin: &Path, dir: &Path, latency_ms: u64, requests: usize, machines: u32) -> anyhow::Result<Vec<String>> {
    std::fs::write(
        dir.join("conf/ohf.toml"),
        format!("[[providers]]\nname = \"sim-1\"\ntype = \"sim\"\nlaunch_latency_ms = {latency_ms}\n"),
    )?;
    std::fs::write(
        dir.join("conf/awsprov_templates.json"),
        json!({"templates": [{"templateId": "Bench", "maxNumber": -1, "imageId": "ami-1", "vmType": "m5.large"}]})
            .to_string(),
    )?;
    let input = dir.join("request.json");
    std::fs::write(&input, json!({"template": {"templateId": "Bench", "machineCount": machines}}).to_string())?;
    (0..requests)
        .map(|_| {
            let doc = hf(bin, dir, "requestMachines", &input)?;
            doc["requestId"].as_str().map(String::from).context("no requestId")
        })
        .collect()
}
