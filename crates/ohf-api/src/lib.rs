//! What every front end of ohf shares, so HTTP, gRPC, the command line and Host Factory are
//! symmetric clients of the application:
//!
//! - [`error`]: the one table from error codes to HTTP statuses and gRPC codes, and the error
//!   answer itself ([`ApiError`]).
//! - the JSON methods ([`call_method`], [`provider_method`]): the seeds' method names and
//!   fields, each turned into its typed command or query.
//! - [`view`]: requests, events, templates and reports as the APIs show them.
//! - [`access`]: tokens, roles and rate limits ([`access::Gate`]), checked by every ingress.
//! - [`poll`]: the "a poll advances what it reads" policy of processes without a daemon.

pub mod access;
pub mod error;
mod fields;
mod methods;
mod overview;
pub mod poll;
pub mod routing;
pub mod view;

pub use error::{ApiError, GrpcCode, Wire, wire};

/// The API method a call named, put on its response by the front end that decoded it, for the
/// daemon's per-method figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CalledMethod(pub &'static str);
pub use methods::{
    METHODS, PROVIDER_METHODS, call_method, default_requester, is_method, known_method, method_not_found,
    provider_method,
};
