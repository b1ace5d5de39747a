//! The deploy files are checked as a linter would: the systemd unit's directives and hardening,
//! the container image's stages and user, and that every command and setting they name is one
//! this binary has (no container engine runs here, so the image is not built).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::support::HfEnv;

fn deploy(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy").join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The unit's sections with their `Key=Value` lines, in order (keys may repeat).
fn unit_sections(text: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut sections: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.to_owned());
            sections.entry(name.to_owned()).or_default();
            continue;
        }
        let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("line {}: not Key=Value: {line}", n + 1));
        let section = current.clone().unwrap_or_else(|| panic!("line {}: a directive before any section", n + 1));
        sections.get_mut(&section).unwrap().push((key.trim().to_owned(), value.trim().to_owned()));
    }
    sections
}

/// Directives a unit of this kind may use: a typo is not silently ignored by this check.
const KNOWN: &[(&str, &[&str])] = &[
    (
        "Unit",
        &["Description", "Documentation", "Wants", "After", "Requires", "StartLimitIntervalSec", "StartLimitBurst"],
    ),
    (
        "Service",
        &[
            "Type",
            "User",
            "Group",
            "StateDirectory",
            "StateDirectoryMode",
            "LogsDirectory",
            "LogsDirectoryMode",
            "ConfigurationDirectory",
            "ConfigurationDirectoryMode",
            "WorkingDirectory",
            "Environment",
            "EnvironmentFile",
            "ExecStartPre",
            "ExecStart",
            "KillSignal",
            "KillMode",
            "TimeoutStopSec",
            "Restart",
            "RestartSec",
            "StartLimitIntervalSec",
            "StartLimitBurst",
            "LimitNOFILE",
            "NoNewPrivileges",
            "ProtectSystem",
            "ProtectHome",
            "PrivateTmp",
            "PrivateDevices",
            "ProtectKernelTunables",
            "ProtectKernelModules",
            "ProtectKernelLogs",
            "ProtectControlGroups",
            "ProtectClock",
            "ProtectHostname",
            "ProtectProc",
            "ProcSubset",
            "RestrictAddressFamilies",
            "RestrictNamespaces",
            "RestrictRealtime",
            "RestrictSUIDSGID",
            "LockPersonality",
            "MemoryDenyWriteExecute",
            "RemoveIPC",
            "CapabilityBoundingSet",
            "AmbientCapabilities",
            "SystemCallArchitectures",
            "SystemCallFilter",
            "UMask",
        ],
    ),
    ("Install", &["WantedBy"]),
];

