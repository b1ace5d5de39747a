#![allow(clippy::unwrap_used)] // tests fail by panicking

mod bus;
mod error_paths;
mod harness;
mod scenarios;
