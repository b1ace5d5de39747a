//! Row encoding shared by the SQL stores: one place translates between rows and domain types.

use ohf_app::StoreError;
use ohf_domain::{EventEnvelope, Request, RequestEvent, RequestId, Timestamp};

/// The request kind stored in the `kind` column.
pub fn kind_of(column: &str) -> Result<ohf_domain::RequestKind, StoreError> {
    match column {
        "provision" => Ok(ohf_domain::RequestKind::Provision),
        "return" => Ok(ohf_domain::RequestKind::Return),
        other => Err(StoreError::Corrupt(format!("unknown request kind {other:?}"))),
    }
}

pub fn encode_request(r: &Request) -> Result<String, StoreError> {
    serde_json::to_string(r).map_err(|e| StoreError::Corrupt(format!("cannot encode request {}: {e}", r.id())))
}

pub fn decode_request(body: &str, version: i64) -> Result<Request, StoreError> {
    let mut r: Request = serde_json::from_str(body).map_err(|e| StoreError::Corrupt(format!("request body: {e}")))?;
    r.mark_committed(version as u64);
    Ok(r)
}

/// When a read keeps a copy of what it decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// From the second read of a request at one version on.
    Repeated,
    /// At once, lent to the next read of the same version: a poll reads what needs work,
    /// advances it, then reads the same requests for its answer.
    ForNextRead,
}

/// What is kept of one request, at one version. The copies are boxed: a request is over a
/// kilobyte in place, and most entries (`Seen`) hold none.
enum Slot {
    /// Read once, nothing kept.
    Seen,
    /// A copy for every read of this version.
    Kept(Box<Request>),
    /// A copy handed over whole to the next read of this version.
    Lent(Box<Request>),
}

/// Requests decoded before, by id with their version. A stored version of a request never
/// changes (every write makes a new one), so a hit is exact in every process; reads skip the
/// JSON decode of requests that did not change since. A request is kept from its second read
/// at one version on ([`Keep::Repeated`]): a process that reads each request once (a Host
/// Factory call) copies nothing, one that reads them again and again (a daemon, a watch)
/// decodes each version twice. A read that knows another follows keeps at once
/// ([`Keep::ForNextRead`]).
#[derive(Default)]
pub struct Decoded(std::sync::Mutex<std::collections::HashMap<String, (i64, Slot)>>);

impl Decoded {
    const MAX: usize = 8192;

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (i64, Slot)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The version of `id` kept decoded, if any: a read may leave the body out at it.
    pub fn kept(&self, id: &str) -> Option<i64> {
        match self.lock().get(id) {
            Some((v, Slot::Kept(_) | Slot::Lent(_))) => Some(*v),
            _ => None,
        }
    }

    /// The request `id` kept decoded at `version`.
    pub fn kept_at(&self, id: &str, version: i64) -> Option<Request> {
        Self::take(self.lock().get_mut(id), version)
    }

    /// The copy in `entry` at `version`: cloned when kept, handed over when lent.
    fn take(entry: Option<&mut (i64, Slot)>, version: i64) -> Option<Request> {
        match entry {
            Some((v, slot)) if *v == version => match std::mem::replace(slot, Slot::Seen) {
                Slot::Kept(r) => {
                    let copy = Request::clone(&r);
                    *slot = Slot::Kept(r);
                    Some(copy)
                }
                Slot::Lent(r) => Some(*r),
                Slot::Seen => None,
            },
            _ => None,
        }
    }

    /// The request `id` at `version`; `body` is read only when it is not kept.
    pub fn get<'b>(
        &self,
        id: &str,
        version: i64,
        keep: Keep,
        body: impl FnOnce() -> Result<&'b str, StoreError>,
    ) -> Result<Request, StoreError> {
        let mut cache = self.lock();
        let entry = cache.get_mut(id);
        let seen = matches!(&entry, Some((v, _)) if *v == version);
        if let Some(r) = Self::take(entry, version) {
            return Ok(r);
        }
        let r = decode_request(body()?, version)?;
        if cache.len() >= Self::MAX {
            cache.clear();
        }
        let slot = match keep {
            Keep::ForNextRead => Slot::Lent(Box::new(r.clone())),
            Keep::Repeated if seen => Slot::Kept(Box::new(r.clone())),
            Keep::Repeated => Slot::Seen,
        };
        cache.insert(id.to_owned(), (version, slot));
        Ok(r)
    }
}

/// A request read, or the id of a row that could not be read and why.
pub type Read = Result<Request, (String, StoreError)>;

/// The request read, or `None` for a row this version cannot decode (a poison row): it is
/// logged and passed over, and never stops the others.
pub fn readable(read: Read) -> Option<Request> {
    read.map_err(|(id, e)| tracing::error!(request_id = %id, error = %e, "stored request unreadable; passed over")).ok()
}

/// The machines of `r` that its uncommitted events added or may have renamed.
pub fn touched_machines(r: &Request) -> Vec<&ohf_domain::Machine> {
    let mut ids = std::collections::HashSet::new();
    for e in r.uncommitted() {
        match &e.event {
            RequestEvent::MachinesLaunched { machines, .. } => ids.extend(machines.iter().map(|m| &m.id)),
            RequestEvent::MachineAdopted { machine } | RequestEvent::MachineChanged { machine } => {
                ids.insert(&machine.id);
            }
            RequestEvent::Created { creation } => ids.extend(creation.machines.iter().map(|m| m.id())),
            _ => {}
        }
    }
    r.machines().iter().filter(|m| ids.contains(m.id())).collect()
}

