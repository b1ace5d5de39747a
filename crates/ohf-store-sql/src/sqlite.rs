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
    readers: std::sync::Arc<crate::readers::Readers>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and brings its schema up to date.
    pub async fn open(path: &std::path::Path) -> Result<Self, StoreError> {
        Self::open_url(&format!("sqlite:{}", path.display())).await
    }

    /// Opens a `sqlite:` URL with [`Self::CONNECTIONS`] connections.
    pub async fn open_url(url: &str) -> Result<Self, StoreError> {
        Self::open_url_with(url, Self::CONNECTIONS).await
    }

    /// The connections of a store opened by [`Self::open_url`]: enough for a daemon's readers
    /// beside its one writer.
    pub const CONNECTIONS: u32 = 4;

    /// Opens a `sqlite:` URL with at most `connections` connections (at least one). Each
    /// connection costs a thread and a read of the schema when it opens: a process whose
    /// statements run one after another does best with one. With more than one, requests are
    /// also read by id on the caller's thread, through up to `connections` readers of their own.
    pub async fn open_url_with(url: &str, connections: u32) -> Result<Self, StoreError> {
        let options =
            SqliteConnectOptions::from_str(url).map_err(|e| StoreError::Unavailable(format!("{url}: {e}")))?;
        private_file(options.get_filename()).map_err(|e| StoreError::Unavailable(format!("{url}: {e}")))?;
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        // Processes opening a new file at once race to switch it to WAL; SQLite answers the
        // loser "database is locked" at once (no busy wait for that switch), so it tries again.
        let mut tries = 0;
        let pool = loop {
            // A file's connections do not go stale: no ping (a trip to the connection's thread)
            // before each use.
            let pool = SqlitePoolOptions::new().max_connections(connections.max(1)).test_before_acquire(false);
            match pool.connect_with(options.clone()).await {
                Ok(pool) => break pool,
                Err(e) if is_locked(&e) && tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(store_error(e)),
            }
        };
        migrate(&MIGRATOR, &pool).await?;
        // A database in memory has no file another connection could open.
        let file = options.get_filename();
        let readers = if connections > 1 && file.is_file() {
            crate::readers::Readers::of(file.to_path_buf(), connections as usize)
        } else {
            crate::readers::Readers::none()
        };
        Ok(Self { pool, decoded: Default::default(), readers: std::sync::Arc::new(readers) })
    }

    /// Requests by id, read on the caller's thread; `None` hands the read to the pool.
    fn read_here(&self, ids: &[ohf_domain::RequestId]) -> Option<Vec<crate::readers::Read>> {
        self.readers.by_ids(ids, &self.decoded)
    }

    /// The file lives on this host: its clock is the process's.
    async fn shared_clock(&self) -> Result<Option<ohf_domain::Timestamp>, StoreError> {
        Ok(None)
    }

    /// A write transaction that takes the write lock at once, so a busy database is waited
    /// for (busy timeout) instead of failing when a read would upgrade to a write.
    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(store_error)
    }
}

// SQLite uses a partial index only for a query naming its condition as written (`= 1`).
sql_request_store!(
    SqliteStore,
    Sqlite,
    lock = "",
    admit_lock = "",
    active = "needs_work = 1",
    finished = "needs_work = 0",
    bytewise_key = "key"
);

/// SQLite's SQLITE_BUSY (5) and SQLITE_LOCKED (6).
fn is_locked(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if matches!(d.code().as_deref(), Some("5" | "6")))
}

/// Creates the database file, and the folders it lives in, readable by this user alone (0600,
/// folders 0700) before SQLite opens it: SQLite gives its WAL and shared-memory files the mode
/// of the database. A file that exists keeps its mode; `:memory:` is left alone.
fn private_file(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if path.as_os_str().is_empty() || path.as_os_str() == ":memory:" || path.exists() {
        return Ok(());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(path).map(|_| ())
}

#[cfg(test)]
mod tests {
    use ohf_app::Requests;

    use super::*;

    async fn stored(store: &SqliteStore) -> ohf_domain::RequestId {
        let r =
            ohf_domain::Request::provision(ohf_domain::testing::provision_spec("req-1", 1), ohf_domain::testing::T0);
        store.save(&[&r], None).await.unwrap();
        r.id().clone()
    }

    #[tokio::test]
    async fn a_daemons_store_reads_by_id_on_the_callers_thread() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).await.unwrap();
        let id = stored(&store).await;
        assert_eq!(store.get_many(std::slice::from_ref(&id)).await.unwrap().len(), 1);
        assert_eq!(store.get(&id).await.unwrap().unwrap().version(), 1);
        assert_eq!(store.readers.lock().1, 1, "one reader answered both");
    }

    #[tokio::test]
    async fn a_store_of_one_connection_or_in_memory_reads_through_its_pool() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("one.db").display());
        for store in [
            SqliteStore::open_url_with(&url, 1).await.unwrap(),
            SqliteStore::open_url_with("sqlite::memory:", 4).await.unwrap(),
        ] {
            let id = stored(&store).await;
            assert_eq!(store.get_many(std::slice::from_ref(&id)).await.unwrap().len(), 1);
            assert!(store.readers.by_ids(std::slice::from_ref(&id), &store.decoded).is_none());
        }
    }
}
