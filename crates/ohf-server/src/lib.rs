//! ohf as a library: everything the `ohf` binary runs, for services that embed the daemon or
//! start it in process (tests do, on port 0).
//!
//! - [`settings`]: one typed settings struct, layered from defaults, the Host Factory
//!   environment, `ohf.toml`, `OHF_` variables and flags.
//! - [`wiring`]: the composition root: the store, the providers (each behind its resilience
//!   wrapper), the template catalog and the bus's subscribers, built into an [`ohf_app::App`].
//! - [`Server`]: the daemon: `Server::build(&settings, options)`, then `port()` and
//!   `run_until_stopped(shutdown)`.
//! - [`Backend`] and [`client`]: the JSON API's methods in process or on a daemon.
//! - [`hostfactory`]: the five Host Factory operations, in process or on a daemon.

pub mod alerts;
mod backend;
pub mod callbacks;
mod catalog;
pub mod client;
pub mod hostfactory;
pub mod init;
mod metrics;
mod page;
mod process;
mod server;
pub mod settings;
pub mod wiring;

pub use backend::Backend;
pub use catalog::FileCatalog;
pub use client::{ClientOptions, Remote};
pub use metrics::Metrics;
pub use server::{ServeOptions, Server};
pub use settings::{Overrides, Resolved, Settings};
pub use wiring::Runtime;
