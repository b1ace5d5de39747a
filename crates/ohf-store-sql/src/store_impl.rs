//! The `RequestStore` implementation shared by the SQL stores. Every query is built with
//! `QueryBuilder`, which writes each database's placeholders, so one text serves SQLite and
//! Postgres; `begin` opens a write transaction and `lock` is appended to row selections
//! that claim work (`FOR UPDATE SKIP LOCKED` on Postgres).

/// Appends `(v1, v2, …)` with every value bound; `(NULL)` when there are none, which matches nothing.
macro_rules! push_list {
    ($q:expr, $values:expr) => {{
        $q.push("(");
        let mut sep = $q.separated(", ");
        let mut any = false;
        for v in $values {
            sep.push_bind(v);
            any = true;
        }
        if !any {
            sep.push("NULL");
        }
        $q.push(")");
    }};
}

/// Extends to `until` the claim-history span of each of `ids` that `worker` holds live at `now`.
macro_rules! extend_live_spans {
    ($db:ty, $tx:expr, $worker:expr, $ids:expr, $now:expr, $until:expr) => {{
        let mut q = sqlx::QueryBuilder::<$db>::new("UPDATE claim_history SET held_until = ");
        q.push_bind($until).push(" WHERE worker = ").push_bind($worker).push(" AND request_id IN ");
        $crate::store_impl::push_list!(q, $ids);
        q.push(" AND held_since = (SELECT c.claim_since FROM request_claims c WHERE c.request_id = claim_history.request_id AND c.claimed_by = ")
            .push_bind($worker)
            .push(" AND c.claim_until >= ")
            .push_bind($now)
            .push(")");
        q.build().execute(&mut *$tx).await.map_err($crate::codec::store_error)?;
    }};
}

