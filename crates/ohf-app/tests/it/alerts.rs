//! The alerter: rules, rate limits with digests, dedup and recoveries, routing to sinks.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ohf_app::EventHandler;
use ohf_app::alerts::{Alert, AlertRules, AlertSink, Alerter, Rule, RuleName, Severity};
use ohf_app::bus::SystemEvent;
use ohf_app::memory::ManualClock;
use ohf_domain::testing::T0;
use ohf_domain::{EventEnvelope, RequestEvent, RequestId, RequestState};

#[derive(Default)]
struct Kept {
    name: String,
    alerts: Mutex<Vec<Alert>>,
}

#[async_trait]
impl AlertSink for Kept {
    fn name(&self) -> &str {
        &self.name
    }
    async fn send(&self, alert: &Alert) -> Result<(), String> {
        self.alerts.lock().unwrap().push(alert.clone());
        Ok(())
    }
}

impl Kept {
    fn named(name: &str) -> Arc<Self> {
        Arc::new(Self { name: name.into(), ..Self::default() })
    }
    fn taken(&self) -> Vec<Alert> {
        std::mem::take(&mut *self.alerts.lock().unwrap())
    }
}

fn failed(id: &str) -> EventEnvelope {
    EventEnvelope {
        request_id: RequestId::new(id).unwrap(),
        seq: 3,
        at: T0,
        event: RequestEvent::StateChanged {
            from: RequestState::InProgress,
            to: RequestState::Failed,
            error: Some("InsufficientInstanceCapacity".into()),
        },
        by: None,
    }
}

fn breaker(to: &str, failures: u32) -> SystemEvent {
    SystemEvent::BreakerChanged {
        provider: "aws-1".into(),
        service: "ec2".into(),
        from: "CLOSED".into(),
        to: to.into(),
        failures,
        at: T0,
    }
}

fn alerter(rules: AlertRules, sinks: Vec<Arc<Kept>>, clock: Arc<ManualClock>) -> Alerter {
    Alerter::new(rules, sinks.into_iter().map(|s| s as Arc<dyn AlertSink>).collect(), clock, 10)
}

#[tokio::test]
async fn an_outage_sends_a_few_alerts_and_one_digest_not_one_per_request() {
    let clock = Arc::new(ManualClock::new(T0));
    let sink = Kept::named("ops");
    let a = alerter(
        AlertRules { window_secs: 600, max_per_window: 3, ..AlertRules::default() },
        vec![sink.clone()],
        clock.clone(),
    );
    for n in 0..100 {
        a.handle(&failed(&format!("req-{n}"))).await.unwrap();
    }
    let sent = sink.taken();
    assert_eq!(sent.len(), 3, "the window's share");
    assert!(sent.iter().all(|s| s.rule == RuleName::RequestFailed && s.severity == Severity::High && !s.resolved));
    assert_eq!(sent[0].subject, "req-0");
    a.tick().await;
    assert!(sink.taken().is_empty(), "no digest before the window ends");
    clock.advance_secs(601);
    a.tick().await;
    let digest = sink.taken();
    assert_eq!(digest.len(), 1);
    assert_eq!(digest[0].suppressed, 97);
    assert!(digest[0].summary.contains("97 more request_failed"), "{}", digest[0].summary);
    a.tick().await;
    assert!(sink.taken().is_empty(), "a digest is sent once");
}

#[tokio::test]
async fn a_breaker_alerts_once_while_open_and_recovers_when_it_closes() {
    let clock = Arc::new(ManualClock::new(T0));
    let sink = Kept::named("ops");
    let a = alerter(AlertRules::default(), vec![sink.clone()], clock);
    a.on_system(&breaker("OPEN", 5)).await;
    a.on_system(&breaker("OPEN", 6)).await;
    let sent = sink.taken();
    assert_eq!(sent.len(), 1, "one alert per open breaker: {sent:?}");
    assert_eq!((sent[0].rule, sent[0].subject.as_str()), (RuleName::BreakerOpen, "aws-1/ec2"));
    a.on_system(&breaker("CLOSED", 0)).await;
    let recovery = sink.taken();
    assert_eq!(recovery.len(), 1);
    assert!(recovery[0].resolved);
    a.on_system(&breaker("CLOSED", 0)).await;
    assert!(sink.taken().is_empty(), "nothing to recover from");

    // max_consecutive_failures_before_alert (10 here): a breaker still counting past it.
    a.on_system(&breaker("HALF_OPEN", 12)).await;
    let sent = sink.taken();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].rule, RuleName::ConsecutiveFailures);
}

