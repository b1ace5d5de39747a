//! Retention and bounded reads on the SQL stores: finished requests go with their history,
//! requests that hold machines stay, and lists of ids far past the databases' limits on bound
//! values are read in chunks.

use std::sync::Arc;

use ohf_app::{RequestFilter, RequestStore, Requests};
use ohf_domain::testing::{T0, observed, provider, provision_spec};
use ohf_domain::{LifecyclePolicy, MachineStatus, Request, RequestId, RequestKind};
use ohf_store_sql::SqliteStore;

async fn commit(store: &dyn RequestStore, r: &mut Request) {
    store.save(&[&*r], None).await.unwrap();
    let v = r.version() + 1;
    r.mark_committed(v);
}

/// A provision request that ran one machine, then (`returned`) lost it, so it holds nothing.
async fn finished(store: &dyn RequestStore, id: &str, returned: bool) -> Request {
    let policy = LifecyclePolicy::default();
    let mut r = Request::provision(provision_spec(id, 1), T0);
    r.reconcile(&[], &[provider()], T0, &policy);
    r.record_launch(1, vec![observed(&format!("i-{id}"), id, MachineStatus::Running)], None, T0.plus_secs(1));
    r.reconcile(&[observed(&format!("i-{id}"), id, MachineStatus::Running)], &[provider()], T0.plus_secs(2), &policy);
    if returned {
        r.reconcile(
            &[observed(&format!("i-{id}"), id, MachineStatus::Terminated)],
            &[provider()],
            T0.plus_secs(3),
            &policy,
        );
    }
    commit(store, &mut r).await;
    r
}

#[tokio::test]
async fn retention_deletes_old_finished_requests_and_keeps_what_holds_machines() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn RequestStore> = Arc::new(SqliteStore::open(&dir.path().join("r.db")).await.unwrap());
    let gone = finished(&*store, "req-gone", true).await;
    let holding = finished(&*store, "req-holding", false).await;
    assert!(!gone.needs_work() && gone.capacity_held() == 0, "{gone:?}");
    assert!(holding.capacity_held() > 0);
    assert_eq!(store.delete_finished(T0, 100).await.unwrap(), 0, "nothing is older than T0");
    assert_eq!(store.delete_finished(T0.plus_secs(86_400), 100).await.unwrap(), 1);
    assert!(store.get(gone.id()).await.unwrap().is_none());
    assert!(store.history(gone.id()).await.unwrap().is_empty(), "its events went with it");
    assert!(store.get(holding.id()).await.unwrap().is_some(), "a request holding a machine stays");
    let held = store
        .list(&RequestFilter { kind: Some(RequestKind::Provision), holding: true, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(held.iter().map(|r| r.id().as_str()).collect::<Vec<_>>(), ["req-holding"]);
}

#[tokio::test]
async fn id_lists_past_every_bound_value_limit_are_read_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("c.db")).await.unwrap();
    let r = finished(&store, "req-7", false).await;
    let mut ids: Vec<RequestId> = (0..70_000).map(|i| RequestId::new(format!("req-x{i}")).unwrap()).collect();
    ids.push(r.id().clone());
    let found = store.get_many(&ids).await.expect("70,001 ids are read in chunks");
    assert_eq!(found.len(), 1);
    let machines: Vec<ohf_domain::MachineId> =
        (0..40_000).map(|i| ohf_domain::MachineId::new(format!("i-{i:08x}")).unwrap()).collect();
    let names: Vec<String> = (0..40_000).map(|i| format!("ip-{i}")).collect();
    assert!(store.find_holders(&machines, &names).await.unwrap().is_empty());
    assert_eq!(store.needing_work(Some(&ids)).await.unwrap().len(), 0);
}

#[tokio::test]
async fn an_unreadable_row_is_passed_over_by_lists_and_named_by_get() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let good = finished(&store, "req-good", false).await;
    let bad = finished(&store, "req-bad", false).await;
    let raw = sqlx::SqlitePool::connect(&format!("sqlite:{}", path.display())).await.unwrap();
    sqlx::query("UPDATE requests SET body = '{\"not\": \"a request\"}', version = version + 1 WHERE id = 'req-bad'")
        .execute(&raw)
        .await
        .unwrap();
    // Columns of the wrong type: a body that is bytes, a version that is words.
    let blob = finished(&store, "req-blob", false).await;
    let words = finished(&store, "req-words", false).await;
    sqlx::query("UPDATE requests SET body = X'00ff' WHERE id = 'req-blob'").execute(&raw).await.unwrap();
    sqlx::query("UPDATE requests SET version = 'two' WHERE id = 'req-words'").execute(&raw).await.unwrap();
    let listed = store.list(&RequestFilter::default()).await.expect("a poison row does not fail the list");
    assert_eq!(listed.iter().map(|r| r.id().as_str()).collect::<Vec<_>>(), ["req-good"]);
    let all = [good.id().clone(), bad.id().clone(), blob.id().clone(), words.id().clone()];
    let found = store.get_many(&all).await.unwrap();
    assert_eq!(found.iter().map(|r| r.id().as_str()).collect::<Vec<_>>(), ["req-good"]);
    for poison in &all[1..] {
        let e = store.get(poison).await.expect_err("the one request asked for is said to be unreadable");
        assert!(matches!(e, ohf_app::StoreError::Corrupt(_)), "{poison}: {e:?}");
    }
    // A store of one connection reads through its pool: the same answers.
    let one = SqliteStore::open_url_with(&format!("sqlite:{}", path.display()), 1).await.unwrap();
    assert_eq!(one.get_many(&all).await.unwrap().len(), 1);
    for poison in &all[1..] {
        let e = one.get(poison).await.expect_err("the one request asked for is said to be unreadable");
        assert!(matches!(e, ohf_app::StoreError::Corrupt(_)), "{poison}: {e:?}");
    }
}
