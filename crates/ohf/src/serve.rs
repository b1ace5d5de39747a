//! `ohf serve`: loads the settings, builds the daemon from the server library and runs it
//! until SIGTERM or SIGINT. The first line on stdout names the address it listens on, so a
//! supervisor (or a test) that asked for port 0 learns the port.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use ohf_server::{Resolved, ServeOptions, Server};

use crate::cli::{Global, ServeArgs};
use crate::commands::overrides;

pub async fn run(global: &Global, args: &ServeArgs) -> ExitCode {
    let settings = match Resolved::load(&overrides(global)) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(1);
        }
    };
    crate::output::log_to_stderr_as(global.verbose.max(1), settings.log_format, Some(&settings.telemetry));
    match serve(&settings, args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "serve failed");
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn serve(settings: &Resolved, args: &ServeArgs) -> anyhow::Result<()> {
    let options = ServeOptions { listen: args.listen.clone(), worker_id: args.worker_id.clone() };
    let server = Server::build(settings, options).await?;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "listening on {}", server.local_addr()).and_then(|()| stdout.flush());
    drop(stdout);
    let signals = shutdown_signals()?;
    server.run_until_stopped(signals).await
}

/// Resolves at the first SIGTERM or SIGINT.
fn shutdown_signals() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutdown requested");
    })
}
