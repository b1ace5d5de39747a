//! The five Host Factory operations run for a provider script: on this process's own
//! application, or on the daemon named by `OHF_SERVER`. Each answers the operation's document
//! and whether it succeeded; the script front end prints it.

use std::time::Instant;

use ohf_hostfactory::{Answer, Operation};
use serde_json::{Value, json};

use crate::client::{ClientOptions, Remote};
use crate::settings::Resolved;
use crate::wiring;

/// The document Host Factory reads when the operation could not run at all.
pub fn failure(message: impl Into<String>) -> Value {
    json!({ "message": message.into() })
}

/// Runs `op` on the application built from `settings`.
pub async fn run_local(settings: &Resolved, op: Operation, input: &Value) -> (Answer, bool) {
    tracing::debug!(
        confdir = %settings.confdir.display(),
        workdir = %settings.workdir.display(),
        config = ?settings.config_file,
        "starting"
    );
    let started = Instant::now();
    let runtime = match wiring::build(settings, wiring::Lifetime::Call).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "cannot start");
            return (failure(format!("{e:#}")).into(), false);
        }
    };
    let options =
        ohf_hostfactory::Options { advance_on_poll: settings.advance_on_poll, requester: crate::process::os_user() };
    let outcome = ohf_hostfactory::run(&runtime.app, op, input, options).await;
    // What the call's events owe (alerts, figures) goes out before the process ends.
    crate::process::finish(&runtime).await;
    let millis = started.elapsed().as_millis() as u64;
    match outcome {
        Ok(doc) => {
            tracing::info!(millis, "done");
            (doc, true)
        }
        Err(e) => {
            tracing::warn!(millis, error = %e, "refused");
            (e.to_json().into(), false)
        }
    }
}

/// Runs `op` on the daemon: the same document, produced there.
pub async fn run_remote(options: &ClientOptions, op: Operation, input: &Value) -> (Value, bool) {
    let client = match Remote::new(options) {
        Ok(c) => c,
        Err(e) => return (failure(format!("{e:#}")), false),
    };
    match client.host_factory(op.name(), input).await {
        Ok((doc, ok)) => {
            tracing::info!(ok, "done on the daemon");
            (doc, ok)
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "the daemon did not answer");
            (failure(format!("{e:#}")), false)
        }
    }
}
