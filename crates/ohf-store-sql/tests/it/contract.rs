use std::sync::Arc;

use ohf_app::RequestStore;
use ohf_app::contract::store_contract;
use ohf_app::memory::MemoryStore;
use ohf_store_sql::{PostgresStore, SqliteStore};

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
    a.save(&[&r], None).await.unwrap();
    r.mark_committed(1);
    assert_eq!(b.get(r.id()).await.unwrap().unwrap(), r);
}

/// The Postgres the tests use: `OHF_TEST_DATABASE_URL`, else the local server. `cargo xtask test`
/// sets the variable after making sure a server runs.
pub fn postgres_url() -> String {
    std::env::var("OHF_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

async fn drop_schemas(schemas: &[String]) {
    let pool = sqlx::PgPool::connect(&postgres_url()).await.expect("postgres");
    for s in schemas {
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {s} CASCADE")).execute(&pool).await.expect("drop schema");
    }
}

#[tokio::test]
async fn postgres_store_passes_the_store_contract() {
    let schemas = std::sync::Mutex::new(Vec::new());
    store_contract(|| {
        let schema = format!("ohf_test_{}", uuid::Uuid::new_v4().simple());
        schemas.lock().unwrap().push(schema.clone());
        async move {
            let store = PostgresStore::open(&postgres_url(), Some(&schema), 4).await.unwrap_or_else(|e| {
                panic!("postgres at {} ({e}); run `cargo xtask test`, which starts one", postgres_url())
            });
            Arc::new(store) as Arc<dyn RequestStore>
        }
    })
    .await;
    let list = schemas.lock().unwrap().clone();
    drop_schemas(&list).await;
}
