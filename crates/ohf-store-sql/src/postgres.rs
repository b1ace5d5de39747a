use std::str::FromStr;
use std::time::Duration;

use ohf_app::StoreError;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use crate::codec::{migrate, store_error};
use crate::store_impl::sql_request_store;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// The request store in Postgres, shared by several daemons and Host Factory masters.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    decoded: std::sync::Arc<crate::codec::Decoded>,
    /// Saves of concurrent callers, written together.
    group: std::sync::Arc<crate::group::Group>,
}

impl PostgresStore {
    /// Opens a `postgres://` URL and brings the schema up to date. `schema`, when given, is
    /// created if needed and used for every table (one database can hold several installations).
    pub async fn open(url: &str, schema: Option<&str>, max_connections: u32) -> Result<Self, StoreError> {
        let mut options = PgConnectOptions::from_str(url).map_err(|e| StoreError::Unavailable(format!("{e}")))?;
        if let Some(schema) = schema {
            if !schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || schema.is_empty() {
                return Err(StoreError::Unavailable(format!("schema name '{schema}' must be letters, digits and _")));
            }
            // CREATE SCHEMA IF NOT EXISTS is not safe when several processes run it at once;
            // an advisory lock held for the transaction makes them take turns.
            let admin =
                PgPoolOptions::new().max_connections(1).connect_with(options.clone()).await.map_err(store_error)?;
            let mut tx = admin.begin().await.map_err(store_error)?;
            sqlx::query("SELECT pg_advisory_xact_lock(7426846)").execute(&mut *tx).await.map_err(store_error)?;
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
            tx.commit().await.map_err(store_error)?;
            admin.close().await;
            options = options.options([("search_path", schema)]);
        }
        // No ping before each use (a round trip per statement): a connection the server dropped
        // fails its statement once, as a store error the caller retries, and leaves the pool.
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(30))
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(store_error)?;
        migrate(&MIGRATOR, &pool).await?;
        Ok(Self {
            pool,
            decoded: Default::default(),
            group: std::sync::Arc::new(crate::group::Group::new(Self::WRITE_LANES)),
        })
    }

    /// Write transactions under way at once from this store (each takes every save waiting):
    /// more than one, as a commit waits for the server's flush, which serves several at once.
    const WRITE_LANES: usize = 4;

    /// Every read is a trip to the server: the pool answers it.
    fn read_here(&self, _: &[ohf_domain::RequestId], _: crate::readers::Rows) -> Option<Vec<crate::codec::Read>> {
        None
    }

    /// Daemons on several hosts share this store: its clock judges claims.
    async fn shared_clock(&self) -> Result<Option<ohf_domain::Timestamp>, StoreError> {
        self.clock().await.map(Some)
    }

    /// The database's clock, in unix milliseconds.
    pub async fn clock(&self) -> Result<ohf_domain::Timestamp, StoreError> {
        let ms: i64 = sqlx::query_scalar("SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint")
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(ohf_domain::Timestamp::from_unix_millis(ms))
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.pool.begin().await.map_err(store_error)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

sql_request_store!(
    PostgresStore,
    Postgres,
    lock = " FOR UPDATE OF r SKIP LOCKED",
    admit_lock = "SELECT pg_advisory_xact_lock($1)",
    active = "needs_work",
    finished = "NOT needs_work",
    bytewise_key = "(key COLLATE \"C\")"
);
