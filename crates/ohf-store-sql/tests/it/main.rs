#![allow(clippy::unwrap_used)] // tests fail by panicking

mod contract;
mod retention;
mod tls;
