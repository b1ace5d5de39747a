#![allow(clippy::unwrap_used)] // tests fail by panicking

mod aws;
mod chaos;
mod client;
mod daemon;
mod deploy_files;
mod doctor;
mod fault_proxy;
mod hf_input;
mod mcp;
mod metrics;
mod page;
mod placement;
mod resilience;
mod scripts;
mod strategy;
mod support;
