#![allow(clippy::unwrap_used)] // tests fail by panicking

mod error_paths;