macro_rules! sql_request_store {
    (
        $store:ty,
        $db:ty,
        lock = $lock:literal,
        admit_lock = $admit_lock:literal,
        active = $active:literal,
        finished = $finished:literal,
        bytewise_key = $bytewise_key:literal
    ) => {
        impl $store {
            /// The condition of the requests with work left, as this engine's partial index names it.
            #[allow(dead_code)]
            pub(crate) const ACTIVE: &'static str = $active;

            /// The rows of a statement without parameters (the grouped counts).
            async fn rows(&self, sql: &'static str) -> Result<Vec<<$db as sqlx::Database>::Row>, ohf_app::StoreError> {
                sqlx::QueryBuilder::<$db>::new(sql)
                    .build()
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::codec::store_error)
            }

            /// The writes of `jobs`, inside `tx`: one statement for each kind of row of all
            /// of them (in chunks), whatever their number.
            async fn write(tx: &mut sqlx::Transaction<'static, $db>, jobs: &[&$crate::group::Job]) -> Result<(), ohf_app::StoreError> {
                use $crate::codec::store_error;
                use $crate::store_impl::{CHUNK, rows_of};
                use ohf_app::StoreError;
                use sqlx::{QueryBuilder, Row as _};
                let conflict = |id: &str| StoreError::Conflict { request_id: id.to_owned() };
                for (key, value) in jobs.iter().filter_map(|j| j.also.as_ref()) {
                    let mut q = QueryBuilder::<$db>::new("INSERT INTO shared_state (key, value, version) VALUES (");
                    q.separated(", ").push_bind(key).push_bind(value).push_bind(1_i64);
                    q.push(") ON CONFLICT (key) DO NOTHING");
                    if q.build().execute(&mut **tx).await.map_err(store_error)?.rows_affected() != 1 {
                        // Dropping the transaction rolls it back.
                        return Err(conflict(key));
                    }
                }
                let rows: Vec<&$crate::group::Row> = jobs.iter().flat_map(|j| j.rows.iter()).collect();
                let (new, stored): (Vec<_>, Vec<_>) = rows.iter().copied().partition(|r| r.new);
                for chunk in new.chunks(rows_of(12)) {
                    let mut q = QueryBuilder::<$db>::new($crate::store_impl::NEW_ROWS);
                    q.push_values(chunk, |mut b, r| {
                        $crate::store_impl::push_new_row!(b, r);
                    });
                    q.push(" ON CONFLICT (id) DO NOTHING RETURNING id");
                    let written = q.build().fetch_all(&mut **tx).await.map_err(store_error)?;
                    $crate::store_impl::all_written(chunk, &written).map_err(conflict)?;
                }
                // Each stored request only at the version it was read at.
                for chunk in stored.chunks(rows_of(8)) {
                    let mut q = QueryBuilder::<$db>::new("WITH ");
                    q.push($crate::store_impl::STORED_ROWS);
                    q.push_values(chunk, |mut b, r| {
                        $crate::store_impl::push_stored_row!(b, r);
                    });
                    q.push(") ").push($crate::store_impl::UPDATE_STORED);
                    let written = q.build().fetch_all(&mut **tx).await.map_err(store_error)?;
                    $crate::store_impl::all_written(chunk, &written).map_err(conflict)?;
                }
                // Machines never leave a request: index the ones these events brought or renamed.
                let machines: Vec<(&str, &str, Option<&str>)> = rows
                    .iter()
                    .flat_map(|r| r.machines.iter().map(|(m, name)| (r.id.as_str(), m.as_str(), name.as_deref())))
                    .collect();
                for chunk in machines.chunks(rows_of(3)) {
                    let mut q = QueryBuilder::<$db>::new("INSERT INTO request_machines (request_id, machine_id, name) ");
                    q.push_values(chunk, |mut b, (r, m, name)| {
                        b.push_bind(*r).push_bind(*m).push_bind(*name);
                    });
                    q.push(" ON CONFLICT (request_id, machine_id) DO UPDATE SET name = excluded.name");
                    q.build().execute(&mut **tx).await.map_err(store_error)?;
                }
                let events: Vec<(&str, &$crate::group::Event)> =
                    rows.iter().flat_map(|r| r.events.iter().map(|e| (r.id.as_str(), e))).collect();
                for chunk in events.chunks(rows_of(6)) {
                    let mut q = QueryBuilder::<$db>::new("INSERT INTO request_events (request_id, seq, at, kind, body, actor) ");
                    q.push_values(chunk, |mut b, (r, e)| {
                        b.push_bind(*r).push_bind(e.seq).push_bind(e.at).push_bind(e.kind).push_bind(&e.body).push_bind(&e.actor);
                    });
                    q.build().execute(&mut **tx).await.map_err(|err| match &err {
                        // An event already stored: its request was written by someone else.
                        sqlx::Error::Database(d) if d.is_unique_violation() => conflict(chunk[0].0),
                        _ => store_error(err),
                    })?;
                }
                // Checked after the writes, which hold the requests' rows: a claim another worker
                // made before that is seen (Postgres: a new statement's view).
                for job in jobs {
                    let Some(f) = &job.fence else { continue };
                    let fenced: Vec<&str> = job.rows.iter().filter(|r| !r.new).map(|r| r.id.as_str()).collect();
                    for chunk in fenced.chunks(CHUNK) {
                        let mut q = QueryBuilder::<$db>::new("SELECT request_id FROM request_claims WHERE request_id IN ");
                        $crate::store_impl::push_list!(q, chunk.iter().copied());
                        q.push(" AND claimed_by = ").push_bind(f.worker.as_str());
                        q.push(" AND claim_until >= ").push_bind(f.now.unix_millis());
                        let held: std::collections::HashSet<String> =
                            q.build().fetch_all(&mut **tx).await.map_err(store_error)?.iter().map(|row| row.get("request_id")).collect();
                        if let Some(lost) = chunk.iter().find(|id| !held.contains(**id)) {
                            // Dropping the transaction rolls it back.
                            return Err(conflict(lost));
                        }
                    }
                }
                // Requests with nothing left to do: their claims go once they are written.
                let done: Vec<&str> = stored.iter().filter(|r| !r.needs_work).map(|r| r.id.as_str()).collect();
                for chunk in done.chunks(CHUNK) {
                    let mut q = QueryBuilder::<$db>::new("DELETE FROM request_claims WHERE request_id IN ");
                    $crate::store_impl::push_list!(q, chunk.iter().copied());
                    q.build().execute(&mut **tx).await.map_err(store_error)?;
                }
                Ok(())
            }

            /// `jobs` in one transaction.
            async fn write_all(&self, jobs: &[&$crate::group::Job]) -> Result<(), ohf_app::StoreError> {
                let mut tx = self.begin().await?;
                Self::write(&mut tx, jobs).await?;
                tx.commit().await.map_err($crate::codec::store_error)
            }

            /// Writes `job` with whatever other callers are writing at the moment (group commit).
            async fn commit_job(&self, job: $crate::group::Job) -> Result<(), ohf_app::StoreError> {
                use $crate::group::Turn;
                if let Some(answer) = self.write_alone(&job).await {
                    return answer;
                }
                let mut ticket = self.group.enqueue(job);
                loop {
                    let mut batch = match self.group.turn(&mut ticket).await {
                        Turn::Done(answer) => return answer,
                        Turn::Lead(batch) => batch,
                    };
                    match self.write_all(&batch.jobs()).await {
                        Ok(()) => (0..batch.len()).for_each(|i| batch.answer(i, Ok(()))),
                        Err(e) if batch.len() == 1 => batch.answer(0, Err(e)),
                        // One job's failure is no other's: each is written alone.
                        Err(_) => {
                            for i in 0..batch.len() {
                                let Some(job) = batch.job(i) else { continue };
                                let answer = self.write_all(&[job]).await;
                                batch.answer(i, answer);
                            }
                        }
                    }
                }
            }

            /// The requests a query selects. A row this version cannot decode (a poison row) is
            /// logged and passed over: it never stops the others.
            async fn fetch(&self, mut query: sqlx::QueryBuilder<'_, $db>, keep: $crate::codec::Keep) -> Result<Vec<ohf_domain::Request>, ohf_app::StoreError> {
                let rows = query.build().fetch_all(&self.pool).await.map_err($crate::codec::store_error)?;
                Ok(rows.iter().map(|row| self.decode(row, keep)).filter_map($crate::codec::readable).collect())
            }

            /// The request of a row `SELECT id, body, version` selected, or its id and why not.
            fn decode(&self, row: &<$db as sqlx::Database>::Row, keep: $crate::codec::Keep) -> $crate::codec::Read {
                use sqlx::Row;
                let id: &str = row.try_get("id").map_err(|e| (String::new(), $crate::codec::store_error(e)))?;
                row.try_get("version")
                    .map_err($crate::codec::store_error)
                    .and_then(|version| {
                        self.decoded.get(id, version, keep, || row.try_get("body").map_err($crate::codec::store_error))
                    })
                    .map_err(|e| (id.to_owned(), e))
            }

            /// Requests by id through the pool. A row at the version this process keeps decoded
            /// comes without its body: the server neither reads nor sends it.
            async fn by_ids(&self, ids: &[ohf_domain::RequestId]) -> Result<Vec<$crate::codec::Read>, ohf_app::StoreError> {
                use $crate::codec::store_error;
                use sqlx::Row;
                let mut seen = std::collections::HashSet::new();
                let ids: Vec<&str> = ids.iter().map(ohf_domain::RequestId::as_str).filter(|id| seen.insert(*id)).collect();
                let mut out = Vec::with_capacity(ids.len());
                // Left out, and dropped from the cache since: read again whole.
                let mut again: Vec<String> = Vec::new();
                for chunk in ids.chunks($crate::store_impl::rows_of(2)) {
                    let mut q = sqlx::QueryBuilder::<$db>::new("WITH k (k_id, k_version) AS (");
                    q.push_values(chunk, |mut b, id| {
                        b.push_bind(*id).push_bind(self.decoded.kept(id).unwrap_or(-1));
                    });
                    q.push(") SELECT id, version, CASE WHEN version = k_version THEN NULL ELSE body END AS body FROM k JOIN requests ON id = k_id");
                    for row in q.build().fetch_all(&self.pool).await.map_err(store_error)? {
                        let left_out = match (row.try_get::<Option<&str>, _>("body"), row.try_get::<&str, _>("id"), row.try_get::<i64, _>("version")) {
                            (Ok(None), Ok(id), Ok(version)) => Some((id, version)),
                            _ => None,
                        };
                        match left_out {
                            Some((id, version)) => match self.decoded.kept_at(id, version) {
                                Some(r) => out.push(Ok(r)),
                                None => again.push(id.to_owned()),
                            },
                            None => out.push(self.decode(&row, $crate::codec::Keep::Repeated)),
                        }
                    }
                }
                for chunk in again.chunks($crate::store_impl::CHUNK) {
                    let mut q = sqlx::QueryBuilder::<$db>::new("SELECT id, body, version FROM requests WHERE id IN ");
                    $crate::store_impl::push_list!(q, chunk.iter().map(String::as_str));
                    let rows = q.build().fetch_all(&self.pool).await.map_err(store_error)?;
                    out.extend(rows.iter().map(|row| self.decode(row, $crate::codec::Keep::Repeated)));
                }
                Ok(out)
            }

            /// `fetch` for a list of ids, in chunks that stay far inside every database's limit
            /// on bound values; `select` writes the query for one chunk.
            async fn fetch_chunked<'a, T, F>(&self, items: &'a [T], keep: $crate::codec::Keep, select: F) -> Result<Vec<ohf_domain::Request>, ohf_app::StoreError>
            where
                F: Fn(&'a [T]) -> sqlx::QueryBuilder<'a, $db>,
            {
                let mut seen = std::collections::HashSet::new();
                let mut out = Vec::new();
                for chunk in items.chunks($crate::store_impl::CHUNK) {
                    for r in self.fetch(select(chunk), keep).await? {
                        if seen.insert(r.id().clone()) {
                            out.push(r);
                        }
                    }
                }
                Ok(out)
            }
        }

        #[async_trait::async_trait]
        impl ohf_app::Requests for $store {
            async fn save(
                &self,
                batch: &[&ohf_domain::Request],
                fence: Option<&ohf_app::Fence>,
            ) -> Result<(), ohf_app::StoreError> {
                if batch.is_empty() {
                    return Ok(());
                }
                self.commit_job($crate::group::Job::of(batch, fence, None)?).await
            }

            async fn create_within(
                &self,
                request: &ohf_domain::Request,
                limits: &ohf_app::Limits,
                also: Option<(&str, &str)>,
            ) -> Result<Option<ohf_app::Usage>, ohf_app::StoreError> {
                use $crate::codec::store_error;
                use sqlx::Row;
                let job = $crate::group::Job::of(&[request], None, also)?;
                if !limits.any() {
                    return self.commit_job(job).await.map(|()| None);
                }
                let mut tx = self.begin().await?;
                // Admissions under a limit go one at a time, so each sees what the one
                // before it inserted (SQLite: the write lock its BEGIN IMMEDIATE took).
                if !$admit_lock.is_empty() {
                    let key = $crate::store_impl::admission_key(limits);
                    sqlx::query($admit_lock).bind(key).execute(&mut *tx).await.map_err(store_error)?;
                }
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "SELECT CAST(COALESCE(SUM(capacity_held), 0) AS BIGINT) AS total, \
                     CAST(COALESCE(SUM(CASE WHEN template_id = ",
                );
                q.push_bind(limits.template.as_ref().map(|t| t.to_string()).unwrap_or_default());
                q.push(" THEN capacity_held ELSE 0 END), 0) AS BIGINT) AS mine FROM requests WHERE capacity_held > 0");
                let row = q.build().fetch_one(&mut *tx).await.map_err(store_error)?;
                let held = |column: &str| u32::try_from(row.get::<i64, _>(column).max(0)).unwrap_or(u32::MAX);
                let usage = ohf_app::Usage { template_held: held("mine"), total_held: held("total") };
                if !limits.fit(usage, request.capacity_held()) {
                    // Dropping the transaction rolls it back.
                    return Ok(Some(usage));
                }
                Self::write(&mut tx, &[&job]).await?;
                tx.commit().await.map_err(store_error)?;
                Ok(None)
            }


            async fn get(&self, id: &ohf_domain::RequestId) -> Result<Option<ohf_domain::Request>, ohf_app::StoreError> {
                // The one request asked for: unreadable is an answer (Corrupt), not a skip.
                if let Some(mut found) = self.read_here(std::slice::from_ref(id), $crate::readers::Rows::All) {
                    return found.pop().transpose().map_err(|(_, e)| e);
                }
                self.by_ids(std::slice::from_ref(id)).await?.pop().transpose().map_err(|(_, e)| e)
            }

            async fn get_many(&self, ids: &[ohf_domain::RequestId]) -> Result<Vec<ohf_domain::Request>, ohf_app::StoreError> {
                if let Some(found) = self.read_here(ids, $crate::readers::Rows::All) {
                    return Ok(found.into_iter().filter_map($crate::codec::readable).collect());
                }
                Ok(self.by_ids(ids).await?.into_iter().filter_map($crate::codec::readable).collect())
            }

            async fn list(&self, filter: &ohf_app::RequestFilter) -> Result<Vec<ohf_domain::Request>, ohf_app::StoreError> {
                let mut q = sqlx::QueryBuilder::<$db>::new("SELECT id, body, version FROM requests WHERE 1 = 1");
                if filter.states.is_empty() {
                    q.push(" AND state <> ").push_bind(ohf_domain::RequestState::Rejected.as_str());
                } else {
                    q.push(" AND state IN ");
                    $crate::store_impl::push_list!(q, filter.states.iter().map(|s| s.as_str()));
                }
                if let Some(kind) = filter.kind {
                    q.push(" AND kind = ").push_bind(kind.as_str());
                }
                if let Some(t) = &filter.template {
                    q.push(" AND template_id = ").push_bind(t.as_str());
                }
                if let Some(since) = filter.created_since {
                    q.push(" AND created_at >= ").push_bind(since.unix_millis());
                }
                if filter.unfinished {
                    // Through the partial index of requests with work left.
                    q.push(concat!(" AND ", $active));
                }
                if filter.holding {
                    // Through the partial index of requests holding machines: the cost follows
                    // what is held now, not the history.
                    q.push(" AND capacity_held > 0");
                }
                q.push(" ORDER BY created_at DESC, id DESC");
                if let Some(limit) = filter.limit {
                    q.push(" LIMIT ").push_bind(i64::from(limit));
                }
                self.fetch(q, $crate::codec::Keep::Repeated).await
            }

            async fn needing_work(
                &self,
                ids: Option<&[ohf_domain::RequestId]>,
            ) -> Result<Vec<ohf_domain::Request>, ohf_app::StoreError> {
                let Some(ids) = ids else {
                    return self
                        .fetch(sqlx::QueryBuilder::<$db>::new(concat!("SELECT id, body, version FROM requests WHERE ", $active)), $crate::codec::Keep::Repeated)
                        .await;
                };
                // Only a poll asks about some requests: it reads them again for its answer
                // once they are advanced, and the unchanged ones need not be decoded twice.
                if let Some(found) = self.read_here(ids, $crate::readers::Rows::Active) {
                    return Ok(found.into_iter().filter_map($crate::codec::readable).collect());
                }
                self.fetch_chunked(ids, $crate::codec::Keep::ForNextRead, |chunk| {
                    let mut q = sqlx::QueryBuilder::<$db>::new(concat!(
                        "SELECT id, body, version FROM requests WHERE ",
                        $active,
                        " AND id IN "
                    ));
                    $crate::store_impl::push_list!(q, chunk.iter().map(ohf_domain::RequestId::as_str));
                    q
                })
                .await
            }

            async fn find_holders(
                &self,
                ids: &[ohf_domain::MachineId],
                names: &[String],
            ) -> Result<Vec<ohf_domain::Request>, ohf_app::StoreError> {
                let by_id = self.fetch_chunked(ids, $crate::codec::Keep::Repeated, |chunk| {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT id, body, version FROM requests WHERE id IN (SELECT request_id FROM request_machines WHERE machine_id IN ",
                    );
                    $crate::store_impl::push_list!(q, chunk.iter().map(ohf_domain::MachineId::as_str));
                    q.push(")");
                    q
                });
                let mut found = by_id.await?;
                let by_name = self.fetch_chunked(names, $crate::codec::Keep::Repeated, |chunk| {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT id, body, version FROM requests WHERE id IN (SELECT request_id FROM request_machines WHERE name IN ",
                    );
                    $crate::store_impl::push_list!(q, chunk.iter().map(String::as_str));
                    q.push(")");
                    q
                });
                for r in by_name.await? {
                    if !found.iter().any(|f| f.id() == r.id()) {
                        found.push(r);
                    }
                }
                Ok(found)
            }

            async fn count_by_state(
                &self,
            ) -> Result<Vec<(ohf_domain::RequestKind, ohf_domain::RequestState, u64)>, ohf_app::StoreError> {
                use sqlx::Row;
                let rows = self
                    .rows("SELECT kind, state, CAST(COUNT(*) AS BIGINT) AS n FROM requests GROUP BY kind, state")
                    .await?;
                rows.iter()
                    .map(|row| {
                        let (kind, state): (String, String) = (row.get("kind"), row.get("state"));
                        let n: i64 = row.get("n");
                        let kind = $crate::codec::kind_of(&kind)?;
                        let state = ohf_domain::RequestState::parse(&state)
                            .ok_or_else(|| ohf_app::StoreError::Corrupt(format!("unknown request state {state:?}")))?;
                        Ok((kind, state, u64::try_from(n).unwrap_or(0)))
                    })
                    .collect()
            }

            async fn work_by_provider(
                &self,
            ) -> Result<std::collections::HashMap<ohf_domain::ProviderName, u64>, ohf_app::StoreError> {
                use sqlx::Row;
                let rows = self
                    .rows(concat!(
                        "SELECT provider, CAST(COUNT(*) AS BIGINT) AS n FROM requests WHERE ",
                        $active,
                        " AND provider IS NOT NULL GROUP BY provider"
                    ))
                    .await?;
                rows.iter()
                    .map(|row| {
                        let (name, n): (String, i64) = (row.get("provider"), row.get("n"));
                        let name = ohf_domain::ProviderName::new(name)
                            .map_err(|e| ohf_app::StoreError::Corrupt(format!("a request's provider: {e}")))?;
                        Ok((name, u64::try_from(n).unwrap_or(0)))
                    })
                    .collect()
            }

            async fn capacity_held(
                &self,
            ) -> Result<std::collections::HashMap<ohf_domain::TemplateId, u32>, ohf_app::StoreError> {
                use sqlx::Row;
                let rows = self
                    .rows(
                        "SELECT template_id, CAST(SUM(capacity_held) AS BIGINT) AS held FROM requests
                         WHERE template_id IS NOT NULL AND capacity_held > 0 GROUP BY template_id",
                    )
                    .await?;
                rows.iter()
                    .map(|row| {
                        let id: String = row.get("template_id");
                        let held: i64 = row.get("held");
                        let id = ohf_domain::TemplateId::new(id).map_err(|e| ohf_app::StoreError::Corrupt(e.to_string()))?;
                        Ok((id, held as u32))
                    })
                    .collect()
            }

            async fn delete_finished(&self, before: ohf_domain::Timestamp, limit: u32) -> Result<u64, ohf_app::StoreError> {
                use $crate::codec::store_error;
                use sqlx::{QueryBuilder, Row};
                let mut tx = self.begin().await?;
                let mut q = QueryBuilder::<$db>::new(
                    concat!("SELECT id FROM requests WHERE ", $finished, " AND capacity_held = 0 AND updated_at < "),
                );
                q.push_bind(before.unix_millis()).push(" ORDER BY updated_at LIMIT ").push_bind(i64::from(limit));
                let ids: Vec<String> =
                    q.build().fetch_all(&mut *tx).await.map_err(store_error)?.iter().map(|r| r.get("id")).collect();
                if ids.is_empty() {
                    tx.commit().await.map_err(store_error)?;
                    return Ok(0);
                }
                for table in ["request_events", "request_machines", "claim_history"] {
                    let mut q = QueryBuilder::<$db>::new(format!("DELETE FROM {table} WHERE request_id IN "));
                    $crate::store_impl::push_list!(q, ids.iter().map(String::as_str));
                    q.build().execute(&mut *tx).await.map_err(store_error)?;
                }
                let mut q = QueryBuilder::<$db>::new(concat!(
                    "DELETE FROM requests WHERE ",
                    $finished,
                    " AND capacity_held = 0 AND id IN "
                ));
                $crate::store_impl::push_list!(q, ids.iter().map(String::as_str));
                let done = q.build().execute(&mut *tx).await.map_err(store_error)?;
                tx.commit().await.map_err(store_error)?;
                Ok(done.rows_affected())
            }

            async fn history(&self, id: &ohf_domain::RequestId) -> Result<Vec<ohf_domain::EventEnvelope>, ohf_app::StoreError> {
                use sqlx::Row;
                let mut q = sqlx::QueryBuilder::<$db>::new("SELECT seq, at, body, actor FROM request_events WHERE request_id = ");
                q.push_bind(id.as_str()).push(" ORDER BY seq");
                let rows = q.build().fetch_all(&self.pool).await.map_err($crate::codec::store_error)?;
                rows.iter()
                    .map(|row| {
                        let e = $crate::codec::decode_event(id, row.get("seq"), row.get("at"), row.get("body"))?;
                        let by: Option<String> = row.try_get("actor").map_err($crate::codec::store_error)?;
                        Ok(ohf_domain::EventEnvelope { by, ..e })
                    })
                    .collect()
            }
        }

        #[async_trait::async_trait]
        impl ohf_app::WorkClaims for $store {
            async fn claim(
                &self,
                worker: &str,
                now: ohf_domain::Timestamp,
                ttl_ms: i64,
                limit: u32,
            ) -> Result<Vec<ohf_domain::Request>, ohf_app::StoreError> {
                use $crate::codec::store_error;
                use sqlx::{QueryBuilder, Row};
                let now = now.unix_millis();
                let until = now + ttl_ms;
                let mut tx = self.begin().await?;
                let mut q = QueryBuilder::<$db>::new(concat!(
                    "SELECT r.id FROM requests r LEFT JOIN request_claims c ON c.request_id = r.id WHERE r.",
                    $active,
                    " AND (c.request_id IS NULL OR c.claimed_by = "
                ));
                q.push_bind(worker).push(" OR c.claim_until < ").push_bind(now);
                // Within a priority, what was claimed longest ago (never, or released: first),
                // then the least recently changed: a worker with more work than one batch
                // takes turns through all of it, not the same batch again.
                q.push(") ORDER BY r.priority_rank, COALESCE(c.claim_until, 0), r.updated_at LIMIT ").push_bind(i64::from(limit)).push($lock);
                let mut ids: Vec<String> = q
                    .build()
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(store_error)?
                    .iter()
                    .map(|row| row.get::<String, _>("id"))
                    .collect();
                // Another worker may have claimed some of these between the selection's view
                // and its locks (Postgres: it locked the request's row, and wrote only its
                // claim); a statement after the locks sees every claim made before them.
                if !ids.is_empty() {
                    let mut q = QueryBuilder::<$db>::new("SELECT request_id FROM request_claims WHERE request_id IN ");
                    $crate::store_impl::push_list!(q, ids.iter().map(String::as_str));
                    q.push(" AND claimed_by <> ").push_bind(worker).push(" AND claim_until >= ").push_bind(now);
                    let taken: std::collections::HashSet<String> =
                        q.build().fetch_all(&mut *tx).await.map_err(store_error)?.iter().map(|row| row.get("request_id")).collect();
                    ids.retain(|id| !taken.contains(id));
                }
                if ids.is_empty() {
                    tx.commit().await.map_err(store_error)?;
                    return Ok(Vec::new());
                }
                // Renewals extend the live span; new claims open one.
                $crate::store_impl::extend_live_spans!($db, tx, worker, ids.iter().map(String::as_str), now, until);
                let mut q = QueryBuilder::<$db>::new("INSERT INTO claim_history (request_id, worker, held_since, held_until) SELECT r.id, ");
                q.push_bind(worker).push(", ").push_bind(now).push(", ").push_bind(until);
                q.push(" FROM requests r LEFT JOIN request_claims c ON c.request_id = r.id WHERE r.id IN ");
                $crate::store_impl::push_list!(q, ids.iter().map(String::as_str));
                q.push(" AND (c.request_id IS NULL OR c.claimed_by <> ").push_bind(worker).push(" OR c.claim_until < ").push_bind(now).push(")");
                q.build().execute(&mut *tx).await.map_err(store_error)?;
                // A claim this worker holds live keeps its start; any other starts now.
                for chunk in ids.chunks($crate::store_impl::CHUNK) {
                    let mut q = QueryBuilder::<$db>::new("INSERT INTO request_claims (request_id, claimed_by, claim_since, claim_until) ");
                    q.push_values(chunk, |mut b, id| {
                        b.push_bind(id.as_str()).push_bind(worker).push_bind(now).push_bind(until);
                    });
                    q.push(" ON CONFLICT (request_id) DO UPDATE SET claim_since = CASE WHEN request_claims.claimed_by = excluded.claimed_by AND request_claims.claim_until >= ");
                    q.push_bind(now).push(" THEN request_claims.claim_since ELSE excluded.claim_since END, claimed_by = excluded.claimed_by, claim_until = excluded.claim_until");
                    q.build().execute(&mut *tx).await.map_err(store_error)?;
                }
                let mut q = QueryBuilder::<$db>::new("SELECT id, body, version FROM requests WHERE id IN ");
                $crate::store_impl::push_list!(q, ids.iter().map(String::as_str));
                let rows = q.build().fetch_all(&mut *tx).await.map_err(store_error)?;
                // A poison row is claimed (so it does not come back every cycle) but not worked.
                let mut claimed =
                    rows.iter().map(|row| self.decode(row, $crate::codec::Keep::Repeated)).filter_map($crate::codec::readable).collect::<Vec<_>>();
                tx.commit().await.map_err(store_error)?;
                // In the order they were chosen: by priority, then the longest waiting.
                let rank: std::collections::HashMap<&str, usize> =
                    ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
                claimed.sort_by_key(|r| rank.get(r.id().as_str()).copied());
                Ok(claimed)
            }

            async fn now(&self) -> Result<Option<ohf_domain::Timestamp>, ohf_app::StoreError> {
                self.shared_clock().await
            }

            async fn renew(
                &self,
                worker: &str,
                ids: &[ohf_domain::RequestId],
                now: ohf_domain::Timestamp,
                ttl_ms: i64,
            ) -> Result<u64, ohf_app::StoreError> {
                use $crate::codec::store_error;
                use sqlx::QueryBuilder;
                let (now, until) = (now.unix_millis(), now.unix_millis() + ttl_ms);
                let mut renewed = 0;
                let mut tx = self.begin().await?;
                for chunk in ids.chunks($crate::store_impl::CHUNK) {
                    $crate::store_impl::extend_live_spans!($db, tx, worker, chunk.iter().map(ohf_domain::RequestId::as_str), now, until);
                    let mut q = QueryBuilder::<$db>::new("UPDATE request_claims SET claim_until = ");
                    q.push_bind(until).push(" WHERE claimed_by = ").push_bind(worker);
                    q.push(" AND claim_until >= ").push_bind(now).push(" AND request_id IN ");
                    $crate::store_impl::push_list!(q, chunk.iter().map(ohf_domain::RequestId::as_str));
                    renewed += q.build().execute(&mut *tx).await.map_err(store_error)?.rows_affected();
                }
                tx.commit().await.map_err(store_error)?;
                Ok(renewed)
            }

            async fn release(
                &self,
                worker: &str,
                ids: &[ohf_domain::RequestId],
                now: ohf_domain::Timestamp,
            ) -> Result<(), ohf_app::StoreError> {
                use $crate::codec::store_error;
                use sqlx::QueryBuilder;
                if ids.is_empty() {
                    return Ok(());
                }
                let now = now.unix_millis();
                let mut tx = self.begin().await?;
                let mut q = QueryBuilder::<$db>::new("UPDATE claim_history SET held_until = ");
                q.push_bind(now).push(" WHERE worker = ").push_bind(worker).push(" AND held_until > ").push_bind(now);
                q.push(" AND request_id IN ");
                $crate::store_impl::push_list!(q, ids.iter().map(ohf_domain::RequestId::as_str));
                q.push(" AND held_since = (SELECT c.claim_since FROM request_claims c WHERE c.request_id = claim_history.request_id AND c.claimed_by = ")
                    .push_bind(worker)
                    .push(")");
                q.build().execute(&mut *tx).await.map_err(store_error)?;
                let mut q = QueryBuilder::<$db>::new("DELETE FROM request_claims WHERE claimed_by = ");
                q.push_bind(worker).push(" AND request_id IN ");
                $crate::store_impl::push_list!(q, ids.iter().map(ohf_domain::RequestId::as_str));
                q.build().execute(&mut *tx).await.map_err(store_error)?;
                tx.commit().await.map_err(store_error)
            }

            async fn lead(
                &self,
                job: &str,
                worker: &str,
                now: ohf_domain::Timestamp,
                ttl_ms: i64,
            ) -> Result<bool, ohf_app::StoreError> {
                let mut q = sqlx::QueryBuilder::<$db>::new("INSERT INTO leases (job, worker, expires_at) VALUES (");
                q.separated(", ").push_bind(job).push_bind(worker).push_bind(now.unix_millis() + ttl_ms);
                q.push(") ON CONFLICT (job) DO UPDATE SET worker = excluded.worker, expires_at = excluded.expires_at");
                q.push(" WHERE leases.worker = excluded.worker OR leases.expires_at < ").push_bind(now.unix_millis());
                let done = q.build().execute(&self.pool).await.map_err($crate::codec::store_error)?;
                Ok(done.rows_affected() == 1)
            }

            async fn claim_history(&self, id: &ohf_domain::RequestId) -> Result<Vec<ohf_app::ClaimSpan>, ohf_app::StoreError> {
                use sqlx::Row;
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "SELECT worker, held_since, held_until FROM claim_history WHERE request_id = ",
                );
                q.push_bind(id.as_str()).push(" ORDER BY held_since, held_until");
                let rows = q.build().fetch_all(&self.pool).await.map_err($crate::codec::store_error)?;
                Ok(rows
                    .iter()
                    .map(|row| ohf_app::ClaimSpan {
                        worker: row.get("worker"),
                        since: ohf_domain::Timestamp::from_unix_millis(row.get("held_since")),
                        until: ohf_domain::Timestamp::from_unix_millis(row.get("held_until")),
                    })
                    .collect())
            }
        }

        #[async_trait::async_trait]
        impl ohf_app::SharedState for $store {
            async fn load_shared(&self, key: &str) -> Result<(Option<String>, i64), ohf_app::StoreError> {
                use sqlx::Row;
                let mut q = sqlx::QueryBuilder::<$db>::new("SELECT value, version FROM shared_state WHERE key = ");
                q.push_bind(key);
                let row = q.build().fetch_optional(&self.pool).await.map_err($crate::codec::store_error)?;
                Ok(row.map_or((None, 0), |r| (Some(r.get("value")), r.get("version"))))
            }

            async fn store_shared(&self, key: &str, value: &str, expected: i64) -> Result<bool, ohf_app::StoreError> {
                let mut q = sqlx::QueryBuilder::<$db>::new("");
                if expected == 0 {
                    q.push("INSERT INTO shared_state (key, value, version) VALUES (");
                    q.separated(", ").push_bind(key).push_bind(value).push_bind(1_i64);
                    q.push(") ON CONFLICT (key) DO NOTHING");
                } else {
                    q.push("UPDATE shared_state SET value = ").push_bind(value);
                    q.push(", version = version + 1 WHERE key = ").push_bind(key);
                    q.push(" AND version = ").push_bind(expected);
                }
                let done = q.build().execute(&self.pool).await.map_err($crate::codec::store_error)?;
                Ok(done.rows_affected() == 1)
            }

            async fn list_shared(&self, prefix: &str) -> Result<Vec<(String, String, i64)>, ohf_app::StoreError> {
                let mut all = self.list_shared_many(&[prefix]).await?;
                Ok(all.pop().unwrap_or_default())
            }

            async fn list_shared_many(
                &self,
                prefixes: &[&str],
            ) -> Result<Vec<Vec<(String, String, i64)>>, ohf_app::StoreError> {
                use sqlx::Row;
                let mut all: Vec<Vec<(String, String, i64)>> = vec![Vec::new(); prefixes.len()];
                if prefixes.is_empty() {
                    return Ok(all);
                }
                // Each prefix is one range of the keys, compared byte by byte: one range of the
                // key's index each, whatever else the table holds, all in one statement.
                let mut q = sqlx::QueryBuilder::<$db>::new("SELECT key, value, version FROM shared_state WHERE ");
                for (i, prefix) in prefixes.iter().enumerate() {
                    q.push(if i == 0 { "(" } else { " OR (" });
                    q.push(concat!($bytewise_key, " >= ")).push_bind(*prefix);
                    if let Some(end) = $crate::store_impl::past_prefix(prefix) {
                        q.push(concat!(" AND ", $bytewise_key, " < ")).push_bind(end);
                    }
                    q.push(")");
                }
                q.push(concat!(" ORDER BY ", $bytewise_key));
                let rows = q.build().fetch_all(&self.pool).await.map_err($crate::codec::store_error)?;
                for r in &rows {
                    let key = r.get::<String, _>("key");
                    let matching: Vec<usize> =
                        prefixes.iter().enumerate().filter(|(_, p)| key.starts_with(**p)).map(|(i, _)| i).collect();
                    for i in matching {
                        all[i].push((key.clone(), r.get::<String, _>("value"), r.get::<i64, _>("version")));
                    }
                }
                Ok(all)
            }

            async fn remove_shared(&self, key: &str, expected: i64) -> Result<bool, ohf_app::StoreError> {
                let mut q = sqlx::QueryBuilder::<$db>::new("DELETE FROM shared_state WHERE key = ");
                q.push_bind(key).push(" AND version = ").push_bind(expected);
                let done = q.build().execute(&self.pool).await.map_err($crate::codec::store_error)?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}

/// The first string past every key that starts with `prefix`, byte by byte: the prefix with
/// its last character moved one on; `None` when there is no such bound to give (an empty
/// prefix, or one ending in a character that cannot move on as one byte).
pub(crate) fn past_prefix(prefix: &str) -> Option<String> {
    let last = prefix.chars().last()?;
    if !last.is_ascii() || last == '\x7f' {
        return None;
    }
    let mut end = prefix[..prefix.len() - 1].to_owned();
    end.push(char::from(last as u8 + 1));
    Some(end)
}

/// Most values one statement binds from a caller's list (SQLite's limit is 32,766; Postgres's
/// 65,535).
pub(crate) const CHUNK: usize = 500;

/// Rows of `columns` values each that one statement writes.
pub(crate) const fn rows_of(columns: usize) -> usize {
    CHUNK / columns
}

/// Every row of `chunk` among the ids a statement `written` returned; else the first not.
pub(crate) fn all_written<'a, R: sqlx::Row>(chunk: &[&'a crate::group::Row], written: &[R]) -> Result<(), &'a str>
where
    for<'r> &'r str: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    let ids: std::collections::HashSet<&str> =
        written.iter().filter_map(|row| row.try_get::<&str, _>(0).ok()).collect();
    match chunk.iter().find(|r| !ids.contains(r.id.as_str())) {
        Some(lost) => Err(lost.id.as_str()),
        None => Ok(()),
    }
}

