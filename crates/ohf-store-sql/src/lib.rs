//! SQL adapters of the request store. SQLite is the embedded default: one file under the work
//! directory, safe for several processes at once (WAL, busy timeout, immediate transactions,
//! optimistic versions).

mod codec;
mod sqlite;

pub use sqlite::SqliteStore;
