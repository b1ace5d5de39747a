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
    /// The connection write transactions take: one, so its page cache stays warm (a connection
    /// drops its cache whenever another one has written) and this process's writers queue here
    /// rather than in SQLite's busy wait. The pool itself when there is only one connection.
    writer: SqlitePool,
    decoded: std::sync::Arc<crate::codec::Decoded>,
    /// Saves of concurrent callers, written together.
    group: std::sync::Arc<crate::group::Group>,
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

    /// A store of one connection reads requests by id on the caller's thread from this many
    /// ids on. Its reader costs a read of the schema when it opens (~0.45 M instructions);
    /// through the pool every row is a trip to the connection's thread and back, and SQLite's
    /// page allocations there grow a heap of that thread's a page at a time. Measured on
    /// `getRequestStatus`: at 16 requests the two ways cost the same; at 100, the reader
    /// makes 626 system calls where the pool made 1,344.
    pub const ONE_CALL_READS_HERE_FROM: usize = 16;

    /// Opens a `sqlite:` URL with at most `connections` connections (at least one). Each
    /// connection costs a thread and a read of the schema when it opens: a process whose
    /// statements run one after another does best with one, and reads many requests by id
    /// ([`Self::ONE_CALL_READS_HERE_FROM`] or more) on its own thread, through one reader.
    /// With more than one, every read by id is also made on the caller's thread first, through
    /// up to `connections` readers, and write transactions take one more connection, kept for
    /// them.
    pub async fn open_url_with(url: &str, connections: u32) -> Result<Self, StoreError> {
        let options =
            SqliteConnectOptions::from_str(url).map_err(|e| StoreError::Unavailable(format!("{url}: {e}")))?;
        // A database in memory has no file: none is made, and no other connection opens one.
        let file = (!in_memory(url)).then(|| options.get_filename().to_path_buf());
        if let Some(file) = &file {
            private_file(file).map_err(|e| StoreError::Unavailable(format!("{url}: {e}")))?;
        }
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
        let writer = if file.is_some() && connections > 1 {
            SqlitePoolOptions::new()
                .max_connections(1)
                .test_before_acquire(false)
                .connect_with(options)
                .await
                .map_err(store_error)?
        } else {
            pool.clone()
        };
        let readers = match file {
            Some(file) if connections > 1 => crate::readers::Readers::of(file, connections as usize, 1, Self::ACTIVE),
            Some(file) => crate::readers::Readers::of(file, 1, Self::ONE_CALL_READS_HERE_FROM, Self::ACTIVE),
            None => crate::readers::Readers::none(),
        };
        Ok(Self {
            pool,
            writer,
            decoded: Default::default(),
            group: std::sync::Arc::new(crate::group::Group::new(1)),
            readers: std::sync::Arc::new(readers),
        })
    }

    /// SQLite has one writer, whose transactions group concurrent saves: every write goes
    /// through them.
    async fn write_alone(&self, _: &crate::group::Job) -> Option<Result<(), StoreError>> {
        None
    }

    /// Requests by id, read on the caller's thread; `None` hands the read to the pool.
    fn read_here(&self, ids: &[ohf_domain::RequestId], rows: crate::readers::Rows) -> Option<Vec<crate::codec::Read>> {
        self.readers.by_ids(ids, rows, &self.decoded)
    }

    /// The file lives on this host: its clock is the process's.
    async fn shared_clock(&self) -> Result<Option<ohf_domain::Timestamp>, StoreError> {
        Ok(None)
    }

    /// A write transaction that takes the write lock at once, so a busy database is waited
    /// for (busy timeout) instead of failing when a read would upgrade to a write.
    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(store_error)
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

/// Whether a `sqlite:` URL names a database in memory (`sqlite::memory:`, `mode=memory`), as
/// sqlx reads it.
fn in_memory(url: &str) -> bool {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    database == ":memory:" || params.split('&').any(|p| p == "mode=memory")
}

/// SQLite's SQLITE_BUSY (5) and SQLITE_LOCKED (6).
fn is_locked(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if matches!(d.code().as_deref(), Some("5" | "6")))
}

