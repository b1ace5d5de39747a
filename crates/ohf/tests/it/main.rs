#![allow(clippy::unwrap_used)] // tests fail by panicking

mod aws;
mod client;
mod daemon;
mod resilience;
mod scenarios;
mod scripts;
mod support;
