use ohf_app::Requests;
use ohf_store_sql::SqliteStore;

mod memory {
    use std::sync::Arc;

    use ohf_app::RequestStore;
    use ohf_app::memory::MemoryStore;

    ohf_app::store_contract_tests!(|| async { Arc::new(MemoryStore::new()) as Arc<dyn RequestStore> });
}

mod sqlite {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use ohf_app::RequestStore;
    use ohf_store_sql::SqliteStore;

    ohf_app::store_contract_tests!({
        // The directory lives as long as the closure, so as long as the test.
        let dir = tempfile::tempdir().unwrap();
        let n = AtomicU32::new(0);
        move || {
            let path = dir.path().join(format!("state-{}.db", n.fetch_add(1, Ordering::SeqCst)));
            async move { Arc::new(SqliteStore::open(&path).await.expect("open")) as Arc<dyn RequestStore> }
        }
    });
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

/// The schemas a test made, dropped when the test's store maker goes.
struct Schemas(std::sync::Mutex<Vec<String>>);

impl Drop for Schemas {
    fn drop(&mut self) {
        let list = std::mem::take(&mut *self.0.lock().unwrap());
        // A runtime of its own: the test's is shutting down around this.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok(pool) = sqlx::PgPool::connect(&postgres_url()).await {
                    for s in list {
                        let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {s} CASCADE")).execute(&pool).await;
                    }
                }
            });
        })
        .join();
    }
}

mod postgres {
    use std::sync::Arc;

    use ohf_app::RequestStore;
    use ohf_store_sql::PostgresStore;

    use super::{Schemas, postgres_url};

    ohf_app::store_contract_tests!({
        let schemas = Schemas(std::sync::Mutex::new(Vec::new()));
        move || {
            let schema = format!("ohf_test_{}", uuid::Uuid::new_v4().simple());
            schemas.0.lock().unwrap().push(schema.clone());
            async move {
                let store = PostgresStore::open(&postgres_url(), Some(&schema), 4).await.unwrap_or_else(|e| {
                    panic!("postgres at {} ({e}); run `cargo xtask test`, which starts one", postgres_url())
                });
                Arc::new(store) as Arc<dyn RequestStore>
            }
        }
    });
}

/// `a` and `b` are two handles on one database: `a` keeps what it reads again and again,
/// and still sees at once what `b` writes.
async fn a_request_read_again_is_kept_until_another_handle_writes_it(a: &dyn Requests, b: &dyn Requests) {
    use ohf_domain::testing::{T0, provision_spec};
    let mut r = ohf_domain::Request::provision(provision_spec("req-kept", 2), T0);
    a.save(&[&r], None).await.unwrap();
    r.mark_committed(1);
    for _ in 0..3 {
        assert_eq!(a.get(r.id()).await.unwrap().as_ref(), Some(&r));
        assert_eq!(a.get_many(&[r.id().clone(), r.id().clone()]).await.unwrap(), [r.clone()], "one answer per id");
    }
    let mut changed = b.get(r.id()).await.unwrap().unwrap();
    changed.cancel(T0.plus_secs(5)).unwrap();
    b.save(&[&changed], None).await.unwrap();
    changed.mark_committed(2);
    assert_eq!(a.get(r.id()).await.unwrap().as_ref(), Some(&changed), "the other handle's write is seen");
    assert_eq!(a.get_many(std::slice::from_ref(r.id())).await.unwrap(), [changed]);
}

#[tokio::test]
async fn sqlite_a_request_read_again_is_kept_until_another_handle_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    // One connection each: every read goes through the pool.
    let url = format!("sqlite:{}", dir.path().join("kept.db").display());
    let a = SqliteStore::open_url_with(&url, 1).await.unwrap();
    let b = SqliteStore::open_url_with(&url, 1).await.unwrap();
    a_request_read_again_is_kept_until_another_handle_writes_it(&a, &b).await;
}

#[tokio::test]
async fn postgres_a_request_read_again_is_kept_until_another_handle_writes_it() {
    let schemas = Schemas(std::sync::Mutex::new(Vec::new()));
    let schema = format!("ohf_test_{}", uuid::Uuid::new_v4().simple());
    schemas.0.lock().unwrap().push(schema.clone());
    let a = ohf_store_sql::PostgresStore::open(&postgres_url(), Some(&schema), 2).await.unwrap();
    let b = ohf_store_sql::PostgresStore::open(&postgres_url(), Some(&schema), 2).await.unwrap();
    a_request_read_again_is_kept_until_another_handle_writes_it(&a, &b).await;
}
