//! Reads of requests by id on the caller's thread. Every statement through the pool is a trip
//! to its connection's thread and back; a status question (one primary-key lookup) spent most
//! of its time on those trips. A reader is a connection of this process's own, used where the
//! question is asked: it never waits (a busy database, no reader free, any error), it hands the
//! question back and the pool answers it.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use ohf_app::StoreError;
use ohf_domain::RequestId;
use rusqlite::{Connection, OpenFlags};

use crate::codec::{Decoded, Keep, Read};

/// One statement for any number of ids: they come as one JSON array, so one prepared
/// statement serves every call. A join, not `IN (SELECT …)`, which would build a temporary
/// table of the ids on every call; the ids are made unique before. `CROSS JOIN` keeps the ids
/// outside, each a lookup by key: with a condition on the requests added, the planner would
/// otherwise scan a partial index of them and the ids once for each (100 ids: 10 M
/// instructions instead of 1 M).
const BY_IDS: &str =
    "SELECT r.id, r.version, r.body FROM json_each(?1) AS j CROSS JOIN requests AS r ON r.id = j.value";

pub(crate) struct Readers {
    /// The database file; `None` when reads go through the pool alone.
    path: Option<PathBuf>,
    /// At most this many connections at once.
    most: usize,
    /// Reads of fewer ids go through the pool.
    fewest: usize,
    /// [`BY_IDS`] of the requests with work left, as the store names them.
    active: String,
    /// Connections not in use, and how many there are in all.
    idle: Mutex<(Vec<Connection>, usize)>,
}

/// Which of the requests asked for a read answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rows {
    /// Every one stored, kept decoded from its second read on.
    All,
    /// Those with work left, for a poll: it reads them again for its answer once they are
    /// advanced, so each decoded copy is lent to that read.
    Active,
}

impl Readers {
    /// No readers: every read goes through the pool.
    pub(crate) fn none() -> Self {
        Self { path: None, most: 0, fewest: usize::MAX, active: String::new(), idle: Mutex::new((Vec::new(), 0)) }
    }

    /// Up to `most` readers of the file at `path`, opened when first needed, for reads of at
    /// least `fewest` ids; `active` is the condition of the requests with work left.
    pub(crate) fn of(path: PathBuf, most: usize, fewest: usize, active: &str) -> Self {
        Self {
            path: Some(path),
            most,
            fewest: fewest.max(1),
            active: format!("{BY_IDS} WHERE r.{active}"),
            idle: Mutex::new((Vec::new(), 0)),
        }
    }

    /// The stored requests of `ids` (those that exist, or those of them with work left), or
    /// `None` when no reader answered at once and the pool must.
    pub(crate) fn by_ids(&self, ids: &[RequestId], rows: Rows, decoded: &Decoded) -> Option<Vec<Read>> {
        if ids.len() < self.fewest {
            return None;
        }
        let mut seen = std::collections::HashSet::with_capacity(ids.len());
        let unique: Vec<&str> = ids.iter().map(RequestId::as_str).filter(|id| seen.insert(*id)).collect();
        let ids = serde_json::to_string(&unique).ok()?;
        let conn = self.take()?;
        let (sql, keep) = self.statement(rows);
        match read(&conn, sql, &ids, keep, decoded) {
            Ok(found) => {
                self.put(conn);
                Some(found)
            }
            Err(e) => {
                // Busy, or anything else: this connection is let go and the pool answers.
                tracing::debug!(error = %e, "a read on the caller's thread handed to the pool");
                self.lock().1 -= 1;
                None
            }
        }
    }

    /// The statement of a read of `rows`, and what it keeps of what it decodes.
    pub(crate) fn statement(&self, rows: Rows) -> (&str, Keep) {
        match rows {
            Rows::All => (BY_IDS, Keep::Repeated),
            Rows::Active => (self.active.as_str(), Keep::ForNextRead),
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, (Vec<Connection>, usize)> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle reader, or a new one while there are fewer than `most`.
    fn take(&self) -> Option<Connection> {
        let path = self.path.as_ref()?;
        {
            let mut idle = self.lock();
            if let Some(conn) = idle.0.pop() {
                return Some(conn);
            }
            if idle.1 >= self.most {
                return None;
            }
            idle.1 += 1;
        }
        match open(path) {
            Ok(conn) => Some(conn),
            Err(e) => {
                tracing::debug!(error = %e, "no reader on the caller's thread");
                self.lock().1 -= 1;
                None
            }
        }
    }

    fn put(&self, conn: Connection) {
        self.lock().0.push(conn);
    }
}

/// A connection that only reads and never waits for a lock.
fn open(path: &std::path::Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(Duration::ZERO)?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

fn read(conn: &Connection, sql: &str, ids: &str, keep: Keep, decoded: &Decoded) -> rusqlite::Result<Vec<Read>> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut rows = statement.query([ids])?;
    let mut found = Vec::new();
    while let Some(row) = rows.next()? {
        // The key of the table: text, or the statement is not what it seems and the pool answers.
        let id = row
            .get_ref(0)?
            .as_str()
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into()))?;
        let read = row
            .get::<_, i64>(1)
            .map_err(|e| StoreError::Corrupt(format!("request version: {e}")))
            .and_then(|version| decoded.get(id, version, keep, || text(row, 2)));
        found.push(read.map_err(|e| (id.to_owned(), e)));
    }
    Ok(found)
}

