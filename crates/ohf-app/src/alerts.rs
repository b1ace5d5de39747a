//! Alerts: the request-management seed's rules (request_failed, request_timeout,
//! long_running_request) and the resilience and provider-strategy seeds' (breaker_open,
//! provider_unhealthy, consecutive_failures), sent to sinks (a webhook, a Slack-compatible
//! webhook, email, the log). An outage sends one alert and a digest, not one per request: each
//! rule sends at most `max_per_window` alerts per window and counts the rest, and a condition
//! that ends (a breaker closing, a provider healthy again) sends its recovery.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ohf_domain::{EventEnvelope, RequestEvent, RequestState, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::bus::{EventHandler, SystemEvent};
use crate::ports::{Clock, SharedState};
use crate::{keys, shared};

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look.
    Low,
    /// Worth a look soon.
    #[default]
    Medium,
    /// Needs someone now.
    High,
    /// Production is hurt.
    Critical,
}

/// The rules there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleName {
    /// A request ended FAILED.
    RequestFailed,
    /// A request ended TIMEOUT.
    RequestTimeout,
    /// A request is still unfinished `duration_secs` after it was made.
    LongRunningRequest,
    /// A provider turned unhealthy (recovers when it is healthy again).
    ProviderUnhealthy,
    /// A circuit breaker opened (recovers when it closes).
    BreakerOpen,
    /// A provider's calls failed `max_consecutive_failures_before_alert` times in a row.
    ConsecutiveFailures,
}

impl RuleName {
    /// Every rule.
    pub const ALL: [RuleName; 6] = [
        Self::RequestFailed,
        Self::RequestTimeout,
        Self::LongRunningRequest,
        Self::ProviderUnhealthy,
        Self::BreakerOpen,
        Self::ConsecutiveFailures,
    ];

    /// Its name in configuration and in alerts.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequestFailed => "request_failed",
            Self::RequestTimeout => "request_timeout",
            Self::LongRunningRequest => "long_running_request",
            Self::ProviderUnhealthy => "provider_unhealthy",
            Self::BreakerOpen => "breaker_open",
            Self::ConsecutiveFailures => "consecutive_failures",
        }
    }
}

/// One rule's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rule {
    /// Whether it sends anything.
    pub enabled: bool,
    /// The severity its alerts carry.
    pub severity: Severity,
    /// The sinks it goes to, by name; every sink when empty.
    pub sinks: Vec<String>,
    /// long_running_request: how long a request may run before it is reported (default 1800).
    pub duration_secs: Option<u64>,
}

impl Default for Rule {
    fn default() -> Self {
        Self { enabled: true, severity: Severity::Medium, sinks: Vec::new(), duration_secs: None }
    }
}

/// Every rule's settings, and the rate limit they share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertRules {
    /// The rules; a rule left out has its defaults (long_running_request: off).
    pub rules: BTreeMap<RuleName, Rule>,
    /// The window of the rate limit, in seconds.
    pub window_secs: u64,
    /// Alerts one rule sends per window; the rest are counted and sent as one digest when the
    /// window ends.
    pub max_per_window: u32,
}

impl Default for AlertRules {
    fn default() -> Self {
        Self { rules: BTreeMap::new(), window_secs: 600, max_per_window: 3 }
    }
}

impl AlertRules {
    /// The settings of `rule`: as configured, else its defaults.
    pub fn rule(&self, rule: RuleName) -> Rule {
        self.rules.get(&rule).cloned().unwrap_or_else(|| {
            let defaults = Rule::default();
            match rule {
                RuleName::RequestFailed | RuleName::BreakerOpen => Rule { severity: Severity::High, ..defaults },
                RuleName::LongRunningRequest => Rule { enabled: false, severity: Severity::Low, ..defaults },
                _ => defaults,
            }
        })
    }

