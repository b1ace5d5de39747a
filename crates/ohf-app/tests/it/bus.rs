//! The bus delivers after commit to subscribers that run on their own: a subscriber that hangs
//! or fails never holds up or undoes a command, and is counted.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ohf_app::memory::{ManualClock, MemoryStore, SequentialIds, StaticCatalog};
use ohf_app::{App, AppSettings, EventBus, EventCounts, EventHandler, RequestMachines, Requests};
use ohf_domain::testing::{T0, template};
use ohf_domain::{EventEnvelope, RequestState};

mockall::mock! {
    pub Subscriber {}

    #[async_trait]
    impl EventHandler for Subscriber {
        fn name(&self) -> &str;
        async fn handle(&self, event: &EventEnvelope) -> Result<(), String>;
    }
}

/// A subscriber that never finishes.
struct Hangs;

#[async_trait]
impl EventHandler for Hangs {
    fn name(&self) -> &str {
        "hangs"
    }
    async fn handle(&self, _: &EventEnvelope) -> Result<(), String> {
        std::future::pending().await
    }
}

fn app_on(bus: EventBus, store: Arc<MemoryStore>) -> App {
    let mut cloud = crate::error_paths::cloud();
    cloud.expect_launch().returning(|r| {
        let machines = (0..2)
            .map(|i| {
                ohf_domain::testing::observed(
                    &format!("i-{i}"),
                    r.request_id.as_str(),
                    ohf_domain::MachineStatus::Running,
                )
            })
            .collect();
        Ok(ohf_app::LaunchResult { machines, ..Default::default() })
    });
    cloud.expect_describe().returning(|q| {
        Ok(q.request_ids
            .first()
            .map(|r| {
                (0..2)
                    .map(|i| {
                        ohf_domain::testing::observed(&format!("i-{i}"), r.as_str(), ohf_domain::MachineStatus::Running)
                    })
                    .collect()
            })
            .unwrap_or_default())
    });
    App::builder(store, Arc::new(StaticCatalog(vec![template(100)])))
        .provider(Arc::new(cloud))
        .clock(Arc::new(ManualClock::new(T0)))
        .ids(Arc::new(SequentialIds::default()))
        .bus(bus)
        .settings(AppSettings::default())
        .build()
        .unwrap()
}

fn ask() -> RequestMachines {
    RequestMachines { template_id: template(100).id().to_string(), count: 2, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_or_failing_subscriber_never_holds_up_or_undoes_a_command() {
    let mut failing = MockSubscriber::new();
    failing.expect_name().return_const("failing".to_owned());
    failing.expect_handle().returning(|_| Err("the sink is down".into()));
    let counts = Arc::new(EventCounts::default());
    let bus =
        EventBus::with_timeout(vec![Arc::new(Hangs), Arc::new(failing), counts.clone()], Duration::from_millis(100));
    let store = Arc::new(MemoryStore::new());
    let app = app_on(bus.clone(), store.clone());
    let mut live = bus.subscribe();
    let r = tokio::time::timeout(Duration::from_secs(2), app.execute(ask()))
        .await
        .expect("the command does not wait for its subscribers")
        .unwrap();
    app.reconcile(None).await;
    let stored = store.get(r.id()).await.unwrap().unwrap();
    assert_eq!(stored.state(), RequestState::Completed, "nothing a subscriber did undid the command");
    let history = store.history(r.id()).await.unwrap();
    let mut heard = 0;
    while live.try_recv().is_ok() {
        heard += 1;
    }
    assert_eq!(heard, history.len(), "live listeners heard every stored event");
    // The hanging subscriber times out on its first event, then on each next one.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let figures = bus.figures();
    assert!(figures["hangs"].timed_out >= 1, "{figures:?}");
    assert_eq!(figures["failing"].failed, history.len() as u64, "{figures:?}");
    assert_eq!(figures["metrics"].handled, history.len() as u64);
    let counted: u64 = counts.snapshot().values().sum();
    assert_eq!(counted, history.len() as u64, "the metrics subscriber counted every event");
    assert_eq!(counts.snapshot().get("created"), Some(&1));
}