#[tokio::test]
async fn provider_health_raises_and_recovers() {
    let clock = Arc::new(ManualClock::new(T0));
    let sink = Kept::named("ops");
    let a = alerter(AlertRules::default(), vec![sink.clone()], clock);
    let health = |healthy: bool| SystemEvent::ProviderHealthChanged {
        provider: "aws-1".into(),
        healthy,
        source: "health_check".into(),
        message: "DescribeRegions failed".into(),
        at: T0,
    };
    a.on_system(&health(true)).await;
    assert!(sink.taken().is_empty(), "healthy from the start says nothing");
    a.on_system(&health(false)).await;
    a.on_system(&health(true)).await;
    let sent = sink.taken();
    assert_eq!(sent.iter().map(|s| s.resolved).collect::<Vec<_>>(), [false, true]);
    assert!(sent[0].summary.contains("DescribeRegions failed"));
}

#[tokio::test]
async fn rules_route_to_their_sinks_and_can_be_turned_off() {
    let clock = Arc::new(ManualClock::new(T0));
    let (mail, chat) = (Kept::named("mail"), Kept::named("chat"));
    let mut rules = AlertRules::default();
    rules.rules.insert(
        RuleName::RequestFailed,
        Rule { severity: Severity::Critical, sinks: vec!["mail".into()], ..Rule::default() },
    );
    rules.rules.insert(RuleName::BreakerOpen, Rule { enabled: false, ..Rule::default() });
    let a = alerter(rules, vec![mail.clone(), chat.clone()], clock);
    a.handle(&failed("req-1")).await.unwrap();
    a.on_system(&breaker("OPEN", 5)).await;
    assert_eq!(mail.taken().iter().map(|s| s.severity).collect::<Vec<_>>(), [Severity::Critical]);
    assert!(chat.taken().is_empty(), "request_failed goes to mail only; breaker_open is off");
}

#[tokio::test]
async fn a_long_running_request_is_reported_once_past_its_duration() {
    let clock = Arc::new(ManualClock::new(T0));
    let sink = Kept::named("ops");
    let mut rules = AlertRules::default();
    rules.rules.insert(RuleName::LongRunningRequest, Rule { duration_secs: Some(1800), ..Rule::default() });
    let a = alerter(rules, vec![sink.clone()], clock.clone());
    let running = vec![("req-old".to_owned(), T0), ("req-new".to_owned(), T0.plus_secs(1000))];
    clock.advance_secs(1799);
    a.long_running(&running).await;
    assert!(sink.taken().is_empty());
    clock.advance_secs(2);
    a.long_running(&running).await;
    a.long_running(&running).await;
    let sent = sink.taken();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!((sent[0].rule, sent[0].subject.as_str()), (RuleName::LongRunningRequest, "req-old"));
}

#[tokio::test]
async fn processes_sharing_a_store_alert_once_per_condition_and_share_the_rate_limit() {
    let clock = Arc::new(ManualClock::new(T0));
    let store = Arc::new(ohf_app::memory::MemoryStore::new());
    let sink = Kept::named("ops");
    let process = || {
        let rules = AlertRules { window_secs: 600, max_per_window: 3, ..AlertRules::default() };
        alerter(rules, vec![sink.clone()], clock.clone()).shared(store.clone())
    };
    let (a, b, c) = (process(), process(), process());
    // Every daemon sees the breaker open: one alert between them, and one recovery.
    for p in [&a, &b, &c] {
        p.on_system(&breaker("OPEN", 5)).await;
    }
    assert_eq!(sink.taken().len(), 1, "one alert per condition across processes");
    b.on_system(&breaker("CLOSED", 0)).await;
    c.on_system(&breaker("CLOSED", 0)).await;
    let recovered = sink.taken();
    assert_eq!((recovered.len(), recovered[0].resolved), (1, true), "{recovered:?}");

    // Failures recorded by different processes count against one window.
    for n in 0..12 {
        [&a, &b, &c][n % 3].handle(&failed(&format!("req-{n}"))).await.unwrap();
    }
    assert_eq!(sink.taken().len(), 3, "the window's share, not three per process");
    clock.advance_secs(601);
    c.tick().await;
    a.tick().await;
    let digest = sink.taken();
    assert_eq!(digest.len(), 1, "one digest: {digest:?}");
    assert_eq!(digest[0].suppressed, 9);
    assert_eq!(digest[0].subject, "req-11", "the digest names the last one held back");
}