/// Creates the database file, and the folders it lives in, readable by this user alone (0600,
/// folders 0700) before SQLite opens it: SQLite gives its WAL and shared-memory files the mode
/// of the database. A file that exists keeps its mode (the caller passes no database in memory).
fn private_file(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if path.as_os_str().is_empty() || path.exists() {
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

    /// A database from before claims had a table of their own, holding a live claim of one
    /// worker: after the migration the claim still holds, for it and against any other.
    #[tokio::test]
    async fn claims_made_before_the_claims_table_still_hold() {
        use ohf_app::WorkClaims;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let url = format!("sqlite:{}", path.display());
        let options = SqliteConnectOptions::from_str(&url).unwrap().create_if_missing(true);
        let old = SqlitePool::connect_with(options).await.unwrap();
        let before = sqlx::migrate::Migrator {
            migrations: std::borrow::Cow::Owned(MIGRATOR.iter().filter(|m| m.version < 8).cloned().collect()),
            ..sqlx::migrate::Migrator::DEFAULT
        };
        before.run(&old).await.unwrap();
        let r =
            ohf_domain::Request::provision(ohf_domain::testing::provision_spec("req-1", 1), ohf_domain::testing::T0);
        let now = ohf_domain::testing::T0.unix_millis();
        sqlx::query("INSERT INTO requests (id, kind, state, created_at, updated_at, needs_work, capacity_held, version, body, claimed_by, claim_since, claim_until) VALUES ('req-1', 'provision', 'pending', ?1, ?1, 1, 0, 1, ?2, 'w1', ?1, ?3)")
            .bind(now)
            .bind(crate::codec::encode_request(&r).unwrap())
            .bind(now + 60_000)
            .execute(&old)
            .await
            .unwrap();
        old.close().await;
        let store = SqliteStore::open(&path).await.unwrap();
        let at = ohf_domain::testing::T0.plus_secs(1);
        assert!(store.claim("w2", at, 60_000, 10).await.unwrap().is_empty(), "w1's claim holds against w2");
        assert_eq!(store.claim("w1", at, 60_000, 10).await.unwrap().len(), 1, "and is w1's to renew");
        assert_eq!(store.claim("w2", at.plus_secs(120), 60_000, 10).await.unwrap().len(), 1, "until it lapses");
    }

    #[tokio::test]
    async fn lists_of_unfinished_requests_go_through_an_index_of_active_requests() {
        use sqlx::Row;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).await.unwrap();
        // What `list` asks for the returns still waiting: never a scan of every request stored.
        let plan = sqlx::query(
            "EXPLAIN QUERY PLAN SELECT id, body, version FROM requests WHERE 1 = 1 AND state <> 'rejected' \
             AND kind = 'return' AND needs_work = 1 ORDER BY created_at DESC, id DESC",
        )
        .fetch_all(&store.pool)
        .await
        .unwrap();
        let steps: Vec<String> = plan.iter().map(|row| row.get("detail")).collect();
        assert!(steps.iter().all(|s| !s.starts_with("SCAN requests")), "{steps:?}");
    }

    #[tokio::test]
    async fn reads_by_id_on_the_callers_thread_look_each_id_up_by_key() {
        use sqlx::Row;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).await.unwrap();
        for rows in [crate::readers::Rows::All, crate::readers::Rows::Active] {
            let sql = format!("EXPLAIN QUERY PLAN {}", store.readers.statement(rows).0);
            let plan = sqlx::query(&sql).bind("[\"req-1\"]").fetch_all(&store.pool).await.unwrap();
            let steps: Vec<String> = plan.iter().map(|row| row.get("detail")).collect();
            assert!(steps[0].starts_with("SCAN j"), "the ids drive the read: {steps:?}");
            assert!(steps[1].starts_with("SEARCH r USING INDEX sqlite_autoindex_requests"), "{steps:?}");
        }
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
    async fn a_store_of_one_connection_reads_many_requests_on_the_callers_thread() {
        use crate::readers::Rows;
        let dir = tempfile::tempdir().unwrap();
        let store =
            SqliteStore::open_url_with(&format!("sqlite:{}", dir.path().join("one.db").display()), 1).await.unwrap();
        let id = stored(&store).await;
        assert_eq!(store.get_many(std::slice::from_ref(&id)).await.unwrap().len(), 1);
        assert_eq!(store.readers.lock().1, 0, "one request is read through the pool: no reader opened for it");
        // A Host Factory poll of many requests: the ones unknown here among them.
        let mut many: Vec<ohf_domain::RequestId> = (0..SqliteStore::ONE_CALL_READS_HERE_FROM - 1)
            .map(|n| ohf_domain::RequestId::new(format!("req-unknown-{n}")).unwrap())
            .collect();
        many.push(id.clone());
        let work = store.needing_work(Some(&many)).await.unwrap();
        assert_eq!(work.len(), 1);
        let readers = {
            let held = store.readers.lock();
            (held.0.len(), held.1)
        };
        assert_eq!(readers, (1, 1), "read by the one reader, kept for the next read");
        assert_eq!(store.decoded.kept(id.as_str()), Some(1), "lent to the read of the answer");
        assert_eq!(store.get_many(&many).await.unwrap().len(), 1);
        assert_eq!(store.decoded.kept(id.as_str()), None, "the lent copy was handed over");
        assert!(store.readers.by_ids(&many, Rows::All, &store.decoded).is_some());
    }

    #[tokio::test]
    async fn a_store_in_memory_reads_through_its_pool() {
        let store = SqliteStore::open_url_with("sqlite::memory:", 4).await.unwrap();
        let id = stored(&store).await;
        assert_eq!(store.get_many(std::slice::from_ref(&id)).await.unwrap().len(), 1);
        assert!(store.readers.by_ids(std::slice::from_ref(&id), crate::readers::Rows::All, &store.decoded).is_none());
        let made =
            std::fs::read_dir(".").unwrap().flatten().any(|e| e.file_name().to_string_lossy().contains("in-memory"));
        assert!(!made, "no file is made for a database in memory");
    }

    #[test]
    fn urls_of_databases_in_memory_are_told_from_files() {
        for url in
            ["sqlite::memory:", "sqlite://:memory:", "sqlite://?mode=memory", "sqlite:x.db?mode=memory&cache=shared"]
        {
            assert!(in_memory(url), "{url}");
        }
        for url in ["sqlite:x.db", "sqlite:///tmp/x.db", "sqlite:memory.db", "sqlite:x.db?mode=rwc"] {
            assert!(!in_memory(url), "{url}");
        }
    }
}
