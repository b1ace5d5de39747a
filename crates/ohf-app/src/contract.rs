//! Contract test suites every implementation of a port must pass. Each adapter's tests
//! generate one test per case with [`store_contract_tests!`](crate::store_contract_tests) or
//! [`cloud_contract_tests!`](crate::cloud_contract_tests), each on a fresh instance, so a
//! failing case names itself and hides none of the others.

#![allow(clippy::unwrap_used)] // a failed contract case panics with its reason

use std::sync::Arc;
use std::time::Duration;

use ohf_domain::testing::{T0, observed, provider, provision_spec};
use ohf_domain::{
    ClientToken, LifecyclePolicy, MachineId, MachineStatus, Priority, ProviderName, ProvisionSpec, Request, RequestId,
    RequestKind, RequestState, ReturnedMachine, Tags, Template, TimeoutSecs,
};

use crate::ports::{
    CloudProvider, DescribeQuery, Fence, LaunchRequest, Limits, OwnedMachine, Ownership, RequestFilter, RequestStore,
    StoreError, Usage, tag_keys,
};

fn policy() -> LifecyclePolicy {
    LifecyclePolicy::default()
}

async fn commit(store: &dyn RequestStore, batch: &mut [&mut Request]) -> Result<(), StoreError> {
    let view: Vec<&Request> = batch.iter().map(|r| &**r).collect();
    store.save(&view, None).await?;
    for r in batch.iter_mut() {
        let v = r.version() + 1;
        r.mark_committed(v);
    }
    Ok(())
}

/// A provision request of `count` machines with `running` of them launched and running.
fn launched(id: &str, count: u32, running: &[&str]) -> Request {
    let mut r = Request::provision(provision_spec(id, count), T0);
    r.reconcile(&[], &[provider()], T0, &policy());
    let machines = running.iter().map(|m| observed(m, id, MachineStatus::Running)).collect();
    r.record_launch(1, machines, None, T0.plus_secs(1));
    r
}