    /// How long a request may run before long_running_request reports it, when the rule is on.
    pub fn long_running_after(&self) -> Option<u64> {
        let rule = self.rule(RuleName::LongRunningRequest);
        rule.enabled.then(|| rule.duration_secs.unwrap_or(1800))
    }
}

/// One alert as sinks send it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// The rule that raised it.
    pub rule: RuleName,
    /// How urgent.
    pub severity: Severity,
    /// What it is about: a request id, a provider, a provider's service.
    pub subject: String,
    /// One line for people.
    pub summary: String,
    /// The condition ended (a recovery), rather than began.
    pub resolved: bool,
    /// Alerts of this rule held back by the rate limit since the last one sent.
    pub suppressed: u64,
    /// When (RFC 3339 in the document).
    #[serde(serialize_with = "Timestamp::serialize_rfc3339")]
    pub at: Timestamp,
    /// The facts behind it.
    pub details: Value,
}

impl Alert {
    /// A new alert of `rule` about `subject`: not resolved, nothing held back, no details.
    fn of(rule: RuleName, settings: &Rule, subject: &str, summary: String, at: Timestamp) -> Self {
        Alert {
            rule,
            severity: settings.severity,
            subject: subject.to_owned(),
            summary,
            resolved: false,
            suppressed: 0,
            at,
            details: json!({}),
        }
    }
}

/// Where alerts go.
#[async_trait]
pub trait AlertSink: Send + Sync + 'static {
    /// Its name in the rules.
    fn name(&self) -> &str;
    /// Sends one alert; `Err(why)` when it did not go.
    async fn send(&self, alert: &Alert) -> Result<(), String>;
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Window {
    started: Option<Timestamp>,
    sent: u32,
    suppressed: u64,
    last_subject: String,
}

/// What the alerter remembers: in the store's shared state when it has one, so that every
/// process and daemon sharing the store deduplicates and rate-limits as one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct State {
    windows: BTreeMap<RuleName, Window>,
    /// Conditions raised and not yet resolved, per rule and subject.
    active: BTreeSet<(RuleName, String)>,
}

/// Turns what happens into alerts, deduplicated and rate-limited, and sends them.
pub struct Alerter {
    rules: AlertRules,
    sinks: Vec<Arc<dyn AlertSink>>,
    clock: Arc<dyn Clock>,
    consecutive_failures: u32,
    state: Mutex<State>,
    /// Where the state is kept for every process, when set.
    shared: Option<Arc<dyn SharedState>>,
    /// Alerts handed to each sink, by sink and outcome (`sent`, `failed`).
    deliveries: Mutex<std::collections::BTreeMap<(String, &'static str), u64>>,
}

impl Alerter {
    /// An alerter under `rules` sending to `sinks`; `consecutive_failures` is the resilience
    /// seed's `max_consecutive_failures_before_alert` (0: off).
    pub fn new(
        rules: AlertRules,
        sinks: Vec<Arc<dyn AlertSink>>,
        clock: Arc<dyn Clock>,
        consecutive_failures: u32,
    ) -> Self {
        Self {
            rules,
            sinks,
            clock,
            consecutive_failures,
            state: Mutex::default(),
            shared: None,
            deliveries: Mutex::default(),
        }
    }

    /// Keeps what the alerter remembers (open conditions, each rule's window) in `store`, so
    /// that all the processes sharing it send one alert per condition and one rate limit per
    /// rule between them; a store that cannot be reached leaves this process's own memory.
    #[must_use]
    pub fn shared(mut self, store: Arc<dyn SharedState>) -> Self {
        self.shared = Some(store);
        self
    }

