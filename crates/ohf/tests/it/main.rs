#![allow(clippy::unwrap_used)] // tests fail by panicking

mod scenarios;
mod scripts;
mod support;
