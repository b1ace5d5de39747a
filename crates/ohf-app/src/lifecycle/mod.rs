//! What moves requests forward without being asked: the batched reconcile step (launch,
//! adopt, follow, time out, clean up, return), the orphan sweep, and the daemon's `Worker`
//! that runs both under claims, with leased jobs (health checks, retention); the provider
//! health checks run by whichever process is due, with or without a daemon.

mod health;
pub(crate) mod reconcile;
mod sweep;
pub mod worker;

pub use reconcile::{CALLBACK_TIMEOUT, ReconcileReport};
pub use sweep::{SweepOptions, SweepReport};
