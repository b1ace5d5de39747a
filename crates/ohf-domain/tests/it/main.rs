#![allow(clippy::unwrap_used)] // tests fail by panicking

mod lifecycle;
mod properties;
mod transitions;
