#![allow(clippy::unwrap_used)] // tests fail by panicking

mod alerts;
mod bus;
mod error_paths;
mod harness;
mod placement;
mod scenarios;
