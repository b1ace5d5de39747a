#![allow(clippy::unwrap_used)] // tests fail by panicking

mod properties;
mod resilient;
