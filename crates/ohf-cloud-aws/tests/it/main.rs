#![allow(clippy::unwrap_used)] // tests fail by panicking

mod emulator;
mod iam;
mod quotas;
mod ssm;
