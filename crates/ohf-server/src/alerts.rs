//! Alert sinks: a generic webhook (the alert as JSON), a Slack-compatible webhook (`text`), email
//! over SMTP, and the log; and the `[alerts]` settings that choose them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ohf_app::alerts::{Alert, AlertRules, AlertSink, Rule, RuleName, Severity};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The sink every configuration has.
pub const LOG_SINK: &str = "log";

/// How long one send may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// `[alerts]`: the rate limit, the rules by name, the sinks by name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertSettings {
    /// The rate limit's window, in seconds.
    pub window_secs: u64,
    /// Alerts one rule sends per window; the rest make one digest.
    pub max_per_window: u32,
    pub rules: BTreeMap<RuleName, Rule>,
    pub sinks: BTreeMap<String, SinkSettings>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        let rules = AlertRules::default();
        Self {
            window_secs: rules.window_secs,
            max_per_window: rules.max_per_window,
            rules: BTreeMap::new(),
            sinks: BTreeMap::new(),
        }
    }
}

/// One sink.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkSettings {
    /// POSTs the alert as JSON.
    Webhook { url: String },
    /// POSTs `{"text": …}` (and `channel` when given) to a Slack-compatible incoming webhook.
    Slack { url: String, channel: Option<String> },
    /// Mails the alert through an SMTP relay (`host:port`, no authentication, no TLS: a local
    /// relay).
    Email { smtp_server: String, from: String, to: Vec<String> },
}

impl AlertSettings {
    /// The rules as the alerter takes them.
    pub fn rules(&self) -> AlertRules {
        AlertRules { rules: self.rules.clone(), window_secs: self.window_secs, max_per_window: self.max_per_window }
    }

    /// What is wrong with the settings, naming the key.
    pub fn check(&self) -> Result<(), String> {
        if self.window_secs == 0 || self.max_per_window == 0 {
            return Err("alerts.window_secs and alerts.max_per_window must be at least 1".into());
        }
        for (name, sink) in &self.sinks {
            if name == LOG_SINK {
                return Err(format!("alerts.sinks.{name}: '{LOG_SINK}' is the built-in log sink"));
            }
            match sink {
                SinkSettings::Webhook { url } | SinkSettings::Slack { url, .. } => {
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        return Err(format!("alerts.sinks.{name}.url: must be an http:// or https:// URL"));
                    }
                }
                SinkSettings::Email { smtp_server, from, to } => {
                    if !smtp_server.contains(':') {
                        return Err(format!("alerts.sinks.{name}.smtp_server: must be host:port"));
                    }
                    if to.is_empty() || !from.contains('@') || to.iter().any(|t| !t.contains('@')) {
                        return Err(format!(
                            "alerts.sinks.{name}: from and every address of to must be mail addresses"
                        ));
                    }
                    if [from].into_iter().chain(to).any(|a| a.contains(['\r', '\n', '<', '>'])) {
                        return Err(format!("alerts.sinks.{name}: addresses must be plain"));
                    }
                }
            }
        }
        for (rule, settings) in &self.rules {
            if let Some(unknown) = settings.sinks.iter().find(|s| *s != LOG_SINK && !self.sinks.contains_key(*s)) {
                return Err(format!("alerts.rules.{}.sinks: no sink is named '{unknown}'", rule.as_str()));
            }
        }
        Ok(())
    }

    /// The sinks: the log, and each configured one.
    pub fn build(&self) -> anyhow::Result<Vec<Arc<dyn AlertSink>>> {
        // One client for the webhooks, made only when there are any: building it reads the
        // system's root certificates, which every process start would otherwise pay for.
        let mut http: Option<reqwest::Client> = None;
        let mut client = || -> anyhow::Result<reqwest::Client> {
            if let Some(c) = &http {
                return Ok(c.clone());
            }
            let c = reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .timeout(SEND_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()?;
            http = Some(c.clone());
            Ok(c)
        };
        let mut sinks: Vec<Arc<dyn AlertSink>> = vec![Arc::new(LogSink)];
        for (name, sink) in &self.sinks {
            let name = name.clone();
            sinks.push(match sink.clone() {
                SinkSettings::Webhook { url } => Arc::new(WebhookSink { name, url, http: client()?, slack: None }),
                SinkSettings::Slack { url, channel } => {
                    Arc::new(WebhookSink { name, url, http: client()?, slack: Some(channel) })
                }
                SinkSettings::Email { smtp_server, from, to } => Arc::new(EmailSink { name, smtp_server, from, to }),
            });
        }
        Ok(sinks)
    }
}

/// One line for people: severity, rule, what, and held-back alerts.
fn headline(alert: &Alert) -> String {
    let state = if alert.resolved { "RESOLVED" } else { severity(alert.severity) };
    let held = if alert.suppressed > 0 && !alert.summary.contains("more") {
        format!(" ({} more held back before this one)", alert.suppressed)
    } else {
        String::new()
    };
    format!("[ohf {state}] {}: {}{held}", alert.rule.as_str(), alert.summary)
}

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Low => "LOW",
        Severity::Medium => "MEDIUM",
        Severity::High => "HIGH",
        Severity::Critical => "CRITICAL",
    }
}

