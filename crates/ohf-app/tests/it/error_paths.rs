//! Error paths no real component produces on demand, with `mockall` mocks of the cloud port:
//! the store refusing the write that records a launch the cloud made, and a provider that
//! launches and then stops answering describes. Either way the machines are found again, never
//! launched twice, never lost.

use std::sync::Arc;

use async_trait::async_trait;
use ohf_app::memory::{ManualClock, MemoryStore, SequentialIds, StaticCatalog};
use ohf_app::{
    App, AppSettings, CloudError, CloudErrorKind, CloudProvider, DescribeQuery, EventBus, LaunchRequest, LaunchResult,
    OwnedMachine, Ownership, ProviderCapacity, Refusal, RequestMachines, Requests,
};
use ohf_domain::testing::{T0, observed, provider, template};
use ohf_domain::{MachineObservation, MachineStatus, ProviderName, RequestState, Template};

mockall::mock! {
    pub Cloud {}

    #[async_trait]
    impl CloudProvider for Cloud {
        fn name(&self) -> &ProviderName;
        fn kind(&self) -> &'static str;
        async fn check_template(&self, template: &Template) -> Result<(), CloudError>;
        async fn capacity(&self, template: &Template) -> Result<Option<ProviderCapacity>, CloudError>;
        async fn launch(&self, request: &LaunchRequest) -> Result<LaunchResult, CloudError>;
        async fn describe(&self, query: &DescribeQuery) -> Result<Vec<MachineObservation>, CloudError>;
        async fn terminate(&self, machines: &[OwnedMachine], owner: &Ownership) -> Result<Vec<Refusal>, CloudError>;
    }
}

/// A mock cloud that knows its name and takes any template.
pub(crate) fn cloud() -> MockCloud {
    let mut c = MockCloud::new();
    c.expect_name().return_const(provider());
    c.expect_kind().return_const("sim");
    c.expect_check_template().returning(|_| Ok(()));
    c.expect_capacity().returning(|_| Ok(None));
    c
}

fn app(store: Arc<MemoryStore>, cloud: MockCloud, clock: Arc<ManualClock>) -> App {
    App::builder(store, Arc::new(StaticCatalog(vec![template(100)])))
        .provider(Arc::new(cloud) as Arc<dyn CloudProvider>)
        .clock(clock)
        .ids(Arc::new(SequentialIds::default()))
        .bus(EventBus::default())
        .settings(AppSettings::default())
        .build()
        .unwrap()
}

fn ask(count: i64) -> RequestMachines {
    RequestMachines { template_id: template(100).id().to_string(), count, ..Default::default() }
}

fn machines(request: &str, status: MachineStatus) -> Vec<MachineObservation> {
    (0..2).map(|i| observed(&format!("i-{i}"), request, status)).collect()
}

/// The cloud launched, then the store refused the write that records it: the next step finds
/// the machines by the request's tag and adopts them; the cloud is asked to launch only once.
#[tokio::test]
async fn a_commit_refused_after_a_launch_loses_no_machine_and_launches_nothing_twice() {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(T0));
    let mut c = cloud();
    let contended = store.clone();
    c.expect_launch().times(1).returning(move |r| {
        // The launch happened; the store now refuses every change to the stored request.
        contended.set_contended(true);
        Ok(LaunchResult { machines: machines(r.request_id.as_str(), MachineStatus::Pending), ..Default::default() })
    });
    c.expect_describe().returning(|q| {
        Ok(q.request_ids.first().map(|r| machines(r.as_str(), MachineStatus::Running)).unwrap_or_default())
    });
    let app = app(store.clone(), c, clock.clone());
    let r = app.execute(ask(2)).await.unwrap();
    let stored = store.get(r.id()).await.unwrap().unwrap();
    assert!(stored.machines().is_empty(), "the launch's outcome was not stored");
    store.set_contended(false);
    clock.advance_secs(1);
    app.reconcile(None).await;
    let done = store.get(r.id()).await.unwrap().unwrap();
    assert_eq!(done.state(), RequestState::Completed, "{done:?}");
    assert_eq!(done.machines().len(), 2, "both machines were adopted");
}

/// The cloud launched, then every describe timed out: the request keeps its machines and
/// waits (no relaunch, no failure); when describes answer again it completes.
#[tokio::test]
async fn describes_that_time_out_after_a_launch_neither_lose_nor_repeat_it() {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(T0));
    let answering = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut c = cloud();
    c.expect_launch().times(1).returning(|r| {
        Ok(LaunchResult { machines: machines(r.request_id.as_str(), MachineStatus::Pending), ..Default::default() })
    });
    let gate = answering.clone();
    c.expect_describe().returning(move |q| {
        if !gate.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(CloudError::new(CloudErrorKind::Timeout, "Timeout", "describe did not finish in time"));
        }
        Ok(q.request_ids.first().map(|r| machines(r.as_str(), MachineStatus::Running)).unwrap_or_default())
    });
    let app = app(store.clone(), c, clock.clone());
    let r = app.execute(ask(2)).await.unwrap();
    for _ in 0..5 {
        clock.advance_secs(30);
        let report = app.reconcile(None).await;
        assert!(!report.errors.is_empty(), "the timeouts are reported");
        let now = store.get(r.id()).await.unwrap().unwrap();
        assert_eq!(now.state(), RequestState::InProgress);
        assert_eq!(now.machines().len(), 2, "the launched machines stay with the request");
    }
    answering.store(true, std::sync::atomic::Ordering::SeqCst);
    clock.advance_secs(30);
    app.reconcile(None).await;
    assert_eq!(store.get(r.id()).await.unwrap().unwrap().state(), RequestState::Completed);
}
