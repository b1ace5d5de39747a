use std::str::FromStr;
use std::time::Duration;

use ohf_app::StoreError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use crate::codec::{migrate, store_error};
use crate::store_impl::sql_request_store;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// The request store in one SQLite file, safe for several processes at once.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    decoded: std::sync::Arc<crate::codec::Decoded>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and brings its schema up to date.
    pub async fn open(path: &std::path::Path) -> Result<Self, StoreError> {
        Self::open_url(&format!("sqlite:{}", path.display())).await
    }

    /// Opens a `sqlite:` URL.
    pub async fn open_url(url: &str) -> Result<Self, StoreError> {
        let options =
            SqliteConnectOptions::from_str(url).map_err(|e| StoreError::Unavailable(format!("{url}: {e}")))?;
        if let Some(dir) = options.get_filename().parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
        }
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await.map_err(store_error)?;
        migrate(&MIGRATOR, &pool).await?;
        Ok(Self { pool, decoded: Default::default() })
    }

    /// A write transaction that takes the write lock at once, so a busy database is waited
    /// for (busy timeout) instead of failing when a read would upgrade to a write.
    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(store_error)
    }
}

sql_request_store!(SqliteStore, Sqlite, lock = "");