struct LogSink;

#[async_trait]
impl AlertSink for LogSink {
    fn name(&self) -> &str {
        LOG_SINK
    }
    async fn send(&self, alert: &Alert) -> Result<(), String> {
        let line = headline(alert);
        match (alert.resolved, alert.severity) {
            (true, _) | (false, Severity::Low) => {
                tracing::info!(rule = alert.rule.as_str(), subject = %alert.subject, "{line}")
            }
            (false, Severity::Medium) => tracing::warn!(rule = alert.rule.as_str(), subject = %alert.subject, "{line}"),
            (false, _) => tracing::error!(rule = alert.rule.as_str(), subject = %alert.subject, "{line}"),
        }
        Ok(())
    }
}

struct WebhookSink {
    name: String,
    url: String,
    http: reqwest::Client,
    /// Slack-compatible, with its channel.
    slack: Option<Option<String>>,
}

#[async_trait]
impl AlertSink for WebhookSink {
    fn name(&self) -> &str {
        &self.name
    }
    async fn send(&self, alert: &Alert) -> Result<(), String> {
        let body = match &self.slack {
            None => json!({"alert": alert, "text": headline(alert)}),
            Some(None) => json!({"text": headline(alert)}),
            Some(Some(channel)) => json!({"text": headline(alert), "channel": channel}),
        };
        let answer = self.http.post(&self.url).json(&body).send().await.map_err(|e| e.to_string())?;
        if answer.status().is_success() { Ok(()) } else { Err(format!("the webhook answered {}", answer.status())) }
    }
}

struct EmailSink {
    name: String,
    smtp_server: String,
    from: String,
    to: Vec<String>,
}

#[async_trait]
impl AlertSink for EmailSink {
    fn name(&self) -> &str {
        &self.name
    }
    async fn send(&self, alert: &Alert) -> Result<(), String> {
        tokio::time::timeout(SEND_TIMEOUT, self.mail(alert))
            .await
            .unwrap_or_else(|_| Err(format!("{} did not answer within {} s", self.smtp_server, SEND_TIMEOUT.as_secs())))
    }
}

impl EmailSink {
    /// One SMTP conversation: EHLO, MAIL FROM, RCPT TO each, DATA, QUIT.
    async fn mail(&self, alert: &Alert) -> Result<(), String> {
        let stream = tokio::net::TcpStream::connect(&self.smtp_server).await.map_err(|e| e.to_string())?;
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        expect(&mut read, 220).await?;
        let mut conversation = Conversation { read, write: &mut write };
        conversation.say("EHLO ohf", 250).await?;
        conversation.say(&format!("MAIL FROM:<{}>", self.from), 250).await?;
        for to in &self.to {
            conversation.say(&format!("RCPT TO:<{to}>"), 250).await?;
        }
        conversation.say("DATA", 354).await?;
        let subject = headline(alert);
        let details = serde_json::to_string_pretty(alert).unwrap_or_default();
        let body = format!(
            "From: <{}>\r\nTo: {}\r\nSubject: {}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{subject}\r\n\r\n{details}\r\n",
            self.from,
            self.to.iter().map(|t| format!("<{t}>")).collect::<Vec<_>>().join(", "),
            subject.replace(['\r', '\n'], " ")
        );
        // Dot-stuffing: a line that starts with a dot gets another.
        let stuffed: Vec<String> =
            body.split("\r\n").map(|l| if l.starts_with('.') { format!(".{l}") } else { l.to_owned() }).collect();
        conversation.say(&format!("{}\r\n.", stuffed.join("\r\n")), 250).await?;
        let _ = conversation.say("QUIT", 221).await;
        Ok(())
    }
}

/// An SMTP connection: a line said, a reply awaited.
struct Conversation<'a> {
    read: BufReader<tokio::net::tcp::OwnedReadHalf>,
    write: &'a mut tokio::net::tcp::OwnedWriteHalf,
}

impl Conversation<'_> {
    async fn say(&mut self, line: &str, code: u16) -> Result<(), String> {
        self.write.write_all(format!("{line}\r\n").as_bytes()).await.map_err(|e| e.to_string())?;
        expect(&mut self.read, code).await
    }
}

/// Reads one SMTP reply (its lines up to the one without a dash) and checks its code.
async fn expect<R: tokio::io::AsyncBufRead + Unpin>(read: &mut R, code: u16) -> Result<(), String> {
    loop {
        let mut line = String::new();
        if read.read_line(&mut line).await.map_err(|e| e.to_string())? == 0 {
            return Err("the SMTP server closed the connection".into());
        }
        let got: u16 =
            line.get(..3).and_then(|c| c.parse().ok()).ok_or_else(|| format!("not an SMTP reply: {line:?}"))?;
        if line.as_bytes().get(3) == Some(&b'-') {
            continue;
        }
        return if got == code || (code == 250 && got == 251) {
            Ok(())
        } else {
            Err(format!("the SMTP server answered {}", line.trim_end()))
        };
    }
}