#[test]
fn the_systemd_unit_is_hardened_and_runs_commands_ohf_has() {
    let sections = unit_sections(&deploy("systemd/ohf.service"));
    assert_eq!(sections.keys().collect::<Vec<_>>(), ["Install", "Service", "Unit"]);
    for (section, keys) in &sections {
        let known = KNOWN.iter().find(|(s, _)| s == section).unwrap().1;
        for (key, _) in keys {
            assert!(known.contains(&key.as_str()), "[{section}] {key} is not a directive this unit should use");
        }
    }
    let service = &sections["Service"];
    let one = |key: &str| -> &str {
        let values: Vec<&str> = service.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect();
        assert_eq!(values.len(), 1, "[Service] {key} once: {values:?}");
        values[0]
    };
    // Its own user, never root, with its own state and log directories.
    assert!(!["root", "0", ""].contains(&one("User")));
    assert_eq!(one("StateDirectory"), "ohf");
    assert_eq!(one("LogsDirectory"), "ohf");
    // Hardening.
    for (key, want) in [
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictSUIDSGID", "yes"),
    ] {
        assert_eq!(one(key), want, "[Service] {key}");
    }
    // A graceful stop with room for the grace period, and restarts on failure.
    assert_eq!(one("KillSignal"), "SIGTERM");
    assert_eq!(one("Restart"), "on-failure");
    let stop: u64 = one("TimeoutStopSec").parse().unwrap();
    let env = HfEnv::new("");
    let out = env.ohf().args(["config", "show", "-o", "json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let settings: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let grace = settings.iter().find(|e| e["key"] == "serve.shutdown_grace_secs").unwrap()["value"].as_u64().unwrap();
    assert!(stop > grace, "TimeoutStopSec {stop} leaves room for the {grace} s grace period");
    // Every command it runs is one of this binary's, with the environment it sets.
    let environment: Vec<(String, String)> = service
        .iter()
        .filter(|(k, _)| k == "Environment")
        .map(|(_, v)| {
            let (k, v) = v.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    assert!(environment.iter().any(|(k, _)| k == "OHF_CONFDIR"), "{environment:?}");
    for key in ["ExecStartPre", "ExecStart"] {
        let command: Vec<&str> = one(key).split_whitespace().collect();
        assert_eq!(command[0], "/usr/local/bin/ohf", "{key}");
        let help = env.ohf().args(&command[1..]).arg("--help").output().unwrap();
        assert!(help.status.success(), "{key}: ohf {:?} is not a command", &command[1..]);
    }
    let dirs = tempfile::tempdir().unwrap();
    let mut show = env.ohf();
    show.env_remove("HF_PROVIDER_CONFDIR").env_remove("HF_PROVIDER_WORKDIR").env_remove("HF_PROVIDER_LOGDIR");
    for (k, v) in &environment {
        // The unit's directories, moved under a temporary root.
        show.env(k, dirs.path().join(v.trim_start_matches('/')));
    }
    let out = show.args(["config", "show", "-o", "json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let source = |key: &str| shown.iter().find(|e| e["key"] == key).unwrap()["source"].as_str().unwrap().to_owned();
    for key in ["confdir", "workdir", "logdir"] {
        assert!(source(key).starts_with("environment "), "{key} comes from the unit: {}", source(key));
    }
}

#[test]
fn the_container_image_is_multi_stage_small_and_not_root() {
    let text = deploy("container/Containerfile");
    // Instructions with their continuation lines joined.
    let mut instructions: Vec<(String, String)> = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let line = line.trim_end();
        if pending.is_empty() && (line.trim().is_empty() || line.trim_start().starts_with('#')) {
            continue;
        }
        if let Some(part) = line.strip_suffix('\\') {
            pending.push_str(part);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let (op, args) = pending.trim().split_once(' ').unwrap_or((pending.trim(), ""));
        instructions.push((op.to_ascii_uppercase(), args.trim().to_owned()));
        pending.clear();
    }
    let known =
        ["FROM", "WORKDIR", "RUN", "COPY", "ENV", "VOLUME", "EXPOSE", "USER", "HEALTHCHECK", "ENTRYPOINT", "CMD"];
    for (op, _) in &instructions {
        assert!(known.contains(&op.as_str()), "{op} is not an instruction this image uses");
    }
    let stages: Vec<&String> = instructions.iter().filter(|(op, _)| op == "FROM").map(|(_, a)| a).collect();
    assert!(stages.len() >= 2, "a build stage and a runtime stage: {stages:?}");
    for image in &stages {
        let name = image.split_whitespace().next().unwrap();
        assert!(name.contains(':') && !name.ends_with(":latest"), "{name} is pinned to a tag");
    }
    assert!(stages[0].ends_with(" AS build"), "the first stage is named: {}", stages[0]);
    let runtime = stages.last().unwrap();
    assert!(runtime.contains("distroless") || runtime.contains("slim"), "a small runtime image: {runtime}");
    let last_from = instructions.iter().rposition(|(op, _)| op == "FROM").unwrap();
    let runtime_stage = &instructions[last_from..];
    assert!(!runtime_stage.iter().any(|(op, _)| op == "RUN"), "nothing runs in the runtime stage");
    let user = runtime_stage.iter().rev().find(|(op, _)| op == "USER").map(|(_, a)| a.as_str()).expect("a USER");
    assert!(!user.starts_with("root") && !user.starts_with("0"), "not root: {user}");
    assert!(
        runtime_stage
            .iter()
            .any(|(op, a)| op == "COPY" && a.contains("--from=build") && a.contains("/usr/local/bin/ohf")),
        "the runtime stage takes the binary from the build stage"
    );
    // The commands it runs are this binary's.
    let env = HfEnv::new("");
    for op in ["ENTRYPOINT", "CMD", "HEALTHCHECK"] {
        let args = &runtime_stage.iter().find(|(o, _)| o == op).unwrap_or_else(|| panic!("a {op}")).1;
        let json = args.rsplit_once("CMD ").map_or(args.as_str(), |(_, j)| j);
        let words: Vec<String> = serde_json::from_str(json).unwrap_or_else(|e| panic!("{op} in exec form: {e}"));
        let words: Vec<&str> = words.iter().map(String::as_str).skip_while(|w| *w == "/usr/local/bin/ohf").collect();
        if words.is_empty() {
            continue;
        }
        let help = env.ohf().args(&words).arg("--help").output().unwrap();
        assert!(help.status.success(), "{op}: ohf {words:?} is not a command");
    }
    // Its environment is settings ohf reads.
    let mut show = env.ohf();
    for (_, args) in runtime_stage.iter().filter(|(op, _)| op == "ENV") {
        for pair in args.split_whitespace() {
            let (k, v) = pair.split_once('=').unwrap();
            show.env(k, v);
        }
    }
    let out = show.args(["config", "show", "-o", "json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let entry = |key: &str| shown.iter().find(|e| e["key"] == key).unwrap().clone();
    assert_eq!(entry("serve.listen")["value"], "0.0.0.0:8080");
    assert_eq!(entry("serve.listen")["source"], "environment OHF_SERVE__LISTEN");
    assert_eq!(entry("log_format")["value"], "json");
}
