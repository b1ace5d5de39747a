//! The resilient provider under a hand-driven breaker clock and tokio's paused time, in front
//! of a provider that answers from a script.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ohf_app::memory::{ManualClock, MemoryStore};
use ohf_app::{
    CloudError, CloudErrorKind, CloudProvider, DescribeQuery, LaunchRequest, LaunchResult, OwnedMachine, Ownership,
    ProviderCapacity, Refusal, RequestStore,
};
use ohf_domain::testing::T0;
use ohf_domain::{MachineObservation, ProviderName, Template};
use ohf_resilience::config::{BreakerOverride, Bucket, RetryOverride};
use ohf_resilience::{CIRCUIT_OPEN, CircuitState, ResilienceConfig, Resilient, breakers};
use tokio::time::Instant;

/// Answers describes from a script (Ok when it runs out), taking `delay` each, and notes when
/// each call came.
struct Scripted {
    name: ProviderName,
    script: Mutex<VecDeque<Result<(), CloudError>>>,
    calls: Mutex<Vec<Instant>>,
    delay: Duration,
    launched: Mutex<Vec<String>>,
    /// The operation's deadline as each describe saw it.
    deadlines: Mutex<Vec<Option<Instant>>>,
    /// The requests of each follow call, in order.
    followed: Mutex<Vec<Vec<String>>>,
}

fn scripted(script: Vec<Result<(), CloudError>>, delay: Duration) -> Arc<Scripted> {
    Arc::new(Scripted {
        name: ProviderName::new("sim-1").unwrap(),
        script: Mutex::new(script.into()),
        calls: Mutex::default(),
        delay,
        launched: Mutex::default(),
        deadlines: Mutex::default(),
        followed: Mutex::default(),
    })
}