/// The insert of new requests' rows, before their values ([`push_new_row!`]).
pub(crate) const NEW_ROWS: &str = "INSERT INTO requests (id, kind, state, template_id, created_at, updated_at, \
     needs_work, capacity_held, priority_rank, provider, version, body) ";

/// Binds the values of the new request row `$r` (a `group::Row`) to `$b` (a query builder's
/// `Separated`), in the order of [`NEW_ROWS`]; its version is 1.
macro_rules! push_new_row {
    ($b:expr, $r:expr) => {{
        $b.push_bind(&$r.id)
            .push_bind($r.kind)
            .push_bind($r.state)
            .push_bind(&$r.template_id)
            .push_bind($r.created_at)
            .push_bind($r.updated_at)
            .push_bind($r.needs_work)
            .push_bind($r.capacity_held)
            .push_bind($r.priority_rank)
            .push_bind(&$r.provider)
            .push_bind(1_i64)
            .push_bind(&$r.body);
    }};
}

/// The values of stored requests' rows as a table `v`, for [`UPDATE_STORED`]; their values
/// follow ([`push_stored_row!`]), then `)`.
pub(crate) const STORED_ROWS: &str =
    "v (v_id, v_version, v_state, v_updated_at, v_needs_work, v_capacity_held, v_provider, v_body) AS (";

