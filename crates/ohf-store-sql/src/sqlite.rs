use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use ohf_app::{RequestFilter, RequestStore, StoreError};
use ohf_domain::{EventEnvelope, MachineId, Request, RequestId, RequestKind, TemplateId};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

use crate::codec::{decode_event, decode_request, encode_event, encode_request, store_error};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// The request store in one SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_url(&format!("sqlite:{}", path.display())).await
    }

    /// Opens a `sqlite:` URL.
    pub async fn open_url(url: &str) -> Result<Self, StoreError> {
        let options =
            SqliteConnectOptions::from_str(url).map_err(|e| StoreError::Unavailable(format!("{url}: {e}")))?;
        if let Some(dir) = options.get_filename().parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
        }
        Self::connect(options).await
    }

    async fn connect(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await.map_err(store_error)?;
        // Several processes may open a fresh file at once; the loser of that race finds the
        // schema in place on its next try.
        let mut last = None;
        for _ in 0..5 {
            match MIGRATOR.run(&pool).await {
                Ok(()) => return Ok(Self { pool }),
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        Err(StoreError::Unavailable(format!("migrations failed: {}", last.map(|e| e.to_string()).unwrap_or_default())))
    }

    async fn fetch(&self, mut query: QueryBuilder<'_, Sqlite>) -> Result<Vec<Request>, StoreError> {
        let rows = query.build().fetch_all(&self.pool).await.map_err(store_error)?;
        rows.iter().map(|row| decode_request(row.get("body"), row.get("version"))).collect()
    }
}

/// Appends `(v1, v2, …)` with every value bound; `(NULL)` when there are none, which matches nothing.
fn push_list<'a>(q: &mut QueryBuilder<'a, Sqlite>, values: impl IntoIterator<Item = &'a str>) {
    q.push("(");
    let mut sep = q.separated(", ");
    let mut any = false;
    for v in values {
        sep.push_bind(v);
        any = true;
    }
    if !any {
        sep.push("NULL");
    }
    q.push(")");
}

fn template_id(r: &Request) -> Option<String> {
    r.template().map(|t| t.id().to_string())
}

