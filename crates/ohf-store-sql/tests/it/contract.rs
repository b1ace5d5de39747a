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