/// Generates the store contract: one `#[tokio::test]` per case, each against a fresh store.
/// `$fresh` is an expression giving a `Fn() -> impl Future<Output = Arc<dyn RequestStore>>`,
/// evaluated once per test (what it captures lives as long as the test, and is dropped while
/// the test's runtime still has a free worker, so a guard may clean up then). Use it inside a module
/// of its own per implementation:
///
/// ```text
/// mod memory {
///     ohf_app::store_contract_tests!(|| async {
///         std::sync::Arc::new(ohf_app::memory::MemoryStore::new()) as std::sync::Arc<dyn ohf_app::RequestStore>
///     });
/// }
/// ```
#[macro_export]
macro_rules! store_contract_tests {
    ($fresh:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn saves_and_reads_back() {
            let fresh = $fresh;
            $crate::contract::saves_and_reads_back(fresh().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_taken_id_conflicts() {
            let fresh = $fresh;
            $crate::contract::a_taken_id_conflicts(fresh().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_stale_write_changes_nothing() {
            let fresh = $fresh;
            $crate::contract::a_stale_write_changes_nothing(fresh().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn history_replays_to_the_stored_request() {
            let fresh = $fresh;
            $crate::contract::history_replays_to_the_stored_request(fresh().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn needing_work_lists_active_requests() {
            let fresh = $fresh;
            $crate::contract::needing_work_lists_active_requests(fresh().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn finds_holders_by_id_and_name() {
            let fresh = $fresh;
            $crate::contract::finds_holders_by_id_and_name(fresh().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn counts_capacity_per_template() {
            let fresh = $fresh;
            $crate::contract::counts_capacity_per_template(fresh().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn counts_work_in_flight_per_provider_and_keeps_who_made_each_event() {
            let fresh = $fresh;
            $crate::contract::counts_work_in_flight_per_provider_and_keeps_who_made_each_event(fresh().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn counts_requests_by_kind_and_state() {
            let fresh = $fresh;
            $crate::contract::counts_requests_by_kind_and_state(fresh().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn lists_with_filters_newest_first() {
            let fresh = $fresh;
            $crate::contract::lists_with_filters_newest_first(fresh().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn concurrent_writers_lose_no_update() {
            let fresh = $fresh;
            $crate::contract::concurrent_writers_lose_no_update(fresh().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn concurrent_saves_get_their_own_answers() {
            let fresh = $fresh;
            $crate::contract::concurrent_saves_get_their_own_answers(fresh().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn claims_share_work_among_workers() {
            let fresh = $fresh;
            $crate::contract::claims_share_work_among_workers(fresh().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn claims_take_high_priority_first_then_the_longest_waiting() {
            let fresh = $fresh;
            $crate::contract::claims_take_high_priority_first_then_the_longest_waiting(fresh().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_stale_write_of_one_request_leaves_nothing_of_it() {
            let fresh = $fresh;
            $crate::contract::a_stale_write_of_one_request_leaves_nothing_of_it(fresh().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn claims_take_turns_through_more_work_than_one_batch() {
            let fresh = $fresh;
            $crate::contract::claims_take_turns_through_more_work_than_one_batch(fresh().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn admission_never_exceeds_a_limit_under_concurrency() {
            let fresh = $fresh;
            $crate::contract::admission_never_exceeds_a_limit_under_concurrency(fresh().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn fenced_writes_need_the_claim() {
            let fresh = $fresh;
            $crate::contract::fenced_writes_need_the_claim(fresh().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn one_worker_leads_a_job() {
            let fresh = $fresh;
            $crate::contract::one_worker_leads_a_job(fresh().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn shared_state_is_compare_and_set() {
            let fresh = $fresh;
            $crate::contract::shared_state_is_compare_and_set(fresh().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn renews_only_live_claims_of_the_worker() {
            let fresh = $fresh;
            $crate::contract::renews_only_live_claims_of_the_worker(fresh().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn deletes_only_old_finished_requests() {
            let fresh = $fresh;
            $crate::contract::deletes_only_old_finished_requests(fresh().await).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn keeps_one_installation_id() {
            let fresh = $fresh;
            $crate::contract::keeps_one_installation_id(fresh().await, fresh().await).await;
        }
    };
}

#[doc(hidden)]
pub async fn renews_only_live_claims_of_the_worker(store: Arc<dyn RequestStore>) {
    let mut r = launched("req-renew", 1, &[]);
    commit(&*store, &mut [&mut r]).await.unwrap();
    let ids = [r.id().clone()];
    store.claim("w1", T0, 10_000, 10).await.unwrap();
    assert_eq!(store.renew("w2", &ids, T0.plus_secs(5), 10_000).await.unwrap(), 0, "not w2's to renew");
    assert_eq!(store.renew("w1", &ids, T0.plus_secs(5), 10_000).await.unwrap(), 1);
    assert!(store.claim("w2", T0.plus_secs(12), 10_000, 10).await.unwrap().is_empty(), "renewed to T0 + 15 s");
    let spans = store.claim_history(r.id()).await.unwrap();
    assert_eq!((spans.len(), spans[0].until), (1, T0.plus_secs(15)), "the span is extended, not split");
    assert_eq!(store.renew("w1", &ids, T0.plus_secs(16), 10_000).await.unwrap(), 0, "an expired claim stays expired");
    assert_eq!(store.claim("w2", T0.plus_secs(16), 10_000, 10).await.unwrap().len(), 1);
}

#[doc(hidden)]
pub async fn deletes_only_old_finished_requests(store: Arc<dyn RequestStore>) {
    // Finished and holding nothing (its one machine terminated), finished holding a machine,
    // and still at work.
    let mut gone = launched("req-old", 1, &["i-old"]);
    gone.reconcile(&[observed("i-old", "req-old", MachineStatus::Running)], &[provider()], T0.plus_secs(1), &policy());
    gone.reconcile(
        &[observed("i-old", "req-old", MachineStatus::Terminated)],
        &[provider()],
        T0.plus_secs(2),
        &policy(),
    );
    let mut cancelled = launched("req-cancel", 1, &[]);
    cancelled.cancel(T0.plus_secs(2)).unwrap();
    let mut holding = launched("req-holding", 1, &["i-h"]);
    holding.reconcile(
        &[observed("i-h", "req-holding", MachineStatus::Running)],
        &[provider()],
        T0.plus_secs(2),
        &policy(),
    );
    let mut busy = launched("req-busy", 2, &[]);
    commit(&*store, &mut [&mut gone, &mut cancelled, &mut holding, &mut busy]).await.unwrap();
    assert!(!gone.needs_work() && gone.capacity_held() == 0, "{gone:?}");
    assert!(!cancelled.needs_work() && cancelled.capacity_held() == 0, "{cancelled:?}");
    assert!(holding.capacity_held() > 0 && busy.needs_work());
    assert_eq!(store.delete_finished(T0.plus_secs(1), 100).await.unwrap(), 0, "nothing finished before T0 + 1 s");
    assert_eq!(store.delete_finished(T0.plus_secs(3600), 1).await.unwrap(), 1, "at most the limit");
    assert_eq!(store.delete_finished(T0.plus_secs(3600), 100).await.unwrap(), 1);
    for (r, kept) in [(&gone, false), (&cancelled, false), (&holding, true), (&busy, true)] {
        assert_eq!(store.get(r.id()).await.unwrap().is_some(), kept, "{}", r.id());
        assert_eq!(store.history(r.id()).await.unwrap().is_empty(), !kept, "{} history", r.id());
    }
}

/// A store has one identity for its life, the same for every reader; another store has its own.
#[doc(hidden)]
pub async fn keeps_one_installation_id(store: Arc<dyn RequestStore>, other: Arc<dyn RequestStore>) {
    let (a, b) = tokio::join!(store.installation(), store.installation());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b, "racing first reads agree");
    assert!(!a.is_empty());
    assert_eq!(store.installation().await.unwrap(), a, "it does not change");
    assert_ne!(other.installation().await.unwrap(), a, "a fresh store is another installation");
}

#[doc(hidden)]
pub async fn saves_and_reads_back(store: Arc<dyn RequestStore>) {
    let mut r = launched("req-a", 2, &["i-1", "i-2"]);
    commit(&*store, &mut [&mut r]).await.expect("save");
    let back = store.get(r.id()).await.expect("get").expect("stored");
    assert_eq!(back, r, "a stored request reads back equal");
    assert_eq!(back.version(), 1);
    assert!(back.uncommitted().is_empty());
    assert!(store.get(&RequestId::new("nope").unwrap()).await.unwrap().is_none());
    let many = store.get_many(&[r.id().clone(), RequestId::new("nope").unwrap()]).await.unwrap();
    assert_eq!(many.len(), 1);
}

#[doc(hidden)]
pub async fn a_taken_id_conflicts(store: Arc<dyn RequestStore>) {
    let mut first = launched("req-a", 2, &["i-1"]);
    commit(&*store, &mut [&mut first]).await.unwrap();
    let mut second = Request::provision(provision_spec("req-a", 5), T0);
    let err = commit(&*store, &mut [&mut second]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert_eq!(store.get(first.id()).await.unwrap().unwrap().count(), 2, "the first request is kept");
}

#[doc(hidden)]
pub async fn a_stale_write_changes_nothing(store: Arc<dyn RequestStore>) {
    let mut a = launched("req-a", 1, &[]);
    let mut b = launched("req-b", 1, &[]);
    commit(&*store, &mut [&mut a, &mut b]).await.unwrap();
    let mut stale = store.get(a.id()).await.unwrap().unwrap();
    a.cancel(T0.plus_secs(5)).unwrap();
    commit(&*store, &mut [&mut a]).await.unwrap();
    stale.cancel(T0.plus_secs(6)).unwrap();
    b.cancel(T0.plus_secs(6)).unwrap();
    let err = commit(&*store, &mut [&mut b, &mut stale]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }));
    let b_now = store.get(b.id()).await.unwrap().unwrap();
    assert_eq!(b_now.state(), RequestState::InProgress, "a batch is all or nothing");
    assert_eq!(store.history(a.id()).await.unwrap().len() as u64, a.seq(), "no event of the stale write");
}

#[doc(hidden)]
pub async fn a_stale_write_of_one_request_leaves_nothing_of_it(store: Arc<dyn RequestStore>) {
    let mut a = launched("req-a", 2, &[]);
    commit(&*store, &mut [&mut a]).await.unwrap();
    let mut stale = store.get(a.id()).await.unwrap().unwrap();
    a.cancel(T0.plus_secs(5)).unwrap();
    commit(&*store, &mut [&mut a]).await.unwrap();
    // The stale copy sees a machine: its write would bring an event and the machine's index.
    stale.reconcile(&[observed("i-stale", "req-a", MachineStatus::Running)], &[provider()], T0.plus_secs(6), &policy());
    assert!(!stale.uncommitted().is_empty());
    let err = commit(&*store, &mut [&mut stale]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert_eq!(store.history(a.id()).await.unwrap().len() as u64, a.seq(), "no event of the stale write");
    let holders = store.find_holders(&[MachineId::new("i-stale").unwrap()], &[]).await.unwrap();
    assert!(holders.is_empty(), "nor its machine");
    // A new request under a taken id: refused whole, the stored one untouched.
    let mut taken = launched("req-a", 1, &["i-taken"]);
    let err = commit(&*store, &mut [&mut taken]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert!(store.find_holders(&[MachineId::new("i-taken").unwrap()], &[]).await.unwrap().is_empty());
    assert_eq!(store.get(a.id()).await.unwrap().unwrap().state(), RequestState::Cancelled);
}

#[doc(hidden)]
pub async fn history_replays_to_the_stored_request(store: Arc<dyn RequestStore>) {
    let mut r = launched("req-a", 2, &["i-1"]);
    commit(&*store, &mut [&mut r]).await.unwrap();
    let mut r = store.get(r.id()).await.unwrap().unwrap();
    r.reconcile(&[observed("i-1", "req-a", MachineStatus::Running)], &[provider()], T0.plus_secs(9), &policy());
    commit(&*store, &mut [&mut r]).await.unwrap();
    let history = store.history(r.id()).await.unwrap();
    let seqs: Vec<u64> = history.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (0..r.seq()).collect::<Vec<_>>(), "every event, in order");
    let rebuilt = Request::replay(&history).unwrap();
    assert_eq!(rebuilt.state(), r.state());
    assert_eq!(rebuilt.machines(), r.machines());
}

#[doc(hidden)]
pub async fn needing_work_lists_active_requests(store: Arc<dyn RequestStore>) {
    let mut active = launched("req-a", 2, &["i-1"]);
    let mut done = launched("req-b", 1, &["i-2"]);
    done.reconcile(&[observed("i-2", "req-b", MachineStatus::Running)], &[provider()], T0.plus_secs(2), &policy());
    assert_eq!(done.state(), RequestState::Completed);
    commit(&*store, &mut [&mut active, &mut done]).await.unwrap();
    let ids: Vec<String> = store.needing_work(None).await.unwrap().iter().map(|r| r.id().to_string()).collect();
    assert_eq!(ids, ["req-a"]);
    let scope = [done.id().clone(), active.id().clone(), RequestId::new("req-none").unwrap()];
    let among: Vec<String> =
        store.needing_work(Some(&scope)).await.unwrap().iter().map(|r| r.id().to_string()).collect();
    assert_eq!(among, ["req-a"]);
    assert!(store.needing_work(Some(&[])).await.unwrap().is_empty());
}

#[doc(hidden)]
pub async fn finds_holders_by_id_and_name(store: Arc<dyn RequestStore>) {
    let mut r = launched("req-a", 2, &["i-1", "i-2"]);
    let mut other = launched("req-b", 1, &["i-3"]);
    commit(&*store, &mut [&mut r, &mut other]).await.unwrap();
    let name = r.machines()[1].name().unwrap().to_owned();
    let by_id = store.find_holders(&[MachineId::new("i-1").unwrap()], &[]).await.unwrap();
    assert_eq!(by_id.len(), 1);
    assert_eq!(by_id[0].id().as_str(), "req-a");
    let by_name = store.find_holders(&[], &[name]).await.unwrap();
    assert_eq!(by_name.len(), 1);
    assert!(store.find_holders(&[MachineId::new("i-404").unwrap()], &[]).await.unwrap().is_empty());
}

#[doc(hidden)]
pub async fn counts_capacity_per_template(store: Arc<dyn RequestStore>) {
    let mut a = launched("req-a", 3, &["i-1"]);
    let mut b = launched("req-b", 2, &["i-2", "i-3"]);
    b.reconcile(
        &[observed("i-2", "req-b", MachineStatus::Running), observed("i-3", "req-b", MachineStatus::Running)],
        &[provider()],
        T0.plus_secs(3),
        &policy(),
    );
    commit(&*store, &mut [&mut a, &mut b]).await.unwrap();
    let mut ret = Request::return_machines(
        RequestId::new("ret-a").unwrap(),
        vec![ReturnedMachine { machine: b.machines()[0].for_return(), holder: Some(b.id().clone()), refusal: None }],
        TimeoutSecs::DEFAULT,
        false,
        None,
        None,
        T0.plus_secs(4),
    )
    .unwrap();
    let machine = b.machines()[0].id().clone();
    b.mark_returned(&machine, ret.id(), T0.plus_secs(4));
    commit(&*store, &mut [&mut ret, &mut b]).await.unwrap();
    let held = store.capacity_held().await.unwrap();
    let template = a.template().unwrap().id();
    assert_eq!(held.get(template).copied(), Some(3 + 1), "3 reserved, and 1 of 2 still held after the return");
}

#[doc(hidden)]
pub async fn counts_work_in_flight_per_provider_and_keeps_who_made_each_event(store: Arc<dyn RequestStore>) {
    assert!(store.work_by_provider().await.unwrap().is_empty());
    let other = ProviderName::new("sim-2").unwrap();
    let on = |id: &str, provider: &ProviderName| {
        Request::provision(ProvisionSpec { provider: provider.clone(), ..provision_spec(id, 1) }, T0)
    };
    let first = provider();
    let (mut a, mut b, mut c, mut d) =
        (on("req-a", &first), on("req-b", &first), on("req-c", &other), on("req-d", &other));
    a.attribute_to(Some("alice"));
    commit(&*store, &mut [&mut a, &mut b, &mut c, &mut d]).await.unwrap();
    let counts = store.work_by_provider().await.unwrap();
    assert_eq!((counts.get(&first), counts.get(&other)), (Some(&2), Some(&2)), "{counts:?}");

    // A finished request is no work; a request that fails over counts on its new provider.
    d.cancel(T0.plus_secs(1)).unwrap();
    assert!(b.fail_over(other.clone(), "capacity".into(), T0.plus_secs(1)));
    commit(&*store, &mut [&mut b, &mut d]).await.unwrap();
    let counts = store.work_by_provider().await.unwrap();
    assert_eq!((counts.get(&first), counts.get(&other)), (Some(&1), Some(&2)), "{counts:?}");

    let history = store.history(a.id()).await.unwrap();
    assert_eq!(history[0].by.as_deref(), Some("alice"), "the caller is kept with the event");
    assert_eq!(store.history(b.id()).await.unwrap()[0].by, None, "no caller named, none kept");
}

#[doc(hidden)]
pub async fn counts_requests_by_kind_and_state(store: Arc<dyn RequestStore>) {
    assert!(store.count_by_state().await.unwrap().is_empty());
    let mut held = launched("req-held", 1, &["i-1"]);
    let mut b = Request::provision(provision_spec("req-b", 1), T0);
    let mut c = Request::provision(provision_spec("req-c", 1), T0);
    commit(&*store, &mut [&mut held, &mut b, &mut c]).await.unwrap();
    c.cancel(T0.plus_secs(1)).unwrap();
    let mut ret = Request::return_machines(
        RequestId::new("ret-a").unwrap(),
        vec![ReturnedMachine {
            machine: held.machines()[0].for_return(),
            holder: Some(held.id().clone()),
            refusal: None,
        }],
        TimeoutSecs::DEFAULT,
        false,
        None,
        None,
        T0.plus_secs(2),
    )
    .unwrap();
    commit(&*store, &mut [&mut c, &mut ret]).await.unwrap();
    let mut counts = store.count_by_state().await.unwrap();
    counts.sort_by_key(|(k, s, _)| (k.as_str(), s.as_str()));
    let mut want: Vec<(RequestKind, RequestState, u64)> = Vec::new();
    for r in [&held, &b, &c, &ret] {
        match want.iter_mut().find(|(k, s, _)| *k == r.kind() && *s == r.state()) {
            Some(entry) => entry.2 += 1,
            None => want.push((r.kind(), r.state(), 1)),
        }
    }
    want.sort_by_key(|(k, s, _)| (k.as_str(), s.as_str()));
    assert_eq!(counts, want);
    assert!(want.iter().any(|(k, s, n)| *k == RequestKind::Provision && *s == RequestState::Pending && *n == 1));
    assert!(want.iter().any(|(k, s, _)| *k == RequestKind::Provision && *s == RequestState::Cancelled));
    assert!(want.iter().any(|(k, _, _)| *k == RequestKind::Return));
}

#[doc(hidden)]
pub async fn lists_with_filters_newest_first(store: Arc<dyn RequestStore>) {
    let mut older = Request::provision(provision_spec("req-old", 1), T0);
    let mut newer = Request::provision(provision_spec("req-new", 1), T0.plus_secs(10));
    commit(&*store, &mut [&mut older, &mut newer]).await.unwrap();
    newer.cancel(T0.plus_secs(11)).unwrap();
    commit(&*store, &mut [&mut newer]).await.unwrap();
    let all = store.list(&RequestFilter::default()).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|r| r.id().as_str()).collect();
    assert_eq!(ids, ["req-new", "req-old"]);
    let cancelled =
        store.list(&RequestFilter { states: vec![RequestState::Cancelled], ..Default::default() }).await.unwrap();
    assert_eq!(cancelled.len(), 1);
    let returns = store.list(&RequestFilter { kind: Some(RequestKind::Return), ..Default::default() }).await.unwrap();
    assert!(returns.is_empty());
    let one = store.list(&RequestFilter { limit: Some(1), ..Default::default() }).await.unwrap();
    assert_eq!(one.len(), 1);
}

#[doc(hidden)]
pub async fn concurrent_writers_lose_no_update(store: Arc<dyn RequestStore>) {
    let mut r = launched("req-a", 1, &[]);
    commit(&*store, &mut [&mut r]).await.unwrap();
    let writers = 8;
    let mut tasks = Vec::new();
    for n in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            // Each writer retries on conflict until its change lands.
            for _ in 0..200 {
                let mut copy = store.get(&RequestId::new("req-a").unwrap()).await.unwrap().unwrap();
                let m = observed(&format!("i-w{n}"), "req-a", MachineStatus::Running);
                copy.record_launch(1, vec![m], None, T0.plus_secs(2));
                match commit(&*store, &mut [&mut copy]).await {
                    Ok(()) => return true,
                    Err(StoreError::Conflict { .. }) => tokio::task::yield_now().await,
                    Err(e) => panic!("unexpected store error: {e}"),
                }
            }
            false
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap(), "a writer never got its change in");
    }
    let end = store.get(r.id()).await.unwrap().unwrap();
    assert_eq!(end.machines().len(), writers, "every writer's machine is there");
    assert_eq!(end.version(), 1 + writers as u64);
}

#[doc(hidden)]
pub async fn concurrent_saves_get_their_own_answers(store: Arc<dyn RequestStore>) {
    let mut kept = launched("req-kept", 2, &["i-kept"]);
    commit(&*store, &mut [&mut kept]).await.unwrap();
    let mut stale = store.get(kept.id()).await.unwrap().unwrap();
    kept.record_launch(1, vec![observed("i-fresh", "req-kept", MachineStatus::Running)], None, T0.plus_secs(2));
    commit(&*store, &mut [&mut kept]).await.unwrap();
    stale.record_launch(1, vec![observed("i-stale", "req-kept", MachineStatus::Running)], None, T0.plus_secs(3));

    // Many callers at once, each with its own requests (one or two), and among them one whose
    // batch holds a stale copy beside a new request.
    let callers = 24;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..callers {
        let store = store.clone();
        tasks.spawn(async move {
            let mut batch = vec![launched(&format!("req-{n}"), 2, &[&format!("i-{n}")])];
            if n % 2 == 0 {
                batch.push(launched(&format!("req-{n}-b"), 1, &[&format!("i-{n}-b")]));
            }
            let mut refs: Vec<&mut Request> = batch.iter_mut().collect();
            commit(&*store, &mut refs).await.map(|()| n)
        });
    }
    {
        let store = store.clone();
        tasks.spawn(async move {
            let mut alongside = launched("req-alongside", 1, &["i-alongside"]);
            match commit(&*store, &mut [&mut alongside, &mut stale]).await {
                Err(StoreError::Conflict { request_id }) if request_id == "req-kept" => Ok(usize::MAX),
                Err(e) => Err(e),
                Ok(()) => Err(StoreError::Unavailable("the stale write was taken".into())),
            }
        });
    }
    let mut answered = 0;
    while let Some(done) = tasks.join_next().await {
        done.unwrap().unwrap();
        answered += 1;
    }
    assert_eq!(answered, callers + 1, "every caller has its answer");

    for n in 0..callers {
        let id = RequestId::new(format!("req-{n}")).unwrap();
        let back = store.get(&id).await.unwrap().expect("stored");
        assert_eq!((back.version(), back.machines().len()), (1, 1));
        assert_eq!(store.history(&id).await.unwrap().len() as u64, back.seq(), "its events");
        let holders = store.find_holders(&[MachineId::new(format!("i-{n}")).unwrap()], &[]).await.unwrap();
        assert_eq!(holders.iter().map(|r| r.id().as_str()).collect::<Vec<_>>(), [id.as_str()], "its machine");
        let second = RequestId::new(format!("req-{n}-b")).unwrap();
        assert_eq!(store.get(&second).await.unwrap().is_some(), n % 2 == 0, "a batch is all or nothing");
    }
    assert!(store.get(&RequestId::new("req-alongside").unwrap()).await.unwrap().is_none(), "refused with its batch");
    let now = store.get(kept.id()).await.unwrap().unwrap();
    let machines: Vec<&str> = now.machines().iter().map(|m| m.id().as_str()).collect();
    assert_eq!(machines, ["i-kept", "i-fresh"], "the stale write changed nothing");
    assert!(store.find_holders(&[MachineId::new("i-stale").unwrap()], &[]).await.unwrap().is_empty());
}

#[doc(hidden)]
pub async fn claims_share_work_among_workers(store: Arc<dyn RequestStore>) {
    let mut reqs: Vec<Request> = (0..3).map(|n| launched(&format!("req-{n}"), 1, &[])).collect();
    let mut done = launched("req-done", 1, &["i-9"]);
    done.reconcile(&[observed("i-9", "req-done", MachineStatus::Running)], &[provider()], T0.plus_secs(1), &policy());
    let mut batch: Vec<&mut Request> = reqs.iter_mut().collect();
    batch.push(&mut done);
    commit(&*store, &mut batch).await.unwrap();
    let ttl = 30_000;
    let ids = |v: &[Request]| {
        let mut ids: Vec<String> = v.iter().map(|r| r.id().to_string()).collect();
        ids.sort();
        ids
    };
    let w1 = store.claim("w1", T0, ttl, 2).await.unwrap();
    assert_eq!(w1.len(), 2, "up to the limit");
    let w2 = store.claim("w2", T0.plus_secs(1), ttl, 10).await.unwrap();
    assert_eq!(w2.len(), 1, "only what w1 does not hold, and never finished requests");
    assert!(ids(&w1).iter().all(|id| !ids(&w2).contains(id)));
    let renewed = store.claim("w1", T0.plus_secs(10), ttl, 10).await.unwrap();
    assert_eq!(ids(&renewed), ids(&w1), "w1 renews its own claims and takes nothing held by w2");
    let taken = store.claim("w2", T0.plus_secs(41), ttl, 10).await.unwrap();
    assert_eq!(taken.len(), 3, "expired claims are taken over");
    let first = w1[0].id().clone();
    let spans = store.claim_history(&first).await.unwrap();
    let workers: Vec<&str> = spans.iter().map(|s| s.worker.as_str()).collect();
    assert_eq!(workers, ["w1", "w2"]);
    assert_eq!((spans[0].since, spans[0].until), (T0, T0.plus_secs(40)), "one span, extended by the renewal");
    assert!(spans[0].until <= spans[1].since, "no overlap");
    store.release("w2", std::slice::from_ref(&first), T0.plus_secs(50)).await.unwrap();
    let back = store.claim("w1", T0.plus_secs(51), ttl, 10).await.unwrap();
    assert_eq!(ids(&back), [first.to_string()], "a released request is free at once");
    assert_eq!(store.claim_history(&first).await.unwrap()[1].until, T0.plus_secs(50));
}

#[doc(hidden)]
pub async fn claims_take_high_priority_first_then_the_longest_waiting(store: Arc<dyn RequestStore>) {
    // Created in this order, one second apart: a burst of low and normal work, then an urgent
    // request (high through its metadata) and one asked high.
    let asked = [
        ("low-1", Priority::Low, None),
        ("normal-1", Priority::Normal, None),
        ("low-2", Priority::Low, None),
        ("normal-2", Priority::Normal, None),
        ("urgent", Priority::Normal, Some("critical")),
        ("high", Priority::High, None),
    ];
    let mut reqs: Vec<Request> = Vec::new();
    for (n, (id, priority, urgency)) in asked.into_iter().enumerate() {
        let mut spec = provision_spec(id, 1);
        spec.priority = priority;
        if let Some(u) = urgency {
            spec.metadata.insert("urgency".into(), serde_json::json!(u));
        }
        let at = T0.plus_secs(n as i64);
        let mut r = Request::provision(spec, at);
        r.reconcile(&[], &[provider()], at, &policy());
        reqs.push(r);
    }
    let mut batch: Vec<&mut Request> = reqs.iter_mut().collect();
    commit(&*store, &mut batch).await.unwrap();
    let order = |v: Vec<Request>| v.iter().map(|r| r.id().to_string()).collect::<Vec<_>>();
    let first = store.claim("w1", T0.plus_secs(10), 30_000, 3).await.unwrap();
    assert_eq!(order(first), ["urgent", "high", "normal-1"], "high first, the longest waiting first");
    let rest = store.claim("w2", T0.plus_secs(11), 30_000, 10).await.unwrap();
    assert_eq!(order(rest), ["normal-2", "low-1", "low-2"]);
}

#[doc(hidden)]
pub async fn claims_take_turns_through_more_work_than_one_batch(store: Arc<dyn RequestStore>) {
    // Five requests with work left, created a second apart, and a worker that claims two a
    // cycle: nothing they hold changes, so the oldest would be claimed again every cycle.
    let mut reqs: Vec<Request> = (0..5)
        .map(|n| {
            let at = T0.plus_secs(n);
            let mut r = Request::provision(provision_spec(&format!("turn-{n}"), 1), at);
            r.reconcile(&[], &[provider()], at, &policy());
            r
        })
        .collect();
    let mut batch: Vec<&mut Request> = reqs.iter_mut().collect();
    commit(&*store, &mut batch).await.unwrap();
    let ttl = 60_000;
    let cycle = |at: i64| {
        let store = store.clone();
        async move {
            let claimed = store.claim("w1", T0.plus_secs(at), ttl, 2).await.unwrap();
            claimed.iter().map(|r| r.id().to_string()).collect::<Vec<_>>()
        }
    };
    assert_eq!(cycle(10).await, ["turn-0", "turn-1"], "the longest waiting first");
    assert_eq!(cycle(11).await, ["turn-2", "turn-3"], "then what the worker has not claimed yet");
    assert_eq!(cycle(12).await, ["turn-4", "turn-0"], "then what it claimed longest ago");
    let released = RequestId::new("turn-3").unwrap();
    store.release("w1", std::slice::from_ref(&released), T0.plus_secs(13)).await.unwrap();
    assert_eq!(cycle(14).await, ["turn-3", "turn-1"], "a released request comes first again");
}

#[doc(hidden)]
pub async fn admission_never_exceeds_a_limit_under_concurrency(store: Arc<dyn RequestStore>) {
    let template = provision_spec("probe", 1).template.id().clone();
    let limits = Limits { template: Some(template.clone()), template_max: Some(30), account_limit: None };
    // Twelve creators of 5 machines race for a template that may hold 30.
    let racers: Vec<_> = (0..12)
        .map(|n| {
            let store = store.clone();
            let limits = limits.clone();
            tokio::spawn(async move {
                let r = Request::provision(provision_spec(&format!("adm-{n}"), 5), T0);
                store.create_within(&r, &limits, None).await
            })
        })
        .collect();
    let mut stored = 0;
    for racer in racers {
        match racer.await.unwrap().unwrap() {
            None => stored += 1,
            Some(usage) => assert!(usage.template_held + 5 > 30, "refused only when it did not fit: {usage:?}"),
        }
    }
    assert_eq!(stored, 6, "exactly as many as fit");
    assert_eq!(store.capacity_held().await.unwrap().get(&template).copied(), Some(30));

    // The account limit counts every template; a refusal stores nothing.
    let account = Limits { template: Some(template.clone()), template_max: None, account_limit: Some(32) };
    let big = Request::provision(provision_spec("adm-big", 5), T0);
    let refused = store.create_within(&big, &account, None).await.unwrap();
    assert_eq!(refused, Some(Usage { template_held: 30, total_held: 30 }));
    assert!(store.get(big.id()).await.unwrap().is_none(), "nothing stored");
    let small = Request::provision(provision_spec("adm-small", 2), T0);
    assert_eq!(store.create_within(&small, &account, None).await.unwrap(), None);
    assert!(store.get(small.id()).await.unwrap().is_some());
    // Without limits it is a plain insert, and a taken id still conflicts.
    assert!(matches!(store.create_within(&small, &Limits::default(), None).await, Err(StoreError::Conflict { .. })));

    // An entry of shared state goes in with the request, or neither does.
    let placed = Request::provision(provision_spec("adm-placed", 1), T0);
    assert_eq!(
        store.create_within(&placed, &Limits::default(), Some(("hold/adm-placed", "held"))).await.unwrap(),
        None
    );
    assert_eq!(store.load_shared("hold/adm-placed").await.unwrap(), (Some("held".into()), 1));
    let twice = Request::provision(provision_spec("adm-twice", 1), T0);
    let taken = store.create_within(&twice, &Limits::default(), Some(("hold/adm-placed", "again"))).await;
    assert!(matches!(taken, Err(StoreError::Conflict { .. })), "{taken:?}");
    assert!(store.get(twice.id()).await.unwrap().is_none(), "the request does not go in without its entry");
    assert_eq!(store.load_shared("hold/adm-placed").await.unwrap(), (Some("held".into()), 1));
    let over = Request::provision(provision_spec("adm-over", 5), T0);
    assert!(store.create_within(&over, &account, Some(("hold/adm-over", "held"))).await.unwrap().is_some());
    assert_eq!(store.load_shared("hold/adm-over").await.unwrap(), (None, 0), "nor the entry without its request");
}

#[doc(hidden)]
pub async fn fenced_writes_need_the_claim(store: Arc<dyn RequestStore>) {
    let mut r = launched("req-f", 1, &[]);
    commit(&*store, &mut [&mut r]).await.unwrap();
    store.claim("w1", T0, 30_000, 10).await.unwrap();
    let mut copy = store.get(r.id()).await.unwrap().unwrap();
    copy.record_launch(1, vec![observed("i-1", "req-f", MachineStatus::Pending)], None, T0.plus_secs(1));
    let late = Fence { worker: "w1".into(), now: T0.plus_secs(31) };
    let err = store.save(&[&copy], Some(&late)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "an expired claim fences the write out");
    let other = Fence { worker: "w2".into(), now: T0.plus_secs(2) };
    assert!(store.save(&[&copy], Some(&other)).await.is_err(), "another worker's claim fences the write out");
    let own = Fence { worker: "w1".into(), now: T0.plus_secs(2) };
    store.save(&[&copy], Some(&own)).await.expect("the holder writes");
    assert_eq!(store.get(r.id()).await.unwrap().unwrap().machines().len(), 1);
}

#[doc(hidden)]
pub async fn one_worker_leads_a_job(store: Arc<dyn RequestStore>) {
    assert!(store.lead("sweep", "w1", T0, 10_000).await.unwrap());
    assert!(!store.lead("sweep", "w2", T0.plus_secs(1), 10_000).await.unwrap());
    assert!(store.lead("sweep", "w1", T0.plus_secs(5), 10_000).await.unwrap(), "the leader keeps it");
    assert!(store.lead("other", "w2", T0.plus_secs(5), 10_000).await.unwrap(), "jobs are independent");
    assert!(store.lead("sweep", "w2", T0.plus_secs(16), 10_000).await.unwrap(), "an expired lease moves");
    assert!(!store.lead("sweep", "w1", T0.plus_secs(17), 10_000).await.unwrap());
}

/// Generates the cloud contract: one `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]` per case, each against a fresh provider.
/// `$fresh` gives a `Fn() -> impl Future<Output = Arc<dyn CloudProvider>>`; `$template` (it may
/// `.await`) is the template launched; `$settle` how long machines may take to run.
#[macro_export]
macro_rules! cloud_contract_tests {
    ($fresh:expr, $template:expr, $settle:expr) => {
        #[tokio::test]
        async fn launches_tagged_machines_idempotently() {
            let fresh = $fresh;
            $crate::contract::launches_tagged_machines_idempotently(fresh().await, &$template, $settle).await;
        }

        #[tokio::test]
        async fn terminates_and_tolerates_repeats() {
            let fresh = $fresh;
            $crate::contract::terminates_and_tolerates_repeats(fresh().await, &$template, $settle).await;
        }

        #[tokio::test]
        async fn leaves_alone_what_it_does_not_own() {
            let fresh = $fresh;
            $crate::contract::leaves_alone_what_it_does_not_own(fresh().await, &$template, $settle).await;
        }
        #[tokio::test]
        async fn describes_nothing_for_unknown_ids() {
            let fresh = $fresh;
            $crate::contract::describes_nothing_for_unknown_ids(fresh().await).await;
        }
    };
}

/// The ownership the contract's launches carry.
fn owner() -> Ownership {
    Ownership { cluster: "contract".into(), installation: "contract-installation".into() }
}

fn owned(ids: &[MachineId], request: &str) -> Vec<OwnedMachine> {
    let request_id = RequestId::new(request).unwrap();
    ids.iter().map(|id| OwnedMachine { id: id.clone(), request_id: request_id.clone() }).collect()
}

fn launch_request(template: &Template, request: &str, count: u32, attempt: u32) -> LaunchRequest {
    launch_request_of(&owner(), template, request, count, attempt)
}

fn launch_request_of(owner: &Ownership, template: &Template, request: &str, count: u32, attempt: u32) -> LaunchRequest {
    let id = RequestId::new(request).unwrap();
    let tags = Tags::new(
        [
            (tag_keys::REQUEST_ID.to_owned(), request.to_owned()),
            (tag_keys::CLUSTER.to_owned(), owner.cluster.clone()),
            (tag_keys::INSTALLATION.to_owned(), owner.installation.clone()),
            ("team".into(), "abc".into()),
        ]
        .into(),
    )
    .unwrap();
    LaunchRequest {
        token: ClientToken::for_launch(&id, attempt),
        request_id: id,
        template: template.clone(),
        count,
        tags,
        zones: vec![],
        following: None,
        started_at: ohf_domain::testing::T0,
        priority: ohf_domain::Priority::Normal,
    }
}

async fn wait_running(
    p: &dyn CloudProvider,
    ids: &[MachineId],
    settle: Duration,
) -> Vec<ohf_domain::MachineObservation> {
    let deadline = tokio::time::Instant::now() + settle;
    loop {
        let seen =
            p.describe(&DescribeQuery { machine_ids: ids.to_vec(), ..Default::default() }).await.expect("describe");
        if seen.len() == ids.len() && seen.iter().all(|o| o.status == MachineStatus::Running) {
            return seen;
        }
        assert!(tokio::time::Instant::now() < deadline, "machines not running within {settle:?}: {seen:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[doc(hidden)]
pub async fn launches_tagged_machines_idempotently(p: Arc<dyn CloudProvider>, template: &Template, settle: Duration) {
    let request = format!("req-contract-{}", uuid::Uuid::new_v4().simple());
    let first = p.launch(&launch_request(template, &request, 3, 1)).await.expect("launch");
    assert_eq!(first.machines.len(), 3);
    let again = p.launch(&launch_request(template, &request, 3, 1)).await.expect("repeated launch");
    let mut a: Vec<_> = first.machines.iter().map(|m| m.id.clone()).collect();
    let mut b: Vec<_> = again.machines.iter().map(|m| m.id.clone()).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b, "the same token gives the same machines");
    let by_tag = p
        .describe(&DescribeQuery { request_ids: vec![RequestId::new(request.clone()).unwrap()], ..Default::default() })
        .await
        .expect("describe by tag");
    assert_eq!(by_tag.len(), 3, "exactly the launched machines carry the request tag");
    for o in &by_tag {
        assert_eq!(o.request_id.as_ref().map(RequestId::as_str), Some(request.as_str()));
        assert_eq!(o.tags.get("team").map(String::as_str), Some("abc"));
        assert_eq!(&o.provider, p.name());
    }
    let running = wait_running(&*p, &a, settle).await;
    for o in running {
        assert!(o.private_ip.is_some() && o.name.is_some(), "a running machine has an address and a host name");
        assert!(o.launch_time.is_some());
    }
    assert!(p.terminate(&owned(&a, &request), &owner()).await.expect("cleanup").is_empty());
}

#[doc(hidden)]
pub async fn terminates_and_tolerates_repeats(p: Arc<dyn CloudProvider>, template: &Template, settle: Duration) {
    let request = format!("req-contract-{}", uuid::Uuid::new_v4().simple());
    let launched = p.launch(&launch_request(template, &request, 2, 1)).await.expect("launch");
    let ids: Vec<_> = launched.machines.iter().map(|m| m.id.clone()).collect();
    let refused = p.terminate(&owned(&ids, &request), &owner()).await.expect("terminate");
    assert!(refused.is_empty(), "its own machines are terminated: {refused:?}");
    p.terminate(&owned(&ids, &request), &owner()).await.expect("terminating twice is not an error");
    let deadline = tokio::time::Instant::now() + settle;
    loop {
        let seen =
            p.describe(&DescribeQuery { machine_ids: ids.clone(), ..Default::default() }).await.expect("describe");
        let gone = ids.iter().all(|id| seen.iter().find(|o| &o.id == id).is_none_or(|o| o.status.is_going()));
        if gone {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "machines still up after terminate: {seen:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Machines of another installation, of another cluster, or of another request than the
/// one named are refused with a reason and stay up.
#[doc(hidden)]
pub async fn leaves_alone_what_it_does_not_own(p: Arc<dyn CloudProvider>, template: &Template, settle: Duration) {
    let request = format!("req-contract-{}", uuid::Uuid::new_v4().simple());
    let stranger = Ownership { cluster: "contract".into(), installation: "another-installation".into() };
    let theirs = p.launch(&launch_request_of(&stranger, template, &request, 1, 1)).await.expect("launch");
    let other_cluster = Ownership { cluster: "elsewhere".into(), installation: owner().installation };
    let elsewhere = p.launch(&launch_request_of(&other_cluster, template, &request, 1, 2)).await.expect("launch");
    let ours = p.launch(&launch_request(template, &request, 1, 3)).await.expect("launch");
    let ids: Vec<MachineId> =
        [&theirs, &elsewhere, &ours].iter().flat_map(|l| l.machines.iter().map(|m| m.id.clone())).collect();
    wait_running(&*p, &ids, settle).await;
    let mut asked = owned(&ids[..2], &request);
    // Our own machine, named as another request's.
    asked.extend(owned(&ids[2..], "req-contract-someone-else"));
    let refused = p.terminate(&asked, &owner()).await.expect("terminate");
    let mut refused_ids: Vec<MachineId> = refused.iter().map(|r| r.id.clone()).collect();
    refused_ids.sort();
    let mut all = ids.clone();
    all.sort();
    assert_eq!(refused_ids, all, "every machine is refused: {refused:?}");
    assert!(refused.iter().all(|r| !r.reason.is_empty()));
    let still = wait_running(&*p, &ids, settle).await;
    assert_eq!(still.len(), 3, "nothing was terminated");
    let cleanup: Vec<OwnedMachine> = owned(&ids[..1], &request);
    p.terminate(&cleanup, &stranger).await.expect("cleanup");
    p.terminate(&owned(&ids[1..2], &request), &other_cluster).await.expect("cleanup");
    p.terminate(&owned(&ids[2..], &request), &owner()).await.expect("cleanup");
}

#[doc(hidden)]
pub async fn describes_nothing_for_unknown_ids(p: Arc<dyn CloudProvider>) {
    let ghost = RequestId::new(format!("req-ghost-{}", uuid::Uuid::new_v4().simple())).unwrap();
    let seen = p.describe(&DescribeQuery { request_ids: vec![ghost], ..Default::default() }).await.expect("describe");
    assert!(seen.is_empty());
}

#[doc(hidden)]
pub async fn shared_state_is_compare_and_set(store: Arc<dyn RequestStore>) {
    assert_eq!(store.load_shared("breaker/a").await.unwrap(), (None, 0));
    assert!(store.store_shared("breaker/a", "one", 0).await.unwrap());
    assert!(!store.store_shared("breaker/a", "again", 0).await.unwrap(), "a second first write loses");
    assert_eq!(store.load_shared("breaker/a").await.unwrap(), (Some("one".into()), 1));
    assert!(!store.store_shared("breaker/a", "stale", 2).await.unwrap());
    assert!(store.store_shared("breaker/a", "two", 1).await.unwrap());
    assert!(store.store_shared("breaker/b", "x", 0).await.unwrap());
    assert!(store.store_shared("other/c", "y", 0).await.unwrap());
    // Neighbours of the prefix on both sides, and keys after it, are not listed.
    for key in ["breaker", "breaker.", "breaker0", "breakerz/a", "zz/last"] {
        assert!(store.store_shared(key, "n", 0).await.unwrap());
    }
    let listed = store.list_shared("breaker/").await.unwrap();
    assert_eq!(listed, vec![("breaker/a".into(), "two".into(), 2), ("breaker/b".into(), "x".into(), 1)]);
    assert_eq!(store.list_shared("breaker").await.unwrap().len(), 6, "every key that starts so, and only those");
    // Several prefixes in one read: each its own list, in the order asked, a key in every list
    // whose prefix it has.
    let many = store.list_shared_many(&["zz/", "breaker/", "nothing/", "breaker"]).await.unwrap();
    let keys: Vec<Vec<&str>> = many.iter().map(|l| l.iter().map(|(k, _, _)| k.as_str()).collect()).collect();
    assert_eq!(keys[..3], [vec!["zz/last"], vec!["breaker/a", "breaker/b"], vec![]]);
    assert_eq!(keys[3].len(), 6);
    assert!(store.list_shared_many(&[]).await.unwrap().is_empty());
    let everything: Vec<String> = store.list_shared("").await.unwrap().into_iter().map(|(k, _, _)| k).collect();
    assert!(["other/c", "breaker0", "zz/last"].iter().all(|k| everything.iter().any(|e| e == k)), "{everything:?}");
    assert!(!store.remove_shared("breaker/a", 1).await.unwrap(), "a stale removal loses");
    assert!(store.remove_shared("breaker/a", 2).await.unwrap());
    assert!(!store.remove_shared("breaker/a", 2).await.unwrap(), "gone already");
    assert_eq!(store.load_shared("breaker/a").await.unwrap(), (None, 0));
    assert_eq!(store.list_shared("breaker/").await.unwrap().len(), 1);
}