/// The text in column `i` of `row`.
fn text<'r>(row: &'r rusqlite::Row<'_>, i: usize) -> Result<&'r str, StoreError> {
    let value = row.get_ref(i).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    value.as_str().map_err(|e| StoreError::Corrupt(format!("request body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The condition of the requests with work left, as the SQLite store names it.
    const ACTIVE: &str = "needs_work = 1";

    fn id(s: &str) -> RequestId {
        RequestId::new(s).unwrap()
    }

    /// A file holding the table readers read (in rollback-journal mode: a writer's exclusive
    /// lock keeps readers out) with one request and one poison row.
    fn file(dir: &tempfile::TempDir) -> (PathBuf, Connection) {
        let path = dir.path().join("r.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE requests (id TEXT PRIMARY KEY NOT NULL, version INTEGER NOT NULL, body TEXT NOT NULL, \
             needs_work INTEGER NOT NULL)",
        )
        .unwrap();
        let request =
            ohf_domain::Request::provision(ohf_domain::testing::provision_spec("req-1", 2), ohf_domain::testing::T0);
        let body = crate::codec::encode_request(&request).unwrap();
        conn.execute("INSERT INTO requests VALUES ('req-1', 3, ?1, 1), ('req-2', 1, '{', 1)", [body]).unwrap();
        (path, conn)
    }

    #[test]
    fn reads_what_is_stored_and_names_what_it_cannot_decode() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = file(&dir);
        let readers = Readers::of(path, 2, 1, ACTIVE);
        let found = readers
            .by_ids(&[id("req-1"), id("req-2"), id("req-3"), id("req-1")], Rows::All, &Decoded::default())
            .unwrap();
        assert_eq!(found.len(), 2, "an id asked twice is read once; an unknown one is absent");
        let request = found.iter().find_map(|r| r.as_ref().ok()).unwrap();
        assert_eq!((request.id().as_str(), request.version()), ("req-1", 3));
        let (bad, e) = found.iter().find_map(|r| r.as_ref().err()).unwrap();
        assert_eq!(bad, "req-2");
        assert!(matches!(e, StoreError::Corrupt(_)), "{e:?}");
        assert_eq!(readers.lock().0.len(), 1, "the reader is kept for the next read");
    }

    #[test]
    fn a_read_that_would_wait_is_handed_to_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let (path, writer) = file(&dir);
        let readers = Readers::of(path, 2, 1, ACTIVE);
        writer.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let asked = std::time::Instant::now();
        assert!(readers.by_ids(&[id("req-1")], Rows::All, &Decoded::default()).is_none());
        // A connection's own busy timeout would wait seconds here.
        assert!(asked.elapsed() < Duration::from_secs(2), "a locked database is not waited for");
        assert_eq!(readers.lock().1, 0, "the reader that failed is let go");
        writer.execute_batch("COMMIT").unwrap();
        assert_eq!(readers.by_ids(&[id("req-1")], Rows::All, &Decoded::default()).unwrap().len(), 1);
    }

    #[test]
    fn at_most_so_many_readers_and_none_without_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = file(&dir);
        let readers = Readers::of(path, 1, 1, ACTIVE);
        let held = readers.take().unwrap();
        assert!(readers.by_ids(&[id("req-1")], Rows::All, &Decoded::default()).is_none(), "no second reader");
        readers.put(held);
        assert!(readers.by_ids(&[id("req-1")], Rows::All, &Decoded::default()).is_some());
        assert!(Readers::none().by_ids(&[id("req-1")], Rows::All, &Decoded::default()).is_none());
        let missing = Readers::of(dir.path().join("no/such/dir/x.db"), 1, 1, ACTIVE);
        assert!(missing.by_ids(&[id("req-1")], Rows::All, &Decoded::default()).is_none(), "a file that cannot open");
        assert_eq!(missing.lock().1, 0);
    }

    #[test]
    fn a_polls_read_answers_the_requests_with_work_left_and_lends_them_to_the_next_read() {
        let dir = tempfile::tempdir().unwrap();
        let (path, writer) = file(&dir);
        let body: String = writer.query_row("SELECT body FROM requests WHERE id = 'req-1'", [], |r| r.get(0)).unwrap();
        writer.execute("INSERT INTO requests VALUES ('req-3', 2, ?1, 0)", [body]).unwrap();
        let readers = Readers::of(path, 1, 1, ACTIVE);
        let decoded = Decoded::default();
        let found = readers.by_ids(&[id("req-1"), id("req-3")], Rows::Active, &decoded).unwrap();
        let ids: Vec<&str> = found.iter().flatten().map(|r| r.id().as_str()).collect();
        assert_eq!(ids, ["req-1"], "a finished request is not a poll's to advance");
        assert_eq!(decoded.kept("req-1"), Some(3), "lent to the read of the answer");
        assert_eq!(decoded.kept("req-3"), None);
        let all = readers.by_ids(&[id("req-1"), id("req-3")], Rows::All, &decoded).unwrap();
        assert_eq!(all.iter().flatten().count(), 2);
        assert_eq!(decoded.kept("req-1"), None, "the lent copy was handed over");
    }

    #[test]
    fn reads_of_fewer_ids_than_the_fewest_go_through_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = file(&dir);
        let readers = Readers::of(path, 1, 2, ACTIVE);
        assert!(readers.by_ids(&[id("req-1")], Rows::All, &Decoded::default()).is_none());
        assert_eq!(readers.lock().1, 0, "no reader is opened for it");
        assert_eq!(readers.by_ids(&[id("req-1"), id("req-2")], Rows::All, &Decoded::default()).unwrap().len(), 2);
    }

    #[test]
    fn a_reader_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = file(&dir);
        let conn = open(&path).unwrap();
        assert!(conn.execute("DELETE FROM requests", []).is_err());
    }
}
