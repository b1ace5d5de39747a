//! The status page in a real headless Chromium, driven over WebDriver (chromedriver): it loads,
//! shows a request created through the API, updates when the request completes without being
//! reloaded, stays readable on a phone-sized screen, and leaves screenshots behind as artifacts.
//! `cargo xtask test` installs Chromium and chromedriver when they are missing and sets
//! `OHF_TEST_CHROMEDRIVER` and `OHF_TEST_ARTIFACTS`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Daemon, HfEnv};

/// One HTTP/1.1 exchange with a JSON body: the status and the answer's JSON.
fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reader = BufReader::new(s);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    let code: u16 = status.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut length = None;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse::<usize>().ok();
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    let mut raw = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk).unwrap();
            raw.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = length {
        raw.resize(n, 0);
        reader.read_exact(&mut raw).unwrap();
    } else {
        reader.read_to_end(&mut raw).unwrap();
    }
    (code, serde_json::from_slice(&raw).unwrap_or(Value::Null))
}

/// A chromedriver process with one Chromium session.
struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        let driver = std::env::var("OHF_TEST_CHROMEDRIVER").expect(
            "OHF_TEST_CHROMEDRIVER names chromedriver; `cargo xtask test` installs Chromium and chromedriver and sets it",
        );
        let chromium = std::env::var("OHF_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--window-size=1280,900".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let (code, answer) = http(port, "POST", "/session", Some(&capabilities));
        assert_eq!(code, 200, "a browser session: {answer}");
        let session = answer["value"]["sessionId"].as_str().unwrap().to_owned();
        Browser { driver, port, session, _profile: profile }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (code, answer) = http(self.port, method, &format!("/session/{}{path}", self.session), body.as_ref());
        assert_eq!(code, 200, "{method} {path}: {answer}");
        answer["value"].clone()
    }

    fn go(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url})));
    }

    fn script(&self, script: &str) -> Value {
        self.call("POST", "/execute/sync", Some(json!({"script": script, "args": []})))
    }

    /// Waits until `script` answers something other than null or false.
    fn wait_for(&self, what: &str, script: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let v = self.script(script);
            if !(v.is_null() || v == json!(false)) {
                return v;
            }
            assert!(Instant::now() < deadline, "{what}: not seen within {within:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        let png = decode_base64(self.call("GET", "/screenshot", None).as_str().unwrap());
        assert_eq!(&png[1..4], b"PNG", "a PNG image");
        let dir = std::env::var_os("OHF_TEST_ARTIFACTS").map_or_else(std::env::temp_dir, PathBuf::from);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http(self.port, "DELETE", &format!("/session/{}", self.session), None);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let digits: Vec<u8> = text.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()).map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for group in digits.chunks(4) {
        let mut n = 0u32;
        for (i, d) in group.iter().enumerate() {
            n |= u32::from(*d) << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..group.len()]);
    }
    out
}

#[test]
fn the_status_page_shows_a_request_and_follows_it_to_completed() {
    let env = HfEnv::new(
        r#"advance_on_poll = false
[serve]
interval_ms = 100

[[providers]]
name = "sim-1"
type = "sim"
launch_latency_ms = 6000
shutdown_latency_ms = 100
"#,
    );
    let daemon = Daemon::start(&env);
    let browser = Browser::start();
    browser.go(&format!("{}/?refresh=1", daemon.url()));
    assert_eq!(browser.script("return document.title"), "ohf status");
    browser.wait_for("the first figures", "return document.body.dataset.updated || null", Duration::from_secs(20));
    assert_eq!(browser.script("return document.getElementById('providers-healthy').textContent"), "1 / 1");

    let out = env
        .ohf()
        .args(["--server", &daemon.url(), "request", "create", "-t", "OnDemand-Minimal", "-n", "2", "-o", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = created["requestId"].as_str().unwrap().to_owned();
    let status_of = format!(
        "const r = document.querySelector('tr[data-request-id=\"{id}\"]'); return r ? r.dataset.status : null;"
    );

    // The page shows the request while it launches, then COMPLETED, without a reload.
    browser.script("window.__loaded = performance.timeOrigin; return true;");
    let first = browser.wait_for("the new request", &status_of, Duration::from_secs(20));
    assert!(["PENDING", "IN_PROGRESS"].contains(&first.as_str().unwrap()), "seen first as {first}");
    browser.screenshot("status-page-launching.png");
    browser.wait_for(
        "the request completed",
        &format!("const s = (function() {{ {status_of} }})(); return s === 'COMPLETED' ? s : null;"),
        Duration::from_secs(30),
    );
    assert_eq!(browser.script("return window.__loaded === performance.timeOrigin"), true, "updated in place");
    let held = browser.wait_for(
        "machines held",
        "const r = document.querySelector('#held tr[data-template=\"OnDemand-Minimal\"]'); return r ? r.dataset.machines : null;",
        Duration::from_secs(10),
    );
    assert_eq!(held, "2");
    let saved = browser.screenshot("status-page.png");
    assert!(std::fs::metadata(&saved).unwrap().len() > 1000, "{}", saved.display());

    // Readable on a phone: nothing wider than the screen but the tables' own scroll boxes.
    browser.call("POST", "/window/rect", Some(json!({"width": 390, "height": 844})));
    let overflow = browser.script("return document.documentElement.scrollWidth - document.documentElement.clientWidth");
    assert!(overflow.as_i64().unwrap() <= 0, "the page is {overflow} px wider than a phone");
    browser.screenshot("status-page-phone.png");
    drop(browser);
    assert!(daemon.stop().success());
}

#[test]
fn with_tokens_the_page_asks_for_a_reader_token_first() {
    let env = HfEnv::new(
        r#"[serve]
interval_ms = 100
tokens = [{ name = "dashboard", token = "reader-token-0123456789", role = "reader" }]

[[providers]]
name = "sim-1"
type = "sim"
"#,
    );
    let daemon = Daemon::start(&env);
    let browser = Browser::start();
    browser.go(&daemon.url());
    browser.wait_for(
        "the token form",
        "return document.getElementById('login').hidden === false || null",
        Duration::from_secs(20),
    );
    assert_eq!(browser.script("return document.getElementById('main').hidden"), true, "no figures without a token");
    browser.script(
        "document.getElementById('token').value = 'reader-token-0123456789'; \
         document.getElementById('login').requestSubmit(); return true;",
    );
    browser.wait_for("the figures", "return document.body.dataset.updated || null", Duration::from_secs(20));
    assert_eq!(browser.script("return document.getElementById('main').hidden"), false);
    drop(browser);
    assert!(daemon.stop().success());
}