impl Scripted {
    fn calls(&self) -> Vec<Instant> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl CloudProvider for Scripted {
    fn name(&self) -> &ProviderName {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "sim"
    }
    async fn check_template(&self, _: &Template) -> Result<(), CloudError> {
        Ok(())
    }
    async fn capacity(&self, _: &Template) -> Result<Option<ProviderCapacity>, CloudError> {
        Ok(None)
    }
    async fn launch(&self, request: &LaunchRequest) -> Result<LaunchResult, CloudError> {
        self.launched.lock().unwrap().push(request.request_id.to_string());
        Ok(LaunchResult::default())
    }
    /// Takes the script's next answer for the whole call; a request whose id ends in
    /// `-throttled` is answered throttling.
    async fn follow(&self, launches: &[LaunchRequest]) -> Result<Vec<Result<LaunchResult, CloudError>>, CloudError> {
        self.followed.lock().unwrap().push(launches.iter().map(|l| l.request_id.to_string()).collect());
        self.script.lock().unwrap().pop_front().unwrap_or(Ok(()))?;
        Ok(launches
            .iter()
            .map(|l| match l.request_id.as_str().ends_with("-throttled") {
                true => Err(CloudError::new(CloudErrorKind::Throttling, "RequestLimitExceeded", "scripted")),
                false => Ok(LaunchResult::default()),
            })
            .collect())
    }
    async fn describe(&self, _: &DescribeQuery) -> Result<Vec<MachineObservation>, CloudError> {
        self.calls.lock().unwrap().push(Instant::now());
        self.deadlines.lock().unwrap().push(ohf_app::ports::call_deadline());
        tokio::time::sleep(self.delay).await;
        let next = self.script.lock().unwrap().pop_front().unwrap_or(Ok(()));
        next.map(|()| Vec::new())
    }
    async fn terminate(&self, _: &[OwnedMachine], _: &Ownership) -> Result<Vec<Refusal>, CloudError> {
        Ok(Vec::new())
    }
}

fn err(kind: CloudErrorKind, code: &str) -> Result<(), CloudError> {
    Err(CloudError::new(kind, code, "scripted"))
}

fn unavailable() -> Result<(), CloudError> {
    err(CloudErrorKind::Unavailable, "ServiceUnavailable")
}

/// Retries: 5 attempts, 1 s doubling to at most 3 s, no jitter; no rate limits; the breaker
/// off unless a test turns it on.
fn config() -> ResilienceConfig {
    let mut c = ResilienceConfig::default();
    c.retry.operations.insert(
        "ec2_describe_instances".into(),
        RetryOverride {
            max_attempts: Some(5),
            base_delay: Some(1.0),
            max_delay: Some(3.0),
            jitter: Some(false),
            ..Default::default()
        },
    );
    c.rate_limit.enabled = false;
    c.circuit_breaker.enabled = false;
    c
}

struct Setup {
    cloud: Arc<Scripted>,
    resilient: Resilient,
    clock: Arc<ManualClock>,
    store: Arc<MemoryStore>,
}

fn setup(script: Vec<Result<(), CloudError>>, delay: Duration, config: ResilienceConfig) -> Setup {
    let cloud = scripted(script, delay);
    let clock = Arc::new(ManualClock::new(T0));
    let store = Arc::new(MemoryStore::new());
    let resilient = Resilient::new(cloud.clone(), config, store.clone(), clock.clone());
    Setup { cloud, resilient, clock, store }
}

async fn describe(r: &Resilient) -> Result<Vec<MachineObservation>, CloudError> {
    r.describe(&DescribeQuery::default()).await
}

fn gaps(calls: &[Instant]) -> Vec<u64> {
    calls.windows(2).map(|w| (w[1] - w[0]).as_millis() as u64).collect()
}

#[tokio::test(start_paused = true)]
async fn a_non_retryable_error_stops_at_once() {
    let s = setup(vec![err(CloudErrorKind::Validation, "InvalidParameterValue")], Duration::ZERO, config());
    let e = describe(&s.resilient).await.unwrap_err();
    assert_eq!(e.code, "InvalidParameterValue");
    assert_eq!(s.cloud.calls().len(), 1);
    let s = setup(vec![err(CloudErrorKind::Auth, "UnauthorizedOperation")], Duration::ZERO, config());
    assert!(describe(&s.resilient).await.is_err());
    assert_eq!(s.cloud.calls().len(), 1, "auth failures are not retried either");
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_with_growing_capped_delays() {
    let s = setup(vec![unavailable(), unavailable(), unavailable(), unavailable()], Duration::ZERO, config());
    describe(&s.resilient).await.unwrap();
    assert_eq!(gaps(&s.cloud.calls()), [1000, 2000, 3000, 3000]);
    let m = &s.resilient.metrics()["ec2_describe_instances"];
    assert_eq!((m.calls, m.successes, m.failures, m.retries), (5, 1, 4, 4));
    assert_eq!(m.errors["ServiceUnavailable"], 4);

    let s = setup(vec![unavailable(); 9], Duration::ZERO, config());
    assert_eq!(describe(&s.resilient).await.unwrap_err().code, "ServiceUnavailable");
    assert_eq!(s.cloud.calls().len(), 5, "attempts stop at max_attempts");
}

#[tokio::test(start_paused = true)]
async fn retry_after_from_the_remote_side_is_obeyed() {
    let mut throttled = CloudError::new(CloudErrorKind::Throttling, "RequestLimitExceeded", "slow down");
    throttled.retry_after = Some(Duration::from_secs(7));
    let s = setup(vec![Err(throttled)], Duration::ZERO, config());
    describe(&s.resilient).await.unwrap();
    assert_eq!(gaps(&s.cloud.calls()), [7000]);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_bounds_the_whole_operation() {
    let mut c = config();
    c.timeout.operations.insert("ec2_describe_instances".into(), 5.0);
    let s = setup(vec![], Duration::from_secs(100), c);
    let started = Instant::now();
    let e = describe(&s.resilient).await.unwrap_err();
    assert_eq!((e.kind, e.code.as_str()), (CloudErrorKind::Timeout, "Timeout"));
    assert_eq!(started.elapsed(), Duration::from_secs(5), "no attempt outlives the deadline");
    assert_eq!(s.resilient.metrics()["ec2_describe_instances"].timeouts, 1);
    // The provider is told the deadline, so a wait inside the call can end before it.
    assert_eq!(*s.cloud.deadlines.lock().unwrap(), vec![Some(started + Duration::from_secs(5))]);

    let mut c = config();
    c.timeout.operations.insert("ec2_describe_instances".into(), 2.5);
    let s = setup(vec![unavailable(); 9], Duration::ZERO, c);
    assert!(describe(&s.resilient).await.is_err());
    assert_eq!(s.cloud.calls().len(), 2, "no retry is started that the deadline would cut off");
}

fn with_breaker() -> ResilienceConfig {
    let mut c = config();
    c.circuit_breaker.enabled = true;
    c.circuit_breaker.services.insert(
        "sim_ec2".into(),
        BreakerOverride { failure_threshold: Some(3), reset_timeout: Some(30.0), half_open_timeout: Some(15.0) },
    );
    c.retry.operations.get_mut("ec2_describe_instances").unwrap().max_attempts = Some(1);
    c
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_fails_fast_half_opens_and_closes() {
    let s = setup(vec![unavailable(), unavailable(), unavailable(), unavailable()], Duration::ZERO, with_breaker());
    for _ in 0..3 {
        assert_eq!(describe(&s.resilient).await.unwrap_err().code, "ServiceUnavailable");
    }
    let e = describe(&s.resilient).await.unwrap_err();
    assert_eq!(e.code, CIRCUIT_OPEN);
    assert_eq!(e.retry_after, Some(Duration::from_secs(30)));
    assert_eq!(s.cloud.calls().len(), 3, "an open breaker does not call the cloud");
    assert_eq!(s.resilient.metrics()["ec2_describe_instances"].rejected, 1);

    s.clock.advance_secs(30);
    assert_eq!(describe(&s.resilient).await.unwrap_err().code, "ServiceUnavailable", "the probe failed");
    assert_eq!(describe(&s.resilient).await.unwrap_err().code, CIRCUIT_OPEN, "and the breaker reopened");
    s.clock.advance_secs(30);
    describe(&s.resilient).await.unwrap();
    let (_, b) = breakers(&*s.store).await.unwrap().pop().unwrap();
    assert_eq!((b.state, b.opened), (CircuitState::Closed, 2));
    describe(&s.resilient).await.unwrap();
    assert_eq!(s.cloud.calls().len(), 6);
}

#[tokio::test(start_paused = true)]
async fn breaker_changes_are_published_as_events() {
    let bus = ohf_app::EventBus::default();
    let mut events = bus.subscribe_system();
    let s = setup(vec![unavailable(); 3], Duration::ZERO, with_breaker());
    let resilient = Resilient::new(s.cloud.clone(), with_breaker(), s.store.clone(), s.clock.clone()).with_bus(bus);
    for _ in 0..3 {
        assert!(describe(&resilient).await.is_err());
    }
    s.clock.advance_secs(30);
    describe(&resilient).await.unwrap();
    let mut seen = Vec::new();
    while let Ok(ohf_app::SystemEvent::BreakerChanged { service, from, to, .. }) = events.try_recv() {
        seen.push(format!("{service} {from}->{to}"));
    }
    assert_eq!(seen, ["sim_ec2 CLOSED->OPEN", "sim_ec2 OPEN->HALF_OPEN", "sim_ec2 HALF_OPEN->CLOSED"]);
}

#[tokio::test(start_paused = true)]
async fn processes_sharing_a_store_share_the_breaker() {
    let s = setup(vec![unavailable(); 3], Duration::ZERO, with_breaker());
    for _ in 0..3 {
        assert!(describe(&s.resilient).await.is_err());
    }
    let other_cloud = scripted(vec![], Duration::ZERO);
    let store: Arc<dyn RequestStore> = s.store.clone();
    let other = Resilient::new(other_cloud.clone(), with_breaker(), store, s.clock.clone());
    assert_eq!(describe(&other).await.unwrap_err().code, CIRCUIT_OPEN, "a fresh process starts from the stored state");
    assert!(other_cloud.calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn calls_wait_for_the_client_side_rate_limit() {
    let mut c = config();
    c.rate_limit.enabled = true;
    c.rate_limit.operations.insert("ec2_describe_instances".into(), Bucket { burst: 2.0, per_sec: 1.0 });
    let s = setup(vec![], Duration::ZERO, c);
    for _ in 0..4 {
        describe(&s.resilient).await.unwrap();
    }
    assert_eq!(gaps(&s.cloud.calls()), [0, 1000, 1000], "a burst of 2, then one a second");
    assert_eq!(s.resilient.metrics()["ec2_describe_instances"].rate_limited, 2);
}

fn launch_of(id: &str, priority: ohf_domain::Priority) -> LaunchRequest {
    let request_id = ohf_domain::RequestId::new(id).unwrap();
    LaunchRequest {
        token: ohf_domain::ClientToken::for_launch(&request_id, 1),
        request_id,
        template: ohf_domain::testing::template(100),
        count: 1,
        tags: ohf_domain::Tags::default(),
        zones: Vec::new(),
        following: None,
        started_at: T0,
        priority,
    }
}

#[tokio::test(start_paused = true)]
async fn a_high_priority_launch_waits_behind_no_burst_of_low_ones() {
    use ohf_domain::Priority;
    let mut c = config();
    c.rate_limit.enabled = true;
    c.rate_limit.operations.insert("ec2_run_instances".into(), Bucket { burst: 1.0, per_sec: 1.0 });
    c.timeout.operations.insert("ec2_run_instances".into(), 120.0);
    let s = setup(vec![], Duration::ZERO, c);
    let resilient = Arc::new(s.resilient);
    let mut tasks = Vec::new();
    for n in 0..6 {
        let r = resilient.clone();
        tasks.push(tokio::spawn(async move { r.launch(&launch_of(&format!("low-{n}"), Priority::Low)).await }));
        tokio::task::yield_now().await;
    }
    // The burst's token went to low-0; five low launches wait. Then a high one comes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = resilient.clone();
    tasks.push(tokio::spawn(async move { r.launch(&launch_of("high", Priority::High)).await }));
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let order = s.cloud.launched.lock().unwrap().clone();
    assert_eq!(order.len(), 7);
    assert_eq!(order[0], "low-0");
    assert_eq!(order[1], "high", "the next token goes to the high-priority launch: {order:?}");
}

#[tokio::test(start_paused = true)]
async fn the_sweeps_deletions_go_through_the_breaker_like_every_call() {
    let s = setup(vec![unavailable(), unavailable(), unavailable()], Duration::ZERO, with_breaker());
    for _ in 0..3 {
        describe(&s.resilient).await.unwrap_err();
    }
    let owner = Ownership { cluster: "c".into(), installation: "i".into() };
    let e = s.resilient.prune(&[], &owner).await.unwrap_err();
    assert_eq!(e.code, CIRCUIT_OPEN, "an open breaker refuses the deletion too");
    assert_eq!(s.resilient.metrics()["ec2_delete_launch_template"].rejected, 1);
}

/// A followed launch of `id` whose template uses `api` (`EC2Fleet`, `ASG`).
fn followed(id: &str, api: &str) -> LaunchRequest {
    let mut launch = launch_of(id, ohf_domain::Priority::Normal);
    let mut doc = serde_json::json!({"templateId": "T", "maxNumber": 10, "imageId": "ami-1",
                                     "vmTypes": {"t3.micro": 1}, "providerApi": api});
    if api == "EC2Fleet" {
        doc["fleetType"] = serde_json::json!("request");
    }
    launch.template = Template::from_json(&doc).unwrap();
    launch.following = Some(format!("placed-{id}"));
    launch
}

#[tokio::test(start_paused = true)]
async fn a_follow_is_one_call_per_operation_and_only_a_launch_that_failed_on_its_own_goes_again() {
    let s = setup(Vec::new(), Duration::ZERO, config());
    let launches = [
        followed("r-1", "EC2Fleet"),
        followed("r-2", "ASG"),
        followed("r-3-throttled", "EC2Fleet"),
        followed("r-4", "ASG"),
    ];
    let answers = s.resilient.follow(&launches).await.unwrap();
    assert_eq!(answers.len(), 4);
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    let calls = s.cloud.followed.lock().unwrap().clone();
    assert_eq!(calls, [vec!["r-1", "r-3-throttled"], vec!["r-2", "r-4"]], "one call per operation, in order");
    assert_eq!(*s.cloud.launched.lock().unwrap(), ["r-3-throttled"], "only the throttled launch went again alone");

    // The whole call failing (not retryable) fails each of its launches, and none goes again.
    let s = setup(vec![err(CloudErrorKind::Validation, "InvalidParameterValue")], Duration::ZERO, config());
    let answers = s.resilient.follow(&launches[..1]).await.unwrap();
    assert_eq!(answers[0].as_ref().unwrap_err().code, "InvalidParameterValue");
    assert!(s.cloud.launched.lock().unwrap().is_empty());
}