    /// Applies `change` to the state (the shared one when there is one) and answers what it
    /// answered. Under contention `change` may run more than once, each time on a fresh read.
    async fn with_state<R>(&self, mut change: impl FnMut(&mut State) -> R) -> R {
        if let Some(store) = &self.shared {
            let mut answer = None;
            match shared::update(&**store, keys::ALERTS, State::default, |s| answer = Some(change(s))).await {
                Ok(_) => {
                    if let Some(a) = answer {
                        return a;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "alert state not shared; this process's own counts"),
            }
        }
        change(&mut self.lock())
    }

    /// Alerts handed to each sink so far: `(sink, outcome)` → how many, the outcome `sent` or
    /// `failed`.
    pub fn deliveries(&self) -> Vec<((String, &'static str), u64)> {
        self.deliveries.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, n)| (k.clone(), *n)).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Raises `rule` about `subject`: sent unless the rule is off, the same condition is already
    /// active (a `stateful` rule), or the rule's window is full (then counted for the digest).
    pub async fn raise(&self, rule: RuleName, subject: &str, summary: String, details: Value, stateful: bool) {
        let settings = self.rules.rule(rule);
        if !settings.enabled {
            return;
        }
        let now = self.clock.now();
        let window_ms = i64::try_from(self.rules.window_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let max = self.rules.max_per_window;
        let decided = self
            .with_state(|state| {
                if stateful && !state.active.insert((rule, subject.to_owned())) {
                    return None;
                }
                let w = state.windows.entry(rule).or_default();
                if w.started.is_none_or(|s| now.unix_millis().saturating_sub(s.unix_millis()) >= window_ms) {
                    // A new window; what the last one held back is told with its first alert.
                    *w = Window { started: Some(now), suppressed: w.suppressed, ..Window::default() };
                }
                if w.sent >= max {
                    w.suppressed += 1;
                    w.last_subject = subject.to_owned();
                    return None;
                }
                w.sent += 1;
                Some(std::mem::take(&mut w.suppressed))
            })
            .await;
        let Some(suppressed) = decided else { return };
        let alert = Alert { suppressed, details, ..Alert::of(rule, &settings, subject, summary, now) };
        self.dispatch(&settings, &alert).await;
    }

    /// Resolves `rule` about `subject`, when it was raised: its recovery is sent.
    pub async fn resolve(&self, rule: RuleName, subject: &str, summary: String) {
        let settings = self.rules.rule(rule);
        if !settings.enabled {
            return;
        }
        let key = (rule, subject.to_owned());
        if !self.with_state(|state| state.active.remove(&key)).await {
            return;
        }
        let alert = Alert { resolved: true, ..Alert::of(rule, &settings, subject, summary, self.clock.now()) };
        self.dispatch(&settings, &alert).await;
    }

    /// Sends the digest of every window that ended with alerts held back; the daemon calls it
    /// now and then.
    pub async fn tick(&self) {
        let now = self.clock.now();
        let window_ms = i64::try_from(self.rules.window_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let due: Vec<(RuleName, u64, String)> = self
            .with_state(|state| {
                state
                    .windows
                    .iter_mut()
                    .filter(|(_, w)| {
                        w.suppressed > 0
                            && w.started.is_some_and(|s| now.unix_millis().saturating_sub(s.unix_millis()) >= window_ms)
                    })
                    .map(|(rule, w)| {
                        let n = std::mem::take(&mut w.suppressed);
                        let last = std::mem::take(&mut w.last_subject);
                        *w = Window { started: Some(now), sent: 1, ..Window::default() };
                        (*rule, n, last)
                    })
                    .collect()
            })
            .await;
        for (rule, n, last) in due {
            let settings = self.rules.rule(rule);
            let summary = format!("{n} more {} alerts in the last {} s", rule.as_str(), self.rules.window_secs);
            let alert = Alert {
                suppressed: n,
                details: json!({"suppressed": n}),
                ..Alert::of(rule, &settings, &last, summary, now)
            };
            self.dispatch(&settings, &alert).await;
        }
    }

    /// Whether the long_running_request rule is on (then the daemon hands it the running
    /// requests now and then).
    pub fn watches_long_running(&self) -> bool {
        self.rules.long_running_after().is_some()
    }

    /// Reports the requests of `running` (id, made at) that have run longer than the
    /// long_running_request rule allows, each once.
    pub async fn long_running(&self, running: &[(String, Timestamp)]) {
        let Some(limit) = self.rules.long_running_after() else { return };
        let now = self.clock.now();
        for (id, since) in running {
            let secs = now.secs_since(*since);
            if secs >= i64::try_from(limit).unwrap_or(i64::MAX) {
                let summary = format!("request {id} has run for {secs} s (limit {limit} s)");
                self.raise(
                    RuleName::LongRunningRequest,
                    id,
                    summary,
                    json!({"requestId": id, "runningSecs": secs}),
                    true,
                )
                .await;
            }
        }
    }

    /// Follows system events: breakers, provider health, failures in a row.
    pub async fn on_system(&self, event: &SystemEvent) {
        match event {
            SystemEvent::BreakerChanged { provider, service, to, failures, .. } => {
                let subject = format!("{provider}/{service}");
                if to == "OPEN" {
                    let summary = format!(
                        "the circuit breaker of {service} on provider {provider} opened after {failures} failures"
                    );
                    self.raise(
                        RuleName::BreakerOpen,
                        &subject,
                        summary,
                        json!({"provider": provider, "service": service, "failures": failures}),
                        true,
                    )
                    .await;
                } else if to == "CLOSED" {
                    self.resolve(
                        RuleName::BreakerOpen,
                        &subject,
                        format!("the circuit breaker of {service} on provider {provider} closed"),
                    )
                    .await;
                    self.resolve(
                        RuleName::ConsecutiveFailures,
                        &subject,
                        format!("calls of {service} on provider {provider} succeed again"),
                    )
                    .await;
                }
                if self.consecutive_failures > 0 && *failures >= self.consecutive_failures && to != "CLOSED" {
                    let summary = format!("{failures} failures in a row of {service} on provider {provider}");
                    self.raise(
                        RuleName::ConsecutiveFailures,
                        &subject,
                        summary,
                        json!({"provider": provider, "service": service, "failures": failures}),
                        true,
                    )
                    .await;
                }
            }
            SystemEvent::ProviderHealthChanged { provider, healthy, message: reason, .. } => {
                if *healthy {
                    self.resolve(
                        RuleName::ProviderUnhealthy,
                        provider,
                        format!("provider {provider} is healthy again"),
                    )
                    .await;
                } else {
                    let summary = format!("provider {provider} is unhealthy: {reason}");
                    self.raise(
                        RuleName::ProviderUnhealthy,
                        provider,
                        summary,
                        json!({"provider": provider, "reason": reason}),
                        true,
                    )
                    .await;
                }
            }
            _ => {}
        }
    }

    async fn dispatch(&self, rule: &Rule, alert: &Alert) {
        for sink in self.sinks.iter().filter(|s| rule.sinks.is_empty() || rule.sinks.iter().any(|n| n == s.name())) {
            let outcome = match sink.send(alert).await {
                Ok(()) => "sent",
                Err(e) => {
                    tracing::warn!(sink = sink.name(), rule = alert.rule.as_str(), error = %e, "alert not sent");
                    "failed"
                }
            };
            *self
                .deliveries
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry((sink.name().to_owned(), outcome))
                .or_default() += 1;
        }
    }
}

#[async_trait]
impl EventHandler for Alerter {
    fn name(&self) -> &str {
        "alerts"
    }

    async fn handle(&self, event: &EventEnvelope) -> Result<(), String> {
        if let RequestEvent::StateChanged { to, error, .. } = &event.event {
            let id = event.request_id.as_str();
            let why = error.clone().unwrap_or_default();
            let details = json!({"requestId": id, "error": why});
            match to {
                RequestState::Failed => {
                    self.raise(RuleName::RequestFailed, id, format!("request {id} failed: {why}"), details, false).await
                }
                RequestState::Timeout => {
                    self.raise(RuleName::RequestTimeout, id, format!("request {id} timed out: {why}"), details, false)
                        .await
                }
                _ => {}
            }
        }
        Ok(())
    }
}
