#![allow(clippy::unwrap_used)] // tests fail by panicking

mod aws;
mod chaos;
mod client;
mod daemon;
mod fault_proxy;
mod resilience;
mod scenarios;
mod scripts;
mod strategy;
mod support;