/// The update of the stored requests of table `v` ([`STORED_ROWS`]), each only at the version
/// it was read at; it answers the ids written.
pub(crate) const UPDATE_STORED: &str = "UPDATE requests SET state = v_state, updated_at = v_updated_at, \
     needs_work = v_needs_work, capacity_held = v_capacity_held, provider = v_provider, version = version + 1, \
     body = v_body FROM v WHERE id = v_id AND version = v_version RETURNING id";

/// Binds the values of the stored request row `$r` to `$b`, in the order of [`STORED_ROWS`].
macro_rules! push_stored_row {
    ($b:expr, $r:expr) => {{
        $b.push_bind(&$r.id)
            .push_bind($r.version)
            .push_bind($r.state)
            .push_bind($r.updated_at)
            .push_bind($r.needs_work)
            .push_bind($r.capacity_held)
            .push_bind(&$r.provider)
            .push_bind(&$r.body);
    }};
}

pub(crate) use {extend_live_spans, push_list, push_new_row, push_stored_row, sql_request_store};

/// The advisory lock a Postgres admission takes: one for every admission under an account
/// limit, else one per template.
pub(crate) fn admission_key(limits: &ohf_app::Limits) -> i64 {
    match (&limits.account_limit, &limits.template) {
        (None, Some(t)) => {
            t.as_str().bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
                as i64
        }
        _ => 0x6f68_6600,
    }
}
