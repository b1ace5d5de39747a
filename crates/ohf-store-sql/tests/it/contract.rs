use std::sync::Arc;

use ohf_app::RequestStore;
use ohf_app::contract::store_contract;
use ohf_app::memory::MemoryStore;
use ohf_store_sql::SqliteStore;

#[tokio::test]
async fn memory_store_passes_the_store_contract() {
    store_contract(|| async { Arc::new(MemoryStore::new()) as Arc<dyn RequestStore> }).await;
}

#[tokio::test]
async fn sqlite_store_passes_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicU32::new(0);
    let dir_path = dir.path().to_path_buf();
    store_contract(|| {
        let path = dir_path.join(format!("state-{}.db", n.fetch_add(1, std::sync::atomic::Ordering::SeqCst)));
        async move { Arc::new(SqliteStore::open(&path).await.expect("open")) as Arc<dyn RequestStore> }
    })
    .await;
}

#[tokio::test]
async fn two_handles_on_one_file_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let a = SqliteStore::open(&path).await.unwrap();
    let b = SqliteStore::open(&path).await.unwrap();
    let mut r =
        ohf_domain::Request::provision(ohf_domain::testing::provision_spec("req-x", 1), ohf_domain::testing::T0);
    a.save(&[&r]).await.unwrap();
    r.mark_committed(1);
    assert_eq!(b.get(r.id()).await.unwrap().unwrap(), r);
}
