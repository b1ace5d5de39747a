use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ohf_domain::Template;
use serde_json::Value;

pub fn templates() -> Vec<Template> {
    ohf_domain::testing::hf_templates()
}

pub fn templates_json() -> Value {
    ohf_domain::testing::hf_templates_json()
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

/// A daemon for a test: `ohf_server::Server` in this process on port 0 (`start`), or an
/// `ohf serve` process that reports the port it was given (`spawn_with`). Stopped when dropped.
pub struct Daemon {
    pub port: u16,
    running: Running,
}

enum Running {
    InProcess { stop: Option<tokio::sync::oneshot::Sender<()>>, thread: Option<std::thread::JoinHandle<bool>> },
    Process(std::process::Child),
}

/// How a daemon stopped.
pub struct Stopped(bool);

impl Stopped {
    /// It stopped cleanly (exit status 0, or `run_until_stopped` returned Ok).
    pub fn success(&self) -> bool {
        self.0
    }
}

impl Daemon {
    /// Builds the daemon of `env`'s settings in this process, on a free loopback port, and
    /// serves it on a runtime of its own until stopped.
    pub fn start(env: &HfEnv) -> Self {
        let overrides = ohf_server::Overrides {
            config: Some(env.path("conf/ohf.toml")),
            confdir: Some(env.path("conf")),
            workdir: Some(env.path("work")),
            logdir: Some(env.path("log")),
            database_url: None,
        };
        let settings = ohf_server::Resolved::load(&overrides).expect("the daemon's settings");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (bound, port) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let options = ohf_server::ServeOptions { listen: Some("127.0.0.1:0".into()), worker_id: None };
                let server = match ohf_server::Server::build(&settings, options).await {
                    Ok(server) => server,
                    Err(e) => {
                        let _ = bound.send(Err(format!("{e:#}")));
                        return false;
                    }
                };
                let _ = bound.send(Ok(server.port()));
                server
                    .run_until_stopped(async move {
                        let _ = stopped.await;
                    })
                    .await
                    .is_ok()
            })
        });
        let port = port.recv().expect("the daemon thread").unwrap_or_else(|e| panic!("the daemon did not start: {e}"));
        Self { port, running: Running::InProcess { stop: Some(stop), thread: Some(thread) } }
    }

    /// Runs `ohf serve` as a process with more arguments, its log going to `log`; the port is
    /// the one it reports on its first line.
    pub fn spawn_with(env: &HfEnv, args: &[&str], log: impl Into<std::process::Stdio>) -> Self {
        use std::io::BufRead;
        let mut child = env
            .ohf()
            .args(args)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        std::io::BufReader::new(stdout).read_line(&mut line).unwrap();
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the daemon did not say where it listens: {line:?}"));
        Self { port, running: Running::Process(child) }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops it as SIGTERM does, then how it ended.
    pub fn stop(mut self) -> Stopped {
        self.halt()
    }

    fn halt(&mut self) -> Stopped {
        match &mut self.running {
            Running::InProcess { stop, thread } => {
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
                Stopped(thread.take().is_some_and(|t| t.join().unwrap_or(false)))
            }
            Running::Process(child) => {
                if let Ok(Some(status)) = child.try_wait() {
                    return Stopped(status.success());
                }
                let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
                Stopped(child.wait().is_ok_and(|s| s.success()))
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.halt();
    }
}

/// One POST a [`Receiver`] took: its headers (names in lower case) and body.
#[derive(Debug, Clone)]
pub struct Hit {
    pub headers: std::collections::HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Hit {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// A local HTTP receiver for callbacks and webhooks: answers each POST with the next status
/// of its script (the last one repeats) and keeps what it was sent.
pub struct Receiver {
    pub url: String,
    hits: std::sync::Arc<std::sync::Mutex<Vec<Hit>>>,
}

impl Receiver {
    pub fn start(statuses: Vec<u16>) -> Self {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let hits = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = hits.clone();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut headers = std::collections::HashMap::new();
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.trim_end().split_once(':') {
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                    }
                }
                let length = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                kept.lock().unwrap().push(Hit { headers, body });
                let status = statuses.get(n).or(statuses.last()).copied().unwrap_or(200);
                let _ = write!(stream, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        });
        Self { url, hits }
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Waits until `n` posts arrived (or `within` passed); what arrived.
    pub fn wait_for(&self, n: usize, within: std::time::Duration) -> Vec<Hit> {
        let deadline = std::time::Instant::now() + within;
        while self.hits().len() < n && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        self.hits()
    }
}

/// A local SMTP server: takes every message (no authentication) and keeps its envelope and text.
pub struct SmtpReceiver {
    pub addr: String,
    mails: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl SmtpReceiver {
    pub fn start() -> Self {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mails = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = mails.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut transcript = String::new();
                let _ = write!(stream, "220 localhost ESMTP test\r\n");
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    transcript += &line;
                    let upper = line.to_ascii_uppercase();
                    let reply = if upper.starts_with("EHLO") {
                        "250-localhost\r\n250 OK\r\n".to_owned()
                    } else if upper.starts_with("DATA") {
                        let _ = write!(stream, "354 go on\r\n");
                        loop {
                            line.clear();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == ".\r\n" {
                                break;
                            }
                            transcript += &line;
                        }
                        "250 queued\r\n".to_owned()
                    } else if upper.starts_with("QUIT") {
                        let _ = write!(stream, "221 bye\r\n");
                        break;
                    } else {
                        "250 OK\r\n".to_owned()
                    };
                    let _ = stream.write_all(reply.as_bytes());
                    line.clear();
                }
                kept.lock().unwrap().push(transcript);
            }
        });
        Self { addr, mails }
    }

    pub fn mails(&self) -> Vec<String> {
        self.mails.lock().unwrap().clone()
    }
}
