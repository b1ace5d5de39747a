//! SQL adapters of the request store. SQLite is the embedded default: one file under the work
//! directory, safe for several processes at once (WAL, busy timeout, immediate transactions,
//! optimistic versions). Postgres serves several daemons sharing work (claims with
//! `FOR UPDATE SKIP LOCKED`). Both run the same queries; the saves of concurrent callers go
//! into one transaction (group commit).

mod codec;
mod group;
mod postgres;
mod readers;
mod sqlite;
mod store_impl;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