#[async_trait]
impl RequestStore for SqliteStore {
    async fn save(&self, batch: &[&Request]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(store_error)?;
        for r in batch {
            let body = encode_request(r)?;
            let version = r.version() as i64;
            let written = if version == 0 {
                sqlx::query(
                    "INSERT INTO requests (id, kind, state, template_id, created_at, updated_at, needs_work, capacity_held, version, body)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?) ON CONFLICT (id) DO NOTHING",
                )
                .bind(r.id().as_str())
                .bind(r.kind().as_str())
                .bind(r.state().as_str())
                .bind(template_id(r))
                .bind(r.created_at().unix_millis())
                .bind(r.updated_at().unix_millis())
                .bind(r.needs_work())
                .bind(i64::from(r.capacity_held()))
                .bind(&body)
                .execute(&mut *tx)
                .await
            } else {
                sqlx::query(
                    "UPDATE requests SET state = ?, updated_at = ?, needs_work = ?, capacity_held = ?, version = version + 1, body = ?
                     WHERE id = ? AND version = ?",
                )
                .bind(r.state().as_str())
                .bind(r.updated_at().unix_millis())
                .bind(r.needs_work())
                .bind(i64::from(r.capacity_held()))
                .bind(&body)
                .bind(r.id().as_str())
                .bind(version)
                .execute(&mut *tx)
                .await
            }
            .map_err(store_error)?;
            if written.rows_affected() != 1 {
                // Dropping the transaction rolls it back.
                return Err(StoreError::Conflict { request_id: r.id().to_string() });
            }
            if r.kind() == RequestKind::Provision {
                sqlx::query("DELETE FROM request_machines WHERE request_id = ?")
                    .bind(r.id().as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(store_error)?;
                if !r.machines().is_empty() {
                    let mut q =
                        QueryBuilder::<Sqlite>::new("INSERT INTO request_machines (request_id, machine_id, name) ");
                    q.push_values(r.machines(), |mut b, m| {
                        b.push_bind(r.id().as_str()).push_bind(m.id().as_str()).push_bind(m.name());
                    });
                    q.build().execute(&mut *tx).await.map_err(store_error)?;
                }
            }
            for e in r.uncommitted() {
                sqlx::query("INSERT INTO request_events (request_id, seq, at, kind, body) VALUES (?, ?, ?, ?, ?)")
                    .bind(r.id().as_str())
                    .bind(e.seq as i64)
                    .bind(e.at.unix_millis())
                    .bind(e.event.name())
                    .bind(encode_event(&e.event)?)
                    .execute(&mut *tx)
                    .await
                    .map_err(|err| match &err {
                        sqlx::Error::Database(d) if d.is_unique_violation() => {
                            StoreError::Conflict { request_id: r.id().to_string() }
                        }
                        _ => store_error(err),
                    })?;
            }
        }
        tx.commit().await.map_err(store_error)
    }

    async fn get(&self, id: &RequestId) -> Result<Option<Request>, StoreError> {
        let row = sqlx::query("SELECT body, version FROM requests WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        row.map(|row| decode_request(row.get("body"), row.get("version"))).transpose()
    }

    async fn get_many(&self, ids: &[RequestId]) -> Result<Vec<Request>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = QueryBuilder::new("SELECT body, version FROM requests WHERE id IN ");
        push_list(&mut q, ids.iter().map(RequestId::as_str));
        self.fetch(q).await
    }

    async fn list(&self, filter: &RequestFilter) -> Result<Vec<Request>, StoreError> {
        let mut q = QueryBuilder::new("SELECT body, version FROM requests WHERE 1 = 1");
        if !filter.states.is_empty() {
            q.push(" AND state IN ");
            push_list(&mut q, filter.states.iter().map(|s| s.as_str()));
        }
        if let Some(kind) = filter.kind {
            q.push(" AND kind = ").push_bind(kind.as_str());
        }
        if let Some(t) = &filter.template {
            q.push(" AND template_id = ").push_bind(t.as_str());
        }
        q.push(" ORDER BY created_at DESC, id DESC");
        if let Some(limit) = filter.limit {
            q.push(" LIMIT ").push_bind(i64::from(limit));
        }
        self.fetch(q).await
    }

    async fn needing_work(&self, ids: Option<&[RequestId]>) -> Result<Vec<Request>, StoreError> {
        let mut q = QueryBuilder::new("SELECT body, version FROM requests WHERE needs_work = 1");
        if let Some(ids) = ids {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            q.push(" AND id IN ");
            push_list(&mut q, ids.iter().map(RequestId::as_str));
        }
        self.fetch(q).await
    }

    async fn find_holders(&self, ids: &[MachineId], names: &[String]) -> Result<Vec<Request>, StoreError> {
        if ids.is_empty() && names.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = QueryBuilder::new(
            "SELECT body, version FROM requests WHERE id IN (SELECT request_id FROM request_machines WHERE machine_id IN ",
        );
        push_list(&mut q, ids.iter().map(MachineId::as_str));
        q.push(" OR name IN ");
        push_list(&mut q, names.iter().map(String::as_str));
        q.push(")");
        self.fetch(q).await
    }

    async fn capacity_held(&self) -> Result<HashMap<TemplateId, u32>, StoreError> {
        let rows = sqlx::query(
            "SELECT template_id, SUM(capacity_held) AS held FROM requests
             WHERE template_id IS NOT NULL AND capacity_held > 0 GROUP BY template_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.iter()
            .map(|row| {
                let id: String = row.get("template_id");
                let held: i64 = row.get("held");
                let id = TemplateId::new(id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok((id, held as u32))
            })
            .collect()
    }

    async fn history(&self, id: &RequestId) -> Result<Vec<EventEnvelope>, StoreError> {
        let rows = sqlx::query("SELECT seq, at, body FROM request_events WHERE request_id = ? ORDER BY seq")
            .bind(id.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        rows.iter().map(|row| decode_event(id, row.get("seq"), row.get("at"), row.get("body"))).collect()
    }
}