pub fn encode_event(e: &RequestEvent) -> Result<String, StoreError> {
    serde_json::to_string(e).map_err(|e| StoreError::Corrupt(format!("cannot encode event: {e}")))
}

pub fn decode_event(request_id: &RequestId, seq: i64, at: i64, body: &str) -> Result<EventEnvelope, StoreError> {
    let event =
        serde_json::from_str(body).map_err(|e| StoreError::Corrupt(format!("event {request_id}#{seq}: {e}")))?;
    Ok(EventEnvelope {
        request_id: request_id.clone(),
        seq: seq as u64,
        at: Timestamp::from_unix_millis(at),
        event,
        by: None,
    })
}

/// Translates a database error into the store's terms.
pub fn store_error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => StoreError::Corrupt(e.to_string()),
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// Brings a schema up to date. Several processes may open a fresh database at once; the loser
/// of that race finds the schema in place on its next try.
pub async fn migrate<DB>(migrator: &sqlx::migrate::Migrator, pool: &sqlx::Pool<DB>) -> Result<(), StoreError>
where
    DB: sqlx::Database,
    <DB as sqlx::Database>::Connection: sqlx::migrate::Migrate,
{
    let mut last = None;
    for _ in 0..40 {
        match migrator.run(pool).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                last = Some(e);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
    Err(StoreError::Unavailable(format!("migrations failed: {}", last.map(|e| e.to_string()).unwrap_or_default())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_kept_from_its_second_read_at_one_version() {
        let request =
            ohf_domain::Request::provision(ohf_domain::testing::provision_spec("req-1", 2), ohf_domain::testing::T0);
        let body = encode_request(&request).unwrap();
        let d = Decoded::default();
        let read = || -> Result<&str, StoreError> { Ok(body.as_str()) };
        assert_eq!(d.get("req-1", 1, Keep::Repeated, read).unwrap().id().as_str(), "req-1");
        assert_eq!(d.kept("req-1"), None, "a first read copies nothing");
        d.get("req-1", 1, Keep::Repeated, read).unwrap();
        assert_eq!(d.kept("req-1"), Some(1));
        // The kept copy answers without the body being read.
        let unread = || -> Result<&str, StoreError> { panic!("the body of a kept version is not read") };
        assert_eq!(d.get("req-1", 1, Keep::Repeated, unread).unwrap().version(), 1);
        assert_eq!(d.kept_at("req-1", 1).unwrap().version(), 1);
        assert_eq!(d.kept("req-1"), Some(1), "a kept copy stays for the reads after");
        d.get("req-1", 2, Keep::Repeated, read).unwrap();
        assert_eq!(d.kept("req-1"), None, "a new version is a first read again");
        assert!(d.get("req-1", 3, Keep::Repeated, || Ok("{")).is_err());
    }

    #[test]
    fn a_read_that_knows_another_follows_lends_its_copy_to_it() {
        let request =
            ohf_domain::Request::provision(ohf_domain::testing::provision_spec("req-1", 2), ohf_domain::testing::T0);
        let body = encode_request(&request).unwrap();
        let d = Decoded::default();
        let read = || -> Result<&str, StoreError> { Ok(body.as_str()) };
        let unread = || -> Result<&str, StoreError> { panic!("the body of a lent version is not read") };
        d.get("req-1", 1, Keep::ForNextRead, read).unwrap();
        assert_eq!(d.kept("req-1"), Some(1), "kept from the first read");
        assert_eq!(d.get("req-1", 1, Keep::Repeated, unread).unwrap().id().as_str(), "req-1");
        assert_eq!(d.kept("req-1"), None, "the copy was handed over, not copied again");
        // A third read at the same version is its second read as a repeated one: kept from then.
        d.get("req-1", 1, Keep::Repeated, read).unwrap();
        assert_eq!(d.kept("req-1"), Some(1));
        // A lent copy of a version no read asks for again is replaced by the next version.
        d.get("req-1", 2, Keep::ForNextRead, read).unwrap();
        assert!(d.kept_at("req-1", 1).is_none());
        assert_eq!(d.kept_at("req-1", 2).unwrap().version(), 2);
        assert!(d.kept_at("req-1", 2).is_none(), "a lent copy is handed over once");
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever a stored row holds (damage, a newer version's fields, any text), reading it
        /// answers a request or a `Corrupt` error, never a panic.
        #[test]
        fn stored_rows_never_panic_when_read(body in ".{0,300}", version in any::<i64>(), seq in any::<i64>(), at in any::<i64>()) {
            let id = RequestId::new("req-row").expect("a valid id");
            let _ = decode_request(&body, version);
            let _ = decode_event(&id, seq, at, &body);
            let shaped = format!("{{\"id\": \"req-row\", \"kind\": \"provision\", \"state\": {body:?}}}");
            let _ = decode_request(&shaped, version);
            let _ = Decoded::default().get("req-row", version, Keep::ForNextRead, || Ok(body.as_str()));
        }
    }
}
